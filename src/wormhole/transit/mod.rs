//! Transit: magic-wormhole's bulk channel, one candidate connection as a
//! sans-IO machine (transit.md; Python magic-wormhole's `transit.py` is
//! the reference this follows where the two differ).
//!
//! A [`Transit`] is a [`StreamMachine`] for one TCP connection (direct,
//! or to a transit relay) that a driver opened or accepted:
//!
//! 1. Through a relay, it first writes `please relay {token} for side
//!    {side}\n` and waits for exactly `ok\n` (the relay found the peer).
//! 2. Each side writes its handshake line (`transit sender {hex} ready\n\n`
//!    or `transit receiver {hex} ready\n\n`, from the transit key) and
//!    checks the peer's, byte by byte: the first wrong byte fails.
//! 3. The **sender** (leader) then emits [`TransitEvent::Connected`] and
//!    waits for the application: [`Transit::go`] (this connection wins:
//!    `go\n`, then records) or [`Transit::nevermind`] (another one won:
//!    `nevermind\n`, and the machine ends). The **receiver** waits for
//!    `go\n`, then emits `Connected`.
//! 4. Records both ways: [`Transit::send_record`] seals, and each record
//!    of the peer arrives as [`TransitEvent::Record`], opened in order
//!    (`record` gives the format; the nonce is a big-endian counter, as
//!    Python writes it). [`Transit::close`] ends this side; the peer's EOF
//!    between records ends the session normally, anywhere else it is a
//!    failure.
//!
//! With [`TransitConfig::hand_over`], step 4 is another protocol's: the
//! machine ends right after `go\n` (sent, or received) without reading a
//! byte past it, and the connection goes on with whatever the two
//! applications agreed (echoxfer's native protocol, between two echoxfer
//! sides).
//!
//! Picking among candidates (direct hints, then relays a few seconds
//! later, the first sender-side `Connected` winning) is [`racer::Racer`]'s
//! decision and the driver's work: one machine per socket, the losers told
//! [`Transit::nevermind`] or stopped. [`hints`] carries the `transit` message that tells the peer
//! where to connect.
//!
//! Failures are [`WormholeError::Transit`] with one of the texts of
//! [`reasons`]. Memory is bounded: handshake lines are checked as they
//! arrive and never buffered, the receive buffer holds at most 64 KiB or
//! the one record being received (at most [`TransitConfig::max_record`],
//! allocated as its bytes arrive), and sealed records wait in a queue of
//! [`TransitConfig::send_buffer`] bytes.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};

use crate::error::{Error, UsageError, WormholeError};
use crate::machine::{Machine, Output, StreamMachine};
use crate::recv_buf::RecvBuf;

mod config;
pub mod handshake;
pub mod hints;
mod race;
pub mod racer;
pub mod reasons;
mod record;

pub use config::{Role, TransitConfig, DEFAULT_MAX_RECORD};
pub use handshake::{
    receiver_handshake, receiver_record_key, relay_handshake, sender_handshake, sender_record_key,
};
pub use hints::TransitHints;
pub use race::{HandOver, Race};
pub use record::{LEN_PREFIX, OVERHEAD};

use handshake::{Expect, Matched, GO, NEVERMIND, RELAY_OK};
use record::{announced, Direction};

/// Input held at most outside a large record: one typical read.
const READ_ROOM: usize = 64 * 1024;

/// What a transit connection tells the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransitEvent {
    /// Both handshakes checked out. A sender now calls [`Transit::go`] or
    /// [`Transit::nevermind`]; for a receiver, `go\n` came too and
    /// records flow.
    Connected,
    /// The peer's next record, opened.
    Record(Bytes),
}

/// Where the connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Relay handshake sent; waiting for `ok\n`.
    Relay,
    /// Our handshake sent; checking the peer's.
    Handshake,
    /// Sender: handshakes done, waiting for the application's choice.
    Decide,
    /// Receiver: waiting for `go\n`.
    Go,
    /// Receiver: the sender is saying `nevermind\n`.
    Nevermind,
    /// Records both ways.
    Records,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Relay => "waiting for the transit relay",
            Phase::Handshake => "in the transit handshake",
            Phase::Decide => "waiting for go or nevermind",
            Phase::Go => "waiting for the sender's go",
            Phase::Nevermind => "reading the sender's nevermind",
            Phase::Records => "exchanging records",
        }
    }

    /// Whether the handshake deadline runs.
    fn timed(self) -> bool {
        matches!(
            self,
            Phase::Relay | Phase::Handshake | Phase::Go | Phase::Nevermind
        )
    }
}

