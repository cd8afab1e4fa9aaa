//! A deterministic simulator for whole sessions: one seed drives a virtual
//! clock and a pair of [`Netem`] links (latency, fragmentation, coalescing,
//! stalls, corruption, cuts) between two stream machines. One seed
//! replays one run exactly; timeouts fire in virtual time, so a stalled
//! peer is dropped without any real waiting.
//!
//! This file holds the world and its event loop; the sessions it runs
//! (each a function from a seed to a [`SimReport`] or the invariant it
//! broke) are in `echo` (echo, trickling peers), `xfer` (file transfers,
//! plain and secure), `secure` (edited streams, wrong codes), `replay` (a
//! recorded session played back) and `many_files` (the window's cost).

use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::netem::{Impairments, Netem, Trickle};
use super::outcome::{PairOutcome, Stuck};
use crate::config::SessionLimits;
use crate::driver::stream::{Next, StreamCore};
use crate::driver::{Abort, App, DriverError};
use crate::machine::StreamMachine;
use crate::secure::{Secure, SecureConfig, RECORD_HEADER, TAG_LEN};
use crate::testing::fuzz::{small_echo, small_limits, small_transfer};

mod echo;
mod many_files;
mod replay;
mod secure;
mod xfer;

pub use echo::{echo_session, trickle_session};
pub use many_files::{many_files_session, ManyFiles};
pub use replay::secure_replay_session;
pub use secure::{secure_tamper_session, secure_wrong_code_session};
pub use xfer::{secure_xfer_session, xfer_session};

/// The simulated world: a seeded generator and a virtual clock.
#[derive(Debug)]
pub struct Sim {
    /// The seed this world was made from.
    pub seed: u64,
    /// The generator every random choice comes from.
    pub rng: ChaCha8Rng,
    /// The virtual time.
    pub now: Instant,
}

/// What happened on the links of one connection.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LinkReport {
    /// Bits flipped in flight, both ways.
    pub corrupted: u64,
    /// Whether the connection dropped.
    pub cut: bool,
    /// Pieces held back by a stall, both ways.
    pub stalls: u64,
    /// Whether a scripted edit ([`Impairments::tamper`]) changed a stream.
    pub tampered: bool,
    /// What `a` wrote toward `b`, on a link with [`Impairments::record`]
    /// (empty otherwise).
    pub recorded_to_b: Vec<u8>,
}

/// One side of a simulated connection: the drivers' own loop
/// ([`StreamCore`]) with the simulated links as its transport.
struct Side<'a, M, P> {
    core: StreamCore<'a, M, P>,
    /// What the side waits for since its core last said.
    waiting: Waiting,
    done: Option<Result<(), DriverError>>,
    /// When it ended, in virtual time.
    done_at: Instant,
}

/// What a side's core asked for and the links could not give yet.
#[derive(Clone, Copy)]
enum Waiting {
    /// Nothing: ask the core.
    Nothing,
    /// Input, of at most `max` bytes, or `until`.
    Read { max: usize, until: Option<Instant> },
    /// Its outgoing link to drain, or `until` (the write timeout).
    Write(Option<Instant>),
    /// Only time: the peer has gone.
    Sleep(Instant),
}

impl Waiting {
    /// When the wait ends without help from the links.
    fn until(self) -> Option<Instant> {
        match self {
            Waiting::Nothing => None,
            Waiting::Read { until, .. } | Waiting::Write(until) => until,
            Waiting::Sleep(until) => Some(until),
        }
    }
}

impl<'a, M: StreamMachine, P: App<M>> Side<'a, M, P> {
    fn new(machine: &'a mut M, app: &'a mut P, abort: &Abort, now: Instant) -> Self {
        Side {
            core: StreamCore::new(machine, app, abort),
            waiting: Waiting::Nothing,
            done: None,
            done_at: now,
        }
    }

