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
    offer_digest, ChunkRequest, FileSpec, Receiver, ReceiverEvent, ReceiverRole, Resume, SafeName,
    Sender, SenderEvent, SenderRole,
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

fn offer(name: &[u8], size: u64) -> Frame {
    Frame::Offer {
        size,
        name: Bytes::copy_from_slice(name),
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
        sent.push(f);
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
    feed_frame(&mut m, Frame::Begin { from: 0 });
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

/// A sender of `f` (`size` bytes) fed the receiver's fresh `Accept`.
fn sending(size: u64) -> Sender {
    let mut m = sender(size);
    let prefix = *blake3::hash(b"").as_bytes();
    feed(&mut m, &wire(&[Frame::Accept { have: 0, prefix }]));
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
        matches!(&d.events[..], [ReceiverEvent::Offer { name, size: 10, .. }] if name.as_str() == "file..txt")
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
    // A name that fits a frame but not `max_name_len` (64): the Offer's
    // header is refused before the name is buffered; the app never sees it.
    let (m, d) = fed(&[offer(&[b'n'; 4000], 1)]);
    assert_eq!(
        d.done,
        remote(ProtocolError::Codec(CodecError::PayloadTooLarge {
            frame: "Offer",
            len: 4008,
            max: 72
        }))
    );
    assert!(d.events.is_empty(), "{:?}", d.events);
    assert_eq!(m.buffered(), 0);
}

#[test]
fn offer_of_size_zero_is_accepted_and_verified_empty() {
    let mut m = receiving(0);
    feed_frame(
        &mut m,
        Frame::End {
            hash: *blake3::hash(b"").as_bytes(),
            offer: offer_digest(0, b"f"),
        },
    );
    let d = drain(&mut m);
    assert!(
        matches!(&d.events[..], [_, ReceiverEvent::Verified { .. }]),
        "{:?}",
        d.events
    );
    m.saved(save_request(d.events)).unwrap();
    feed_frame(&mut m, Frame::Quit);
    let d = drain(&mut m);
    assert_eq!(d.sent, vec![Frame::Saved]);
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
    feed_frame(&mut m, offer(b"edge", limit));
    let d = drain(&mut m);
    assert!(matches!(&d.events[..], [ReceiverEvent::Offer { size, .. }] if *size == limit));
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
        feed_frame(&mut m, Frame::Begin { from });
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
            &wire(&[Frame::Accept {
                have,
                prefix: [0; 32],
            }]),
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
    let offer = offer_digest(10, b"f");
    feed_frame(&mut m, Frame::End { hash, offer });
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
    let offer = offer_digest(3, b"g");
    feed_frame(&mut m, Frame::End { hash, offer });
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
    let offer = offer_digest(3, b"f");
    feed_frame(
        &mut m,
        Frame::End {
            hash: [7; 32],
            offer,
        },
    );
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
fn frames_out_of_order_are_unexpected() {
    let cases: Vec<Vec<Frame>> = vec![
        vec![Frame::Data(Bytes::from_static(b"x"))],
        vec![Frame::Begin { from: 0 }],
        vec![Frame::End {
            hash: [0; 32],
            offer: [0; 32],
        }],
        vec![Frame::Saved],
        vec![Frame::Accept {
            have: 0,
            prefix: [0; 32],
        }],
    ];
    for frames in cases {
        let (_, d) = fed(&frames);
        assert!(
            matches!(
                d.done,
                Some(Err(Error::Remote(ProtocolError::UnexpectedFrame { .. })))
            ),
            "{frames:?}: {:?}",
            d.done
        );
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
    assert!(matches!(
        d.done,
        Some(Err(Error::Remote(ProtocolError::UnexpectedFrame { .. })))
    ));
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
        reason: RejectReason::Other(200),
        message: Bytes::from_static(b"\x1b[31mred\x1b[0m\x08"),
    };
    feed(&mut m, &wire(&[reject]));
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
        reason: RejectReason::Other(200),
        message: Bytes::from("\u{feff}no\u{200b}thanks\u{2067}"),
    };
    feed(&mut m, &wire(&[reject]));
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
fn sender_keeps_one_read_outstanding_and_a_chunk_of_the_wrong_length_fails_the_session() {
    let mut m = sending(5000);
    let (offset, len, request) = read_request(drain(&mut m).events);
    assert_eq!((offset, len), (0, 1024));
    // Unanswered: no second request however often it is polled.
    assert!(matches!(m.poll_output(), Output::Wait(_)));
    m.push_chunk(request, Bytes::from(vec![0; 1024])).unwrap();
    assert_eq!(m.role().bytes_sent(), 1024);
    let (offset, _, request) = read_request(drain(&mut m).events);
    assert_eq!(offset, 1024);
    // The source shrank: the request is spent, the session fails and the
    // receiver is told why.
    let changed = Error::SourceChanged("chunk length differs");
    assert_eq!(
        m.push_chunk(request, Bytes::from(vec![0; 10])),
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
    let (mut m, d) = fed(&[offer(b"f", 1), Frame::Begin { from: 0 }]);
    assert_eq!(d.done, None);
    m.accept(offer_request(d.events), Resume::Fresh).unwrap();
    let d = drain(&mut m);
    assert!(matches!(
        d.events[..],
        [ReceiverEvent::Start { from: 0, .. }]
    ));
}
