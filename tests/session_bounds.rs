//! What one peer may cost a framed session, and a server: memory parked in
//! half-received frames (each frame type's own limit at its header, and a
//! receive budget shared by all sessions), time (handshake and frame
//! deadlines; only whole frames restart the idle timer), and the lingering
//! close that lets a peer read why its session failed.

use std::time::{Duration, Instant};

use bytes::Bytes;
use echoxfer::codec::{Frame, Protocol};
use echoxfer::driver::Limits;
use echoxfer::driver::{App, DriverError};
use echoxfer::echo::{self, ServerRole};
use echoxfer::error::{CodecError, ErrorCode, ProtocolError, UsageError};
use echoxfer::session::{Framed, RecvBudget, Role};
use echoxfer::testing::fuzz::{small_limits, small_transfer};
use echoxfer::testing::netem::Impairments;
use echoxfer::testing::sim::Sim;
use echoxfer::testing::{MemDisk, MemReceiver, MemSender};
use echoxfer::xfer::{Receiver, ReceiverEvent, ReceiverRole, Resume, SafeName, Sender};
use echoxfer::{EchoConfig, SessionLimits, TransferConfig};
use echoxfer::{Error, Machine, Output, StreamMachine};

use echoxfer::testing::file_offer;

mod common;
use common::drain::{offer_request, poll_all};

const SEC: Duration = Duration::from_secs(1);

fn echo_server(config: SessionLimits, now: Instant) -> echo::Server {
    echo::Server::new(ServerRole::new("hi", EchoConfig::default()), config, now)
}

fn header(kind: u8, len: u32) -> Vec<u8> {
    let mut h = vec![kind];
    h.extend(len.to_be_bytes());
    h
}

/// Feeds `bytes` in pieces the machine has room for; stops at a failure.
fn feed<M: StreamMachine>(m: &mut M, now: Instant, bytes: &[u8]) -> Result<(), Error> {
    for piece in bytes.chunks(4096) {
        poll_all(m);
        m.handle_input(now, piece)?;
    }
    Ok(())
}

// ------------------------------------------------------------- memory

#[test]
fn a_message_header_over_max_message_is_refused_before_its_payload_is_buffered() {
    let now = Instant::now();
    let config = SessionLimits::default();
    let mut server = echo_server(config.clone(), now);
    let mut wire = Protocol::Echo.preamble().to_vec();
    // One byte short of max_frame (1 MiB): what the peers parked.
    wire.extend(header(0x11, (config.max_frame - 1) as u32));
    wire.extend(vec![0u8; 1000]);
    let err = server.handle_input(now, &wire).unwrap_err();
    assert_eq!(
        err,
        Error::Remote(ProtocolError::Codec(CodecError::PayloadTooLarge {
            frame: "Message",
            len: (config.max_frame - 1) as u64,
            max: EchoConfig::default().max_message,
        }))
    );
    assert_eq!(server.buffered(), 0, "nothing of the payload is kept");
}

#[test]
fn an_offer_header_over_its_name_limit_is_refused_before_its_payload_is_buffered() {
    let now = Instant::now();
    let config = SessionLimits::default();
    let mut rx = Receiver::new(
        ReceiverRole::new(TransferConfig::default()),
        config.clone(),
        now,
    );
    let mut wire = Protocol::File.preamble().to_vec();
    wire.extend(header(0x20, (config.max_frame - 1) as u32));
    wire.extend(vec![b'a'; 1000]);
    let err = rx.handle_input(now, &wire).unwrap_err();
    assert_eq!(
        err,
        Error::Remote(ProtocolError::Codec(CodecError::PayloadTooLarge {
            frame: "Offer",
            len: (config.max_frame - 1) as u64,
            max: echoxfer::codec::OFFER_FIXED + TransferConfig::default().path_wire_len(),
        }))
    );
    assert_eq!(rx.buffered(), 0);
}

