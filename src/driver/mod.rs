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

pub mod blocking;
pub mod listen;
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
    /// The session is over.
    Done(Result<(), crate::Error>),
    /// The application failed; the machine was aborted and what it queued
    /// to tell the peer is in the batch.
    AppFailed(DriverError),
}

/// Drains a stream machine's outputs into `out` (handing events to `app`)
/// until it waits, ends, or `out` holds a batch worth writing. This is the
/// whole of what a driver does with a machine; the loops only add I/O.
pub(crate) fn drain<M, A>(machine: &mut M, app: &mut A, out: &mut Batch) -> Step
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
            Output::Event(e) => {
                if let Err(source) = app.on_event(machine, now, e) {
                    return abort(
                        machine,
                        out,
                        DriverError::Io {
                            context: "application",
                            source,
                        },
                    );
                }
            }
            Output::Wait(deadline) => return Step::Wait(deadline),
            Output::Done(result) => return Step::Done(result),
        }
    }
}

/// Aborts the machine after its application failed, gathering what it
/// queues to tell the peer why (events after the abort are dropped).
fn abort<M: StreamMachine>(machine: &mut M, out: &mut Batch, error: DriverError) -> Step {
    machine.abort(error.to_string());
    // Bounded: an aborted machine queues one frame and ends.
    for _ in 0..64 {
        match machine.poll_output() {
            Output::Transmit(bytes) => out.push(bytes),
            Output::Event(_) => {}
            Output::Wait(_) | Output::Done(_) => break,
        }
    }
    Step::AppFailed(error)
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
