//! One harness per legacy machine: hostile bytes and timing from the
//! input, every output checked against what the seed wire protocol allows.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{drain, jump, small_unframed, start, Input};
use crate::config::{UdpConfig, UnframedConfig};
use crate::error::{Error, ProtocolError, UsageError};
use crate::legacy::{
    LegacyClientEvent, LegacyEchoClient, LegacyEchoServer, LegacyFileReceiver, LegacyFileSender,
    LegacyServerEvent, LegacyUdpSender, LegacyUdpSink, ReceiverEvent, SenderDatagramEvent,
    SenderEvent, SinkEvent, EXIT, GREETING_BLOCKING, GREETING_THREADED, PIECE_MAX, QUIT, SUCCESS,
};
use crate::machine::{Datagram, DatagramMachine, Machine, Output, StreamMachine};
use crate::testing::{Cutter, Pair};

/// Whether `hay` contains `needle` anywhere.
fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Content with the seed protocols' in-band words mixed in: `quit`,
/// `exit`, `success`, torn words and newlines, between random bytes.
fn wordy(input: &mut Input<'_>, max: usize) -> Vec<u8> {
    const WORDS: [&[u8]; 10] = [
        b"quit", b"quit\n", b"exit", b"exit\n", b"success", b"qu", b"qui", b"q", b"\n", b"ex",
    ];
    let mut out = Vec::new();
    while !input.is_empty() && out.len() < max {
        let op = input.byte();
        if op < 64 {
            out.extend_from_slice(WORDS[usize::from(op) % WORDS.len()]);
        } else if op < 80 {
            // A long run, to cross the 1024-byte piece limit.
            let b = input.byte();
            out.extend(std::iter::repeat_n(b, usize::from(op) * 20));
        } else {
            out.extend_from_slice(input.take(usize::from(op - 80)));
        }
    }
    out.truncate(max);
    out
}

// ---------------------------------------------------------------- echo server

/// The legacy echo server fed hostile reads, clock jumps, overfeeding and
/// EOF, with output drained only now and then (back-pressure). Invariants:
/// the output is the greeting, then every read that is not exactly `exit`,
/// byte for byte and in order; one `Received` per read; a read that is
/// exactly `exit` ends the session `Ok` and nothing after it is processed;
/// `input_room` never exceeds 1024 nor what `send_buffer` leaves; idle
/// timeouts fire in virtual time; EOF always ends in `Done`.
pub fn legacy_echo_server(data: &[u8]) {
    let mut input = Input(data);
    let mode = input.byte();
    let greeting: &[u8] = match mode % 3 {
        0 => GREETING_BLOCKING.as_bytes(),
        1 => GREETING_THREADED.as_bytes(),
        _ => b"",
    };
    let config = UnframedConfig {
        send_buffer: [16, 1024, 1500, 8192][usize::from(mode >> 2) % 4],
        ..small_unframed()
    };
    let auto_drain = mode & 0x40 == 0;
    let mut now = start();
    let mut m = LegacyEchoServer::new(greeting, config.clone(), now);
    let mut expected_out = greeting.to_vec();
    let mut out = Vec::new();
    let mut expected_events = Vec::new();
    let mut events = Vec::new();
    let mut result: Option<Result<(), Error>> = None;
    let mut deadline = now + config.idle_timeout;
    let mut done = None;

    let mut check = |m: &mut LegacyEchoServer,
                     out: &mut Vec<u8>,
                     events: &mut Vec<LegacyServerEvent>,
                     expected_out: &[u8],
                     drain_now: bool| {
        let queued = expected_out.len() - out.len();
        let room = m.input_room();
        assert!(room <= PIECE_MAX, "room {room} beyond one read");
        assert!(
            room <= config.send_buffer.saturating_sub(queued),
            "room {room} with {queued} bytes queued of {}",
            config.send_buffer
        );
        if !drain_now {
            return;
        }
        let d = drain(m);
        for t in d.transmits {
            assert!(!t.is_empty(), "empty transmit");
            out.extend_from_slice(&t);
        }
        events.extend(d.events);
        if d.done.is_some() {
            done = d.done;
        }
    };
    check(&mut m, &mut out, &mut events, &expected_out, true);
    while !input.is_empty() {
        let op = input.byte();
        let arg = input.byte();
        match op % 10 {
            0..=4 => {
                let want = usize::from(arg) * 5;
                let n = want.min(m.input_room());
                let read = input.take(n).to_vec();
                let r = m.handle_input(now, &read);
                if result.is_none() && !read.is_empty() {
                    deadline = now + config.idle_timeout;
                    expected_events.push(LegacyServerEvent::Received(Bytes::from(read.clone())));
                    if read == EXIT {
                        expected_events.push(LegacyServerEvent::ClientExited);
                        result = Some(Ok(()));
                    } else {
                        expected_out.extend_from_slice(&read);
                    }
                    assert_eq!(r, Ok(()));
                } else if let Some(end) = &result {
                    after_end(&r, end);
                }
            }
            5 => {
                let room = m.input_room();
                let r = m.handle_input(now, EXIT);
                if let Some(end) = &result {
                    after_end(&r, end);
                } else if room >= EXIT.len() {
                    assert_eq!(r, Ok(()));
                    deadline = now + config.idle_timeout;
                    expected_events.push(LegacyServerEvent::Received(Bytes::from_static(EXIT)));
                    expected_events.push(LegacyServerEvent::ClientExited);
                    result = Some(Ok(()));
                } else {
                    assert!(
                        matches!(r, Err(Error::Local(UsageError::InputOverflow { .. }))),
                        "{r:?}"
                    );
                    result = Some(r);
                }
            }
            6 => {
                now += jump(arg);
                m.handle_timeout(now);
                if result.is_none() && now >= deadline {
                    result = Some(Err(Error::TimedOut(config.idle_timeout)));
                }
            }
            7 => {
                check(&mut m, &mut out, &mut events, &expected_out, true);
                continue;
            }
            8 if arg < 16 => {
                let room = m.input_room();
                let r = m.handle_input(now, &vec![b'x'; room + 1]);
                if result.is_none() {
                    assert!(
                        matches!(r, Err(Error::Local(UsageError::InputOverflow { .. }))),
                        "{r:?}"
                    );
                    result = Some(r);
                }
            }
            8 => {}
            _ => {
                if arg < 32 {
                    break;
                }
            }
        }
        check(&mut m, &mut out, &mut events, &expected_out, auto_drain);
    }
    m.handle_eof(now);
    result.get_or_insert(Ok(()));
    check(&mut m, &mut out, &mut events, &expected_out, true);
    assert_eq!(out, expected_out, "echo output differs");
    assert_eq!(events, expected_events, "events differ");
    assert_eq!(done, result, "the session ended differently");
    // Nothing after the end.
    let _ = m.handle_input(now, b"more");
    let d = drain(&mut m);
    assert!(d.transmits.is_empty() && d.events.is_empty());
}

