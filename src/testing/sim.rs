//! A deterministic simulator for whole sessions: one seed drives a virtual
//! clock and a pair of [`Netem`] links (latency, fragmentation, coalescing,
//! stalls, corruption, cuts) between two stream machines. One seed
//! replays one run exactly; timeouts fire in virtual time, so a stalled
//! peer is dropped without any real waiting.

use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::netem::{Impairments, Netem, Trickle};
use super::pair::{PairOutcome, Stuck};
use crate::config::SessionLimits;
use crate::driver::core::{Next, StreamCore};
use crate::driver::{Abort, App, DriverError};
use crate::machine::StreamMachine;
use crate::secure::{Secure, SecureConfig, RECORD_HEADER, TAG_LEN};
use crate::testing::fuzz::{small_echo, small_limits, small_transfer};

mod replay;
pub use replay::secure_replay_session;

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
        },
        DriverError::Machine(Error::TimedOut(_)) => "timeout",
        DriverError::Machine(Error::HashMismatch) => "hash-mismatch",
        DriverError::Machine(Error::PeerFailed { .. }) => "peer-failed",
        DriverError::Machine(Error::TooSlow { .. }) => "too-slow",
        DriverError::Machine(Error::Busy { .. }) => "busy",
        DriverError::Machine(Error::Secure(e)) => match e {
            SecureError::WrongCode => "wrong-code",
            SecureError::Integrity(_) => "integrity",
            SecureError::BadHello(_) => "bad-hello",
            SecureError::HandshakeTimeout(_) => "handshake-timeout",
            // Both sides of every simulated session are secure, and no
            // session sends 2^64 records.
            SecureError::PeerIsPlaintext | SecureError::NonceExhausted => {
                return Err(format!("impossible secure failure: {e}"))
            }
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

/// One echo session from `seed`: random messages (the word `exit`
/// among them) from a client to a server over simulated links, benign or
/// hostile. Invariants: the client gets back exactly what it sent, in
/// order, or the session fails with a typed error; on a link with no
/// stall, corruption or cut both sides end well; a stall longer than the
/// idle timeout ends in a timeout in virtual time; bounded steps.
pub fn echo_session(seed: u64) -> Result<SimReport, String> {
    guarded(seed, || echo_inner(seed))
}

fn echo_inner(seed: u64) -> Result<SimReport, String> {
    use crate::echo::{Client, EchoClient, EchoServer, Server};
    use crate::testing::fuzz::echo::{ClientApp, GREETING};
    use bytes::Bytes;

    let start = Instant::now();
    let mut sim = Sim::new(seed, start);
    let hostile = sim.rng.random_bool(0.4);
    let imp = sim.random_impairments(hostile);
    let config = small_limits();
    let echo = crate::config::EchoConfig {
        echo_window: 8 * 1024,
        ..small_echo()
    };
    let mut queue = std::collections::VecDeque::new();
    for _ in 0..sim.rng.random_range(0..24) {
        let msg: Vec<u8> = match sim.rng.random_range(0..6) {
            0 => b"exit".to_vec(),
            1 => Vec::new(),
            _ => {
                let n = sim.rng.random_range(1..=echo.max_message);
                (0..n).map(|_| sim.rng.random()).collect()
            }
        };
        queue.push_back(Bytes::from(msg));
    }
    let bytes = queue.iter().map(|m| m.len() as u64).sum();
    let mut client = EchoClient::new(Client::new(echo.clone()), config.clone(), start);
    let mut app = ClientApp::new(queue);
    app.check_greeting = imp.corrupt_chance == 0.0;
    app.pump(&mut client);
    let mut server = EchoServer::new(Server::new(GREETING, echo), config.clone(), start);
    let mut ignore = crate::driver::Ignore;
    let (outcome, link) = sim
        .connect(
            (&mut client, &mut app),
            (&mut server, &mut ignore),
            &imp,
            MAX_STEPS,
        )
        .map_err(|e| e.to_string())?;
    let mut report = SimReport {
        seed,
        hostile,
        connections: 1,
        cuts: u32::from(link.cut),
        corrupted_connections: u32::from(link.corrupted > 0),
        corrupted_bits: link.corrupted,
        stalls: link.stalls,
        bytes,
        elapsed: sim.now - start,
        ..SimReport::default()
    };
    for side in [&outcome.a, &outcome.b] {
        if let Err(e) = side {
            report.failures.push(failure_kind(e)?);
        }
    }
    if outcome.a.is_ok() && !(app.closed && app.queue.is_empty() && app.replies == app.sent.len()) {
        return Err("client ended Ok without every reply".into());
    }
    let impaired = link.cut || link.corrupted > 0 || link.stalls > 0;
    if !impaired && !report.is_clean() {
        return Err(format!("failed on a perfect link: {outcome:?}"));
    }
    let late = ["timeout", "too-slow", "stalled"]
        .iter()
        .any(|kind| report.failures.contains(kind));
    if late && link.stalls == 0 && link.corrupted == 0 {
        return Err("timed out with no stall and no corruption".into());
    }
    if report.failures.contains(&"echo-mismatch") && link.corrupted == 0 {
        return Err("echo mismatch with nothing corrupted".into());
    }
    Ok(report)
}

/// One file-transfer run from `seed`: one to three files of random bytes
/// with `quit`, `exit` and `success` lines, sized around chunk boundaries,
/// sent over simulated links (benign or hostile); after a failed
/// connection, fresh machines reconnect over the same receiver directory
/// and resume, for a bounded number of attempts (the last ones on a clean
/// link). Invariants: every file ends byte-identical under its name;
/// nothing is ever under a final name that is not exactly its source; a
/// resume after a connection with no corruption starts exactly where the
/// partial file ends; re-sent bytes stay within what the dropped
/// connections could have had in flight; every failure is typed; timeouts
/// need a stall or corruption; bounded steps.
pub fn xfer_session(seed: u64) -> Result<SimReport, String> {
    guarded(seed, || xfer_inner(seed, None))
}

/// [`xfer_session`] with both machines behind the secure channel, records
/// of a random size (one byte to the limit): the same invariants, and a
/// tampered or cut connection fails typed (an integrity error, a wrong
/// code if the handshake was hit) and the transfer resumes on the next.
pub fn secure_xfer_session(seed: u64) -> Result<SimReport, String> {
    guarded(seed, || {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ SECURE_STREAM);
        let max_record = match rng.random_range(0..4) {
            0 => rng.random_range(1..64),
            1 => rng.random_range(64..2048),
            2 => crate::secure::RECORD_LIMIT,
            _ => rng.random_range(2048..=crate::secure::RECORD_LIMIT),
        };
        let config = SecureConfig {
            max_record,
            ..SecureConfig::default()
        };
        xfer_inner(seed, Some(config))
    })
}

