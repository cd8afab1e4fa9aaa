//! The framed echo machines: the server fed hostile bytes and timing,
//! checked against a reference of what it must answer; a client fed
//! hostile bytes; and a client/server pair over a cut, dropped or
//! corrupted link.

use std::collections::VecDeque;
use std::io;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::{drain, jump, small_echo, small_limits, start, Input};
use crate::codec::{Frame, FrameDecoder, FrameLimits, Protocol};
use crate::config::SessionLimits;
use crate::driver::{App, DriverError};
use crate::echo::{Client, ClientEvent, ClientRole, Server, ServerEvent, ServerRole};
use crate::error::{Error, ErrorCode, ProtocolError, UsageError};
use crate::testing::{Cutter, Pair};
use crate::{Machine, StreamMachine};

pub(crate) const GREETING: &[u8] = b"hi";

/// The echo machines under hostile input. The first byte picks the
/// scenario: the server fed hostile bytes, a client fed hostile bytes, or
/// a client/server pair. Invariants: no panic; the server answers exactly
/// what a reference decoder says it must (each message echoed in order,
/// `Bye` after `Exit` and nothing processed after it, an `Error` frame with
/// the right code on every failure, idle, handshake and frame deadlines in virtual time); the
/// client reports back exactly what it sent, in order, or a typed error;
/// every run ends in `Done` within a bounded number of steps.
pub fn echo(data: &[u8]) {
    let mut input = Input(data);
    let mode = input.byte();
    match mode % 3 {
        0 => server_hostile(mode, input),
        1 => client_hostile(mode, input),
        _ => pair(input),
    }
}

/// One step of a hostile script.
enum Step {
    Bytes(Vec<u8>),
    /// More bytes than the machine has room for.
    Overfeed,
    Jump(Duration),
    Eof,
}

/// A script of frames (hostile or not), raw bytes, clock jumps and an EOF.
fn script(mode: u8, input: &mut Input<'_>, preamble: Protocol) -> Vec<Step> {
    let mut steps = Vec::new();
    if mode & 0x80 == 0 {
        steps.push(Step::Bytes(preamble.preamble().to_vec()));
    }
    while !input.is_empty() && steps.len() < 200 {
        let op = input.byte();
        let arg = input.byte();
        let frame = match op % 12 {
            0..=2 => {
                // Sizes straddle max_message (1024).
                let n = usize::from(arg) * 5;
                Frame::Message(Bytes::copy_from_slice(input.take(n)))
            }
            3 => Frame::Message(Bytes::from_static(b"exit")),
            4 => Frame::Exit,
            5 => [
                Frame::Bye,
                Frame::Greeting(Bytes::new()),
                Frame::Quit,
                Frame::Error {
                    code: ErrorCode::from_u16(arg.into()),
                    message: Bytes::from_static(b"\x1b[2Jbye"),
                },
            ][usize::from(arg % 4)]
            .clone(),
            6 | 7 => {
                steps.push(Step::Bytes(input.take(usize::from(arg)).to_vec()));
                continue;
            }
            8 | 9 => {
                steps.push(Step::Jump(jump(arg)));
                continue;
            }
            10 if arg < 8 => {
                steps.push(Step::Overfeed);
                continue;
            }
            10 => Frame::Message(Bytes::new()),
            _ if arg < 32 => {
                steps.push(Step::Eof);
                break;
            }
            _ => {
                // A frame header announcing more than the limit.
                let mut h = vec![0x11];
                h.extend_from_slice(&u32::from(arg).wrapping_mul(0x0101_0101).to_be_bytes());
                steps.push(Step::Bytes(h));
                continue;
            }
        };
        steps.push(Step::Bytes(frame.encode_to_vec()));
    }
    steps
}

/// How the reference expects the server to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Bye,
    /// Failed, sending an `Error` frame with this code (`None`: the peer
    /// failed first, so no frame is sent).
    Failed(Option<ErrorCode>),
}

/// The reference: what the server must have sent and told so far.
struct Reference {
    decoder: FrameDecoder,
    buf: BytesMut,
    frames: Vec<Frame>,
    events: Vec<ServerEvent>,
    end: Option<End>,
    /// When the server must fail as stalled: no whole frame (or output
    /// taken) for the idle timeout.
    deadline: Instant,
    idle: Duration,
    /// Until the preamble is whole: when it must be.
    handshake: Option<Instant>,
    /// While a frame is partly held: when it must be whole.
    frame: Option<Instant>,
    frame_timeout: Duration,
}

