//! Frame types and their payload layouts.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::{CodecError, FrameLimits, Protocol, HASH_LEN, HEADER_LEN, MAX_TEXT};
use crate::error::ErrorCode;

/// Why a receiver refused a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// A file of that name exists and overwriting was not allowed.
    Exists,
    /// The name is not a single safe path component.
    NameRefused,
    /// The file is larger than the receiver accepts.
    TooLarge,
    /// The receiver could not store it (disk full, permissions, ...).
    Disk,
    /// Another session is receiving the same name right now.
    Busy,
    /// A directory on the offered path is not one on the receiver: a file,
    /// or a symbolic link (never followed).
    NotADirectory,
    /// A file is offered where the receiver has a directory, or a
    /// directory where it has something else.
    IsADirectory,
    /// The session offered more entries than the receiver takes in one.
    TooMany,
    /// A reason this version does not know.
    Other(u8),
}

impl RejectReason {
    fn to_byte(self) -> u8 {
        match self {
            RejectReason::Exists => 1,
            RejectReason::NameRefused => 2,
            RejectReason::TooLarge => 3,
            RejectReason::Disk => 4,
            RejectReason::Busy => 5,
            RejectReason::NotADirectory => 6,
            RejectReason::IsADirectory => 7,
            RejectReason::TooMany => 8,
            RejectReason::Other(b) => b,
        }
    }

    fn from_byte(b: u8) -> Self {
        match b {
            1 => RejectReason::Exists,
            2 => RejectReason::NameRefused,
            3 => RejectReason::TooLarge,
            4 => RejectReason::Disk,
            5 => RejectReason::Busy,
            6 => RejectReason::NotADirectory,
            7 => RejectReason::IsADirectory,
            8 => RejectReason::TooMany,
            other => RejectReason::Other(other),
        }
    }
}

/// One frame of the native protocols. Payload-carrying variants hold
/// [`Bytes`] so that data moves from the wire to the caller without a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Either side: "I am failing, and this is why". Ends the session.
    Error {
        /// What kind of failure.
        code: ErrorCode,
        /// Human-readable text (peer-supplied: sanitise before printing).
        message: Bytes,
    },
    /// Echo server to client, first frame: the greeting text.
    Greeting(Bytes),
    /// Echo, either way: one message, boundaries kept, any bytes.
    Message(Bytes),
    /// Echo client to server: end the session.
    Exit,
    /// Echo server to client: the session ended cleanly after `Exit`.
    Bye,
    /// Sender to receiver: a file is coming.
    Offer {
        /// The file's size in bytes.
        size: u64,
        /// The proposed name: peer-supplied, validated by the receiver.
        name: Bytes,
    },
    /// Receiver to sender: send it; I already hold `have` bytes whose
    /// BLAKE3 is `prefix` (zero bytes and the hash of nothing for a fresh file).
    Accept {
        /// Bytes the receiver holds from an interrupted transfer.
        have: u64,
        /// BLAKE3 of those bytes.
        prefix: [u8; HASH_LEN],
    },
    /// Receiver to sender: I will not take this file.
    Reject {
        /// Why not.
        reason: RejectReason,
        /// Detail (peer-supplied: sanitise before printing).
        message: Bytes,
    },
    /// Sender to receiver: data follows from this offset (0, or the `have` of `Accept`).
    Begin {
        /// Where the data stream starts.
        from: u64,
    },
    /// Sender to receiver: the next bytes of the file.
    Data(Bytes),
    /// Sender to receiver: the file is complete. Certifies both what the
    /// file is called and what it holds, so a name corrupted in flight can
    /// never put verified content under another name.
    End {
        /// BLAKE3 of the whole content.
        hash: [u8; HASH_LEN],
        /// BLAKE3 of the `Offer` payload as the sender sent it (size, name);
        /// see [`offer_digest`](crate::xfer::offer_digest).
        offer: [u8; HASH_LEN],
    },
    /// Receiver to sender: verified, durable and under its final name.
    Saved,
    /// Sender to receiver: no more files; the session is over.
    Quit,
}

mod tag {
    pub const ERROR: u8 = 0x01;
    pub const GREETING: u8 = 0x10;
    pub const MESSAGE: u8 = 0x11;
    pub const EXIT: u8 = 0x12;
    pub const BYE: u8 = 0x13;
    pub const OFFER: u8 = 0x20;
    pub const ACCEPT: u8 = 0x21;
    pub const REJECT: u8 = 0x22;
    pub const BEGIN: u8 = 0x23;
    pub const DATA: u8 = 0x24;
    pub const END: u8 = 0x25;
    pub const SAVED: u8 = 0x26;
    pub const QUIT: u8 = 0x27;
}