/// Small limits so that many sessions park quickly: 64 KiB frames, 4 KiB
/// allowance, and a budget of [`BUDGET`].
fn budget_config() -> SessionLimits {
    SessionLimits {
        max_frame: 64 * 1024,
        recv_buffer: 64 * 1024 + 64,
        recv_allowance: 4 * 1024,
        ..SessionLimits::default()
    }
}

/// The shared receive budget of [`budget_config`]'s sessions: 256 KiB.
const BUDGET: usize = 256 * 1024;

/// A receiver with `budget` that accepted `f` of `size` bytes and got `Begin{0}`.
fn receiving(config: &SessionLimits, budget: &RecvBudget, size: u64, now: Instant) -> Receiver {
    let transfer = TransferConfig {
        chunk_size: 16 * 1024,
        ..TransferConfig::default()
    };
    let mut rx = Receiver::new(ReceiverRole::new(transfer), config.clone(), now)
        .with_recv_budget(budget.clone());
    let mut wire = Protocol::File.preamble().to_vec();
    wire.extend(file_offer(0, b"f", size).encode_to_vec());
    rx.handle_input(now, &wire).unwrap();
    let offer = offer_request(poll_all(&mut rx).events);
    rx.accept(offer, Resume::Fresh).unwrap();
    rx.handle_input(now, &Frame::Begin { id: 0, from: 0 }.encode_to_vec())
        .unwrap();
    poll_all(&mut rx);
    rx
}

#[test]
fn the_shared_budget_bounds_half_frames_across_sessions_and_fails_the_excess_as_busy() {
    let config = budget_config();
    let budget = RecvBudget::new(BUDGET);
    let now = Instant::now();
    let sessions = 40;
    let frame = config.max_frame;
    let mut parked = Vec::new();
    let mut busy = 0;
    for _ in 0..sessions {
        let mut rx = receiving(&config, &budget, 1 << 20, now);
        // A whole Data frame but its last byte.
        let mut wire = header(0x24, frame as u32);
        wire.extend(vec![7u8; frame - 1]);
        match feed(&mut rx, now, &wire) {
            Ok(()) => parked.push(rx),
            Err(Error::Busy { limit }) => {
                assert_eq!(limit, BUDGET);
                // Refused at the header: nothing of the payload was kept.
                assert_eq!(rx.buffered(), 0);
                let sent = poll_all(&mut rx).bytes;
                let error_frame = Frame::Error {
                    code: ErrorCode::Busy,
                    message: Bytes::from(Error::Busy { limit }.to_string()),
                };
                assert!(
                    sent.ends_with(&error_frame.encode_to_vec()),
                    "the peer is told the server is busy"
                );
                busy += 1;
            }
            Err(other) => panic!("{other}"),
        }
    }
    let held: usize = parked.iter().map(|rx| rx.buffered()).sum();
    let bound = sessions * config.recv_allowance + BUDGET;
    assert!(held <= bound, "{held} bytes parked, bound {bound}");
    assert!(budget.in_use() <= budget.limit());
    assert!(busy > 0 && !parked.is_empty(), "{busy} busy");
    // A frame completed gives its share back at once; so does a session dropped.
    let before = budget.in_use();
    parked[0].handle_input(now, &[7]).unwrap();
    poll_all(&mut parked[0]);
    assert!(budget.in_use() < before);
    drop(parked);
    assert_eq!(budget.in_use(), 0);
}

#[test]
fn echo_sessions_holding_up_to_max_message_never_draw_on_the_default_budget() {
    let config = SessionLimits::default();
    let budget = Limits::default().new_recv_budget();
    let max_message = EchoConfig::default().max_message;
    let now = Instant::now();
    let mut servers = Vec::new();
    for _ in 0..50 {
        let mut s = echo_server(config.clone(), now).with_recv_budget(budget.clone());
        let mut wire = Protocol::Echo.preamble().to_vec();
        wire.extend(header(0x11, max_message as u32));
        wire.extend(vec![1u8; max_message - 1]);
        feed(&mut s, now, &wire).unwrap();
        assert!(s.buffered() < max_message);
        servers.push(s);
    }
    assert_eq!(budget.in_use(), 0);
}

