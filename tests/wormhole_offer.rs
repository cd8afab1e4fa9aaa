//! The wormhole file-transfer offer apps (`wormhole::offer`'s `SendOffer`
//! and `ReceiveOffer`) run on two real wormhole clients that meet through
//! the in-memory mailbox server (`testing::mailbox`'s `Rendezvous`, on a
//! virtual clock): two echoxfer sides agree on the native protocol and
//! the classic offer is never made; any other pairing gets the classic
//! offer, made only then; a classic offer that cannot be made, and a
//! native proposal the receiver never advertised, end both sides with
//! the reason; texts stay classic.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use echoxfer::driver::App;
use echoxfer::testing::mailbox::{ClientId, Faults, MailboxServer, Rendezvous, ServerConfig};
use echoxfer::wormhole::offer::{MakeOffer, Policy, ReceiveOffer, Received, SendOffer};
use echoxfer::wormhole::transfer::{native_app_versions, Offer};
use echoxfer::wormhole::transit::hints::{DirectHint, Hint};
use echoxfer::wormhole::transit::TransitHints;
use echoxfer::wormhole::{Wormhole, WormholeConfig};
use echoxfer::{Error, StreamMachine, WormholeError};
use serde_json::Value;

/// Rounds of "run the rendezvous, hand the apps what it told" before a
/// session counts as stuck.
const MAX_ROUNDS: usize = 1000;

/// The proposal a native sender sends instead of an offer.
const NATIVE_PROPOSAL: &str = r#"{"echoxfer":{"native":1}}"#;

fn config(native: bool) -> WormholeConfig {
    WormholeConfig {
        mailbox_url: "ws://mailbox.test:4000/v1".into(),
        answer_within: Duration::from_secs(10),
        app_versions: if native {
            native_app_versions()
        } else {
            WormholeConfig::default().app_versions
        },
        ..WormholeConfig::default()
    }
}

fn rendezvous() -> Rendezvous {
    let server = MailboxServer::new(ServerConfig {
        motd: None,
        faults: Faults::default(),
    });
    Rendezvous::new(server, std::time::Instant::now())
}

/// The sender allocates a code; the receiver joins with it. Returns the
/// sender and the receiver.
fn meet(
    rv: &mut Rendezvous,
    sender: WormholeConfig,
    receiver: WormholeConfig,
) -> (ClientId, ClientId) {
    let s = rv.allocate(sender, 1);
    rv.run();
    let code = rv.client(s).code().expect("the sender printed its code");
    let r = rv.join(receiver, code, 2);
    (s, r)
}

/// Transit hints with one direct hint at `host`, distinct per side.
fn hints(host: &str, port: u16) -> TransitHints {
    let mut hints = TransitHints::new();
    hints.hints.push(Hint::Direct(DirectHint {
        hostname: host.to_owned(),
        port,
        priority: Some(0.0),
    }));
    hints
}

fn sender_hints() -> TransitHints {
    hints("10.0.0.1", 4001)
}

fn receiver_hints() -> TransitHints {
    hints("10.0.0.2", 4002)
}

fn a_file() -> Offer {
    Offer::File {
        filename: "a.bin".into(),
        filesize: 12,
    }
}

/// A classic offer maker that counts its calls and makes `result`.
fn counting_maker(result: Result<Offer, String>) -> (MakeOffer, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let make: MakeOffer = Box::new(move || {
        counted.fetch_add(1, Ordering::SeqCst);
        result
    });
    (make, calls)
}

/// A policy that records every offer it is asked about and accepts it.
fn recording_policy() -> (Policy, Arc<Mutex<Vec<Offer>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let recorded = Arc::clone(&seen);
    let policy: Policy = Box::new(move |offer: &Offer| {
        recorded.lock().unwrap().push(offer.clone());
        Ok(())
    });
    (policy, seen)
}