/// Mixed into a seed for the secure runs' own choices, so that a secure
/// run sees the same files and links as the plain run of its seed.
const SECURE_STREAM: u64 = 0x5ec0_5ec0_5ec0_5ec0;

/// The code both sides of a simulated secure session use.
const SIM_CODE: &[u8] = b"7-crossover-clockwork";

/// One connection of a transfer between `tx` and `rx`, plain or (with a
/// config) behind the secure channel.
fn connect_xfer(
    sim: &mut Sim,
    (tx, rx): (
        &mut crate::testing::MemSender,
        &mut crate::testing::MemReceiver,
    ),
    imp: &Impairments,
    secure: Option<&SecureConfig>,
) -> Result<(PairOutcome, LinkReport), Stuck> {
    use crate::xfer::{Receiver, ReceiverRole, Sender};

    let now = sim.now;
    let mut sender = Sender::new(tx.role(small_transfer()), small_limits(), now);
    let mut receiver = Receiver::new(ReceiverRole::new(small_transfer()), small_limits(), now);
    let Some(config) = secure else {
        return sim.connect((&mut sender, tx), (&mut receiver, rx), imp, MAX_STEPS);
    };
    let (seed_a, seed_b) = (sim.rng.random(), sim.rng.random());
    let mut sender = Secure::client(sender, SIM_CODE, config.clone(), now, seed_a);
    let mut receiver = Secure::server(receiver, SIM_CODE, config.clone(), now, seed_b);
    sim.connect((&mut sender, tx), (&mut receiver, rx), imp, MAX_STEPS)
}

/// Connections tried before a run must be complete.
const ATTEMPTS: u32 = 6;
/// Of those, how many may be on a hostile link.
const HOSTILE_ATTEMPTS: u32 = 3;