/// What a header of one frame type may announce.
#[derive(Debug, Clone, Copy)]
pub(super) struct Bounds {
    /// The frame's name, for errors.
    pub name: &'static str,
    /// The payload must be exactly `max` bytes (a fixed-size frame).
    pub exact: bool,
    /// The most payload the type may carry.
    pub max: usize,
}

/// The name of frame type `kind`, and the protocol it belongs to (`None`:
/// both); `None` for a type this version does not know.
fn kind_info(kind: u8) -> Option<(&'static str, Option<Protocol>)> {
    use Protocol::{Echo, File};
    let info = match kind {
        tag::ERROR => ("Error", None),
        tag::GREETING => ("Greeting", Some(Echo)),
        tag::MESSAGE => ("Message", Some(Echo)),
        tag::EXIT => ("Exit", Some(Echo)),
        tag::BYE => ("Bye", Some(Echo)),
        tag::OFFER => ("Offer", Some(File)),
        tag::ACCEPT => ("Accept", Some(File)),
        tag::REJECT => ("Reject", Some(File)),
        tag::BEGIN => ("Begin", Some(File)),
        tag::DATA => ("Data", Some(File)),
        tag::END => ("End", Some(File)),
        tag::SAVED => ("Saved", Some(File)),
        tag::QUIT => ("Quit", Some(File)),
        _ => return None,
    };
    Some(info)
}

/// The payload a header of type `kind` may announce on a `protocol`
/// connection under `limits`: refused outright if the type is unknown or
/// belongs to the other protocol.
pub(super) fn bounds(
    kind: u8,
    protocol: Protocol,
    limits: &FrameLimits,
) -> Result<Bounds, CodecError> {
    let (name, owner) = kind_info(kind).ok_or(CodecError::UnknownFrame(kind))?;
    if owner.is_some_and(|p| p != protocol) {
        return Err(CodecError::ForeignFrame {
            frame: name,
            protocol,
        });
    }
    let (exact, max) = match kind {
        tag::ERROR => (false, 2 + MAX_TEXT),
        tag::GREETING | tag::MESSAGE => (false, limits.max_message),
        tag::OFFER => (false, limits.max_name_len.saturating_add(8)),
        tag::ACCEPT => (true, 8 + HASH_LEN),
        tag::REJECT => (false, 1 + MAX_TEXT),
        tag::BEGIN => (true, 8),
        tag::DATA => (false, limits.max_frame),
        tag::END => (true, 2 * HASH_LEN),
        // Exit, Bye, Saved, Quit.
        _ => (true, 0),
    };
    Ok(Bounds { name, exact, max })
}

/// Cuts `text` to at most [`MAX_TEXT`] bytes (at a character boundary
/// when it is UTF-8), so an `Error` or `Reject` frame never carries more
/// text than a peer accepts.
pub fn clip_text(text: Bytes) -> Bytes {
    if text.len() <= MAX_TEXT {
        return text;
    }
    let mut end = MAX_TEXT;
    // Back off over UTF-8 continuation bytes (at most three).
    while end > MAX_TEXT - 3 && text[end] & 0xc0 == 0x80 {
        end -= 1;
    }
    text.slice(..end)
}

