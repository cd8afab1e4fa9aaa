//! In-memory properties of the legacy machines over a TCP-like link with
//! random fragmentation and coalescing and a virtual clock (the test
//! `Pair` with a TCP-like `Cutter`). The seed peers
//! are modelled here byte for byte (see `tests/fixtures/seedpeer.py`).

use std::collections::VecDeque;
use std::io;
use std::time::Instant;

mod common;

use bytes::Bytes;
use proptest::prelude::*;

use echoxfer::driver::{App, Ignore};
use echoxfer::legacy::{
    LegacyClientEvent, LegacyEchoClient, LegacyEchoServer, LegacyFileReceiver, LegacyFileSender,
    LegacyReceiverEvent, LegacySenderEvent, LegacyServerEvent, GREETING_BLOCKING, PIECE_MAX,
};
use echoxfer::testing::{Cutter, Pair};
use echoxfer::{Error, Machine, Output, ProtocolError, StreamMachine, UdpConfig, UnframedConfig};

const STEPS: usize = 2_000_000;

/// A TCP-like link for the unframed protocols, which the harsh
/// `Cutter::random` models too harshly: there a 4-byte `quit` write may
/// arrive as `qu` + `it`, which no real stack does. Here writes of up to
/// [`ATOMIC_WRITE`] bytes arrive whole (with `split`; without it every
/// write does), longer ones are torn at random, and reads join a random
/// number of arrived pieces, cut at the reader's `input_room()` (1024 for
/// the seed peers).
const ATOMIC_WRITE: usize = 16;

fn tcp_link(seed: u64, split: bool) -> Cutter {
    Cutter::tcp_like(seed, if split { ATOMIC_WRITE } else { usize::MAX })
}

/// The seed `file-receive` loop: `data = recv(1024)`; exactly `quit` stops;
/// anything else is appended and acked with `success`. Each `handle_input`
/// is one `recv` (the pair cuts reads at random sizes up to 1024).
#[derive(Debug, Default)]
struct SeedReceiver {
    got: Vec<u8>,
    reads: Vec<Vec<u8>>,
    tx: VecDeque<Bytes>,
    quit: bool,
    eof: bool,
    /// What `input_buffer` hands out.
    inbox: Vec<u8>,
}

impl Machine for SeedReceiver {
    type Transmit = Bytes;
    type Event = ();
    fn handle_timeout(&mut self, _: Instant) {}
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
    fn poll_output(&mut self) -> Output<Bytes, ()> {
        if let Some(b) = self.tx.pop_front() {
            return Output::Transmit(b);
        }
        if self.quit {
            Output::Done(Ok(()))
        } else if self.eof {
            Output::Done(Err(ProtocolError::UnexpectedEof {
                state: "seed receive",
            }
            .into()))
        } else {
            Output::Wait(None)
        }
    }
}

impl SeedReceiver {
    /// One read of the seed script's socket.
    fn take_read(&mut self, data: &[u8]) -> Result<(), Error> {
        if self.quit {
            return Ok(());
        }
        self.reads.push(data.to_vec());
        if data == b"quit" {
            self.quit = true;
        } else {
            self.got.extend_from_slice(data);
            self.tx.push_back(Bytes::from_static(b"success"));
        }
        Ok(())
    }
}

impl StreamMachine for SeedReceiver {
    fn input_buffer(&mut self, max: usize) -> &mut [u8] {
        self.inbox.resize(max.min(1024), 0);
        &mut self.inbox
    }
    fn commit_input(&mut self, now: Instant, n: usize) -> Result<(), Error> {
        let read = std::mem::take(&mut self.inbox);
        let _ = now;
        self.take_read(&read[..n])
    }
    fn handle_eof(&mut self, _: Instant) {
        self.eof = true;
    }
    fn input_room(&self) -> usize {
        1024
    }
}

/// The seed `file-send` loop: each line (with its newline) in one send,
/// then one `recv(1024)` that must be exactly `success`, else it stops;
/// then `quit`.
#[derive(Debug)]
struct SeedSender {
    lines: VecDeque<Bytes>,
    tx: VecDeque<Bytes>,
    waiting: bool,
    done: bool,
    /// What `input_buffer` hands out.
    inbox: Vec<u8>,
}