impl Reference {
    fn fail(&mut self, code: Option<ErrorCode>) {
        if self.end.is_none() {
            self.end = Some(End::Failed(code));
        }
    }

    /// The first deadline of a live server (idle, handshake or frame).
    fn first_deadline(&self) -> Instant {
        [self.handshake, self.frame]
            .into_iter()
            .flatten()
            .fold(self.deadline, Instant::min)
    }

    /// The server took `bytes` at `now`.
    fn input(&mut self, now: Instant, bytes: &[u8], max_message: usize) {
        if self.end.is_some() {
            return;
        }
        self.buf.extend_from_slice(bytes);
        while self.end.is_none() {
            let frame = self.decoder.decode(&mut self.buf);
            if let Ok(Some(_)) = frame {
                // Only a whole frame restarts the idle timer.
                self.deadline = now + self.idle;
                self.frame = None;
            }
            match frame {
                Ok(None) => break,
                Err(_) => self.fail(Some(ErrorCode::Protocol)),
                Ok(Some(Frame::Message(m))) if m.len() <= max_message => {
                    self.events.push(ServerEvent::Echoed(m.len()));
                    self.frames.push(Frame::Message(m));
                }
                Ok(Some(Frame::Exit)) => {
                    self.frames.push(Frame::Bye);
                    self.events.push(ServerEvent::ClientExited);
                    self.end = Some(End::Bye);
                }
                Ok(Some(Frame::Error { .. })) => self.fail(None),
                Ok(Some(_)) => self.fail(Some(ErrorCode::Protocol)),
            }
        }
        if self.decoder.preamble_done() {
            self.handshake = None;
        }
        // A frame begun must be whole within the frame timeout.
        self.frame = match self.decoder.in_frame(&self.buf) {
            true => Some(self.frame.unwrap_or(now + self.frame_timeout)),
            false => None,
        };
    }
}

