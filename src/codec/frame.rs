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
    /// Sender to receiver: an entry (a file or a directory) is coming.
    Offer {
        /// The entry's number in this session: 0, 1, 2... in offer order.
        id: u32,
        /// 0: a regular file; 1: a directory.
        kind: u8,
        /// Permission bits (the receiver keeps only `0o777`).
        mode: u32,
        /// Modification time, seconds since the Unix epoch.
        mtime_secs: i64,
        /// Modification time, nanoseconds (below 10^9).
        mtime_nanos: u32,
        /// The file's size in bytes (0 for a directory).
        size: u64,
        /// The relative path, encoded component by component (see
        /// [`SafePath::decode`](crate::xfer::SafePath::decode)):
        /// peer-supplied, validated by the receiver.
        path: Bytes,
    },
    /// Receiver to sender: send entry `id`; I already hold `have` bytes whose
    /// BLAKE3 is `prefix` (zero bytes and the hash of nothing for a fresh file).
    Accept {
        /// The offer answered.
        id: u32,
        /// Bytes the receiver holds: of an interrupted transfer, or (with
        /// [`ACCEPT_COMPLETE`]) of a complete file under the final name.
        have: u64,
        /// BLAKE3 of those bytes.
        prefix: [u8; HASH_LEN],
        /// [`ACCEPT_COMPLETE`], [`ACCEPT_REPLACE`].
        flags: u8,
    },
    /// Receiver to sender: I will not take entry `id` (or could not save it).
    Reject {
        /// The entry.
        id: u32,
        /// Why not.
        reason: RejectReason,
        /// Detail (peer-supplied: sanitise before printing).
        message: Bytes,
    },
    /// Sender to receiver: data of entry `id` follows from this offset (0,
    /// or the `have` of its `Accept`).
    Begin {
        /// The entry.
        id: u32,
        /// Where the data stream starts.
        from: u64,
    },
    /// Sender to receiver: the next bytes of the file begun last.
    Data(Bytes),
    /// Sender to receiver: the next `len` bytes of the file begun last are
    /// zeros the receiver does not write (a hole of a sparse file).
    Hole {
        /// How many (1 to [`MAX_HOLE`]).
        len: u64,
    },
    /// Sender to receiver: entry `id` is complete. Certifies both what the
    /// file is called and what it holds, so a name corrupted in flight can
    /// never put verified content under another name.
    End {
        /// The entry.
        id: u32,
        /// BLAKE3 of the whole content.
        hash: [u8; HASH_LEN],
        /// BLAKE3 of the `Offer` payload as the sender sent it;
        /// see [`offer_digest`](crate::xfer::offer_digest).
        offer: [u8; HASH_LEN],
    },
    /// Receiver to sender: entry `id` is verified, durable and under its
    /// final name (a directory: it exists).
    Saved {
        /// The entry.
        id: u32,
        /// [`SAVED_METADATA`], or 0.
        flags: u8,
        /// The BLAKE3 the receiver verified: the `End`'s content hash (for
        /// a directory, BLAKE3 of nothing). The sender checks it, so a
        /// `Saved` sent before the file's `End` was read is refused.
        hash: [u8; HASH_LEN],
    },
    /// Sender to receiver: entry `id` will not be sent (the rest of it,
    /// when it has begun): the next accepted entry, before its `Begin`
    /// (a complete file that differs and may not be replaced, or a file
    /// the sender cannot read), or the entry begun last, before its `End`
    /// (its source vanished, shrank or failed to read).
    Skip {
        /// The entry.
        id: u32,
    },
    /// Receiver to sender, first frame: at most `files` entries may be
    /// offered and not yet finished (saved, rejected or skipped).
    Window {
        /// The window, at least 1.
        files: u32,
    },
    /// Sender to receiver: I wait for confirmations; make durable what you hold.
    Flush,
    /// Sender to receiver: no more files; the session is over.
    Quit,
}