impl SeedSender {
    fn new(content: &[u8]) -> Self {
        let lines = content
            .split_inclusive(|&b| b == b'\n')
            .map(Bytes::copy_from_slice)
            .collect();
        let mut s = SeedSender {
            lines,
            tx: VecDeque::new(),
            waiting: false,
            done: false,
            inbox: Vec::new(),
        };
        s.next();
        s
    }
    fn next(&mut self) {
        match self.lines.pop_front() {
            Some(l) => {
                self.tx.push_back(l);
                self.waiting = true;
            }
            None => {
                self.tx.push_back(Bytes::from_static(b"quit"));
                self.done = true;
            }
        }
    }
}

impl Machine for SeedSender {
    type Transmit = Bytes;
    type Event = ();
    fn handle_timeout(&mut self, _: Instant) {}
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
    fn poll_output(&mut self) -> Output<Bytes, ()> {
        if let Some(b) = self.tx.pop_front() {
            return Output::Transmit(b);
        }
        if self.done {
            Output::Done(Ok(()))
        } else {
            Output::Wait(None)
        }
    }
}

impl SeedSender {
    /// One read of the seed script's socket.
    fn take_read(&mut self, data: &[u8]) -> Result<(), Error> {
        if self.done || !self.waiting {
            return Ok(());
        }
        self.waiting = false;
        if data == b"success" {
            self.next();
        } else {
            self.lines.clear();
            self.next();
        }
        Ok(())
    }
}

impl StreamMachine for SeedSender {
    fn input_buffer(&mut self, max: usize) -> &mut [u8] {
        self.inbox.resize(max.min(1024), 0);
        &mut self.inbox
    }
    fn commit_input(&mut self, now: Instant, n: usize) -> Result<(), Error> {
        let read = std::mem::take(&mut self.inbox);
        let _ = now;
        self.take_read(&read[..n])
    }
    fn handle_eof(&mut self, _: Instant) {
        if !self.done {
            self.lines.clear();
            self.next();
        }
    }
    fn input_room(&self) -> usize {
        1024
    }
}

/// Answers the sender's reads from `content`, and checks they stay in it.
struct Source<'a>(&'a [u8]);

impl App<LegacyFileSender> for Source<'_> {
    fn on_event(
        &mut self,
        m: &mut LegacyFileSender,
        _: Instant,
        e: LegacySenderEvent,
    ) -> io::Result<()> {
        if let LegacySenderEvent::Read { offset, len } = e {
            let start = offset as usize;
            let data = Bytes::copy_from_slice(&self.0[start..start + len]);
            m.provide(offset, data).map_err(io::Error::other)?;
        }
        Ok(())
    }
}

/// Collects the receiver's writes and its completion.
#[derive(Default)]
struct Sink {
    data: Vec<u8>,
    complete: Option<(u64, [u8; 32])>,
}

impl App<LegacyFileReceiver> for Sink {
    fn on_event(
        &mut self,
        _: &mut LegacyFileReceiver,
        _: Instant,
        e: LegacyReceiverEvent,
    ) -> io::Result<()> {
        match e {
            LegacyReceiverEvent::Write { offset, data } => {
                assert_eq!(offset, self.data.len() as u64, "writes in order");
                self.data.extend_from_slice(&data);
            }
            LegacyReceiverEvent::Complete { size, blake3 } => self.complete = Some((size, blake3)),
        }
        Ok(())
    }
}

/// File content built from the lines that trouble the seed protocol.
fn line() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"quit".to_vec()),
        Just(b"exit".to_vec()),
        Just(b"success".to_vec()),
        Just(b"quite quit".to_vec()),
        Just(Vec::new()),
        proptest::collection::vec(any::<u8>(), 0..300),
        proptest::collection::vec(b'a'..=b'z', PIECE_MAX - 3..3 * PIECE_MAX),
    ]
}

fn content() -> impl Strategy<Value = Vec<u8>> {
    (
        proptest::collection::vec(line(), 0..12),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(lines, trailing_newline, last_quit)| {
            let mut lines = lines;
            if last_quit {
                lines.push(b"quit".to_vec());
            }
            let mut c = lines.join(&b'\n');
            if trailing_newline && !last_quit && !c.is_empty() {
                c.push(b'\n');
            }
            c
        })
}