/// Input after the end (the rule of `crate::machine`): discarded, and
/// answered `Ok` after a normal end, the sticky error after a failure.
fn after_end(r: &Result<(), Error>, end: &Result<(), Error>) {
    assert_eq!(r, end, "input after the end answered differently");
}

// ---------------------------------------------------------------- echo client

/// The legacy echo client with lines from the input, against either a
/// hostile server (bytes and timing from the input) or the legacy echo
/// server over a link that cuts the stream at random. Invariants: pieces
/// are non-empty, at most 1024 bytes and never contain `exit` (a line that
/// is exactly `exit` goes last and whole); a piece goes only after
/// everything before it came back; the pieces are the lines, in order;
/// replies are exactly the lines, in order; the receive buffer stays within
/// `recv_buffer`; every run ends in `Done` in bounded steps.
pub fn legacy_echo_client(data: &[u8]) {
    let mut input = Input(data);
    let mode = input.byte();
    let config = UnframedConfig {
        max_message: 4096,
        ..small_unframed()
    };
    let mut lines = Vec::new();
    for _ in 0..input.byte() % 6 {
        let n = usize::from(input.byte() % 32);
        let mut sub = Input(input.take(n * 8));
        let line = match input.byte() % 8 {
            0 => EXIT.to_vec(),
            1 => Vec::new(),
            _ => wordy(&mut sub, 3000),
        };
        lines.push(Bytes::from(line));
    }
    let close = mode & 2 == 0;
    if mode & 1 == 0 {
        client_vs_server(input, config, lines, close);
    } else {
        client_vs_hostile(input, config, lines, close);
    }
}

