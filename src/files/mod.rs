//! The file-system side of file transfer, for drivers (not machines): a
//! receiver's destination directory ([`Store`]), a sender's files
//! ([`walk`] of the paths given, then a [`Source`] for each file), and
//! the [`App`](crate::driver::App)s that answer the machines' events with
//! them ([`SenderApp`], [`ReceiverApp`]); and, in [`legacy`], the apps of
//! the legacy file machines ([`crate::legacy`]). Touches
//! `std::fs` and nothing else; no sockets, no clocks, no threads.
//! Unix only: the store relies on `openat`-style calls that never follow
//! symbolic links.

mod app;
pub mod legacy;
mod source;
mod store;
mod walk;
#[cfg(feature = "wormhole")]
pub mod wormhole;
#[cfg(feature = "wormhole")]
pub mod zip;

pub use app::{FileReport, Outcome, Progress, ReceiverApp, SenderApp, Totals};
pub use source::Source;
pub use store::{Committed, Incoming, Refusal, Store, UNNAMED_BELOW};
pub use walk::{walk, SkipReason, Skipped, Walk, WalkEntry};
