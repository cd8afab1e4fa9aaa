//! The wormhole client ([`Wormhole`]) against the in-memory mailbox server
//! (`testing::mailbox`): two clients meet, agree on a key, exchange
//! messages and close; wrong codes, hostile and failing servers, crowded
//! nameplates; byte streams cut anywhere; hostile answers fuzzed. No
//! network, and virtual time.

use std::time::Duration;

use bytes::Bytes;
use echoxfer::testing::mailbox::{
    fuzz_server_answers, fuzz_session, ClientId, EchoingMailbox, Faults, MailboxServer, Recorded,
    Rendezvous, ServerConfig,
};
use echoxfer::wormhole::code::Code;
use echoxfer::wormhole::{WormholeConfig, WormholeEvent};
use echoxfer::{Error, StreamMachine, WormholeError};
use proptest::prelude::*;
use serde_json::{json, Value};

const ANSWER_WITHIN: Duration = Duration::from_secs(10);

fn config() -> WormholeConfig {
    WormholeConfig {
        mailbox_url: "ws://mailbox.test:4000/v1".into(),
        answer_within: ANSWER_WITHIN,
        ..WormholeConfig::default()
    }
}

fn server(faults: Faults) -> MailboxServer {
    MailboxServer::new(ServerConfig { motd: None, faults })
}

fn rendezvous(faults: Faults) -> Rendezvous {
    Rendezvous::new(server(faults), std::time::Instant::now())
}

/// A allocates and prints its code; B joins with `code` (A's, by
/// default, or what `typed` makes of it).
fn meet(rv: &mut Rendezvous, typed: impl FnOnce(Code) -> Code) -> (ClientId, ClientId) {
    let a = rv.allocate(config(), 1);
    rv.run();
    let code = rv.client(a).code().expect("A printed its code");
    let b = rv.join(config(), typed(code), 2);
    rv.run();
    (a, b)
}

fn send(rv: &mut Rendezvous, id: ClientId, message: &str) {
    rv.client_mut(id)
        .wormhole
        .send(message.as_bytes())
        .expect("the session is open");
}

fn close(rv: &mut Rendezvous, id: ClientId) {
    let now = rv.now;
    rv.client_mut(id)
        .wormhole
        .close(now)
        .expect("the session is open");
}

fn bytes(messages: &[&str]) -> Vec<Bytes> {
    messages
        .iter()
        .map(|m| Bytes::copy_from_slice(m.as_bytes()))
        .collect()
}

fn verifier(rv: &Rendezvous, id: ClientId) -> Option<[u8; 32]> {
    rv.client(id).events.iter().find_map(|e| match e {
        WormholeEvent::Keyed { verifier } => Some(*verifier),
        _ => None,
    })
}

fn failed_with(rv: &Rendezvous, id: ClientId) -> Option<WormholeError> {
    match &rv.client(id).done {
        Some(Err(Error::Wormhole(e))) => Some(e.clone()),
        _ => None,
    }
}

/// A whole happy session: messages sent before and after the key, both
/// ways, then both close. Returns A and B.
fn happy_session(rv: &mut Rendezvous) -> (ClientId, ClientId) {
    let a = rv.allocate(config(), 1);
    send(rv, a, "sent before the code was out");
    rv.run();
    let code = rv.client(a).code().expect("A printed its code");
    let b = rv.join(config(), code, 2);
    send(rv, b, "sent before B had the mailbox");
    rv.run();
    for m in ["one", "two", "three"] {
        send(rv, a, m);
    }
    send(rv, b, "uno");
    rv.run();
    send(rv, b, "dos");
    rv.run();
    close(rv, a);
    rv.run();
    close(rv, b);
    rv.run();
    (a, b)
}

#[test]
fn two_clients_meet_agree_on_one_verifier_and_both_are_verified() {
    let mut rv = rendezvous(Faults::default());
    let (a, b) = meet(&mut rv, |code| code);
    let (va, vb) = (verifier(&rv, a), verifier(&rv, b));
    assert!(va.is_some(), "A keyed: {:?}", rv.client(a).events);
    assert_eq!(va, vb);
    assert!(rv.client(a).verified() && rv.client(b).verified());
    assert!(rv.client(a).wormhole.is_verified() && rv.client(b).wormhole.is_verified());
    assert_eq!(
        rv.client(a).wormhole.derive_key("transit"),
        rv.client(b).wormhole.derive_key("transit")
    );
    assert!(rv.client(a).done.is_none() && rv.client(b).done.is_none());
}