    /// Whether the side reads now (a side that writes or sleeps does not,
    /// as with the drivers).
    fn reading(&self) -> Option<usize> {
        match (&self.done, self.waiting) {
            (None, Waiting::Read { max, .. }) => Some(max),
            _ => None,
        }
    }
}

impl Sim {
    /// A world made from `seed`, starting at `start`.
    pub fn new(seed: u64, start: Instant) -> Self {
        Sim {
            seed,
            rng: ChaCha8Rng::seed_from_u64(seed),
            now: start,
        }
    }

    /// Random impairments: mostly benign, sometimes hostile.
    pub fn random_impairments(&mut self, hostile: bool) -> Impairments {
        let r = &mut self.rng;
        let max_latency = Duration::from_millis(r.random_range(0..50));
        let chance = |r: &mut ChaCha8Rng, p: f64| {
            if hostile && r.random_bool(0.3) {
                p
            } else {
                0.0
            }
        };
        Impairments {
            latency: (Duration::ZERO, max_latency),
            max_piece: [1, 7, 100, 1500, 65_536][r.random_range(0..5)],
            stall_chance: chance(r, 0.01),
            stall: Duration::from_secs(r.random_range(1..120)),
            corrupt_chance: chance(r, 0.005),
            cut_chance: chance(r, 0.005),
            window: [16_384, 65_536, 1 << 20][r.random_range(0..3)],
            ..Impairments::none()
        }
    }

    /// Runs one connection between `a` and `b` over links with `imp` until
    /// both sides are done, for at most `max_steps` steps.
    pub fn connect<A, B>(
        &mut self,
        a: (&mut A, &mut impl App<A>),
        b: (&mut B, &mut impl App<B>),
        imp: &Impairments,
        max_steps: usize,
    ) -> Result<(PairOutcome, LinkReport), Stuck>
    where
        A: StreamMachine,
        B: StreamMachine,
    {
        self.connect_links(a, b, (imp, imp), max_steps)
    }

    /// Like [`connect`](Self::connect), with impairments of its own for
    /// each direction: `to_b`, then `to_a`.
    pub fn connect_links<A, B>(
        &mut self,
        a: (&mut A, &mut impl App<A>),
        b: (&mut B, &mut impl App<B>),
        (to_b, to_a): (&Impairments, &Impairments),
        max_steps: usize,
    ) -> Result<(PairOutcome, LinkReport), Stuck>
    where
        A: StreamMachine,
        B: StreamMachine,
    {
        let mut to_b = Netem::new(to_b.clone());
        let mut to_a = Netem::new(to_a.clone());
        let outcome = self.join(a, b, (&mut to_b, &mut to_a), max_steps)?;
        let report = LinkReport {
            corrupted: to_a.corrupted + to_b.corrupted,
            cut: to_a.is_cut(),
            stalls: to_a.stalls + to_b.stalls,
            tampered: to_a.tampered() || to_b.tampered(),
            recorded_to_b: to_b.recorded().to_vec(),
        };
        Ok((outcome, report))
    }