fn server_hostile(mode: u8, mut input: Input<'_>) {
    let config = small_limits();
    let ncuts = usize::from(input.byte() % 8);
    let cuts = input.take(ncuts).to_vec();
    let steps = script(mode, &mut input, Protocol::Echo);
    let mut now = start();
    let mut server = Server::new(ServerRole::new(GREETING, small_echo()), config.clone(), now);
    let mut reference = Reference {
        decoder: FrameDecoder::with_limits(
            Protocol::Echo,
            FrameLimits {
                max_message: small_echo().max_message,
                ..FrameLimits::uniform(config.max_frame)
            },
        ),
        buf: BytesMut::new(),
        frames: vec![Frame::Greeting(Bytes::from_static(GREETING))],
        events: Vec::new(),
        end: None,
        deadline: now + config.idle_timeout,
        idle: config.idle_timeout,
        handshake: Some(now + config.handshake_timeout),
        frame: None,
        frame_timeout: config.frame_timeout,
    };
    // What the server sent, decoded as a client would.
    let mut client_view = FrameDecoder::new(Protocol::Echo, usize::MAX >> 1);
    let mut out = BytesMut::new();
    let mut sent = Vec::new();
    let mut events = Vec::new();
    let mut done = None;
    let mut cut = cuts.iter().cycle();
    let mut check = |server: &mut Server, reference: &mut Reference, now: Instant| {
        let d = drain(server);
        if !d.transmits.is_empty() && reference.end.is_none() {
            // Sending counts as activity.
            reference.deadline = now + reference.idle;
        }
        for t in &d.transmits {
            out.extend_from_slice(t);
        }
        while let Some(f) = client_view
            .decode(&mut out)
            .expect("server output is well-formed")
        {
            sent.push(f);
        }
        events.extend(d.events);
        if let Some(r) = d.done {
            assert!(
                reference.end.is_some(),
                "server ended ({r:?}) but must go on"
            );
            done = Some(r);
        }
        // The server sent exactly what the reference says, in order.
        let expected = expected_frames(reference, &sent);
        assert_eq!(sent, expected, "server output differs from the reference");
        assert_eq!(events, reference.events, "server events differ");
        assert!(server.input_room() <= small_limits().recv_buffer);
        done.clone()
    };
    check(&mut server, &mut reference, now);
    for step in steps {
        match step {
            Step::Bytes(bytes) => {
                let mut rest = &bytes[..];
                while !rest.is_empty() {
                    let room = server.input_room();
                    assert!(room > 0, "no input room after a full drain");
                    let piece = cut.next().map_or(usize::MAX, |&c| usize::from(c) + 1);
                    let n = rest.len().min(room).min(piece);
                    let r = server.handle_input(now, &rest[..n]);
                    if reference.end.is_none() {
                        reference.input(now, &rest[..n], small_echo().max_message);
                    }
                    match (&reference.end, r) {
                        (None | Some(End::Bye), Ok(k)) if k == n => {}
                        (Some(End::Failed(_)), Err(_)) => {}
                        (end, r) => panic!("handle_input gave {r:?}; the reference says {end:?}"),
                    }
                    rest = &rest[n..];
                    check(&mut server, &mut reference, now);
                }
            }
            Step::Overfeed => {
                // More than fits is never fatal: exactly what fits is
                // taken, and processed as any input.
                let room = server.input_room();
                let garbage = vec![0x11; room + 1];
                let r = server.handle_input(now, &garbage);
                if reference.end.is_none() {
                    reference.input(now, &garbage[..room], small_echo().max_message);
                }
                match (&reference.end, r) {
                    (None | Some(End::Bye), Ok(k)) => assert_eq!(k, room, "took {k} of {room}"),
                    (Some(End::Failed(_)), Err(_)) => {}
                    (end, r) => panic!("too much input gave {r:?}; the reference says {end:?}"),
                }
                check(&mut server, &mut reference, now);
            }
            Step::Jump(d) => {
                now += d;
                server.handle_timeout(now);
                if reference.end.is_none() && now >= reference.first_deadline() {
                    reference.fail(Some(ErrorCode::Timeout));
                }
                check(&mut server, &mut reference, now);
            }
            Step::Eof => break,
        }
    }
    server.handle_eof(now);
    if reference.end.is_none() {
        reference.fail(Some(ErrorCode::Protocol));
    }
    let done = check(&mut server, &mut reference, now).expect("EOF must end the session");
    match (reference.end, &done) {
        (Some(End::Bye), Ok(())) => {}
        (Some(End::Failed(None)), Err(Error::PeerFailed { .. })) => {}
        (Some(End::Failed(Some(code))), Err(e)) => assert_eq!(e.code(), code, "{e}"),
        (end, done) => panic!("server ended {done:?}; the reference says {end:?}"),
    }
    // Sticky: more input changes nothing.
    let _ = server.handle_input(now, b"\x11\0\0\0\x01x");
    let d = drain(&mut server);
    assert!(
        d.transmits.is_empty() && d.events.is_empty(),
        "output after the end"
    );
    assert_eq!(d.done, Some(done));
}

/// The frames the reference expects, with the free-form text of a final
/// `Error` frame taken from what was sent.
fn expected_frames(reference: &Reference, sent: &[Frame]) -> Vec<Frame> {
    let mut expected = reference.frames.clone();
    if let Some(End::Failed(Some(code))) = reference.end {
        let message = match sent.get(expected.len()) {
            Some(Frame::Error { message, .. }) => message.clone(),
            _ => Bytes::from_static(b"<missing Error frame>"),
        };
        expected.push(Frame::Error { code, message });
    }
    expected
}