/// Queues `lines` on `m` as a user would; returns the lines the client
/// will send and echo (up to an `exit`) and whether `exit` is among them.
fn queue_lines(m: &mut LegacyEchoClient, lines: &[Bytes], close: bool) -> (Vec<Bytes>, bool) {
    let mut echoed = Vec::new();
    let mut exit = false;
    for line in lines {
        let r = m.send_line(line.clone());
        if exit {
            assert_eq!(r, Err(UsageError::Closed), "a line after exit");
            continue;
        }
        match r {
            Ok(()) => {}
            // More than `send_buffer` queued: the user must wait.
            Err(UsageError::WouldBlock) => continue,
            Err(e) => panic!("line refused: {e}"),
        }
        if line[..] == *EXIT {
            exit = true;
        } else if !line.is_empty() {
            echoed.push(line.clone());
        }
    }
    if close {
        m.close();
    }
    (echoed, exit)
}

/// Checks what the client sent: pieces of the lines, in order, then
/// `exit` when queued. Returns the bytes of data sent.
fn check_pieces(pieces: &[Bytes], lines: &[Bytes], exit: bool) -> usize {
    let all: Vec<u8> = lines.iter().flat_map(|l| l.iter().copied()).collect();
    let mut at = 0;
    for (i, p) in pieces.iter().enumerate() {
        assert!(
            !p.is_empty() && p.len() <= PIECE_MAX,
            "piece of {}",
            p.len()
        );
        if p[..] == *EXIT && at == all.len() {
            assert!(exit && i + 1 == pieces.len(), "exit sent but not last");
            continue;
        }
        assert!(!contains(p, EXIT), "a piece contains exit: {p:?}");
        assert_eq!(
            all.get(at..at + p.len()),
            Some(&p[..]),
            "pieces differ from the lines"
        );
        at += p.len();
    }
    at
}

fn client_vs_server(mut input: Input<'_>, config: UnframedConfig, lines: Vec<Bytes>, close: bool) {
    let now = start();
    let seed = u64::from(input.u32());
    let cut = (input.byte() % 4 == 0).then(|| u64::from(input.u16()));
    let mut client = LegacyEchoClient::new(config.clone(), now);
    let (echoed, exit) = queue_lines(&mut client, &lines, close);
    let server = LegacyEchoServer::new(GREETING_BLOCKING, config, now);
    let mut replies = Vec::new();
    let mut greetings = Vec::new();
    let mut client_app = |_: &mut LegacyEchoClient, _: Instant, e: LegacyClientEvent| {
        match e {
            LegacyClientEvent::Greeting(g) => greetings.push(g),
            LegacyClientEvent::Reply(r) => replies.push(r),
        }
        Ok::<(), std::io::Error>(())
    };
    let mut reads = Vec::new();
    let mut exited = false;
    let mut server_app = |_: &mut LegacyEchoServer, _: Instant, e: LegacyServerEvent| {
        assert!(!exited, "server read after exit");
        match e {
            LegacyServerEvent::Received(r) => reads.push(r),
            LegacyServerEvent::ClientExited => exited = true,
        }
        Ok::<(), std::io::Error>(())
    };
    let mut pair = Pair::new(client, server, now, Cutter::random(seed, 1500));
    if let Some(n) = cut {
        pair = pair.cut_after(n);
    }
    let outcome = pair
        .run(&mut client_app, &mut server_app, 400_000)
        .expect("legacy echo pair stuck");
    let data_reads = if exited {
        assert!(exit, "the server saw exit that was never a line");
        &reads[..reads.len() - 1]
    } else {
        &reads[..]
    };
    let sent: Vec<u8> = data_reads.iter().flat_map(|r| r.iter().copied()).collect();
    // The server saw only line bytes (and maybe a torn final `exit`).
    let all: Vec<u8> = echoed.iter().flat_map(|l| l.iter().copied()).collect();
    let data_len = sent.len().min(all.len());
    assert_eq!(sent[..data_len], all[..data_len], "server saw other bytes");
    if sent.len() > all.len() {
        assert!(exit && EXIT.starts_with(&sent[all.len()..]), "extra bytes");
    }
    if exited {
        assert_eq!(sent, all, "exit before every line was sent");
    }
    assert!(greetings.len() <= 1);
    assert!(replies.len() <= echoed.len(), "more replies than lines");
    assert_eq!(replies[..], echoed[..replies.len()], "replies differ");
    if cut.is_none() {
        if let Some(g) = greetings.first() {
            assert_eq!(g[..], *GREETING_BLOCKING.as_bytes(), "greeting torn");
        }
        assert!(outcome.a.is_ok(), "clean client failed: {:?}", outcome.a);
        if close || exit {
            assert!(outcome.b.is_ok(), "clean server failed: {:?}", outcome.b);
            assert_eq!(replies, echoed, "not every line came back");
        } else {
            // The client waits for a line that never comes; the server
            // drops it after the idle timeout.
            assert!(
                matches!(
                    outcome.b,
                    Ok(()) | Err(crate::driver::DriverError::Machine(Error::TimedOut(_)))
                ),
                "{:?}",
                outcome.b
            );
        }
    }
}