    /// Runs `a` and `b` joined by the links `to_b` and `to_a` until both
    /// sides are done, for at most `max_steps` steps: the one event loop of
    /// every in-memory connection (this simulator and the test `Pair`).
    pub(crate) fn join<A, B>(
        &mut self,
        (a, app_a): (&mut A, &mut impl App<A>),
        (b, app_b): (&mut B, &mut impl App<B>),
        (to_b, to_a): (&mut Netem, &mut Netem),
        max_steps: usize,
    ) -> Result<PairOutcome, Stuck>
    where
        A: StreamMachine,
        B: StreamMachine,
    {
        let abort = Abort::new();
        let mut a = Side::new(a, app_a, &abort, self.now);
        let mut b = Side::new(b, app_b, &abort, self.now);
        for steps in 0..max_steps {
            let mut busy = self.step(&mut a, to_b);
            busy |= self.step(&mut b, to_a);
            reset_both(to_a, to_b);
            if let (Some(_), Some(_)) = (&a.done, &b.done) {
                return Ok(PairOutcome {
                    a: a.done.take().expect("checked"),
                    b: b.done.take().expect("checked"),
                    ended: (a.done_at, b.done_at),
                });
            }
            // Alternate who reads first, so either side may run ahead. A
            // side that closed on unread bytes resets the connection at
            // once, before the other side reads anything more.
            if steps % 2 == 0 {
                busy |= self.deliver(to_b, &mut b);
                reset_both(to_a, to_b);
                busy |= self.deliver(to_a, &mut a);
            } else {
                busy |= self.deliver(to_a, &mut a);
                reset_both(to_a, to_b);
                busy |= self.deliver(to_b, &mut b);
            }
            reset_both(to_a, to_b);
            if !busy && !self.advance(&mut a, &mut b, to_a, to_b) {
                return Err(Stuck { steps });
            }
        }
        Err(Stuck { steps: max_steps })
    }

    /// Runs one side's core until it waits: its writes go into its
    /// outgoing link, as far as the link's window takes them. Returns
    /// whether anything moved.
    fn step<M: StreamMachine, P: App<M>>(
        &mut self,
        side: &mut Side<'_, M, P>,
        out: &mut Netem,
    ) -> bool {
        if side.done.is_some() {
            return false;
        }
        let mut busy = false;
        loop {
            let now = self.now;
            side.waiting = Waiting::Nothing;
            match side.core.next(now) {
                Next::Write { until } => match self.send(out, &side.core.transmit()) {
                    0 => {
                        // Back-pressure: the batch waits in the core.
                        side.waiting = Waiting::Write(until);
                        return busy;
                    }
                    n => side.core.wrote(now, n),
                },
                Next::Flush => side.core.flushed(now),
                Next::Read { max, until } => {
                    side.waiting = Waiting::Read { max, until };
                    return busy;
                }
                Next::Sleep(until) => {
                    side.waiting = Waiting::Sleep(until);
                    return busy;
                }
                // In place, in no virtual time: the simulator models the
                // network, not the disk.
                Next::Work => {
                    if let Some(work) = side.core.take_work() {
                        let finish = work.run();
                        side.core.worked(now, finish);
                    }
                }
                Next::AwaitWork => unreachable!("work runs in place, so it is never awaited"),
                Next::Close => {
                    out.close();
                    side.core.closed(now);
                }
                Next::Done(result) => {
                    side.done = Some(result);
                    side.done_at = now;
                    out.close();
                    return true;
                }
            }
            busy = true;
        }
    }

