//! A wormhole session goes on over a new connection after the old one to
//! the mailbox server was lost ([`Wormhole::resume`], the server
//! protocol's reconnection rules), against the in-memory mailbox server
//! (`testing::mailbox`): whatever was lost with the connection (a claim,
//! an added message) is asked or added again, what arrives again is
//! handled once, and a session that failed for another reason, or was
//! never welcomed, is not resumed. No network, and virtual time.

use std::time::Duration;

use bytes::Bytes;
use echoxfer::testing::mailbox::{ClientId, Faults, MailboxServer, Rendezvous, ServerConfig};
use echoxfer::wormhole::code::Code;
use echoxfer::wormhole::{Wormhole, WormholeConfig, WormholeEvent};
use echoxfer::{Error, UsageError, WormholeError};
use proptest::prelude::*;

fn config() -> WormholeConfig {
    WormholeConfig {
        mailbox_url: "ws://mailbox.test:4000/v1".into(),
        answer_within: Duration::from_secs(10),
        ..WormholeConfig::default()
    }
}

fn rendezvous() -> Rendezvous {
    let server = MailboxServer::new(ServerConfig {
        motd: Some("welcome, once".into()),
        faults: Faults::default(),
    });
    Rendezvous::new(server, std::time::Instant::now())
}

fn send(rv: &mut Rendezvous, id: ClientId, message: &str) {
    rv.client_mut(id)
        .wormhole
        .send(message.as_bytes())
        .expect("the session is open");
}

fn close(rv: &mut Rendezvous, id: ClientId) {
    let now = rv.now;
    rv.client_mut(id).wormhole.close(now).expect("open");
}

fn messages(rv: &Rendezvous, id: ClientId) -> Vec<Bytes> {
    rv.client(id).messages()
}

fn bytes(messages: &[&str]) -> Vec<Bytes> {
    messages
        .iter()
        .map(|m| Bytes::copy_from_slice(m.as_bytes()))
        .collect()
}

/// The server hangs up on `id` before the bytes it has not yet handed
/// over reach the server (they are lost), and the client sees the end.
fn lose_connection(rv: &mut Rendezvous, id: ClientId) {
    rv.hang_up(id);
    rv.run();
    assert!(
        matches!(
            &rv.client(id).done,
            Some(Err(Error::Wormhole(WormholeError::ServerClosed(_))))
        ),
        "{:?}",
        rv.client(id).done
    );
    assert!(rv.client(id).wormhole.can_resume());
}

/// Both close and the session ends well on both sides, nothing held.
fn close_both(rv: &mut Rendezvous, a: ClientId, b: ClientId) {
    close(rv, a);
    rv.run();
    close(rv, b);
    rv.run();
    assert_eq!(rv.client(a).done, Some(Ok(())));
    assert_eq!(rv.client(b).done, Some(Ok(())));
    assert_eq!(rv.server.nameplates(), Vec::<String>::new());
}

fn count<F: Fn(&WormholeEvent) -> bool>(rv: &Rendezvous, id: ClientId, f: F) -> usize {
    rv.client(id).events.iter().filter(|e| f(e)).count()
}

#[test]
fn a_message_lost_with_the_connection_is_added_again_and_every_message_arrives_once() {
    let mut rv = rendezvous();
    let a = rv.allocate(config(), 1);
    rv.run();
    let code = rv.client(a).code().unwrap();
    let b = rv.join(config(), code, 2);
    rv.run();
    send(&mut rv, a, "one");
    // "one" is still in A's output when the server hangs up: lost.
    lose_connection(&mut rv, a);
    rv.reconnect(a);
    send(&mut rv, b, "uno");
    rv.run();
    send(&mut rv, a, "two");
    rv.run();
    assert_eq!(messages(&rv, b), bytes(&["one", "two"]));
    assert_eq!(messages(&rv, a), bytes(&["uno"]));
    for id in [a, b] {
        assert_eq!(
            count(&rv, id, |e| matches!(e, WormholeEvent::Verified { .. })),
            1
        );
    }
    assert_eq!(
        count(&rv, a, |e| matches!(e, WormholeEvent::Motd(_))),
        1,
        "the message of the day is told once"
    );
    close_both(&mut rv, a, b);
}