/// What a client fed by a hostile server did, as seen from outside.
struct ClientSeen {
    pieces: Vec<Bytes>,
    fed: usize,
    greeting: Option<usize>,
    replies: Vec<Bytes>,
    done: Option<Result<(), Error>>,
}

impl ClientSeen {
    fn check(&mut self, m: &mut LegacyEchoClient, echoed: &[Bytes], recv_buffer: usize) {
        assert!(m.input_room() <= recv_buffer);
        let d = drain(m);
        for e in d.events {
            match e {
                LegacyClientEvent::Greeting(g) => {
                    assert!(self.greeting.is_none(), "two greetings");
                    assert!(self.pieces.is_empty(), "greeting after a line");
                    self.greeting = Some(g.len());
                }
                LegacyClientEvent::Reply(r) => {
                    assert_eq!(
                        Some(&r),
                        echoed.get(self.replies.len()),
                        "reply out of order"
                    );
                    self.replies.push(r);
                }
            }
        }
        for t in d.transmits {
            let g = self.greeting.expect("a line sent before the greeting");
            let sent: usize = self.pieces.iter().map(Bytes::len).sum();
            // Everything sent before came back first.
            assert!(self.fed - g >= sent, "piece sent before the last came back");
            self.pieces.push(t);
        }
        if d.done.is_some() {
            self.done = d.done;
        }
    }

    /// What an honest server owes: the greeting, or the echo of the pieces.
    fn owed(&self) -> Vec<u8> {
        match self.greeting {
            None => GREETING_THREADED.as_bytes().to_vec(),
            Some(g) => {
                let all: Vec<u8> = self
                    .pieces
                    .iter()
                    .filter(|p| p[..] != *EXIT)
                    .flat_map(|p| p.iter().copied())
                    .collect();
                all.get(self.fed - g..).unwrap_or_default().to_vec()
            }
        }
    }
}

fn client_vs_hostile(mut input: Input<'_>, config: UnframedConfig, lines: Vec<Bytes>, close: bool) {
    let mut now = start();
    let mut m = LegacyEchoClient::new(config.clone(), now);
    let (echoed, exit) = queue_lines(&mut m, &lines, close);
    let mut seen = ClientSeen {
        pieces: Vec::new(),
        fed: 0,
        greeting: None,
        replies: Vec::new(),
        done: None,
    };
    let mut honest = true;
    let rb = config.recv_buffer;
    seen.check(&mut m, &echoed, rb);
    while !input.is_empty() && seen.done.is_none() {
        let op = input.byte();
        let arg = input.byte();
        match op % 6 {
            0 | 1 => {
                let owed = seen.owed();
                let n = owed.len().min(usize::from(arg) + 1).min(m.input_room());
                if n > 0 {
                    let _ = m.handle_input(now, &owed[..n]);
                    seen.fed += n;
                }
            }
            2 => {
                let bytes = input.take(usize::from(arg % 16));
                let n = bytes.len().min(m.input_room());
                if n > 0 {
                    honest = false;
                    let _ = m.handle_input(now, &bytes[..n]);
                    seen.fed += n;
                }
            }
            3 | 4 => {
                now += jump(arg);
                m.handle_timeout(now);
            }
            _ => {
                if arg < 32 {
                    break;
                }
            }
        }
        seen.check(&mut m, &echoed, rb);
    }
    m.handle_eof(now);
    seen.check(&mut m, &echoed, rb);
    let done = seen.done.expect("EOF must end the session");
    check_pieces(&seen.pieces, &echoed, exit);
    if honest {
        assert!(
            !matches!(done, Err(Error::Remote(ProtocolError::EchoMismatch))),
            "mismatch against an honest server"
        );
    }
    if done.is_ok() {
        assert_eq!(seen.replies.len(), echoed.len(), "Ok with lines not echoed");
    }
}

// ---------------------------------------------------------------- file sender