// ------------------------------------------------------------- time

/// Feeds `bytes` one at a time, `gap` apart from `start`, firing timers as
/// a driver does; returns how long after `start` the machine failed, and
/// why. Panics if it never fails.
fn trickle<R: Role>(
    m: &mut Framed<R>,
    start: Instant,
    bytes: &[u8],
    gap: Duration,
) -> (Duration, Error) {
    let mut now = start;
    for (i, b) in bytes.iter().enumerate() {
        let due = start + gap * i as u32;
        loop {
            let wait = match m.poll_output() {
                Output::Wait(t) => t,
                Output::Done(_) => break,
                _ => continue,
            };
            if let Some(e) = m.error() {
                return (now - start, e.clone());
            }
            match wait {
                Some(t) if t <= due => {
                    now = t;
                    m.handle_timeout(now);
                }
                _ => break,
            }
        }
        if let Some(e) = m.error() {
            return (now - start, e.clone());
        }
        now = due;
        let _ = m.handle_input(now, &[*b]);
    }
    panic!("the machine never failed while the peer trickled");
}

#[test]
fn a_peer_trickling_its_preamble_fails_at_the_handshake_deadline() {
    let start = Instant::now();
    let mut server = echo_server(SessionLimits::default(), start);
    let mut bytes = Protocol::Echo.preamble().to_vec();
    bytes.extend(Frame::Message(Bytes::from(vec![1; 100])).encode_to_vec());
    let (after, err) = trickle(&mut server, start, &bytes, 3 * SEC);
    assert_eq!(
        err,
        Error::TooSlow {
            what: "its preamble",
            limit: 10 * SEC
        }
    );
    assert_eq!(after, 10 * SEC);
}

#[test]
fn a_peer_trickling_a_frame_fails_at_the_frame_deadline_although_bytes_keep_coming() {
    let start = Instant::now();
    let mut server = echo_server(SessionLimits::default(), start);
    server
        .handle_input(start, &Protocol::Echo.preamble())
        .unwrap();
    // One byte every 2 s: far more often than the 60 s idle timeout.
    let bytes = Frame::Message(Bytes::from(vec![1; 1000])).encode_to_vec();
    let (after, err) = trickle(&mut server, start + 2 * SEC, &bytes, 2 * SEC);
    assert_eq!(
        err,
        Error::TooSlow {
            what: "a frame",
            limit: 30 * SEC
        }
    );
    // The frame's first byte came at once; 30 s later it had to be whole.
    assert_eq!(after, 30 * SEC);
    assert_eq!(err.code(), ErrorCode::Timeout);
}

#[test]
fn bytes_alone_do_not_restart_the_idle_timer_only_whole_frames_do() {
    let start = Instant::now();
    let config = SessionLimits {
        idle_timeout: 5 * SEC,
        frame_timeout: 60 * SEC,
        ..SessionLimits::default()
    };
    let mut server = echo_server(config, start);
    server
        .handle_input(start, &Protocol::Echo.preamble())
        .unwrap();
    // Four whole frames of 6 bytes, a byte every 0.5 s: each completes
    // within the idle timeout of the one before, so the session lives.
    let mut bytes = Vec::new();
    for _ in 0..4 {
        bytes.extend(Frame::Message(Bytes::from_static(b"x")).encode_to_vec());
    }
    // Then a frame that never completes, its bytes still 0.5 s apart.
    bytes.extend(Frame::Message(Bytes::from(vec![1; 1000])).encode_to_vec());
    let gap = SEC / 2;
    let (after, err) = trickle(&mut server, start, &bytes, gap);
    assert_eq!(err, Error::TimedOut(5 * SEC));
    // The last whole frame's last byte (the 24th) came at 11.5 s.
    assert_eq!(after, gap * 23 + 5 * SEC);
}

