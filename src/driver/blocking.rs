//! The blocking driver: `std::net`, one thread per connection, a cap on how
//! many run at once. Generic over [`StreamMachine`] and [`DatagramMachine`];
//! it moves bytes and time and nothing else.

use std::collections::HashMap;
use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown as NetShutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::listen::{AcceptBackoff, Refusals, Sources};
use super::{drain, App, Batch, DriverError, Limits, Step, READ_CHUNK};
use crate::machine::{DatagramMachine, Output, StreamMachine};

/// A byte stream the blocking driver can wait on with a time limit.
pub trait Transport: Read + Write {
    /// Limits the next reads to `timeout` (`None`: wait forever). Transports
    /// that cannot (pipes) ignore it; their machines' timers then fire only
    /// when input arrives.
    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()>;

    /// Limits how long one write may wait for the peer to take bytes (the
    /// driver sets a fraction of the machine's write timeout and counts the
    /// waits). Transports that cannot (pipes) keep the default, which
    /// ignores it: their writes wait as long as the reader does.
    fn set_write_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        let _ = timeout;
        Ok(())
    }

    /// Tells the peer nothing more will be written.
    fn shutdown_write(&mut self) -> io::Result<()> {
        self.flush()
    }
}

impl Transport for TcpStream {
    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        TcpStream::set_read_timeout(self, timeout)
    }

    fn set_write_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        TcpStream::set_write_timeout(self, timeout)
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        match self.shutdown(NetShutdown::Write) {
            // The peer may already be gone; the session is over either way.
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
            other => other,
        }
    }
}

/// Any reader and writer pair (stdin and stdout, two pipes) as a transport.
#[derive(Debug)]
pub struct Duplex<R, W> {
    /// Where the peer's bytes come from.
    pub reader: R,
    /// Where bytes for the peer go.
    pub writer: W,
}

impl<R: Read, W: Write> Read for Duplex<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reader.read(buf)
    }
}

impl<R: Read, W: Write> Write for Duplex<R, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writer.write(buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.writer.write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.writer.flush()
    }
}

impl<R: Read, W: Write> Transport for Duplex<R, W> {
    fn set_read_timeout(&mut self, _: Option<Duration>) -> io::Result<()> {
        Ok(())
    }
}