#[test]
fn messages_arrive_both_ways_in_order_and_exactly_once() {
    let mut rv = rendezvous(Faults::default());
    let (a, b) = happy_session(&mut rv);
    assert_eq!(
        rv.client(b).messages(),
        bytes(&["sent before the code was out", "one", "two", "three"])
    );
    assert_eq!(
        rv.client(a).messages(),
        bytes(&["sent before B had the mailbox", "uno", "dos"])
    );
}

#[test]
fn messages_arrive_in_order_and_exactly_once_when_the_server_delivers_each_twice() {
    let mut rv = rendezvous(Faults {
        duplicate_messages: true,
        ..Faults::default()
    });
    let (a, b) = happy_session(&mut rv);
    let mut once = rendezvous(Faults::default());
    happy_session(&mut once);
    for id in [a, b] {
        let conn = rv.client(id).conn;
        assert_eq!(rv.server.delivered(conn), 2 * once.server.delivered(conn));
    }
    assert_eq!(
        rv.client(b).messages(),
        bytes(&["sent before the code was out", "one", "two", "three"])
    );
    assert_eq!(
        rv.client(a).messages(),
        bytes(&["sent before B had the mailbox", "uno", "dos"])
    );
    for id in [a, b] {
        let keyed = rv
            .client(id)
            .events
            .iter()
            .filter(|e| matches!(e, WormholeEvent::Keyed { .. }));
        assert_eq!(keyed.count(), 1);
        assert_eq!(rv.client(id).done, Some(Ok(())));
    }
}

#[test]
fn closing_releases_the_nameplate_and_closes_the_mailbox_with_mood_happy() {
    let mut rv = rendezvous(Faults::default());
    let (a, b) = happy_session(&mut rv);
    assert_eq!(rv.client(a).done, Some(Ok(())));
    assert_eq!(rv.client(b).done, Some(Ok(())));
    assert_eq!(rv.server.nameplates(), Vec::<String>::new());
    let sides = [a, b].map(|id| rv.client(id).wormhole.side().to_owned());
    let mut moods = rv.server.moods();
    moods.sort();
    let mut expected: Vec<_> = sides
        .iter()
        .map(|s| (s.clone(), Some("happy".to_owned())))
        .collect();
    expected.sort();
    assert_eq!(moods, expected);
    for side in &sides {
        let released = rv.server.log().iter().filter(
            |r| matches!(r, Recorded::Released { side: s, nameplate } if s == side && nameplate == "1"),
        );
        assert_eq!(released.count(), 1, "{side} released nameplate 1 once");
    }
    // Neither side was told off by the server.
    for id in [a, b] {
        assert_eq!(rv.server.errors(rv.client(id).conn), Vec::<String>::new());
    }
}

#[test]
fn the_nameplate_is_released_as_soon_as_both_sides_have_the_mailbox() {
    let mut rv = rendezvous(Faults::default());
    let (a, b) = meet(&mut rv, |code| code);
    assert!(rv.client(a).verified() && rv.client(b).verified());
    assert_eq!(rv.server.nameplates(), Vec::<String>::new());
    // ... so the next allocation gets the same short nameplate.
    let c = rv.allocate(config(), 3);
    rv.run();
    assert_eq!(
        rv.client(c).code().map(|c| c.nameplate().to_owned()),
        Some("1".into())
    );
}

#[test]
fn a_wrong_code_fails_both_sides_before_any_message_and_the_server_sees_scary() {
    let mut rv = rendezvous(Faults::default());
    let a = rv.allocate(config(), 1);
    send(&mut rv, a, "secret for the right peer only");
    rv.run();
    let code = rv.client(a).code().expect("A printed its code");
    let wrong = Code::parse(&format!("{}-not-these-words", code.nameplate())).unwrap();
    assert_ne!(wrong, code);
    let b = rv.join(config(), wrong, 2);
    send(&mut rv, b, "secret for the right peer only");
    rv.run();
    for id in [a, b] {
        assert_eq!(
            failed_with(&rv, id),
            Some(WormholeError::WrongCode),
            "{:?}",
            rv.client(id).done
        );
        assert!(rv.client(id).messages().is_empty());
        assert!(!rv.client(id).verified());
    }
    let moods = rv.server.moods();
    assert_eq!(moods.len(), 2, "{moods:?}");
    assert!(
        moods.iter().all(|(_, m)| m.as_deref() == Some("scary")),
        "{moods:?}"
    );
    assert_eq!(rv.server.nameplates(), Vec::<String>::new());
}