proptest! {
    #![proptest_config(common::persisted("proptest-regressions/legacy_memory.txt"))]

    /// Invariant: whatever the content (binary, `quit`/`exit`/`success`
    /// lines, lines over 1024 bytes, a last line `quit`, nothing) and however
    /// the stream is cut, the seed receiver's file is exactly the content,
    /// and its last read is exactly `quit` (never glued to data).
    #[test]
    fn legacy_sender_content_arrives_intact_at_the_seed_receiver(
        content in content(),
        seed in any::<u64>(),
        split in any::<bool>(),
    ) {
        let now = Instant::now();
        let sender = LegacyFileSender::new(content.len() as u64, UnframedConfig::default(), now);
        let mut pair = Pair::new(sender, SeedReceiver::default(), now, tcp_link(seed, split));
        let out = pair.run(&mut Source(&content), &mut Ignore, STEPS).unwrap();
        prop_assert!(out.a.is_ok(), "sender: {:?}", out.a);
        prop_assert!(out.b.is_ok(), "receiver never saw a lone quit: {:?}", out.b);
        prop_assert_eq!(&pair.b.got, &content);
        prop_assert_eq!(pair.b.reads.last().map(Vec::as_slice), Some(&b"quit"[..]));
        prop_assert!(pair.b.reads.iter().all(|r| r.len() <= PIECE_MAX));
    }

    /// Invariant: our sender to our receiver delivers the content exactly,
    /// and `Complete` reports its size and BLAKE3.
    #[test]
    fn legacy_sender_to_legacy_receiver_is_exact_and_hashed(
        content in content(),
        seed in any::<u64>(),
        split in any::<bool>(),
    ) {
        let now = Instant::now();
        let sender = LegacyFileSender::new(content.len() as u64, UnframedConfig::default(), now);
        let receiver = LegacyFileReceiver::new(UnframedConfig::default(), now);
        let mut pair = Pair::new(sender, receiver, now, tcp_link(seed, split));
        let mut sink = Sink::default();
        let out = pair.run(&mut Source(&content), &mut sink, STEPS).unwrap();
        prop_assert!(out.a.is_ok(), "sender: {:?}", out.a);
        prop_assert!(out.b.is_ok(), "receiver: {:?}", out.b);
        prop_assert_eq!(&sink.data, &content);
        let hash = *blake3::hash(&content).as_bytes();
        prop_assert_eq!(sink.complete, Some((content.len() as u64, hash)));
    }

    /// Invariant: the seed sender (line by line, one exact `success` per
    /// line) is never answered with glued acks by our receiver, even for
    /// lines over 1024 bytes, so the file is not truncated. (The seed
    /// sender's last line `quit` is indistinguishable from its end, so the
    /// content never ends with it here.)
    #[test]
    fn seed_sender_to_legacy_receiver_is_not_truncated(
        content in content(),
        seed in any::<u64>(),
        split in any::<bool>(),
    ) {
        prop_assume!(!content.ends_with(b"\nquit") && content != b"quit");
        let now = Instant::now();
        let receiver = LegacyFileReceiver::new(UnframedConfig::default(), now);
        let mut pair = Pair::new(SeedSender::new(&content), receiver, now, tcp_link(seed, split));
        let mut sink = Sink::default();
        let out = pair.run(&mut Ignore, &mut sink, STEPS).unwrap();
        prop_assert!(out.b.is_ok(), "receiver: {:?}", out.b);
        prop_assert_eq!(&sink.data, &content);
    }

    /// Invariant: the legacy echo client gets every line back whole and in
    /// order from the legacy echo server, however the stream is cut, lines
    /// containing `exit` do not end the session early, and the greeting is
    /// the server's greeting.
    #[test]
    fn legacy_echo_round_trips_every_line(
        lines in proptest::collection::vec(
            prop_oneof![
                Just(b"exit now".to_vec()),
                Just(b"quit".to_vec()),
                Just(b"success".to_vec()),
                proptest::collection::vec(any::<u8>(), 1..200),
                proptest::collection::vec(b'a'..=b'z', PIECE_MAX - 3..3 * PIECE_MAX)
                    .prop_map(|mut v| { v.extend_from_slice(b"exit"); v }),
            ],
            0..10,
        ),
        seed in any::<u64>(),
        split in any::<bool>(),
    ) {
        let now = Instant::now();
        let server = LegacyEchoServer::new(GREETING_BLOCKING, UnframedConfig::default(), now);
        let mut client = LegacyEchoClient::new(UnframedConfig::default(), now);
        for l in &lines {
            client.send_line(Bytes::copy_from_slice(l)).unwrap();
        }
        client.send_line(&b"exit"[..]).unwrap();
        let mut pair = Pair::new(client, server, now, tcp_link(seed, split));
        let mut events = Vec::new();
        let mut on_client = |_: &mut LegacyEchoClient, _: Instant, e: LegacyClientEvent| {
            events.push(e);
            Ok(())
        };
        let mut received = Vec::new();
        let mut exited = false;
        let mut on_server = |_: &mut LegacyEchoServer, _: Instant, e: LegacyServerEvent| {
            match e {
                LegacyServerEvent::Received(b) => {
                    assert!(b.len() <= PIECE_MAX);
                    received.extend_from_slice(&b)
                }
                LegacyServerEvent::ClientExited => exited = true,
            }
            Ok(())
        };
        let out = pair.run(&mut on_client, &mut on_server, STEPS).unwrap();
        prop_assert!(out.a.is_ok(), "client: {:?}", out.a);
        prop_assert!(out.b.is_ok(), "server: {:?}", out.b);
        prop_assert!(exited, "the session ended by `exit`");
        let mut want = vec![LegacyClientEvent::Greeting(Bytes::from(GREETING_BLOCKING))];
        want.extend(lines.iter().map(|l| LegacyClientEvent::Reply(Bytes::copy_from_slice(l))));
        prop_assert_eq!(events, want);
        let mut all = lines.concat();
        all.extend_from_slice(b"exit");
        prop_assert_eq!(received, all);
    }
}

