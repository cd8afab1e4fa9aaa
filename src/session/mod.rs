//! The machinery every framed role shares: decoding, back-pressure, the idle
//! timer, sticky errors and the drain order.
//!
//! A role (echo server, echo client, sender, receiver) only says what each
//! frame means in each state; [`Framed`] does the rest. Pure: no I/O.

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::codec::{clip_text, Frame, FrameDecoder, FrameLimits, Protocol, HEADER_LEN};
use crate::config::SessionLimits;
use crate::error::{sanitize, ConfigError, Error, ProtocolError, UsageError};
use crate::link::LinkCore;
use crate::machine::{Machine, Output, StreamMachine};
use crate::recv_buf::RecvBuf;

mod budget;

use budget::Charge;
pub use budget::RecvBudget;

/// A frame body at least this long to go is read up to its end (and the
/// next header) and no further; see `Framed::aligned_read`.
const ALIGN_FROM: usize = 32 * 1024;

/// The protocol logic of one role on a framed connection: its transition table.
pub trait Role {
    /// What this role tells its application.
    type Event;
    /// The protocol named in this role's preamble.
    const PROTOCOL: Protocol;

    /// Queues what the role says first, after the preamble. An `Err`
    /// fails the session at once.
    fn start(&mut self, link: &mut Link<Self::Event>) -> Result<(), Error>;

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

    /// Validates the role's own config against the `session` it runs in
    /// (a message or chunk must fit one frame) and returns the limits its
    /// frames are decoded with. Called once, by [`Framed::new`]; an `Err`
    /// fails the session at once with [`UsageError::BadConfig`]. By
    /// default every frame is bounded by `max_frame` alone.
    fn frame_limits(&self, session: &SessionLimits) -> Result<FrameLimits, ConfigError> {
        Ok(FrameLimits::uniform(session.max_frame))
    }
}

/// What a role may touch: the output queue, its events, the limits, the time.
#[derive(Debug)]
pub struct Link<E> {
    limits: SessionLimits,
    /// The output queue, the events and the clock (shared with the
    /// unframed link).
    core: LinkCore<E>,
}

impl<E> Link<E> {
    /// Queues a frame for the peer. Payloads are queued by reference, not copied.
    pub fn send(&mut self, frame: &Frame) {
        let (head, body) = frame.encode();
        self.core.push(head);
        if let Some(body) = body {
            self.core.push(body);
        }
    }

    /// Tells the application something.
    pub fn emit(&mut self, event: E) {
        self.core.emit(event);
    }

    /// Whether the output queue is below the configured `send_buffer`.
    pub fn has_room(&self) -> bool {
        self.core.queued() < self.limits.send_buffer
    }

    /// The session's limits in force (a role's own config is the role's).
    pub fn limits(&self) -> &SessionLimits {
        &self.limits
    }

    /// The latest time the driver reported.
    pub fn now(&self) -> Instant {
        self.core.now()
    }
}

/// A framed connection driven by a [`Role`]: this is the machine that
/// drivers and tests hold ([`echo::Server`](crate::echo::Server),
/// [`echo::Client`](crate::echo::Client), [`xfer::Sender`](crate::xfer::Sender),
/// [`xfer::Receiver`](crate::xfer::Receiver)).
///
/// What bounds a session, for every role and every driver:
/// * memory: each frame's header is checked against its type's limit
///   before its payload is buffered; what is held undecoded beyond
///   `recv_allowance` is drawn from the server's shared [`RecvBudget`], if
///   it gave one;
/// * time: the peer's preamble must be whole within `handshake_timeout`,
///   any one frame within `frame_timeout` of its first byte, and only whole
///   frames (or output the peer takes) restart the `idle_timeout`, so a
///   peer trickling bytes cannot hold a session; [`Output::Wait`] reports
///   the earliest of these deadlines;
/// * after a failure it has told the peer about (an `Error` frame queued),
///   the machine lingers: it reads and discards input until the peer's EOF
///   or for `linger`, whichever comes first, before it says `Done`. A
///   driver that closed at once, on unread input, would reset the
///   connection and destroy the `Error` frame before the peer read it.
#[derive(Debug)]
pub struct Framed<R: Role> {
    role: R,
    link: Link<R::Event>,
    /// Peer input read straight into it and decoded in place.
    rx: RecvBuf,
    /// The body length of the last frame whose header was decoded: the
    /// guess for the next one's (see `aligned_read`).
    last_body: usize,
    decoder: FrameDecoder,
    idle_deadline: Instant,
    /// Until the peer's preamble is whole: when it must be.
    handshake_deadline: Option<Instant>,
    /// While a frame is partly held: when it must be whole.
    frame_deadline: Option<Instant>,
    /// After a failure told to the peer: when to stop waiting for its EOF.
    linger_deadline: Option<Instant>,
    eof: bool,
    failure: Option<Error>,
    /// What this session draws on its server's receive budget, if any.
    charge: Option<Charge>,
}