#[test]
fn a_server_that_sends_garbage_fails_the_client_with_bad_server() {
    // Garbage from the first message on, and from later ones (after the
    // welcome and its acks, mid-claim, once the mailbox is open).
    for after in [0, 1, 3, 5, 8] {
        let mut rv = rendezvous(Faults {
            garbage_after: Some(after),
            ..Faults::default()
        });
        let a = rv.allocate(config(), 1);
        // At once: a server that sent garbage is owed no goodbye, and
        // answers it still owes are not waited for.
        rv.run();
        assert!(
            matches!(failed_with(&rv, a), Some(WormholeError::BadServer(_))),
            "garbage after {after}: {:?}",
            rv.client(a).done
        );
    }
}

#[test]
fn a_server_that_stalls_fails_the_client_with_server_timeout_after_answer_within() {
    // Silent from the start (no welcome), and after the welcome and the
    // bind's ack (the allocation is never answered).
    for after in [0, 2] {
        let mut rv = rendezvous(Faults {
            stall_after: Some(after),
            ..Faults::default()
        });
        let a = rv.allocate(config(), 1);
        rv.advance(ANSWER_WITHIN - Duration::from_millis(1));
        assert_eq!(rv.client(a).done, None, "stalled after {after}: too early");
        rv.advance(Duration::from_millis(1));
        assert_eq!(
            failed_with(&rv, a),
            Some(WormholeError::ServerTimeout(ANSWER_WITHIN)),
            "stalled after {after}"
        );
    }
}

#[test]
fn waiting_for_the_other_side_has_no_time_limit() {
    let mut rv = rendezvous(Faults::default());
    let a = rv.allocate(config(), 1);
    rv.advance(Duration::from_secs(3 * 3600));
    assert_eq!(rv.client(a).done, None);
    let code = rv.client(a).code().expect("A printed its code");
    let b = rv.join(config(), code, 2);
    rv.run();
    assert!(rv.client(a).verified() && rv.client(b).verified());
}

#[test]
fn a_welcome_error_fails_the_client_as_refused_with_the_servers_text() {
    let mut rv = rendezvous(Faults {
        welcome_error: Some("closed for maintenance".into()),
        ..Faults::default()
    });
    let a = rv.allocate(config(), 1);
    rv.advance(ANSWER_WITHIN * 2);
    assert_eq!(
        failed_with(&rv, a),
        Some(WormholeError::Refused("closed for maintenance".into()))
    );
}

#[test]
fn a_permission_required_without_none_fails_the_client_with_permission_required() {
    let mut rv = rendezvous(Faults {
        permission_required: Some(json!({ "hashcash": { "bits": 6, "resource": "r" } })),
        ..Faults::default()
    });
    let a = rv.allocate(config(), 1);
    rv.advance(ANSWER_WITHIN * 2);
    assert_eq!(
        failed_with(&rv, a),
        Some(WormholeError::PermissionRequired("hashcash".into()))
    );
}

#[test]
fn a_permission_required_that_offers_none_lets_the_clients_meet() {
    let mut rv = rendezvous(Faults {
        permission_required: Some(
            json!({ "none": {}, "hashcash": { "bits": 6, "resource": "r" } }),
        ),
        ..Faults::default()
    });
    let (a, b) = meet(&mut rv, |code| code);
    assert!(rv.client(a).verified() && rv.client(b).verified());
}

#[test]
fn the_servers_motd_is_told_once_before_the_code() {
    let mut rv = Rendezvous::new(
        MailboxServer::new(ServerConfig {
            motd: Some("donate\u{1b}[31m!".into()),
            faults: Faults::default(),
        }),
        std::time::Instant::now(),
    );
    let a = rv.allocate(config(), 1);
    rv.run();
    let events = &rv.client(a).events;
    assert!(
        matches!(&events[0], WormholeEvent::Motd(m) if m.starts_with("donate") && !m.contains('\u{1b}')),
        "{events:?}"
    );
    assert!(matches!(events[1], WormholeEvent::Code(_)), "{events:?}");
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, WormholeEvent::Motd(_)))
            .count(),
        1
    );
}

