//! Drivers: the plumbing that puts machines on real I/O. One loop per I/O
//! style ([`blocking`], and `tokio` with that feature), generic over the
//! machine contract; no protocol logic lives here.
//!
//! What a session does with its machine's events (print a reply, write a
//! chunk, answer an offer) is an [`App`], so the same loop serves every
//! protocol, and the in-memory test pair uses the same apps.

use std::io;
use std::time::Instant;

use crate::machine::{Machine, Output, StreamMachine};
pub use listen::Limits;
pub use shutdown::{ServeReport, Shutdown};

pub mod blocking;
pub mod listen;
pub mod shutdown;
#[cfg(feature = "tokio")]
pub mod tokio;

/// The application side of a session: it reacts to the machine's events,
/// and may answer them by calling the machine's methods.
pub trait App<M: Machine> {
    /// One event from the machine. An `Err` ends the session with that error.
    fn on_event(&mut self, machine: &mut M, now: Instant, event: M::Event) -> io::Result<()>;
}

impl<M, F> App<M> for F
where
    M: Machine,
    F: FnMut(&mut M, Instant, M::Event) -> io::Result<()>,
{
    fn on_event(&mut self, machine: &mut M, now: Instant, event: M::Event) -> io::Result<()> {
        self(machine, now, event)
    }
}

/// An app that ignores every event (a server that only echoes, say).
#[derive(Debug, Default, Clone, Copy)]
pub struct Ignore;

impl<M: Machine> App<M> for Ignore {
    fn on_event(&mut self, _: &mut M, _: Instant, _: M::Event) -> io::Result<()> {
        Ok(())
    }
}

