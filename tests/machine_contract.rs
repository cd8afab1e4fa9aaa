//! The contract of `src/machine.rs`, checked on every stream machine,
//! framed and unframed alike: reading into the machine's own buffer
//! (`input_buffer` + `commit_input`) behaves exactly as `handle_input`;
//! `poll_timeout` is the deadline of the last `Wait`; polling again
//! answers the same; input after the end is discarded (`Ok` after a normal
//! end, the sticky error after a failure); payloads are split off the
//! memory they were read into.

use std::time::{Duration, Instant};

use bytes::Bytes;
use proptest::prelude::*;

use echoxfer::codec::{Frame, Protocol};
use echoxfer::echo::{self, ClientRole, RawEcho, ServerRole};
use echoxfer::error::ConfigError;
use echoxfer::legacy::{
    LegacyEchoClient, LegacyEchoServer, LegacyFileReceiver, LegacyFileSender, LegacySenderEvent,
};
use echoxfer::xfer::{
    encode_raw_path, offer_digest, FileSpec, Receiver, ReceiverEvent, ReceiverRole, Resume,
    SafeName, Sender, SenderRole,
};
use echoxfer::{EchoConfig, SessionLimits, TransferConfig, UnframedConfig};
use echoxfer::{Error, Machine, Output, ProtocolError, StreamMachine, UsageError};

/// Everything observable a machine did, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Transmit(Bytes),
    Event(String),
    /// How many bytes an input took, or the error it met.
    Input(Result<usize, Error>),
    /// How far the input went (what the caller moved past).
    Taken(usize),
    Wait(Option<Instant>),
    Done(Result<(), Error>),
}

/// How bytes get into the machine.
#[derive(Debug, Clone, Copy)]
enum Path {
    HandleInput,
    /// `input_buffer(ask)` with `ask` at least the piece, then a commit.
    Buffer,
    /// `handle_input` with everything left, far more than fits: it takes
    /// what fits (the cuts are ignored).
    Overfeed,
}

/// Drains `m`, answering its requests with `answer`, and checks on the way
/// that `poll_timeout` is the `Wait` deadline and that polling again
/// answers the same.
fn drain<M: StreamMachine>(
    m: &mut M,
    log: &mut Vec<Seen>,
    answer: &mut impl FnMut(&mut M, M::Event),
) where
    M::Event: std::fmt::Debug + PartialEq,
{
    loop {
        match m.poll_output() {
            Output::Transmit(t) => log.push(Seen::Transmit(t)),
            Output::Event(e) => {
                log.push(Seen::Event(format!("{e:?}")));
                answer(m, e);
            }
            Output::Wait(t) => {
                assert_eq!(m.poll_timeout(), t, "poll_timeout is not the Wait deadline");
                assert_eq!(m.poll_output(), Output::Wait(t), "polling again after Wait");
                log.push(Seen::Wait(t));
                return;
            }
            Output::Done(r) => {
                assert_eq!(m.poll_timeout(), None, "a deadline after Done");
                assert_eq!(
                    m.poll_output(),
                    Output::Done(r.clone()),
                    "polling again after Done"
                );
                log.push(Seen::Done(r));
                return;
            }
        }
    }
}

