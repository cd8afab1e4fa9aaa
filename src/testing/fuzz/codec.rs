//! The frame codec: arbitrary bytes decoded whole and cut at input-derived
//! points must agree, and frames built from the input survive an
//! encode/decode round trip.

use bytes::{Bytes, BytesMut};

use super::Input;
use crate::codec::{CodecError, Frame, FrameDecoder, Protocol, RejectReason, HEADER_LEN, MAX_TEXT};
use crate::error::ErrorCode;

/// What decoding a stream produced: the frames, how it stopped (`None`:
/// it needs more bytes) and the bytes it consumed.
#[derive(Debug, PartialEq, Eq)]
struct Decoded {
    frames: Vec<Frame>,
    error: Option<CodecError>,
    consumed: usize,
}

/// Decodes `wire` fed in pieces whose sizes come from `cuts` (cycled;
/// empty: the whole stream at once). Checks on the way that `Ok(None)`
/// consumed nothing it could use and that no buffer grows beyond one frame.
fn decode(protocol: Protocol, max_frame: usize, wire: &[u8], cuts: &[u8]) -> Decoded {
    let mut dec = FrameDecoder::new(protocol, max_frame);
    let mut buf = BytesMut::new();
    let mut out = Decoded {
        frames: Vec::new(),
        error: None,
        consumed: 0,
    };
    let mut fed = 0;
    let mut cut = cuts.iter().cycle();
    while fed < wire.len() || !buf.is_empty() {
        let n = match cut.next() {
            Some(&c) => usize::from(c % 32) + 1,
            None => wire.len(),
        };
        let n = n.min(wire.len() - fed);
        buf.extend_from_slice(&wire[fed..fed + n]);
        fed += n;
        loop {
            let before = buf.len();
            match dec.decode(&mut buf) {
                Ok(Some(frame)) => out.frames.push(frame),
                Ok(None) => break,
                Err(e) => {
                    out.error = Some(e);
                    out.consumed = 0;
                    return out;
                }
            }
            assert!(buf.len() < before, "a frame was decoded from nothing");
        }
        // Bounded memory: at most one partial frame (or the input so far) is held.
        assert!(
            buf.len() <= fed && buf.len() < max_frame + HEADER_LEN,
            "decoder holds {} bytes with {fed} fed",
            buf.len()
        );
        out.consumed = fed - buf.len();
        if n == 0 {
            break;
        }
    }
    out
}

/// Bad magic is reported as soon as it can be told, with the bytes seen
/// then; which bytes those are depends on the cut, the error does not.
fn normalize(mut d: Decoded) -> Decoded {
    if let Some(CodecError::BadMagic(_)) = d.error {
        d.error = Some(CodecError::BadMagic([0; 4]));
    }
    d
}

/// Decodes arbitrary bytes (the first byte picks the protocol, the frame
/// limit and where the cut sizes come from), whole and cut, and checks:
/// both agree on the frames and on the error; decoding never panics and
/// stops only with `Ok(None)` or a [`CodecError`]; a frame too large is
/// refused only when its length exceeds the limit; every frame decoded
/// re-encodes to exactly the bytes it came from; and every frame built from
/// the input survives an encode/decode round trip, whole and cut.
pub fn codec(data: &[u8]) {
    let mut input = Input(data);
    let mode = input.byte();
    let protocol = if mode & 1 == 0 {
        Protocol::Echo
    } else {
        Protocol::File
    };
    let max_frame = [16, 64, 1024, 4096][usize::from(mode >> 1) % 4];
    let ncuts = usize::from(input.byte() % 16);
    let cuts = input.take(ncuts).to_vec();
    let rest = input.0;

    // 1. Arbitrary bytes, with a valid preamble in front when asked, so
    //    random inputs reach the frame parser.
    let mut wire = Vec::new();
    if mode & 0x80 == 0 {
        wire.extend_from_slice(&protocol.preamble());
    }
    wire.extend_from_slice(rest);
    let whole = decode(protocol, max_frame, &wire, &[]);
    let cut = decode(protocol, max_frame, &wire, &cuts);
    let bytewise = decode(protocol, max_frame, &wire, &[0]);
    check_canonical(protocol, &wire, &whole);
    if let Some(CodecError::FrameTooLarge { len, max }) = &whole.error {
        assert!(*len > *max as u64 && *max == max_frame, "{len} > {max}?");
    }
    let whole = normalize(whole);
    assert_eq!(whole, normalize(cut), "whole and cut disagree");
    assert_eq!(whole, normalize(bytewise), "whole and bytewise disagree");

    // 2. Frames built from the input: encode, decode, compare.
    let frames = build_frames(&mut Input(rest));
    let mut wire = protocol.preamble().to_vec();
    let mut expected = Vec::new();
    let mut too_large = None;
    for f in &frames {
        let (head, body) = f.encode();
        let mut one = head.to_vec();
        one.extend_from_slice(body.as_deref().unwrap_or_default());
        assert_eq!(one, f.encode_to_vec(), "encode and encode_to_vec differ");
        wire.extend_from_slice(&one);
        too_large = refusal(protocol, max_frame, f, one.len() - HEADER_LEN);
        if too_large.is_some() {
            break;
        }
        expected.push(f.clone());
    }
    for cuts in [&[][..], &cuts[..], &[0][..]] {
        let got = decode(protocol, max_frame, &wire, cuts);
        assert_eq!(got.frames, expected, "round trip changed the frames");
        assert_eq!(got.error, too_large, "round trip failed");
    }
}