/// Why a driven session ended badly.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The machine failed (the peer broke the protocol, timed out, ...).
    #[error(transparent)]
    Machine(#[from] crate::Error),
    /// The transport or the application failed.
    #[error("{context}: {source}")]
    Io {
        /// What the driver was doing.
        context: &'static str,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl DriverError {
    pub(crate) fn io(context: &'static str) -> impl FnOnce(io::Error) -> DriverError {
        move |source| DriverError::Io { context, source }
    }

    /// The peer took none of our output for the machine's write timeout.
    pub(crate) fn stalled_peer() -> DriverError {
        DriverError::io("writing to the peer, which stopped reading")(
            io::ErrorKind::TimedOut.into(),
        )
    }
}

/// The machine's write timeout, as a transport takes it (a zero limit, from
/// a config the machine refuses anyway, would mean "none" to some).
pub(crate) fn write_limit<M: StreamMachine>(machine: &M) -> Option<std::time::Duration> {
    machine.write_timeout().filter(|t| !t.is_zero())
}

/// Bytes gathered before one vectored write.
pub(crate) const WRITE_BATCH: usize = 256 * 1024;
/// Bytes read from a transport at once.
pub(crate) const READ_CHUNK: usize = 256 * 1024;

/// Where a drain stopped.
pub(crate) enum Step {
    /// Enough output is gathered: write it, then drain again.
    Flush,
    /// The machine waits for input or for this deadline.
    Wait(Option<Instant>),
    /// The session is over: the application's failure if it failed (the
    /// machine was aborted and has told the peer why), else the machine's
    /// own result.
    Done(Result<(), DriverError>),
}

/// Drains a stream machine's outputs into `out` (handing events to `app`)
/// until it waits, ends, or `out` holds a batch worth writing. This is the
/// whole of what a driver does with a machine; the loops only add I/O.
///
/// When the application fails, the machine is aborted (it queues an
/// `Error` frame telling the peer why, and ends as its protocol says);
/// `app_failed` keeps the application's error for the final result, and
/// later events are dropped: the application has given up on them.
pub(crate) fn drain<M, A>(
    machine: &mut M,
    app: &mut A,
    out: &mut Batch,
    app_failed: &mut Option<DriverError>,
) -> Step
where
    M: StreamMachine,
    A: App<M>,
{
    let now = Instant::now();
    loop {
        match machine.poll_output() {
            Output::Transmit(bytes) => {
                out.push(bytes);
                if out.len >= WRITE_BATCH {
                    return Step::Flush;
                }
            }
            Output::Event(_) if app_failed.is_some() => {}
            Output::Event(e) => {
                if let Err(source) = app.on_event(machine, now, e) {
                    machine.abort(source.to_string());
                    *app_failed = Some(DriverError::Io {
                        context: "application",
                        source,
                    });
                }
            }
            Output::Wait(deadline) => return Step::Wait(deadline),
            Output::Done(result) => {
                let result = match app_failed.take() {
                    Some(error) => Err(error),
                    None => result.map_err(DriverError::from),
                };
                return Step::Done(result);
            }
        }
    }
}

/// After a write to the peer failed (it reset the connection), reads what
/// the peer sent before it went: usually an `Error` frame that says why
/// (a full disk, a refusal), which explains the failure far better than
/// "broken pipe". Returns the machine's error if that input ends it.
pub(crate) fn salvage<M: StreamMachine>(machine: &mut M, input: &[u8]) -> Option<crate::Error> {
    let room = machine.input_room().min(input.len());
    let _ = machine.handle_input(Instant::now(), &input[..room]);
    machine.handle_eof(Instant::now());
    // Bounded: a failed or cut machine queues at most a frame or two and ends.
    for _ in 0..1024 {
        match machine.poll_output() {
            Output::Transmit(_) | Output::Event(_) => {}
            Output::Done(Err(e @ crate::Error::PeerFailed { .. })) => return Some(e),
            Output::Wait(_) | Output::Done(_) => return None,
        }
    }
    None
}

/// How long a driver waits for the peer's last words after a failed write.
pub(crate) const SALVAGE_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Asks a running session to end from outside (a server shutting down, a
/// user's Ctrl-C): the driver aborts the machine with the reason, which
/// tells the peer why, and the session ends as its protocol says. Clones
/// share the request; the first reason given is the one used.
#[derive(Debug, Clone, Default)]
pub struct Abort {
    inner: std::sync::Arc<AbortInner>,
}

#[derive(Debug, Default)]
struct AbortInner {
    reason: std::sync::OnceLock<String>,
    #[cfg(feature = "tokio")]
    wake: ::tokio::sync::Notify,
}

impl Abort {
    /// A handle nobody has used yet.
    pub fn new() -> Abort {
        Abort::default()
    }

    /// Asks the session to end, telling its peer `reason`. A blocking
    /// driver notices at its next wake-up (input, a timer, or the transport
    /// shut for reading, as [`blocking::serve`] does).
    pub fn request(&self, reason: impl Into<String>) {
        let _ = self.inner.reason.set(reason.into());
        #[cfg(feature = "tokio")]
        self.inner.wake.notify_waiters();
    }

    /// The reason, once an abort was requested.
    pub fn requested(&self) -> Option<&str> {
        self.inner.reason.get().map(String::as_str)
    }

    /// Aborts `machine` if a request came and it was not yet acted on.
    pub(crate) fn apply<M: StreamMachine>(&self, machine: &mut M, applied: &mut bool) {
        if let (false, Some(reason)) = (*applied, self.requested()) {
            *applied = true;
            machine.abort(reason.to_string());
        }
    }

    /// Completes once an abort is requested.
    #[cfg(feature = "tokio")]
    pub(crate) async fn wait(&self) {
        loop {
            let woken = self.inner.wake.notified();
            ::tokio::pin!(woken);
            // Registered before the check, so a request in between is not missed.
            woken.as_mut().enable();
            if self.requested().is_some() {
                return;
            }
            woken.await;
        }
    }
}

/// Transmits gathered for one vectored write.
#[derive(Default)]
pub(crate) struct Batch {
    parts: Vec<bytes::Bytes>,
    first: usize,
    len: usize,
}

impl Batch {
    fn push(&mut self, bytes: bytes::Bytes) {
        self.len += bytes.len();
        self.parts.push(bytes);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.first == self.parts.len()
    }

    /// The unwritten parts, as slices for one vectored write.
    pub(crate) fn slices(&self) -> Vec<std::io::IoSlice<'_>> {
        self.parts[self.first..]
            .iter()
            .take(64)
            .map(|b| std::io::IoSlice::new(b))
            .collect()
    }

    /// Marks `n` bytes written.
    pub(crate) fn consume(&mut self, mut n: usize) {
        self.len -= n;
        while n > 0 {
            let part = &mut self.parts[self.first];
            if n < part.len() {
                let _ = part.split_to(n);
                return;
            }
            n -= part.len();
            self.first += 1;
        }
        while self.first < self.parts.len() && self.parts[self.first].is_empty() {
            self.first += 1;
        }
        if self.is_empty() {
            self.parts.clear();
            self.first = 0;
        }
    }
}
