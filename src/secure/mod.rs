//! The secure channel: a sans-IO layer that wraps any native stream
//! machine, authenticates both ends with a short shared code (SPAKE2) and
//! carries every byte both ways in authenticated-encrypted records.
//!
//! [`Secure<M>`] is itself a [`StreamMachine`] with `M`'s events, so
//! `Secure<Receiver>` runs unchanged on [`driver::blocking`](crate::driver::blocking),
//! the tokio driver, the in-memory test pair and the simulator, and the
//! apps of this crate accept it wherever they accept `M` (they are generic
//! over [`BorrowMut<M>`](std::borrow::BorrowMut)).
//!
//! # What it does
//!
//! 1. Each side sends its *hello* at once: the magic `EXFS`, a version and
//!    its SPAKE2 message (Ed25519 group; the side that opened the
//!    connection is SPAKE2 side A, "echoxfer client", the side that
//!    accepted it side B, "echoxfer server", whichever of them sends files).
//! 2. With the peer's hello, a side derives per-direction keys and sends
//!    its *key confirmation* (an HMAC over both hellos): no extra round trip.
//! 3. The peer's confirmation is checked; a mismatch fails the session with
//!    [`SecureError::WrongCode`] on both sides, each from the other's
//!    confirmation. Until both confirmations are in, the wrapped machine
//!    gets no input and its output is held (not sent).
//! 4. Then the machine's output is sealed in records (AES-256-GCM, at most
//!    [`SecureConfig::max_record`] bytes of plaintext each, counter nonces)
//!    and the peer's records are opened into the machine's input. When the
//!    machine ends, a close record says so: a connection that ends without
//!    one is a truncation ([`SecureError::Integrity`]). The side then reads
//!    until the peer's close record (at most [`SecureConfig::close_timeout`])
//!    before it ends, so that no record of the peer meets a reset.
//!
//! docs/PROTOCOL.md ("Secure channel") gives the wire byte by byte, and
//! SECURITY.md the threat model.
//!
//! This file holds the machine contract; the channel's states are one
//! table in `phase` (`Hello`, `Confirm`, `Open`, `Closing`, then `Ended`
//! or `Failed`), the peer's bytes are taken in `incoming`, this side's
//! output is sealed in `outgoing`, the key exchange is `handshake` and the
//! record format and cipher `record`.
//!
//! # Using it (a CLI, a server)
//!
//! ```
//! use std::time::Instant;
//! use echoxfer::secure::{Secure, SecureConfig};
//! use echoxfer::xfer::{Receiver, ReceiverRole};
//! use echoxfer::{SessionLimits, TransferConfig};
//!
//! let now = Instant::now();
//! // 32 bytes from a CSPRNG, fresh for every session: `os_seed()?` (feature
//! // `os-rng`) or your own; a fixed seed only in tests.
//! let seed = [7u8; 32];
//! let role = ReceiverRole::new(TransferConfig::default());
//! let receiver = Receiver::new(role, SessionLimits::default(), now);
//! let machine = Secure::server(receiver, b"7-crossover-clockwork", SecureConfig::default(), now, seed);
//! // `machine` now goes wherever the receiver went: a driver, with the same app.
//! # let _ = machine;
//! ```
//!
//! * The password is bytes: pass a typed code through [`normalize_code`]
//!   and a secret file's content through [`secret_file_password`], as both
//!   ends must (docs/PROTOCOL.md, section 6, states the rule).
//! * The side that **connected** is [`Secure::client`], the side that
//!   **accepted** is [`Secure::server`], for echo and file transfer alike.
//! * Failures the CLI should tell apart are [`Error::Secure`] values:
//!   [`SecureError::WrongCode`] ("wrong code": end a one-session receiver, count a
//!   failed guess against the source address), [`SecureError::PeerIsPlaintext`]
//!   (the peer runs without encryption), [`SecureError::HandshakeTimeout`],
//!   [`SecureError::Integrity`] (tampering or a cut connection). A plaintext
//!   side meeting a secure peer fails with
//!   [`CodecError::PeerExpectsEncryption`](crate::error::CodecError::PeerExpectsEncryption).
//! * [`Secure::handshake`] says how far the peer got ([`Handshake`]): a
//!   session that ends [`Handshake::Unconfirmed`] (the peer's hello came,
//!   its confirmation did not check out) spent a guess at the code; one
//!   that ends [`Handshake::NoHello`] (nothing, part of a hello, or only
//!   our hello read) did not. A client refused by a server's
//!   refusal notice (docs/PROTOCOL.md, section 6) fails with [`SecureError::Refused`].
//! * `M`'s requests are answered on the channel itself: `Secure<M>`
//!   dereferences to `M` (`machine.accept(request, resume)`), while its own
//!   methods and those of [`Machine`] and [`StreamMachine`] come first (see
//!   its `Deref` impl). [`Secure::inner`], [`Secure::inner_mut`] and
//!   `Borrow`/`BorrowMut` reach `M` too; the apps take any of them.
//! * Secure or plain by a choice made at run time: [`Channel`].