/// Feeds `wire` cut at `cuts` (each piece at most the machine's room) by
/// `path`, drains after each piece and a timer step, then the EOF; returns
/// everything seen.
fn run<M: StreamMachine>(
    mut m: M,
    wire: &[u8],
    cuts: &[usize],
    path: Path,
    mut answer: impl FnMut(&mut M, M::Event),
) -> Vec<Seen>
where
    M::Event: std::fmt::Debug + PartialEq,
{
    let mut now = t0();
    let mut log = Vec::new();
    let mut rest = wire;
    let mut cuts = cuts.iter().cycle();
    drain(&mut m, &mut log, &mut answer);
    while !rest.is_empty() {
        let room = m.input_room();
        if room == 0 {
            break;
        }
        let n = (*cuts.next().unwrap()).clamp(1, room).min(rest.len());
        let (piece, tail) = rest.split_at(n);
        let r = match path {
            Path::HandleInput => m.handle_input(now, piece),
            Path::Buffer => {
                let buf = m.input_buffer(n + 7);
                assert!(
                    buf.len() >= n && buf.len() <= room,
                    "slice of {}",
                    buf.len()
                );
                buf[..n].copy_from_slice(piece);
                m.commit_input(now, n).map(|()| n)
            }
            Path::Overfeed => m.handle_input(now, rest),
        };
        let taken = match (path, &r) {
            (Path::Overfeed, Ok(taken)) => {
                assert_eq!(
                    *taken,
                    room.min(rest.len()),
                    "too much input took less than fits"
                );
                *taken
            }
            (Path::Overfeed, Err(_)) => room.min(rest.len()),
            _ => n,
        };
        rest = &rest[taken..];
        let _ = tail;
        log.push(Seen::Input(r));
        log.push(Seen::Taken(taken));
        drain(&mut m, &mut log, &mut answer);
        // Time moves between pieces, but slowly enough that a frame cut
        // into 1-byte pieces (at most 1500 here) stays within the 30 s
        // frame deadline: the property is about cuts, not slow peers.
        now += Duration::from_millis(5);
        m.handle_timeout(now);
        drain(&mut m, &mut log, &mut answer);
    }
    m.handle_eof(now);
    drain(&mut m, &mut log, &mut answer);
    now += Duration::from_secs(3600);
    m.handle_timeout(now);
    drain(&mut m, &mut log, &mut answer);
    log
}

fn t0() -> Instant {
    // One fixed instant per test process, so both paths see the same times.
    static T0: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *T0.get_or_init(Instant::now)
}

fn config() -> SessionLimits {
    SessionLimits {
        max_frame: 4096,
        recv_buffer: 8192,
        recv_allowance: 8192,
        ..SessionLimits::default()
    }
}

fn echo() -> EchoConfig {
    EchoConfig {
        max_message: 1024,
        ..EchoConfig::default()
    }
}

fn transfer() -> TransferConfig {
    TransferConfig {
        chunk_size: 1024,
        max_path_len: 1024,
        ..TransferConfig::default()
    }
}

fn unframed() -> UnframedConfig {
    UnframedConfig {
        max_message: 1024,
        recv_buffer: 8192,
        ..UnframedConfig::default()
    }
}

fn no_answer<M, E>(_: &mut M, _: E) {}

/// A whole native file transfer as the receiver reads it.
fn receiver_wire(content: &[u8], data_frame: usize) -> Vec<u8> {
    let name = b"f.bin";
    let size = content.len() as u64;
    let mut wire = Protocol::File.preamble().to_vec();
    let mut put = |f: Frame| wire.extend(f.encode_to_vec());
    let offer = Frame::Offer {
        id: 0,
        kind: 0,
        mode: 0o644,
        mtime_secs: 0,
        mtime_nanos: 0,
        size,
        path: encode_raw_path(&[name]),
    };
    put(offer.clone());
    put(Frame::Begin { id: 0, from: 0 });
    for chunk in content.chunks(data_frame.max(1)) {
        put(Frame::Data(Bytes::copy_from_slice(chunk)));
    }
    put(Frame::End {
        id: 0,
        hash: *blake3::hash(content).as_bytes(),
        offer: offer_digest(&offer),
    });
    // No `Quit`: a sender says it only once its file is confirmed, which
    // this wire, written ahead, cannot wait for.
    wire
}

fn answer_receiver(m: &mut Receiver, e: ReceiverEvent) {
    match e {
        ReceiverEvent::Offer { request, .. } => m.accept(request, Resume::Fresh).unwrap(),
        ReceiverEvent::Verified { request, .. } => m.saved(request).unwrap(),
        _ => {}
    }
}

fn echo_wire(messages: &[Vec<u8>]) -> Vec<u8> {
    let mut wire = Protocol::Echo.preamble().to_vec();
    for m in messages {
        wire.extend(Frame::Message(Bytes::copy_from_slice(m)).encode_to_vec());
    }
    wire.extend(Frame::Exit.encode_to_vec());
    wire
}