impl<R: Role> Framed<R> {
    /// Starts a session for `role` at time `now`: the preamble and the role's
    /// first frames are queued at once. Invalid `limits`, or a role config
    /// that does not fit them ([`Role::frame_limits`]), fail the machine at
    /// once with a [`UsageError::BadConfig`] naming the field.
    pub fn new(mut role: R, limits: SessionLimits, now: Instant) -> Self {
        let frame_limits = limits.validate().and_then(|()| role.frame_limits(&limits));
        let mut link = Link {
            core: LinkCore::new(now),
            limits,
        };
        link.core
            .push(Bytes::copy_from_slice(&R::PROTOCOL.preamble()));
        let started = role.start(&mut link);
        let decode_limits = frame_limits
            .clone()
            .unwrap_or(FrameLimits::uniform(link.limits.max_frame));
        let mut this = Framed {
            decoder: FrameDecoder::with_limits(R::PROTOCOL, decode_limits),
            idle_deadline: now + link.limits.idle_timeout,
            handshake_deadline: Some(now + link.limits.handshake_timeout),
            frame_deadline: None,
            linger_deadline: None,
            rx: RecvBuf::default(),
            last_body: 0,
            eof: false,
            failure: None,
            charge: None,
            role,
            link,
        };
        if let Err(e) = frame_limits {
            this.fail(UsageError::BadConfig(e).into());
        } else if let Err(e) = started {
            this.fail(e);
        }
        this
    }

    /// Makes this session draw on `budget`, shared with the other sessions
    /// of its server, for what it holds undecoded beyond
    /// `SessionLimits::recv_allowance`. Call it before any input. A budget
    /// that, with the allowance, cannot hold `recv_buffer` (one session
    /// alone would be refused) fails the session at once with a
    /// [`UsageError::BadConfig`] naming `recv_budget`.
    pub fn with_recv_budget(mut self, budget: RecvBudget) -> Self {
        let limits = &self.link.limits;
        if limits.recv_allowance.saturating_add(budget.limit()) < limits.recv_buffer {
            let e = ConfigError::Inconsistent {
                field: "recv_budget",
                rule: "plus recv_allowance must cover recv_buffer, so one session alone is never refused",
            };
            self.fail(UsageError::BadConfig(e).into());
        }
        self.charge = Some(Charge::new(budget));
        self
    }