fn seen(policy: &Arc<Mutex<Vec<Offer>>>) -> Vec<Offer> {
    policy.lock().unwrap().clone()
}

/// One app running on one client of the rendezvous.
struct Running<'a> {
    id: ClientId,
    app: &'a mut dyn App<Wormhole>,
    /// How many of the client's events the app has been handed.
    told: usize,
    /// The app's error, once it failed.
    failure: Option<io::Error>,
}

/// Runs `apps` on their clients until nothing new happens, as a driver
/// would: each event the client tells goes to its app, in order; an
/// app's error aborts its machine with the reason (which ends its
/// session) and later events are dropped. Returns each app's error, in
/// the order given.
fn run_apps(
    rv: &mut Rendezvous,
    apps: Vec<(ClientId, &mut dyn App<Wormhole>)>,
) -> Vec<Option<io::Error>> {
    let mut running: Vec<Running<'_>> = apps
        .into_iter()
        .map(|(id, app)| Running {
            id,
            app,
            told: 0,
            failure: None,
        })
        .collect();
    for _ in 0..MAX_ROUNDS {
        rv.run();
        let mut delivered = false;
        for side in &mut running {
            while side.told < rv.client(side.id).events.len() {
                let event = rv.client(side.id).events[side.told].clone();
                side.told += 1;
                delivered = true;
                if side.failure.is_some() {
                    continue;
                }
                let now = rv.now;
                let wormhole = &mut rv.client_mut(side.id).wormhole;
                if let Err(error) = side.app.on_event(wormhole, now, event) {
                    StreamMachine::abort(wormhole, error.to_string());
                    side.failure = Some(error);
                }
            }
        }
        if !delivered {
            return running.into_iter().map(|side| side.failure).collect();
        }
    }
    panic!("the apps did not settle within {MAX_ROUNDS} rounds");
}

/// The wormhole error an app failed with, if it was one.
fn wormhole_error(failure: &Option<io::Error>) -> Option<WormholeError> {
    match failure.as_ref()?.get_ref()?.downcast_ref::<Error>()? {
        Error::Wormhole(e) => Some(e.clone()),
        _ => None,
    }
}

fn messages(rv: &Rendezvous, id: ClientId) -> Vec<Value> {
    rv.client(id)
        .messages()
        .iter()
        .map(|m| serde_json::from_slice(m).expect("every file-transfer message is JSON"))
        .collect()
}

fn transit(hints: &TransitHints) -> Value {
    serde_json::json!({ "transit": hints.to_value() })
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).expect("valid JSON")
}

fn ended_ok(rv: &Rendezvous, id: ClientId) {
    assert_eq!(rv.client(id).done, Some(Ok(())), "client {id:?} ended");
}