#[test]
fn the_server_closing_the_websocket_mid_session_fails_the_client_with_server_closed() {
    let mut rv = rendezvous(Faults::default());
    let (a, b) = meet(&mut rv, |code| code);
    let conn = rv.client(a).conn;
    rv.server.close(conn);
    rv.run();
    assert!(
        matches!(failed_with(&rv, a), Some(WormholeError::ServerClosed(_))),
        "{:?}",
        rv.client(a).done
    );
    assert_eq!(rv.client(b).done, None);
}

#[test]
fn a_third_side_claiming_the_nameplate_is_refused_as_crowded() {
    let mut rv = rendezvous(Faults::default());
    let a = rv.allocate(config(), 1);
    rv.run();
    let code = rv.client(a).code().expect("A printed its code");
    // B claims the nameplate but its messages have not reached A yet, so
    // A still holds the nameplate: C is the third side.
    let b = rv.join(config(), code.clone(), 2);
    let c = rv.join(config(), code, 3);
    // C ends at once: the refusal answers its claim.
    rv.run();
    assert!(
        matches!(failed_with(&rv, c), Some(WormholeError::Refused(ref e)) if e == "crowded"),
        "{:?}",
        rv.client(c).done
    );
    let c_side = rv.client(c).wormhole.side().to_owned();
    assert!(rv
        .server
        .log()
        .iter()
        .any(|r| matches!(r, Recorded::Crowded { side } if *side == c_side)));
    assert!(rv.client(a).verified() && rv.client(b).verified());
    assert_eq!(verifier(&rv, a), verifier(&rv, b));
}

#[test]
fn closing_before_the_peer_arrives_releases_the_nameplate_with_mood_lonely() {
    let mut rv = rendezvous(Faults::default());
    let a = rv.allocate(config(), 1);
    rv.run();
    close(&mut rv, a);
    rv.run();
    assert_eq!(rv.client(a).done, Some(Ok(())));
    assert_eq!(rv.server.nameplates(), Vec::<String>::new());
    let side = rv.client(a).wormhole.side().to_owned();
    assert_eq!(rv.server.moods(), vec![(side, Some("lonely".to_owned()))]);
}

#[test]
fn a_waiting_client_pings_the_server_every_keep_alive() {
    let mut rv = rendezvous(Faults::default());
    let every = config().keep_alive.expect("keep-alives by default");
    let a = rv.allocate(config(), 1);
    rv.run();
    assert_eq!(rv.server.pings(rv.client(a).conn), 0);
    rv.advance(every * 10);
    assert_eq!(rv.server.pings(rv.client(a).conn), 10);
    assert_eq!(rv.client(a).done, None);
}

#[test]
fn a_server_that_stops_answering_the_close_does_not_change_how_the_session_went() {
    let mut rv = rendezvous(Faults::default());
    let (a, b) = meet(&mut rv, |code| code);
    rv.server.set_faults(Faults {
        stall_after: Some(0),
        ..Faults::default()
    });
    close(&mut rv, a);
    rv.run();
    assert_eq!(rv.client(a).done, None, "A waits for the answers");
    rv.advance(ANSWER_WITHIN);
    assert_eq!(rv.client(a).done, Some(Ok(())));
    assert_eq!(rv.client(b).done, None);
}

#[test]
fn aborting_releases_the_nameplate_and_closes_the_mailbox_with_mood_errory() {
    let mut rv = rendezvous(Faults::default());
    let a = rv.allocate(config(), 1);
    rv.run();
    rv.client_mut(a).wormhole.abort("the disk is full".into());
    rv.run();
    assert_eq!(
        rv.client(a).done,
        Some(Err(Error::Aborted("the disk is full".into())))
    );
    assert_eq!(rv.server.nameplates(), Vec::<String>::new());
    let side = rv.client(a).wormhole.side().to_owned();
    assert_eq!(rv.server.moods(), vec![(side, Some("errory".to_owned()))]);
}