fn xfer_inner(seed: u64, secure: Option<SecureConfig>) -> Result<SimReport, String> {
    use crate::testing::{MemDisk, MemReceiver, MemSender};
    use crate::xfer::SafeName;
    use bytes::Bytes;

    let start = Instant::now();
    let mut sim = Sim::new(seed, start);
    let hostile = sim.rng.random_bool(0.4);
    let config = small_limits();
    let chunk = small_transfer().chunk_size;
    let files: Vec<(SafeName, Bytes)> = (0..sim.rng.random_range(1..=3))
        .map(|i| {
            let size = match sim.rng.random_range(0..8) {
                0 => 0,
                1 => 1,
                2 => chunk - 1,
                3 => chunk,
                4 => chunk + 1,
                5 => 2 * chunk,
                6 => 3 * chunk + 7,
                _ => sim.rng.random_range(0..=6 * chunk),
            };
            let name = SafeName::new(format!("file{i}.txt").as_bytes(), 64).expect("valid");
            (name, Bytes::from(content(&mut sim.rng, size)))
        })
        .collect();
    let total: u64 = files.iter().map(|(_, c)| c.len() as u64).sum();
    let mut report = SimReport {
        seed,
        hostile,
        bytes: total,
        ..SimReport::default()
    };
    let mut disk = MemDisk::default();
    let mut pushed = 0u64;
    let mut lost_budget = 0u64;
    // Once bits were flipped, a partial file may hold them: resuming from
    // 0 instead of its end is then right.
    let mut ever_corrupted = false;
    for attempt in 0..ATTEMPTS {
        let imp = sim.random_impairments(hostile && attempt < HOSTILE_ATTEMPTS);
        // What the receiver holds of each file: all of it once saved (an
        // attempt then finds it up to date), else its partial file.
        let held: Vec<usize> = files
            .iter()
            .map(|(n, c)| match disk.files.contains_key(n.as_str()) {
                true => c.len(),
                false => disk.partials.get(n.as_str()).map_or(0, Vec::len),
            })
            .collect();
        let mut tx = MemSender::new(files.iter().cloned());
        let mut rx = MemReceiver::new(disk, false);
        let (outcome, link) = connect_xfer(&mut sim, (&mut tx, &mut rx), &imp, secure.as_ref())
            .map_err(|e| format!("attempt {attempt}: {e}"))?;
        disk = rx.disk;
        if std::env::var_os("SIM_DEBUG").is_some() {
            eprintln!(
                "attempt {attempt}: {imp:?}\n  {outcome:?}\n  {link:?}\n  held {held:?} started {:?} delivered {:?} rejected {:?}\n  partials {:?} files {:?}",
                tx.started,
                tx.delivered.iter().map(|d| d.0).collect::<Vec<_>>(),
                tx.rejected,
                disk.partials.iter().map(|(k, v)| (k, v.len())).collect::<Vec<_>>(),
                disk.files.iter().map(|(k, v)| (k, v.len())).collect::<Vec<_>>(),
            );
        }
        report.connections += 1;
        report.cuts += u32::from(link.cut);
        report.corrupted_connections += u32::from(link.corrupted > 0);
        report.corrupted_bits += link.corrupted;
        report.stalls += link.stalls;
        pushed += tx.pushed;
        for side in [&outcome.a, &outcome.b] {
            if let Err(e) = side {
                report.failures.push(failure_kind(e)?);
            }
        }
        // Nothing under a final name but its exact source; the content of
        // a final file is always exactly some source (its hash matched).
        for (name, held) in &disk.files {
            if !files.iter().any(|(_, c)| held[..] == c[..]) {
                return Err(format!(
                    "attempt {attempt}: {name} holds content never sent"
                ));
            }
            // `End` certifies the offer (name and size) as well as the
            // content, so even a corrupted link never misnames a file.
            let source = files.iter().find(|(n, _)| n.as_str() == name);
            if source.is_none_or(|(_, c)| held[..] != c[..]) {
                return Err(format!(
                    "attempt {attempt}: {name:?} under a final name is not its source"
                ));
            }
        }
        for &(file, from) in &tx.started {
            if from > 0 {
                report.resumes += 1;
            }
            if !ever_corrupted && link.corrupted == 0 && from != held[file] as u64 {
                return Err(format!(
                    "attempt {attempt}: file {file} resumed at {from}, its partial holds {}",
                    held[file]
                ));
            }
        }
        let impaired = link.cut || link.corrupted > 0 || link.stalls > 0;
        if !impaired && (outcome.a.is_err() || outcome.b.is_err()) {
            return Err(format!(
                "attempt {attempt} failed on a perfect link: {outcome:?}"
            ));
        }
        let timed_out = [&outcome.a, &outcome.b].iter().any(|r| match r {
            Err(DriverError::Machine(crate::Error::TimedOut(_) | crate::Error::TooSlow { .. })) => {
                true
            }
            Err(e) => e.is_stalled_peer(),
            Ok(()) => false,
        });
        if timed_out && link.stalls == 0 && link.corrupted == 0 {
            return Err(format!(
                "attempt {attempt} timed out with no stall and no corruption"
            ));
        }
        // What a dropped or failed connection may have lost in flight: the
        // link's window, both machines' buffers and a chunk being read.
        if outcome.a.is_err() || outcome.b.is_err() {
            let window = imp.window.min(1 << 24) as u64;
            let mut buffers = (config.send_buffer + config.recv_buffer + 2 * chunk) as u64;
            if let Some(secure) = &secure {
                // Each side's channel: a record being built, and two
                // whole records of input held.
                let record = (secure.max_record + RECORD_HEADER + TAG_LEN) as u64;
                buffers += 2 * 3 * record;
            }
            lost_budget += window + buffers;
            if link.corrupted > 0 {
                // A corrupted partial is discarded and sent again whole.
                lost_budget += total;
            }
        }
        ever_corrupted |= link.corrupted > 0;
        let done = files
            .iter()
            .all(|(n, _)| disk.files.contains_key(n.as_str()));
        if done {
            break;
        }
    }
    for (name, _) in &files {
        if !disk.files.contains_key(name.as_str()) {
            return Err(format!("{name} never arrived in {ATTEMPTS} connections"));
        }
    }
    report.resent = pushed.saturating_sub(total);
    if report.resent > lost_budget {
        return Err(format!(
            "{} bytes re-sent, more than the {lost_budget} the failed connections could lose",
            report.resent
        ));
    }
    report.elapsed = sim.now - start;
    Ok(report)
}

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

