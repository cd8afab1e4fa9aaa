//! Stopping a server in two steps, as a person at a terminal expects: the
//! first request stops accepting and gives running sessions a grace period
//! to finish; at its end, or at a second request, every session still
//! running is aborted, which tells its peer why (a file transfer keeps its
//! partial file and resumes on the next run). The server then waits for the
//! sessions to end and reports how each one ended.
//!
//! Shared by both drivers' `serve`; it holds flags and counters, no I/O
//! beyond the one connection that wakes a blocked `accept`.

use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What an aborted session's peer is told.
pub const SHUTDOWN_REASON: &str =
    "the server is shutting down; try again later (a file transfer resumes where it stopped)";

/// How long aborted sessions get to tell their peers and end before their
/// connections are cut (an abort queues one frame; a peer that does not
/// read it must not hold the shutdown).
pub const ABORT_WAIT: Duration = Duration::from_secs(5);

/// Stops a running `serve` from another thread or task (a Ctrl-C handler,
/// a test). Clones share the state.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// 0 running, 1 stopping (grace), 2 aborting now.
    level: AtomicU8,
    /// Sessions the server is running, for a handler to report.
    running: AtomicUsize,
    /// Where to connect to wake a blocking `accept`.
    wake: Mutex<Option<SocketAddr>>,
    #[cfg(feature = "tokio")]
    changed: ::tokio::sync::Notify,
}

impl Shutdown {
    /// A handle that has not been triggered.
    pub fn new() -> Self {
        Shutdown::default()
    }

    /// The first call stops accepting and starts the grace period; the
    /// second aborts every running session now.
    pub fn trigger(&self) {
        self.trigger_counted();
    }

    /// [`trigger`](Self::trigger), returning how many times it has been
    /// called, this call included (for a handler that says what happens next).
    pub fn trigger_counted(&self) -> u8 {
        let level = self
            .inner
            .level
            .fetch_add(1, Ordering::SeqCst)
            .saturating_add(1);
        let wake = *self.inner.wake.lock().unwrap_or_else(|p| p.into_inner());
        if let (1, Some(addr)) = (level, wake) {
            // Unblocks `accept`; the connection is dropped at once.
            let _ = TcpStream::connect_timeout(&addr, Duration::from_secs(1));
        }
        #[cfg(feature = "tokio")]
        self.inner.changed.notify_waiters();
        level
    }

    /// Whether [`trigger`](Self::trigger) was called: stop accepting.
    pub fn is_triggered(&self) -> bool {
        self.inner.level.load(Ordering::SeqCst) >= 1
    }

    /// Whether it was called twice: abort running sessions without waiting.
    pub fn is_urgent(&self) -> bool {
        self.inner.level.load(Ordering::SeqCst) >= 2
    }

    /// Sessions the server is running now.
    pub fn running(&self) -> usize {
        self.inner.running.load(Ordering::SeqCst)
    }

    /// Counts a session as running until the returned guard is dropped.
    pub(crate) fn session(&self) -> Running {
        self.inner.running.fetch_add(1, Ordering::SeqCst);
        Running(self.clone())
    }

    pub(crate) fn wake_accept_at(&self, addr: SocketAddr) {
        *self.inner.wake.lock().unwrap_or_else(|p| p.into_inner()) = Some(addr);
    }

    /// Completes once the level is at least `level`.
    #[cfg(feature = "tokio")]
    async fn reached(&self, level: u8) {
        loop {
            let woken = self.inner.changed.notified();
            ::tokio::pin!(woken);
            // Registered before the check, so a trigger in between is not missed.
            woken.as_mut().enable();
            if self.inner.level.load(Ordering::SeqCst) >= level {
                return;
            }
            woken.await;
        }
    }

    /// Completes at the first [`trigger`](Self::trigger).
    #[cfg(feature = "tokio")]
    pub async fn triggered(&self) {
        self.reached(1).await;
    }

    /// Completes at the second [`trigger`](Self::trigger).
    #[cfg(feature = "tokio")]
    pub async fn urgent(&self) {
        self.reached(2).await;
    }
}

/// One running session, counted in [`Shutdown::running`] until dropped.
#[derive(Debug)]
pub(crate) struct Running(Shutdown);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.inner.running.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What a server did, reported when it stops.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServeReport {
    /// Sessions that ended as the protocol says.
    pub ok: u64,
    /// Sessions that ended with an error of their own (the peer's, the
    /// transport's or the application's).
    pub failed: u64,
    /// Sessions the shutdown aborted (their peers were told why).
    pub aborted: u64,
    /// Sessions that had not ended when the server gave up waiting for
    /// them (their connections were cut).
    pub unfinished: u64,
    /// Connections closed at once because their source address already
    /// ran its cap of sessions (see [`Limits`](super::Limits)).
    pub refused: u64,
}

impl ServeReport {
    /// Counts a session that ended with `result`; `aborted`: the shutdown
    /// had asked it to end by then.
    pub(crate) fn count<E>(&mut self, result: &Result<(), E>, aborted: bool) {
        match (result, aborted) {
            (Ok(()), _) => self.ok += 1,
            (Err(_), true) => self.aborted += 1,
            (Err(_), false) => self.failed += 1,
        }
    }
}
