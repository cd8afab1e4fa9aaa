//! `echoxfer echo serve|connect`: the native echo (framed, greeted) or
//! RFC 862 server on either runtime, and a client that sends stdin lines
//! and prints the replies. `--legacy` is the seed protocol, in [`legacy`].
//! Sockets and Ctrl-C come from [`crate::net`].

mod legacy;

use std::borrow::BorrowMut;
use std::io::{self, BufRead, Write};
use std::time::Instant;

use echoxfer::driver::{App, Ignore, Limits};
use echoxfer::echo::{Client, ClientEvent, EchoClient, EchoServer, RawEcho, Server};
use echoxfer::{EchoConfig, SessionLimits, StreamMachine, UnframedConfig};

use crate::addr::HostPort;
use crate::args::{EchoConnectArgs, EchoMode, EchoServeArgs, Runtime};
use crate::auth::{self, Channel, Lifetime};
use crate::net::{self, CmdResult, Peer};
use crate::term;

/// `echoxfer echo serve`: serves echo sessions until Ctrl-C.
pub fn serve(a: EchoServeArgs) -> CmdResult {
    let limits = Limits {
        max_connections: if a.single { 1 } else { a.max_connections },
        max_per_source: a.max_per_source,
        ..Limits::default()
    };
    limits.validate()?;
    if a.legacy {
        return legacy::serve(a, limits);
    }
    let greeting = a
        .greeting
        .unwrap_or_else(|| echoxfer::echo::DEFAULT_GREETING.to_string())
        .into_bytes();
    // One budget for the half-received frames of all sessions.
    let budget = limits.new_recv_budget();
    match a.mode {
        EchoMode::Native => {
            let lifetime = Lifetime::UntilStopped {
                command: "echo serve",
                once: None,
            };
            let peer = "echoxfer echo connect --addr ADDRESS";
            let auth = auth::for_server(&a.auth, &a.addr, peer, lifetime)?;
            serve_machines(&a.addr, a.runtime, limits, move |now| {
                let role = Server::new(greeting.clone(), EchoConfig::default());
                let server = EchoServer::new(role, SessionLimits::default(), now)
                    .with_recv_budget(budget.clone());
                Channel::server(server, &auth, now)
            })
        }
        EchoMode::Rfc862 => {
            if a.auth.code.is_some() || a.auth.secret_file.is_some() {
                return Err(
                    "--mode rfc862 is plain RFC 862 (for nc and socat): it has no code \
         or secret; drop --code/--secret-file, or use --mode native"
                        .into(),
                );
            }
            serve_machines(&a.addr, a.runtime, limits, move |now| {
                RawEcho::new(UnframedConfig::default(), now)
            })
        }
    }
}

/// Serves one kind of stream machine on either driver until Ctrl-C.
fn serve_machines<M, F>(addr: &HostPort, runtime: Runtime, limits: Limits, make: F) -> CmdResult
where
    M: StreamMachine + Send + 'static,
    F: Fn(Instant) -> M + Send + Sync + 'static,
{
    net::serve_sessions(addr, runtime, limits, move |now| (make(now), Ignore))
}

/// `echoxfer echo connect`: one conversation from stdin lines.
pub fn connect(a: EchoConnectArgs) -> CmdResult {
    if a.legacy {
        return legacy::connect(a);
    }
    let auth = auth::for_client(&a.auth, "echo connect", true)?;
    let now = Instant::now();
    let client = EchoClient::new(
        Client::new(EchoConfig::default()),
        SessionLimits::default(),
        now,
    );
    let mut client = Channel::client(client, &auth, now);
    let mut app = LineClient {
        lines: io::stdin().lock(),
        out: io::stdout(),
    };
    let peer = Peer::Tcp {
        to: &a.addr,
        server: "`echoxfer echo serve`",
    };
    net::run_interactive_client(&mut client, &mut app, peer)
        .map_err(|e| auth::explain(e, &a.addr.to_string(), "try again"))
}

/// Sends one stdin line after the greeting and after each reply, so the
/// terminal reads as a conversation; `exit` or the end of stdin closes.
struct LineClient<R> {
    lines: R,
    out: io::Stdout,
}

impl<R: BufRead> LineClient<R> {
    fn send_next_line(&mut self, client: &mut Channel<EchoClient>) -> io::Result<()> {
        let client: &mut EchoClient = client.borrow_mut();
        let mut line = String::new();
        let n = self.lines.read_line(&mut line)?;
        let line = line.trim_end_matches(['\n', '\r']);
        let result = if n == 0 || line == "exit" {
            client.close()
        } else {
            client.send(line.as_bytes().to_vec())
        };
        result.map_err(io::Error::other)
    }
}

impl<R: BufRead> App<Channel<EchoClient>> for LineClient<R> {
    fn on_event(
        &mut self,
        client: &mut Channel<EchoClient>,
        _: Instant,
        event: ClientEvent,
    ) -> io::Result<()> {
        match event {
            ClientEvent::Greeted(g) => {
                term::peer_line(&g)?;
                self.send_next_line(client)
            }
            ClientEvent::Reply(r) => {
                // The client machine checked that the reply is what we sent.
                self.out.write_all(&r)?;
                writeln!(self.out)?;
                self.send_next_line(client)
            }
            ClientEvent::Closed => Ok(()),
        }
    }
}
