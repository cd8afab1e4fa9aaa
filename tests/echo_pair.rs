//! Echo over the in-memory pair: the specification of the echo machines.

use std::time::{Duration, Instant};

use bytes::Bytes;
use echoxfer::driver::{DriverError, Ignore};
use echoxfer::echo::{Client, ClientEvent, ClientRole, Server, ServerEvent, ServerRole};
use echoxfer::error::CodecError;
use echoxfer::testing::{Cutter, Pair};
use echoxfer::{EchoConfig, Error, ProtocolError, SessionLimits};
use proptest::prelude::*;

mod common;

fn config() -> SessionLimits {
    SessionLimits::default()
}

fn echo() -> EchoConfig {
    EchoConfig {
        max_message: 2048,
        ..EchoConfig::default()
    }
}

/// Sends every message, then `close`, and records what comes back.
#[derive(Default)]
struct Recorder {
    greeting: Option<Bytes>,
    replies: Vec<Bytes>,
    closed: bool,
}

impl echoxfer::driver::App<Client> for Recorder {
    fn on_event(&mut self, _: &mut Client, _: Instant, e: ClientEvent) -> std::io::Result<()> {
        match e {
            ClientEvent::Greeted(g) => self.greeting = Some(g),
            ClientEvent::Reply(r) => self.replies.push(r),
            ClientEvent::Closed => self.closed = true,
        }
        Ok(())
    }
}

fn run_echo(messages: &[Vec<u8>], cutter: Cutter) -> (Recorder, Vec<ServerEvent>) {
    let now = Instant::now();
    let mut client = Client::new(ClientRole::new(echo()), config(), now);
    for m in messages {
        client.send(m.clone()).expect("window has room");
    }
    client.close().unwrap();
    let server = Server::new(ServerRole::new("hi", echo()), config(), now);
    let mut pair = Pair::new(client, server, now, cutter);
    let mut rec = Recorder::default();
    let mut server_events = Vec::new();
    let mut on_server = |_: &mut Server, _: Instant, e: ServerEvent| {
        server_events.push(e);
        Ok(())
    };
    let outcome = pair
        .run(&mut rec, &mut on_server, 1_000_000)
        .expect("not stuck");
    assert!(outcome.a.is_ok(), "client: {:?}", outcome.a);
    assert!(outcome.b.is_ok(), "server: {:?}", outcome.b);
    (rec, server_events)
}

fn message() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"exit".to_vec()),
        Just(b"exit\n".to_vec()),
        Just(Vec::new()),
        Just(vec![0xAB; 2048]),
        proptest::collection::vec(any::<u8>(), 0..300),
    ]
}

proptest! {
    #![proptest_config(common::persisted("proptest-regressions/echo_pair.txt"))]

    #[test]
    fn client_receives_exactly_what_it_sent_in_order_however_the_stream_is_cut(
        messages in proptest::collection::vec(message(), 0..20),
        seed in any::<u64>(),
        max_piece in 1usize..4096,
    ) {
        let (rec, server_events) = run_echo(&messages, Cutter::random(seed, max_piece));
        let sent: Vec<Bytes> = messages.iter().cloned().map(Bytes::from).collect();
        prop_assert_eq!(rec.replies, sent);
        prop_assert_eq!(rec.greeting, Some(Bytes::from_static(b"hi")));
        prop_assert!(rec.closed);
        prop_assert_eq!(server_events.last(), Some(&ServerEvent::ClientExited));
    }

    #[test]
    fn nothing_sent_after_exit_is_processed(
        before in proptest::collection::vec(message(), 0..5),
        after in proptest::collection::vec(message(), 1..5),
        seed in any::<u64>(),
    ) {
        // Hand-build the client's byte stream: messages, Exit, more messages.
        let now = Instant::now();
        let mut wire = echoxfer::codec::Protocol::Echo.preamble().to_vec();
        for m in &before {
            wire.extend(echoxfer::codec::Frame::Message(Bytes::from(m.clone())).encode_to_vec());
        }
        wire.extend(echoxfer::codec::Frame::Exit.encode_to_vec());
        for m in &after {
            wire.extend(echoxfer::codec::Frame::Message(Bytes::from(m.clone())).encode_to_vec());
        }
        let mut server = Server::new(ServerRole::new("hi", echo()), config(), now);
        let mut echoed = 0;
        let mut fed = 0;
        use echoxfer::{Machine, Output, StreamMachine};
        while fed < wire.len() {
            let n = (wire.len() - fed).min(1 + (seed as usize + fed) % 97);
            server.handle_input(now, &wire[fed..fed + n]).unwrap();
            fed += n;
            while let Output::Event(_) | Output::Transmit(_) = {
                let o = server.poll_output();
                if let Output::Event(ServerEvent::Echoed(_)) = o { echoed += 1; }
                o
            } {}
        }
        prop_assert_eq!(echoed, before.len());
        prop_assert_eq!(server.poll_output(), Output::Done(Ok(())));
    }
}

