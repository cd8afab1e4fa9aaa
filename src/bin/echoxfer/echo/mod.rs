//! `echoxfer echo serve|connect`: the native echo (framed, greeted) or
//! RFC 862 server on either runtime, and a client that sends stdin lines
//! and prints the replies. `--legacy` is the seed protocol, in [`legacy`].
//! Sockets and Ctrl-C come from [`crate::net`].

mod legacy;

use std::borrow::BorrowMut;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::net::TcpStream;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Instant;

use echoxfer::driver::{App, Ignore, Limits, Work};
use echoxfer::echo::{self, ClientEvent, ClientRole, RawEcho, ServerRole};
use echoxfer::{EchoConfig, SessionLimits, StreamMachine, UnframedConfig};

use crate::addr::HostPort;
use crate::args::{EchoConnectArgs, EchoMode, EchoServeArgs, Runtime};
use crate::auth::{self, Channel, Lifetime};
use crate::net::{self, CmdResult};
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
            let peer = "echoxfer echo connect --to ADDRESS";
            let auth = auth::for_server(&a.auth, &a.addr, peer, lifetime)?;
            let limits = auth.server_limits(limits);
            serve_machines(&a.addr, a.runtime, limits, move |now| {
                let role = ServerRole::new(greeting.clone(), EchoConfig::default());
                let server = echo::Server::new(role, SessionLimits::default(), now)
                    .with_recv_budget(budget.clone());
                auth.server_channel(server, now)
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

/// `echoxfer echo connect`: one conversation from stdin lines. While it
/// waits for a line it also watches the connection, so a server that goes
/// away is noticed at once, and Ctrl-C (which shuts the socket for
/// reading) ends the session telling the server why.
pub fn connect(a: EchoConnectArgs) -> CmdResult {
    if a.legacy {
        return legacy::connect(a);
    }
    let auth = auth::for_client(&a.auth, "echo connect", true)?;
    let now = Instant::now();
    let client = echo::Client::new(
        ClientRole::new(EchoConfig::default()),
        SessionLimits::default(),
        now,
    );
    let mut client = auth.client_channel(client, now);
    let stream = net::connect(&a.addr, "`echoxfer echo serve`")?;
    let watched = Arc::new(stream.try_clone()?);
    let stdin = File::from(io::stdin().as_fd().try_clone_to_owned()?);
    let mut app = LineClient {
        lines: Some(BufReader::new(stdin)),
        socket: watched,
        out: io::stdout(),
        want_line: false,
        let_read: false,
    };
    net::Driver::new(Runtime::Blocking)?
        .ctrl_c_says(net::CtrlC::ECHO)
        .run_tcp(&mut client, stream, &mut app)
        .map_err(|e| auth::explain(e, &a.addr.to_string(), auth::Session::Echo))
}

/// Sends one stdin line after the greeting and after each reply, so the
/// terminal reads as a conversation; `exit` or the end of stdin closes.
/// The line is waited for as work (see [`App::poll_work`]), watching the
/// socket as well: whatever arrives (the server's end, a reset, the read
/// side shut by Ctrl-C) lets the driver read it first.
struct LineClient {
    /// Stdin, lent to the work that waits for a line.
    lines: Option<BufReader<File>>,
    /// The session's socket, watched while a line is awaited.
    socket: Arc<TcpStream>,
    out: io::Stdout,
    /// The machine waits for the next line.
    want_line: bool,
    /// The socket woke the last wait: the driver reads before the next.
    let_read: bool,
}

/// What a wait for a line gave.
enum Waited {
    /// A line (without its end), or `None` at the end of stdin.
    Line(Option<String>),
    /// The socket has something (data, its end, a reset): read it first.
    Socket,
}

/// Waits until stdin holds a line or the socket is readable.
fn wait_for_line(lines: &mut BufReader<File>, socket: &TcpStream) -> io::Result<Waited> {
    use std::os::fd::AsRawFd;
    loop {
        if lines.buffer().is_empty() {
            let mut fds = [
                libc::pollfd {
                    fd: socket.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: lines.get_ref().as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            // SAFETY: two valid pollfds, for the duration of the call.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if fds[0].revents != 0 {
                return Ok(Waited::Socket);
            }
            if fds[1].revents == 0 {
                continue;
            }
        }
        let mut line = String::new();
        let n = lines.read_line(&mut line)?;
        if n == 0 {
            return Ok(Waited::Line(None));
        }
        let line = line.trim_end_matches(['\n', '\r']);
        return Ok(Waited::Line(Some(line.to_string())));
    }
}

impl LineClient {
    /// Sends `line`, or ends the session at `exit` or the end of stdin.
    fn send(client: &mut Channel<echo::Client>, line: Option<String>) -> io::Result<()> {
        let client: &mut echo::Client = client.borrow_mut();
        let result = match line {
            Some(line) if line != "exit" => client.send(line.into_bytes()),
            _ => client.close(),
        };
        result.map_err(io::Error::other)
    }
}

impl App<Channel<echo::Client>> for LineClient {
    fn on_event(
        &mut self,
        _: &mut Channel<echo::Client>,
        _: Instant,
        event: ClientEvent,
    ) -> io::Result<()> {
        match event {
            ClientEvent::Greeted(g) => {
                term::peer_line(&g)?;
                self.want_line = true;
            }
            ClientEvent::Reply(r) => {
                // The client machine checked that the reply is what we sent.
                self.out.write_all(&r)?;
                writeln!(self.out)?;
                self.out.flush()?;
                self.want_line = true;
            }
            ClientEvent::Closed => {}
        }
        Ok(())
    }

    fn poll_work(&mut self) -> Option<Work<Self, Channel<echo::Client>>> {
        if !self.want_line {
            return None;
        }
        if std::mem::take(&mut self.let_read) {
            return None;
        }
        let mut lines = self.lines.take()?;
        let socket = self.socket.clone();
        Some(Work::new(move || {
            let waited = wait_for_line(&mut lines, &socket);
            move |app: &mut LineClient, client: &mut Channel<echo::Client>, _: Instant| {
                app.lines = Some(lines);
                match waited? {
                    Waited::Socket => {
                        app.let_read = true;
                        Ok(())
                    }
                    Waited::Line(line) => {
                        app.want_line = false;
                        LineClient::send(client, line)
                    }
                }
            }
        }))
    }
}