/// Runs one machine both ways over the same wire and cuts.
fn both_ways<M: StreamMachine>(
    make: impl Fn() -> M,
    wire: &[u8],
    cuts: &[usize],
    answer: impl Fn(&mut M, M::Event) + Copy,
) -> (Vec<Seen>, Vec<Seen>)
where
    M::Event: std::fmt::Debug + PartialEq,
{
    let direct = run(make(), wire, cuts, Path::HandleInput, answer);
    let buffered = run(make(), wire, cuts, Path::Buffer, answer);
    (direct, buffered)
}

/// Runs one machine fed everything at once (`Path::Overfeed`), then fed
/// the pieces it took, one call each: what it did must be the same.
fn overfed_and_piecewise<M: StreamMachine>(
    make: impl Fn() -> M,
    wire: &[u8],
    answer: impl Fn(&mut M, M::Event) + Copy,
) -> (Vec<Seen>, Vec<Seen>)
where
    M::Event: std::fmt::Debug + PartialEq,
{
    let overfed = run(make(), wire, &[1], Path::Overfeed, answer);
    let taken: Vec<usize> = (overfed.iter())
        .filter_map(|s| match s {
            Seen::Taken(n) => Some(*n),
            _ => None,
        })
        .collect();
    let cuts = if taken.is_empty() { vec![1] } else { taken };
    let piecewise = run(make(), wire, &cuts, Path::HandleInput, answer);
    (overfed, piecewise)
}