// ------------------------------------------------------------- trickling peers

/// One session from `seed` in which one side's bytes trickle in (a
/// slowloris peer, or a starved link): echo or file transfer; towards the
/// server (receiver) or towards the client (sender); from a stream offset
/// in or after the preamble on, one byte every 7 to 50 s, always more often
/// than the idle timeout, so only the handshake and frame deadlines can end
/// it. The side writing the trickle is patient (a 10-minute idle timeout):
/// the side reading it must end the session by itself. Invariants: the
/// reading side fails with a timeout (too slow, or idle), no later than its
/// deadlines allow: `handshake_timeout + 2 * frame_timeout + 2 * gap +
/// linger` (a partial preamble, a partial frame that may still complete,
/// then one whole frame that cannot); bounded steps.
pub fn trickle_session(seed: u64) -> Result<SimReport, String> {
    guarded(seed, || trickle_inner(seed))
}

fn trickle_inner(seed: u64) -> Result<SimReport, String> {
    let start = Instant::now();
    let mut sim = Sim::new(seed, start);
    let gap = Duration::from_secs([7, 10, 20, 50][sim.rng.random_range(0..4)]);
    let from = sim.rng.random_range(0..40u64);
    let xfer = sim.rng.random_bool(0.5);
    let towards_server = sim.rng.random_bool(0.5);
    let latency = Duration::from_millis(sim.rng.random_range(0..50));
    let fast = Impairments {
        latency: (Duration::ZERO, latency),
        ..Impairments::none()
    };
    let slow = Impairments {
        trickle: Some(Trickle { from, gap }),
        ..fast.clone()
    };
    let strict = small_limits();
    let patient = crate::config::SessionLimits {
        idle_timeout: Duration::from_secs(600),
        ..small_limits()
    };
    let (links, configs) = match towards_server {
        true => ((&slow, &fast), (patient, strict.clone())),
        false => ((&fast, &slow), (strict.clone(), patient)),
    };
    let (outcome, link) = match xfer {
        true => trickled_xfer(&mut sim, links, configs),
        false => trickled_echo(&mut sim, links, configs),
    }
    .map_err(|e| e.to_string())?;
    let (reader, ended) = match towards_server {
        true => (&outcome.b, outcome.ended.1),
        false => (&outcome.a, outcome.ended.0),
    };
    let mut report = SimReport {
        seed,
        connections: 1,
        elapsed: sim.now - start,
        stalls: link.stalls,
        ..SimReport::default()
    };
    for side in [&outcome.a, &outcome.b] {
        if let Err(e) = side {
            report.failures.push(failure_kind(e)?);
        }
    }
    let kind = match reader {
        Err(e) => failure_kind(e)?,
        Ok(()) => "none",
    };
    if !matches!(kind, "too-slow" | "timeout") {
        return Err(format!(
            "the side reading a trickle (from byte {from}, every {gap:?}) ended with {kind}: {reader:?}"
        ));
    }
    let bound = strict.handshake_timeout + 2 * strict.frame_timeout + 2 * gap + strict.linger;
    let took = ended - start;
    if took > bound + Duration::from_secs(1) {
        return Err(format!(
            "a trickle from byte {from}, every {gap:?}, held its reader {took:?} (bound {bound:?})"
        ));
    }
    Ok(report)
}

