//! Incremental frame decoding, in the style of tokio-util's `Decoder`:
//! `Ok(None)` means "need more bytes", a parsed header is remembered
//! between calls, and each header is checked against its frame type's own
//! limit before any of its payload is buffered (the decoder never reserves
//! memory itself: its caller may, for [`FrameDecoder::body_len`] bytes,
//! once it has admitted them).

use bytes::{Buf, BytesMut};

use super::frame::bounds;
use super::{CodecError, Frame, Protocol, HEADER_LEN, MAGIC, PREAMBLE_LEN, VERSION};
use crate::wire::SECURE_MAGIC;

/// The limits a decoder checks each header against. Per frame type (see
/// `docs/PROTOCOL.md`): `Message` and `Greeting` at most `max_message`,
/// `Offer` at most `OFFER_FIXED` + `max_offer_path`, `Data` at most `max_frame`, `Error`
/// and `Reject` texts at most [`MAX_TEXT`](super::MAX_TEXT), fixed-size
/// frames exactly their size; no frame over `max_frame`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameLimits {
    /// Largest payload of any frame.
    pub max_frame: usize,
    /// Largest `Message` or `Greeting` payload.
    pub max_message: usize,
    /// Longest encoded path in an `Offer` (its payload is at most
    /// [`OFFER_FIXED`](super::OFFER_FIXED) more).
    pub max_offer_path: usize,
}

