//! The tokio driver: one task per connection, the same server core and the
//! same sans-IO loop as the blocking driver ([`super::stream`]), and
//! `select!` between input, the machine's deadline and an abort. Apps run
//! inline on the task: keep them short, and hand what waits to the driver
//! as a [`Work`]: a blocking job runs on tokio's blocking
//! pool, an async one as a task of its own ([`spawn_work`]).

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::task::{self, JoinError, JoinHandle, JoinSet};

use super::datagram::{DatagramCore, DatagramNext};
use super::server::{Admit, ServeCore, SessionId, StopStep};
use super::shutdown::{ServeReport, Shutdown, SHUTDOWN_REASON};
use super::stream::{Next, StreamCore};
use super::work::Job;
use super::{Abort, App, DriverError, Finish, Limits, Work};
use crate::machine::{DatagramMachine, StreamMachine};

/// Runs one session of `machine` over `io` to its end, handing every event
/// to `app`. Returns the machine's final result.
pub async fn run_stream<M, T, A>(
    machine: &mut M,
    io: &mut T,
    app: &mut A,
) -> Result<(), DriverError>
where
    M: StreamMachine + 'static,
    T: AsyncRead + AsyncWrite + Unpin,
    A: App<M> + 'static,
{
    run_stream_until(machine, io, app, &Abort::new()).await
}

/// [`run_stream`] that also ends when `abort` is requested: the machine is
/// aborted at once (telling the peer why) and the session ends as its
/// protocol says.
///
/// The application's [`Work`] runs off the session's task
/// (see [`spawn_work`]; hence `'static`: it may outlive a cancelled
/// session's future, and then runs to its end unawaited).
pub async fn run_stream_until<M, T, A>(
    machine: &mut M,
    io: &mut T,
    app: &mut A,
    abort: &Abort,
) -> Result<(), DriverError>
where
    M: StreamMachine + 'static,
    T: AsyncRead + AsyncWrite + Unpin,
    A: App<M> + 'static,
{
    let mut core = StreamCore::new(machine, app, abort);
    // The application's work: a task, or a job on tokio's blocking pool.
    let mut running = None;
    // One timer and one abort watch for the whole session: making either
    // anew for every read or write (a timer-wheel entry, a waiter in the
    // abort's list) costs more than an echo round trip's own work.
    let mut timer = Timer::new();
    let aborted = abort.wait();
    tokio::pin!(aborted);
    let mut abort_seen = false;
    // The clock is read once per wait, as it ends: the core's steps
    // between two waits share one reading.
    let mut now = Instant::now();
    loop {
        let watch_abort = !abort_seen && core.awaits_abort();
        match core.next(now) {
            Next::Write { until } => {
                timer.arm(until);
                let written = {
                    let parts = core.transmit();
                    tokio::select! {
                        biased;
                        written = write_parts(io, &parts) => Some(written),
                        // Without a write limit, a timer left from a read
                        // must not end a write.
                        () = timer.fired(), if until.is_some() && timer.is_armed() => None,
                    }
                };
                now = Instant::now();
                match written {
                    Some(Ok(n)) => core.wrote(now, n),
                    Some(Err(e)) => core.write_failed(now, e),
                    None => core.timed_out(now),
                }
            }
            Next::Flush => {
                let flushed = io.flush().await;
                now = Instant::now();
                match flushed {
                    Ok(()) => core.flushed(now),
                    Err(e) => core.write_failed(now, e),
                }
            }
            Next::Read { max, until } => {
                timer.arm(until);
                // Straight into the machine's own buffer.
                let buf = core.read_buffer(max);
                let woke = tokio::select! {
                    biased;
                    read = io.read(buf) => Woke::Read(read),
                    () = timer.fired(), if timer.is_armed() => Woke::Deadline,
                    // The core applies the abort at its next step. (Requested
                    // after the core last looked, it must still end this wait.)
                    () = &mut aborted, if watch_abort => Woke::Abort,
                };
                now = Instant::now();
                match woke {
                    Woke::Read(Ok(n)) => core.filled(now, n),
                    Woke::Read(Err(e)) => core.read_failed(now, e),
                    Woke::Deadline => core.timed_out(now),
                    Woke::Abort => abort_seen = true,
                }
            }
            Next::Sleep(until) => {
                timer.arm(Some(until));
                timer.fired().await;
                now = Instant::now();
                core.timed_out(now);
            }
            Next::Work => {
                if let Some(work) = core.take_work() {
                    running = Some(spawn_work(work));
                }
            }
            Next::AwaitWork => {
                let Some(job) = running.as_mut() else {
                    unreachable!("the core awaits only work this loop started")
                };
                // While the disk works, the network goes on: the peer's
                // next bytes are read into the machine's buffer, as far as
                // the core allows (handed out once the work is done).
                let ahead = core.read_while_working();
                let buf: &mut [u8] = match ahead {
                    Some(max) => core.read_buffer(max),
                    None => &mut [],
                };
                let awaited = tokio::select! {
                    biased;
                    done = job => Awaited::Worked(done),
                    read = io.read(buf), if ahead.is_some() => Awaited::Read(read),
                    () = &mut aborted, if watch_abort => Awaited::Abort,
                };
                now = Instant::now();
                match awaited {
                    Awaited::Worked(done) => {
                        running = None;
                        let finish = done.unwrap_or_else(|e| {
                            Finish::failed(io::Error::other(format!(
                                "the application's work failed: {e}"
                            )))
                        });
                        core.worked(now, finish);
                    }
                    Awaited::Read(Ok(n)) => core.filled(now, n),
                    Awaited::Read(Err(e)) => core.read_failed(now, e),
                    Awaited::Abort => {
                        abort_seen = true;
                        core.woken(now);
                    }
                }
            }
            Next::Close => {
                let _ = io.shutdown().await;
                now = Instant::now();
                core.closed(now);
            }
            Next::Done(result) => return result,
        }
    }
}