/// What the `wormhole_mailbox` fuzz target's seed (in `fuzz/corpus/`) plays.
const FUZZ_SEED: &[u8] = &[
    0, // A allocates
    0, 0, // run
    7, 0, // the peer joins with A's code
    0, 0, // run
    6, 1, // A sends [1; 5]
    0, 0, // run
    6, 0, // A closes
    0, 0, // run
];

#[test]
fn the_fuzz_seed_plays_a_whole_session_and_is_committed() {
    let rv = fuzz_session(FUZZ_SEED);
    let (a, peer) = (ClientId(0), ClientId(1));
    assert!(rv.client(a).verified() && rv.client(peer).verified());
    assert_eq!(
        rv.client(peer).messages(),
        vec![Bytes::from_static(&[1; 5])]
    );
    assert_eq!(rv.client(a).done, Some(Ok(())));
    fuzz_server_answers(FUZZ_SEED);
    let committed = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus/wormhole_mailbox/seed-session");
    assert_eq!(std::fs::read(committed).ok().as_deref(), Some(FUZZ_SEED));
}

#[test]
fn the_server_hanging_up_before_the_upgrade_fails_the_client_with_server_closed() {
    let mut rv = rendezvous(Faults::default());
    let a = rv.allocate(config(), 1);
    rv.hang_up(a);
    rv.run();
    assert!(
        matches!(failed_with(&rv, a), Some(WormholeError::ServerClosed(_))),
        "{:?}",
        rv.client(a).done
    );
}

/// A raw WebSocket client's end of an in-memory connection.
#[derive(Default)]
struct Pipe {
    input: Vec<u8>,
    output: Vec<u8>,
}

impl std::io::Read for Pipe {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.input.is_empty() {
            return Err(std::io::ErrorKind::WouldBlock.into());
        }
        let n = self.input.len().min(buf.len());
        buf[..n].copy_from_slice(&self.input[..n]);
        self.input.drain(..n);
        Ok(n)
    }
}

impl std::io::Write for Pipe {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.output.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A raw WebSocket client on the in-memory server, to check the server
/// protocol itself.
struct Raw {
    conn: echoxfer::testing::mailbox::ConnId,
    ws: tungstenite::WebSocket<Pipe>,
}

impl Raw {
    fn connect(server: &mut MailboxServer) -> (Raw, Vec<Value>) {
        use tungstenite::handshake::HandshakeError;
        let conn = server.connect();
        let Err(HandshakeError::Interrupted(mut mid)) =
            tungstenite::client::client("ws://mailbox.test:4000/v1", Pipe::default())
        else {
            panic!("the upgrade waits for the server");
        };
        let request = std::mem::take(&mut mid.get_mut().get_mut().output);
        server.feed(conn, &request);
        let answer = server
            .take_output(conn)
            .expect("the server answers the upgrade");
        mid.get_mut().get_mut().input.extend_from_slice(&answer);
        let Ok((ws, _)) = mid.handshake() else {
            panic!("the upgrade completes")
        };
        let mut raw = Raw { conn, ws };
        let first = raw.answers(server);
        (raw, first)
    }

    /// Sends `payload` as one text message; the server's answers.
    fn send(&mut self, server: &mut MailboxServer, payload: &str) -> Vec<Value> {
        self.ws
            .send(tungstenite::Message::text(payload))
            .expect("the pipe takes it");
        let bytes = std::mem::take(&mut self.ws.get_mut().output);
        server.feed(self.conn, &bytes);
        self.answers(server)
    }