/// Runs one session of `machine` over `transport` to its end, handing every
/// event to `app`. Returns the machine's final result.
pub fn run_stream<M, T, A>(
    machine: &mut M,
    transport: &mut T,
    app: &mut A,
) -> Result<(), DriverError>
where
    M: StreamMachine,
    T: Transport,
    A: App<M>,
{
    let mut buf = vec![0u8; READ_CHUNK];
    let mut out = Batch::default();
    let mut eof = false;
    let mut armed = ReadTimeout::default();
    let limit = super::write_limit(machine);
    transport
        .set_write_timeout(limit.map(write_step))
        .map_err(DriverError::io("setting the write timeout"))?;
    loop {
        let deadline = match drain(machine, app, &mut out) {
            Step::Flush => {
                write_batch(transport, &mut out, limit)?;
                continue;
            }
            Step::Done(result) => {
                write_batch(transport, &mut out, limit)?;
                let _ = transport.shutdown_write();
                return result.map_err(DriverError::from);
            }
            Step::AppFailed(error) => {
                // Best effort: the peer learns why, if the transport still works.
                let _ = write_batch(transport, &mut out, limit);
                let _ = transport.shutdown_write();
                return Err(error);
            }
            Step::Wait(deadline) => deadline,
        };
        write_batch(transport, &mut out, limit)?;
        let timeout = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if timeout == Some(Duration::ZERO) {
            machine.handle_timeout(Instant::now());
            continue;
        }
        if eof {
            // The peer is gone and the machine still waits: only its timer can end it.
            let Some(timeout) = timeout else {
                return Err(DriverError::io("waiting after EOF")(
                    io::ErrorKind::UnexpectedEof.into(),
                ));
            };
            thread::sleep(timeout);
            continue;
        }
        armed.arm(transport, timeout)?;
        let room = machine.input_room().clamp(1, buf.len());
        match transport.read(&mut buf[..room]) {
            Ok(0) => {
                eof = true;
                machine.handle_eof(Instant::now());
            }
            // A failure is sticky in the machine and comes out as its `Done`.
            Ok(n) => drop(machine.handle_input(Instant::now(), &buf[..n])),
            Err(e) if is_timeout(&e) => machine.handle_timeout(Instant::now()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(DriverError::io("reading from the peer")(e)),
        }
    }
}

/// The read timeout currently set on a transport. Re-setting it costs a
/// system call per read, so it is changed only when the one in force could
/// sleep past the machine's deadline; waking early is harmless (the
/// machine ignores early timeouts) and happens about once per deadline.
#[derive(Default)]
struct ReadTimeout {
    current: Option<Option<Duration>>,
}

impl ReadTimeout {
    fn arm(
        &mut self,
        transport: &mut impl Transport,
        wanted: Option<Duration>,
    ) -> Result<(), DriverError> {
        let fits = match (self.current, wanted) {
            (Some(None), None) => true,
            (Some(Some(set)), Some(wanted)) => set <= wanted,
            _ => false,
        };
        if fits {
            return Ok(());
        }
        // Leave slack below the deadline so the next few reads need no change.
        let set = wanted.map(|w| (w - w / 8).max(Duration::from_millis(1)));
        transport
            .set_read_timeout(set)
            .map_err(DriverError::io("setting the read timeout"))?;
        self.current = Some(set);
        Ok(())
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// How long one write may wait for the peer, for a machine whose write
/// timeout is `limit`. A socket write that took some bytes and then waited
/// out its timeout returns the partial count, and the next write waits a
/// full timeout again: with one wait per write timeout, a peer that stopped
/// reading would be dropped only after about two. Waiting in eighths, and
/// counting from the last progress, drops it within an eighth of `limit`.
fn write_step(limit: Duration) -> Duration {
    (limit / 8).max(Duration::from_millis(1))
}

/// Writes the whole batch, gathering parts into as few system calls as it
/// can; gives up when the peer took nothing for `limit` in total.
fn write_batch(
    w: &mut impl Write,
    out: &mut Batch,
    limit: Option<Duration>,
) -> Result<(), DriverError> {
    // When the peer last took bytes, as far as we know: a write that
    // returns a count after waiting may have taken them as it began.
    let mut progress = Instant::now();
    while !out.is_empty() {
        let attempt = Instant::now();
        match w.write_vectored(&out.slices()) {
            Ok(0) => {
                return Err(DriverError::io("writing to the peer")(
                    io::ErrorKind::WriteZero.into(),
                ))
            }
            Ok(n) => {
                out.consume(n);
                progress = attempt;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if is_timeout(&e) => {
                if limit.is_none_or(|limit| progress.elapsed() >= limit) {
                    return Err(DriverError::stalled_peer());
                }
            }
            Err(e) => return Err(DriverError::io("writing to the peer")(e)),
        }
    }
    w.flush().map_err(DriverError::io("flushing to the peer"))
}

/// Stops a running [`serve`] from another thread (a Ctrl-C handler, a test).
#[derive(Debug, Clone)]
pub struct Shutdown {
    stop: Arc<AtomicBool>,
    wake: Arc<Mutex<Option<SocketAddr>>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    /// A handle that has not been triggered.
    pub fn new() -> Self {
        Shutdown {
            stop: Arc::new(AtomicBool::new(false)),
            wake: Arc::new(Mutex::new(None)),
        }
    }

    /// Asks the server to stop accepting, finish or cut its sessions, and return.
    pub fn trigger(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let wake = *self.wake.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(addr) = wake {
            // Unblocks `accept`; the connection is dropped at once.
            let _ = TcpStream::connect_timeout(&addr, Duration::from_secs(1));
        }
    }

    /// Whether [`trigger`](Self::trigger) was called.
    pub fn is_triggered(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

/// What a server did, reported when it stops.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServeReport {
    /// Sessions that ended as the protocol says.
    pub ok: u64,
    /// Sessions that ended with an error.
    pub failed: u64,
    /// Connections closed at once because their source address already
    /// ran its cap of sessions (see [`Limits`]).
    pub refused: u64,
}

/// Connections in flight: a counting semaphore plus handles to cut them on shutdown.
#[derive(Default)]
struct Active {
    conns: Mutex<HashMap<u64, TcpStream>>,
    changed: Condvar,
}

impl Active {
    fn wait_below(&self, cap: usize, stop: &Shutdown) {
        let mut conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        while conns.len() >= cap && !stop.is_triggered() {
            conns = self
                .changed
                .wait_timeout(conns, Duration::from_millis(200))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    fn insert(&self, id: u64, stream: TcpStream) {
        self.conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, stream);
    }

    fn remove(&self, id: u64) {
        self.conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        self.changed.notify_all();
    }

    /// Waits up to `grace` for sessions to end, then cuts the rest.
    fn drain(&self, grace: Duration) {
        let until = Instant::now() + grace;
        let mut conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        while !conns.is_empty() && Instant::now() < until {
            let left = until.saturating_duration_since(Instant::now());
            conns = self
                .changed
                .wait_timeout(conns, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        for stream in conns.values() {
            let _ = stream.shutdown(NetShutdown::Both);
        }
    }
}

/// Serves `listener` until `shutdown` is triggered: each connection gets a
/// thread, a machine and an app from `make`, at most `limits.max_connections`
/// at once (the rest wait in the kernel's backlog: bind with
/// [`listen::bind`](super::listen::bind) to size it). A connection from a
/// source already running `limits.max_per_source` sessions is closed at
/// once, and counted. Failing accepts (out of file descriptors) are retried
/// with a growing pause. On shutdown, sessions get `grace` to finish and
/// are then cut.
pub fn serve<M, A, F>(
    listener: TcpListener,
    limits: impl Into<Limits>,
    grace: Duration,
    shutdown: &Shutdown,
    make: F,
) -> io::Result<ServeReport>
where
    M: StreamMachine + Send + 'static,
    A: App<M> + Send + 'static,
    F: Fn(Instant) -> (M, A) + Send + Sync + 'static,
{
    *shutdown.wake.lock().unwrap_or_else(|p| p.into_inner()) = Some(listener.local_addr()?);
    let make = Arc::new(make);
    let active = Arc::new(Active::default());
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let limits = limits.into();
    let sources = Sources::new(limits.max_per_source);
    let mut backoff = AcceptBackoff::default();
    let mut refusals = Refusals::default();
    let mut next_id = 0u64;
    loop {
        active.wait_below(limits.max_connections, shutdown);
        let accepted = listener.accept();
        if shutdown.is_triggered() {
            break;
        }
        let (stream, peer) = match accepted {
            Ok(conn) => conn,
            // Transient accept failures (EMFILE, ECONNABORTED) must not stop the server.
            Err(e) => {
                if let Some(pause) = backoff.after_error(&e) {
                    thread::sleep(pause);
                }
                continue;
            }
        };
        backoff.after_success();
        let Some(slot) = sources.admit(peer.ip()) else {
            // Dropped here: the source's sessions are not held up by another thread.
            refusals.refuse(peer, limits.max_per_source);
            continue;
        };
        next_id += 1;
        let id = next_id;
        if let Ok(handle) = stream.try_clone() {
            active.insert(id, handle);
        }
        let (make, active, ok, failed) = (make.clone(), active.clone(), ok.clone(), failed.clone());
        thread::Builder::new()
            .name(format!("echoxfer-conn-{id}"))
            .spawn(move || {
                let result = run_connection(stream, &*make);
                match &result {
                    Ok(()) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        tracing::warn!(%peer, error = %e, "session failed");
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
                // Before the accept loop can wake for the freed place.
                drop(slot);
                active.remove(id);
            })?;
    }
    active.drain(grace);
    Ok(ServeReport {
        ok: ok.load(Ordering::Relaxed),
        failed: failed.load(Ordering::Relaxed),
        refused: refusals.total,
    })
}

fn run_connection<M, A>(
    mut stream: TcpStream,
    make: &dyn Fn(Instant) -> (M, A),
) -> Result<(), DriverError>
where
    M: StreamMachine,
    A: App<M>,
{
    stream
        .set_nodelay(true)
        .map_err(DriverError::io("setting TCP_NODELAY"))?;
    let (mut machine, mut app) = make(Instant::now());
    run_stream(&mut machine, &mut stream, &mut app)
}

/// Runs a datagram machine on `socket` until it is done or `shutdown` is
/// triggered (checked at least every `poll` interval).
pub fn run_datagram<M, A>(
    machine: &mut M,
    socket: &UdpSocket,
    app: &mut A,
    shutdown: &Shutdown,
) -> Result<(), DriverError>
where
    M: DatagramMachine,
    A: App<M>,
{
    /// How often an idle datagram loop looks at the shutdown flag.
    const SHUTDOWN_CHECK: Duration = Duration::from_millis(250);
    let mut buf = vec![0u8; 65_536];
    loop {
        let now = Instant::now();
        let deadline = loop {
            match machine.poll_output() {
                Output::Transmit(d) => {
                    if let Err(e) = socket.send_to(&d.payload, d.peer) {
                        // UDP is lossy by contract; a failed send is a lost datagram.
                        tracing::debug!(peer = %d.peer, error = %e, "send_to failed");
                    }
                }
                Output::Event(e) => app
                    .on_event(machine, now, e)
                    .map_err(DriverError::io("application"))?,
                Output::Wait(deadline) => break deadline,
                Output::Done(result) => return result.map_err(DriverError::from),
            }
        };
        if shutdown.is_triggered() {
            return Ok(());
        }
        let left = deadline.map_or(SHUTDOWN_CHECK, |d| {
            d.saturating_duration_since(Instant::now())
        });
        if left.is_zero() {
            machine.handle_timeout(Instant::now());
            continue;
        }
        socket
            .set_read_timeout(Some(left.min(SHUTDOWN_CHECK)))
            .map_err(DriverError::io("setting the read timeout"))?;
        match socket.recv_from(&mut buf) {
            Ok((n, from)) => machine.handle_datagram(Instant::now(), from, &buf[..n]),
            Err(e) if is_timeout(&e) => machine.handle_timeout(Instant::now()),
            // ICMP errors from earlier sends surface here on some systems.
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(DriverError::io("receiving a datagram")(e)),
        }
    }
}