type Links<'a> = (&'a Impairments, &'a Impairments);

/// A client sending messages of 40 to 200 bytes (each too long to trickle
/// within a frame timeout) to an echo server.
fn trickled_echo(
    sim: &mut Sim,
    links: Links<'_>,
    (client_config, server_config): (SessionLimits, SessionLimits),
) -> Result<(PairOutcome, LinkReport), Stuck> {
    use crate::echo::{Client, EchoClient, EchoServer, Server};
    use crate::testing::fuzz::echo::{ClientApp, GREETING};

    let queue = (0..sim.rng.random_range(2..6))
        .map(|_| {
            let n = sim.rng.random_range(40..200);
            bytes::Bytes::from((0..n).map(|_| sim.rng.random::<u8>()).collect::<Vec<u8>>())
        })
        .collect();
    let now = sim.now;
    let mut client = EchoClient::new(Client::new(small_echo()), client_config, now);
    let mut app = ClientApp::new(queue);
    app.pump(&mut client);
    let mut server = EchoServer::new(Server::new(GREETING, small_echo()), server_config, now);
    let mut ignore = crate::driver::Ignore;
    sim.connect_links(
        (&mut client, &mut app),
        (&mut server, &mut ignore),
        links,
        MAX_STEPS,
    )
}

/// A sender of one file of up to three chunks to a receiver.
fn trickled_xfer(
    sim: &mut Sim,
    links: Links<'_>,
    (sender_config, receiver_config): (SessionLimits, SessionLimits),
) -> Result<(PairOutcome, LinkReport), Stuck> {
    use crate::testing::{MemDisk, MemReceiver, MemSender};
    use crate::xfer::{Receiver, ReceiverRole, SafeName, Sender};

    let size = sim.rng.random_range(0..=3 * small_transfer().chunk_size);
    let name = SafeName::new(b"slow.bin", 64).expect("valid");
    let file = (name, bytes::Bytes::from(content(&mut sim.rng, size)));
    let now = sim.now;
    let mut tx = MemSender::new([file]);
    let mut sender = Sender::new(tx.role(small_transfer()), sender_config, now);
    let mut rx = MemReceiver::new(MemDisk::default(), false);
    let mut receiver = Receiver::new(ReceiverRole::new(small_transfer()), receiver_config, now);
    sim.connect_links(
        (&mut sender, &mut tx),
        (&mut receiver, &mut rx),
        links,
        MAX_STEPS,
    )
}

// ------------------------------------------------------------- secure channel

/// Where records begin in either direction of a secure session.
const HANDSHAKE: u64 = (crate::secure::HELLO_LEN + crate::secure::CONFIRM_LEN) as u64;

/// One secure file transfer from `seed` in which the sender's stream to the
/// receiver is edited once after the handshake: one byte (within the
/// file's data) or one record (of the first few after the offer) flipped,
/// dropped, duplicated or swapped with the next, over a random benign link
/// (latency, fragmentation, coalescing, a window). Invariants: if the edit
/// changed the stream, the receiver ends with an integrity error, the
/// sender with an integrity error or the receiver's report of its failure
/// (never believing the file delivered), and nothing is ever under the
/// final name (nothing saved); if it did not (a swap of two equal bytes),
/// the file arrives identical; bounded steps.
pub fn secure_tamper_session(seed: u64) -> Result<SimReport, String> {
    guarded(seed, || secure_tamper_inner(seed))
}

