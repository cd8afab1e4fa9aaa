//! Hostile peers against the file-transfer machines: one named test per
//! bug class of `hostile-cases.md` that the machines (not the file layer)
//! must stop. Frames are fed raw, as an attacker would write them.

use std::time::Instant;

use bytes::Bytes;
use echoxfer::codec::{Frame, Protocol, RejectReason};
use echoxfer::error::ConfigError;
use echoxfer::error::{CodecError, ErrorCode, ProtocolError, UsageError};
use echoxfer::session::{Framed, Role};
use echoxfer::testing::fuzz::{small_limits, small_transfer};
use echoxfer::xfer::{
    encode_raw_path, offer_digest, ChunkRequest, FileSpec, Receiver, ReceiverEvent, ReceiverRole,
    Resume, SafeName, Sender, SenderEvent, SenderRole,
};
use echoxfer::{Error, Machine, Output, StreamMachine, TransferConfig};

mod common;
use common::drain::{offer_request, poll_all, save_request, Polled};

fn wire(frames: &[Frame]) -> Vec<u8> {
    let mut out = Protocol::File.preamble().to_vec();
    for f in frames {
        out.extend_from_slice(&f.encode_to_vec());
    }
    out
}

/// Offer number `id` of a file at `path` (raw components, unchecked).
fn offer_path(id: u32, path: &[&[u8]], size: u64) -> Frame {
    Frame::Offer {
        id,
        kind: 0,
        mode: 0o644,
        mtime_secs: 0,
        mtime_nanos: 0,
        size,
        path: encode_raw_path(path),
    }
}

/// The first offer of a session: a file named `name` at the top.
fn offer(name: &[u8], size: u64) -> Frame {
    offer_path(0, &[name], size)
}

/// `End` of the first offer, `f` of `size` bytes, content hashing to `hash`.
fn end_of_f(size: u64, hash: [u8; 32]) -> Frame {
    Frame::End {
        id: 0,
        hash,
        offer: offer_digest(&offer(b"f", size)),
    }
}

/// Everything a file-transfer machine output after its input: frames sent
/// (decoded), events, and its final state.
struct Drained<E> {
    sent: Vec<Frame>,
    events: Vec<E>,
    done: Option<Result<(), Error>>,
}

fn drain<R: Role>(m: &mut Framed<R>) -> Drained<R::Event> {
    let Polled {
        mut bytes,
        events,
        done,
    } = poll_all(m);
    // A machine that failed lingers for the peer's EOF before its `Done`:
    // until then its sticky error says how it ended.
    let done = done.or_else(|| m.error().cloned().map(Err));
    if !bytes.starts_with(&echoxfer::codec::MAGIC) {
        // The preamble went out with an earlier drain.
        bytes.splice(0..0, Protocol::File.preamble());
    }
    let mut dec = echoxfer::codec::FrameDecoder::new(Protocol::File, 1 << 20);
    let mut buf = bytes::BytesMut::from(&bytes[..]);
    let mut sent = Vec::new();
    while let Ok(Some(f)) = dec.decode(&mut buf) {
        // A receiver's first frame announces its window: not what these
        // tests look at.
        if !matches!(f, Frame::Window { .. }) {
            sent.push(f);
        }
    }
    Drained { sent, events, done }
}

fn receiver() -> Receiver {
    Receiver::new(
        ReceiverRole::new(small_transfer()),
        small_limits(),
        Instant::now(),
    )
}

fn feed(m: &mut impl StreamMachine, bytes: &[u8]) {
    let _ = m.handle_input(Instant::now(), bytes);
}

/// Feeds one frame (after the preamble went earlier).
fn feed_frame(m: &mut impl StreamMachine, f: Frame) {
    feed(m, &f.encode_to_vec());
}

/// A fresh receiver fed the preamble and `frames`, and what it output.
fn fed(frames: &[Frame]) -> (Receiver, Drained<ReceiverEvent>) {
    let mut m = receiver();
    feed(&mut m, &wire(frames));
    let d = drain(&mut m);
    (m, d)
}

/// A receiver that has accepted `f` of `size` bytes as `resume` says.
fn accepted(size: u64, resume: Resume) -> Receiver {
    let (mut m, d) = fed(&[offer(b"f", size)]);
    m.accept(offer_request(d.events), resume).unwrap();
    m
}

/// A receiver that has accepted `f` of `size` bytes fresh and seen `Begin{0}`.
fn receiving(size: u64) -> Receiver {
    let mut m = accepted(size, Resume::Fresh);
    feed_frame(&mut m, Frame::Begin { id: 0, from: 0 });
    m
}

/// A resume from `prefix`, the bytes already held.
fn resume_after(prefix: &[u8]) -> Resume {
    let mut hasher = blake3::Hasher::new();
    hasher.update(prefix);
    Resume::From {
        have: prefix.len() as u64,
        hasher,
    }
}