#[test]
fn wait_reports_the_earliest_deadline() {
    let t0 = Instant::now();
    let mut server = echo_server(SessionLimits::default(), t0);
    let wait = |s: &mut echo::Server| loop {
        match s.poll_output() {
            Output::Wait(t) => return t,
            Output::Done(r) => panic!("{r:?}"),
            _ => {}
        }
    };
    // The handshake deadline comes before the idle timeout.
    assert_eq!(wait(&mut server), Some(t0 + 10 * SEC));
    server
        .handle_input(t0 + SEC, &Protocol::Echo.preamble())
        .unwrap();
    assert_eq!(wait(&mut server), Some(t0 + 60 * SEC));
    // Part of a frame: it must be whole 30 s after its first byte.
    let frame = Frame::Message(Bytes::from_static(b"abc")).encode_to_vec();
    server.handle_input(t0 + 2 * SEC, &frame[..4]).unwrap();
    assert_eq!(wait(&mut server), Some(t0 + 32 * SEC));
    server.handle_input(t0 + 3 * SEC, &frame[4..]).unwrap();
    assert_eq!(wait(&mut server), Some(t0 + 63 * SEC));
}

// ------------------------------------------------------------- lingering close

/// A server that failed on a frame the client must not send, and what it sent.
fn failed_server(now: Instant) -> (echo::Server, Vec<u8>) {
    let mut server = echo_server(SessionLimits::default(), now);
    let mut wire = Protocol::Echo.preamble().to_vec();
    wire.extend(Frame::Bye.encode_to_vec());
    let _ = server.handle_input(now, &wire);
    let sent = poll_all(&mut server).bytes;
    (server, sent)
}

#[test]
fn after_its_error_frame_a_machine_lingers_reading_until_the_peer_eof() {
    let now = Instant::now();
    let (mut server, sent) = failed_server(now);
    assert!(
        sent.windows(3).any(|w| w == [0x01, 0, 0]),
        "an Error frame went out"
    );
    let config = SessionLimits::default();
    // Not done yet: it waits for the client's EOF, at most `linger`.
    assert_eq!(
        server.poll_output(),
        Output::Wait(Some(now + config.linger))
    );
    // Meanwhile whatever the client still sends is read and dropped.
    assert_eq!(server.input_room(), config.recv_buffer);
    for _ in 0..10 {
        let _ = server.handle_input(now, &vec![0x11; config.recv_buffer]);
        assert_eq!(server.buffered(), 0);
        assert!(matches!(server.poll_output(), Output::Wait(_)));
    }
    server.handle_eof(now + SEC);
    assert!(matches!(
        server.poll_output(),
        Output::Done(Err(Error::Remote(ProtocolError::UnexpectedFrame { .. })))
    ));
}

#[test]
fn lingering_ends_at_the_linger_deadline_without_an_eof() {
    let now = Instant::now();
    let (mut server, _) = failed_server(now);
    let linger = SessionLimits::default().linger;
    server.handle_timeout(now + linger - Duration::from_millis(1));
    assert!(matches!(server.poll_output(), Output::Wait(_)));
    server.handle_timeout(now + linger);
    assert!(matches!(server.poll_output(), Output::Done(Err(_))));
}

#[test]
fn a_machine_whose_peer_failed_first_ends_at_once() {
    let now = Instant::now();
    let mut server = echo_server(SessionLimits::default(), now);
    let mut wire = Protocol::Echo.preamble().to_vec();
    wire.extend(
        Frame::Error {
            code: ErrorCode::Internal,
            message: Bytes::from_static(b"client gave up"),
        }
        .encode_to_vec(),
    );
    let _ = server.handle_input(now, &wire);
    let polled = poll_all(&mut server);
    assert!(matches!(polled.done, Some(Err(Error::PeerFailed { .. }))));
}

