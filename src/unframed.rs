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
use crate::recv_buf::RecvBuf;

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
    /// Peer input, read straight into it; reads are split off it.
    pub(crate) rx: RecvBuf,
}

impl<E> Unframed<E> {
    /// A machine's shared state from `now`. An invalid `config` fails the
    /// machine at once with [`UsageError::BadConfig`], as the framed
    /// machines do: it then sends nothing and says `Done(Err(..))`.
    pub(crate) fn new(config: Config, now: Instant) -> Self {
        let result = config
            .validate()
            .err()
            .map(|e| Err(UsageError::BadConfig(e).into()));
        Unframed {
            idle_deadline: now + config.idle_timeout,
            config,
            now,
            tx: VecDeque::new(),
            tx_bytes: 0,
            events: VecDeque::new(),
            result,
            rx: RecvBuf::default(),
        }
    }

    /// Queues bytes for the peer (nothing for an empty slice, nor once the
    /// session is over: what was queued before still goes out).
    pub(crate) fn send(&mut self, bytes: Bytes) {
        if !bytes.is_empty() && !self.is_over() {
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

    /// The application gave up: fails the session with
    /// [`Error::Aborted`] unless it is already over. Unframed protocols
    /// have no way to tell the peer why; the driver closes the connection.
    pub(crate) fn abort(&mut self, reason: String) {
        if !self.is_over() {
            self.fail(Error::Aborted(reason));
        }
    }

    /// Fails the session as stalled if the idle timer has run out.
    pub(crate) fn check_idle(&mut self) {
        if !self.is_over() && self.idle_expired() {
            self.fail(Error::TimedOut(self.config.idle_timeout));
        }
    }

    /// The writable slice of [`StreamMachine::input_buffer`](crate::StreamMachine::input_buffer):
    /// `min(max, room)` bytes.
    pub(crate) fn input_buffer(&mut self, max: usize, room: usize) -> &mut [u8] {
        self.rx.writable(max.min(room))
    }

    /// The gate of every `commit_input`: moves the clock, takes the `n`
    /// bytes read into [`input_buffer`](Self::input_buffer) into `rx`, or
    /// fails the machine if that slice did not hold them. After the end
    /// the bytes are discarded: `Ok(false)` after a normal end (the rule
    /// of `crate::machine`), the sticky error after a failure.
    /// `Ok(false)` too for no bytes: nothing to do.
    pub(crate) fn admit(&mut self, now: Instant, n: usize) -> Result<bool, Error> {
        self.tick(now);
        match &self.result {
            Some(Err(e)) => {
                self.rx.discard();
                return Err(e.clone());
            }
            Some(Ok(())) => {
                self.rx.discard();
                return Ok(false);
            }
            None => {}
        }
        if let Err(room) = self.rx.commit(n) {
            return Err(self.fail(UsageError::InputOverflow { len: n, room }.into()));
        }
        Ok(n > 0)
    }

    /// The bytes just admitted, as one read, split off the receive buffer
    /// without a copy (for machines that take each read whole).
    pub(crate) fn take_read(&mut self) -> Bytes {
        self.rx.data().split().freeze()
    }

    /// The sticky error, as the result of an input.
    pub(crate) fn status(&self) -> Result<(), Error> {
        match &self.result {
            Some(Err(e)) => Err(e.clone()),
            _ => Ok(()),
        }
    }

    /// The deadline of a machine whose own deadline is `deadline`: none
    /// once the session is over.
    pub(crate) fn deadline(&self, deadline: Option<Instant>) -> Option<Instant> {
        deadline.filter(|_| !self.is_over())
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