/// A sender of one file `f` of `size` bytes.
fn sender(size: u64) -> Sender {
    let spec = FileSpec::file(SafeName::new(b"f", 255).unwrap(), size);
    Sender::new(
        SenderRole::new(vec![spec], small_transfer()),
        small_limits(),
        Instant::now(),
    )
}

/// The receiver's first frame: its window.
const WINDOW: Frame = Frame::Window { files: 8 };

/// A sender of `f` (`size` bytes) fed the receiver's window and fresh `Accept`.
fn sending(size: u64) -> Sender {
    let mut m = sender(size);
    let prefix = *blake3::hash(b"").as_bytes();
    let accept = Frame::Accept {
        id: 0,
        have: 0,
        prefix,
        flags: 0,
    };
    feed(&mut m, &wire(&[WINDOW, accept]));
    m
}

/// Whether peer text is safe to print: no control character, no invisible
/// format character (bidi overrides, zero-width...), no line separator.
fn shows_safely(text: &str) -> bool {
    use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
    !text.chars().any(|c| {
        c.is_control()
            || matches!(
                c.general_category(),
                GeneralCategory::Format
                    | GeneralCategory::LineSeparator
                    | GeneralCategory::ParagraphSeparator
            )
    })
}

fn remote(e: ProtocolError) -> Option<Result<(), Error>> {
    Some(Err(Error::Remote(e)))
}

#[test]
fn hostile_names_are_refused_by_the_machine_and_never_reach_the_app() {
    // (A name over `max_name_len` is refused at its header instead: see
    // `huge_name_length_is_refused_before_allocation`.)
    let names: [&[u8]; 12] = [
        b"../x",
        b"a/../../b",
        b"/etc/passwd",
        b"..\\x",
        b"C:x",
        "x\u{1b}[2J".as_bytes(),
        b"",
        b".",
        b"nul\0byte",
        // Shown as `invoiceexe.pdf` in a listing.
        "invoice\u{202e}fdp.exe".as_bytes(),
        "a\u{200b}b".as_bytes(),
        "x\u{2066}y\u{2069}".as_bytes(),
    ];
    for name in names {
        let (_, d) = fed(&[offer(name, 10)]);
        assert!(
            matches!(
                d.sent[..],
                [Frame::Reject {
                    reason: RejectReason::NameRefused,
                    ..
                }]
            ),
            "{name:?}: {:?}",
            d.sent
        );
        match &d.events[..] {
            [ReceiverEvent::Refused { name: shown, .. }] => {
                assert!(shows_safely(shown), "{shown:?}");
            }
            other => panic!("{name:?}: {other:?}"),
        }
        assert_eq!(d.done, None, "a refused name must not end the session");
    }
    let (_, d) = fed(&[offer(b"file..txt", 10)]);
    assert!(
        matches!(&d.events[..], [ReceiverEvent::Offer { spec, .. }] if spec.path.to_string() == "file..txt" && spec.size == 10)
    );
}

#[test]
fn hostile_paths_are_refused_with_their_reason_and_the_session_goes_on() {
    // Components checked one by one: `a/../../b` sent as components, an
    // empty component, `.`, a separator inside one, too deep, too long.
    let deep: Vec<&[u8]> = vec![b"d"; 9];
    // 4 components of 64 bytes: 259 bytes joined, over 256, yet within
    // the Offer's header bound, so it is refused by reason, not at its header.
    let long: Vec<&[u8]> = vec![&[b'l'; 64]; 4];
    let cases: Vec<(Vec<&[u8]>, &str)> = vec![
        (vec![b"a", b"..", b"..", b"b"], "component 1"),
        (vec![b"a", b"", b"b"], "component 1"),
        (vec![b".", b"x"], "component 0"),
        (vec![b"a", b"b/c"], "component 1"),
        (deep, "components; the limit is 8"),
        (long, "the limit is 256"),
    ];
    let mut frames = Vec::new();
    for (id, (path, _)) in cases.iter().enumerate() {
        frames.push(offer_path(id as u32, path, 1));
    }
    let (_, d) = fed(&frames);
    assert_eq!(d.sent.len(), cases.len(), "{:?}", d.sent);
    for (i, (frame, (path, why))) in d.sent.iter().zip(&cases).enumerate() {
        match frame {
            Frame::Reject {
                id,
                reason: RejectReason::NameRefused,
                message,
            } => {
                assert_eq!(*id as usize, i);
                let message = String::from_utf8_lossy(message);
                assert!(message.contains(why), "{path:?}: {message}");
            }
            other => panic!("{path:?}: {other:?}"),
        }
    }
    assert!(d
        .events
        .iter()
        .all(|e| matches!(e, ReceiverEvent::Refused { .. })));
    assert_eq!(d.done, None, "refused paths must not end the session");
}