#[test]
fn oversized_message_is_a_typed_remote_error_for_the_server() {
    use echoxfer::{Machine, Output, StreamMachine};
    let now = Instant::now();
    let mut server = Server::new(ServerRole::new("hi", echo()), config(), now);
    let mut wire = echoxfer::codec::Protocol::Echo.preamble().to_vec();
    wire.extend(echoxfer::codec::Frame::Message(Bytes::from(vec![1u8; 4096])).encode_to_vec());
    let err = server.handle_input(now, &wire).unwrap_err();
    // Refused at its header, before its payload is buffered.
    assert!(matches!(
        err,
        Error::Remote(ProtocolError::Codec(CodecError::PayloadTooLarge {
            frame: "Message",
            len: 4096,
            max: 2048
        }))
    ));
    // Sticky: the same error again; the server lingers for the client's
    // EOF (so its Error frame is read), then the drain ends in it.
    assert_eq!(server.handle_input(now, b"x").unwrap_err(), err);
    let mut last = None;
    for _ in 0..10 {
        match server.poll_output() {
            Output::Wait(Some(_)) if last.is_none() => {
                server.handle_eof(now);
                last = Some(Ok(()));
            }
            Output::Done(r) => {
                last = Some(r);
                break;
            }
            _ => continue,
        }
    }
    assert_eq!(last, Some(Err(err)));
}

#[test]
fn stalled_client_is_dropped_by_the_idle_timer_in_virtual_time() {
    let now = Instant::now();
    let cfg = SessionLimits {
        idle_timeout: Duration::from_secs(5),
        ..config()
    };
    // A client that never closes: the server must time out by itself.
    let client = Client::new(ClientRole::new(echo()), cfg.clone(), now);
    let server = Server::new(ServerRole::new("hi", echo()), cfg, now);
    let mut pair = Pair::new(client, server, now, Cutter::whole());
    let outcome = pair
        .run(&mut Ignore, &mut Ignore, 10_000)
        .expect("timers fire");
    assert!(
        matches!(outcome.b, Err(DriverError::Machine(Error::TimedOut(_)))),
        "{:?}",
        outcome.b
    );
    assert!(pair.now() >= now + Duration::from_secs(5));
}

#[test]
fn a_client_that_never_reads_replies_meets_back_pressure_not_growth() {
    use echoxfer::StreamMachine;
    let now = Instant::now();
    let cfg = config();
    let mut server = Server::new(ServerRole::new("hi", echo()), cfg.clone(), now);
    let mut wire = echoxfer::codec::Protocol::Echo.preamble().to_vec();
    let frame = echoxfer::codec::Frame::Message(Bytes::from(vec![7u8; 2000])).encode_to_vec();
    let mut fed = 0usize;
    // Feed without ever draining output, as a peer that never reads would.
    while server.input_room() > 0 {
        while wire.len() < 64 * 1024 {
            wire.extend_from_slice(&frame);
        }
        let n = server.input_room().min(wire.len());
        server.handle_input(now, &wire[..n]).unwrap();
        wire.drain(..n);
        fed += n;
        assert!(
            fed <= cfg.send_buffer + cfg.recv_buffer + 2 * frame.len(),
            "grew to {fed}"
        );
    }
    assert!(fed >= cfg.send_buffer, "stopped early at {fed}");
}

#[test]
fn cut_connection_before_bye_is_an_error_for_the_client() {
    let now = Instant::now();
    let mut client = Client::new(ClientRole::new(echo()), config(), now);
    client.send(&b"hello"[..]).unwrap();
    client.close().unwrap();
    let server = Server::new(ServerRole::new("hi", echo()), config(), now);
    let mut pair = Pair::new(client, server, now, Cutter::random(1, 3)).cut_after(8);
    let outcome = pair.run(&mut Ignore, &mut Ignore, 10_000).expect("ends");
    assert!(
        matches!(
            outcome.a,
            Err(DriverError::Machine(Error::Remote(
                ProtocolError::UnexpectedEof { .. }
            )))
        ),
        "{:?}",
        outcome.a
    );
}