    /// Writes `parts` into `out` until its window is full; returns the
    /// bytes it took. Bytes written into a dropped connection are taken and
    /// lost, as a kernel's send buffer takes them before the peer's reset
    /// comes back: the writer learns of the drop as the end of its input.
    fn send(&mut self, out: &mut Netem, parts: &[std::io::IoSlice<'_>]) -> usize {
        let mut sent = 0;
        for part in parts {
            if out.is_full() {
                break;
            }
            out.send(self.now, part, &mut self.rng);
            sent += part.len();
        }
        sent
    }

    /// Hands a side whatever its incoming link has delivered by now.
    fn deliver<M: StreamMachine, P: App<M>>(
        &mut self,
        link: &mut Netem,
        side: &mut Side<'_, M, P>,
    ) -> bool {
        if side.done.is_some() {
            // Nobody reads any more: what arrives is thrown away, and the
            // writer is never held back by it.
            link.discard();
            return false;
        }
        let Some(max) = side.reading() else {
            return false;
        };
        let now = self.now;
        match link.receive(now, max, &mut self.rng) {
            Some(bytes) if bytes.is_empty() => side.core.eof(now),
            Some(bytes) => side.core.read(now, &bytes),
            None => return false,
        }
        side.waiting = Waiting::Nothing;
        true
    }

    /// Jumps to the next arrival or deadline and fires timers.
    fn advance<A, B, PA, PB>(
        &mut self,
        a: &mut Side<'_, A, PA>,
        b: &mut Side<'_, B, PB>,
        to_a: &Netem,
        to_b: &Netem,
    ) -> bool
    where
        A: StreamMachine,
        B: StreamMachine,
        PA: App<A>,
        PB: App<B>,
    {
        // Arrivals count only for a side that reads: one that writes waits
        // for its own link (or its write timeout), as with the drivers.
        let next = [
            a.waiting.until().filter(|_| a.done.is_none()),
            b.waiting.until().filter(|_| b.done.is_none()),
            a.reading().and_then(|_| to_a.next_arrival(self.now)),
            b.reading().and_then(|_| to_b.next_arrival(self.now)),
        ]
        .into_iter()
        .flatten()
        .min();
        let Some(next) = next else {
            return false;
        };
        self.now = self.now.max(next);
        fire(a, self.now);
        fire(b, self.now);
        true
    }
}

/// Tells a side whose wait has run out by `now` that it has.
fn fire<M: StreamMachine, P: App<M>>(side: &mut Side<'_, M, P>, now: Instant) {
    if side.done.is_none() && side.waiting.until().is_some_and(|until| until <= now) {
        side.core.timed_out(now);
        side.waiting = Waiting::Nothing;
    }
}

/// A connection drops in both directions at once.
fn reset_both(to_a: &mut Netem, to_b: &mut Netem) {
    if to_a.is_cut() != to_b.is_cut() {
        to_a.cut();
        to_b.cut();
    }
}

// ------------------------------------------------------------- sessions

/// What one simulated run did. A run that breaks an invariant returns
/// `Err` with the reason instead; typed failures (a timeout, a hash
/// mismatch after corruption, a cut) are normal outcomes on a hostile link
/// and are counted here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SimReport {
    /// The seed the run came from.
    pub seed: u64,
    /// Whether the links were hostile (stalls, corruption, cuts possible).
    pub hostile: bool,
    /// Connections made (more than one: reconnected to resume).
    pub connections: u32,
    /// Connections that dropped.
    pub cuts: u32,
    /// Files whose data resumed after a prefix (`Begin` from more than 0).
    pub resumes: u32,
    /// Connections on which bits were flipped.
    pub corrupted_connections: u32,
    /// Bits flipped in all.
    pub corrupted_bits: u64,
    /// Pieces held back by a stall.
    pub stalls: u64,
    /// Every typed failure seen, one per failed side, by kind.
    pub failures: Vec<&'static str>,
    /// Payload bytes the sender(s) handed to the machines (echo: messages).
    pub bytes: u64,
    /// File bytes sent more than once (after a cut or a mismatch).
    pub resent: u64,
    /// Virtual time the run took.
    pub elapsed: Duration,
}

impl SimReport {
    /// True if every connection ended well.
    pub fn is_clean(&self) -> bool {
        self.failures.is_empty()
    }

    /// Counts each side's typed failure; `Err` for one that must not occur.
    fn note_failures(&mut self, outcome: &PairOutcome) -> Result<(), String> {
        for side in [&outcome.a, &outcome.b] {
            if let Err(e) = side {
                self.failures.push(failure_kind(e)?);
            }
        }
        Ok(())
    }
}