    fn answers(&mut self, server: &mut MailboxServer) -> Vec<Value> {
        if let Some(bytes) = server.take_output(self.conn) {
            self.ws.get_mut().input.extend_from_slice(&bytes);
        }
        let mut answers = Vec::new();
        while let Ok(message) = self.ws.read() {
            let value: Value = serde_json::from_slice(&message.into_data()).expect("JSON");
            assert!(value["server_tx"].is_f64(), "{value}");
            answers.push(value);
        }
        answers
    }
}

fn types(answers: &[Value]) -> Vec<&str> {
    answers
        .iter()
        .map(|a| a["type"].as_str().unwrap_or("?"))
        .collect()
}

#[test]
fn the_server_welcomes_acks_every_command_and_answers_as_the_protocol_says() {
    let mut server = MailboxServer::new(ServerConfig {
        motd: Some("hi".into()),
        faults: Faults::default(),
    });
    let (mut raw, welcome) = Raw::connect(&mut server);
    assert_eq!(types(&welcome), ["welcome"]);
    assert_eq!(welcome[0]["welcome"]["motd"], "hi");
    let answers = raw.send(&mut server, r#"{"type": "allocate", "id": "0"}"#);
    assert_eq!(types(&answers), ["ack", "error"]);
    assert_eq!(answers[1]["error"], "must bind first");
    assert_eq!(answers[1]["orig"], json!({"type": "allocate", "id": "0"}));
    let answers = raw.send(
        &mut server,
        r#"{"type": "bind", "appid": "app", "side": "s1", "id": "1"}"#,
    );
    assert_eq!(types(&answers), ["ack"]);
    assert_eq!(answers[0]["id"], "1");
    let answers = raw.send(&mut server, r#"{"type": "nonsense", "id": "2"}"#);
    assert_eq!(types(&answers), ["ack", "error"]);
    assert_eq!(answers[1]["error"], "unknown type");
    assert_eq!(answers[1]["orig"], json!({"type": "nonsense", "id": "2"}));
    let answers = raw.send(&mut server, r#"{"type": "ping", "ping": 7}"#);
    assert_eq!(types(&answers), ["ack", "pong"]);
    assert_eq!(answers[1]["pong"], 7);
    let answers = raw.send(&mut server, r#"{"type": "allocate"}"#);
    assert_eq!(types(&answers), ["ack", "allocated"]);
    assert_eq!(answers[1]["nameplate"], "1");
    let answers = raw.send(&mut server, r#"{"type": "list"}"#);
    assert_eq!(answers[1]["nameplates"], json!([{"id": "1"}]));
    let answers = raw.send(&mut server, r#"{"type": "add", "phase": "x", "body": ""}"#);
    assert_eq!(answers[1]["error"], "must open mailbox before adding");
    let answers = raw.send(&mut server, r#"{"type": "claim", "nameplate": "1"}"#);
    assert_eq!(types(&answers), ["ack", "claimed"]);
    let mailbox = answers[1]["mailbox"]
        .as_str()
        .expect("a mailbox")
        .to_owned();
    let open = json!({"type": "open", "mailbox": mailbox}).to_string();
    assert_eq!(types(&raw.send(&mut server, &open)), ["ack"]);
    let add = r#"{"type": "add", "phase": "pake", "body": "abcd", "id": "5"}"#;
    let answers = raw.send(&mut server, add);
    assert_eq!(types(&answers), ["ack", "message"]);
    assert_eq!(
        (
            &answers[1]["side"],
            &answers[1]["phase"],
            &answers[1]["body"],
            &answers[1]["id"]
        ),
        (&json!("s1"), &json!("pake"), &json!("abcd"), &json!("5"))
    );
    let answers = raw.send(&mut server, r#"{"type": "release"}"#);
    assert_eq!(types(&answers), ["ack", "released"]);
    assert_eq!(server.nameplates(), Vec::<String>::new());
    let answers = raw.send(&mut server, r#"{"type": "close", "mood": "happy"}"#);
    assert_eq!(types(&answers), ["ack", "closed"]);
    assert_eq!(
        server.moods(),
        [("s1".to_owned(), Some("happy".to_owned()))]
    );
    let answers = raw.send(&mut server, r#"{"no": "type"}"#);
    assert_eq!(types(&answers), ["error"]);
    assert_eq!(answers[0]["orig"], json!({"no": "type"}));
    let answers = raw.send(&mut server, "not JSON");
    assert_eq!(types(&answers), ["error"]);
    assert_eq!(answers[0]["orig"], "not JSON");
}

#[test]
fn the_server_delivers_stored_messages_on_open_then_live_ones_to_every_side() {
    let mut server = MailboxServer::new(ServerConfig::default());
    let (mut one, _) = Raw::connect(&mut server);
    let (mut two, _) = Raw::connect(&mut server);
    one.send(
        &mut server,
        r#"{"type": "bind", "appid": "app", "side": "s1"}"#,
    );
    two.send(
        &mut server,
        r#"{"type": "bind", "appid": "app", "side": "s2"}"#,
    );
    let claimed = one.send(&mut server, r#"{"type": "claim", "nameplate": "4"}"#);
    let open = json!({"type": "open", "mailbox": claimed[1]["mailbox"]}).to_string();
    one.send(&mut server, &open);
    one.send(
        &mut server,
        r#"{"type": "add", "phase": "pake", "body": "01"}"#,
    );
    let claimed_too = two.send(&mut server, r#"{"type": "claim", "nameplate": "4"}"#);
    assert_eq!(claimed_too[1]["mailbox"], claimed[1]["mailbox"]);
    let stored = two.send(&mut server, &open);
    assert_eq!(types(&stored), ["ack", "message"]);
    assert_eq!(
        (&stored[1]["side"], &stored[1]["body"]),
        (&json!("s1"), &json!("01"))
    );
    let live = two.send(
        &mut server,
        r#"{"type": "add", "phase": "pake", "body": "02"}"#,
    );
    assert_eq!(types(&live), ["ack", "message"]);
    let heard = one.answers(&mut server);
    assert_eq!(types(&heard), ["message"]);
    assert_eq!(
        (&heard[0]["side"], &heard[0]["body"]),
        (&json!("s2"), &json!("02"))
    );
}

/// In the simulator (latency, fragmentation, and on odd seeds stalls,
/// corruption and cuts), against the server with an echoing peer inside:
/// a clean link always gets the echo and ends both sides well (both
/// moods happy, the nameplate released); no link ever leaves the pair
/// stuck, and a client that ended well heard its echo.
#[test]
fn a_wormhole_in_the_simulator_gets_its_echo_on_clean_links_and_never_hangs() {
    use echoxfer::testing::sim::Sim;
    use echoxfer::wormhole::Wormhole;
    let code = Code::parse("4-purple-sausages").unwrap();
    for seed in 0..64u64 {
        let mut sim = Sim::new(seed, std::time::Instant::now());
        let imp = sim.random_impairments(seed % 2 == 1);
        let clean = imp.corrupt_chance == 0.0 && imp.cut_chance == 0.0 && imp.stall_chance == 0.0;
        let mut a = Wormhole::join(config(), code.clone(), sim.now, [seed as u8; 32]).unwrap();
        let mut server = EchoingMailbox::new(config(), code.clone(), sim.now);
        let mut heard = Vec::new();
        let mut app = |w: &mut Wormhole, now, event| -> std::io::Result<()> {
            match event {
                WormholeEvent::Verified { .. } => {
                    w.send(b"hello, simulator").map_err(std::io::Error::other)
                }
                WormholeEvent::Message(m) => {
                    heard.push(m);
                    w.close(now).map_err(std::io::Error::other)
                }
                _ => Ok(()),
            }
        };
        let mut ignore = echoxfer::driver::Ignore;
        let (outcome, _) = sim
            .connect(
                (&mut a, &mut app),
                (&mut server, &mut ignore),
                &imp,
                1_000_000,
            )
            .unwrap_or_else(|stuck| panic!("seed {seed}: {stuck} on {imp:?}"));
        if outcome.a.is_ok() {
            assert_eq!(heard, bytes(&["hello, simulator"]), "seed {seed}");
        }
        if clean {
            assert!(
                outcome.a.is_ok() && outcome.b.is_ok(),
                "seed {seed}: {outcome:?}"
            );
            assert_eq!(server.peer().messages(), bytes(&["hello, simulator"]));
            let moods = server.server().moods();
            assert_eq!(moods.len(), 2, "seed {seed}: {moods:?}");
            assert!(
                moods.iter().all(|(_, m)| m.as_deref() == Some("happy")),
                "seed {seed}: {moods:?}"
            );
            assert_eq!(server.server().nameplates(), Vec::<String>::new());
        }
    }
}

/// Everything the clients of a happy session told, and how they ended.
type Told = Vec<(Vec<WormholeEvent>, Option<Result<(), Error>>)>;

fn told(cut: Option<u64>) -> (Told, Vec<(String, Option<String>)>) {
    let mut rv = rendezvous(Faults::default());
    if let Some(seed) = cut {
        rv.cut_streams(seed);
    }
    let (a, b) = happy_session(&mut rv);
    let told = [a, b]
        .map(|id| (rv.client(id).events.clone(), rv.client(id).done.clone()))
        .to_vec();
    let mut moods = rv.server.moods();
    moods.sort();
    (told, moods)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Cut anywhere, every byte stream (both ways, every client) gives the
    /// same events, results and moods as whole hand-overs.
    #[test]
    fn events_do_not_depend_on_how_bytes_are_cut(seed in any::<u64>()) {
        let whole = told(None);
        prop_assert_eq!(whole.0[0].1.clone(), Some(Ok(())));
        prop_assert_eq!(told(Some(seed)), whole);
    }

    /// Whatever both sides send, whenever (before the key, between
    /// hand-overs), with streams cut anywhere and deliveries doubled or
    /// not: each side receives exactly what the other sent, in order, once.
    #[test]
    fn messages_arrive_in_order_exactly_once_whatever_the_sends_cuts_and_duplicates(
        seed in any::<u64>(),
        duplicate in any::<bool>(),
        sends in proptest::collection::vec((any::<bool>(), 0..300usize, any::<bool>()), 0..24),
    ) {
        let mut rv = rendezvous(Faults { duplicate_messages: duplicate, ..Faults::default() });
        rv.cut_streams(seed);
        // B joins and sends may start before either side has the key.
        let a = rv.allocate(config(), 1);
        rv.run();
        let code = rv.client(a).code().expect("A printed its code");
        let b = rv.join(config(), code, 2);
        let mut sent = (Vec::new(), Vec::new());
        for (i, (from_a, len, pump)) in sends.into_iter().enumerate() {
            let message = Bytes::from(vec![i as u8; len]);
            let (from, log) = match from_a { true => (a, &mut sent.0), false => (b, &mut sent.1) };
            rv.client_mut(from).wormhole.send(&message).expect("open");
            log.push(message);
            if pump {
                rv.run();
            }
        }
        rv.run();
        prop_assert_eq!(rv.client(b).messages(), sent.0);
        prop_assert_eq!(rv.client(a).messages(), sent.1);
    }

    /// Cut anywhere, a wrong code still fails both sides as WrongCode,
    /// with no message delivered and both moods scary.
    #[test]
    fn a_wrong_code_fails_both_sides_however_bytes_are_cut(seed in any::<u64>()) {
        let mut rv = rendezvous(Faults::default());
        rv.cut_streams(seed);
        let (a, b) = meet(&mut rv, |code| {
            Code::parse(&format!("{}-not-these-words", code.nameplate())).unwrap()
        });
        for id in [a, b] {
            prop_assert_eq!(failed_with(&rv, id), Some(WormholeError::WrongCode));
            prop_assert!(rv.client(id).messages().is_empty());
        }
        let moods = rv.server.moods();
        prop_assert_eq!(moods.len(), 2);
        prop_assert!(moods.iter().all(|(_, m)| m.as_deref() == Some("scary")));
        prop_assert_eq!(rv.server.nameplates(), Vec::<String>::new());
    }
}

/// Hostile server answers never make the client panic or break the
/// machine contract (see `fuzz_server_answers`).
#[test]
fn fuzz_server_answers_never_panic_or_break_the_contract() {
    bolero::check!()
        .with_test_time(Duration::from_secs(3))
        .for_each(fuzz_server_answers);
}

#[test]
fn the_server_hanging_up_mid_session_fails_the_client_with_server_closed() {
    let mut rv = rendezvous(Faults::default());
    let (a, b) = meet(&mut rv, |code| code);
    assert!(rv.client(a).verified() && rv.client(b).verified());
    rv.hang_up(a);
    rv.run();
    assert!(
        matches!(failed_with(&rv, a), Some(WormholeError::ServerClosed(_))),
        "{:?}",
        rv.client(a).done
    );
}

#[test]
fn closing_while_the_allocation_is_on_its_way_releases_the_nameplate() {
    let mut rv = rendezvous(Faults::default());
    let a = rv.allocate(config(), 1);
    close(&mut rv, a);
    rv.run();
    assert_eq!(rv.client(a).done, Some(Ok(())));
    assert_eq!(
        rv.client(a).code(),
        None,
        "no code shown for a session closed first"
    );
    assert_eq!(
        rv.server.nameplates(),
        Vec::<String>::new(),
        "the allocated nameplate is freed"
    );
}