/// The legacy file sender with content from the input (the words `quit`,
/// `success` and torn words mixed in) against a hostile receiver: acks
/// whole, split, doubled or garbled, clock jumps and EOF; then, if still
/// running, an honest receiver until the end. Invariants: reads asked are
/// contiguous and within the file; pieces are the content in order, each
/// 1 to 1024 bytes and never containing `quit`; a piece goes only after
/// every earlier piece was acked, and after a piece that tore `quit` only
/// once acks have been quiet for `legacy_quit_settle`; `quit` goes only
/// after the whole file was acked and the acks settled, and ends the
/// session `Ok`; progress is monotonic; garbage is a typed error; an honest
/// receiver always gets to `quit` in bounded steps.
pub fn legacy_file_sender(data: &[u8]) {
    let mut input = Input(data);
    let n = usize::from(input.u16() % 6000);
    let content = wordy(&mut Input(input.take(n)), 8000);
    let config = small_unframed();
    let mut now = start();
    let mut model = SenderModel {
        content: Bytes::from(content),
        sent: 0,
        pieces: Vec::new(),
        credited: 0,
        ack_match: 0,
        last_ack: now,
        last_activity: now,
        next_read: 0,
        progress: 0,
        quit: false,
        done: None,
        config: config.clone(),
    };
    let mut m = LegacyFileSender::new(model.content.len() as u64, config.clone(), now);
    model.settle(&mut m, now);
    // Whether the receiver misbehaved (garbage, EOF) or the clock jumped
    // past the idle timeout: only then may the sender fail.
    let mut hostile = false;
    while !input.is_empty() && model.done.is_none() {
        let op = input.byte();
        let arg = input.byte();
        match op % 8 {
            0..=2 => model.feed(&mut m, now, SUCCESS),
            3 => {
                let k = usize::from(arg) % SUCCESS.len();
                model.feed(&mut m, now, &SUCCESS[..k]);
                model.feed(&mut m, now, &SUCCESS[k..]);
            }
            4 => {
                // A torn ack: garbage unless it happens to continue one.
                hostile = true;
                let k = usize::from(arg) % SUCCESS.len();
                model.feed(&mut m, now, &SUCCESS[k..]);
            }
            5 if arg < 8 => {
                hostile = true;
                model.feed(&mut m, now, &[arg]);
            }
            5 | 6 => {
                now += jump(arg);
                m.handle_timeout(now);
                if model.awaiting() && now >= model.last_activity + config.idle_timeout {
                    hostile = true;
                    model.expect_end(Err(Error::TimedOut(config.idle_timeout)));
                }
            }
            _ => {
                if arg < 16 {
                    hostile = true;
                    m.handle_eof(now);
                    model.expect_end(Err(ProtocolError::UnexpectedEof {
                        state: "sending (the receiver closed before `quit`)",
                    }
                    .into()));
                }
            }
        }
        model.settle(&mut m, now);
    }
    // An honest receiver from here: acks what is owed, waits out the settle.
    let bound = 2 * model.content.len() + 64;
    for _ in 0..bound {
        if model.done.is_some() {
            break;
        }
        if model.ack_match != 0 {
            let rest = &SUCCESS[model.ack_match..];
            model.feed(&mut m, now, rest);
        } else if model.awaiting() {
            model.feed(&mut m, now, SUCCESS);
        } else {
            now += config.legacy_quit_settle;
            m.handle_timeout(now);
        }
        model.settle(&mut m, now);
    }
    let done = model
        .done
        .clone()
        .expect("the sender did not finish in bounded steps");
    if done.is_ok() {
        assert!(model.quit && model.sent == model.content.len());
    }
    assert!(
        hostile || done.is_ok(),
        "failed against an honest receiver: {done:?}"
    );
    let _ = m.handle_input(now, SUCCESS);
    let d = drain(&mut m);
    assert!(
        d.transmits.is_empty() && d.events.is_empty(),
        "output after the end"
    );
}

struct SenderModel {
    content: Bytes,
    /// Bytes of content sent.
    sent: usize,
    /// End offsets of the pieces sent.
    pieces: Vec<usize>,
    /// Acks credited to pieces.
    credited: usize,
    ack_match: usize,
    last_ack: Instant,
    last_activity: Instant,
    next_read: u64,
    progress: u64,
    quit: bool,
    done: Option<Result<(), Error>>,
    config: UnframedConfig,
}

impl SenderModel {
    fn awaiting(&self) -> bool {
        self.credited < self.pieces.len()
    }

    fn expect_end(&mut self, result: Result<(), Error>) {
        if self.done.is_none() {
            self.done = Some(result);
        }
    }

