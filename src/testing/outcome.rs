//! How a run of two joined machines ended: what [`Pair`](super::Pair)
//! returns, and the simulator's loop ([`Sim`](super::sim::Sim)) that it
//! runs on. Kept apart so the pair builds on the simulator and the
//! simulator needs nothing of the pair.

use std::time::Instant;

use crate::driver::DriverError;

/// How a pair's run ended: each side's final result.
#[derive(Debug)]
pub struct PairOutcome {
    /// Side A's result: its machine's `Done`, or its app's error.
    pub a: Result<(), DriverError>,
    /// Side B's result.
    pub b: Result<(), DriverError>,
    /// When A and B ended, in virtual time.
    pub ended: (Instant, Instant),
}

/// A pair that made no progress within its step bound: a livelock or deadlock.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("pair stuck after {steps} steps")]
pub struct Stuck {
    /// Steps taken.
    pub steps: usize,
}