#[test]
fn receiver_without_quit_is_unexpected_eof_and_never_complete() {
    let now = Instant::now();
    let content = b"line one\nline two".to_vec();
    let sender = LegacyFileSender::new(content.len() as u64, UnframedConfig::default(), now);
    let receiver = LegacyFileReceiver::new(UnframedConfig::default(), now);
    // The link drops after 12 bytes: the receiver never sees `quit`.
    let mut pair = Pair::new(sender, receiver, now, Cutter::whole()).cut_after(12);
    let mut sink = Sink::default();
    let out = pair.run(&mut Source(&content), &mut sink, STEPS).unwrap();
    assert!(
        matches!(
            out.b,
            Err(echoxfer::driver::DriverError::Machine(Error::Remote(
                ProtocolError::UnexpectedEof { .. }
            )))
        ),
        "{:?}",
        out.b
    );
    assert_eq!(sink.complete, None);
    assert!(out.a.is_err(), "the sender noticed too: {:?}", out.a);
}

#[test]
fn sender_parses_split_and_glued_acks_and_refuses_other_bytes() {
    let now = Instant::now();
    let mut s = LegacyFileSender::new(3000, UnframedConfig::default(), now);
    let mut pieces = 0;
    let mut feed = |s: &mut LegacyFileSender| loop {
        match s.poll_output() {
            Output::Event(LegacySenderEvent::Read { offset, len }) => {
                s.provide(offset, Bytes::from(vec![b'x'; len])).unwrap()
            }
            Output::Transmit(_) => pieces += 1,
            Output::Event(_) => {}
            other => break other,
        }
    };
    feed(&mut s);
    s.handle_input(now, b"suc").unwrap();
    assert!(matches!(feed(&mut s), Output::Wait(_)));
    s.handle_input(now, b"cess").unwrap();
    feed(&mut s);
    assert_eq!(s.acked(), 1024);
    // Two acks glued: one counts for the piece in flight, the spare is dropped.
    s.handle_input(now, b"successsuccess").unwrap();
    feed(&mut s);
    assert_eq!(s.acked(), 2048);
    assert!(s.handle_input(now, b"fail").is_err());
    assert!(matches!(feed(&mut s), Output::Done(Err(_))));
    assert_eq!(pieces, 3);
}

