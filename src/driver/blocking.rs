//! The blocking driver: `std::net`, one thread per connection, a cap on how
//! many run at once. Generic over [`StreamMachine`] and [`DatagramMachine`];
//! it moves bytes and time and nothing else.

use std::collections::HashMap;
use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown as NetShutdown, TcpListener, TcpStream, UdpSocket};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::datagram::{DatagramCore, DatagramNext};
use super::server::{Admit, ServeCore, SessionId, StopStep};
use super::shutdown::SHUTDOWN_REASON;
use super::stream::{Next, StreamCore};
use super::{Abort, App, DriverError, Limits};
use crate::machine::{DatagramMachine, StreamMachine};

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

/// One write of `parts`: a plain write when there is one part. (On a
/// socket a vectored write of one buffer costs more than a plain one:
/// `writev` goes through the file layer, `send` straight to the socket.)
fn write_parts<W: Write + ?Sized>(writer: &mut W, parts: &[IoSlice<'_>]) -> io::Result<usize> {
    match parts {
        [one] => writer.write(one),
        parts => writer.write_vectored(parts),
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
    run_stream_until(machine, transport, app, &Abort::new())
}

/// [`run_stream`] that also ends when `abort` is requested: the machine is
/// aborted (telling the peer why) at the driver's next wake-up.
pub fn run_stream_until<M, T, A>(
    machine: &mut M,
    transport: &mut T,
    app: &mut A,
    abort: &Abort,
) -> Result<(), DriverError>
where
    M: StreamMachine,
    T: Transport,
    A: App<M>,
{
    let mut core = StreamCore::new(machine, app, abort);
    transport
        .set_write_timeout(core.write_timeout().map(write_step))
        .map_err(DriverError::io("setting the write timeout"))?;
    let mut armed = ReadTimeout::default();
    // The clock is read once per wait, as it ends: the core's steps
    // between two waits share one reading.
    let mut now = Instant::now();
    loop {
        match core.next(now) {
            Next::Write { .. } => {
                let written = write_parts(transport, &core.transmit());
                now = Instant::now();
                match written {
                    Ok(n) => core.wrote(now, n),
                    Err(e) => core.write_failed(now, e),
                }
            }
            Next::Flush => {
                let flushed = transport.flush();
                now = Instant::now();
                match flushed {
                    Ok(()) => core.flushed(now),
                    Err(e) => core.write_failed(now, e),
                }
            }
            Next::Read { max, until } => {
                armed.arm(transport, until.map(|t| t.saturating_duration_since(now)))?;
                // Straight into the machine's own buffer.
                let read = transport.read(core.read_buffer(max));
                now = Instant::now();
                match read {
                    Ok(n) => core.filled(now, n),
                    Err(e) => core.read_failed(now, e),
                }
            }
            Next::Sleep(until) => {
                thread::sleep(until.saturating_duration_since(now));
                now = Instant::now();
                core.timed_out(now);
            }
            // In place: this thread is the session's own.
            Next::Work => {
                if let Some(work) = core.take_work() {
                    let finish = work.run();
                    now = Instant::now();
                    core.worked(now, finish);
                }
            }
            Next::AwaitWork => unreachable!("work runs in place, so it is never awaited"),
            Next::Close => {
                let _ = transport.shutdown_write();
                now = Instant::now();
                core.closed(now);
            }
            Next::Done(result) => return result,
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

/// How long one write may wait for the peer, for a machine whose write
/// timeout is `limit`. A socket write that took some bytes and then waited
/// out its timeout returns the partial count, and the next write waits a
/// full timeout again: with one wait per write timeout, a peer that stopped
/// reading would be dropped only after about two. Waiting in eighths, and
/// counting from the last progress, drops it within an eighth of `limit`.
fn write_step(limit: Duration) -> Duration {
    (limit / 8).max(Duration::from_millis(1))
}

pub use super::shutdown::{ServeReport, Shutdown};

/// A blocking server's shared state: the server core, and handles on the
/// running sessions' connections (to wake or cut them at shutdown). The
/// accept loop and the session threads meet here; a session's end wakes
/// whoever waits for a place or for the sessions to stop.
struct Served {
    state: Mutex<ServedState>,
    changed: Condvar,
}

struct ServedState {
    core: ServeCore,
    conns: HashMap<SessionId, TcpStream>,
}

impl Served {
    fn new(limits: Limits) -> Served {
        Served {
            state: Mutex::new(ServedState {
                core: ServeCore::new(limits),
                conns: HashMap::new(),
            }),
            changed: Condvar::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ServedState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits while `keep_waiting` holds, at most until `until`, waking now
    /// and then to look again (a shutdown trigger does not notify the condvar).
    fn wait_while(&self, until: Instant, mut keep_waiting: impl FnMut(&ServedState) -> bool) {
        let mut state = self.lock();
        while keep_waiting(&state) && Instant::now() < until {
            let left = until.saturating_duration_since(Instant::now());
            state = self
                .changed
                .wait_timeout(state, left.min(Duration::from_millis(100)))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Waits until the core has room for a session, or the shutdown comes.
    fn wait_for_room(&self, stop: &Shutdown) {
        let forever = Instant::now() + Duration::from_secs(u32::MAX.into());
        self.wait_while(forever, |s| !s.core.has_room() && !stop.is_triggered());
    }

    /// A session ended (`guessed`: its machine says the peer spent a
    /// guess at the code): the core counts how, and frees its place.
    fn ended(&self, id: SessionId, result: &Result<(), DriverError>, guessed: bool) {
        let mut state = self.lock();
        state.conns.remove(&id);
        state.core.ended(Instant::now(), id, result, guessed);
        drop(state);
        self.changed.notify_all();
    }

    /// Shuts every running connection in `how`.
    fn shut_all(&self, how: NetShutdown) {
        for stream in self.lock().conns.values() {
            let _ = stream.shutdown(how);
        }
    }

    /// The stop sequence, as the server core says.
    fn stop(&self, grace: Duration, shutdown: &Shutdown, abort: &Abort) -> ServeReport {
        self.lock().core.stop(Instant::now(), grace);
        loop {
            let step = self
                .lock()
                .core
                .stop_step(Instant::now(), shutdown.is_urgent());
            match step {
                StopStep::Wait { until, or_urgent } => {
                    let running = self.lock().core.running();
                    self.wait_while(until, |s| {
                        s.core.running() == running && !(or_urgent && shutdown.is_urgent())
                    });
                }
                StopStep::AbortAll => {
                    abort.request(SHUTDOWN_REASON);
                    // A blocked read returns at once; the session sees the abort.
                    self.shut_all(NetShutdown::Read);
                }
                StopStep::Cut => self.shut_all(NetShutdown::Both),
                StopStep::Done(report) => return report,
            }
        }
    }
}

/// Serves `listener` until `shutdown` is triggered: each connection gets a
/// thread, a machine and an app from `make`, at most `limits.max_connections`
/// at once (the rest wait in the kernel's backlog: bind with
/// [`listen::bind`](super::listen::bind) to size it). A connection from a
/// source already running `limits.max_per_source` sessions is closed at
/// once, and counted. Failing accepts (out of file descriptors) are retried
/// with a growing pause.
///
/// On shutdown it stops accepting, gives sessions `grace` to end (less if
/// the shutdown is triggered again), aborts the rest (telling each peer
/// why), waits for them, and reports how every session ended.
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
    shutdown.wake_accept_at(listener.local_addr()?);
    let make = Arc::new(make);
    let served = Arc::new(Served::new(limits.into().checked()?));
    let abort = Abort::new();
    loop {
        served.wait_for_room(shutdown);
        let accepted = listener.accept();
        if shutdown.is_triggered() {
            break;
        }
        let (stream, peer) = match accepted {
            Ok(conn) => conn,
            // Transient accept failures (EMFILE, ECONNABORTED) must not stop the server.
            Err(e) => {
                let pause = served.lock().core.accept_failed(Instant::now(), &e);
                if let Some(pause) = pause {
                    thread::sleep(pause);
                }
                continue;
            }
        };
        let mut state = served.lock();
        // Refused (told so if penalized, and closed here): its source's
        // sessions are not held up by another thread.
        let id = match state.core.accepted(Instant::now(), peer) {
            Admit::Start(id) => id,
            refused => {
                drop(state);
                super::listen::close_refused(socket2::SockRef::from(&stream), refused.notice());
                continue;
            }
        };
        if let Ok(handle) = stream.try_clone() {
            state.conns.insert(id, handle);
        }
        drop(state);
        let running = shutdown.session();
        let (make, session_served, abort) = (make.clone(), served.clone(), abort.clone());
        let spawned = thread::Builder::new()
            .name(format!("echoxfer-conn-{id}"))
            .spawn(move || {
                let (result, guessed) = run_connection(stream, &*make, &abort);
                if let Err(e) = &result {
                    tracing::warn!(%peer, error = %e, "session failed");
                }
                drop(running);
                session_served.ended(id, &result, guessed);
            });
        if let Err(e) = spawned {
            let result = Err(DriverError::io("starting a session thread")(e));
            served.ended(id, &result, false);
        }
    }
    // New connections are refused from now on, not left in the backlog.
    drop(listener);
    Ok(served.stop(grace, shutdown, &abort))
}

/// Runs one accepted connection's session; returns its result and whether
/// its machine says the peer spent a guess at the code
/// ([`StreamMachine::failed_guess`]), which a reset hides from the result.
fn run_connection<M, A>(
    mut stream: TcpStream,
    make: &dyn Fn(Instant) -> (M, A),
    abort: &Abort,
) -> (Result<(), DriverError>, bool)
where
    M: StreamMachine,
    A: App<M>,
{
    if let Err(e) = stream.set_nodelay(true) {
        return (Err(DriverError::io("setting TCP_NODELAY")(e)), false);
    }
    let (mut machine, mut app) = make(Instant::now());
    let result = run_stream_until(&mut machine, &mut stream, &mut app, abort);
    (result, machine.failed_guess())
}

/// Runs a datagram machine on `socket` until it is done or `shutdown` is
/// triggered (checked at least every 250 ms). The loop is
/// [`DatagramCore`]'s; the application's
/// [`Work`](super::Work) runs in place.
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
    let mut core = DatagramCore::new(machine, app);
    loop {
        let now = Instant::now();
        match core.next(now) {
            DatagramNext::Send(d) => {
                let sent = socket.send_to(&d.payload, d.peer);
                core.sent(Instant::now(), sent);
            }
            DatagramNext::Receive { .. } if shutdown.is_triggered() => core.stop(now),
            DatagramNext::Receive { until } => {
                let left = until.map_or(SHUTDOWN_CHECK, |t| t.saturating_duration_since(now));
                // A zero timeout is refused by the socket; the core fires a
                // due timer itself, so a few microseconds' wait is harmless.
                let wait = left.clamp(Duration::from_millis(1), SHUTDOWN_CHECK);
                socket
                    .set_read_timeout(Some(wait))
                    .map_err(DriverError::io("setting the read timeout"))?;
                match socket.recv_from(core.receive_buffer()) {
                    Ok((n, from)) => core.received(Instant::now(), from, n),
                    Err(e) => core.receive_failed(Instant::now(), e),
                }
            }
            // In place: this thread is the loop's own.
            DatagramNext::Work => {
                if let Some(work) = core.take_work() {
                    let finish = work.run();
                    core.worked(Instant::now(), finish);
                }
            }
            DatagramNext::AwaitWork => unreachable!("work runs in place, so it is never awaited"),
            DatagramNext::Done(result) => return result,
        }
    }
}