/// One candidate transit connection (see the [module docs](self)).
#[derive(Debug)]
pub struct Transit {
    config: TransitConfig,
    phase: Phase,
    /// When the handshake must be done by.
    deadline: Instant,
    /// The line expected from the peer in the handshake phases.
    expect: Expect,
    rx: RecvBuf,
    /// Wire length (prefix included) of the record being received, once
    /// its prefix arrived and checked out.
    want: Option<usize>,
    /// Records this side sends, and those it receives.
    sealer: Direction,
    opener: Direction,
    transmits: VecDeque<Bytes>,
    /// Bytes in `transmits`.
    queued: usize,
    events: VecDeque<TransitEvent>,
    /// `Some` once over: `Ok` after a normal end, else the sticky error.
    result: Option<Result<(), Error>>,
}

fn transit(reason: &'static str) -> Error {
    Error::Wormhole(WormholeError::Transit(reason))
}

impl Transit {
    /// A connection just opened or accepted at `now`; its first bytes (the
    /// relay handshake, or this side's transit handshake) are ready to
    /// send. A config that cannot work fails the machine at once with
    /// [`UsageError::BadConfig`] naming the field.
    pub fn new(config: TransitConfig, now: Instant) -> Self {
        let tk = &config.transit_key;
        let (mine, theirs) = match config.role {
            Role::Sender => (sender_record_key(tk), receiver_record_key(tk)),
            Role::Receiver => (receiver_record_key(tk), sender_record_key(tk)),
        };
        let mut t = Transit {
            phase: Phase::Handshake,
            deadline: now + config.handshake_timeout,
            expect: Expect::new(Vec::new()),
            rx: RecvBuf::default(),
            want: None,
            sealer: Direction::new(&mine),
            opener: Direction::new(&theirs),
            transmits: VecDeque::new(),
            queued: 0,
            events: VecDeque::new(),
            result: None,
            config,
        };
        if let Err(e) = t.config.validate() {
            t.fail(UsageError::BadConfig(e).into());
            return t;
        }
        match &t.config.relay_side {
            Some(side) => {
                let line = relay_handshake(&t.config.transit_key, side);
                t.push(Bytes::from(line));
                t.phase = Phase::Relay;
                t.expect = Expect::new(RELAY_OK);
            }
            None => t.start_handshake(),
        }
        t
    }

    /// This side's role.
    pub fn role(&self) -> Role {
        self.config.role
    }

    /// Whether records flow: the sender said `go`, or the receiver heard it.
    pub fn is_open(&self) -> bool {
        self.phase == Phase::Records && self.result.is_none()
    }

    /// Sender, after [`TransitEvent::Connected`]: this connection wins.
    /// Sends `go\n`; records flow from now on (or, handing over, the
    /// machine ends once `go\n` is handed out).
    pub fn go(&mut self) -> Result<(), UsageError> {
        self.decision("go")?;
        self.push(Bytes::from_static(GO));
        self.phase = Phase::Records;
        if self.config.hand_over {
            self.result = Some(Ok(()));
        }
        self.advance();
        Ok(())
    }

    /// Sender, after [`TransitEvent::Connected`]: another connection won.
    /// Sends `nevermind\n`, and the machine ends normally once that is
    /// handed out (the driver then closes the connection).
    pub fn nevermind(&mut self) -> Result<(), UsageError> {
        self.decision("nevermind")?;
        self.push(Bytes::from_static(NEVERMIND));
        self.rx.clear();
        self.result = Some(Ok(()));
        Ok(())
    }

    /// Seals `record` as this side's next record. Refused, changing
    /// nothing, before records flow ([`UsageError::WrongState`]), after the
    /// end ([`UsageError::Closed`]), beyond [`TransitConfig::max_record`]
    /// ([`UsageError::MessageTooLarge`]), or while sealed records of more
    /// than [`TransitConfig::send_buffer`] bytes (this one included) wait
    /// to be handed out ([`UsageError::WouldBlock`]: drain the output
    /// first).
    pub fn send_record(&mut self, record: &[u8]) -> Result<(), UsageError> {
        self.check_open("send_record")?;
        let max = self.config.max_record;
        if record.len() > max {
            return Err(UsageError::MessageTooLarge {
                len: record.len(),
                max,
            });
        }
        let framed = LEN_PREFIX + OVERHEAD + record.len();
        if self.queued > 0 && self.queued + framed > self.config.send_buffer {
            return Err(UsageError::WouldBlock);
        }
        match self.sealer.seal(record) {
            Ok(sealed) => {
                self.push(sealed.freeze());
                Ok(())
            }
            Err(reason) => {
                self.fail(transit(reason));
                Err(UsageError::Closed)
            }
        }
    }

