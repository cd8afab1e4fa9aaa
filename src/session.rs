//! The machinery every framed role shares: decoding, back-pressure, the idle
//! timer, sticky errors and the drain order.
//!
//! A role (echo server, echo client, sender, receiver) only says what each
//! frame means in each state; [`Framed`] does the rest. Pure: no I/O.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use crate::codec::{Frame, FrameDecoder, Protocol};
use crate::config::Config;
use crate::error::{sanitize, Error, ProtocolError, UsageError};
use crate::machine::{Machine, Output, StreamMachine};

/// The protocol logic of one role on a framed connection: its transition table.
pub trait Role {
    /// What this role tells its application.
    type Event;
    /// The protocol named in this role's preamble.
    const PROTOCOL: Protocol;

    /// Queues what the role says first, after the preamble.
    fn start(&mut self, link: &mut Link<Self::Event>);

    /// One frame from the peer. An `Err` fails the session.
    fn on_frame(&mut self, link: &mut Link<Self::Event>, frame: Frame) -> Result<(), Error>;

    /// The output queue has room: a role that produces data on its own
    /// (a sender) asks for more here. Most roles need nothing.
    fn on_writable(&mut self, _link: &mut Link<Self::Event>) {}

    /// True while the role waits for its application to answer an event
    /// (a decision, a save): no further frame is dispatched until then, so
    /// the outcome never depends on how the peer's bytes were cut.
    fn awaits_app(&self) -> bool {
        false
    }

    /// True once the protocol has ended normally.
    fn is_finished(&self) -> bool;

    /// A short name of the current state, for errors.
    fn state_name(&self) -> &'static str;
}

/// What a role may touch: the output queue, its events, the limits, the time.
#[derive(Debug)]
pub struct Link<E> {
    config: Config,
    now: Instant,
    tx: VecDeque<Bytes>,
    tx_bytes: usize,
    events: VecDeque<E>,
}

impl<E> Link<E> {
    /// Queues a frame for the peer. Payloads are queued by reference, not copied.
    pub fn send(&mut self, frame: &Frame) {
        let (head, body) = frame.encode();
        self.push(head);
        if let Some(body) = body {
            self.push(body);
        }
    }

    fn push(&mut self, bytes: Bytes) {
        self.tx_bytes += bytes.len();
        self.tx.push_back(bytes);
    }

    /// Tells the application something.
    pub fn emit(&mut self, event: E) {
        self.events.push_back(event);
    }

    /// Whether the output queue is below the configured `send_buffer`.
    pub fn has_room(&self) -> bool {
        self.tx_bytes < self.config.send_buffer
    }

    /// The limits in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The latest time the driver reported.
    pub fn now(&self) -> Instant {
        self.now
    }
}

/// A framed connection driven by a [`Role`]: this is the machine that
/// drivers and tests hold (`EchoServer`, `EchoClient`, `Sender`, `Receiver`).
#[derive(Debug)]
pub struct Framed<R: Role> {
    role: R,
    link: Link<R::Event>,
    rx: BytesMut,
    decoder: FrameDecoder,
    idle_deadline: Instant,
    eof: bool,
    failure: Option<Error>,
}

impl<R: Role> Framed<R> {
    /// Starts a session for `role` at time `now`: the preamble and the role's
    /// first frames are queued at once. An invalid `config` fails the machine
    /// at once with a [`UsageError::BadConfig`].
    pub fn new(mut role: R, config: Config, now: Instant) -> Self {
        let valid = config.validate();
        let mut link = Link {
            now,
            tx: VecDeque::new(),
            tx_bytes: 0,
            events: VecDeque::new(),
            config,
        };
        link.push(Bytes::copy_from_slice(&R::PROTOCOL.preamble()));
        role.start(&mut link);
        let mut this = Framed {
            decoder: FrameDecoder::new(R::PROTOCOL, link.config.max_frame),
            idle_deadline: now + link.config.idle_timeout,
            rx: BytesMut::new(),
            eof: false,
            failure: None,
            role,
            link,
        };
        if let Err(e) = valid {
            this.fail(UsageError::BadConfig(e).into());
        }
        this
    }

    /// The role, for its getters.
    pub fn role(&self) -> &R {
        &self.role
    }

    /// The sticky error, once the session has failed.
    pub fn error(&self) -> Option<&Error> {
        self.failure.as_ref()
    }

    /// True once the session is over, normally or not.
    pub fn is_closed(&self) -> bool {
        self.failure.is_some() || self.role.is_finished()
    }