fn answer_legacy_sender(m: &mut LegacyFileSender, e: LegacySenderEvent) {
    if let LegacySenderEvent::Read { offset, len } = e {
        m.provide(offset, Bytes::from(vec![b'x'; len])).unwrap();
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn reading_into_the_machine_or_handing_it_bytes_gives_identical_outputs_for_any_cuts(
        content in proptest::collection::vec(any::<u8>(), 0..3000),
        messages in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..6),
        noise in proptest::collection::vec(any::<u8>(), 0..600),
        data_frame in 1usize..1500,
        cuts in proptest::collection::vec(1usize..1200, 1..16),
    ) {
        let now = t0();
        let cfg = config;
        // Framed: a whole transfer, echo sessions, and peers that send noise.
        let wire = receiver_wire(&content, data_frame);
        let (a, b) = both_ways(|| Receiver::new(ReceiverRole::new(transfer()), cfg(), now), &wire, &cuts, answer_receiver);
        // The file was verified (the wire ends there, without `Quit`).
        let verified = |s: &Seen| matches!(s, Seen::Event(e) if e.starts_with("Verified"));
        prop_assert!(a.iter().any(verified), "{a:?}");
        prop_assert_eq!(a, b);
        let wire = echo_wire(&messages);
        let (a, b) = both_ways(|| echo::Server::new(ServerRole::new("hi", echo()), cfg(), now), &wire, &cuts, no_answer);
        prop_assert_eq!(a, b);
        let mut wire = Protocol::Echo.preamble().to_vec();
        wire.extend(Frame::Greeting(Bytes::from_static(b"hi")).encode_to_vec());
        wire.extend(&noise);
        let (a, b) = both_ways(|| echo::Client::new(ClientRole::new(echo()), cfg(), now), &wire, &cuts, no_answer);
        prop_assert_eq!(a, b);
        let mut wire = Protocol::File.preamble().to_vec();
        wire.extend(&noise);
        let files = vec![FileSpec::file(SafeName::new(b"a", 255).unwrap(), 10)];
        let (a, b) = both_ways(|| Sender::new(SenderRole::new(files.clone(), transfer()), cfg(), now), &wire, &cuts, no_answer);
        prop_assert_eq!(a, b);
        // Unframed: every read is a unit, so both ways see the same reads.
        let (a, b) = both_ways(|| RawEcho::new(unframed(), now), &noise, &cuts, no_answer);
        prop_assert_eq!(a, b);
        let (a, b) = both_ways(|| LegacyEchoServer::new("hello", unframed(), now), &noise, &cuts, no_answer);
        prop_assert_eq!(a, b);
        let (a, b) = both_ways(|| LegacyEchoClient::new(unframed(), now), &noise, &cuts, no_answer);
        prop_assert_eq!(a, b);
        let mut wire = content.clone();
        wire.extend(b"quit");
        let (a, b) = both_ways(|| LegacyFileReceiver::new(unframed(), now), &wire, &cuts, no_answer);
        prop_assert_eq!(a, b);
        let acks = b"success".repeat(noise.len() % 9);
        let (a, b) = both_ways(|| LegacyFileSender::new(3000, unframed(), now), &acks, &cuts, answer_legacy_sender);
        prop_assert_eq!(a, b);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// rustls's `read_tls` contract, on every stream machine: handed far
    /// more than fits, a machine takes exactly what fits, says how much,
    /// never fails for it, and does what it would have done fed those
    /// pieces one call each.
    #[test]
    fn too_much_input_is_never_fatal_a_machine_takes_what_fits_as_if_fed_in_pieces(
        content in proptest::collection::vec(any::<u8>(), 0..20_000),
        messages in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..1000), 0..12),
        noise in proptest::collection::vec(any::<u8>(), 0..20_000),
        data_frame in 1usize..4000,
    ) {
        let now = t0();
        let cfg = config;
        let wire = receiver_wire(&content, data_frame);
        let (a, b) = overfed_and_piecewise(|| Receiver::new(ReceiverRole::new(transfer()), cfg(), now), &wire, answer_receiver);
        let verified = |s: &Seen| matches!(s, Seen::Event(e) if e.starts_with("Verified"));
        prop_assert!(a.iter().any(verified), "{a:?}");
        prop_assert_eq!(a, b);
        let wire = echo_wire(&messages);
        let (a, b) = overfed_and_piecewise(|| echo::Server::new(ServerRole::new("hi", echo()), cfg(), now), &wire, no_answer);
        prop_assert!(!a.iter().any(|s| matches!(s, Seen::Input(Err(_)))), "{a:?}");
        prop_assert_eq!(a, b);
        let mut wire = Protocol::Echo.preamble().to_vec();
        wire.extend(Frame::Greeting(Bytes::from_static(b"hi")).encode_to_vec());
        wire.extend(&noise);
        let (a, b) = overfed_and_piecewise(|| echo::Client::new(ClientRole::new(echo()), cfg(), now), &wire, no_answer);
        prop_assert_eq!(a, b);
        let (a, b) = overfed_and_piecewise(|| RawEcho::new(unframed(), now), &noise, no_answer);
        prop_assert_eq!(a, b);
        let (a, b) = overfed_and_piecewise(|| LegacyEchoServer::new("hello", unframed(), now), &noise, no_answer);
        prop_assert_eq!(a, b);
        let (a, b) = overfed_and_piecewise(|| LegacyEchoClient::new(unframed(), now), &noise, no_answer);
        prop_assert_eq!(a, b);
        let mut wire = content.clone();
        wire.extend(b"quit");
        let (a, b) = overfed_and_piecewise(|| LegacyFileReceiver::new(unframed(), now), &wire, no_answer);
        prop_assert_eq!(a, b);
    }
}

/// Writes `bytes` into the machine's own buffer and commits them; returns
/// where that buffer was.
fn read_into<M: StreamMachine>(m: &mut M, bytes: &[u8]) -> std::ops::Range<usize> {
    let buf = m.input_buffer(bytes.len());
    assert_eq!(buf.len(), bytes.len());
    buf.copy_from_slice(bytes);
    let range = buf.as_ptr() as usize..buf.as_ptr() as usize + buf.len();
    m.commit_input(t0(), bytes.len()).unwrap();
    range
}

fn within(range: &std::ops::Range<usize>, b: &Bytes) -> bool {
    let p = b.as_ptr() as usize;
    range.contains(&p) && p + b.len() <= range.end
}