    /// Ends this side once the records queued are handed out: the machine
    /// is then `Done(Ok)`, and the driver closes the connection (the relay
    /// knows no half-close, so neither does transit). Only once records
    /// flow; before, [`abort`](StreamMachine::abort) or drop the machine.
    pub fn close(&mut self) -> Result<(), UsageError> {
        self.check_open("close")?;
        self.rx.clear();
        self.result = Some(Ok(()));
        Ok(())
    }

    /// Records sent and received so far.
    pub fn records(&self) -> (u64, u64) {
        (self.sealer.counter(), self.opener.counter())
    }

    fn check_open(&self, call: &'static str) -> Result<(), UsageError> {
        if self.result.is_some() {
            return Err(UsageError::Closed);
        }
        if self.phase != Phase::Records {
            return Err(UsageError::WrongState {
                call,
                state: self.phase.name(),
            });
        }
        Ok(())
    }

    fn decision(&self, call: &'static str) -> Result<(), UsageError> {
        if self.result.is_some() {
            return Err(UsageError::Closed);
        }
        if self.phase != Phase::Decide {
            return Err(UsageError::WrongState {
                call,
                state: self.phase.name(),
            });
        }
        Ok(())
    }

    fn push(&mut self, bytes: Bytes) {
        self.queued += bytes.len();
        self.transmits.push_back(bytes);
    }

    fn fail(&mut self, error: Error) -> Error {
        self.result.get_or_insert(Err(error.clone()));
        self.rx.clear();
        error
    }

    /// Writes this side's handshake and expects the peer's.
    fn start_handshake(&mut self) {
        let tk = &self.config.transit_key;
        let (mine, theirs) = match self.config.role {
            Role::Sender => (sender_handshake(tk), receiver_handshake(tk)),
            Role::Receiver => (receiver_handshake(tk), sender_handshake(tk)),
        };
        self.push(Bytes::from(mine));
        self.expect = Expect::new(theirs);
        self.phase = Phase::Handshake;
    }

    /// Moves as far as the input held allows.
    fn advance(&mut self) {
        if self.result.is_some() {
            return;
        }
        if let Err(reason) = self.step() {
            self.fail(transit(reason));
        }
    }

    fn step(&mut self) -> Result<(), &'static str> {
        loop {
            match self.phase {
                Phase::Decide => return Ok(()),
                Phase::Records => return self.open_records(),
                _ if self.rx.is_empty() => return Ok(()),
                _ => {}
            }
            match self.expect.feed(self.rx.held()) {
                Matched::More => {
                    self.rx.data().clear();
                    return Ok(());
                }
                Matched::Complete(n) => {
                    self.rx.data().advance(n);
                    self.line_done()?;
                }
                Matched::Wrong(0) if self.phase == Phase::Go && self.rx.held()[0] == b'n' => {
                    self.phase = Phase::Nevermind;
                    self.expect = Expect::new(NEVERMIND);
                }
                Matched::Wrong(_) => return Err(self.wrong_line()),
            }
        }
    }

    /// The peer's line of this phase arrived whole.
    fn line_done(&mut self) -> Result<(), &'static str> {
        match (self.phase, self.config.role) {
            (Phase::Relay, _) => self.start_handshake(),
            (Phase::Handshake, Role::Sender) => {
                self.phase = Phase::Decide;
                self.events.push_back(TransitEvent::Connected);
            }
            (Phase::Handshake, Role::Receiver) => {
                self.phase = Phase::Go;
                self.expect = Expect::new(GO);
            }
            (Phase::Go, _) => {
                self.phase = Phase::Records;
                self.events.push_back(TransitEvent::Connected);
                if self.config.hand_over {
                    self.result = Some(Ok(()));
                }
            }
            (Phase::Nevermind, _) => return Err(reasons::NEVERMIND),
            (Phase::Decide | Phase::Records, _) => {}
        }
        Ok(())
    }

    fn wrong_line(&self) -> &'static str {
        match self.phase {
            Phase::Relay => reasons::RELAY_REFUSED,
            Phase::Go | Phase::Nevermind => reasons::BAD_GO,
            _ => reasons::BAD_HANDSHAKE,
        }
    }

    /// Opens every whole record held, in order.
    fn open_records(&mut self) -> Result<(), &'static str> {
        loop {
            let held = self.rx.held();
            let Some(prefix) = held.first_chunk::<LEN_PREFIX>() else {
                self.want = None;
                return Ok(());
            };
            let len = LEN_PREFIX + announced(*prefix, self.config.max_record)?;
            if held.len() < len {
                self.want = Some(len);
                return Ok(());
            }
            let mut record = self.rx.data().split_to(len);
            record.advance(LEN_PREFIX);
            self.opener.open(&mut record)?;
            self.events.push_back(TransitEvent::Record(record.freeze()));
        }
    }

    /// How much input the buffer may hold now. Handing over, no more
    /// than the rest of the line expected: what follows is not ours.
    fn rx_limit(&self) -> usize {
        match (self.phase, self.want) {
            (Phase::Records, Some(want)) => want.max(READ_ROOM),
            (Phase::Records, None) => READ_ROOM,
            _ if self.config.hand_over => self.expect.remaining(),
            _ => READ_ROOM,
        }
    }
}