    /// Runs a user command against the role. Refused with
    /// [`UsageError::Closed`] once the session is over; a command's own
    /// error leaves the session as it was.
    pub(crate) fn command<T>(
        &mut self,
        f: impl FnOnce(&mut R, &mut Link<R::Event>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        if let Some(e) = &self.failure {
            return Err(e.clone());
        }
        if self.role.is_finished() {
            return Err(UsageError::Closed.into());
        }
        match f(&mut self.role, &mut self.link) {
            Err(Error::Local(e)) => Err(Error::Local(e)),
            Err(e) => {
                self.fail(e.clone());
                Err(e)
            }
            ok => ok,
        }
    }

    fn fail(&mut self, error: Error) {
        if self.failure.is_some() {
            return;
        }
        if !matches!(error, Error::PeerFailed { .. }) {
            let message = Bytes::from(error.to_string().into_bytes());
            self.link.send(&Frame::Error {
                code: error.code(),
                message,
            });
        }
        tracing::debug!(%error, "session failed");
        self.failure = Some(error);
        self.rx.clear();
    }

    fn advance_clock(&mut self, now: Instant) {
        self.link.now = self.link.now.max(now);
    }

    fn touch(&mut self) {
        self.idle_deadline = self.link.now + self.link.config.idle_timeout;
    }

    /// Decodes and dispatches buffered frames while the output has room.
    /// Returns whether anything happened.
    fn process(&mut self) -> bool {
        let mut progressed = false;
        while self.failure.is_none()
            && !self.role.is_finished()
            && !self.role.awaits_app()
            && self.link.has_room()
        {
            let frame = match self.decoder.decode(&mut self.rx) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => {
                    self.fail(ProtocolError::from(e).into());
                    return true;
                }
            };
            progressed = true;
            let result = match frame {
                Frame::Error { code, message } => Err(Error::PeerFailed {
                    code,
                    message: sanitize(&message),
                }),
                frame => self.role.on_frame(&mut self.link, frame),
            };
            if let Err(e) = result {
                self.fail(e);
            }
        }
        if self.role.is_finished() {
            // Whatever the peer sent after the end is not processed.
            self.rx.clear();
        }
        progressed
    }
}

impl<R: Role> Machine for Framed<R> {
    type Transmit = Bytes;
    type Event = R::Event;

    fn handle_timeout(&mut self, now: Instant) {
        self.advance_clock(now);
        if self.is_closed() || self.link.now < self.idle_deadline {
            return;
        }
        self.fail(Error::TimedOut(self.link.config.idle_timeout));
    }

    fn poll_output(&mut self) -> Output<Bytes, R::Event> {
        loop {
            if let Some(bytes) = self.link.tx.pop_front() {
                self.link.tx_bytes -= bytes.len();
                self.touch();
                return Output::Transmit(bytes);
            }
            if let Some(event) = self.link.events.pop_front() {
                return Output::Event(event);
            }
            if self.is_closed() {
                return Output::Done(self.failure.clone().map_or(Ok(()), Err));
            }
            if self.link.has_room() {
                self.role.on_writable(&mut self.link);
            }
            let produced = !self.link.tx.is_empty() || !self.link.events.is_empty();
            if self.process() || produced {
                continue;
            }
            if self.eof {
                // Every frame before the EOF is processed and the role still
                // expected more: the transfer was cut, not finished.
                let state = self.role.state_name();
                self.fail(ProtocolError::UnexpectedEof { state }.into());
                continue;
            }
            return Output::Wait(Some(self.idle_deadline));
        }
    }
}

impl<R: Role> StreamMachine for Framed<R> {
    fn handle_input(&mut self, now: Instant, data: &[u8]) -> Result<(), Error> {
        self.advance_clock(now);
        if let Some(e) = &self.failure {
            return Err(e.clone());
        }
        if self.role.is_finished() {
            return Ok(());
        }
        let room = self.input_room();
        if data.len() > room {
            let e = Error::from(UsageError::InputOverflow {
                len: data.len(),
                room,
            });
            self.fail(e.clone());
            return Err(e);
        }
        self.touch();
        self.rx.extend_from_slice(data);
        self.process();
        self.failure.clone().map_or(Ok(()), Err)
    }

    fn handle_eof(&mut self, now: Instant) {
        self.advance_clock(now);
        self.eof = true;
    }

    fn abort(&mut self, reason: String) {
        if !self.is_closed() {
            self.fail(Error::Aborted(reason));
        }
    }

    fn write_timeout(&self) -> Option<Duration> {
        Some(self.link.config.idle_timeout)
    }

    fn input_room(&self) -> usize {
        if self.is_closed() {
            // Keep reading (and discarding) so the peer is never blocked.
            return self.link.config.recv_buffer;
        }
        self.link.config.recv_buffer.saturating_sub(self.rx.len())
    }
}
