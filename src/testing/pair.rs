//! An in-memory pair of stream machines, after quinn-proto's `Pair`: a
//! virtual clock, and a byte stream each way that a [`Cutter`] fragments
//! and coalesces at random (or cuts off entirely, to model a dropped link).

use std::time::{Duration, Instant};

use bytes::BytesMut;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::driver::{App, DriverError};
use crate::machine::{Output, StreamMachine};

/// How the pair hands bytes over: in pieces of random size between
/// `min` and `max`, so one delivery may split a frame or join several.
#[derive(Debug, Clone)]
pub struct Cutter {
    rng: ChaCha8Rng,
    min: usize,
    max: usize,
}

impl Cutter {
    /// Pieces of 1 to `max` bytes, chosen by a generator seeded with `seed`.
    pub fn random(seed: u64, max: usize) -> Self {
        Cutter {
            rng: ChaCha8Rng::seed_from_u64(seed),
            min: 1,
            max: max.max(1),
        }
    }

    /// Everything pending, in one piece.
    pub fn whole() -> Self {
        Cutter {
            rng: ChaCha8Rng::seed_from_u64(0),
            min: usize::MAX,
            max: usize::MAX,
        }
    }

    fn piece(&mut self, available: usize) -> usize {
        if self.min >= available {
            return available;
        }
        self.rng.random_range(self.min..=self.max.min(available))
    }
}

/// How a pair's run ended: each side's final result.
#[derive(Debug)]
pub struct PairOutcome {
    /// Side A's result: its machine's `Done`, or its app's error.
    pub a: Result<(), DriverError>,
    /// Side B's result.
    pub b: Result<(), DriverError>,
}

/// A pair that made no progress within its step bound: a livelock or deadlock.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("pair stuck after {steps} steps")]
pub struct Stuck {
    /// Steps taken.
    pub steps: usize,
}

/// One direction of the link.
#[derive(Debug, Default)]
struct Pipe {
    bytes: BytesMut,
    /// Bytes still allowed through before the link drops; `None`: never.
    budget: Option<u64>,
    /// Stream offset of a byte to corrupt in flight (all bits flipped).
    flip: Option<u64>,
    /// Bytes delivered so far.
    passed: u64,
    /// The writer is done: after the bytes, the reader sees EOF.
    fin: bool,
    eof_sent: bool,
}

impl Pipe {
    /// Takes up to `room` bytes, cut by `cutter`, within the budget.
    fn take(&mut self, room: usize, cutter: &mut Cutter) -> Option<BytesMut> {
        let mut available = self.bytes.len().min(room);
        if let Some(budget) = self.budget {
            available = available.min(usize::try_from(budget).unwrap_or(usize::MAX));
        }
        if available == 0 {
            return None;
        }
        let n = cutter.piece(available);
        if let Some(budget) = &mut self.budget {
            *budget -= n as u64;
        }
        let mut piece = self.bytes.split_to(n);
        if let Some(at) = self.flip {
            if let Some(i) = at.checked_sub(self.passed).filter(|&i| i < n as u64) {
                piece[i as usize] ^= 0xff;
            }
        }
        self.passed += n as u64;
        Some(piece)
    }

    fn exhausted(&self) -> bool {
        self.budget == Some(0)
    }
}

/// Two stream machines joined in memory, with a virtual clock.
#[derive(Debug)]
pub struct Pair<A, B> {
    /// Side A (usually the client or sender).
    pub a: A,
    /// Side B (usually the server or receiver).
    pub b: B,
    /// The virtual time.
    pub now: Instant,
    to_b: Pipe,
    to_a: Pipe,
    cutter: Cutter,
    a_done: Option<Result<(), DriverError>>,
    b_done: Option<Result<(), DriverError>>,
}

impl<A: StreamMachine, B: StreamMachine> Pair<A, B> {
    /// Joins `a` and `b`, both created at `now`.
    pub fn new(a: A, b: B, now: Instant, cutter: Cutter) -> Self {
        Pair {
            a,
            b,
            now,
            to_b: Pipe::default(),
            to_a: Pipe::default(),
            cutter,
            a_done: None,
            b_done: None,
        }
    }

    /// Drops the link (both directions, as a reset connection) once `n`
    /// bytes have gone from A to B.
    pub fn cut_after(mut self, n: u64) -> Self {
        self.to_b.budget = Some(n);
        self
    }

