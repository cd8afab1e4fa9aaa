//! The one frame codec shared by every native protocol.
//!
//! Wire layout (see `docs/PROTOCOL.md`): each side first sends a preamble,
//! `EXFR`, a version byte and a protocol byte; then frames, each a one-byte
//! type, a big-endian `u32` payload length and the payload. Pure: bytes in,
//! frames out, nothing else.

mod decoder;
mod frame;

pub use decoder::{FrameDecoder, FrameLimits};
pub use frame::{
    clip_text, Frame, RejectReason, ACCEPT_COMPLETE, ACCEPT_REPLACE, MAX_HOLE, OFFER_FIXED,
    SAVED_METADATA,
};

pub use crate::wire::MAGIC;
/// The wire version this crate speaks.
pub const VERSION: u8 = 3;
/// Bytes in the preamble: magic, version, protocol.
pub const PREAMBLE_LEN: usize = 6;
/// Bytes in a frame header: type and length.
pub const HEADER_LEN: usize = 5;
/// Length of a BLAKE3 digest on the wire.
pub const HASH_LEN: usize = 32;
/// Longest text an `Error` or `Reject` frame carries, in bytes (after its
/// code or reason). Longer texts are cut before they are sent
/// ([`clip_text`]); a longer one received is refused at its header.
pub const MAX_TEXT: usize = 1024;

/// Which protocol a connection speaks; carried in the preamble so that a
/// client of one protocol talking to a server of another fails at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Framed echo.
    Echo,
    /// File transfer.
    File,
}

impl Protocol {
    fn to_byte(self) -> u8 {
        match self {
            Protocol::Echo => b'E',
            Protocol::File => b'F',
        }
    }

    /// The preamble a side of this protocol sends first.
    pub fn preamble(self) -> [u8; PREAMBLE_LEN] {
        let [a, b, c, d] = MAGIC;
        [a, b, c, d, VERSION, self.to_byte()]
    }
}

/// Bytes that are not well-formed frames of the expected protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The connection did not open with `EXFR`.
    #[error("bad magic {0:02x?}: not an echoxfer peer")]
    BadMagic([u8; 4]),
    /// The peer opened with the secure channel's hello
    /// ([`SECURE_MAGIC`](crate::secure::SECURE_MAGIC)): it expects an encrypted session
    /// and this side is plaintext.
    #[error("the peer expects an encrypted session but this side is plaintext: run both sides encrypted, with the same code")]
    PeerExpectsEncryption,
    /// The peer speaks a wire version this crate does not.
    #[error("unsupported wire version {0} (this side speaks {VERSION})")]
    UnsupportedVersion(u8),
    /// The peer speaks the other protocol (echo vs file transfer).
    #[error("peer speaks protocol {found:#04x}, expected {expected:?}")]
    WrongProtocol {
        /// What this side expected.
        expected: Protocol,
        /// The byte the peer sent.
        found: u8,
    },
    /// A length prefix larger than the configured maximum; nothing was allocated.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    FrameTooLarge {
        /// The announced length.
        len: u64,
        /// The configured limit.
        max: usize,
    },
    /// A frame type this version does not know.
    #[error("unknown frame type {0:#04x}")]
    UnknownFrame(u8),
    /// A frame type of the other protocol (a file frame on an echo
    /// connection, say); refused at its header.
    #[error("{frame} frame does not belong to the {protocol:?} protocol")]
    ForeignFrame {
        /// The frame's name.
        frame: &'static str,
        /// The protocol of this connection.
        protocol: Protocol,
    },
    /// A header announcing more payload than the frame type allows (such
    /// as a `Message` over `max_message`); refused before any of it is
    /// buffered.
    #[error("{frame} frame of {len} bytes exceeds its limit of {max}")]
    PayloadTooLarge {
        /// The frame's name.
        frame: &'static str,
        /// The announced length.
        len: u64,
        /// The limit for this frame type.
        max: usize,
    },
    /// A header announcing another length than the fixed size of its type.
    #[error("{frame} frame must be exactly {expected} bytes, not {len}")]
    WrongLength {
        /// The frame's name.
        frame: &'static str,
        /// The announced length.
        len: u64,
        /// The type's size.
        expected: usize,
    },
    /// A known frame type whose payload is malformed.
    #[error("malformed {frame} frame: {reason}")]
    Malformed {
        /// The frame's name.
        frame: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
}