/// Starts the application's `work` off the session's task: a blocking job
/// on tokio's blocking pool (`spawn_blocking`), so no runtime worker waits
/// on a disk; an async job ([`Work::future`]) as a
/// task of its own (`tokio::spawn`), so an answer owed holds no thread,
/// blocking or not. Either way the session awaits the handle, which
/// yields the work's [`Finish`] (or the panic that ended it).
pub fn spawn_work<A, M>(work: Work<A, M>) -> JoinHandle<Finish<A, M>>
where
    A: 'static,
    M: 'static,
{
    match work.into_job() {
        Job::Blocking(job) => task::spawn_blocking(job),
        Job::Async(job) => task::spawn(job),
    }
}

/// One write of `parts`: a plain write when there is one part (on a
/// socket, `send` costs less than a `writev` of one buffer).
async fn write_parts<T>(io: &mut T, parts: &[std::io::IoSlice<'_>]) -> io::Result<usize>
where
    T: AsyncWrite + Unpin,
{
    match parts {
        [one] => io.write(one).await,
        parts => io.write_vectored(parts).await,
    }
}

/// What ended a wait for input.
enum Woke {
    Read(io::Result<usize>),
    Deadline,
    Abort,
}

/// What ended a wait for the application's work (`T`: the work's result).
enum Awaited<T> {
    Worked(T),
    Read(io::Result<usize>),
    Abort,
}

/// A session's one timer. It is set to fire no later than the deadline the
/// core hands out, and moved only when that deadline is earlier than the
/// one it is set to (or it has fired): firing early is harmless (the core
/// ignores early timeouts), and an idle deadline that moves later with
/// every frame then costs one timer entry per idle period, not per frame.
struct Timer {
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
    /// Where `sleep` is set, while it has not fired.
    armed: Option<Instant>,
}

impl Timer {
    fn new() -> Timer {
        Timer {
            sleep: Box::pin(tokio::time::sleep(Duration::ZERO)),
            armed: None,
        }
    }

    /// Makes the timer fire no later than `deadline` (`None`: no need).
    fn arm(&mut self, deadline: Option<Instant>) {
        let Some(deadline) = deadline else { return };
        if self.armed.is_none_or(|at| at > deadline) {
            self.sleep.as_mut().reset(deadline.into());
            self.armed = Some(deadline);
        }
    }

    fn is_armed(&self) -> bool {
        self.armed.is_some()
    }

    /// Completes when the timer fires (poll only while armed).
    async fn fired(&mut self) {
        self.sleep.as_mut().await;
        self.armed = None;
    }
}

/// Sleeps until `deadline`, or forever when there is none.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

/// Binds a listener on `addr` with `backlog` pending connections, as
/// [`listen::bind`](super::listen::bind) does, for this runtime. Call it
/// within a tokio runtime.
pub fn bind(addr: std::net::SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    let listener = super::listen::bind(addr, backlog)?;
    listener.set_nonblocking(true)?;
    TcpListener::from_std(listener)
}

/// Serves `listener` until `shutdown` is triggered: each connection gets a
/// task, a machine and an app from `make`, at most `limits.max_connections`
/// at once; a connection from a source already running
/// `limits.max_per_source` sessions is closed at once, and counted.
///
/// On shutdown it stops accepting, gives sessions `grace` to end (less if
/// the shutdown is triggered again), aborts the rest (telling each peer
/// why), waits for them, and reports how every session ended.
pub async fn serve<M, A, F>(
    listener: TcpListener,
    limits: impl Into<Limits>,
    grace: Duration,
    shutdown: Shutdown,
    make: F,
) -> io::Result<ServeReport>
where
    M: StreamMachine + Send + 'static,
    A: App<M> + Send + 'static,
    F: Fn(Instant) -> (M, A) + Send + Sync + 'static,
{
    let make = Arc::new(make);
    let abort = Abort::new();
    let mut served = Served::new(limits.into().checked()?);
    loop {
        let has_room = served.core.has_room();
        let accepted = tokio::select! {
            () = shutdown.triggered() => break,
            done = served.tasks.join_next_with_id(), if !served.tasks.is_empty() => {
                served.ended(done);
                continue;
            }
            accepted = listener.accept(), if has_room => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(conn) => conn,
            // Transient accept failures (EMFILE, ECONNABORTED) must not stop the server.
            Err(e) => {
                if let Some(pause) = served.core.accept_failed(Instant::now(), &e) {
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        () = shutdown.triggered() => break,
                    }
                }
                continue;
            }
        };
        // Refused (told so if penalized, and closed here): no task is ever
        // started for it.
        let id = match served.core.accepted(Instant::now(), peer) {
            Admit::Start(id) => id,
            refused => {
                super::listen::close_refused(socket2::SockRef::from(&stream), refused.notice());
                continue;
            }
        };
        let (make, abort, running) = (make.clone(), abort.clone(), shutdown.session());
        let task = served.tasks.spawn(async move {
            let _running = running;
            if let Err(e) = stream.set_nodelay(true) {
                return (Err(DriverError::io("setting TCP_NODELAY")(e)), false);
            }
            let mut stream = stream;
            let (mut machine, mut app) = make(Instant::now());
            let result = run_stream_until(&mut machine, &mut stream, &mut app, &abort).await;
            if let Err(e) = &result {
                tracing::warn!(%peer, error = %e, "session failed");
            }
            // Whether the peer spent a guess at the code, which a reset
            // hides from the result.
            (result, machine.failed_guess())
        });
        served.ids.insert(task.id(), id);
    }
    // New connections are refused from now on, not left in the backlog.
    drop(listener);
    let report = served.stop(grace, &shutdown, &abort).await;
    served.tasks.shutdown().await;
    Ok(report)
}

/// A tokio server's state: the server core, the session tasks, and which
/// session each task runs.
struct Served {
    core: ServeCore,
    /// Each task ends with its session's result and whether the peer
    /// spent a guess at the code ([`StreamMachine::failed_guess`]).
    tasks: JoinSet<(Result<(), DriverError>, bool)>,
    ids: HashMap<task::Id, SessionId>,
}

type Joined = Option<Result<(task::Id, (Result<(), DriverError>, bool)), JoinError>>;

impl Served {
    fn new(limits: Limits) -> Served {
        Served {
            core: ServeCore::new(limits),
            tasks: JoinSet::new(),
            ids: HashMap::new(),
        }
    }

    /// A task ended: the core counts how, and frees its place.
    fn ended(&mut self, done: Joined) {
        let (task, (result, guessed)) = match done {
            Some(Ok(ended)) => ended,
            Some(Err(e)) => (
                e.id(),
                (Err(DriverError::io("session task")(e.into())), false),
            ),
            None => return,
        };
        if let Some(id) = self.ids.remove(&task) {
            self.core.ended(Instant::now(), id, &result, guessed);
        }
    }

    /// The stop sequence, as the server core says.
    async fn stop(&mut self, grace: Duration, shutdown: &Shutdown, abort: &Abort) -> ServeReport {
        self.core.stop(Instant::now(), grace);
        loop {
            match self.core.stop_step(Instant::now(), shutdown.is_urgent()) {
                StopStep::Wait { until, or_urgent } => tokio::select! {
                    done = self.tasks.join_next_with_id() => self.ended(done),
                    () = tokio::time::sleep_until(until.into()) => {}
                    () = shutdown.urgent(), if or_urgent => {}
                },
                StopStep::AbortAll => abort.request(SHUTDOWN_REASON),
                StopStep::Cut => self.tasks.abort_all(),
                StopStep::Done(report) => return report,
            }
        }
    }
}

/// Runs a datagram machine on `socket` until it is done or `shutdown`
/// completes. The loop is [`DatagramCore`]'s;
/// the application's [`Work`] runs off the loop's task, as
/// [`spawn_work`] says (hence `'static`, as for [`run_stream`]), and a
/// shutdown waits for a work that is running.
pub async fn run_datagram<M, A>(
    machine: &mut M,
    socket: &UdpSocket,
    app: &mut A,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DriverError>
where
    M: DatagramMachine + 'static,
    A: App<M> + 'static,
{
    let mut core = DatagramCore::new(machine, app);
    let mut running = None;
    tokio::pin!(shutdown);
    loop {
        match core.next(Instant::now()) {
            DatagramNext::Send(d) => {
                let sent = socket.send_to(&d.payload, d.peer).await;
                core.sent(Instant::now(), sent);
            }
            DatagramNext::Receive { until } => {
                let buf = core.receive_buffer();
                let woke = tokio::select! {
                    received = socket.recv_from(buf) => Some(received),
                    () = sleep_until(until) => None,
                    () = &mut shutdown => {
                        core.stop(Instant::now());
                        continue;
                    }
                };
                match woke {
                    Some(Ok((n, from))) => core.received(Instant::now(), from, n),
                    Some(Err(e)) => core.receive_failed(Instant::now(), e),
                    None => core.timed_out(Instant::now()),
                }
            }
            DatagramNext::Work => {
                if let Some(work) = core.take_work() {
                    running = Some(spawn_work(work));
                }
            }
            DatagramNext::AwaitWork => {
                let Some(job) = running.take() else {
                    unreachable!("the core awaits only work this loop started")
                };
                let finish = job.await.unwrap_or_else(|e| {
                    Finish::failed(io::Error::other(format!(
                        "the application's work failed: {e}"
                    )))
                });
                core.worked(Instant::now(), finish);
            }
            DatagramNext::Done(result) => return result,
        }
    }
}
