//! `echoxfer echo serve|connect`: wires the echo machines to a driver and
//! to the terminal.

use std::io::{self, BufRead, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use echoxfer::driver::{blocking, listen, App, Ignore, Limits, Shutdown};
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
        max_per_source: a.max_per_source,
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
    serve_sessions(addr, runtime, Limits::from(&config), move |now| {
        (make(now), Ignore)
    })
}

/// Serves sessions (a machine and its app per connection, from `make`) on
/// either driver until Ctrl-C, then prints how they ended.
pub fn serve_sessions<M, A, F>(
    addr: std::net::SocketAddr,
    runtime: Runtime,
    limits: Limits,
    make: F,
) -> CmdResult
where
    M: StreamMachine + Send + 'static,
    A: App<M> + Send + 'static,
    F: Fn(Instant) -> (M, A) + Send + Sync + 'static,
{
    let shutdown = Shutdown::new();
    stop_on_ctrl_c(&shutdown)?;
    let report = match runtime {
        Runtime::Blocking => {
            let listener = listen::bind(addr, listen::DEFAULT_BACKLOG)?;
            crate::term::announce(listener.local_addr()?);
            blocking::serve(listener, limits, GRACE, &shutdown, make)?
        }
        Runtime::Tokio => tokio::runtime::Runtime::new()?.block_on(async {
            let listener = echoxfer::driver::tokio::bind(addr, listen::DEFAULT_BACKLOG)?;
            crate::term::announce(listener.local_addr()?);
            echoxfer::driver::tokio::serve(listener, limits, GRACE, shutdown.clone(), make).await
        })?,
    };
    println!("{}", crate::term::stopped(&report));
    Ok(())
}

/// Ctrl-C stops `shutdown` in steps, each saying what happens next: stop
/// accepting and let sessions finish, then abort them now, then exit at once.
pub fn stop_on_ctrl_c(shutdown: &Shutdown) -> CmdResult {
    let s = shutdown.clone();
    ctrlc::set_handler(move || {
        let running = s.running();
        match s.trigger_counted() {
            1 if running == 0 => eprintln!("stopping: no session is running"),
            1 => eprintln!(
                "stopping: no new connections; {running} running sessions get up to {} s to \
                 finish, then are aborted (partial files are kept for a resume); \
                 press Ctrl-C again to abort them now",
                GRACE.as_secs()
            ),
            2 => eprintln!(
                "aborting {running} sessions now (their peers are told why; partial files \
                 are kept); press Ctrl-C again to exit at once"
            ),
            _ => {
                eprintln!("exiting at once");
                std::process::exit(130);
            }
        }
    })?;
    Ok(())
}

pub fn connect(a: EchoConnectArgs) -> CmdResult {
    if a.legacy {
        return crate::legacy::echo_connect(a);
    }
    let mut stream = TcpStream::connect(a.addr).map_err(|e| {
        format!(
            "cannot connect to {}: {e} (is `echoxfer echo serve` running there?)",
            a.addr
        )
    })?;
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
