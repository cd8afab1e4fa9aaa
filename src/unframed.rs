//! The bookkeeping every unframed stream machine shares (RFC 862 echo and
//! the legacy roles): the output queue, the events, the clock, the idle
//! timer and the sticky result, so each of those machines holds only its
//! protocol logic. Pure: no I/O.
//!
//! What bounds a session here differs from the framed core
//! ([`Framed`](crate::session::Framed)): with no preamble and no frames,
//! there is no handshake or frame deadline, and every byte received is a
//! whole unit of its protocol (echoed, or one read of at most 1024 bytes),
//! so every input restarts the idle timer. A peer trickling bytes keeps its
//! session; it holds at most `send_buffer` (RFC 862) or one read (legacy)
//! of memory, and one connection of the server's cap. Nor is there an
//! `Error` frame to protect, hence no lingering close: a failed machine
//! ends at once.

use std::collections::VecDeque;
use std::time::Instant;

use bytes::Bytes;

use crate::config::Config;
use crate::error::{Error, UsageError};
use crate::machine::Output;

/// Shared state of an unframed stream machine.
#[derive(Debug)]
pub(crate) struct Unframed<E> {
    pub(crate) config: Config,
    /// The latest time the driver reported.
    pub(crate) now: Instant,
    /// When the peer counts as stalled, if the machine is waiting for it.
    pub(crate) idle_deadline: Instant,
    tx: VecDeque<Bytes>,
    tx_bytes: usize,
    events: VecDeque<E>,
    result: Option<Result<(), Error>>,
}

impl<E> Unframed<E> {
    pub(crate) fn new(config: Config, now: Instant) -> Self {
        Unframed {
            idle_deadline: now + config.idle_timeout,
            config,
            now,
            tx: VecDeque::new(),
            tx_bytes: 0,
            events: VecDeque::new(),
            result: None,
        }
    }

    /// Queues bytes for the peer (nothing for an empty slice).
    pub(crate) fn send(&mut self, bytes: Bytes) {
        if !bytes.is_empty() {
            self.tx_bytes += bytes.len();
            self.tx.push_back(bytes);
        }
    }

    /// Tells the application something.
    pub(crate) fn emit(&mut self, event: E) {
        self.events.push_back(event);
    }

    /// Bytes queued for the peer and not yet handed out.
    pub(crate) fn queued(&self) -> usize {
        self.tx_bytes
    }

    /// Moves the clock forward (never back).
    pub(crate) fn tick(&mut self, now: Instant) {
        self.now = self.now.max(now);
    }

    /// The peer showed signs of life: restart the idle timer.
    pub(crate) fn touch(&mut self) {
        self.idle_deadline = self.now + self.config.idle_timeout;
    }

    /// Whether the idle timer has run out.
    pub(crate) fn idle_expired(&self) -> bool {
        self.now >= self.idle_deadline
    }

    /// Whether the session is over.
    pub(crate) fn is_over(&self) -> bool {
        self.result.is_some()
    }

    /// Ends the session normally (unless it already ended).
    pub(crate) fn finish(&mut self) {
        self.result.get_or_insert(Ok(()));
    }

    /// Fails the session (unless it already ended) and returns the error.
    pub(crate) fn fail(&mut self, error: Error) -> Error {
        self.result.get_or_insert(Err(error.clone()));
        error
    }

    /// Fails the session as stalled if the idle timer has run out.
    pub(crate) fn check_idle(&mut self) {
        if !self.is_over() && self.idle_expired() {
            self.fail(Error::TimedOut(self.config.idle_timeout));
        }
    }

    /// The gate of every `handle_input`: moves the clock, refuses input to
    /// a finished or failed machine and input beyond `room` (which fails
    /// it). `Ok(false)`: nothing to do (empty input).
    pub(crate) fn admit(&mut self, now: Instant, len: usize, room: usize) -> Result<bool, Error> {
        self.tick(now);
        match &self.result {
            Some(Err(e)) => return Err(e.clone()),
            Some(Ok(())) => return Err(UsageError::Closed.into()),
            None => {}
        }
        if len > room {
            return Err(self.fail(UsageError::InputOverflow { len, room }.into()));
        }
        Ok(len > 0)
    }

    /// The sticky error, as the result of an input.
    pub(crate) fn status(&self) -> Result<(), Error> {
        match &self.result {
            Some(Err(e)) => Err(e.clone()),
            _ => Ok(()),
        }
    }

    /// The next output: transmits, then events, then the end or a wait
    /// until `deadline`.
    pub(crate) fn poll(&mut self, deadline: Option<Instant>) -> Output<Bytes, E> {
        if let Some(bytes) = self.tx.pop_front() {
            self.tx_bytes -= bytes.len();
            return Output::Transmit(bytes);
        }
        if let Some(e) = self.events.pop_front() {
            return Output::Event(e);
        }
        match &self.result {
            Some(r) => Output::Done(r.clone()),
            None => Output::Wait(deadline),
        }
    }
}
