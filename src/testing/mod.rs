//! Test support shared by the test suite, the simulator and the fuzz
//! harnesses (feature `testing`). Pure: memory and a virtual clock only.

pub mod fuzz;
mod mem;
mod outcome;
mod pair;

pub use mem::{file_offer, MemAccepted, MemDisk, MemReceiver, MemSender};
pub use outcome::{PairOutcome, Stuck};
pub use pair::{Cutter, Pair};
pub mod netem;
pub mod sim;
mod tamper;
