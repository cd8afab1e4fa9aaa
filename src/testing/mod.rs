//! Test support shared by the test suite, the simulator and the fuzz
//! harnesses (feature `testing`). Pure: memory and a virtual clock only.

mod pair;

pub use pair::{Cutter, Pair, PairOutcome, Stuck};
pub mod netem;
pub mod sim;
