//! `echoxfer echo serve|connect --legacy`: the seed scripts' echo protocol
//! (no framing; a read that is exactly `exit` ends the session), for old
//! peers. The server prints each read; both print the legacy warning first.

use std::io::{self, BufRead};
use std::time::Instant;

use bytes::Bytes;
use echoxfer::driver::App;
use echoxfer::driver::Limits;
use echoxfer::legacy::{
    LegacyClientEvent, LegacyEchoClient, LegacyEchoServer, LegacyServerEvent, GREETING_BLOCKING,
    GREETING_THREADED,
};
use echoxfer::UnframedConfig;

use crate::args::{EchoConnectArgs, EchoServeArgs, Preset};
use crate::net::{self, CmdResult, Peer};
use crate::term;

/// Prints each read of a legacy echo client, as the seed server does.
struct PrintReads;

impl App<LegacyEchoServer> for PrintReads {
    fn on_event(
        &mut self,
        _: &mut LegacyEchoServer,
        _: Instant,
        e: LegacyServerEvent,
    ) -> io::Result<()> {
        // The `exit` read itself comes as `Received` first, as the seed prints it.
        if let LegacyServerEvent::Received(data) = e {
            term::peer_line_lossy(&data);
        }
        Ok(())
    }
}

/// `echo serve --legacy`, with the server's `limits` already validated.
pub fn serve(a: EchoServeArgs, limits: Limits) -> CmdResult {
    term::legacy_warning();
    let greeting = match (a.greeting, a.preset) {
        (Some(g), _) => g,
        (None, Some(Preset::Blocking)) => GREETING_BLOCKING.to_string(),
        (None, Some(Preset::Threaded) | None) => GREETING_THREADED.to_string(),
    };
    let greeting = Bytes::from(greeting.into_bytes());
    net::serve_sessions(&a.addr, a.runtime, limits, move |now| {
        (
            LegacyEchoServer::new(greeting.clone(), UnframedConfig::default(), now),
            PrintReads,
        )
    })
}

/// Sends one stdin line after the greeting and after each reply; `exit`
/// (sent, and the session ends) or the end of stdin closes.
struct LegacyLines<R> {
    lines: R,
}

impl<R: BufRead> LegacyLines<R> {
    fn send_next_line(&mut self, client: &mut LegacyEchoClient) -> io::Result<()> {
        loop {
            let mut line = Vec::new();
            if self.lines.read_until(b'\n', &mut line)? == 0 {
                client.close();
                return Ok(());
            }
            if line.last() == Some(&b'\n') {
                line.pop();
            }
            // The machine skips empty lines (no reply would come): read on.
            if line.is_empty() {
                continue;
            }
            return client.send_line(line).map_err(io::Error::other);
        }
    }
}

impl<R: BufRead> App<LegacyEchoClient> for LegacyLines<R> {
    fn on_event(
        &mut self,
        c: &mut LegacyEchoClient,
        _: Instant,
        e: LegacyClientEvent,
    ) -> io::Result<()> {
        let (LegacyClientEvent::Greeting(text) | LegacyClientEvent::Reply(text)) = e;
        term::peer_line(&text)?;
        self.send_next_line(c)
    }
}

/// `echo connect --legacy`.
pub fn connect(a: EchoConnectArgs) -> CmdResult {
    term::legacy_warning();
    let mut client = LegacyEchoClient::new(UnframedConfig::default(), Instant::now());
    let mut app = LegacyLines {
        lines: io::stdin().lock(),
    };
    let peer = Peer::Tcp {
        to: &a.addr,
        server: "`echoxfer echo serve --legacy`",
    };
    net::run_interactive_client(&mut client, &mut app, peer)
}
