//! The machinery every unframed stream role shares (RFC 862 echo and the
//! legacy roles): the output queue, the events, the clock, the idle timer,
//! the sticky result, `abort` and the receive buffer, so each role holds
//! only its transition table ([`UnframedRole`]), as the framed roles do
//! on [`Framed`](crate::session::Framed). Pure: no I/O.
//!
//! What bounds a session here differs from the framed core: with no
//! preamble and no frames, there is no handshake or frame deadline, and
//! every byte received is a whole unit of its protocol (echoed, or one read
//! of at most 1024 bytes), so a read is what restarts the idle timer (each
//! role says which reads count). A peer trickling bytes keeps its session;
//! it holds at most `send_buffer` (RFC 862) or one read (legacy) of memory,
//! and one connection of the server's cap. Nor is there an `Error` frame to
//! protect, hence no lingering close: a failed machine ends at once.

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::config::UnframedConfig;
use crate::error::{Error, UsageError};
use crate::link::LinkCore;
use crate::machine::{Machine, Output, StreamMachine};
use crate::recv_buf::RecvBuf;

/// What an unframed role may touch: the output queue, its events, the
/// received bytes, the limits, the clock and the result. Its methods are
/// the crate's own: the roles of this crate are its only users.
#[derive(Debug)]
pub struct UnframedLink<E> {
    pub(crate) config: UnframedConfig,
    /// When the peer counts as stalled, if the machine is waiting for it.
    pub(crate) idle_deadline: Instant,
    /// The output queue, the events and the clock (shared with the framed
    /// link).
    core: LinkCore<E>,
    result: Option<Result<(), Error>>,
    /// Peer input, read straight into it; reads are split off it.
    pub(crate) rx: RecvBuf,
}

impl<E> UnframedLink<E> {
    /// A machine's shared state from `now`. An invalid `config` fails the
    /// machine at once with [`UsageError::BadConfig`], as the framed
    /// machines do: it then sends nothing and says `Done(Err(..))`.
    fn new(config: UnframedConfig, now: Instant) -> Self {
        let result = config
            .validate()
            .err()
            .map(|e| Err(UsageError::BadConfig(e).into()));
        UnframedLink {
            idle_deadline: now + config.idle_timeout,
            config,
            core: LinkCore::new(now),
            result,
            rx: RecvBuf::default(),
        }
    }

    /// Queues bytes for the peer (nothing for an empty slice, nor once the
    /// session is over: what was queued before still goes out).
    pub(crate) fn send(&mut self, bytes: Bytes) {
        if !bytes.is_empty() && !self.is_over() {
            self.core.push(bytes);
        }
    }

    /// Tells the application something.
    pub(crate) fn emit(&mut self, event: E) {
        self.core.emit(event);
    }

    /// Bytes queued for the peer and not yet handed out.
    pub(crate) fn queued(&self) -> usize {
        self.core.queued()
    }

    /// The latest time the driver reported.
    pub(crate) fn now(&self) -> Instant {
        self.core.now()
    }

    /// Moves the clock forward (never back).
    fn tick(&mut self, now: Instant) {
        self.core.tick(now);
    }

    /// The peer showed signs of life: restart the idle timer.
    pub(crate) fn touch(&mut self) {
        self.idle_deadline = self.now() + self.config.idle_timeout;
    }