use std::borrow::{Borrow, BorrowMut};
use std::collections::VecDeque;
use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use crate::error::{ConfigError, Error, SecureError, UsageError};
use crate::machine::{Machine, Output, StreamMachine};
use crate::recv_buf::RecvBuf;

mod channel;
mod config;
pub(crate) mod handshake;
mod incoming;
mod outgoing;
mod password;
mod phase;
pub(crate) mod record;
#[cfg(feature = "os-rng")]
mod seed;

pub use channel::Channel;
pub use config::SecureConfig;
// The wire's sizes and bytes are the crate's own (docs/PROTOCOL.md gives
// them to implementers); harnesses reach them through `testing::wire`.
pub(crate) use handshake::{refusal_notice, CONFIRM_LEN, HELLO_LEN, REFUSAL_LEN};
pub use password::{normalize_code, secret_file_password, PasswordError, MIN_SECRET_LEN};
#[cfg(feature = "testing")]
pub(crate) use record::{RECORD_HEADER, RECORD_LIMIT, TAG_LEN};
#[cfg(feature = "os-rng")]
pub use seed::{os_seed, SeedError, SEED_LEN};

use phase::{Input, Phase};
use record::RECORD_WIRE_LIMIT;

// The first bytes of a secure hello (a plaintext session starts `EXFR`):
// kept with the codec's magic, below this layer, which recognises both.
pub use crate::wire::SECURE_MAGIC;
/// The secure channel's wire version.
pub const SECURE_VERSION: u8 = 1;

/// Output of the wrapped machine this large is sealed straight from where
/// it is (see `Secure::push_plain`); smaller output is gathered first.
const DIRECT_FROM: usize = 16 * 1024;

/// Records built in one allocation before another is needed.
const RECORDS_PER_BLOCK: usize = 4;

/// Input a secure channel holds at most: two whole records (the next to
/// open, and the one after it arriving).
const RX_LIMIT: usize = 2 * RECORD_WIRE_LIMIT;

/// How far the peer got in the handshake, as [`Secure::handshake`] says:
/// what decides whether a session that ended spent a guess at the code.
///
/// A peer can check a guessed code only against something derived from
/// its own SPAKE2 message: this side's key confirmation, which is sent only
/// once the peer's whole hello arrived. This side's hello alone is a
/// SPAKE2 message that tells nothing of the code, so a peer that only read
/// it (a health check, a port scanner), or sent nothing, part of a hello
/// or something else, has made no guess, whatever ended the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handshake {
    /// No whole, valid hello from the peer: no guess.
    NoHello,
    /// The peer's hello arrived and this side's confirmation went out, but
    /// the peer's own confirmation has not checked out (not yet, or never:
    /// it was wrong, or the peer left, reset or stalled). A session that
    /// ends so spent a guess: the peer can check one code offline.
    Unconfirmed,
    /// The peer's confirmation checked out: it knows the code.
    Confirmed,
}

impl Handshake {
    /// Whether a session that ended in this state spent a guess at the
    /// code (see [`Handshake::Unconfirmed`]).
    pub fn spent_guess(self) -> bool {
        self == Handshake::Unconfirmed
    }
}

/// Which end of the connection a side is: the roles of the key exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The side that opened the connection (SPAKE2 side A).
    Client,
    /// The side that accepted it (SPAKE2 side B).
    Server,
}

