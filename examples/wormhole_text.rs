//! Sends or receives one text through a magic-wormhole mailbox, as
//! `wormhole send --text` and `wormhole receive` do: any wormhole client
//! is the other side.
//!
//! ```text
//! cargo run --example wormhole_text -- send ws://127.0.0.1:4000/v1 "hello"
//! cargo run --example wormhole_text -- receive ws://127.0.0.1:4000/v1 7-guitarist-revenge
//! ```

use std::io;
use std::net::TcpStream;
use std::time::Instant;

use echoxfer::driver::blocking::run_stream;
use echoxfer::secure::os_seed;
use echoxfer::wormhole::code::Code;
use echoxfer::wormhole::transfer::{Answer, Offer, TransferMessage};
use echoxfer::wormhole::{Wormhole, WormholeConfig, WormholeEvent};

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
    let sending = mode == "send";
    let mut wormhole = match sending {
        true => Wormhole::allocate(config, now, os_seed()?)?,
        false => Wormhole::join(config, Code::parse(what)?, now, os_seed()?)?,
    };
    let text = what.clone();
    let mut app = move |w: &mut Wormhole, now: Instant, event: WormholeEvent| -> io::Result<()> {
        match event {
            WormholeEvent::Code(code) => eprintln!("Wormhole code is: {code}"),
            WormholeEvent::Verified { .. } if sending => {
                let offer = TransferMessage::Offer(Offer::Message(text.clone()));
                w.send(&offer.encode()).map_err(io::Error::other)?;
            }
            WormholeEvent::Message(bytes) => {
                match TransferMessage::decode(&bytes).map_err(io::Error::other)? {
                    TransferMessage::Offer(Offer::Message(text)) => {
                        println!("{text}");
                        w.send(&TransferMessage::Answer(Answer::text_received()).encode())
                            .map_err(io::Error::other)?;
                        w.close(now).map_err(io::Error::other)?;
                    }
                    TransferMessage::Answer(_) => w.close(now).map_err(io::Error::other)?,
                    other => return Err(io::Error::other(format!("unexpected {other:?}"))),
                }
            }
            _ => {}
        }
        Ok(())
    };
    run_stream(&mut wormhole, &mut stream, &mut app)?;
    Ok(())
}