/// A client that sent messages from the input, fed hostile bytes: it
/// reports only replies equal to what it sent, in order, and fails typed.
fn client_hostile(mode: u8, mut input: Input<'_>) {
    let config = small_limits();
    let mut now = start();
    let mut client = Client::new(ClientRole::new(small_echo()), config.clone(), now);
    let mut sent: Vec<Bytes> = Vec::new();
    for _ in 0..input.byte() % 8 {
        let n = usize::from(input.byte());
        let m = Bytes::copy_from_slice(input.take(n));
        client.send(m.clone()).expect("a small message is accepted");
        sent.push(m);
    }
    let close = input.byte() % 2 == 0;
    if close {
        client.close().expect("close is accepted");
    }
    // An honest start, then hostile frames.
    let mut steps = vec![Step::Bytes(Protocol::Echo.preamble().to_vec())];
    if mode & 0x40 == 0 {
        let mut honest = Frame::Greeting(Bytes::from_static(GREETING)).encode_to_vec();
        for m in sent.iter().take(usize::from(mode >> 3) % 8) {
            honest.extend_from_slice(&Frame::Message(m.clone()).encode_to_vec());
        }
        steps.push(Step::Bytes(honest));
    }
    steps.extend(script(mode | 0x80, &mut input, Protocol::Echo));
    let mut server_view = FrameDecoder::new(Protocol::Echo, usize::MAX >> 1);
    let mut out = BytesMut::new();
    let mut frames = Vec::new();
    let mut replies = Vec::new();
    let mut greeted = 0;
    let mut closed = false;
    let mut done = None;
    let mut check = |client: &mut Client| {
        let d = drain(client);
        for t in &d.transmits {
            out.extend_from_slice(t);
        }
        while let Some(f) = server_view
            .decode(&mut out)
            .expect("client output is well-formed")
        {
            frames.push(f);
        }
        for e in d.events {
            assert!(!closed, "event after Closed: {e:?}");
            match e {
                ClientEvent::Greeted(_) => greeted += 1,
                ClientEvent::Reply(r) => {
                    assert_eq!(Some(&r), sent.get(replies.len()), "reply out of order");
                    replies.push(r);
                }
                ClientEvent::Closed => {
                    assert!(close && replies.len() == sent.len(), "Closed too early");
                    closed = true;
                }
            }
        }
        assert!(greeted <= 1, "greeted twice");
        if d.done.is_some() {
            done = d.done;
        }
        assert!(client.input_room() <= small_limits().recv_buffer);
    };
    check(&mut client);
    for step in steps {
        match step {
            Step::Bytes(bytes) => {
                let mut rest = &bytes[..];
                while !rest.is_empty() {
                    let n = rest.len().min(client.input_room()).min(97);
                    let _ = client.handle_input(now, &rest[..n]);
                    rest = &rest[n..];
                    check(&mut client);
                }
            }
            Step::Overfeed => {
                let room = client.input_room();
                let _ = client.handle_input(now, &vec![0; room + 1]);
                check(&mut client);
            }
            Step::Jump(d) => {
                now += d;
                client.handle_timeout(now);
                check(&mut client);
            }
            Step::Eof => break,
        }
    }
    client.handle_eof(now);
    check(&mut client);
    let done = done.expect("EOF must end the session");
    assert_eq!(
        done.is_ok(),
        closed,
        "Ok without Closed, or Closed without Ok"
    );
    // What the client sent: its messages in order, Exit if closed, then
    // at most an Error frame.
    let mut expected: Vec<Frame> = sent.iter().cloned().map(Frame::Message).collect();
    if close {
        expected.push(Frame::Exit);
    }
    match (&done, frames.len().checked_sub(expected.len())) {
        (Ok(()) | Err(Error::PeerFailed { .. }), Some(0)) => {}
        (Err(e), Some(1)) => assert!(
            matches!(frames.last(), Some(Frame::Error { code, .. }) if *code == e.code()),
            "{frames:?}"
        ),
        _ => panic!("client sent {frames:?}"),
    }
    assert_eq!(frames[..expected.len()], expected[..], "client output");
}

/// The client's app: sends the queued messages as the window allows,
/// closes at the end, and checks every reply against what it sent.
pub(crate) struct ClientApp {
    pub(crate) queue: VecDeque<Bytes>,
    pub(crate) sent: Vec<Bytes>,
    pub(crate) replies: usize,
    greeted: bool,
    pub(crate) closed: bool,
    close_called: bool,
    /// Check the greeting's text (not on links that corrupt it: the
    /// greeting is free-form text, nothing can check it).
    pub(crate) check_greeting: bool,
}

impl ClientApp {
    pub(crate) fn new(queue: VecDeque<Bytes>) -> Self {
        ClientApp {
            queue,
            sent: Vec::new(),
            replies: 0,
            greeted: false,
            closed: false,
            close_called: false,
            check_greeting: true,
        }
    }