impl Side {
    fn peer(self) -> Side {
        match self {
            Side::Client => Side::Server,
            Side::Server => Side::Client,
        }
    }
}

/// A stream machine `M` behind the secure channel (see the [module docs](self)).
#[derive(Debug)]
pub struct Secure<M> {
    inner: M,
    side: Side,
    config: SecureConfig,
    now: Instant,
    /// Where the channel is: the one table of its states (`phase`).
    phase: Phase,
    /// How far the peer got in the handshake; only ever moves forward, and
    /// outlives the handshake (a server reads it when the session ends).
    verdict: Handshake,
    /// Until when the handshake may take (read in the handshake phases).
    handshake_deadline: Instant,
    /// The transport's end of input: a fact about the input, not a state.
    eof: bool,
    /// The peer's bytes, read straight into it.
    rx: RecvBuf,
    /// A record opened here because the inner machine had no room for all
    /// of it (plaintext, then room the tag needed).
    opened: Vec<u8>,
    /// Plaintext in `opened` not yet handed to the inner machine: its range.
    pending: Option<(usize, usize)>,
    /// Handshake messages and sealed records, ready to send.
    out: VecDeque<Bytes>,
    /// Small output of the inner machine, gathered into one record.
    staging: Vec<u8>,
    /// Where records are sealed, one after another, each split off sealed.
    block: BytesMut,
}

impl<M: StreamMachine> Secure<M> {
    /// `inner` behind the channel, on the side that opened the connection.
    /// `secret` is the shared code (or secret file's content), `seed` 32
    /// bytes from a CSPRNG, fresh for every session. An invalid `config`
    /// or an empty secret fails the machine at once with
    /// [`UsageError::BadConfig`].
    pub fn client(
        inner: M,
        secret: &[u8],
        config: SecureConfig,
        now: Instant,
        seed: [u8; 32],
    ) -> Self {
        Secure::new(Side::Client, inner, secret, config, now, seed)
    }

    /// `inner` behind the channel, on the side that accepted the connection
    /// (see [`client`](Self::client)).
    pub fn server(
        inner: M,
        secret: &[u8],
        config: SecureConfig,
        now: Instant,
        seed: [u8; 32],
    ) -> Self {
        Secure::new(Side::Server, inner, secret, config, now, seed)
    }

    /// `inner` behind the channel on `side`.
    pub fn new(
        side: Side,
        inner: M,
        secret: &[u8],
        config: SecureConfig,
        now: Instant,
        seed: [u8; 32],
    ) -> Self {
        let valid = config.validate().and_then(|()| check_secret(secret));
        let started = handshake::start(side, secret, seed);
        let mut this = Secure {
            inner,
            side,
            now,
            out: VecDeque::from([Bytes::copy_from_slice(&started.hello)]),
            phase: Phase::Hello(started),
            rx: RecvBuf::default(),
            opened: Vec::new(),
            pending: None,
            staging: Vec::new(),
            block: BytesMut::new(),
            handshake_deadline: now + config.handshake_timeout,
            config,
            verdict: Handshake::NoHello,
            eof: false,
        };
        if let Err(e) = valid {
            this.out.clear();
            this.fail(UsageError::BadConfig(e).into());
        }
        this
    }

    /// The wrapped machine.
    pub fn inner(&self) -> &M {
        &self.inner
    }

    /// The wrapped machine, for its commands.
    pub fn inner_mut(&mut self) -> &mut M {
        &mut self.inner
    }

    /// Which end of the connection this side is.
    pub fn side(&self) -> Side {
        self.side
    }

    /// Whether the peer has proved it knows the secret (its key
    /// confirmation checked). Stays true once true.
    pub fn is_confirmed(&self) -> bool {
        self.verdict == Handshake::Confirmed
    }

    /// Whether the peer's hello arrived, so that this side's key
    /// confirmation went out: with it, a peer can check one guess at the
    /// code, even if it never sends its own confirmation. A session that
    /// ends with this true and [`is_confirmed`](Self::is_confirmed) false
    /// used up a guess (a one-time code is spent); one that ends before it
    /// (a port scanner, a plaintext peer) did not. [`handshake`](Self::handshake)
    /// says both at once.
    pub fn has_peer_hello(&self) -> bool {
        self.verdict != Handshake::NoHello
    }