#[test]
fn a_receiver_failing_mid_stream_lingers_so_the_sender_reads_why() {
    let now = Instant::now();
    let config = small_limits();
    let name = SafeName::new(b"big.bin", 64).unwrap();
    let content = Bytes::from(vec![7u8; 64 * small_transfer().chunk_size]);
    let mut tx = MemSender::new([(name, content)]);
    let mut sender = Sender::new(tx.role(small_transfer()), config.clone(), now);
    let mut receiver = Receiver::new(ReceiverRole::new(small_transfer()), config, now);
    // The disk fills up at the first write, while the sender streams on.
    let mut disk = MemReceiver::new(MemDisk::default(), false);
    let mut rx = |m: &mut Receiver, at: Instant, e: ReceiverEvent| {
        let write = matches!(e, ReceiverEvent::Write { .. });
        disk.on_event(m, at, e)?;
        if write {
            m.abort("No space left on device (os error 28)".into());
        }
        Ok(())
    };
    // A link with latency: bytes are in flight both ways when the receiver fails.
    let imp = Impairments {
        latency: (Duration::from_millis(5), Duration::from_millis(5)),
        window: 16 * 1024,
        ..Impairments::none()
    };
    let mut sim = Sim::new(1, now);
    let (outcome, _) = sim
        .connect(
            (&mut sender, &mut tx),
            (&mut receiver, &mut rx),
            &imp,
            1_000_000,
        )
        .unwrap();
    match &outcome.a {
        Err(DriverError::Machine(Error::PeerFailed { code, message })) => {
            assert_eq!(*code, ErrorCode::Internal);
            assert!(message.contains("No space left on device"), "{message}");
        }
        other => panic!("the sender never read why: {other:?}"),
    }
    assert!(matches!(
        outcome.b,
        Err(DriverError::Machine(Error::Aborted(_)))
    ));
    // It lingered no longer than the sender took to close.
    assert!(outcome.ended.1 >= outcome.ended.0);
    assert!(outcome.ended.1 - now < SessionLimits::default().linger);
}

#[test]
fn a_greeting_longer_than_any_client_accepts_fails_the_server_at_start() {
    let now = Instant::now();
    let config = SessionLimits::default();
    let echo = EchoConfig::default();
    let greeting = vec![b'g'; echo.max_message + 1];
    let mut server = echo::Server::new(
        ServerRole::new(greeting, EchoConfig::default()),
        config.clone(),
        now,
    );
    assert_eq!(
        server.error(),
        Some(&Error::Local(UsageError::MessageTooLarge {
            len: echo.max_message + 1,
            max: echo.max_message
        }))
    );
    // What goes out is an Error frame, never a Greeting the client refuses.
    let sent = poll_all(&mut server).bytes;
    assert!(sent.len() < 2048, "{} bytes sent", sent.len());
}

#[test]
fn a_budget_too_small_for_one_session_is_refused() {
    let limits = SessionLimits {
        recv_allowance: 1024,
        ..SessionLimits::default()
    };
    let server = echo::Server::new(
        ServerRole::new("hi", EchoConfig::default()),
        limits,
        Instant::now(),
    );
    let server = server.with_recv_budget(RecvBudget::new(1024));
    let Some(Error::Local(UsageError::BadConfig(e))) = server.error() else {
        panic!("a session whose budget cannot hold one frame must fail at once");
    };
    assert_eq!(e.field(), "recv_budget");
    // A budget that covers it leaves the session alone.
    let fine = echo::Server::new(
        ServerRole::new("hi", EchoConfig::default()),
        SessionLimits::default(),
        Instant::now(),
    );
    let fine = fine.with_recv_budget(Limits::default().new_recv_budget());
    assert_eq!(fine.error(), None);
}