    /// Corrupts the byte at stream offset `n` (counting from the first
    /// byte A sends, preamble included) on its way from A to B.
    pub fn flip_at(mut self, n: u64) -> Self {
        self.to_b.flip = Some(n);
        self
    }

    /// Runs both sides until both are done, with `app_a` and `app_b`
    /// answering their events, for at most `max_steps` steps.
    pub fn run(
        &mut self,
        app_a: &mut impl App<A>,
        app_b: &mut impl App<B>,
        max_steps: usize,
    ) -> Result<PairOutcome, Stuck> {
        for steps in 0..max_steps {
            let now = self.now;
            let mut busy = drain(&mut self.a, app_a, now, &mut self.to_b, &mut self.a_done);
            busy |= drain(&mut self.b, app_b, now, &mut self.to_a, &mut self.b_done);
            if self.a_done.is_some() && self.b_done.is_some() {
                return Ok(PairOutcome {
                    a: self.a_done.take().expect("checked"),
                    b: self.b_done.take().expect("checked"),
                });
            }
            if self.to_b.exhausted() && !self.to_b.fin {
                self.drop_link();
                busy = true;
            }
            busy |= deliver(&mut self.to_b, &mut self.b, &mut self.cutter, now);
            busy |= deliver(&mut self.to_a, &mut self.a, &mut self.cutter, now);
            if !busy && !self.advance_clock() {
                return Err(Stuck { steps });
            }
        }
        Err(Stuck { steps: max_steps })
    }

    /// The link drops: whatever is in flight is lost and both ends see EOF.
    fn drop_link(&mut self) {
        for pipe in [&mut self.to_a, &mut self.to_b] {
            pipe.bytes.clear();
            pipe.fin = true;
        }
    }

    /// Jumps the clock to the earliest deadline and fires it.
    fn advance_clock(&mut self) -> bool {
        let a = deadline(&mut self.a, &self.a_done);
        let b = deadline(&mut self.b, &self.b_done);
        let Some(next) = [a, b].into_iter().flatten().min() else {
            return false;
        };
        self.now = self.now.max(next) + Duration::from_millis(1);
        self.a.handle_timeout(self.now);
        self.b.handle_timeout(self.now);
        true
    }
}

/// The machine's next deadline, if it is idle and waiting for one.
fn deadline<M: StreamMachine>(
    m: &mut M,
    done: &Option<Result<(), DriverError>>,
) -> Option<Instant> {
    match (done, m.poll_output()) {
        (None, Output::Wait(t)) => t,
        _ => None,
    }
}

/// Drains one machine: transmits go into its outgoing pipe, events to its app.
fn drain<M: StreamMachine>(
    m: &mut M,
    app: &mut impl App<M>,
    now: Instant,
    out: &mut Pipe,
    done: &mut Option<Result<(), DriverError>>,
) -> bool {
    if done.is_some() {
        return false;
    }
    let mut busy = false;
    loop {
        match m.poll_output() {
            Output::Transmit(bytes) => {
                busy = true;
                if !out.fin {
                    out.bytes.extend_from_slice(&bytes);
                }
            }
            Output::Event(e) => {
                busy = true;
                if let Err(source) = app.on_event(m, now, e) {
                    *done = Some(Err(DriverError::Io {
                        context: "app",
                        source,
                    }));
                    out.fin = true;
                    return true;
                }
            }
            Output::Wait(_) => return busy,
            Output::Done(result) => {
                *done = Some(result.map_err(DriverError::from));
                // The machine is finished with the connection: the peer sees EOF.
                out.fin = true;
                return true;
            }
        }
    }
}

/// Hands one cut piece of the pipe to its reader, or the EOF once it is empty.
fn deliver<M: StreamMachine>(
    pipe: &mut Pipe,
    m: &mut M,
    cutter: &mut Cutter,
    now: Instant,
) -> bool {
    if let Some(piece) = pipe.take(m.input_room(), cutter) {
        // An error here is sticky in the machine and surfaces as its `Done`.
        let _ = m.handle_input(now, &piece);
        return true;
    }
    if pipe.fin && pipe.bytes.is_empty() && !pipe.eof_sent {
        pipe.eof_sent = true;
        m.handle_eof(now);
        return true;
    }
    false
}
