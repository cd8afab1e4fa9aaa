//! Test support shared by the test suite, the simulator and the fuzz
//! harnesses (feature `testing`). Pure: memory and a virtual clock only.

pub mod fuzz;
// An in-memory mailbox server and a pump for wormhole clients (its docs are inside).
#[cfg(feature = "wormhole")]
pub mod mailbox;
mod mem;
mod outcome;
mod pair;

pub use mem::{file_offer, MemAccepted, MemDisk, MemReceiver, MemSender};
pub use outcome::{PairOutcome, Stuck};
pub use pair::{Cutter, Pair};
pub mod netem;
// A transit relay for the simulator.
#[cfg(feature = "wormhole")]
pub mod relay;
pub mod sim;
mod tamper;

/// The secure channel's wire sizes and reason bytes, for harnesses that
/// cut, alter or forge its bytes. Not part of the stable API: an
/// implementer reads them in docs/PROTOCOL.md, section 6.
pub mod wire {
    pub use crate::secure::handshake::{
        CONFIRM_LEN, HELLO_LEN, REFUSAL_LEN, REFUSED_AFTER_GUESSES, REFUSED_AT_SOURCE_CAP,
    };
    pub use crate::secure::record::{RECORD_HEADER, RECORD_LIMIT, TAG_LEN};
}
