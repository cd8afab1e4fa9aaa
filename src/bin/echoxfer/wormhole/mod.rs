//! The commands that go through a magic-wormhole mailbox instead of a
//! direct address: `send --text` (allocates a code and prints it) and
//! `receive CODE`. The roles are the library's (`wormhole::text`); here
//! are the mailbox's address, the code on the terminal and the outcome.

use std::io;
use std::time::Instant;

use echoxfer::driver::App;
use echoxfer::secure::os_seed;
use echoxfer::wormhole::code::Code;
use echoxfer::wormhole::text::{TextReceive, TextSend};
use echoxfer::wormhole::transfer::Offer;
use echoxfer::wormhole::{Wormhole, WormholeConfig, WormholeEvent};

use crate::addr::HostPort;
use crate::args::{ReceiveArgs, SendArgs, WormholeArgs};
use crate::net::{run_client, CmdResult, Peer};

/// What the mailbox is, for messages that name it.
const MAILBOX: &str = "the magic-wormhole mailbox server --relay-url names";

/// `send --text TEXT`.
pub fn send_text(a: SendArgs) -> CmdResult {
    let text = a.text.unwrap_or_default();
    let (config, to) = mailbox(&a.wormhole)?;
    let mut wormhole = Wormhole::allocate(config, Instant::now(), os_seed()?)?;
    let mut role = Shown(TextSend::new(text));
    run_client(
        &mut wormhole,
        &mut role,
        Peer::Tcp {
            to: &to,
            server: MAILBOX,
        },
        a.runtime,
    )?;
    eprintln!("text sent");
    Ok(())
}

/// `receive CODE`.
pub fn receive(a: ReceiveArgs) -> CmdResult {
    let code = Code::parse(a.wormhole_code.as_deref().unwrap_or_default())?;
    let (config, to) = mailbox(&a.wormhole)?;
    let mut wormhole = Wormhole::join(config, code, Instant::now(), os_seed()?)?;
    let mut role = Shown(TextReceive::new());
    run_client(
        &mut wormhole,
        &mut role,
        Peer::Tcp {
            to: &to,
            server: MAILBOX,
        },
        a.runtime,
    )?;
    if let Some(offer) = role.0.declined() {
        let what = match offer {
            Offer::Directory { .. } => "a folder",
            _ => "a file",
        };
        return Err(format!(
            "the sender offered {what}, and echoxfer takes only text through the wormhole so far \
             (the sender was told); send it directly: `echoxfer receive --once` here, `echoxfer send --to` there"
        )
        .into());
    }
    println!("{}", role.0.text().unwrap_or_default());
    Ok(())
}

/// The mailbox's config and address from `--relay-url`.
fn mailbox(args: &WormholeArgs) -> CmdResult<(WormholeConfig, HostPort)> {
    let url = args.relay_url.trim();
    let Some(rest) = url.strip_prefix("ws://") else {
        let hint = if url.starts_with("wss://") {
            " (TLS mailboxes are not supported yet)"
        } else {
            ""
        };
        return Err(format!("--relay-url {url:?} is not a ws://HOST:PORT/PATH URL{hint}").into());
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let with_port = match authority.rsplit_once(':') {
        Some((_, port)) if !port.contains(']') => authority.to_owned(),
        _ => format!("{authority}:80"),
    };
    let to = HostPort::parse(&with_port).map_err(|e| format!("--relay-url {url}: {e}"))?;
    let config = WormholeConfig {
        mailbox_url: url.to_owned(),
        ..WormholeConfig::default()
    };
    Ok((config, to))
}

/// A role, with what the user must see on the way: the server's message
/// of the day and the code to pass on.
struct Shown<A>(A);

impl<A: App<Wormhole>> App<Wormhole> for Shown<A> {
    fn on_event(
        &mut self,
        wormhole: &mut Wormhole,
        now: Instant,
        event: WormholeEvent,
    ) -> io::Result<()> {
        match &event {
            WormholeEvent::Motd(motd) => eprintln!("message from the mailbox server: {motd}"),
            WormholeEvent::Code(code) => {
                eprintln!("Wormhole code is: {code}");
                eprintln!("On the other computer, run: echoxfer receive {code}   (or: wormhole receive {code})");
            }
            _ => {}
        }
        self.0.on_event(wormhole, now, event)
    }
}
