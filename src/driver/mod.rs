//! Drivers: the plumbing that puts machines on real I/O. The stream loop is
//! written once, sans-IO, in [`stream`]; each I/O style ([`blocking`], and
//! `async_tokio` with the `tokio` feature, and the simulator in `testing`) is a thin
//! shell around it, generic over the machine contract; no protocol logic
//! lives here. Serving (admission, the stop sequence, the report) is
//! likewise written once, sans-IO, in the server core that both `serve`s
//! drive, and the datagram loop is written once, sans-IO, in [`datagram`].
//! (The modules are named `stream` and `async_tokio`, not `core` and
//! `tokio`, so that inside this crate those names stay the crates'.)
//!
//! What a session does with its machine's events (print a reply, write a
//! chunk, answer an offer) is an [`App`], so the same loop serves every
//! protocol, and the in-memory test pair uses the same apps.

use std::io;
use std::time::Instant;

use crate::machine::{Machine, StreamMachine};
pub use listen::Limits;
pub use shutdown::{ServeReport, Shutdown};
pub use work::{Finish, Work};

#[cfg(feature = "tokio")]
pub mod async_tokio;
pub mod blocking;
pub mod datagram;
pub mod listen;
mod penalty;
pub(crate) mod server;
pub mod shutdown;
mod slot;
pub mod stream;
pub mod work;

/// The application side of a session: it reacts to the machine's events,
/// and may answer them by calling the machine's methods, at once or, when
/// the answer needs a call that may block, through [`poll_work`](App::poll_work).
pub trait App<M: Machine> {
    /// One event from the machine. An `Err` ends the session with that error.
    fn on_event(&mut self, machine: &mut M, now: Instant, event: M::Event) -> io::Result<()>;

    /// An answer that cannot be given at once, for the driver to prepare
    /// off its event loop (see [`work`]): a call that may block
    /// ([`Work::new`], on the tokio driver a job on its blocking pool) or a
    /// future ([`Work::future`], on the tokio driver a task of its own, so
    /// an answer owed holds no thread). Asked for whenever the machine has
    /// nothing more to say. While it runs, the machine gets no timer and no
    /// event is drained from it (a driver may read ahead into its buffer,
    /// as far as its input room allows: see [`stream`]); its [`Finish`] then
    /// answers what the work was for. The default has none.
    fn poll_work(&mut self) -> Option<Work<Self, M>>
    where
        Self: Sized,
    {
        None
    }

    /// The session is ending with `result`: the machine ended, or the
    /// transport failed (its error, then). The stream loop calls it once,
    /// before it asks for the application's last [`poll_work`](App::poll_work)
    /// (the datagram loop, which has no session to end, never does):
    /// an application holding something it must not lose (the receiver's
    /// verified files waiting for their group commit) queues the work that
    /// keeps it. The machine gets no more input, and nothing more is sent.
    /// The default does nothing.
    fn on_end(&mut self, _result: &Result<(), DriverError>) {}
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

/// Why a driven session ended badly: each cause its own variant, so that
/// a server or a CLI tells them apart by matching, never by text.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The machine failed (the peer broke the protocol, timed out, ...).
    #[error(transparent)]
    Machine(#[from] crate::Error),
    /// The transport failed.
    #[error("{context}: {source}")]
    Io {
        /// What the driver was doing ("reading from the peer", ...).
        context: &'static str,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The application failed: its [`App::on_event`], or the result of its
    /// [`Work`], returned this error (a full disk, say). The machine was
    /// aborted and told the peer why.
    #[error(transparent)]
    App(io::Error),
    /// The peer took none of our output for `waited`, the machine's
    /// [`write_timeout`](StreamMachine::write_timeout) (it stopped reading).
    #[error("writing to the peer, which took nothing for {waited:?} (it stopped reading)")]
    StalledPeer {
        /// How long the last write waited without progress.
        waited: std::time::Duration,
    },
}

impl DriverError {
    pub(crate) fn io(context: &'static str) -> impl FnOnce(io::Error) -> DriverError {
        move |source| DriverError::Io { context, source }
    }

    /// Whether the session ended because the peer took none of our output
    /// for the machine's write timeout ([`DriverError::StalledPeer`]).
    pub fn is_stalled_peer(&self) -> bool {
        matches!(self, DriverError::StalledPeer { .. })
    }

    /// Whether the peer reset or closed the connection under a read or a
    /// write (the session was cut, not refused).
    pub fn is_broken_connection(&self) -> bool {
        matches!(self, DriverError::Io { source, .. } if stream::is_reset(source))
    }
}

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
