//! The tokio driver: one task per connection, a semaphore for the cap, the
//! same sans-IO loop as the blocking driver ([`super::core`]), and
//! `select!` between input, the machine's deadline and an abort. Apps run inline on the task: keep them short.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::core::{Next, StreamCore};
use super::listen::{AcceptBackoff, Refusals, Sources};
use super::shutdown::{ServeReport, Shutdown};
use super::{Abort, App, DriverError, Limits};
use crate::machine::{DatagramMachine, Output, StreamMachine};

/// Runs one session of `machine` over `io` to its end, handing every event
/// to `app`. Returns the machine's final result.
pub async fn run_stream<M, T, A>(
    machine: &mut M,
    io: &mut T,
    app: &mut A,
) -> Result<(), DriverError>
where
    M: StreamMachine,
    T: AsyncRead + AsyncWrite + Unpin,
    A: App<M>,
{
    run_stream_until(machine, io, app, &Abort::new()).await
}

/// [`run_stream`] that also ends when `abort` is requested: the machine is
/// aborted at once (telling the peer why) and the session ends as its
/// protocol says.
pub async fn run_stream_until<M, T, A>(
    machine: &mut M,
    io: &mut T,
    app: &mut A,
    abort: &Abort,
) -> Result<(), DriverError>
where
    M: StreamMachine,
    T: AsyncRead + AsyncWrite + Unpin,
    A: App<M>,
{
    let mut core = StreamCore::new(machine, app, abort);
    loop {
        let now = Instant::now();
        match core.next(now) {
            Next::Write { until } => {
                let written = {
                    let parts = core.transmit();
                    let write = io.write_vectored(&parts);
                    match until {
                        Some(until) => tokio::time::timeout_at(until.into(), write).await.ok(),
                        None => Some(write.await),
                    }
                };
                match written {
                    Some(Ok(n)) => core.wrote(Instant::now(), n),
                    Some(Err(e)) => core.write_failed(Instant::now(), e),
                    None => core.timed_out(Instant::now()),
                }
            }
            Next::Flush => match io.flush().await {
                Ok(()) => core.flushed(Instant::now()),
                Err(e) => core.write_failed(Instant::now(), e),
            },
            Next::Read { max, until } => {
                let watch_abort = core.awaits_abort();
                // Straight into the machine's own buffer.
                let buf = core.read_buffer(max);
                let woke = tokio::select! {
                    read = io.read(buf) => Woke::Read(read),
                    () = sleep_until(until) => Woke::Deadline,
                    // The core applies the abort at its next step. (Requested
                    // after the core last looked, it must still end this wait.)
                    () = abort.wait(), if watch_abort => Woke::Abort,
                };
                match woke {
                    Woke::Read(Ok(n)) => core.filled(Instant::now(), n),
                    Woke::Read(Err(e)) => core.read_failed(Instant::now(), e),
                    Woke::Deadline => core.timed_out(Instant::now()),
                    Woke::Abort => {}
                }
            }
            Next::Sleep(until) => {
                sleep_until(Some(until)).await;
                core.timed_out(Instant::now());
            }
            Next::Close => {
                let _ = io.shutdown().await;
                core.closed(Instant::now());
            }
            Next::Done(result) => return result,
        }
    }
}

/// What ended a wait for input.
enum Woke {
    Read(io::Result<usize>),
    Deadline,
    Abort,
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
    let limits = limits.into();
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let sources = Sources::new(limits.max_per_source);
    let abort = Abort::new();
    let mut backoff = AcceptBackoff::default();
    let mut refusals = Refusals::default();
    let mut sessions = JoinSet::new();
    let mut report = ServeReport::default();
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => p.expect("semaphore never closed"),
            () = shutdown.triggered() => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.triggered() => break,
        };
        let (stream, peer) = match accepted {
            Ok(conn) => conn,
            // Transient accept failures (EMFILE, ECONNABORTED) must not stop the server.
            Err(e) => {
                if let Some(pause) = backoff.after_error(&e) {
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        () = shutdown.triggered() => break,
                    }
                }
                continue;
            }
        };
        backoff.after_success();
        let Some(slot) = sources.admit(peer.ip()) else {
            // Dropped here, with its permit: no task is ever started for it.
            refusals.refuse(peer, limits.max_per_source);
            continue;
        };
        while let Some(done) = sessions.try_join_next() {
            tally(&mut report, done, &abort);
        }
        let (make, abort, running) = (make.clone(), abort.clone(), shutdown.session());
        sessions.spawn(async move {
            let _running = running;
            let _permit = permit;
            // Declared after the permit, so dropped before it: a connection
            // let in by the freed permit finds its source's count already down.
            let _slot = slot;
            let mut stream = stream;
            stream
                .set_nodelay(true)
                .map_err(DriverError::io("setting TCP_NODELAY"))?;
            let (mut machine, mut app) = make(Instant::now());
            let result = run_stream_until(&mut machine, &mut stream, &mut app, &abort).await;
            if let Err(e) = &result {
                tracing::warn!(%peer, error = %e, "session failed");
            }
            result
        });
    }
    // New connections are refused from now on, not left in the backlog.
    drop(listener);
    tokio::select! {
        () = join_all(&mut sessions, &mut report, &abort) => {}
        () = tokio::time::sleep(grace) => {}
        () = shutdown.urgent() => {}
    }
    if !sessions.is_empty() {
        abort.request(super::shutdown::SHUTDOWN_REASON);
        let ended = join_all(&mut sessions, &mut report, &abort);
        let _ = tokio::time::timeout(super::shutdown::ABORT_WAIT, ended).await;
    }
    report.unfinished = sessions.len() as u64;
    sessions.shutdown().await;
    report.refused = refusals.total;
    Ok(report)
}

type Ended = Result<Result<(), DriverError>, tokio::task::JoinError>;

/// Waits for every session, counting how each ended.
async fn join_all(
    sessions: &mut JoinSet<Result<(), DriverError>>,
    report: &mut ServeReport,
    abort: &Abort,
) {
    while let Some(done) = sessions.join_next().await {
        tally(report, done, abort);
    }
}

fn tally(report: &mut ServeReport, done: Ended, abort: &Abort) {
    let result = done.unwrap_or_else(|e| Err(DriverError::io("session task")(e.into())));
    report.count(&result, abort.requested().is_some());
}

/// Runs a datagram machine on `socket` until it is done or `shutdown` completes.
pub async fn run_datagram<M, A>(
    machine: &mut M,
    socket: &UdpSocket,
    app: &mut A,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DriverError>
where
    M: DatagramMachine,
    A: App<M>,
{
    let mut buf = vec![0u8; 65_536];
    tokio::pin!(shutdown);
    loop {
        let now = Instant::now();
        let deadline = loop {
            match machine.poll_output() {
                Output::Transmit(d) => {
                    if let Err(e) = socket.send_to(&d.payload, d.peer).await {
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
        tokio::select! {
            received = socket.recv_from(&mut buf) => match received {
                Ok((n, from)) => machine.handle_datagram(Instant::now(), from, &buf[..n]),
                Err(e) if matches!(e.kind(), io::ErrorKind::ConnectionRefused | io::ErrorKind::Interrupted) => {}
                Err(e) => return Err(DriverError::io("receiving a datagram")(e)),
            },
            () = sleep_until(deadline) => machine.handle_timeout(Instant::now()),
            () = &mut shutdown => return Ok(()),
        }
    }
}