fn secure_tamper_inner(seed: u64) -> Result<SimReport, String> {
    use super::netem::{Tamper, TamperOp, TamperTarget};
    use crate::testing::{MemDisk, MemReceiver, MemSender};
    use crate::xfer::SafeName;

    let start = Instant::now();
    let mut sim = Sim::new(seed, start);
    let chunk = small_transfer().chunk_size;
    let size = sim.rng.random_range(4 * chunk..=8 * chunk);
    let name = SafeName::new(b"tampered.bin", 64).expect("valid");
    let data = bytes::Bytes::from(content(&mut sim.rng, size));
    let ops = [
        TamperOp::Flip,
        TamperOp::Drop,
        TamperOp::Duplicate,
        TamperOp::Swap,
    ];
    let op = ops[sim.rng.random_range(0..ops.len())];
    // After the first record (the preamble and the offer, which the
    // sender follows with nothing until it is accepted): the file's data,
    // which flows on, so an edit that needs the next bytes gets them.
    let target = match sim.rng.random_bool(0.5) {
        true => TamperTarget::Byte(HANDSHAKE + sim.rng.random_range(200..2 * chunk as u64)),
        false => TamperTarget::Record(sim.rng.random_range(1..4)),
    };
    let tampered = Impairments {
        tamper: Some(Tamper { op, target }),
        ..sim.random_impairments(false)
    };
    let plain = sim.random_impairments(false);
    let config = SecureConfig {
        max_record: sim.rng.random_range(256..=1024),
        ..SecureConfig::default()
    };
    let now = sim.now;
    let mut tx = MemSender::new([(name.clone(), data.clone())]);
    let mut rx = MemReceiver::new(MemDisk::default(), false);
    let sender = crate::xfer::Sender::new(tx.role(small_transfer()), small_limits(), now);
    let receiver = crate::xfer::Receiver::new(
        crate::xfer::ReceiverRole::new(small_transfer()),
        small_limits(),
        now,
    );
    let mut a = Secure::client(sender, SIM_CODE, config.clone(), now, sim.rng.random());
    let mut b = Secure::server(receiver, SIM_CODE, config, now, sim.rng.random());
    let (outcome, link) = sim
        .connect_links(
            (&mut a, &mut tx),
            (&mut b, &mut rx),
            (&tampered, &plain),
            MAX_STEPS,
        )
        .map_err(|e| e.to_string())?;
    let edit = format!("{op:?} {target:?}");
    if std::env::var_os("SIM_DEBUG").is_some() {
        eprintln!("{edit} of a {size}-byte file: {tampered:?}\n  {outcome:?}\n  {link:?}");
    }
    if !link.tampered {
        // The edit changed nothing: the transfer is whole.
        if outcome.a.is_err() || outcome.b.is_err() {
            return Err(format!("{edit} changed nothing, yet: {outcome:?}"));
        }
        if rx.disk.files.get(name.as_str()).map(Vec::as_slice) != Some(&data[..]) {
            return Err(format!("{edit} changed nothing, yet the file differs"));
        }
    } else {
        if !is_integrity(&outcome.b) {
            return Err(format!("{edit}: the receiver ended with {:?}", outcome.b));
        }
        // The sender learns it from the channel, or from the receiver's
        // report of a failure of its own (an edited record length made it
        // wait for bytes that never came, until its frame deadline).
        let told = matches!(
            outcome.a,
            Err(DriverError::Machine(crate::Error::PeerFailed { .. }))
        );
        if !(is_integrity(&outcome.a) || told) || !tx.delivered.is_empty() {
            return Err(format!("{edit}: the sender ended with {:?}", outcome.a));
        }
        if !rx.disk.files.is_empty() || !rx.saved.is_empty() {
            return Err(format!("{edit} left a file under its final name"));
        }
    }
    let mut report = SimReport {
        seed,
        connections: 1,
        corrupted_connections: u32::from(link.tampered),
        bytes: size as u64,
        elapsed: sim.now - start,
        ..SimReport::default()
    };
    for side in [&outcome.a, &outcome.b] {
        if let Err(e) = side {
            report.failures.push(failure_kind(e)?);
        }
    }
    Ok(report)
}

/// One secure session from `seed`, a file transfer or echo, in which the
/// two sides hold different codes (one character changed, or another code
/// altogether), over a random benign link. Invariants: both sides fail
/// with a wrong code, each having seen the other's hello and neither
/// confirmed; the wrapped machines see nothing: no offer, no file, no
/// greeting or reply; bounded steps.
pub fn secure_wrong_code_session(seed: u64) -> Result<SimReport, String> {
    guarded(seed, || secure_wrong_code_inner(seed))
}