    /// Bytes of peer input held undecoded now (at most `recv_buffer`).
    pub fn buffered(&self) -> usize {
        self.rx.len()
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
    /// [`UsageError::Closed`] once the session is over. A command's own
    /// refusal (a [`UsageError`]: a stale request, a full window) leaves
    /// the session as it was, except an answer that spent its request and
    /// does not fit ([`UsageError::BadResume`], [`Error::SourceChanged`]),
    /// which fails the session, telling the peer.
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
            // An answer that spent its request and cannot be used leaves
            // the session nothing to go on with (quinn's failed `accept`
            // likewise consumes its `Incoming`): it fails, telling the peer.
            Err(e @ (Error::Local(UsageError::BadResume { .. }) | Error::SourceChanged(_))) => {
                self.fail(e.clone());
                Err(e)
            }
            Err(e @ Error::Local(_)) => Err(e),
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
            let message = clip_text(Bytes::from(error.to_string().into_bytes()));
            self.link.send(&Frame::Error {
                code: error.code(),
                message,
            });
            // A bad config is not trusted for a linger either.
            let trusted = !matches!(error, Error::Local(UsageError::BadConfig(_)));
            if trusted && !self.eof {
                self.linger_deadline = Some(self.link.now() + self.link.limits.linger);
            }
        }
        tracing::debug!(%error, "session failed");
        self.failure = Some(error);
        self.drop_input();
    }

    /// Forgets all buffered input (the session is over) and gives back
    /// what it drew on the budget.
    fn drop_input(&mut self) {
        self.rx.clear();
        self.frame_deadline = None;
        if let Some(charge) = &mut self.charge {
            let _ = charge.set(0);
        }
    }

    /// Until when a failed machine still waits for the peer's EOF.
    fn lingering(&self) -> Option<Instant> {
        let until = self.linger_deadline.filter(|_| self.failure.is_some());
        until.filter(|&t| !self.eof && self.link.now() < t)
    }

    fn advance_clock(&mut self, now: Instant) {
        self.link.core.tick(now);
    }

    fn touch(&mut self) {
        self.idle_deadline = self.link.now() + self.link.limits.idle_timeout;
    }

    /// The earliest deadline of a live session.
    fn next_deadline(&self) -> Instant {
        [self.handshake_deadline, self.frame_deadline]
            .into_iter()
            .flatten()
            .fold(self.idle_deadline, Instant::min)
    }

    /// The deadline that has passed first, if any, as the error it means.
    fn overdue(&self) -> Option<Error> {
        let cfg = &self.link.limits;
        let too_slow = |what, limit| Error::TooSlow { what, limit };
        [
            (
                self.handshake_deadline,
                too_slow("its preamble", cfg.handshake_timeout),
            ),
            (self.frame_deadline, too_slow("a frame", cfg.frame_timeout)),
            (Some(self.idle_deadline), Error::TimedOut(cfg.idle_timeout)),
        ]
        .into_iter()
        .filter_map(|(at, error)| at.filter(|&at| at <= self.link.now()).map(|at| (at, error)))
        .min_by_key(|(at, _)| *at)
        .map(|(_, error)| error)
    }

    /// Decodes and dispatches buffered frames while the output has room.
    /// Returns whether anything happened (a frame, or a failure).
    fn process(&mut self) -> bool {
        let mut progressed = false;
        // Whether decoding stopped for want of the peer's bytes (not
        // because this side is busy): only then is a partial frame late.
        let mut starved = false;
        while self.failure.is_none()
            && !self.role.is_finished()
            && !self.role.awaits_app()
            && self.link.has_room()
        {
            let frame = match self.decoder.decode(self.rx.data()) {
                Ok(Some(frame)) => frame,
                Ok(None) => {
                    starved = true;
                    break;
                }
                Err(e) => {
                    self.fail(ProtocolError::from(e).into());
                    return true;
                }
            };
            progressed = true;
            // A whole frame is the peer's sign of life; a byte is not.
            self.touch();
            self.frame_deadline = None;
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
            self.drop_input();
        }
        if self.is_closed() {
            return progressed;
        }
        self.track_partial(starved);
        if let Err(e) = self.hold_buffered() {
            self.fail(e);
            return true;
        }
        progressed
    }

    /// Arms or clears the handshake and frame deadlines after decoding.
    fn track_partial(&mut self, starved: bool) {
        if self.decoder.preamble_done() {
            self.handshake_deadline = None;
        }
        let late_at = self.link.now() + self.link.limits.frame_timeout;
        self.frame_deadline = (starved && self.decoder.in_frame(self.rx.held()))
            .then(|| self.frame_deadline.unwrap_or(late_at));
    }

    /// The most one read should bring while a large frame's body is
    /// awaited: the rest of it and the next frame's header, no more. The
    /// next body then starts a block of its own (reserved once its header
    /// is decoded) instead of being read into the tail of this one and
    /// copied out when this one runs short: a bulk transfer's bytes are
    /// copied once, by the kernel, on their way in. Small frames are read
    /// many at a time, as they come.
    ///
    /// Between frames, while large ones come (a file's `Data`), the next is
    /// guessed to be as large as the last: one read then brings its header,
    /// its body and the header after it, into one block.
    fn aligned_read(&self) -> usize {
        let held = self.rx.len();
        match self.decoder.body_len() {
            Some(body) if body >= ALIGN_FROM => body - held.min(body) + HEADER_LEN,
            None if self.last_body >= ALIGN_FROM && held < HEADER_LEN => {
                2 * HEADER_LEN + self.last_body - held
            }
            _ => usize::MAX,
        }
    }

    /// Draws on the shared budget for what is held beyond the allowance
    /// (counting the whole of a frame whose header announced it), then
    /// reserves room for that frame: nothing is reserved unless admitted.
    fn hold_buffered(&mut self) -> Result<(), Error> {
        let body = self.decoder.body_len().unwrap_or(0);
        if body > 0 {
            self.last_body = body;
        }
        let held = self.rx.len().max(body);
        let beyond = held.saturating_sub(self.link.limits.recv_allowance);
        if let Some(charge) = &mut self.charge {
            charge.set(beyond).map_err(|limit| Error::Busy { limit })?;
        }
        if body > 0 {
            // Room for the next frame's header too (see `aligned_read`).
            self.rx
                .reserve(body.saturating_sub(self.rx.len()) + HEADER_LEN);
        }
        Ok(())
    }
}