/// A bulk transfer read as a driver reads (as much as the machine offers,
/// up to 48 KiB at a time, cut across 64 KiB frames): after the first
/// frame, no payload is ever copied out of the memory it was read into,
/// and blocks are reused once their payloads are gone.
#[test]
fn large_frames_read_as_the_machine_asks_are_never_copied() {
    let frame = 64 * 1024;
    let content: Vec<u8> = (0..20 * frame).map(|i| (i % 251) as u8).collect();
    let wire = receiver_wire(&content, frame);
    let limits = SessionLimits::default();
    let chunks = TransferConfig {
        chunk_size: frame,
        ..TransferConfig::default()
    };
    let mut m = Receiver::new(ReceiverRole::new(chunks), limits, t0());
    let (mut rest, mut spans) = (&wire[..], Vec::<std::ops::Range<usize>>::new());
    let (mut got, mut copied, mut blocks) = (Vec::new(), 0, std::collections::HashSet::new());
    while !rest.is_empty() {
        let buf = m.input_buffer(48 * 1024);
        let n = buf.len().min(rest.len());
        buf[..n].copy_from_slice(&rest[..n]);
        let at = buf.as_ptr() as usize;
        match spans.last_mut() {
            // Contiguous with the last read: the same block.
            Some(last) if last.end == at => last.end = at + n,
            _ => spans.push(at..at + n),
        }
        rest = &rest[n..];
        m.commit_input(t0(), n).unwrap();
        loop {
            match m.poll_output() {
                Output::Event(ReceiverEvent::Write { data, .. }) => {
                    if !spans.iter().any(|s| within(s, &data)) {
                        copied += 1;
                    }
                    blocks.insert(spans.last().map(|s| s.start));
                    got.extend_from_slice(&data);
                    // Written and dropped, as the application does.
                }
                Output::Event(e) => answer_receiver(&mut m, e),
                Output::Transmit(_) => {}
                Output::Wait(_) | Output::Done(_) => break,
            }
        }
    }
    assert_eq!(got, content);
    assert!(copied <= 1, "{copied} payloads were copied after reading");
    // The first frame's, then two in turn: a frame's block is reserved
    // while the last frame's payload is still on its way to the app.
    assert!(blocks.len() <= 4, "{} blocks for 20 frames", blocks.len());
}

#[test]
fn data_payloads_are_the_memory_they_were_read_into() {
    let content = vec![7u8; 3000];
    let wire = receiver_wire(&content, 1000);
    let mut m = Receiver::new(ReceiverRole::new(transfer()), config(), t0());
    let mut writes = Vec::new();
    let mut ranges = Vec::new();
    for piece in wire.chunks(1500) {
        ranges.push(read_into(&mut m, piece));
        loop {
            match m.poll_output() {
                Output::Event(ReceiverEvent::Write { data, .. }) => writes.push(data),
                Output::Event(e) => answer_receiver(&mut m, e),
                Output::Transmit(_) => {}
                Output::Wait(_) | Output::Done(_) => break,
            }
        }
    }
    assert_eq!(writes.concat(), content);
    // A payload read whole in one read is that read's memory, not a copy.
    let whole = writes
        .iter()
        .filter(|w| ranges.iter().any(|r| within(r, w)))
        .count();
    assert!(whole >= 1, "every payload was copied");
}

#[test]
fn unframed_reads_go_out_from_the_memory_they_were_read_into() {
    let mut echo = RawEcho::new(unframed(), t0());
    let range = read_into(&mut echo, b"ping");
    let Output::Transmit(t) = echo.poll_output() else {
        panic!("no echo")
    };
    assert!(within(&range, &t), "the echo was copied");

    let mut rx = LegacyFileReceiver::new(unframed(), t0());
    let range = read_into(&mut rx, b"line\n");
    let write = std::iter::from_fn(|| match rx.poll_output() {
        Output::Event(echoxfer::legacy::LegacyReceiverEvent::Write { data, .. }) => {
            Some(Some(data))
        }
        Output::Wait(_) | Output::Done(_) => None,
        _ => Some(None),
    })
    .flatten()
    .next()
    .expect("a write");
    assert!(within(&range, &write), "the legacy read was copied");
}

#[test]
fn a_commit_beyond_the_slice_handed_out_fails_the_machine_as_input_overflow() {
    let mut m = RawEcho::new(unframed(), t0());
    let len = m.input_buffer(3).len();
    assert_eq!(len, 3);
    let overflow = Error::from(UsageError::InputOverflow { len: 4, room: 3 });
    assert_eq!(m.commit_input(t0(), 4), Err(overflow.clone()));
    assert_eq!(m.poll_output(), Output::Done(Err(overflow)));
}