fn secure_wrong_code_inner(seed: u64) -> Result<SimReport, String> {
    let start = Instant::now();
    let mut sim = Sim::new(seed, start);
    let mut other = SIM_CODE.to_vec();
    if sim.rng.random_bool(0.8) {
        let i = sim.rng.random_range(0..other.len());
        other[i] = match other[i] {
            b'z' => b'a',
            c => c + 1,
        };
    } else {
        other = b"412-guess-guess-guess".to_vec();
    }
    let (client_code, server_code) = match sim.rng.random_bool(0.5) {
        true => (SIM_CODE, &other[..]),
        false => (&other[..], SIM_CODE),
    };
    let links = (sim.random_impairments(false), sim.random_impairments(false));
    let config = SecureConfig::default();
    let codes = (client_code, server_code);
    let (outcome, link, seen) = match sim.rng.random_bool(0.5) {
        true => wrong_code_xfer(&mut sim, codes, (&links.0, &links.1), &config)?,
        false => wrong_code_echo(&mut sim, codes, (&links.0, &links.1), &config)?,
    };
    if let Some(seen) = seen {
        return Err(format!("the wrapped machine saw {seen}"));
    }
    for (side, result) in [("client", &outcome.a), ("server", &outcome.b)] {
        let wrong = matches!(
            result,
            Err(DriverError::Machine(crate::Error::Secure(
                crate::error::SecureError::WrongCode
            )))
        );
        if !wrong {
            return Err(format!(
                "the {side} ended with {result:?}, not a wrong code"
            ));
        }
    }
    let mut report = SimReport {
        seed,
        connections: 1,
        stalls: link.stalls,
        elapsed: sim.now - start,
        ..SimReport::default()
    };
    for side in [&outcome.a, &outcome.b] {
        if let Err(e) = side {
            report.failures.push(failure_kind(e)?);
        }
    }
    Ok(report)
}

fn is_integrity(result: &Result<(), DriverError>) -> bool {
    matches!(
        result,
        Err(DriverError::Machine(crate::Error::Secure(
            crate::error::SecureError::Integrity(_)
        )))
    )
}

/// A wrong-code session's outcome, its links, and what (if anything) the
/// wrapped machines let through.
type WrongCodeRun = (PairOutcome, LinkReport, Option<String>);

/// Both sides of a secure session after it: each saw the other's hello
/// (a guess was spent) and neither was confirmed.
fn handshake_failed<A: StreamMachine, B: StreamMachine>(
    a: &Secure<A>,
    b: &Secure<B>,
) -> Option<String> {
    let spent = a.has_peer_hello() && b.has_peer_hello();
    let confirmed = a.is_confirmed() || b.is_confirmed();
    (!spent || confirmed).then(|| format!("hellos taken {spent}, a side confirmed {confirmed}"))
}

fn wrong_code_xfer(
    sim: &mut Sim,
    (client_code, server_code): (&[u8], &[u8]),
    links: Links<'_>,
    config: &SecureConfig,
) -> Result<WrongCodeRun, String> {
    use crate::testing::{MemDisk, MemReceiver, MemSender};
    use crate::xfer::{Receiver, ReceiverRole, SafeName, Sender};

    let name = SafeName::new(b"never.bin", 64).expect("valid");
    let data = bytes::Bytes::from(content(&mut sim.rng, 3000));
    let now = sim.now;
    let mut tx = MemSender::new([(name, data)]);
    let mut rx = MemReceiver::new(MemDisk::default(), false);
    let sender = Sender::new(tx.role(small_transfer()), small_limits(), now);
    let receiver = Receiver::new(ReceiverRole::new(small_transfer()), small_limits(), now);
    let mut a = Secure::client(sender, client_code, config.clone(), now, sim.rng.random());
    let mut b = Secure::server(receiver, server_code, config.clone(), now, sim.rng.random());
    let (outcome, link) = sim
        .connect_links((&mut a, &mut tx), (&mut b, &mut rx), links, MAX_STEPS)
        .map_err(|e| e.to_string())?;
    let seen = if !rx.offers.is_empty() || !rx.disk.partials.is_empty() {
        Some(format!("offers {:?}", rx.offers))
    } else if !rx.disk.files.is_empty() || !tx.started.is_empty() {
        Some("a file started".into())
    } else {
        handshake_failed(&a, &b)
    };
    Ok((outcome, link, seen))
}

fn wrong_code_echo(
    sim: &mut Sim,
    (client_code, server_code): (&[u8], &[u8]),
    links: Links<'_>,
    config: &SecureConfig,
) -> Result<WrongCodeRun, String> {
    use crate::echo::{Client, ClientEvent, EchoClient, EchoServer, Server};
    use crate::testing::fuzz::echo::GREETING;

    let now = sim.now;
    let mut client = EchoClient::new(Client::new(small_echo()), small_limits(), now);
    client
        .send(bytes::Bytes::from_static(b"for your eyes only"))
        .map_err(|e| e.to_string())?;
    client.close().map_err(|e| e.to_string())?;
    let server = EchoServer::new(Server::new(GREETING, small_echo()), small_limits(), now);
    let mut a = Secure::client(client, client_code, config.clone(), now, sim.rng.random());
    let mut b = Secure::server(server, server_code, config.clone(), now, sim.rng.random());
    let mut events = Vec::new();
    let mut app = |_: &mut Secure<EchoClient>, _: Instant, e: ClientEvent| {
        events.push(e);
        Ok(())
    };
    let (outcome, link) = sim
        .connect_links(
            (&mut a, &mut app),
            (&mut b, &mut crate::driver::Ignore),
            links,
            MAX_STEPS,
        )
        .map_err(|e| e.to_string())?;
    let seen = match events.is_empty() {
        false => Some(format!("client events {events:?}")),
        true => handshake_failed(&a, &b),
    };
    Ok((outcome, link, seen))
}