    /// Feeds ack bytes, tracking what the sender must make of them.
    fn feed(&mut self, m: &mut LegacyFileSender, now: Instant, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let r = m.handle_input(now, bytes);
        if let Some(end) = &self.done {
            after_end(&r, end);
            return;
        }
        for &b in bytes {
            if b != SUCCESS[self.ack_match] {
                let e: Error = ProtocolError::InvalidField {
                    field: "legacy ack",
                    reason: "expected the bytes `success`",
                }
                .into();
                assert_eq!(r, Err(e.clone()));
                self.done = Some(Err(e));
                return;
            }
            self.ack_match += 1;
            if self.ack_match == SUCCESS.len() {
                self.ack_match = 0;
                self.last_ack = now;
                self.last_activity = now;
                if self.credited < self.pieces.len() {
                    self.credited += 1;
                }
            }
        }
        assert_eq!(r, Ok(()));
    }

    /// Drains the sender, answering reads, and checks every output.
    fn settle(&mut self, m: &mut LegacyFileSender, now: Instant) {
        loop {
            let d = drain(m);
            for t in &d.transmits {
                assert!(!self.quit, "output after quit");
                self.transmit(t, now);
            }
            let mut answered = false;
            for e in d.events {
                match e {
                    SenderEvent::Read { offset, len } => {
                        assert_eq!(offset, self.next_read, "reads not contiguous");
                        assert!(len > 0 && len <= PIECE_MAX, "read of {len}");
                        let end = offset as usize + len;
                        assert!(end <= self.content.len(), "read beyond the file");
                        self.next_read = end as u64;
                        let chunk = self.content.slice(offset as usize..end);
                        m.provide(offset, chunk)
                            .expect("the exact range is accepted");
                        answered = true;
                    }
                    SenderEvent::Progress { acked, size } => {
                        assert_eq!(size, self.content.len() as u64);
                        assert!(acked >= self.progress && acked <= size, "progress {acked}");
                        assert!(self.pieces.contains(&(acked as usize)), "not a piece end");
                        self.progress = acked;
                    }
                }
            }
            if let Some(r) = d.done {
                if self.quit {
                    self.expect_end(Ok(()));
                }
                assert_eq!(
                    Some(&r),
                    self.done.as_ref(),
                    "the sender ended unexpectedly"
                );
                return;
            }
            if !answered {
                return;
            }
        }
    }

    fn transmit(&mut self, t: &Bytes, now: Instant) {
        let settle = self.config.legacy_quit_settle;
        assert!(self.done.is_none(), "output after the end");
        assert!(!self.awaiting(), "a piece before the last was acked");
        if t[..] == *QUIT && self.sent == self.content.len() {
            if !self.pieces.is_empty() {
                assert!(
                    now >= self.last_ack + settle,
                    "quit before the acks settled"
                );
            }
            self.quit = true;
            return;
        }
        assert!(
            !t.is_empty() && t.len() <= PIECE_MAX,
            "piece of {}",
            t.len()
        );
        assert!(!contains(t, QUIT), "a piece contains quit");
        let end = self.sent + t.len();
        assert_eq!(
            self.content.get(self.sent..end),
            Some(&t[..]),
            "piece differs"
        );
        if let Some(&prev) = self.pieces.last() {
            let start = self
                .pieces
                .len()
                .checked_sub(2)
                .map_or(0, |i| self.pieces[i]);
            let piece = &self.content[start..prev];
            let torn = (1..QUIT.len()).any(|k| piece.ends_with(&QUIT[..k]));
            if torn {
                assert!(
                    now >= self.last_ack + settle,
                    "piece after a torn quit too soon"
                );
            }
        }
        self.sent = end;
        self.pieces.push(end);
        self.last_activity = now;
    }
}

// ---------------------------------------------------------------- file receiver

