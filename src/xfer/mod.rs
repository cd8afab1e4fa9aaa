//! The file-transfer protocol: sender and receiver machines, and the rules
//! for peer-supplied file names. Machines only: no files, sockets, clocks or
//! threads here; the driver answers their events (see `files` for one that
//! uses the local file system).
//!
//! A session, after the preamble (protocol byte `F`): for each file the
//! sender sends `Offer{size, name}`; the receiver answers
//! `Accept{have, prefix}` or `Reject{reason, message}`. After an accept the
//! sender checks the receiver's prefix against its own, sends
//! `Begin{from}` (`have` if they match, else 0), streams `Data` chunks with
//! no per-chunk round trip and ends with `End{hash, offer}` (BLAKE3 of the
//! whole content, and of the offer it belongs to); the receiver verifies, has the file made durable under its
//! final name and confirms with `Saved`. After the last file: `Quit`.
//! See `docs/PROTOCOL.md`, section "File transfer".

mod entry;
mod names;
mod receiver;
pub mod request;
mod sender;

// Defined with the rest of the configuration (config is below xfer);
// re-exported here, where paths are checked against it.
pub use crate::config::PathLimits;
// Why a receiver refuses an offer: a wire value the app sees in its events.
pub use crate::codec::RejectReason;
pub use entry::{
    encode_raw_path, show_offered_path, EntryKind, FileSpec, Meta, Mtime, PathError, SafePath,
    MODE_BITS,
};
pub use names::{NameError, SafeName, PARTIAL_SUFFIX};
pub use receiver::{ReceiverEvent, ReceiverRole, Resume};
pub use request::{ChunkRequest, OfferRequest, PrefixRequest, Request, SaveRequest};
#[cfg(feature = "testing")]
pub(crate) use sender::offer_frame;
pub use sender::{SenderEvent, SenderRole};

use crate::codec::{Frame, FrameLimits};
use crate::config::{SessionLimits, TransferConfig};
use crate::error::ConfigError;
use crate::session::Framed;

/// The sender machine: offers files one at a time and streams them.
pub type Sender = Framed<SenderRole>;
/// The receiver machine: validates offers, checks content, confirms saves.
pub type Receiver = Framed<ReceiverRole>;

/// What both transfer roles answer to
/// [`Role::frame_limits`](crate::session::Role::frame_limits): `config`
/// validated against `session`, and names decoded up to `max_name_len`.
fn frame_limits(
    config: &TransferConfig,
    session: &SessionLimits,
) -> Result<FrameLimits, ConfigError> {
    config.validate(session)?;
    Ok(FrameLimits {
        max_offer_path: config.path_wire_len(),
        ..FrameLimits::uniform(session.max_frame)
    })
}

/// BLAKE3 of an `Offer` frame's payload (every field as encoded, the path
/// included); for any other frame, of nothing. `End` carries it so the
/// receiver can check that the entry it acted on is the one the sender
/// offered.
pub fn offer_digest(offer: &Frame) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    if matches!(offer, Frame::Offer { .. }) {
        let (head, _) = offer.encode();
        h.update(&head[crate::codec::HEADER_LEN..]);
    }
    *h.finalize().as_bytes()
}

/// Feeds `len` zeros to `hasher` (a hole: its bytes are covered by the
/// hash like any others).
pub(crate) fn hash_zeros(hasher: &mut blake3::Hasher, mut len: u64) {
    static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];
    while len > 0 {
        let n = len.min(ZEROS.len() as u64) as usize;
        hasher.update(&ZEROS[..n]);
        len -= n as u64;
    }
}