impl Frame {
    /// The frame's name, for errors and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Frame::Error { .. } => "Error",
            Frame::Greeting(_) => "Greeting",
            Frame::Message(_) => "Message",
            Frame::Exit => "Exit",
            Frame::Bye => "Bye",
            Frame::Offer { .. } => "Offer",
            Frame::Accept { .. } => "Accept",
            Frame::Reject { .. } => "Reject",
            Frame::Begin { .. } => "Begin",
            Frame::Data(_) => "Data",
            Frame::End { .. } => "End",
            Frame::Saved => "Saved",
            Frame::Quit => "Quit",
        }
    }

    fn tag(&self) -> u8 {
        match self {
            Frame::Error { .. } => tag::ERROR,
            Frame::Greeting(_) => tag::GREETING,
            Frame::Message(_) => tag::MESSAGE,
            Frame::Exit => tag::EXIT,
            Frame::Bye => tag::BYE,
            Frame::Offer { .. } => tag::OFFER,
            Frame::Accept { .. } => tag::ACCEPT,
            Frame::Reject { .. } => tag::REJECT,
            Frame::Begin { .. } => tag::BEGIN,
            Frame::Data(_) => tag::DATA,
            Frame::End { .. } => tag::END,
            Frame::Saved => tag::SAVED,
            Frame::Quit => tag::QUIT,
        }
    }

    /// The bulk payload that is sent as it is, after the header, without copying.
    fn body(&self) -> Option<&Bytes> {
        match self {
            Frame::Greeting(b) | Frame::Message(b) | Frame::Data(b) => Some(b),
            _ => None,
        }
    }

    /// Encodes the frame as a header (with any small fixed fields) and,
    /// for payload-carrying frames, the payload itself (a reference-counted
    /// handle, not a copy). Their concatenation is the frame on the wire.
    pub fn encode(&self) -> (Bytes, Option<Bytes>) {
        let mut head = BytesMut::with_capacity(HEADER_LEN + 48);
        let mut fields = BytesMut::new();
        self.put_fields(&mut fields);
        let body_len = self.body().map_or(0, Bytes::len);
        head.put_u8(self.tag());
        head.put_u32(u32::try_from(fields.len() + body_len).expect("frame length fits u32"));
        head.extend_from_slice(&fields);
        (
            head.freeze(),
            self.body().filter(|b| !b.is_empty()).cloned(),
        )
    }

    /// Encodes the whole frame into one buffer (copies the payload).
    pub fn encode_to_vec(&self) -> Vec<u8> {
        let (head, body) = self.encode();
        let mut out = head.to_vec();
        out.extend_from_slice(body.as_deref().unwrap_or_default());
        out
    }

    fn put_fields(&self, out: &mut BytesMut) {
        match self {
            Frame::Error { code, message } => {
                out.put_u16(code.to_u16());
                out.extend_from_slice(message);
            }
            Frame::Offer { size, name } => {
                out.put_u64(*size);
                out.extend_from_slice(name);
            }
            Frame::Accept { have, prefix } => {
                out.put_u64(*have);
                out.extend_from_slice(prefix);
            }
            Frame::Reject { reason, message } => {
                out.put_u8(reason.to_byte());
                out.extend_from_slice(message);
            }
            Frame::Begin { from } => out.put_u64(*from),
            Frame::End { hash, offer } => {
                out.extend_from_slice(hash);
                out.extend_from_slice(offer);
            }
            Frame::Greeting(_)
            | Frame::Message(_)
            | Frame::Data(_)
            | Frame::Exit
            | Frame::Bye
            | Frame::Saved
            | Frame::Quit => {}
        }
    }

    /// Parses a payload of the given type. The payload is the whole frame
    /// body, already bounded by the decoder.
    pub(super) fn parse(kind: u8, mut p: Bytes) -> Result<Frame, CodecError> {
        let frame = match kind {
            tag::ERROR => {
                let code = ErrorCode::from_u16(take_u16(&mut p, "Error")?);
                Frame::Error { code, message: p }
            }
            tag::GREETING => Frame::Greeting(p),
            tag::MESSAGE => Frame::Message(p),
            tag::EXIT => empty(p, Frame::Exit)?,
            tag::BYE => empty(p, Frame::Bye)?,
            tag::OFFER => {
                let size = take_u64(&mut p, "Offer")?;
                Frame::Offer { size, name: p }
            }
            tag::ACCEPT => {
                let have = take_u64(&mut p, "Accept")?;
                let prefix = exact_hash(p, "Accept")?;
                Frame::Accept { have, prefix }
            }
            tag::REJECT => {
                let reason = RejectReason::from_byte(take_u8(&mut p, "Reject")?);
                Frame::Reject { reason, message: p }
            }
            tag::BEGIN => {
                let from = take_u64(&mut p, "Begin")?;
                empty(p, Frame::Begin { from })?
            }
            tag::DATA => Frame::Data(p),
            tag::END => {
                if p.len() != 2 * HASH_LEN {
                    return Err(CodecError::Malformed {
                        frame: "End",
                        reason: "payload must be two 32-byte hashes",
                    });
                }
                let offer = exact_hash(p.split_off(HASH_LEN), "End")?;
                let hash = exact_hash(p, "End")?;
                Frame::End { hash, offer }
            }
            tag::SAVED => empty(p, Frame::Saved)?,
            tag::QUIT => empty(p, Frame::Quit)?,
            other => return Err(CodecError::UnknownFrame(other)),
        };
        Ok(frame)
    }
}

fn short(frame: &'static str) -> CodecError {
    CodecError::Malformed {
        frame,
        reason: "payload too short",
    }
}

fn take_u8(p: &mut Bytes, frame: &'static str) -> Result<u8, CodecError> {
    p.try_get_u8().map_err(|_| short(frame))
}

fn take_u16(p: &mut Bytes, frame: &'static str) -> Result<u16, CodecError> {
    p.try_get_u16().map_err(|_| short(frame))
}

fn take_u64(p: &mut Bytes, frame: &'static str) -> Result<u64, CodecError> {
    p.try_get_u64().map_err(|_| short(frame))
}

fn exact_hash(p: Bytes, frame: &'static str) -> Result<[u8; HASH_LEN], CodecError> {
    <[u8; HASH_LEN]>::try_from(&p[..]).map_err(|_| CodecError::Malformed {
        frame,
        reason: "hash must be exactly 32 bytes",
    })
}

fn empty(p: Bytes, frame: Frame) -> Result<Frame, CodecError> {
    if p.is_empty() {
        Ok(frame)
    } else {
        Err(CodecError::Malformed {
            frame: frame.name(),
            reason: "payload must be empty",
        })
    }
}