/// Drains and returns how the session ended, if it did.
fn end_of<M: Machine>(m: &mut M) -> Option<Result<(), Error>> {
    loop {
        match m.poll_output() {
            Output::Done(r) => return Some(r),
            Output::Wait(_) => return None,
            _ => {}
        }
    }
}

/// After a normal end, input is discarded with `Ok` and the end stays `Ok`.
fn input_after_a_normal_end_is_discarded<M: StreamMachine>(mut m: M, end: &[u8])
where
    M::Event: std::fmt::Debug + PartialEq,
{
    assert_eq!(m.handle_input(t0(), end), Ok(end.len()));
    assert_eq!(end_of(&mut m), Some(Ok(())), "no normal end");
    let n = m.input_buffer(5).len();
    assert!(n > 0, "a machine that ended still reads (and drops) input");
    assert_eq!(m.commit_input(t0(), n), Ok(()));
    assert_eq!(
        m.handle_input(t0(), b"late"),
        Ok(4),
        "late input is taken and dropped"
    );
    assert_eq!(
        m.poll_output(),
        Output::Done(Ok(())),
        "late input changed the end"
    );
}

/// After a failure, input answers the sticky error.
fn input_after_a_failure_answers_the_sticky_error<M: StreamMachine>(mut m: M, bad: &[u8])
where
    M::Event: std::fmt::Debug + PartialEq,
{
    let _ = m.handle_input(t0(), bad);
    // A framed machine lingers for the peer's EOF after telling it why.
    m.handle_eof(t0());
    let Some(Err(e)) = end_of(&mut m) else {
        panic!("no failure")
    };
    assert_eq!(m.handle_input(t0(), b"late"), Err(e.clone()));
    assert_eq!(m.poll_output(), Output::Done(Err(e)));
}

#[test]
fn framed_and_unframed_machines_treat_input_after_the_end_alike() {
    let now = t0();
    let exit = echo_wire(&[]);
    input_after_a_normal_end_is_discarded(
        echo::Server::new(ServerRole::new("hi", echo()), config(), now),
        &exit,
    );
    input_after_a_normal_end_is_discarded(LegacyEchoServer::new("hi", unframed(), now), b"exit");
    input_after_a_normal_end_is_discarded(LegacyFileReceiver::new(unframed(), now), b"quit");
    let mut raw = RawEcho::new(unframed(), now);
    raw.handle_eof(now);
    input_after_a_normal_end_is_discarded(raw, b"");

    input_after_a_failure_answers_the_sticky_error(
        echo::Server::new(ServerRole::new("hi", echo()), config(), now),
        b"GARBAGE",
    );
    input_after_a_failure_answers_the_sticky_error(
        LegacyFileSender::new(10, unframed(), now),
        b"nope",
    );
}

#[test]
fn unframed_machines_refuse_an_invalid_config_at_once_and_send_nothing() {
    let bad = UnframedConfig {
        send_buffer: 0,
        ..UnframedConfig::default()
    };
    let refused = Err(Error::Local(UsageError::BadConfig(ConfigError::Zero(
        "send_buffer",
    ))));
    let now = t0();
    assert_eq!(
        RawEcho::new(bad.clone(), now).poll_output(),
        Output::Done(refused.clone())
    );
    // The greeting is not sent by a machine that cannot work.
    let mut server = LegacyEchoServer::new("hello", bad.clone(), now);
    assert_eq!(server.poll_output(), Output::Done(refused.clone()));
    assert_eq!(
        LegacyEchoClient::new(bad.clone(), now).poll_output(),
        Output::Done(refused.clone())
    );
    assert_eq!(
        LegacyFileReceiver::new(bad.clone(), now).poll_output(),
        Output::Done(refused.clone())
    );
    assert_eq!(
        LegacyFileSender::new(5, bad, now).poll_output(),
        Output::Done(refused)
    );
}