    /// How far the peer got in the handshake: the verdict a server reads
    /// when a session ends, whatever ended it (a reset says nothing of the
    /// handshake), to tell a failed guess from a scanner or a cut transfer.
    pub fn handshake(&self) -> Handshake {
        self.verdict
    }

    /// The channel's own sticky error, once it failed (the wrapped
    /// machine's errors come out of [`Machine::poll_output`] as its `Done`).
    pub fn error(&self) -> Option<&Error> {
        match &self.phase {
            Phase::Failed(e) => Some(e),
            _ => None,
        }
    }

    /// The channel's answer while it waits for the peer's close record.
    fn on_closing_wait(&mut self) -> Option<Output<Bytes, M::Event>> {
        if self.process() {
            return None;
        }
        if self.eof {
            // The peer closed without (or after all of) its records.
            self.stop_closing();
            return None;
        }
        Some(Output::Wait(self.poll_timeout()))
    }

    /// The wrapped machine's next output, sealed, or the channel's answer
    /// once it waits.
    fn poll_inner(&mut self) -> Option<Output<Bytes, M::Event>> {
        match self.inner.poll_output() {
            Output::Transmit(bytes) => {
                if let Err(e) = self.push_plain(&bytes) {
                    self.fail(e);
                }
                None
            }
            Output::Event(event) => Some(Output::Event(event)),
            Output::Wait(deadline) => self.on_inner_wait(deadline),
            Output::Done(result) => {
                self.close(result);
                None
            }
        }
    }

    /// The channel's answer once the inner machine waits.
    fn on_inner_wait(&mut self, deadline: Option<Instant>) -> Option<Output<Bytes, M::Event>> {
        if self.process() {
            return None;
        }
        if let Err(e) = self.seal_staging() {
            self.fail(e);
            return None;
        }
        if !self.out.is_empty() {
            return None;
        }
        let Phase::Open { input, .. } = &mut self.phase else {
            return None;
        };
        if self.eof && *input != Input::Over && self.pending.is_none() {
            if *input == Input::Aborted {
                // Ours to end, and the end of input may be our own doing
                // (a driver shuts its reading side to wake a read): the
                // inner machine ends as its protocol says, no tampering.
                *input = Input::Over;
                self.inner.handle_eof(self.now);
                return None;
            }
            // Every whole record is processed; no close record came.
            self.fail(SecureError::Truncated.into());
            return None;
        }
        Some(Output::Wait(deadline))
    }

    /// The channel's answer during the handshake, once its output is out.
    fn on_handshake_wait(&mut self) -> Option<Output<Bytes, M::Event>> {
        if self.process() {
            return None;
        }
        if self.eof {
            self.fail(SecureError::HandshakeCut.into());
            return None;
        }
        Some(Output::Wait(Some(self.handshake_deadline)))
    }
}

/// An empty secret would authenticate nobody.
fn check_secret(secret: &[u8]) -> Result<(), ConfigError> {
    if secret.is_empty() {
        return Err(ConfigError::Inconsistent {
            field: "secret",
            rule: "(the code) must not be empty",
        });
    }
    Ok(())
}

impl<M: StreamMachine> Machine for Secure<M> {
    type Transmit = Bytes;
    type Event = M::Event;

    fn handle_timeout(&mut self, now: Instant) {
        self.now = self.now.max(now);
        match &self.phase {
            Phase::Hello(_) | Phase::Confirm(_) => {
                if self.handshake_deadline <= self.now {
                    let limit = self.config.handshake_timeout;
                    self.fail(SecureError::HandshakeTimeout(limit).into());
                }
            }
            Phase::Open { .. } => self.inner.handle_timeout(now),
            Phase::Closing { until, .. } if *until <= self.now => self.stop_closing(),
            Phase::Closing { .. } | Phase::Ended(_) | Phase::Failed(_) => {}
        }
    }