/// How a decoder for `protocol` with uniform limits of `max_frame` must
/// refuse the well-formed frame `f` (of `len` payload bytes) at its
/// header, if it must: the other protocol's frames, more than `max_frame`,
/// texts beyond [`MAX_TEXT`].
fn refusal(protocol: Protocol, max_frame: usize, f: &Frame, len: usize) -> Option<CodecError> {
    let echo_only = matches!(
        f,
        Frame::Greeting(_) | Frame::Message(_) | Frame::Exit | Frame::Bye
    );
    let belongs = match f {
        Frame::Error { .. } => true,
        _ => echo_only == (protocol == Protocol::Echo),
    };
    let text_max = match f {
        Frame::Error { .. } => 2 + MAX_TEXT,
        Frame::Reject { .. } => 1 + MAX_TEXT,
        _ => usize::MAX,
    };
    if !belongs {
        Some(CodecError::ForeignFrame {
            frame: f.name(),
            protocol,
        })
    } else if len > max_frame {
        Some(CodecError::FrameTooLarge {
            len: len as u64,
            max: max_frame,
        })
    } else if len > text_max {
        Some(CodecError::PayloadTooLarge {
            frame: f.name(),
            len: len as u64,
            max: text_max,
        })
    } else {
        None
    }
}

/// Every frame decoded is exactly the bytes it was decoded from: the
/// encoding is canonical, so nothing the peer sent is silently dropped.
fn check_canonical(protocol: Protocol, wire: &[u8], d: &Decoded) {
    if d.frames.is_empty() {
        return;
    }
    let mut again = protocol.preamble().to_vec();
    for f in &d.frames {
        again.extend_from_slice(&f.encode_to_vec());
    }
    assert_eq!(
        &wire[..again.len()],
        &again[..],
        "decoded frames do not re-encode to their bytes"
    );
}

/// Frames of every kind, with fields from the input (including the edge
/// values: zero, the maximum, empty and oversized payloads).
fn build_frames(input: &mut Input<'_>) -> Vec<Frame> {
    let mut frames = Vec::new();
    while !input.is_empty() && frames.len() < 64 {
        let op = input.byte();
        let payload = |input: &mut Input<'_>| {
            let n = usize::from(input.u16() % 1200);
            Bytes::copy_from_slice(input.take(n))
        };
        let u64_field = |input: &mut Input<'_>| match input.byte() % 4 {
            0 => 0,
            1 => u64::MAX,
            _ => u64::from(input.u32()),
        };
        let hash = |input: &mut Input<'_>| {
            let mut h = [0u8; 32];
            let src = input.take(32);
            h[..src.len()].copy_from_slice(src);
            h
        };
        let frame = match op % 17 {
            0 => Frame::Error {
                code: ErrorCode::from_u16(input.u16()),
                message: payload(input),
            },
            1 => Frame::Greeting(payload(input)),
            2 => Frame::Message(payload(input)),
            3 => Frame::Exit,
            4 => Frame::Bye,
            5 => Frame::Offer {
                id: input.u32(),
                kind: input.byte() % 3,
                mode: input.u32(),
                mtime_secs: i64::from(input.u32()) - i64::from(input.u32()),
                mtime_nanos: input.u32() % 1_000_000_000,
                size: u64_field(input),
                path: payload(input),
            },
            6 => Frame::Accept {
                id: input.u32(),
                have: u64_field(input),
                prefix: hash(input),
                flags: input.byte(),
            },
            7 => Frame::Reject {
                id: input.u32(),
                reason: reject_reason(input.byte()),
                message: payload(input),
            },
            8 => Frame::Begin {
                id: input.u32(),
                from: u64_field(input),
            },
            9 => Frame::Data(payload(input)),
            10 => Frame::End {
                id: input.u32(),
                hash: hash(input),
                offer: hash(input),
            },
            11 => Frame::Saved {
                id: input.u32(),
                flags: input.byte(),
                hash: hash(input),
            },
            12 => Frame::Hole {
                len: u64_field(input).clamp(1, crate::codec::MAX_HOLE),
            },
            13 => Frame::Skip { id: input.u32() },
            14 => Frame::Window {
                files: input.u32().max(1),
            },
            15 => Frame::Flush,
            _ => Frame::Quit,
        };
        frames.push(frame);
    }
    frames
}

/// A reason as the decoder would produce it (the known codes by name).
fn reject_reason(b: u8) -> RejectReason {
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
