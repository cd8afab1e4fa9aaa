//! `echoxfer echo serve|connect`: wires the echo machines to a driver and
//! to the terminal.

use std::io::{self, BufRead, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use echoxfer::driver::{blocking, App, Ignore};
use echoxfer::echo::{Client, ClientEvent, EchoClient, EchoServer, RawEcho, Server};
use echoxfer::error::sanitize;
use echoxfer::{Config, StreamMachine};

use crate::args::{EchoConnectArgs, EchoMode, EchoServeArgs, Runtime};
use crate::CmdResult;

/// How long sessions get to finish after Ctrl-C before they are cut.
pub const GRACE: Duration = Duration::from_secs(5);

pub fn serve(a: EchoServeArgs) -> CmdResult {
    let config = Config {
        max_connections: if a.single { 1 } else { a.max_connections },
        ..Config::default()
    };
    config.validate()?;
    if a.legacy {
        return crate::legacy::echo_serve(a, config);
    }
    let greeting = a
        .greeting
        .unwrap_or_else(|| echoxfer::echo::DEFAULT_GREETING.to_string())
        .into_bytes();
    // One budget for the half-received frames of all sessions.
    let budget = echoxfer::session::RecvBudget::new(config.recv_budget);
    match a.mode {
        EchoMode::Native => serve_machines(a.addr, a.runtime, config.clone(), move |now| {
            EchoServer::new(Server::new(greeting.clone()), config.clone(), now)
                .with_recv_budget(budget.clone())
        }),
        EchoMode::Rfc862 => serve_machines(a.addr, a.runtime, config.clone(), move |now| {
            RawEcho::new(config.clone(), now)
        }),
    }
}

/// Serves one kind of stream machine on either driver until Ctrl-C.
pub fn serve_machines<M, F>(
    addr: std::net::SocketAddr,
    runtime: Runtime,
    config: Config,
    make: F,
) -> CmdResult
where
    M: StreamMachine + Send + 'static,
    F: Fn(Instant) -> M + Send + Sync + 'static,
{
    serve_sessions(addr, runtime, config.max_connections, move |now| {
        (make(now), Ignore)
    })
}

/// Serves sessions (a machine and its app per connection, from `make`) on
/// either driver until Ctrl-C, then prints how they ended.
pub fn serve_sessions<M, A, F>(
    addr: std::net::SocketAddr,
    runtime: Runtime,
    max_connections: usize,
    make: F,
) -> CmdResult
where
    M: StreamMachine + Send + 'static,
    A: App<M> + Send + 'static,
    F: Fn(Instant) -> (M, A) + Send + Sync + 'static,
{
    let report = match runtime {
        Runtime::Blocking => {
            let listener = std::net::TcpListener::bind(addr)?;
            announce(listener.local_addr()?);
            let shutdown = blocking::Shutdown::new();
            let trigger = shutdown.clone();
            ctrlc::set_handler(move || trigger.trigger())?;
            blocking::serve(listener, max_connections, GRACE, &shutdown, make)?
        }
        Runtime::Tokio => tokio::runtime::Runtime::new()?.block_on(async {
            let listener = tokio::net::TcpListener::bind(addr).await?;
            announce(listener.local_addr()?);
            let ctrl_c = async {
                let _ = tokio::signal::ctrl_c().await;
            };
            echoxfer::driver::tokio::serve(listener, max_connections, GRACE, ctrl_c, make).await
        })?,
    };
    println!(
        "stopped: {} sessions ended cleanly, {} failed",
        report.ok, report.failed
    );
    Ok(())
}

/// Prints the bound address, so scripts and tests that asked for port 0 learn the real one.
pub fn announce(addr: std::net::SocketAddr) {
    println!("listening on {addr}");
    let _ = io::stdout().flush();
}

pub fn connect(a: EchoConnectArgs) -> CmdResult {
    if a.legacy {
        return crate::legacy::echo_connect(a);
    }
    let mut stream = TcpStream::connect(a.addr)?;
    stream.set_nodelay(true)?;
    let mut client = EchoClient::new(Client::new(), Config::default(), Instant::now());
    let mut app = LineClient {
        lines: io::stdin().lock(),
        out: io::stdout(),
    };
    blocking::run_stream(&mut client, &mut stream, &mut app)?;
    Ok(())
}

/// Sends one stdin line after the greeting and after each reply, so the
/// terminal reads as a conversation; `exit` or the end of stdin closes.
struct LineClient<R> {
    lines: R,
    out: io::Stdout,
}

impl<R: BufRead> LineClient<R> {
    fn send_next_line(&mut self, client: &mut EchoClient) -> io::Result<()> {
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

impl<R: BufRead> App<EchoClient> for LineClient<R> {
    fn on_event(
        &mut self,
        client: &mut EchoClient,
        _: Instant,
        event: ClientEvent,
    ) -> io::Result<()> {
        match event {
            ClientEvent::Greeted(g) => {
                writeln!(self.out, "{}", sanitize(&g))?;
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
