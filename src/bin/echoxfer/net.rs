//! Network plumbing for every command: binding (with the explicit listen
//! backlog) and connecting, with errors that name the address; accepting
//! one connection; stdin/stdout as a transport; the runtime the user chose;
//! running a client session, or serving sessions until Ctrl-C. It touches
//! sockets, stdio, the tokio runtime and the Ctrl-C handler, and prints
//! only through [`crate::term`]; what runs on a connection is the caller's.

use std::fs::File;
use std::io;
use std::net::{Shutdown as Side, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

use echoxfer::driver::{blocking, listen, Abort, App, Limits, ServeReport, Shutdown};
use echoxfer::{DatagramMachine, StreamMachine};

use crate::addr::HostPort;
use crate::args::Runtime;
use crate::term;

/// What every command (and the plumbing under it) returns: an error is a
/// chain of human-readable causes, printed by `main`, and a non-zero exit.
pub type CmdResult<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// How long sessions get to finish after Ctrl-C before they are cut.
pub const GRACE: Duration = Duration::from_secs(5);

/// Binds a TCP listener on `addr` with the default backlog (errors name the address).
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    listen::bind(addr, listen::DEFAULT_BACKLOG)
}

/// Binds the first of `addr`'s addresses that binds, and prints the bound
/// address (the real port when 0 was asked for).
pub fn bind_announced(addr: &HostPort) -> io::Result<TcpListener> {
    let listener = addr.bind_first(bind)?;
    term::announce(listener.local_addr()?);
    Ok(listener)
}

/// A client that could not connect at all: no session ran, nothing was
/// offered (a command prints no summary then).
#[derive(Debug)]
pub struct NotConnected(pub String);

impl std::fmt::Display for NotConnected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NotConnected {}