    pub(crate) fn pump(&mut self, m: &mut Client) {
        while let Some(msg) = self.queue.front() {
            match m.send(msg.clone()) {
                Ok(()) => self.sent.push(msg.clone()),
                Err(Error::Local(UsageError::MessageTooLarge { len, max })) => {
                    assert!(len > max, "refused {len} <= {max}");
                }
                Err(Error::Local(UsageError::WouldBlock)) => return,
                Err(_) if m.is_closed() => return,
                Err(e) => panic!("send refused on a live session: {e}"),
            }
            self.queue.pop_front();
        }
        if !self.close_called && !m.is_closed() {
            m.close().expect("close on a live session");
            self.close_called = true;
        }
    }
}

impl App<Client> for ClientApp {
    fn on_event(&mut self, m: &mut Client, _: Instant, e: ClientEvent) -> io::Result<()> {
        assert!(!self.closed, "event after Closed: {e:?}");
        match e {
            ClientEvent::Greeted(g) => {
                assert!(!self.greeted, "greeted twice");
                assert!(!self.check_greeting || g == GREETING, "greeting {g:?}");
                self.greeted = true;
            }
            ClientEvent::Reply(r) => {
                assert_eq!(Some(&r), self.sent.get(self.replies), "reply out of order");
                self.replies += 1;
            }
            ClientEvent::Closed => {
                assert!(self.queue.is_empty() && self.replies == self.sent.len());
                self.closed = true;
            }
        }
        self.pump(m);
        Ok(())
    }
}

/// A client and a server over an in-memory link that cuts the stream at
/// random, and may drop it or flip a byte.
fn pair(mut input: Input<'_>) {
    let flags = input.byte();
    let seed = u64::from(input.u32());
    let config = SessionLimits {
        send_buffer: [64, 8192][usize::from(flags >> 7)],
        ..small_limits()
    };
    let echo = crate::config::EchoConfig {
        echo_window: (usize::from(flags % 4) + 1) * 700,
        ..small_echo()
    };
    let cut = (flags & 4 != 0).then(|| u64::from(input.u16()));
    let flip = (flags & 8 != 0).then(|| u64::from(input.u16()));
    let mut queue = VecDeque::new();
    while !input.is_empty() && queue.len() < 64 {
        let n = usize::from(input.u16() % 1100);
        queue.push_back(Bytes::copy_from_slice(input.take(n)));
    }
    let now = start();
    let mut client_app = ClientApp::new(queue);
    let mut client = Client::new(ClientRole::new(echo.clone()), config.clone(), now);
    client_app.pump(&mut client);
    let server = Server::new(ServerRole::new(GREETING, echo), config, now);
    let mut echoed = Vec::new();
    let mut exited = false;
    let mut server_app = |_: &mut Server, _: Instant, e: ServerEvent| {
        assert!(!exited, "server event after ClientExited");
        match e {
            ServerEvent::Echoed(n) => echoed.push(n),
            ServerEvent::ClientExited => exited = true,
        }
        Ok::<(), io::Error>(())
    };
    let mut pair = Pair::new(client, server, now, Cutter::random(seed, 300));
    if let Some(n) = cut {
        pair = pair.cut_after(n);
    }
    if let Some(n) = flip {
        pair = pair.flip_at(n);
    }
    let outcome = pair
        .run(&mut client_app, &mut server_app, 200_000)
        .expect("echo pair stuck");
    for side in [&outcome.a, &outcome.b] {
        assert!(
            matches!(side, Ok(()) | Err(DriverError::Machine(_))),
            "untyped failure: {side:?}"
        );
    }
    if outcome.a.is_ok() {
        // Done(Ok) for the client means every message came back.
        assert!(client_app.closed && client_app.queue.is_empty());
        assert_eq!(client_app.replies, client_app.sent.len());
    }
    if cut.is_none() && flip.is_none() {
        assert!(outcome.a.is_ok(), "clean client failed: {:?}", outcome.a);
        assert!(outcome.b.is_ok(), "clean server failed: {:?}", outcome.b);
        let lens: Vec<usize> = client_app.sent.iter().map(Bytes::len).collect();
        assert_eq!(echoed, lens, "server echoed other messages");
        assert!(exited);
    }
    if let Err(DriverError::Machine(Error::Remote(ProtocolError::EchoMismatch))) = &outcome.a {
        assert!(flip.is_some(), "echo mismatch on a clean link");
    }
}