/// The legacy file receiver fed hostile reads (data, `quit`, `quit\n`,
/// empty, oversized), clock jumps and EOF. Invariants: every read but an
/// exact `quit` becomes one write, contiguous, equal to the read; acks are
/// exactly `success`, one at once for a read ending a line, else one per
/// burst after `legacy_ack_delay`; `Complete` comes only after a read that
/// is exactly `quit`, with the size and BLAKE3 of all writes; data beyond
/// `max_file_size` and overfeeding fail typed; idle timeouts fire in
/// virtual time; EOF before `quit` is `UnexpectedEof`.
pub fn legacy_file_receiver(data: &[u8]) {
    let mut input = Input(data);
    let mode = input.byte();
    let config = UnframedConfig {
        max_file_size: [1 << 20, 2000, 1][usize::from(mode % 3)],
        ..small_unframed()
    };
    let mut now = start();
    let mut m = LegacyFileReceiver::new(config.clone(), now);
    let mut seen = RxSeen::default();
    let mut acks_expected = 0usize;
    let mut ack_due: Option<Instant> = None;
    let mut deadline = now + config.idle_timeout;
    let mut result: Option<Result<(), Error>> = None;
    let mut expected: Vec<u8> = Vec::new();
    while !input.is_empty() && result.is_none() {
        let op = input.byte();
        let arg = input.byte();
        let read: Vec<u8> = match op % 10 {
            0..=3 => {
                let mut r = input.take(usize::from(arg) * 4).to_vec();
                r.truncate(PIECE_MAX);
                if arg % 3 == 0 {
                    r.push(b'\n');
                    r.truncate(PIECE_MAX);
                }
                r
            }
            4 => QUIT.to_vec(),
            5 => b"quit\n".to_vec(),
            6 => {
                now += jump(arg);
                m.handle_timeout(now);
                if ack_due.is_some_and(|d| now >= d) {
                    ack_due = None;
                    acks_expected += 1;
                }
                if now >= deadline {
                    result = Some(Err(Error::TimedOut(config.idle_timeout)));
                }
                seen.check(&mut m, &result);
                continue;
            }
            7 if arg < 16 => {
                let r = m.handle_input(now, &vec![b'q'; PIECE_MAX + 1]);
                assert!(
                    matches!(r, Err(Error::Local(UsageError::InputOverflow { .. }))),
                    "{r:?}"
                );
                result = Some(r);
                seen.check(&mut m, &result);
                continue;
            }
            7 => Vec::new(),
            _ if arg < 16 => break,
            _ => input.take(usize::from(arg) % 8).to_vec(),
        };
        let r = m.handle_input(now, &read);
        if read.is_empty() {
            assert_eq!(r, Ok(()));
        } else if read == QUIT {
            assert_eq!(r, Ok(()));
            ack_due = None;
            result = Some(Ok(()));
        } else if (expected.len() + read.len()) as u64 > config.max_file_size {
            assert!(
                matches!(r, Err(Error::Remote(ProtocolError::MessageTooLarge { .. }))),
                "{r:?}"
            );
            result = Some(r);
            ack_due = None;
        } else {
            assert_eq!(r, Ok(()));
            deadline = now + config.idle_timeout;
            expected.extend_from_slice(&read);
            if read.ends_with(b"\n") {
                acks_expected += 1;
                ack_due = None;
            } else {
                ack_due = Some(now + config.legacy_ack_delay);
            }
        }
        seen.check(&mut m, &result);
        assert_eq!(seen.acks, acks_expected, "acks differ");
    }
    if result.is_none() {
        m.handle_eof(now);
        result = Some(Err(ProtocolError::UnexpectedEof {
            state: "receiving a legacy file (no `quit`: incomplete)",
        }
        .into()));
    }
    seen.check(&mut m, &result);
    assert_eq!(seen.acks, acks_expected, "acks differ");
    assert_eq!(seen.written, expected, "writes differ from the reads");
    assert_eq!(seen.done, result, "the session ended differently");
    assert_eq!(seen.complete.is_some(), matches!(result, Some(Ok(()))));
    let _ = m.handle_input(now, b"x");
    let d = drain(&mut m);
    assert!(
        d.transmits.is_empty() && d.events.is_empty(),
        "output after the end"
    );
}

/// What the legacy receiver did, as seen from outside.
#[derive(Default)]
struct RxSeen {
    written: Vec<u8>,
    acks: usize,
    complete: Option<u64>,
    done: Option<Result<(), Error>>,
}

impl RxSeen {
    fn check(&mut self, m: &mut LegacyFileReceiver, result: &Option<Result<(), Error>>) {
        assert!(m.input_room() <= PIECE_MAX);
        let d = drain(m);
        for t in d.transmits {
            assert_eq!(t[..], *SUCCESS, "receiver sent something else");
            self.acks += 1;
        }
        for e in d.events {
            assert!(self.complete.is_none(), "event after Complete");
            match e {
                ReceiverEvent::Write { offset, data } => {
                    assert_eq!(offset, self.written.len() as u64, "write not contiguous");
                    self.written.extend_from_slice(&data);
                }
                ReceiverEvent::Complete { size, blake3 } => {
                    assert!(matches!(result, Some(Ok(()))), "Complete without quit");
                    assert_eq!(size, self.written.len() as u64);
                    assert_eq!(blake3, *blake3::hash(&self.written).as_bytes());
                    self.complete = Some(size);
                }
            }
        }
        if d.done.is_some() {
            self.done = d.done;
        }
    }
}