#[test]
fn more_entries_than_allowed_are_refused_too_many_and_the_session_goes_on() {
    let config = TransferConfig {
        max_files: 2,
        ..small_transfer()
    };
    let mut m = Receiver::new(ReceiverRole::new(config), small_limits(), Instant::now());
    feed(&mut m, &wire(&[offer_path(0, &[b"a"], 1)]));
    let d = drain(&mut m);
    m.reject(offer_request(d.events), RejectReason::Exists, "x")
        .unwrap();
    feed_frame(&mut m, offer_path(1, &[b"b"], 1));
    let d = drain(&mut m);
    m.reject(offer_request(d.events), RejectReason::Exists, "x")
        .unwrap();
    feed_frame(&mut m, offer_path(2, &[b"c"], 1));
    let d = drain(&mut m);
    assert!(
        matches!(
            d.sent.last(),
            Some(Frame::Reject {
                id: 2,
                reason: RejectReason::TooMany,
                ..
            })
        ),
        "{:?}",
        d.sent
    );
    assert!(matches!(d.events[..], [ReceiverEvent::Refused { .. }]));
    assert_eq!(d.done, None);
}

#[test]
fn offers_beyond_the_window_or_out_of_order_end_the_session() {
    // Window 8 (small_transfer): the ninth entry in flight is a violation.
    let mut m = receiver();
    feed(&mut m, &Protocol::File.preamble());
    for id in 0..8 {
        feed_frame(&mut m, offer_path(id, &[format!("f{id}").as_bytes()], 1));
        let d = drain(&mut m);
        m.accept(offer_request(d.events), Resume::Fresh).unwrap();
    }
    feed_frame(&mut m, offer_path(8, &[b"f8"], 1));
    let d = drain(&mut m);
    assert_eq!(d.done, remote(ProtocolError::WindowExceeded { window: 8 }));
    // Ids count up from 0.
    let (_, d) = fed(&[offer_path(1, &[b"f"], 1)]);
    assert_eq!(
        d.done,
        remote(ProtocolError::OutOfOrder { id: 1, expected: 0 })
    );
}

#[test]
fn huge_name_length_is_refused_before_allocation() {
    // A name longer than any frame: the length prefix alone is refused.
    let mut m = receiver();
    let mut bytes = Protocol::File.preamble().to_vec();
    bytes.extend_from_slice(&[0x20, 0xff, 0xff, 0xff, 0xff]);
    feed(&mut m, &bytes);
    let d = drain(&mut m);
    assert!(matches!(
        d.done,
        Some(Err(Error::Remote(ProtocolError::Codec(
            echoxfer::error::CodecError::FrameTooLarge { .. }
        ))))
    ));
    // A path that fits a frame but not the path limits (256 bytes, 8
    // components): the Offer's header is refused before the path is
    // buffered; the app never sees it.
    let (m, d) = fed(&[offer(&[b'n'; 4000], 1)]);
    assert_eq!(
        d.done,
        remote(ProtocolError::Codec(CodecError::PayloadTooLarge {
            frame: "Offer",
            len: 4031,
            max: 294
        }))
    );
    assert!(d.events.is_empty(), "{:?}", d.events);
    assert_eq!(m.buffered(), 0);
}

#[test]
fn offer_of_size_zero_is_accepted_and_verified_empty() {
    let mut m = receiving(0);
    feed_frame(&mut m, end_of_f(0, *blake3::hash(b"").as_bytes()));
    let d = drain(&mut m);
    assert!(
        matches!(&d.events[..], [_, ReceiverEvent::Verified { .. }]),
        "{:?}",
        d.events
    );
    m.saved(save_request(d.events)).unwrap();
    feed_frame(&mut m, Frame::Quit);
    let d = drain(&mut m);
    let hash = *blake3::hash(b"").as_bytes();
    assert_eq!(
        d.sent,
        vec![Frame::Saved {
            id: 0,
            flags: 0,
            hash
        }]
    );
    assert_eq!(d.done, Some(Ok(())));
}

#[test]
fn offer_of_max_size_is_refused_too_large() {
    let (mut m, d) = fed(&[offer(b"big", u64::MAX)]);
    assert!(matches!(
        d.sent[..],
        [Frame::Reject {
            reason: RejectReason::TooLarge,
            ..
        }]
    ));
    let limit = small_transfer().max_file_size;
    feed_frame(&mut m, offer_path(1, &[b"edge"], limit));
    let d = drain(&mut m);
    assert!(matches!(&d.events[..], [ReceiverEvent::Offer { spec, .. }] if spec.size == limit));
}