/// A short name for a typed failure, or `Err` for one that must not occur
/// (an app's complaint, or a usage error: the simulator misused a machine).
fn failure_kind(e: &DriverError) -> Result<&'static str, String> {
    use crate::error::{Error, ProtocolError, SecureError};
    let kind = match e {
        DriverError::Machine(Error::Remote(p)) => match p {
            ProtocolError::Codec(_) => "codec",
            ProtocolError::UnexpectedFrame { .. } => "unexpected-frame",
            ProtocolError::UnexpectedEof { .. } => "unexpected-eof",
            ProtocolError::MessageTooLarge { .. } => "message-too-large",
            ProtocolError::EchoMismatch => "echo-mismatch",
            ProtocolError::Overrun { .. } => "overrun",
            ProtocolError::ShortFile { .. } => "short-file",
            ProtocolError::BadOffset { .. } => "bad-offset",
            ProtocolError::InvalidField { .. } => "invalid-field",
            ProtocolError::TooManyRefusals { .. } => "too-many-refusals",
            ProtocolError::OutOfOrder { .. } | ProtocolError::UnknownEntry { .. } => "out-of-order",
            ProtocolError::WindowExceeded { .. } => "window-exceeded",
            ProtocolError::UnknownEntryKind(_) | ProtocolError::DirectoryWithSize { .. } => {
                "bad-entry"
            }
            ProtocolError::NoFileBegun(_) | ProtocolError::BadSkip { .. } => "no-file-begun",
            ProtocolError::QuitInFlight { .. } => "quit-in-flight",
            ProtocolError::SavedMismatch { .. } => "saved-mismatch",
            ProtocolError::TooManyHoles { .. } => "too-many-holes",
        },
        DriverError::Machine(Error::TimedOut(_)) => "timeout",
        DriverError::Machine(Error::HashMismatch) => "hash-mismatch",
        DriverError::Machine(Error::PeerFailed { .. }) => "peer-failed",
        DriverError::Machine(Error::TooSlow { .. }) => "too-slow",
        DriverError::Machine(Error::Busy { .. }) => "busy",
        DriverError::Machine(Error::Secure(e)) => match e {
            SecureError::WrongCode => "wrong-code",
            SecureError::Integrity(_) => "integrity",
            SecureError::Truncated => "truncated",
            SecureError::HandshakeCut => "handshake-cut",
            SecureError::BadHello(_) => "bad-hello",
            SecureError::HandshakeTimeout(_) => "handshake-timeout",
            // Both sides of every simulated session are secure, no
            // session sends 2^64 records, and no server refuses.
            SecureError::PeerIsPlaintext
            | SecureError::NonceExhausted
            | SecureError::Refused { .. } => return Err(format!("impossible secure failure: {e}")),
        },
        // The drivers' loop: the peer took nothing for the write timeout.
        e if e.is_stalled_peer() => "stalled",
        other => return Err(format!("untyped or local failure: {other}")),
    };
    Ok(kind)
}

/// Runs `f`, turning an invariant's panic into an `Err` naming the seed.
fn guarded<T>(seed: u64, f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r.map_err(|e| format!("seed {seed}: {e}")),
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Err(format!("seed {seed}: invariant broken: {msg}"))
        }
    }
}

/// Steps one connection may take before it counts as stuck.
const MAX_STEPS: usize = 2_000_000;

/// Random bytes with the in-band words of every protocol as whole lines.
fn content(rng: &mut ChaCha8Rng, size: usize) -> Vec<u8> {
    const LINES: [&[u8]; 4] = [b"quit\n", b"exit\n", b"success\n", b"EXFR\x02F\n"];
    let mut out = Vec::with_capacity(size);
    while out.len() < size {
        if rng.random_bool(0.2) {
            out.extend_from_slice(LINES[rng.random_range(0..LINES.len())]);
        } else {
            let n = rng.random_range(1..64);
            out.extend((0..n).map(|_| rng.random::<u8>()));
        }
    }
    out.truncate(size);
    out
}

/// The code both sides of a simulated secure session use.
const SIM_CODE: &[u8] = b"7-crossover-clockwork";

/// Where records begin in either direction of a secure session.
const HANDSHAKE: u64 = (crate::secure::HELLO_LEN + crate::secure::CONFIRM_LEN) as u64;

/// A connection's two links' impairments: toward `b`, then toward `a`.
type Links<'a> = (&'a Impairments, &'a Impairments);