#[test]
fn two_echoxfer_sides_agree_on_native_and_the_classic_offer_is_never_made() {
    let mut rv = rendezvous();
    let (s, r) = meet(&mut rv, config(true), config(true));
    let (make, made) = counting_maker(Ok(a_file()));
    let (policy, asked) = recording_policy();
    let mut sender = SendOffer::files(sender_hints(), make);
    let mut receiver = ReceiveOffer::new(receiver_hints(), policy).with_native();

    let failures = run_apps(&mut rv, vec![(s, &mut sender), (r, &mut receiver)]);

    assert!(failures.iter().all(Option::is_none), "{failures:?}");
    assert!(sender.native(), "{sender:?}");
    assert!(sender.accepted(), "{sender:?}");
    assert_eq!(receiver.received(), Some(&Received::Native));
    assert_eq!(made.load(Ordering::SeqCst), 0, "the classic offer was made");
    assert_eq!(seen(&asked), Vec::<Offer>::new(), "the policy was asked");
    assert_eq!(sender.peer_hints(), Some(&receiver_hints()));
    assert_eq!(receiver.peer_hints(), Some(&sender_hints()));
    assert_eq!(
        messages(&rv, r),
        vec![transit(&sender_hints()), json(NATIVE_PROPOSAL)]
    );
    assert_eq!(
        messages(&rv, s),
        vec![
            transit(&receiver_hints()),
            json(r#"{"answer":{"native_ack":"ok"}}"#)
        ]
    );
    ended_ok(&rv, s);
    ended_ok(&rv, r);
}

#[test]
fn a_receiver_that_does_not_advertise_native_gets_the_classic_offer_made_only_then() {
    let mut rv = rendezvous();
    let (s, r) = meet(&mut rv, config(true), config(false));
    let (make, made) = counting_maker(Ok(a_file()));
    let (policy, asked) = recording_policy();
    let mut sender = SendOffer::files(sender_hints(), make);
    let mut receiver = ReceiveOffer::new(receiver_hints(), policy);
    assert_eq!(
        made.load(Ordering::SeqCst),
        0,
        "made before the peer's versions"
    );

    let failures = run_apps(&mut rv, vec![(s, &mut sender), (r, &mut receiver)]);

    assert!(failures.iter().all(Option::is_none), "{failures:?}");
    assert_eq!(
        made.load(Ordering::SeqCst),
        1,
        "the classic offer made once"
    );
    assert_eq!(seen(&asked), vec![a_file()]);
    assert_eq!(receiver.received(), Some(&Received::Accepted(a_file())));
    assert!(!sender.native(), "{sender:?}");
    assert!(sender.accepted(), "{sender:?}");
    assert_eq!(sender.peer_hints(), Some(&receiver_hints()));
    assert_eq!(receiver.peer_hints(), Some(&sender_hints()));
    let to_receiver = messages(&rv, r);
    assert_eq!(
        to_receiver,
        vec![
            transit(&sender_hints()),
            serde_json::json!({ "offer": serde_json::to_value(a_file()).unwrap() })
        ]
    );
    assert!(!to_receiver.contains(&json(NATIVE_PROPOSAL)));
    ended_ok(&rv, s);
    ended_ok(&rv, r);
}

#[test]
fn a_sender_without_native_versions_is_offered_classic_even_by_a_native_receiver() {
    let mut rv = rendezvous();
    let (s, r) = meet(&mut rv, config(false), config(true));
    let (policy, asked) = recording_policy();
    let mut sender = SendOffer::with_transit(a_file(), sender_hints());
    let mut receiver = ReceiveOffer::new(receiver_hints(), policy).with_native();

    let failures = run_apps(&mut rv, vec![(s, &mut sender), (r, &mut receiver)]);

    assert!(failures.iter().all(Option::is_none), "{failures:?}");
    assert_eq!(seen(&asked), vec![a_file()]);
    assert_eq!(receiver.received(), Some(&Received::Accepted(a_file())));
    assert!(!sender.native(), "{sender:?}");
    assert!(sender.accepted(), "{sender:?}");
    assert_eq!(sender.peer_hints(), Some(&receiver_hints()));
    assert_eq!(receiver.peer_hints(), Some(&sender_hints()));
    assert!(!messages(&rv, r).contains(&json(NATIVE_PROPOSAL)));
    assert_eq!(
        messages(&rv, s),
        vec![
            transit(&receiver_hints()),
            json(r#"{"answer":{"file_ack":"ok"}}"#)
        ]
    );
    ended_ok(&rv, s);
    ended_ok(&rv, r);
}

#[test]
fn a_classic_offer_that_cannot_be_made_tells_the_receiver_why() {
    let mut rv = rendezvous();
    let (s, r) = meet(&mut rv, config(true), config(false));
    let (make, made) = counting_maker(Err("why".into()));
    let (policy, asked) = recording_policy();
    let mut sender = SendOffer::files(sender_hints(), make);
    let mut receiver = ReceiveOffer::new(receiver_hints(), policy);

    let failures = run_apps(&mut rv, vec![(s, &mut sender), (r, &mut receiver)]);

    assert_eq!(made.load(Ordering::SeqCst), 1);
    let sender_failure = failures[0].as_ref().expect("the sender's app failed");
    assert!(
        sender_failure.to_string().contains("why"),
        "{sender_failure}"
    );
    match wormhole_error(&failures[1]) {
        Some(WormholeError::PeerError(text)) => assert!(text.contains("why"), "{text}"),
        other => panic!("the receiver failed with {other:?} ({:?})", failures[1]),
    }
    assert_eq!(seen(&asked), Vec::<Offer>::new(), "the policy was asked");
    assert_eq!(receiver.received(), None);
    assert!(!sender.accepted() && !sender.native(), "{sender:?}");
    assert_eq!(
        messages(&rv, r),
        vec![serde_json::json!({ "error": "why" })]
    );
    for id in [s, r] {
        match &rv.client(id).done {
            Some(Err(Error::Aborted(reason))) => assert!(reason.contains("why"), "{reason}"),
            other => panic!("client {id:?} ended with {other:?}"),
        }
    }
}

#[test]
fn a_native_proposal_the_receiver_never_advertised_is_refused() {
    let mut rv = rendezvous();
    let (s, r) = meet(&mut rv, config(true), config(true));
    let (make, made) = counting_maker(Ok(a_file()));
    let (policy, asked) = recording_policy();
    let mut sender = SendOffer::files(sender_hints(), make);
    let mut receiver = ReceiveOffer::new(receiver_hints(), policy);

    let failures = run_apps(&mut rv, vec![(s, &mut sender), (r, &mut receiver)]);

    assert!(sender.native(), "the sender proposed native: {sender:?}");
    assert_eq!(made.load(Ordering::SeqCst), 0, "the classic offer was made");
    assert!(
        matches!(
            wormhole_error(&failures[1]),
            Some(WormholeError::BadPeer(_))
        ),
        "the receiver failed with {:?}",
        failures[1]
    );
    match wormhole_error(&failures[0]) {
        Some(WormholeError::PeerError(text)) => {
            assert!(text.contains("native protocol"), "{text}")
        }
        other => panic!("the sender failed with {other:?} ({:?})", failures[0]),
    }
    assert_eq!(receiver.received(), None);
    assert!(!sender.accepted(), "{sender:?}");
    assert_eq!(seen(&asked), Vec::<Offer>::new(), "the policy was asked");
    assert!(!messages(&rv, s).contains(&json(r#"{"answer":{"native_ack":"ok"}}"#)));
    for id in [s, r] {
        assert!(
            matches!(rv.client(id).done, Some(Err(Error::Aborted(_)))),
            "client {id:?} ended with {:?}",
            rv.client(id).done
        );
    }
}

#[test]
fn text_offers_stay_classic_between_native_sides() {
    let mut rv = rendezvous();
    let (s, r) = meet(&mut rv, config(true), config(true));
    let (policy, asked) = recording_policy();
    let mut sender = SendOffer::text("hi");
    let mut receiver = ReceiveOffer::new(receiver_hints(), policy).with_native();

    let failures = run_apps(&mut rv, vec![(s, &mut sender), (r, &mut receiver)]);

    assert!(failures.iter().all(Option::is_none), "{failures:?}");
    assert_eq!(receiver.received(), Some(&Received::Text("hi".into())));
    assert!(!sender.native(), "{sender:?}");
    assert!(sender.accepted(), "{sender:?}");
    assert_eq!(seen(&asked), Vec::<Offer>::new(), "the policy was asked");
    assert_eq!(
        messages(&rv, r),
        vec![json(r#"{"offer":{"message":"hi"}}"#)]
    );
    assert_eq!(
        rv.client(s).messages(),
        vec![Bytes::from_static(br#"{"answer":{"message_ack":"ok"}}"#)]
    );
    ended_ok(&rv, s);
    ended_ok(&rv, r);
}