fn aborts<M: StreamMachine>(mut m: M) {
    m.abort("disk full".into());
    assert_eq!(
        end_of(&mut m),
        Some(Err(Error::Aborted("disk full".into())))
    );
    assert_eq!(m.poll_timeout(), None);
}

#[test]
fn unframed_machines_honour_abort() {
    let now = t0();
    aborts(RawEcho::new(unframed(), now));
    aborts(LegacyEchoServer::new("hello", unframed(), now));
    aborts(LegacyEchoClient::new(unframed(), now));
    aborts(LegacyFileReceiver::new(unframed(), now));
    aborts(LegacyFileSender::new(5000, unframed(), now));
    // Abort after a normal end changes nothing.
    let mut m = LegacyFileReceiver::new(unframed(), now);
    m.handle_input(now, b"quit").unwrap();
    m.abort("late".into());
    assert_eq!(end_of(&mut m), Some(Ok(())));
}

/// Feeds a receiver a transfer up to the frame that fails it; returns the
/// machine.
fn receiver_failed_by(last: Frame) -> Receiver {
    let mut m = Receiver::new(ReceiverRole::new(transfer()), config(), t0());
    let mut wire = Protocol::File.preamble().to_vec();
    wire.extend(
        Frame::Offer {
            id: 0,
            kind: 0,
            mode: 0o644,
            mtime_secs: 0,
            mtime_nanos: 0,
            size: 4,
            path: encode_raw_path(&[b"f"]),
        }
        .encode_to_vec(),
    );
    m.handle_input(t0(), &wire).unwrap();
    let request = loop {
        match m.poll_output() {
            Output::Event(ReceiverEvent::Offer { request, .. }) => break request,
            Output::Transmit(_) => {}
            other => panic!("no offer: {other:?}"),
        }
    };
    m.accept(request, Resume::Fresh).unwrap();
    let mut wire = Frame::Begin { id: 0, from: 0 }.encode_to_vec();
    wire.extend(Frame::Data(Bytes::from_static(b"ab")).encode_to_vec());
    wire.extend(last.encode_to_vec());
    let _ = m.handle_input(t0(), &wire);
    m
}

#[test]
fn a_receiver_failed_by_a_frame_stays_in_the_state_the_frame_arrived_in() {
    let cases = [
        (
            Frame::Data(Bytes::from_static(b"xyz")),
            Error::Remote(ProtocolError::Overrun { size: 4 }),
        ),
        (
            Frame::End {
                id: 0,
                hash: [0; 32],
                offer: [0; 32],
            },
            Error::Remote(ProtocolError::ShortFile {
                size: 4,
                received: 2,
            }),
        ),
        (
            Frame::Begin { id: 0, from: 1 },
            Error::Remote(ProtocolError::UnexpectedFrame {
                state: "receiving file data",
                frame: "Begin",
            }),
        ),
    ];
    for (frame, error) in cases {
        let m = receiver_failed_by(frame);
        assert_eq!(m.error(), Some(&error));
        // Still the file it was receiving, not a placeholder "waiting for an offer".
        assert_eq!(m.role().current(), Some(0), "{error}");
        assert_eq!(m.role().bytes_received(), 2);
    }
}

#[test]
fn a_changed_source_is_the_applications_failure_and_refused_without_harm() {
    let now = t0();
    let mut legacy = LegacyFileSender::new(10, unframed(), now);
    while !matches!(legacy.poll_output(), Output::Wait(_) | Output::Done(_)) {}
    let e = legacy.provide(0, Bytes::from_static(b"short")).unwrap_err();
    assert!(matches!(e, Error::SourceChanged(_)), "{e:?}");
    assert!(!matches!(e, Error::Local(_)));
    assert!(!e.to_string().contains("API misuse"), "{e}");
    assert!(e.to_string().contains("send the file again"), "{e}");
    // Refused without harm: the right answer still goes through.
    legacy.provide(0, Bytes::from(vec![b'x'; 10])).unwrap();
    // Answering what was never asked is still a misuse.
    assert!(matches!(
        legacy.provide(0, Bytes::from_static(b"x")),
        Err(Error::Local(UsageError::WrongState { .. }))
    ));
}