    fn poll_output(&mut self) -> Output<Bytes, M::Event> {
        loop {
            if let Some(bytes) = self.out.pop_front() {
                return Output::Transmit(bytes);
            }
            let answer = match &self.phase {
                Phase::Failed(e) => return Output::Done(Err(e.clone())),
                Phase::Ended(result) => return Output::Done(result.clone()),
                Phase::Hello(_) | Phase::Confirm(_) => self.on_handshake_wait(),
                Phase::Open { .. } => self.poll_inner(),
                Phase::Closing { .. } => self.on_closing_wait(),
            };
            if let Some(out) = answer {
                return out;
            }
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match &self.phase {
            Phase::Hello(_) | Phase::Confirm(_) => Some(self.handshake_deadline),
            Phase::Open { .. } => self.inner.poll_timeout(),
            Phase::Closing { until, .. } => Some(*until),
            Phase::Ended(_) | Phase::Failed(_) => None,
        }
    }
}

impl<M: StreamMachine> StreamMachine for Secure<M> {
    fn input_buffer(&mut self, max: usize) -> &mut [u8] {
        let len = max.min(self.input_room());
        self.rx.writable(len)
    }

    fn commit_input(&mut self, now: Instant, n: usize) -> Result<(), Error> {
        self.now = self.now.max(now);
        match &self.phase {
            Phase::Failed(e) => {
                let e = e.clone();
                self.rx.discard();
                return Err(e);
            }
            Phase::Ended(_) => {
                self.rx.discard();
                return Ok(());
            }
            _ => {}
        }
        if let Err(room) = self.rx.commit(n) {
            let e = Error::from(UsageError::InputOverflow { len: n, room });
            self.fail(e.clone());
            return Err(e);
        }
        self.process();
        self.error().cloned().map_or(Ok(()), Err)
    }

    fn handle_eof(&mut self, now: Instant) {
        self.now = self.now.max(now);
        self.eof = true;
    }

    fn abort(&mut self, reason: String) {
        match &mut self.phase {
            // The inner machine tells the peer why, in a record.
            Phase::Open { input, .. } => {
                if *input == Input::Running {
                    *input = Input::Aborted;
                }
                self.inner.abort(reason)
            }
            Phase::Hello(_) | Phase::Confirm(_) => self.fail(Error::Aborted(reason)),
            // The session's result stands; only the wait for the peer's
            // close record ends.
            Phase::Closing { .. } => self.stop_closing(),
            Phase::Ended(_) | Phase::Failed(_) => {}
        }
    }

    fn input_room(&self) -> usize {
        match self.phase {
            // Keep reading (and discarding) so the peer is never blocked.
            Phase::Ended(_) | Phase::Failed(_) => RECORD_WIRE_LIMIT,
            _ => RX_LIMIT.saturating_sub(self.rx.len()),
        }
    }

    fn write_timeout(&self) -> Option<Duration> {
        self.inner.write_timeout()
    }

    /// The peer's hello arrived (so it holds this side's key confirmation)
    /// and its own confirmation never checked out, whatever ended the
    /// session (a reset too): [`Handshake::Unconfirmed`].
    fn failed_guess(&self) -> bool {
        self.handshake().spent_guess()
    }
}

impl<M> Borrow<M> for Secure<M> {
    fn borrow(&self) -> &M {
        &self.inner
    }
}

impl<M> BorrowMut<M> for Secure<M> {
    fn borrow_mut(&mut self) -> &mut M {
        &mut self.inner
    }
}

/// `Secure<M>` dereferences to `M`, so `M`'s requests are answered on the
/// channel itself: `secure.accept(request, resume)`, `secure.push_chunk(..)`,
/// `secure.send(..)` (as rustls's connections dereference to
/// `ConnectionCommon`). Methods of `Secure` itself come first: its own
/// ([`handshake`](Secure::handshake), [`error`](Secure::error), ...) and,
/// with the trait in scope, those of [`Machine`] and [`StreamMachine`]
/// (`poll_output`, `handle_input`, `abort`, ...), so the channel, not the
/// wrapped machine, gets the transport's bytes and the timers. To reach a
/// method of `M` that `Secure` shadows (`M`'s own `error`, say), call it
/// on [`inner`](Secure::inner).
impl<M> Deref for Secure<M> {
    type Target = M;

    fn deref(&self) -> &M {
        &self.inner
    }
}

/// As `Deref`: `M`'s commands and answers, on the channel itself.
impl<M> DerefMut for Secure<M> {
    fn deref_mut(&mut self) -> &mut M {
        &mut self.inner
    }
}