impl<R: Role> Machine for Framed<R> {
    type Transmit = Bytes;
    type Event = R::Event;

    fn handle_timeout(&mut self, now: Instant) {
        self.advance_clock(now);
        if self.is_closed() {
            // A lingering machine ends by itself once its deadline passed.
            return;
        }
        if let Some(error) = self.overdue() {
            self.fail(error);
        }
    }

    fn poll_output(&mut self) -> Output<Bytes, R::Event> {
        loop {
            if let Some(bytes) = self.link.core.pop_transmit() {
                self.touch();
                return Output::Transmit(bytes);
            }
            if let Some(event) = self.link.core.pop_event() {
                return Output::Event(event);
            }
            if self.is_closed() {
                if let Some(until) = self.lingering() {
                    return Output::Wait(Some(until));
                }
                return Output::Done(self.failure.clone().map_or(Ok(()), Err));
            }
            if self.link.has_room() {
                self.role.on_writable(&mut self.link);
            }
            let produced = self.link.core.has_output();
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
            return Output::Wait(Some(self.next_deadline()));
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        if self.is_closed() {
            return self.lingering();
        }
        Some(self.next_deadline())
    }
}

impl<R: Role> StreamMachine for Framed<R> {
    fn input_buffer(&mut self, max: usize) -> &mut [u8] {
        let room = self.input_room();
        let aligned = self.aligned_read();
        if aligned < room {
            // The block the read goes into holds all that is expected, even
            // if this read brings less.
            self.rx.reserve(aligned);
        }
        self.rx.writable(max.min(room).min(aligned))
    }

    fn commit_input(&mut self, now: Instant, n: usize) -> Result<(), Error> {
        self.advance_clock(now);
        if let Some(e) = &self.failure {
            // Lingering: what the peer still sends is read and dropped.
            self.rx.discard();
            return Err(e.clone());
        }
        if self.role.is_finished() {
            self.rx.discard();
            return Ok(());
        }
        if let Err(room) = self.rx.commit(n) {
            let e = Error::from(UsageError::InputOverflow { len: n, room });
            self.fail(e.clone());
            return Err(e);
        }
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
        Some(self.link.limits.idle_timeout)
    }

    fn input_room(&self) -> usize {
        if self.is_closed() {
            // Keep reading (and discarding) so the peer is never blocked.
            return self.link.limits.recv_buffer;
        }
        self.link.limits.recv_buffer.saturating_sub(self.rx.len())
    }
}