/// `Accept` flag: `have` is a complete file under the final name, not a
/// partial one; if the sender's differs, it is sent whole (with
/// [`ACCEPT_REPLACE`]) or skipped.
pub const ACCEPT_COMPLETE: u8 = 1;
/// `Accept` flag, with [`ACCEPT_COMPLETE`]: the receiver may replace that file.
pub const ACCEPT_REPLACE: u8 = 2;
/// `Saved` flag: the content was already there (up to date) and its
/// permission bits or modification time were brought in line with the
/// offer's.
pub const SAVED_METADATA: u8 = 1;
/// Most zeros one `Hole` frame stands for (64 MiB): the receiver hashes
/// them, so one frame costs it a bounded amount of work.
pub const MAX_HOLE: u64 = 64 << 20;
/// Payloads up to this size are copied into the frame's header buffer by
/// [`Frame::encode`]: copying 1 KiB costs less than a second buffer's
/// reference count, queue slot and `iovec`.
const INLINE_BODY: usize = 1024;
/// Bytes of an `Offer` before its path.
pub const OFFER_FIXED: usize = 4 + 1 + 4 + 8 + 4 + 8;

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
    pub const HOLE: u8 = 0x28;
    pub const SKIP: u8 = 0x29;
    pub const WINDOW: u8 = 0x2a;
    pub const FLUSH: u8 = 0x2b;
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
        tag::HOLE => ("Hole", Some(File)),
        tag::SKIP => ("Skip", Some(File)),
        tag::WINDOW => ("Window", Some(File)),
        tag::FLUSH => ("Flush", Some(File)),
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
        tag::OFFER => (false, limits.max_offer_path.saturating_add(OFFER_FIXED)),
        tag::ACCEPT => (true, 4 + 8 + HASH_LEN + 1),
        tag::REJECT => (false, 4 + 1 + MAX_TEXT),
        tag::BEGIN => (true, 4 + 8),
        tag::DATA => (false, limits.max_frame),
        tag::HOLE => (true, 8),
        tag::END => (true, 4 + 2 * HASH_LEN),
        tag::SAVED => (true, 4 + 1 + HASH_LEN),
        tag::SKIP | tag::WINDOW => (true, 4),
        // Exit, Bye, Flush, Quit.
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
            Frame::Saved { .. } => "Saved",
            Frame::Hole { .. } => "Hole",
            Frame::Skip { .. } => "Skip",
            Frame::Window { .. } => "Window",
            Frame::Flush => "Flush",
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
            Frame::Saved { .. } => tag::SAVED,
            Frame::Hole { .. } => tag::HOLE,
            Frame::Skip { .. } => tag::SKIP,
            Frame::Window { .. } => tag::WINDOW,
            Frame::Flush => tag::FLUSH,
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
    /// A payload of at most 1 KiB is copied into the header instead: one
    /// buffer, so a small frame costs one plain write, not a vectored one.
    pub fn encode(&self) -> (Bytes, Option<Bytes>) {
        let mut fields = BytesMut::new();
        self.put_fields(&mut fields);
        let body = self.body().filter(|b| !b.is_empty());
        let body_len = body.map_or(0, Bytes::len);
        let inline = body_len <= INLINE_BODY;
        let mut head =
            BytesMut::with_capacity(HEADER_LEN + fields.len() + if inline { body_len } else { 0 });
        head.put_u8(self.tag());
        head.put_u32(u32::try_from(fields.len() + body_len).expect("frame length fits u32"));
        head.extend_from_slice(&fields);
        match body {
            Some(body) if inline => {
                head.extend_from_slice(body);
                (head.freeze(), None)
            }
            body => (head.freeze(), body.cloned()),
        }
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
            Frame::Offer { .. } => put_offer(self, out),
            Frame::Accept {
                id,
                have,
                prefix,
                flags,
            } => {
                out.put_u32(*id);
                out.put_u64(*have);
                out.extend_from_slice(prefix);
                out.put_u8(*flags);
            }
            Frame::Reject {
                id,
                reason,
                message,
            } => {
                out.put_u32(*id);
                out.put_u8(reason.to_byte());
                out.extend_from_slice(message);
            }
            Frame::Begin { id, from } => {
                out.put_u32(*id);
                out.put_u64(*from);
            }
            Frame::Hole { len } => out.put_u64(*len),
            Frame::End { id, hash, offer } => {
                out.put_u32(*id);
                out.extend_from_slice(hash);
                out.extend_from_slice(offer);
            }
            Frame::Saved { id, flags, hash } => {
                out.put_u32(*id);
                out.put_u8(*flags);
                out.extend_from_slice(hash);
            }
            Frame::Skip { id } => out.put_u32(*id),
            Frame::Window { files } => out.put_u32(*files),
            Frame::Greeting(_)
            | Frame::Message(_)
            | Frame::Data(_)
            | Frame::Exit
            | Frame::Bye
            | Frame::Flush
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
            tag::OFFER => parse_offer(p)?,
            tag::ACCEPT => {
                let id = take_u32(&mut p, "Accept")?;
                let have = take_u64(&mut p, "Accept")?;
                let flags = p.split_off(HASH_LEN.min(p.len()));
                let prefix = exact_hash(p, "Accept")?;
                let flags = exact_u8(flags, "Accept")?;
                Frame::Accept {
                    id,
                    have,
                    prefix,
                    flags,
                }
            }
            tag::REJECT => {
                let id = take_u32(&mut p, "Reject")?;
                let reason = RejectReason::from_byte(take_u8(&mut p, "Reject")?);
                Frame::Reject {
                    id,
                    reason,
                    message: p,
                }
            }
            tag::BEGIN => {
                let id = take_u32(&mut p, "Begin")?;
                let from = take_u64(&mut p, "Begin")?;
                empty(p, Frame::Begin { id, from })?
            }
            tag::DATA => Frame::Data(p),
            tag::HOLE => {
                let len = take_u64(&mut p, "Hole")?;
                if len == 0 || len > MAX_HOLE {
                    return Err(CodecError::Malformed {
                        frame: "Hole",
                        reason: "length must be 1 to 64 MiB",
                    });
                }
                empty(p, Frame::Hole { len })?
            }
            tag::END => {
                let id = take_u32(&mut p, "End")?;
                if p.len() != 2 * HASH_LEN {
                    return Err(CodecError::Malformed {
                        frame: "End",
                        reason: "payload must be an id and two 32-byte hashes",
                    });
                }
                let offer = exact_hash(p.split_off(HASH_LEN), "End")?;
                let hash = exact_hash(p, "End")?;
                Frame::End { id, hash, offer }
            }
            tag::SAVED => {
                let id = take_u32(&mut p, "Saved")?;
                let flags = take_u8(&mut p, "Saved")?;
                let hash = exact_hash(p, "Saved")?;
                Frame::Saved { id, flags, hash }
            }
            tag::SKIP => {
                let id = take_u32(&mut p, "Skip")?;
                empty(p, Frame::Skip { id })?
            }
            tag::WINDOW => {
                let files = take_u32(&mut p, "Window")?;
                if files == 0 {
                    return Err(CodecError::Malformed {
                        frame: "Window",
                        reason: "the window must be at least 1",
                    });
                }
                empty(p, Frame::Window { files })?
            }
            tag::FLUSH => empty(p, Frame::Flush)?,
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

fn take_u32(p: &mut Bytes, frame: &'static str) -> Result<u32, CodecError> {
    p.try_get_u32().map_err(|_| short(frame))
}

fn exact_u8(p: Bytes, frame: &'static str) -> Result<u8, CodecError> {
    match p[..] {
        [b] => Ok(b),
        _ => Err(CodecError::Malformed {
            frame,
            reason: "wrong length",
        }),
    }
}

/// The fixed fields of an `Offer`, then its path.
fn put_offer(frame: &Frame, out: &mut BytesMut) {
    if let Frame::Offer {
        id,
        kind,
        mode,
        mtime_secs,
        mtime_nanos,
        size,
        path,
    } = frame
    {
        out.put_u32(*id);
        out.put_u8(*kind);
        out.put_u32(*mode);
        out.put_i64(*mtime_secs);
        out.put_u32(*mtime_nanos);
        out.put_u64(*size);
        out.extend_from_slice(path);
    }
}

fn parse_offer(mut p: Bytes) -> Result<Frame, CodecError> {
    if p.len() < OFFER_FIXED {
        return Err(short("Offer"));
    }
    let (id, kind, mode) = (p.get_u32(), p.get_u8(), p.get_u32());
    let (mtime_secs, mtime_nanos, size) = (p.get_i64(), p.get_u32(), p.get_u64());
    if mtime_nanos >= 1_000_000_000 {
        return Err(CodecError::Malformed {
            frame: "Offer",
            reason: "nanoseconds must be below 10^9",
        });
    }
    Ok(Frame::Offer {
        id,
        kind,
        mode,
        mtime_secs,
        mtime_nanos,
        size,
        path: p,
    })
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