/// Connects to `to` without Nagle's delay, trying each of its addresses
/// in turn; the error ([`NotConnected`]) names the address and `server`,
/// what should be listening there.
pub fn connect(to: &HostPort, server: &str) -> CmdResult<TcpStream> {
    let stream = TcpStream::connect(to.addrs()).map_err(|e| {
        NotConnected(format!(
            "cannot connect to {to}: {} (is {server} running there?)",
            echoxfer::error::io_text(&e)
        ))
    })?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// A UDP socket on the wildcard address of `peer`'s family, any port: the
/// local end for sending to `peer`.
fn udp_socket_toward(peer: SocketAddr) -> io::Result<UdpSocket> {
    let local: SocketAddr = match peer {
        SocketAddr::V4(_) => ([0, 0, 0, 0], 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    UdpSocket::bind(local)
}

/// Stdin and stdout as one blocking transport, unbuffered (the driver
/// batches its writes and flushes after each batch).
fn stdio() -> io::Result<blocking::Duplex<File, File>> {
    Ok(blocking::Duplex {
        reader: File::from(io::stdin().as_fd().try_clone_to_owned()?),
        writer: File::from(io::stdout().as_fd().try_clone_to_owned()?),
    })
}

/// Runs sessions on the runtime the user chose: `std::net` in this thread
/// (and a thread per served connection), or a tokio runtime made for them.
/// The only place the binary looks at which runtime it is.
pub struct Driver {
    tokio: Option<tokio::runtime::Runtime>,
    /// Ctrl-C aborts a single session (else it exits at once).
    abort_on_ctrl_c: bool,
    /// What a Ctrl-C tells the peer, and what it says here.
    ctrl_c: CtrlC,
}

/// What the first Ctrl-C in a single session tells the peer (the abort's
/// reason) and the user.
#[derive(Debug, Clone, Copy)]
pub struct CtrlC {
    /// Sent to the peer.
    pub reason: &'static str,
    /// Printed here.
    pub note: &'static str,
}

impl CtrlC {
    /// A file transfer's: verified files are saved, partials kept.
    pub const FILES: CtrlC = CtrlC {
        reason: "stopped with Ctrl-C; the same send again resumes it",
        note: "stopping: the peer is told why (files already verified are saved, partial files \
               are kept for a resume); press Ctrl-C again to exit at once",
    };
    /// An echo conversation's.
    pub const ECHO: CtrlC = CtrlC {
        reason: "the client stopped with Ctrl-C",
        note: "stopping: the server is told why; press Ctrl-C again to exit at once",
    };
}

impl Driver {
    /// The driver for single sessions on `runtime`. On tokio, a
    /// current-thread runtime: the session's task then waits on its socket
    /// itself. (`block_on` on a multi-threaded runtime waits on a worker
    /// thread, which owns the sockets' readiness and wakes it for every
    /// read: two context switches a wake-up.) Work still runs on the
    /// runtime's blocking pool.
    pub fn new(runtime: Runtime) -> io::Result<Driver> {
        let tokio = match runtime {
            Runtime::Blocking => None,
            Runtime::Tokio => Some(
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?,
            ),
        };
        Ok(Driver::on(tokio))
    }

    /// The driver for a server on `runtime`: on tokio, a multi-threaded
    /// runtime, whose workers run the sessions' tasks.
    pub fn for_serving(runtime: Runtime) -> io::Result<Driver> {
        let tokio = match runtime {
            Runtime::Blocking => None,
            Runtime::Tokio => Some(tokio::runtime::Runtime::new()?),
        };
        Ok(Driver::on(tokio))
    }

    fn on(tokio: Option<tokio::runtime::Runtime>) -> Driver {
        Driver {
            tokio,
            abort_on_ctrl_c: true,
            ctrl_c: CtrlC::FILES,
        }
    }

    /// What a Ctrl-C tells the peer and the user (a file transfer's unless told).
    pub fn ctrl_c_says(mut self, ctrl_c: CtrlC) -> Driver {
        self.ctrl_c = ctrl_c;
        self
    }

    /// Ctrl-C exits at once rather than aborting the session: for clients
    /// that wait on the terminal between events, where an abort would only
    /// be seen after the next line.
    pub fn exit_on_ctrl_c(mut self) -> Driver {
        self.abort_on_ctrl_c = false;
        self
    }

    /// The abort handle of the single session about to run (see
    /// [`stop_session_on_ctrl_c`]).
    fn session_abort(&self, wake: Option<TcpStream>) -> Abort {
        match self.abort_on_ctrl_c {
            true => stop_session_on_ctrl_c(wake, self.ctrl_c),
            false => Abort::new(),
        }
    }

    /// Runs one session over a connected TCP stream.
    pub fn run_tcp<M, A>(&self, machine: &mut M, mut stream: TcpStream, app: &mut A) -> CmdResult
    where
        M: StreamMachine + 'static,
        A: App<M> + 'static,
    {
        stream.set_nodelay(true)?;
        let abort = self.session_abort(stream.try_clone().ok());
        let result: CmdResult = match &self.tokio {
            None => {
                blocking::run_stream_until(machine, &mut stream, app, &abort).map_err(Into::into)
            }
            Some(rt) => rt.block_on(async {
                stream.set_nonblocking(true)?;
                let mut stream = tokio::net::TcpStream::from_std(stream)?;
                Ok(echoxfer::driver::async_tokio::run_stream_until(
                    machine,
                    &mut stream,
                    app,
                    &abort,
                )
                .await?)
            }),
        };
        session_over();
        result
    }

    /// Runs one session over stdin/stdout.
    pub fn run_stdio<M, A>(&self, machine: &mut M, app: &mut A) -> CmdResult
    where
        M: StreamMachine + 'static,
        A: App<M> + 'static,
    {
        let abort = self.session_abort(None);
        let result: CmdResult = match &self.tokio {
            None => {
                blocking::run_stream_until(machine, &mut stdio()?, app, &abort).map_err(Into::into)
            }
            Some(rt) => rt.block_on(async {
                let mut io = tokio::io::join(tokio::io::stdin(), tokio::io::stdout());
                Ok(
                    echoxfer::driver::async_tokio::run_stream_until(machine, &mut io, app, &abort)
                        .await?,
                )
            }),
        };
        session_over();
        result
    }

    /// Binds `addr`, announces it, and serves sessions (from `make`) until
    /// `shutdown`, giving them [`GRACE`] to finish.
    pub fn serve<M, A, F>(
        &self,
        addr: &HostPort,
        limits: Limits,
        shutdown: &Shutdown,
        make: F,
    ) -> io::Result<ServeReport>
    where
        M: StreamMachine + Send + 'static,
        A: App<M> + Send + 'static,
        F: Fn(Instant) -> (M, A) + Send + Sync + 'static,
    {
        match &self.tokio {
            None => blocking::serve(bind_announced(addr)?, limits, GRACE, shutdown, make),
            Some(rt) => rt.block_on(async {
                let listener = addr.bind_first(|a| {
                    echoxfer::driver::async_tokio::bind(a, listen::DEFAULT_BACKLOG)
                })?;
                term::announce(listener.local_addr()?);
                let shutdown = shutdown.clone();
                echoxfer::driver::async_tokio::serve(listener, limits, GRACE, shutdown, make).await
            }),
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // A blocked stdin read must not hold the process open.
        if let Some(rt) = self.tokio.take() {
            rt.shutdown_background();
        }
    }
}

/// Where a client session's peer is.
#[derive(Debug, Clone, Copy)]
pub enum Peer<'a> {
    /// Over TCP at `to` (host:port), where `server` should be listening
    /// (a connect error names both).
    Tcp { to: &'a HostPort, server: &'a str },
    /// Over stdin/stdout (`--stdio`: whatever runs at the pipes' other end).
    Stdio,
    /// Over a connection already made: a transit connection the wormhole
    /// handed over.
    Connected(&'a TcpStream),
}

impl<'a> Peer<'a> {
    /// The peer, for a message: its address, or the pipes.
    pub fn name(&self) -> String {
        match self {
            Peer::Tcp { to, .. } => to.to_string(),
            Peer::Stdio => "the peer on stdin/stdout".to_string(),
            Peer::Connected(stream) => match stream.peer_addr() {
                Ok(addr) => format!("the other side through the wormhole ({addr})"),
                Err(_) => "the other side through the wormhole".to_string(),
            },
        }
    }

    /// Stdin/stdout when `stdio`, else TCP at `to`.
    pub fn chosen(stdio: bool, to: &'a HostPort, server: &'a str) -> Peer<'a> {
        if stdio {
            Peer::Stdio
        } else {
            Peer::Tcp { to, server }
        }
    }
}

/// Runs one session as a client with `peer`, on `runtime`; Ctrl-C aborts it.
pub fn run_client<M, A>(machine: &mut M, app: &mut A, peer: Peer, runtime: Runtime) -> CmdResult
where
    M: StreamMachine + 'static,
    A: App<M> + 'static,
{
    run_client_on(Driver::new(runtime)?, machine, app, peer)
}

/// Runs one session as a client with `peer` on the blocking driver, for an
/// app that reads the terminal between events: Ctrl-C exits at once.
pub fn run_interactive_client<M, A>(machine: &mut M, app: &mut A, peer: Peer) -> CmdResult
where
    M: StreamMachine + 'static,
    A: App<M> + 'static,
{
    let driver = Driver::new(Runtime::Blocking)?.exit_on_ctrl_c();
    run_client_on(driver, machine, app, peer)
}

fn run_client_on<M, A>(driver: Driver, machine: &mut M, app: &mut A, peer: Peer) -> CmdResult
where
    M: StreamMachine + 'static,
    A: App<M> + 'static,
{
    match peer {
        Peer::Tcp { to, server } => driver.run_tcp(machine, connect(to, server)?, app),
        Peer::Stdio => driver.run_stdio(machine, app),
        Peer::Connected(stream) => driver.run_tcp(machine, stream.try_clone()?, app),
    }
}

/// Accepts one connection on `addr` (announcing the bound address, and
/// refusing further connections once it has one) and runs one session on it.
pub fn accept_one<M, A>(
    machine: &mut M,
    app: &mut A,
    addr: &HostPort,
    runtime: Runtime,
) -> CmdResult
where
    M: StreamMachine + 'static,
    A: App<M> + 'static,
{
    let driver = Driver::new(runtime)?;
    let listener = bind_announced(addr)?;
    let (stream, _) = listener.accept()?;
    drop(listener);
    driver.run_tcp(machine, stream, app)
}

/// Serves sessions (a machine and its app per connection, from `make`) on
/// either runtime until Ctrl-C, then prints how they ended.
pub fn serve_sessions<M, A, F>(
    addr: &HostPort,
    runtime: Runtime,
    limits: Limits,
    make: F,
) -> CmdResult
where
    M: StreamMachine + Send + 'static,
    A: App<M> + Send + 'static,
    F: Fn(Instant) -> (M, A) + Send + Sync + 'static,
{
    let driver = Driver::for_serving(runtime)?;
    let shutdown = Shutdown::new();
    stop_on_ctrl_c(&shutdown)?;
    let report = driver.serve(addr, limits, &shutdown, make)?;
    term::info(&term::stopped(&report));
    Ok(())
}

/// The single session this process runs now (a client's, or `receive
/// --once`'s), for Ctrl-C to stop: its abort handle, and its socket, which
/// is shut for reading to wake a blocked read.
static CURRENT: Mutex<Option<(Abort, Option<TcpStream>, CtrlC)>> = Mutex::new(None);

/// Ctrl-C presses so far (a client's handler only).
static PRESSES: AtomicU8 = AtomicU8::new(0);

/// Whether the user pressed Ctrl-C to stop this process's session: a
/// command that would go on to another session stops instead.
pub fn stopped_by_user() -> bool {
    PRESSES.load(Ordering::SeqCst) > 0
}

/// Ctrl-C during a single session: the first press aborts it (the peer is
/// told why, and the files already verified are still saved), a second
/// exits at once. Returns the session's abort handle.
fn stop_session_on_ctrl_c(wake: Option<TcpStream>, ctrl_c: CtrlC) -> Abort {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        // A process that serves has its own handler; this one is for clients.
        let _ = ctrlc::set_handler(move || {
            let current = CURRENT.lock().unwrap_or_else(|p| p.into_inner());
            match (PRESSES.fetch_add(1, Ordering::SeqCst), current.as_ref()) {
                (0, Some((abort, wake, says))) => {
                    eprintln!("{}", says.note);
                    abort.request(says.reason);
                    if let Some(socket) = wake {
                        // Wakes a blocked read, so the abort is seen at once.
                        let _ = socket.shutdown(Side::Read);
                    }
                }
                _ => {
                    eprintln!("exiting at once");
                    std::process::exit(130);
                }
            }
        });
    });
    let abort = Abort::new();
    *CURRENT.lock().unwrap_or_else(|p| p.into_inner()) = Some((abort.clone(), wake, ctrl_c));
    abort
}

/// The single session is over: Ctrl-C exits at once again.
fn session_over() {
    *CURRENT.lock().unwrap_or_else(|p| p.into_inner()) = None;
}

/// Ctrl-C stops `shutdown` in steps, each saying what happens next: stop
/// accepting and let sessions finish, then abort them now, then exit at once.
fn stop_on_ctrl_c(shutdown: &Shutdown) -> CmdResult {
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

/// Binds a UDP socket on the first of `addr`'s addresses that binds, announces it, and runs a datagram server
/// machine on it until Ctrl-C (a datagram server has no sessions to wait for).
pub fn serve_datagrams<M, A>(addr: &HostPort, machine: &mut M, app: &mut A) -> CmdResult
where
    M: DatagramMachine,
    A: App<M>,
{
    let socket = addr.bind_first(|a| {
        UdpSocket::bind(a).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot listen on UDP {a}: {e} (pick another address or port)"),
            )
        })
    })?;
    term::announce(socket.local_addr()?);
    let shutdown = Shutdown::new();
    let trigger = shutdown.clone();
    ctrlc::set_handler(move || trigger.trigger())?;
    blocking::run_datagram(machine, &socket, app, &shutdown)?;
    Ok(())
}

/// Runs a datagram client machine, which talks to `peer`, from a local
/// socket of any port until the machine is done.
pub fn run_datagram_client<M, A>(machine: &mut M, peer: SocketAddr, app: &mut A) -> CmdResult
where
    M: DatagramMachine,
    A: App<M>,
{
    let socket = udp_socket_toward(peer)?;
    blocking::run_datagram(machine, &socket, app, &Shutdown::new())?;
    Ok(())
}