/// What [`many_files_session`] measured.
#[derive(Debug, Clone)]
pub struct ManyFiles {
    /// Virtual time from the connection's start until both sides ended.
    pub elapsed: Duration,
    /// Entries the receiver saved (files) or made (directories).
    pub saved: usize,
}

/// `files` small files (1 KiB each, in 10 directories) over a link with a
/// fixed one-way delay, the receiver confirming in groups when the sender
/// says it waits (`Flush`), as a group commit does. Checks that every file
/// arrives with its content, path and metadata; returns how long it took
/// in virtual time. With no round trip per file, that grows with the
/// window turns (files / window), not with the number of files.
pub fn many_files_session(files: usize, one_way: Duration, seed: u64) -> Result<ManyFiles, String> {
    use crate::testing::{MemDisk, MemReceiver, MemSender};
    use crate::xfer::{
        EntryKind, FileSpec, Meta, Mtime, Receiver, ReceiverRole, SafeName, SafePath, Sender,
    };
    use bytes::Bytes;

    let start = Instant::now();
    let mut sim = Sim::new(seed, start);
    let transfer = crate::config::TransferConfig {
        window: 256,
        ..small_transfer()
    };
    let limits = transfer.path_limits();
    let name = |s: String| SafeName::new(s.as_bytes(), 64).expect("valid");
    let mut entries = Vec::new();
    for d in 0..10 {
        let path = SafePath::new(vec![name(format!("d{d}"))], &limits).expect("valid");
        let meta = Meta {
            mode: 0o755,
            mtime: Mtime { secs: 7, nanos: 0 },
        };
        let spec = FileSpec {
            path,
            kind: EntryKind::Directory,
            size: 0,
            meta,
        };
        entries.push((spec, Bytes::new()));
    }
    for i in 0..files {
        let parts = vec![name(format!("d{}", i % 10)), name(format!("f{i}"))];
        let content = Bytes::from(content(&mut sim.rng, 1024));
        let meta = Meta {
            mode: 0o640,
            mtime: Mtime {
                secs: 1_700_000_000 + i as i64,
                nanos: i as u32,
            },
        };
        let spec = FileSpec {
            path: SafePath::new(parts, &limits).expect("valid"),
            kind: EntryKind::File,
            size: content.len() as u64,
            meta,
        };
        entries.push((spec, content));
    }
    let mut tx = MemSender::entries(entries.clone());
    let mut rx = MemReceiver::new(MemDisk::default(), false);
    rx.defer_saves = true;
    let imp = Impairments {
        latency: (one_way, one_way),
        max_piece: 65_536,
        ..Impairments::none()
    };
    let mut sender = Sender::new(tx.role(transfer.clone()), small_limits(), start);
    let mut receiver = Receiver::new(ReceiverRole::new(transfer), small_limits(), start);
    let (outcome, _) = sim
        .connect(
            (&mut sender, &mut tx),
            (&mut receiver, &mut rx),
            &imp,
            MAX_STEPS,
        )
        .map_err(|e| e.to_string())?;
    if outcome.a.is_err() || outcome.b.is_err() {
        return Err(format!("failed on a clean link: {outcome:?}"));
    }
    for (spec, content) in &entries {
        let path = spec.path.to_string();
        match spec.kind {
            EntryKind::Directory if !rx.disk.dirs.contains(&path) => {
                return Err(format!("{path}: directory not made"))
            }
            EntryKind::File if rx.disk.files.get(&path).map(Vec::as_slice) != Some(content) => {
                return Err(format!("{path}: content differs"))
            }
            EntryKind::File if rx.disk.meta.get(&path) != Some(&spec.meta) => {
                return Err(format!("{path}: metadata differs"))
            }
            _ => {}
        }
    }
    let ended = outcome.ended.0.max(outcome.ended.1);
    Ok(ManyFiles {
        elapsed: ended - start,
        saved: rx.saved.len() + rx.disk.dirs.len(),
    })
}