#[test]
fn quit_waits_for_the_acks_to_settle() {
    let cfg = UnframedConfig::default();
    let t0 = Instant::now();
    let mut s = LegacyFileSender::new(4, cfg.clone(), t0);
    let Output::Event(LegacySenderEvent::Read { offset, .. }) = s.poll_output() else {
        panic!("asks for data first")
    };
    s.provide(offset, Bytes::from_static(b"data")).unwrap();
    assert_eq!(
        s.poll_output(),
        Output::Transmit(Bytes::from_static(b"data"))
    );
    s.handle_input(t0, b"success").unwrap();
    let _progress = s.poll_output();
    let Output::Wait(Some(d)) = s.poll_output() else {
        panic!("settling")
    };
    assert_eq!(d, t0 + cfg.legacy_quit_settle);
    // A late spare ack restarts the quiet period.
    let t1 = t0 + cfg.legacy_quit_settle / 2;
    s.handle_input(t1, b"success").unwrap();
    s.handle_timeout(t0 + cfg.legacy_quit_settle);
    assert_eq!(
        s.poll_output(),
        Output::Wait(Some(t1 + cfg.legacy_quit_settle))
    );
    s.handle_timeout(t1 + cfg.legacy_quit_settle);
    assert_eq!(
        s.poll_output(),
        Output::Transmit(Bytes::from_static(b"quit"))
    );
    assert_eq!(s.poll_output(), Output::Done(Ok(())));
}

#[test]
fn echo_server_stops_at_exactly_exit_and_keeps_reads_within_1024() {
    let now = Instant::now();
    let mut s = LegacyEchoServer::new("hi", UnframedConfig::default(), now);
    assert_eq!(s.poll_output(), Output::Transmit(Bytes::from_static(b"hi")));
    assert_eq!(s.input_room(), PIECE_MAX);
    s.handle_input(now, b"exit ").unwrap();
    assert_eq!(
        s.poll_output(),
        Output::Transmit(Bytes::from_static(b"exit "))
    );
    s.handle_input(now, b"exit").unwrap();
    assert_eq!(
        s.poll_output(),
        Output::Event(LegacyServerEvent::Received(Bytes::from_static(b"exit ")))
    );
    assert_eq!(
        s.poll_output(),
        Output::Event(LegacyServerEvent::Received(Bytes::from_static(b"exit")))
    );
    assert_eq!(
        s.poll_output(),
        Output::Event(LegacyServerEvent::ClientExited)
    );
    assert_eq!(s.poll_output(), Output::Done(Ok(())));
    // More than one read holds is never fatal: one read of PIECE_MAX is
    // taken, as the seed server's recv(1024) would, and echoed.
    let mut s = LegacyEchoServer::new("hi", UnframedConfig::default(), now);
    assert_eq!(s.handle_input(now, &[7; PIECE_MAX + 1]), Ok(PIECE_MAX));
    assert_eq!(s.poll_output(), Output::Transmit(Bytes::from_static(b"hi")));
    let echoed = s.poll_output() == Output::Transmit(Bytes::from(vec![7; PIECE_MAX]));
    assert!(echoed, "the read that fit was not echoed whole");
}

#[test]
fn udp_sender_refuses_lines_the_seed_server_would_cut() {
    use echoxfer::legacy::LegacyUdpSender;
    let target = "127.0.0.1:9".parse().unwrap();
    let mut s = LegacyUdpSender::new(UdpConfig::default(), target);
    assert!(s.send_line(vec![b'a'; PIECE_MAX + 1]).is_err());
    s.send_line(vec![b'a'; PIECE_MAX]).unwrap();
    s.send_line(Bytes::new()).unwrap();
    s.close();
    let mut sizes = Vec::new();
    while let Output::Transmit(d) = s.poll_output() {
        assert_eq!(d.peer, target);
        sizes.push(d.payload.len());
    }
    assert_eq!(sizes, vec![PIECE_MAX, 0]);
}
