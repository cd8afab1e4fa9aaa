//! Sends or receives one text through a magic-wormhole mailbox, as
//! `wormhole send --text` and `wormhole receive` do: any wormhole client
//! is the other side. The machine runs on the blocking driver; the roles
//! are the library's apps, wrapped to print the code.
//!
//! ```text
//! cargo run --example wormhole_text -- send ws://127.0.0.1:4000/v1 "hello"
//! cargo run --example wormhole_text -- receive ws://127.0.0.1:4000/v1 7-guitarist-revenge
//! ```

use std::io;
use std::net::TcpStream;
use std::time::Instant;

use echoxfer::driver::{blocking::run_stream, App};
use echoxfer::secure::os_seed;
use echoxfer::wormhole::code::Code;
use echoxfer::wormhole::offer::{ReceiveOffer, Received, SendOffer};
use echoxfer::wormhole::{Wormhole, WormholeConfig, WormholeEvent};

/// Prints the code, then lets the role act.
struct ShowCode<A>(A);

impl<A: App<Wormhole>> App<Wormhole> for ShowCode<A> {
    fn on_event(&mut self, w: &mut Wormhole, now: Instant, event: WormholeEvent) -> io::Result<()> {
        if let WormholeEvent::Code(code) = &event {
            eprintln!("Wormhole code is: {code}");
        }
        self.0.on_event(w, now, event)
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [mode, url, what] = &args[..] else {
        return Err("usage: wormhole_text send URL TEXT | receive URL CODE".into());
    };
    let config = WormholeConfig {
        mailbox_url: url.clone(),
        ..WormholeConfig::default()
    };
    let host = url
        .trim_start_matches("ws://")
        .split('/')
        .next()
        .unwrap_or_default();
    let mut stream = TcpStream::connect(host)?;
    let now = Instant::now();
    if mode == "send" {
        let mut wormhole = Wormhole::allocate(config, now, os_seed()?)?;
        run_stream(
            &mut wormhole,
            &mut stream,
            &mut ShowCode(SendOffer::text(what.as_str())),
        )?;
    } else {
        let mut wormhole = Wormhole::join(config, Code::parse(what)?, now, os_seed()?)?;
        let mut role = ShowCode(ReceiveOffer::text_only());
        run_stream(&mut wormhole, &mut stream, &mut role)?;
        if let Some(Received::Text(text)) = role.0.received() {
            println!("{text}");
        }
    }
    Ok(())
}