    /// Whether the idle timer has run out.
    fn idle_expired(&self) -> bool {
        self.now() >= self.idle_deadline
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
    fn abort(&mut self, reason: String) {
        if !self.is_over() {
            self.fail(Error::Aborted(reason));
        }
    }

    /// Fails the session as stalled if the idle timer has run out.
    fn check_idle(&mut self) {
        if !self.is_over() && self.idle_expired() {
            self.fail(Error::TimedOut(self.config.idle_timeout));
        }
    }

    /// The writable slice of [`StreamMachine::input_buffer`](crate::StreamMachine::input_buffer):
    /// `min(max, room)` bytes.
    fn input_buffer(&mut self, max: usize, room: usize) -> &mut [u8] {
        self.rx.writable(max.min(room))
    }

    /// The gate of every `commit_input`: moves the clock, takes the `n`
    /// bytes read into [`input_buffer`](Self::input_buffer) into `rx`, or
    /// fails the machine if that slice did not hold them. After the end
    /// the bytes are discarded: `Ok(false)` after a normal end (the rule
    /// of `crate::machine`), the sticky error after a failure.
    /// `Ok(false)` too for no bytes: nothing to do.
    fn admit(&mut self, now: Instant, n: usize) -> Result<bool, Error> {
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
    fn status(&self) -> Result<(), Error> {
        match &self.result {
            Some(Err(e)) => Err(e.clone()),
            _ => Ok(()),
        }
    }

    /// The next output: transmits, then events, then the end or a wait
    /// until `deadline`.
    fn poll(&mut self, deadline: Option<Instant>) -> Output<Bytes, E> {
        if let Some(bytes) = self.core.pop_transmit() {
            return Output::Transmit(bytes);
        }
        if let Some(e) = self.core.pop_event() {
            return Output::Event(e);
        }
        match &self.result {
            Some(r) => Output::Done(r.clone()),
            None => Output::Wait(deadline),
        }
    }
}

/// The seal on [`UnframedRole`]: a public trait in a crate-private module,
/// so code outside this crate cannot name it, hence cannot implement it.
pub(crate) mod sealed {
    /// Implemented by this crate's unframed roles only.
    pub trait Sealed {}
}

/// The protocol logic of one role on an unframed connection: its
/// transition table. The role says what a read, the peer's EOF, a timer and
/// a chance to move on mean in its state, which deadline of its own it
/// keeps, when it waits for the peer and how much it reads at once;
/// [`Unframed`] does the rest (clock, idle timer, sticky result, `abort`,
/// receive buffer, drain order), once for every role.
///
/// **Sealed**: only this crate's roles implement it ([`RawRole`](crate::echo::RawRole)
/// and the legacy stream roles, such as
/// [`LegacyServerRole`](crate::legacy::LegacyServerRole)). It is public so
/// that their machine types can be named (`Unframed<RawRole>` is
/// [`RawEcho`](crate::echo::RawEcho)), but a role needs what the crate keeps
/// to itself: every method of [`UnframedLink`] (reading the received bytes,
/// queueing output, ending the session) is crate-private, and so is the
/// constructor of [`Unframed`]. A protocol of your own implements the
/// framed [`Role`](crate::session::Role), whose [`Link`](crate::session::Link)
/// and [`Framed::new`](crate::session::Framed::new) are public, or
/// [`StreamMachine`] directly.
///
/// ```compile_fail,E0277
/// use echoxfer::unframed::{UnframedLink, UnframedRole};
/// use echoxfer::Error;
///
/// struct Mine;
///
/// // error: the trait bound `Mine: Sealed` is not satisfied
/// impl UnframedRole for Mine {
///     type Event = ();
///     fn on_read(&mut self, _: &mut UnframedLink<()>) -> Result<(), Error> {
///         Ok(())
///     }
///     fn on_eof(&mut self, _: &mut UnframedLink<()>) -> Result<(), Error> {
///         Ok(())
///     }
///     fn input_room(&self, _: &UnframedLink<()>) -> usize {
///         1024
///     }
/// }
/// ```
pub trait UnframedRole: sealed::Sealed {
    /// What this role tells its application.
    type Event;

    /// What the role does first (a server's greeting). Not called on a
    /// machine that failed at once (a bad config).
    fn start(&mut self, _link: &mut UnframedLink<Self::Event>) {}

    /// One read from the peer, at least one byte, held in the link's
    /// receive buffer. An `Err` fails the session.
    fn on_read(&mut self, link: &mut UnframedLink<Self::Event>) -> Result<(), Error>;

    /// The peer closed its sending side while the session lasts: `Ok`
    /// ends it normally, an `Err` fails it.
    fn on_eof(&mut self, link: &mut UnframedLink<Self::Event>) -> Result<(), Error>;

    /// The clock moved (the role's own deadline may have come), before
    /// the idle timer is checked.
    fn on_timeout(&mut self, _link: &mut UnframedLink<Self::Event>) {}

    /// After every input and timer, while the session lasts: a role that
    /// produces output on its own (a file sender) moves as far as its
    /// state and the time allow. Most roles need nothing.
    fn advance(&mut self, _link: &mut UnframedLink<Self::Event>) {}

    /// True while the role waits for the peer: only then does the idle
    /// timer run (and count as a deadline).
    fn awaits_peer(&self) -> bool {
        true
    }

    /// The role's own deadline, besides the idle timer, if it keeps one.
    fn deadline(&self) -> Option<Instant> {
        None
    }

    /// How many bytes the role accepts now (see
    /// [`StreamMachine::input_room`]).
    fn input_room(&self, link: &UnframedLink<Self::Event>) -> usize;
}

/// An unframed connection driven by an [`UnframedRole`]: the machine that
/// drivers and tests hold ([`RawEcho`](crate::echo::RawEcho) and the
/// legacy stream machines).
#[derive(Debug)]
pub struct Unframed<R: UnframedRole> {
    role: R,
    link: UnframedLink<R::Event>,
}

impl<R: UnframedRole> Unframed<R> {
    /// A session of `role` starting at `now`. An invalid `config` fails the
    /// machine at once with [`UsageError::BadConfig`], as the framed
    /// machines do: it then sends nothing and says `Done(Err(..))`.
    pub(crate) fn with_role(mut role: R, config: UnframedConfig, now: Instant) -> Self {
        let mut link = UnframedLink::new(config, now);
        if !link.is_over() {
            role.start(&mut link);
        }
        Unframed { role, link }
    }

    /// The role, for its getters.
    pub(crate) fn role(&self) -> &R {
        &self.role
    }

    /// The role and its link, for a user command.
    pub(crate) fn parts(&mut self) -> (&mut R, &mut UnframedLink<R::Event>) {
        (&mut self.role, &mut self.link)
    }

    fn advance(&mut self) {
        if !self.link.is_over() {
            self.role.advance(&mut self.link);
        }
    }
}

impl<R: UnframedRole> Machine for Unframed<R> {
    type Transmit = Bytes;
    type Event = R::Event;

    fn handle_timeout(&mut self, now: Instant) {
        self.link.tick(now);
        if self.link.is_over() {
            return;
        }
        self.role.on_timeout(&mut self.link);
        if self.role.awaits_peer() {
            self.link.check_idle();
        }
        self.advance();
    }

    fn poll_output(&mut self) -> Output<Bytes, R::Event> {
        let deadline = self.poll_timeout();
        self.link.poll(deadline)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        if self.link.is_over() {
            return None;
        }
        let idle = self.role.awaits_peer().then_some(self.link.idle_deadline);
        [idle, self.role.deadline()].into_iter().flatten().min()
    }
}

impl<R: UnframedRole> StreamMachine for Unframed<R> {
    fn input_buffer(&mut self, max: usize) -> &mut [u8] {
        let room = self.input_room();
        self.link.input_buffer(max, room)
    }

    fn commit_input(&mut self, now: Instant, n: usize) -> Result<(), Error> {
        if self.link.admit(now, n)? {
            if let Err(e) = self.role.on_read(&mut self.link) {
                return Err(self.link.fail(e));
            }
        }
        self.advance();
        self.link.status()
    }

    fn handle_eof(&mut self, now: Instant) {
        self.link.tick(now);
        if self.link.is_over() {
            return;
        }
        match self.role.on_eof(&mut self.link) {
            Ok(()) => self.link.finish(),
            Err(e) => {
                self.link.fail(e);
            }
        }
    }

    fn abort(&mut self, reason: String) {
        self.link.abort(reason);
    }

    fn write_timeout(&self) -> Option<Duration> {
        Some(self.link.config.idle_timeout)
    }

    fn input_room(&self) -> usize {
        self.role.input_room(&self.link)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ProtocolError;

    /// A role that refuses a read of `!`, waits for the peer only while
    /// `waiting`, and keeps a deadline of its own.
    #[derive(Debug)]
    struct Probe {
        waiting: bool,
        own: Option<Instant>,
    }

    impl sealed::Sealed for Probe {}

    impl UnframedRole for Probe {
        type Event = ();

        fn on_read(&mut self, link: &mut UnframedLink<()>) -> Result<(), Error> {
            let read = link.take_read();
            if read == "!" {
                let e = ProtocolError::InvalidField {
                    field: "probe",
                    reason: "a bang",
                };
                return Err(e.into());
            }
            link.touch();
            Ok(())
        }

        fn on_eof(&mut self, _link: &mut UnframedLink<()>) -> Result<(), Error> {
            Ok(())
        }

        fn awaits_peer(&self) -> bool {
            self.waiting
        }

        fn deadline(&self) -> Option<Instant> {
            self.own
        }

        fn input_room(&self, _link: &UnframedLink<()>) -> usize {
            16
        }
    }

    fn probe(waiting: bool, own: Option<Instant>, now: Instant) -> Unframed<Probe> {
        Unframed::with_role(Probe { waiting, own }, UnframedConfig::default(), now)
    }

    #[test]
    fn the_idle_timer_runs_only_while_the_role_awaits_the_peer() {
        let t0 = Instant::now();
        let idle = UnframedConfig::default().idle_timeout;
        let own = t0 + idle * 3;
        let mut idle_role = probe(false, Some(own), t0);
        assert_eq!(idle_role.poll_timeout(), Some(own));
        idle_role.handle_timeout(t0 + idle * 2);
        assert_eq!(idle_role.poll_output(), Output::Wait(Some(own)));

        let mut waiting = probe(true, Some(own), t0);
        assert_eq!(waiting.poll_timeout(), Some(t0 + idle));
        waiting.handle_timeout(t0 + idle);
        assert_eq!(
            waiting.poll_output(),
            Output::Done(Err(Error::TimedOut(idle)))
        );
        assert_eq!(waiting.poll_timeout(), None);
    }

    #[test]
    fn a_read_the_role_refuses_fails_the_session_and_the_error_sticks() {
        let t0 = Instant::now();
        let mut m = probe(true, None, t0);
        let err = m.handle_input(t0, b"!").unwrap_err();
        assert!(
            matches!(err, Error::Remote(ProtocolError::InvalidField { .. })),
            "{err:?}"
        );
        assert_eq!(m.handle_input(t0, b"ok"), Err(err.clone()));
        m.handle_eof(t0);
        assert_eq!(m.poll_output(), Output::Done(Err(err)));
    }
}
