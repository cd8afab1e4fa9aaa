//! Terminal output, for every command: progress meters, per-file
//! summaries, notes, the `stopped:` and `files:` lines, and a peer's text
//! made safe to print. It touches stdout and stderr only: no socket, no
//! file, no protocol decision (the file apps it wraps in [`Tracked`] make
//! those).

mod meter;
mod out;
mod summary;
mod tracked;

pub use meter::{Bytes, Meter};
pub use out::{
    after_listening, announce, info, info_out, legacy_warning, line, note, peer_line,
    peer_line_lossy, reserve_stdout_for_json, stopped, udp_stopped, Out, Ui,
};
pub use summary::{
    all_delivered, hex, json_str, left_behind, rate, FileTally, PartialTransfer, Summary,
    PARTIAL_EXIT,
};
pub use tracked::Tracked;
