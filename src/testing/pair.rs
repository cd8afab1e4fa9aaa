//! An in-memory pair of stream machines, after quinn-proto's `Pair`: a
//! virtual clock, and a byte stream each way that a [`Cutter`] fragments
//! and coalesces at random (or cuts off entirely, to model a dropped link).
//!
//! The links are the simulator's [`Netem`] and the loop is the
//! simulator's: a `Pair` only chooses the impairments and keeps the
//! machines, so tests can look at them after the run.

use std::time::Instant;

use super::netem::{Impairments, Netem};
use super::outcome::{PairOutcome, Stuck};
use super::sim::Sim;
use crate::driver::App;
use crate::machine::StreamMachine;

/// The payload of one TCP segment on Ethernet: the most a torn write
/// delivers in one piece on a [`Cutter::tcp_like`] link.
const ETHERNET_SEGMENT: usize = 1460;

/// How the pair hands bytes over; every choice comes from one seed.
#[derive(Debug, Clone)]
pub struct Cutter {
    seed: u64,
    imp: Impairments,
}

impl Cutter {
    /// Harsh: any write may be torn anywhere into pieces of 1 to `max`
    /// bytes, and a read joins a random number of them. A framed protocol
    /// must not care.
    pub fn random(seed: u64, max: usize) -> Self {
        Cutter {
            seed,
            imp: Impairments {
                max_piece: max.max(1),
                random_coalesce: true,
                ..Impairments::none()
            },
        }
    }

    /// Like TCP on a real stack: a write of at most `atomic_write` bytes
    /// arrives in one piece, a longer one is torn at random (pieces of 1 to
    /// 1460 bytes), and a read
    /// joins a random number of the pieces that have arrived. The
    /// unframed legacy protocols can only work on such a link.
    pub fn tcp_like(seed: u64, atomic_write: usize) -> Self {
        Cutter {
            seed,
            imp: Impairments {
                max_piece: ETHERNET_SEGMENT,
                atomic_write,
                random_coalesce: true,
                ..Impairments::none()
            },
        }
    }

    /// Everything pending, in one piece.
    pub fn whole() -> Self {
        Cutter {
            seed: 0,
            imp: Impairments::none(),
        }
    }
}

/// Two stream machines joined in memory, with a virtual clock.
#[derive(Debug)]
pub struct Pair<A, B> {
    /// Side A (usually the client or sender).
    pub a: A,
    /// Side B (usually the server or receiver).
    pub b: B,
    sim: Sim,
    to_b: Netem,
    to_a: Netem,
}

impl<A: StreamMachine, B: StreamMachine> Pair<A, B> {
    /// Joins `a` and `b`, both created at `now`.
    pub fn new(a: A, b: B, now: Instant, cutter: Cutter) -> Self {
        Pair {
            a,
            b,
            sim: Sim::new(cutter.seed, now),
            to_b: Netem::new(cutter.imp.clone()),
            to_a: Netem::new(cutter.imp),
        }
    }

    /// Drops the link (both directions, as a reset connection) once `n`
    /// bytes have gone from A to B.
    pub fn cut_after(self, n: u64) -> Self {
        self.script_to_b(|imp| imp.cut_after = Some(n))
    }

    /// Corrupts the byte at stream offset `n` (counting from the first
    /// byte A sends, preamble included) on its way from A to B.
    pub fn flip_at(self, n: u64) -> Self {
        self.script_to_b(|imp| imp.flip_at = Some(n))
    }

    fn script_to_b(mut self, script: impl FnOnce(&mut Impairments)) -> Self {
        let mut imp = self.to_b.impairments().clone();
        script(&mut imp);
        self.to_b = Netem::new(imp);
        self
    }

    /// The virtual time.
    pub fn now(&self) -> Instant {
        self.sim.now
    }

    /// Runs both sides until both are done, with `app_a` and `app_b`
    /// answering their events, for at most `max_steps` steps.
    pub fn run(
        &mut self,
        app_a: &mut impl App<A>,
        app_b: &mut impl App<B>,
        max_steps: usize,
    ) -> Result<PairOutcome, Stuck> {
        self.sim.join(
            (&mut self.a, app_a),
            (&mut self.b, app_b),
            (&mut self.to_b, &mut self.to_a),
            max_steps,
        )
    }
}