// ---------------------------------------------------------------- udp

/// The legacy UDP sink and sender. The sender takes lines from the input
/// (some too long, some beyond its queue, some after `close`), stray
/// datagrams and drains; the sink gets what the sender sent plus strangers'
/// datagrams. Invariants: the sender refuses exactly what it must
/// (`MessageTooLarge` over 1024 bytes or `max_datagram`, `WouldBlock` at
/// `datagram_queue`, `Closed` after close), sends each accepted line as one
/// datagram to its target, in order, with a `Sent` event each, ends `Done`
/// after close; the sink reports every datagram whole, in order, never
/// sends and never ends.
pub fn legacy_udp(data: &[u8]) {
    let mut input = Input(data);
    let mode = input.byte();
    let config = UdpConfig {
        datagram_queue: usize::from(mode % 8) + 1,
        max_datagram: [65_507, 100, 1024, 1025][usize::from(mode >> 3) % 4],
        ..UdpConfig::default()
    };
    let target: SocketAddr = "127.0.0.1:7".parse().expect("address");
    let stranger: SocketAddr = "[::1]:9".parse().expect("address");
    let now = start();
    let mut sender = LegacyUdpSender::new(config.clone(), target);
    let mut sink = LegacyUdpSink::new();
    let mut queued: VecDeque<Bytes> = VecDeque::new();
    let mut closed = false;
    let mut sink_expected = Vec::new();
    let max = PIECE_MAX.min(config.max_datagram);
    let drain_sender = |sender: &mut LegacyUdpSender,
                        queued: &mut VecDeque<Bytes>,
                        sink: &mut LegacyUdpSink,
                        sink_expected: &mut Vec<SinkEvent>,
                        closed: bool| {
        let d = drain(sender);
        let lens: Vec<SenderDatagramEvent> = d
            .transmits
            .iter()
            .map(|t| SenderDatagramEvent::Sent(t.payload.len()))
            .collect();
        assert_eq!(d.events, lens, "one Sent per datagram");
        for Datagram { peer, payload } in d.transmits {
            assert_eq!(peer, target);
            assert!(payload.len() <= max);
            assert_eq!(
                Some(payload.clone()),
                queued.pop_front(),
                "datagram differs"
            );
            sink.handle_datagram(now, peer, &payload);
            sink_expected.push(SinkEvent::Datagram { peer, payload });
        }
        assert!(queued.is_empty(), "a line not sent");
        assert_eq!(d.done, closed.then_some(Ok(())), "sender end");
    };
    while !input.is_empty() {
        let op = input.byte();
        match op % 8 {
            0..=3 => {
                let n = usize::from(input.u16() % 1200);
                let line = Bytes::copy_from_slice(input.take(n));
                let r = sender.send_line(line.clone());
                let want = if closed {
                    Err(UsageError::Closed)
                } else if line.len() > max {
                    Err(UsageError::MessageTooLarge {
                        len: line.len(),
                        max,
                    })
                } else if queued.len() >= config.datagram_queue {
                    Err(UsageError::WouldBlock)
                } else {
                    queued.push_back(line);
                    Ok(())
                };
                assert_eq!(r, want, "send_line");
            }
            4 => drain_sender(
                &mut sender,
                &mut queued,
                &mut sink,
                &mut sink_expected,
                closed,
            ),
            5 => {
                let payload = input.take(usize::from(op)).to_vec();
                sender.handle_datagram(now, stranger, &payload);
                sink.handle_datagram(now, stranger, &payload);
                sink_expected.push(SinkEvent::Datagram {
                    peer: stranger,
                    payload: Bytes::from(payload),
                });
            }
            6 => {
                sender.handle_timeout(now + Duration::from_secs(u64::from(op)));
                sink.handle_timeout(now + Duration::from_secs(3600));
            }
            _ => {
                sender.close();
                closed = true;
            }
        }
    }
    sender.close();
    drain_sender(
        &mut sender,
        &mut queued,
        &mut sink,
        &mut sink_expected,
        true,
    );
    let d = drain(&mut sink);
    assert!(d.transmits.is_empty(), "the sink replied");
    assert_eq!(d.events, sink_expected, "sink events");
    assert!(d.done.is_none(), "the sink ended by itself");
    assert_eq!(sink.poll_output(), Output::Wait(None));
}