impl Machine for Transit {
    type Transmit = Bytes;
    type Event = TransitEvent;

    fn handle_timeout(&mut self, now: Instant) {
        if self.result.is_none() && self.phase.timed() && now >= self.deadline {
            self.fail(transit(reasons::HANDSHAKE_TIMEOUT));
        }
    }

    fn poll_output(&mut self) -> Output<Bytes, TransitEvent> {
        if let Some(bytes) = self.transmits.pop_front() {
            self.queued -= bytes.len();
            return Output::Transmit(bytes);
        }
        if let Some(e) = self.events.pop_front() {
            return Output::Event(e);
        }
        match &self.result {
            Some(r) => Output::Done(r.clone()),
            None => Output::Wait(self.poll_timeout()),
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        (self.result.is_none() && self.phase.timed()).then_some(self.deadline)
    }
}

impl StreamMachine for Transit {
    fn input_buffer(&mut self, max: usize) -> &mut [u8] {
        let n = max.min(self.input_room());
        if let (Some(want), None) = (self.want, &self.result) {
            // A large record: grow toward its end at most by what has
            // arrived (doubling, so the copies stay linear), never by
            // what its prefix announced.
            let held = self.rx.len();
            if want > READ_ROOM {
                self.rx.reserve(n.max(held.min(want - held)));
            }
        }
        self.rx.writable(n)
    }

    fn commit_input(&mut self, now: Instant, n: usize) -> Result<(), Error> {
        let _ = now;
        match &self.result {
            Some(Err(e)) => {
                self.rx.discard();
                return Err(e.clone());
            }
            Some(Ok(())) => {
                self.rx.discard();
                return Ok(());
            }
            None => {}
        }
        if let Err(room) = self.rx.commit(n) {
            return Err(self.fail(UsageError::InputOverflow { len: n, room }.into()));
        }
        self.advance();
        match &self.result {
            Some(Err(e)) => Err(e.clone()),
            _ => Ok(()),
        }
    }

    fn handle_eof(&mut self, now: Instant) {
        let _ = now;
        if self.result.is_some() {
            return;
        }
        let reason = match self.phase {
            Phase::Records if self.rx.is_empty() => {
                self.result = Some(Ok(()));
                return;
            }
            Phase::Records => reasons::TRUNCATED,
            Phase::Relay => reasons::RELAY_CLOSED,
            _ => reasons::CLOSED_IN_HANDSHAKE,
        };
        self.fail(transit(reason));
    }

    fn abort(&mut self, reason: String) {
        if self.result.is_none() {
            self.fail(Error::Aborted(reason));
        }
    }

    fn input_room(&self) -> usize {
        match &self.result {
            // Handed over: what follows is the next protocol's.
            Some(Ok(())) if self.config.hand_over => return 0,
            Some(_) => return READ_ROOM,
            None => {}
        }
        self.rx_limit().saturating_sub(self.rx.len())
    }

    fn write_timeout(&self) -> Option<Duration> {
        Some(self.config.write_timeout)
    }
}

#[cfg(test)]
mod tests;