#[test]
fn data_overrun_beyond_offered_size_fails_before_any_write() {
    let mut m = receiving(4);
    feed_frame(&mut m, Frame::Data(Bytes::from_static(b"abc")));
    feed_frame(&mut m, Frame::Data(Bytes::from_static(b"de")));
    let d = drain(&mut m);
    let writes: Vec<_> = d
        .events
        .iter()
        .filter_map(|e| match e {
            ReceiverEvent::Write { data, .. } => Some(data.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        writes,
        vec![Bytes::from_static(b"abc")],
        "the overrun must not be written"
    );
    assert_eq!(d.done, remote(ProtocolError::Overrun { size: 4 }));
    assert!(matches!(
        d.sent.last(),
        Some(Frame::Error {
            code: ErrorCode::Protocol,
            ..
        })
    ));
}

#[test]
fn begin_with_bogus_offset_is_a_protocol_error() {
    for from in [1, 5, u64::MAX] {
        let mut m = accepted(10, resume_after(b"abcd"));
        feed_frame(&mut m, Frame::Begin { id: 0, from });
        let d = drain(&mut m);
        assert!(
            matches!(d.done, Some(Err(Error::Remote(ProtocolError::BadOffset { offset, .. }))) if offset == from),
            "{from}: {:?}",
            d.done
        );
        assert!(!d
            .events
            .iter()
            .any(|e| matches!(e, ReceiverEvent::Start { .. })));
    }
}

#[test]
fn accept_with_have_beyond_size_is_refused_by_sender() {
    for have in [11, u64::MAX] {
        let mut m = sender(10);
        feed(
            &mut m,
            &wire(&[
                WINDOW,
                Frame::Accept {
                    id: 0,
                    have,
                    prefix: [0; 32],
                    flags: 0,
                },
            ]),
        );
        let d = drain(&mut m);
        assert!(matches!(
            d.done,
            Some(Err(Error::Remote(ProtocolError::BadOffset { .. })))
        ));
        assert!(!d
            .events
            .iter()
            .any(|e| matches!(e, SenderEvent::Read { .. } | SenderEvent::HashPrefix { .. })));
    }
}

#[test]
fn end_before_all_bytes_is_a_short_file_not_a_success() {
    let mut m = receiving(10);
    feed_frame(&mut m, Frame::Data(Bytes::from_static(b"abc")));
    let hash = *blake3::hash(b"abc").as_bytes();
    feed_frame(&mut m, end_of_f(10, hash));
    let d = drain(&mut m);
    assert_eq!(
        d.done,
        remote(ProtocolError::ShortFile {
            size: 10,
            received: 3
        })
    );
    assert!(!d
        .events
        .iter()
        .any(|e| matches!(e, ReceiverEvent::Verified { .. })));
}

#[test]
fn a_name_corrupted_in_flight_never_gets_verified_content() {
    // The offer said "f"; End certifies an offer of "g" (as when a flipped
    // bit turned the sender's "g" into "f" on the way): content alone matches.
    let mut m = receiving(3);
    feed_frame(&mut m, Frame::Data(Bytes::from_static(b"abc")));
    let hash = *blake3::hash(b"abc").as_bytes();
    let offer = offer_digest(&offer_path(0, &[b"g"], 3));
    feed_frame(&mut m, Frame::End { id: 0, hash, offer });
    let d = drain(&mut m);
    assert!(!d
        .events
        .iter()
        .any(|e| matches!(e, ReceiverEvent::Verified { .. })));
    assert!(matches!(
        d.events.last(),
        Some(ReceiverEvent::Discard { .. })
    ));
    assert_eq!(d.done, Some(Err(Error::HashMismatch)));
}

#[test]
fn hash_mismatch_discards_and_is_sticky() {
    let mut m = receiving(3);
    feed_frame(&mut m, Frame::Data(Bytes::from_static(b"abc")));
    feed_frame(&mut m, end_of_f(3, [7; 32]));
    let d = drain(&mut m);
    assert!(matches!(
        d.events.last(),
        Some(ReceiverEvent::Discard { .. })
    ));
    assert!(matches!(
        d.sent.last(),
        Some(Frame::Error {
            code: ErrorCode::HashMismatch,
            ..
        })
    ));
    assert_eq!(d.done, Some(Err(Error::HashMismatch)));
    assert_eq!(
        m.handle_input(Instant::now(), b"more"),
        Err(Error::HashMismatch)
    );
}

#[test]
fn eof_mid_transfer_is_an_interrupted_transfer() {
    let mut m = receiving(10);
    feed_frame(&mut m, Frame::Data(Bytes::from_static(b"abc")));
    m.handle_eof(Instant::now());
    let d = drain(&mut m);
    assert!(matches!(
        d.done,
        Some(Err(Error::Remote(ProtocolError::UnexpectedEof { .. })))
    ));
}

#[test]
fn eof_before_saved_is_not_a_delivery_for_the_sender() {
    let mut m = sending(0);
    let d = drain(&mut m);
    assert!(d.sent.iter().any(|f| matches!(f, Frame::End { .. })));
    m.handle_eof(Instant::now());
    let d = drain(&mut m);
    assert!(!d
        .events
        .iter()
        .any(|e| matches!(e, SenderEvent::Delivered { .. })));
    assert!(matches!(
        d.done,
        Some(Err(Error::Remote(ProtocolError::UnexpectedEof { .. })))
    ));
}

#[test]
fn frames_out_of_order_are_protocol_errors() {
    let end = Frame::End {
        id: 0,
        hash: [0; 32],
        offer: [0; 32],
    };
    let accept = Frame::Accept {
        id: 0,
        have: 0,
        prefix: [0; 32],
        flags: 0,
    };
    let cases: Vec<(Vec<Frame>, ProtocolError)> = vec![
        (
            vec![Frame::Data(Bytes::from_static(b"x"))],
            ProtocolError::NoFileBegun("Data"),
        ),
        (
            vec![Frame::Hole { len: 1 }],
            ProtocolError::NoFileBegun("Hole"),
        ),
        (
            vec![Frame::Begin { id: 0, from: 0 }],
            ProtocolError::UnexpectedFrame {
                state: "waiting for an offer",
                frame: "Begin",
            },
        ),
        (vec![end], ProtocolError::NoFileBegun("End")),
        (
            vec![Frame::Skip { id: 0 }],
            ProtocolError::BadSkip { id: 0 },
        ),
        (
            vec![Frame::Saved {
                id: 0,
                flags: 0,
                hash: [0; 32],
            }],
            ProtocolError::UnexpectedFrame {
                state: "waiting for an offer",
                frame: "Saved",
            },
        ),
        (
            vec![accept],
            ProtocolError::UnexpectedFrame {
                state: "waiting for an offer",
                frame: "Accept",
            },
        ),
    ];
    for (frames, expected) in cases {
        let (_, d) = fed(&frames);
        assert_eq!(d.done, remote(expected), "{frames:?}");
    }
    // A frame of the echo protocol is refused at its header.
    let (_, d) = fed(&[Frame::Message(Bytes::from_static(b"exit"))]);
    assert!(matches!(
        d.done,
        Some(Err(Error::Remote(ProtocolError::Codec(
            CodecError::ForeignFrame {
                frame: "Message",
                ..
            }
        ))))
    ));
    let mut m = receiving(10);
    feed_frame(&mut m, Frame::Quit);
    let d = drain(&mut m);
    assert_eq!(d.done, remote(ProtocolError::QuitInFlight { in_flight: 1 }));
}

#[test]
fn peer_error_message_with_escape_codes_is_sanitized() {
    let evil = Frame::Error {
        code: ErrorCode::Internal,
        message: Bytes::from_static(b"\x1b]0;pwned\x07\x1b[2J\r\nall good"),
    };
    let (_, d) = fed(&[evil]);
    match d.done {
        Some(Err(Error::PeerFailed { message, .. })) => {
            assert!(!message.chars().any(char::is_control), "{message:?}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn reject_message_with_escape_codes_is_sanitized_for_the_sender() {
    let mut m = sender(1);
    let reject = Frame::Reject {
        id: 0,
        reason: RejectReason::Other(200),
        message: Bytes::from_static(b"\x1b[31mred\x1b[0m\x08"),
    };
    feed(&mut m, &wire(&[WINDOW, reject]));
    let d = drain(&mut m);
    match &d.events[..] {
        [SenderEvent::Rejected {
            message,
            reason: RejectReason::Other(200),
            ..
        }] => {
            assert!(!message.chars().any(char::is_control), "{message:?}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(d.sent.last(), Some(&Frame::Quit));
    assert_eq!(d.done, Some(Ok(())));
}

#[test]
fn peer_error_message_with_a_bidi_override_is_shown_escaped() {
    let evil = Frame::Error {
        code: ErrorCode::Internal,
        message: Bytes::from("saved as invoice\u{202e}fdp.exe\u{2029}ok"),
    };
    let (_, d) = fed(&[evil]);
    match d.done {
        Some(Err(Error::PeerFailed { message, .. })) => {
            assert!(shows_safely(&message), "{message:?}");
            assert!(message.contains("invoice\\u{202e}fdp.exe"), "{message:?}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn reject_message_with_format_characters_is_shown_escaped_to_the_sender() {
    let mut m = sender(1);
    let reject = Frame::Reject {
        id: 0,
        reason: RejectReason::Other(200),
        message: Bytes::from("\u{feff}no\u{200b}thanks\u{2067}"),
    };
    feed(&mut m, &wire(&[WINDOW, reject]));
    let d = drain(&mut m);
    match &d.events[..] {
        [SenderEvent::Rejected { message, .. }] => {
            assert!(shows_safely(message), "{message:?}");
            assert!(message.contains("no\\u{200b}thanks"), "{message:?}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn zero_limits_are_refused_not_unlimited() {
    for (field, config) in [
        (
            "chunk_size",
            TransferConfig {
                chunk_size: 0,
                ..small_transfer()
            },
        ),
        (
            "max_file_size",
            TransferConfig {
                max_file_size: 0,
                ..small_transfer()
            },
        ),
        (
            "max_name_len",
            TransferConfig {
                max_name_len: 0,
                ..small_transfer()
            },
        ),
        (
            "window",
            TransferConfig {
                window: 0,
                ..small_transfer()
            },
        ),
        (
            "max_depth",
            TransferConfig {
                max_depth: 0,
                ..small_transfer()
            },
        ),
        (
            "max_path_len",
            TransferConfig {
                max_path_len: 0,
                ..small_transfer()
            },
        ),
        (
            "max_files",
            TransferConfig {
                max_files: 0,
                ..small_transfer()
            },
        ),
    ] {
        let mut m = Receiver::new(ReceiverRole::new(config), small_limits(), Instant::now());
        let d = drain(&mut m);
        assert!(matches!(
            d.done,
            Some(Err(Error::Local(UsageError::BadConfig(ConfigError::Zero(f))))) if f == field
        ));
    }
}

/// The one `Read` request among `events`: its offset, length and request.
fn read_request(events: Vec<SenderEvent>) -> (u64, usize, ChunkRequest) {
    let mut reads: Vec<_> = events
        .into_iter()
        .filter_map(|e| match e {
            SenderEvent::Read {
                offset,
                len,
                request,
                ..
            } => Some((offset, len, request)),
            _ => None,
        })
        .collect();
    assert_eq!(reads.len(), 1, "one read outstanding at a time");
    reads.pop().expect("checked")
}

#[test]
fn sender_keeps_one_read_outstanding_and_a_chunk_longer_than_asked_fails_the_session() {
    let mut m = sending(5000);
    let (offset, len, request) = read_request(drain(&mut m).events);
    assert_eq!((offset, len), (0, 1024));
    // Unanswered: no second request however often it is polled.
    assert!(matches!(m.poll_output(), Output::Wait(_)));
    m.push_chunk(request, Bytes::from(vec![0; 1024])).unwrap();
    assert_eq!(m.role().bytes_sent(), 1024);
    let (offset, _, request) = read_request(drain(&mut m).events);
    assert_eq!(offset, 1024);
    // A shorter chunk is the end of a data run (a hole may follow).
    m.push_chunk(request, Bytes::from(vec![0; 10])).unwrap();
    let (offset, _, request) = read_request(drain(&mut m).events);
    assert_eq!(offset, 1034);
    // More than asked: the source changed. The request is spent, the
    // session fails and the receiver is told why.
    let changed = Error::SourceChanged("chunk length differs");
    assert_eq!(
        m.push_chunk(request, Bytes::from(vec![0; 2000])),
        Err(changed.clone())
    );
    let d = drain(&mut m);
    assert!(matches!(
        d.sent.last(),
        Some(Frame::Error {
            code: ErrorCode::Internal,
            ..
        })
    ));
    assert_eq!(d.done, Some(Err(changed)));
}

#[test]
fn a_stale_request_is_refused_and_changes_nothing_and_a_bad_resume_fails_the_session() {
    let mut first = receiver();
    feed(&mut first, &wire(&[offer(b"f", 3)]));
    let stale = offer_request(drain(&mut first).events);
    let mut m = receiver();
    feed(&mut m, &wire(&[offer(b"f", 3)]));
    let owed = offer_request(drain(&mut m).events);
    // Another session's request answers nothing here.
    assert_eq!(
        m.accept(stale, Resume::Fresh),
        Err(Error::Local(UsageError::StaleRequest))
    );
    let d = drain(&mut m);
    assert!(d.sent.is_empty() && d.done.is_none(), "{:?}", d.sent);
    assert_eq!(m.role().state_name(), "deciding on an offer");
    // Holding more than was offered: the request is spent on an answer
    // that cannot be used, so the session fails, telling the peer.
    assert!(matches!(
        m.accept(owed, resume_after(b"abcd")),
        Err(Error::Local(UsageError::BadResume { have: 4, size: 3 }))
    ));
    let d = drain(&mut m);
    assert!(matches!(
        d.sent.last(),
        Some(Frame::Error {
            code: ErrorCode::Internal,
            ..
        })
    ));
}

#[test]
fn frames_after_an_offer_wait_for_the_decision() {
    // However the bytes are cut, nothing past an Offer is processed before
    // the app answers: the outcome cannot depend on fragmentation.
    let (mut m, d) = fed(&[offer(b"f", 1), Frame::Begin { id: 0, from: 0 }]);
    assert_eq!(d.done, None);
    m.accept(offer_request(d.events), Resume::Fresh).unwrap();
    let d = drain(&mut m);
    assert!(matches!(
        d.events[..],
        [ReceiverEvent::Start { from: 0, .. }]
    ));
}

// ---- Confirmations checked, a Quit that needs no Flush, files given up ----

/// Feeds `frames` to `to` (its preamble went earlier).
fn forward(frames: &[Frame], to: &mut impl StreamMachine) {
    let wire: Vec<u8> = frames.iter().flat_map(|f| f.encode_to_vec()).collect();
    feed(to, &wire);
}

/// The `Saved` a receiver sends for the file whose content hashes to `hash`.
fn saved(hash: [u8; 32]) -> Frame {
    Frame::Saved {
        id: 0,
        flags: 0,
        hash,
    }
}

#[test]
fn a_saved_that_does_not_echo_the_ends_hash_is_refused_and_the_file_never_counts_delivered() {
    // A receiver that confirms before it read the file's `End` cannot know
    // its hash: its `Saved` (here right after the `Accept`, with the hash
    // of nothing) is a protocol error, not a delivery.
    let mut m = sending(3);
    let (_, _, request) = read_request(drain(&mut m).events);
    m.push_chunk(request, Bytes::from_static(b"abc")).unwrap();
    feed_frame(&mut m, saved(*blake3::hash(b"").as_bytes()));
    let d = drain(&mut m);
    assert!(d.sent.iter().any(|f| matches!(f, Frame::End { .. })));
    assert!(!d
        .events
        .iter()
        .any(|e| matches!(e, SenderEvent::Delivered { .. })));
    assert_eq!(d.done, remote(ProtocolError::SavedMismatch { id: 0 }));
    // The right hash is a delivery.
    let mut m = sending(3);
    let (_, _, request) = read_request(drain(&mut m).events);
    m.push_chunk(request, Bytes::from_static(b"abc")).unwrap();
    feed_frame(&mut m, saved(*blake3::hash(b"abc").as_bytes()));
    let d = drain(&mut m);
    assert!(d
        .events
        .iter()
        .any(|e| matches!(e, SenderEvent::Delivered { file: 0, .. })));
}

#[test]
fn a_saved_for_a_file_not_yet_ended_is_an_unknown_entry_even_with_the_hash_of_nothing() {
    // Only a directory is confirmed without an `End` (with the hash of
    // nothing); a regular file whose bytes have not all gone out is not
    // the receiver's to confirm, whatever hash it names.
    let mut m = sending(3);
    drain(&mut m);
    feed_frame(&mut m, saved(*blake3::hash(b"").as_bytes()));
    let d = drain(&mut m);
    assert!(!d
        .events
        .iter()
        .any(|e| matches!(e, SenderEvent::Delivered { .. })));
    assert_eq!(d.done, remote(ProtocolError::UnknownEntry { id: 0 }));
}

#[test]
fn each_read_asks_a_chunk_and_the_last_one_only_what_is_left_of_the_file() {
    let chunk = small_transfer().chunk_size;
    let mut m = sending(chunk as u64 + 5);
    let (offset, len, request) = read_request(drain(&mut m).events);
    assert_eq!((offset, len), (0, chunk));
    m.push_chunk(request, Bytes::from(vec![1u8; chunk]))
        .unwrap();
    let (offset, len, _) = read_request(drain(&mut m).events);
    assert_eq!((offset, len), (chunk as u64, 5), "no read past the end");
}

/// What a `Saved` with `flags` says of `f` ("abc"), as `Delivered`'s
/// `metadata_updated`: the file found complete and up to date at the
/// receiver when `up_to_date`, else sent.
fn metadata_updated(up_to_date: bool, flags: u8) -> bool {
    let hash = *blake3::hash(b"abc").as_bytes();
    let mut m = if up_to_date {
        let mut m = sender(3);
        let accept = Frame::Accept {
            id: 0,
            have: 3,
            prefix: hash,
            flags: echoxfer::codec::ACCEPT_COMPLETE,
        };
        feed(&mut m, &wire(&[WINDOW, accept]));
        let request = drain(&mut m).events.into_iter().find_map(|e| match e {
            SenderEvent::HashPrefix { request, .. } => Some(request),
            _ => None,
        });
        let mut hasher = blake3::Hasher::new();
        hasher.update(b"abc");
        m.prefix_hashed(request.expect("the prefix is asked"), hasher, 3)
            .unwrap();
        m
    } else {
        let mut m = sending(3);
        let (_, _, request) = read_request(drain(&mut m).events);
        m.push_chunk(request, Bytes::from_static(b"abc")).unwrap();
        m
    };
    drain(&mut m);
    feed_frame(&mut m, Frame::Saved { id: 0, flags, hash });
    let d = drain(&mut m);
    let delivered = d.events.iter().find_map(|e| match e {
        SenderEvent::Delivered {
            up_to_date: u,
            metadata_updated,
            ..
        } => Some((*u, *metadata_updated)),
        _ => None,
    });
    let (u, updated) = delivered.expect("delivered");
    assert_eq!(u, up_to_date);
    updated
}

#[test]
fn only_an_up_to_date_file_saved_with_the_metadata_flag_counts_as_metadata_updated() {
    use echoxfer::codec::SAVED_METADATA;
    assert!(metadata_updated(true, SAVED_METADATA));
    assert!(!metadata_updated(true, 0), "up to date, nothing changed");
    assert!(!metadata_updated(false, SAVED_METADATA), "sent: saved anew");
    assert!(!metadata_updated(false, 0));
}

#[test]
fn quit_after_end_without_flush_asks_the_app_to_commit_at_once_and_ends_once_saved() {
    // PROTOCOL §4: a receiver holding verified, unconfirmed files at `Quit`
    // confirms them, then ends: it must not wait for a `Flush` that a
    // third-party sender never sends.
    let mut m = receiving(3);
    feed_frame(&mut m, Frame::Data(Bytes::from_static(b"abc")));
    feed_frame(&mut m, end_of_f(3, *blake3::hash(b"abc").as_bytes()));
    feed_frame(&mut m, Frame::Quit);
    let d = drain(&mut m);
    let flush_at = d.events.iter().position(|e| *e == ReceiverEvent::Flush);
    assert!(flush_at.is_some(), "no Flush asked: {:?}", d.events);
    assert_eq!(d.done, None, "ended before its save was answered");
    m.saved(save_request(d.events)).unwrap();
    let d = drain(&mut m);
    let hash = *blake3::hash(b"abc").as_bytes();
    assert_eq!(d.sent, vec![saved(hash)]);
    assert_eq!(d.done, Some(Ok(())));
}

#[test]
fn a_sender_that_cannot_read_a_file_skips_it_and_the_receiver_goes_on_with_the_next() {
    let names: Vec<_> = [&b"a"[..], b"b"]
        .iter()
        .map(|n| FileSpec::file(SafeName::new(n, 255).unwrap(), 4))
        .collect();
    let mut tx = Sender::new(
        SenderRole::new(names, small_transfer()),
        small_limits(),
        Instant::now(),
    );
    let mut rx = receiver();
    // (`drain` leaves out the receiver's `Window`: the same one goes by hand.)
    feed(&mut rx, &Protocol::File.preamble());
    drain(&mut rx);
    feed(&mut tx, &wire(&[WINDOW]));
    // Frames go both ways until both are done; the receiver accepts and
    // saves everything; the sender's first read of "a" gives 2 bytes, its
    // second fails (the file vanished): it gives the file up.
    let (mut rx_events, mut reads) = (Vec::new(), 0);
    for _ in 0..100 {
        let d = drain(&mut tx);
        forward(&d.sent, &mut rx);
        for e in d.events {
            if let SenderEvent::Read {
                file, request, len, ..
            } = e
            {
                reads += 1;
                match (file, reads) {
                    (0, 1) => tx.push_chunk(request, Bytes::from_static(b"ab")).unwrap(),
                    (0, _) => tx.unreadable(request).unwrap(),
                    _ => tx.push_chunk(request, Bytes::from(vec![7; len])).unwrap(),
                }
            }
        }
        let d = drain(&mut rx);
        forward(&d.sent, &mut tx);
        for e in d.events {
            match e {
                ReceiverEvent::Offer { request, .. } => rx.accept(request, Resume::Fresh).unwrap(),
                ReceiverEvent::Verified { request, .. } => rx.saved(request).unwrap(),
                e => rx_events.push(e),
            }
        }
        if rx.is_closed() && tx.is_closed() {
            break;
        }
    }
    assert_eq!(rx.error(), None);
    assert_eq!(tx.error(), None);
    assert!(
        rx_events.contains(&ReceiverEvent::Skipped { id: 0, kept: false }),
        "{rx_events:?}"
    );
    assert!(rx_events.contains(&ReceiverEvent::Start { id: 1, from: 0 }));
    assert!(rx_events.contains(&ReceiverEvent::Finished));
    assert_eq!(rx.role().files_saved(), 1);
    assert_eq!(rx.role().refusals(), 0, "a file given up is not a refusal");
}

#[test]
fn holes_beyond_the_allowance_and_their_share_of_the_data_end_the_session() {
    // 13 KB of `Hole` frames must not buy minutes of hashing: holes are
    // allowed up to `hole_allowance` plus 1024 bytes per data byte sent.
    let transfer = TransferConfig {
        max_file_size: 1 << 40,
        hole_allowance: 1 << 20,
        ..small_transfer()
    };
    let start = |size: u64| {
        let mut m = Receiver::new(
            ReceiverRole::new(transfer.clone()),
            small_limits(),
            Instant::now(),
        );
        feed(&mut m, &wire(&[offer(b"f", size)]));
        let d = drain(&mut m);
        m.accept(offer_request(d.events), Resume::Fresh).unwrap();
        feed_frame(&mut m, Frame::Begin { id: 0, from: 0 });
        m
    };
    let hole = |len| Frame::Hole { len };
    // Holes alone: the allowance, then one byte more fails.
    let mut m = start(4 << 20);
    feed_frame(&mut m, hole(1 << 20));
    assert_eq!(drain(&mut m).done, None);
    feed_frame(&mut m, hole(1));
    let too_many = ProtocolError::TooManyHoles { allowance: 1 << 20 };
    assert_eq!(drain(&mut m).done, remote(too_many));
    // With data, holes earn 1024 bytes per byte: a sparse file passes.
    let mut m = start(4 << 20);
    feed_frame(&mut m, Frame::Data(Bytes::from(vec![1; 1024])));
    feed_frame(&mut m, hole(1 << 20));
    feed_frame(&mut m, hole(1 << 20));
    let d = drain(&mut m);
    assert_eq!(d.done, None, "a sparse file with data was refused");
    assert_eq!(m.role().bytes_received(), 1024);
}