#[test]
fn a_side_waiting_for_its_peer_resumes_and_still_meets_it() {
    let mut rv = rendezvous();
    let a = rv.allocate(config(), 1);
    rv.run();
    let code = rv.client(a).code().unwrap();
    lose_connection(&mut rv, a);
    rv.reconnect(a);
    rv.run();
    let b = rv.join(config(), code, 2);
    rv.run();
    assert!(rv.client(a).verified() && rv.client(b).verified());
    send(&mut rv, b, "after the reconnection");
    rv.run();
    assert_eq!(messages(&rv, a), bytes(&["after the reconnection"]));
    close_both(&mut rv, a, b);
}

#[test]
fn a_claim_unanswered_when_the_connection_went_is_asked_again() {
    let mut rv = rendezvous();
    let a = rv.allocate(config(), 1);
    rv.run();
    let code = rv.client(a).code().unwrap();
    // The server welcomes B, then says nothing more: its claim goes
    // unanswered until B gives up on this connection.
    rv.server.set_faults(Faults {
        stall_after: Some(1),
        ..Faults::default()
    });
    let b = rv.join(config(), code, 2);
    rv.run();
    rv.advance(Duration::from_secs(11));
    assert!(
        matches!(
            &rv.client(b).done,
            Some(Err(Error::Wormhole(WormholeError::ServerTimeout(_))))
        ),
        "{:?}",
        rv.client(b).done
    );
    assert!(rv.client(b).wormhole.can_resume());
    rv.server.set_faults(Faults::default());
    rv.reconnect(b);
    rv.run();
    assert!(rv.client(a).verified() && rv.client(b).verified());
    close_both(&mut rv, a, b);
}

#[test]
fn a_connection_lost_before_the_welcome_is_not_resumed() {
    let mut rv = rendezvous();
    let a = rv.allocate(config(), 1);
    // A's bind is still in its output when the server hangs up.
    rv.hang_up(a);
    rv.run();
    assert!(rv.client(a).done.as_ref().is_some_and(|r| r.is_err()));
    assert!(!rv.client(a).wormhole.can_resume());
}

#[test]
fn a_session_that_failed_otherwise_is_not_resumed() {
    let mut rv = rendezvous();
    let a = rv.allocate(config(), 1);
    rv.run();
    let code = rv.client(a).code().unwrap();
    let wrong = Code::parse(&format!("{}-not-these-words", code.nameplate())).unwrap();
    let b = rv.join(config(), wrong, 2);
    rv.run();
    for id in [a, b] {
        assert!(!rv.client(id).wormhole.can_resume());
    }
    let now = rv.now;
    let done = Wormhole::allocate(config(), now, [9; 32]).unwrap();
    assert!(!done.can_resume(), "never welcomed");
    assert!(matches!(
        done.resume(now),
        Err(Error::Local(UsageError::WrongState { call: "resume", .. }))
    ));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Whenever A's connection goes (after the welcome), and however the
    /// byte streams are cut, A resumes and each side receives exactly
    /// what the other sent, in order, once.
    #[test]
    fn messages_arrive_once_in_order_whenever_the_connection_is_lost(
        seed in any::<u64>(),
        lose_after in 0..6usize,
    ) {
        let mut rv = rendezvous();
        rv.cut_streams(seed);
        let a = rv.allocate(config(), 1);
        rv.run();
        let code = rv.client(a).code().unwrap();
        let b = rv.join(config(), code, 2);
        let (mut to_b, mut to_a) = (Vec::new(), Vec::new());
        for i in 0..6 {
            let m = format!("a{i}");
            send(&mut rv, a, &m);
            to_b.push(Bytes::from(m));
            let m = format!("b{i}");
            send(&mut rv, b, &m);
            to_a.push(Bytes::from(m));
            if i == lose_after && rv.client(a).wormhole.can_resume() {
                // A's latest message is still on its side: lost with
                // the connection (or part of it, on a cut stream).
                rv.hang_up(a);
                rv.run();
                if rv.client(a).done.is_some() {
                    rv.reconnect(a);
                }
            }
            rv.run();
        }
        rv.run();
        prop_assert_eq!(messages(&rv, b), to_b);
        prop_assert_eq!(messages(&rv, a), to_a);
    }
}
