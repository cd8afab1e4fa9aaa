//! Incremental frame decoding, in the style of tokio-util's `Decoder`:
//! `Ok(None)` means "need more bytes", lengths are checked before any
//! buffer is reserved, and a parsed header is remembered between calls.

use bytes::{Buf, BytesMut};

use super::{CodecError, Frame, Protocol, HEADER_LEN, MAGIC, PREAMBLE_LEN, VERSION};

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
    max_frame: usize,
    state: State,
}

impl FrameDecoder {
    /// A decoder expecting the preamble of `protocol`, then frames whose
    /// payload is at most `max_frame` bytes.
    pub fn new(protocol: Protocol, max_frame: usize) -> Self {
        FrameDecoder {
            protocol,
            max_frame,
            state: State::Preamble,
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
                    if len as u64 > self.max_frame as u64 {
                        return Err(CodecError::FrameTooLarge {
                            len: len.into(),
                            max: self.max_frame,
                        });
                    }
                    src.advance(HEADER_LEN);
                    let len = len as usize;
                    // Safe to reserve: `len` is bounded by `max_frame` above.
                    src.reserve(len.saturating_sub(src.len()));
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

    /// Fails early on a short preamble that already cannot be ours, so a
    /// stray client that sends three bytes and waits gets an answer.
    fn check_partial_magic(&self, src: &[u8]) -> Result<(), CodecError> {
        let n = src.len().min(MAGIC.len());
        if src[..n] != MAGIC[..n] {
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
}