impl FrameLimits {
    /// Every variable-size frame bounded by `max_frame` alone.
    pub fn uniform(max_frame: usize) -> Self {
        FrameLimits {
            max_frame,
            max_message: max_frame,
            max_offer_path: max_frame.saturating_sub(super::OFFER_FIXED),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum State {
    Preamble,
    Head,
    Body { kind: u8, len: usize },
}

/// Turns a byte stream into frames, however it is fragmented.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    protocol: Protocol,
    limits: FrameLimits,
    state: State,
}

impl FrameDecoder {
    /// A decoder expecting the preamble of `protocol`, then frames of that
    /// protocol whose payload is at most `max_frame` bytes (and within the
    /// fixed sizes and text limits of their types).
    pub fn new(protocol: Protocol, max_frame: usize) -> Self {
        Self::with_limits(protocol, FrameLimits::uniform(max_frame))
    }

    /// A decoder expecting the preamble of `protocol`, then frames within `limits`.
    pub fn with_limits(protocol: Protocol, limits: FrameLimits) -> Self {
        FrameDecoder {
            protocol,
            limits,
            state: State::Preamble,
        }
    }

    /// Whether the peer's whole preamble has been read.
    pub fn preamble_done(&self) -> bool {
        !matches!(self.state, State::Preamble)
    }

    /// Whether part of a frame is held: its header has been read, or `src`
    /// (what the caller buffers) holds the start of one.
    pub fn in_frame(&self, src: &[u8]) -> bool {
        match self.state {
            State::Preamble => false,
            State::Head => !src.is_empty(),
            State::Body { .. } => true,
        }
    }

    /// The payload length announced by the header just read, while its
    /// payload is awaited (already checked against the limits).
    pub fn body_len(&self) -> Option<usize> {
        match self.state {
            State::Body { len, .. } => Some(len),
            State::Preamble | State::Head => None,
        }
    }

    /// Takes the next frame off the front of `src`, or `Ok(None)` if `src`
    /// does not yet hold a whole one. Consumes nothing it cannot use yet.
    pub fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        loop {
            match self.state {
                State::Preamble => {
                    if src.len() < PREAMBLE_LEN {
                        return self.check_partial_magic(src).map(|()| None);
                    }
                    self.check_preamble(&src[..PREAMBLE_LEN])?;
                    src.advance(PREAMBLE_LEN);
                    self.state = State::Head;
                }
                State::Head => {
                    if src.len() < HEADER_LEN {
                        return Ok(None);
                    }
                    let kind = src[0];
                    let len = u32::from_be_bytes([src[1], src[2], src[3], src[4]]);
                    let len = self.check_header(kind, len.into())?;
                    src.advance(HEADER_LEN);
                    self.state = State::Body { kind, len };
                }
                State::Body { kind, len } => {
                    if src.len() < len {
                        return Ok(None);
                    }
                    let payload = src.split_to(len).freeze();
                    self.state = State::Head;
                    return Frame::parse(kind, payload).map(Some);
                }
            }
        }
    }

    /// Checks a header against its type: known, of this protocol, within
    /// `max_frame` and within the type's own limit. Returns the length.
    fn check_header(&self, kind: u8, len: u64) -> Result<usize, CodecError> {
        let b = bounds(kind, self.protocol, &self.limits)?;
        if len > self.limits.max_frame as u64 {
            return Err(CodecError::FrameTooLarge {
                len,
                max: self.limits.max_frame,
            });
        }
        if b.exact && len != b.max as u64 {
            return Err(CodecError::WrongLength {
                frame: b.name,
                len,
                expected: b.max,
            });
        }
        if len > b.max as u64 {
            return Err(CodecError::PayloadTooLarge {
                frame: b.name,
                len,
                max: b.max,
            });
        }
        // Fits: `len` is at most `max_frame`, which fits a usize.
        Ok(len as usize)
    }

    /// Fails early on a short preamble that already cannot be ours, so a
    /// stray client that sends three bytes and waits gets an answer.
    fn check_partial_magic(&self, src: &[u8]) -> Result<(), CodecError> {
        let n = src.len().min(MAGIC.len());
        if src[..n] != MAGIC[..n] {
            if src[..n] == SECURE_MAGIC[..] {
                return Err(CodecError::PeerExpectsEncryption);
            }
            let mut seen = [0u8; 4];
            seen[..n].copy_from_slice(&src[..n]);
            return Err(CodecError::BadMagic(seen));
        }
        Ok(())
    }

    fn check_preamble(&self, p: &[u8]) -> Result<(), CodecError> {
        self.check_partial_magic(p)?;
        if p[4] != VERSION {
            return Err(CodecError::UnsupportedVersion(p[4]));
        }
        let expected = self.protocol.preamble()[5];
        if p[5] != expected {
            return Err(CodecError::WrongProtocol {
                expected: self.protocol,
                found: p[5],
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn stream(frames: &[Frame]) -> Vec<u8> {
        let mut out = Protocol::Echo.preamble().to_vec();
        for f in frames {
            out.extend(f.encode_to_vec());
        }
        out
    }

    #[test]
    fn decodes_frames_fed_one_byte_at_a_time() {
        let frames = [
            Frame::Greeting(Bytes::from_static(b"hi")),
            Frame::Message(Bytes::from_static(b"exit")),
            Frame::Message(Bytes::new()),
            Frame::Exit,
        ];
        let wire = stream(&frames);
        let mut dec = FrameDecoder::new(Protocol::Echo, 1024);
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for b in wire {
            buf.extend_from_slice(&[b]);
            while let Some(f) = dec.decode(&mut buf).unwrap() {
                got.push(f);
            }
        }
        assert_eq!(got, frames);
        assert!(buf.is_empty());
    }

    #[test]
    fn oversized_length_is_refused_before_allocating() {
        let mut wire = Protocol::Echo.preamble().to_vec();
        wire.extend([0x11, 0xff, 0xff, 0xff, 0xff]);
        let mut buf = BytesMut::from(&wire[..]);
        let mut dec = FrameDecoder::new(Protocol::Echo, 1024);
        let err = dec.decode(&mut buf).unwrap_err();
        assert_eq!(
            err,
            CodecError::FrameTooLarge {
                len: u32::MAX as u64,
                max: 1024
            }
        );
        assert!(buf.capacity() < 4096, "reserved {}", buf.capacity());
    }

    #[test]
    fn garbage_first_byte_is_bad_magic_at_once() {
        let mut buf = BytesMut::from(&b"G"[..]);
        let mut dec = FrameDecoder::new(Protocol::Echo, 1024);
        assert!(matches!(dec.decode(&mut buf), Err(CodecError::BadMagic(_))));
    }

    #[test]
    fn a_secure_hello_is_told_from_other_garbage() {
        let mut dec = FrameDecoder::new(Protocol::Echo, 1024);
        let mut buf = BytesMut::from(&b"EXFS\x01A"[..]);
        assert_eq!(dec.decode(&mut buf), Err(CodecError::PeerExpectsEncryption));
        // Its first three bytes are a plaintext preamble's too: no verdict yet.
        let mut dec = FrameDecoder::new(Protocol::Echo, 1024);
        let mut buf = BytesMut::from(&b"EXF"[..]);
        assert_eq!(dec.decode(&mut buf), Ok(None));
        let mut buf = BytesMut::from(&b"EXFW"[..]);
        assert_eq!(dec.decode(&mut buf), Err(CodecError::BadMagic(*b"EXFW")));
    }

    #[test]
    fn wrong_protocol_and_version_are_named() {
        let mut dec = FrameDecoder::new(Protocol::File, 1024);
        let mut buf = BytesMut::from(&Protocol::Echo.preamble()[..]);
        assert!(matches!(
            dec.decode(&mut buf),
            Err(CodecError::WrongProtocol { .. })
        ));
        let mut p = Protocol::File.preamble();
        p[4] = 9;
        let mut dec = FrameDecoder::new(Protocol::File, 1024);
        let mut buf = BytesMut::from(&p[..]);
        assert_eq!(dec.decode(&mut buf), Err(CodecError::UnsupportedVersion(9)));
    }

    /// Feeds a preamble and one header; returns what the decoder said and
    /// the capacity of the buffer afterwards.
    fn header(
        protocol: Protocol,
        limits: FrameLimits,
        kind: u8,
        len: u32,
    ) -> Result<Option<Frame>, CodecError> {
        let mut wire = protocol.preamble().to_vec();
        wire.push(kind);
        wire.extend(len.to_be_bytes());
        let mut buf = BytesMut::from(&wire[..]);
        let mut dec = FrameDecoder::with_limits(protocol, limits);
        let result = dec.decode(&mut buf);
        assert!(buf.capacity() < 4096, "reserved {}", buf.capacity());
        result
    }

    fn limits() -> FrameLimits {
        FrameLimits {
            max_frame: 1 << 20,
            max_message: 64 * 1024,
            max_offer_path: 255,
        }
    }

    #[test]
    fn each_frame_type_is_held_to_its_own_limit_at_its_header() {
        use Protocol::{Echo, File};
        let too_large = |frame, len: u32, max| {
            Err(CodecError::PayloadTooLarge {
                frame,
                len: len.into(),
                max,
            })
        };
        // One byte over each type's limit, far below `max_frame`.
        assert_eq!(
            header(Echo, limits(), 0x11, 65_537),
            too_large("Message", 65_537, 65_536)
        );
        assert_eq!(
            header(Echo, limits(), 0x10, 65_537),
            too_large("Greeting", 65_537, 65_536)
        );
        assert_eq!(
            header(File, limits(), 0x20, 285),
            too_large("Offer", 285, 284)
        );
        assert_eq!(
            header(File, limits(), 0x22, 1030),
            too_large("Reject", 1030, 1029)
        );
        assert_eq!(
            header(Echo, limits(), 0x01, 1027),
            too_large("Error", 1027, 1026)
        );
        // At the limit: accepted, waiting for the payload.
        assert_eq!(header(Echo, limits(), 0x11, 65_536), Ok(None));
        assert_eq!(header(File, limits(), 0x20, 284), Ok(None));
        assert_eq!(header(File, limits(), 0x24, 1 << 20), Ok(None));
    }

    #[test]
    fn fixed_size_frames_must_announce_exactly_their_size() {
        use Protocol::{Echo, File};
        let wrong = |frame, len: u64, expected| {
            Err(CodecError::WrongLength {
                frame,
                len,
                expected,
            })
        };
        assert_eq!(header(Echo, limits(), 0x12, 1), wrong("Exit", 1, 0));
        assert_eq!(header(File, limits(), 0x21, 39), wrong("Accept", 39, 45));
        assert_eq!(
            header(File, limits(), 0x23, 60_000),
            wrong("Begin", 60_000, 12)
        );
        assert_eq!(header(File, limits(), 0x25, 65), wrong("End", 65, 68));
        assert_eq!(header(File, limits(), 0x26, 4), wrong("Saved", 4, 37));
        assert_eq!(header(File, limits(), 0x27, 3), wrong("Quit", 3, 0));
        assert_eq!(header(File, limits(), 0x28, 4), wrong("Hole", 4, 8));
        assert_eq!(header(File, limits(), 0x29, 8), wrong("Skip", 8, 4));
        assert_eq!(header(File, limits(), 0x2a, 0), wrong("Window", 0, 4));
        assert_eq!(header(File, limits(), 0x2b, 1), wrong("Flush", 1, 0));
    }

    #[test]
    fn frames_of_the_other_protocol_and_unknown_types_are_refused_at_their_header() {
        assert_eq!(
            header(Protocol::Echo, limits(), 0x24, 1 << 20),
            Err(CodecError::ForeignFrame {
                frame: "Data",
                protocol: Protocol::Echo
            })
        );
        assert_eq!(
            header(Protocol::File, limits(), 0x11, 10),
            Err(CodecError::ForeignFrame {
                frame: "Message",
                protocol: Protocol::File
            })
        );
        assert_eq!(
            header(Protocol::File, limits(), 0x77, 1 << 20),
            Err(CodecError::UnknownFrame(0x77))
        );
    }

    #[test]
    fn the_decoder_tells_where_it_is_in_the_stream() {
        let mut dec = FrameDecoder::new(Protocol::Echo, 1024);
        let mut buf = BytesMut::from(&Protocol::Echo.preamble()[..5]);
        assert_eq!(dec.decode(&mut buf), Ok(None));
        assert!(!dec.preamble_done() && !dec.in_frame(&buf));
        buf.extend_from_slice(&[b'E', 0x11, 0, 0]);
        assert_eq!(dec.decode(&mut buf), Ok(None));
        assert!(dec.preamble_done() && dec.in_frame(&buf));
        assert_eq!(dec.body_len(), None);
        buf.extend_from_slice(&[0, 3, b'a']);
        assert_eq!(dec.decode(&mut buf), Ok(None));
        assert_eq!(dec.body_len(), Some(3));
        buf.extend_from_slice(b"bc");
        assert_eq!(
            dec.decode(&mut buf),
            Ok(Some(Frame::Message(Bytes::from_static(b"abc"))))
        );
        assert!(!dec.in_frame(&buf));
    }

    #[test]
    fn long_texts_are_clipped_at_a_character_boundary() {
        let text = "é".repeat(super::super::MAX_TEXT);
        let clipped = super::super::clip_text(Bytes::from(text));
        assert!(
            clipped.len() <= super::super::MAX_TEXT && clipped.len() >= super::super::MAX_TEXT - 3
        );
        assert!(std::str::from_utf8(&clipped).is_ok());
    }
}
