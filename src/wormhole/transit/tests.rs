//! The machine's own unit tests: one side driven by hand, the peer's
//! bytes written out in the test.

use super::*;

const TK: [u8; 32] = [9; 32];

fn drain(m: &mut Transit) -> (Vec<u8>, Vec<TransitEvent>, Option<Result<(), Error>>) {
    let mut sent = Vec::new();
    let mut events = Vec::new();
    for _ in 0..10_000 {
        match m.poll_output() {
            Output::Transmit(b) => sent.extend_from_slice(&b),
            Output::Event(e) => events.push(e),
            Output::Wait(_) => return (sent, events, None),
            Output::Done(r) => return (sent, events, Some(r)),
        }
    }
    panic!("never settled");
}

fn err(reason: &'static str) -> Option<Result<(), Error>> {
    Some(Err(transit(reason)))
}

/// A receiver past `go`, and a sealer for what the sender would send.
fn open_receiver(now: Instant) -> (Transit, Direction) {
    let mut m = Transit::new(TransitConfig::new(Role::Receiver, &TK), now);
    drain(&mut m);
    let mut peer = sender_handshake(&TK);
    peer.extend_from_slice(GO);
    assert_eq!(m.handle_input(now, &peer), Ok(peer.len()));
    let (_, events, done) = drain(&mut m);
    assert_eq!(events, vec![TransitEvent::Connected]);
    assert_eq!(done, None);
    (m, Direction::new(&sender_record_key(&TK)))
}

#[test]
fn a_direct_receiver_sends_its_handshake_at_once_and_waits_for_go() {
    let now = Instant::now();
    let mut m = Transit::new(TransitConfig::new(Role::Receiver, &TK), now);
    let (sent, events, done) = drain(&mut m);
    assert_eq!(sent, receiver_handshake(&TK));
    assert!(events.is_empty() && done.is_none());
    assert_eq!(m.poll_timeout(), Some(now + Duration::from_secs(60)));
    m.handle_input(now, &sender_handshake(&TK)).unwrap();
    assert_eq!(drain(&mut m).1, vec![], "no Connected before go");
    assert!(!m.is_open());
    m.handle_input(now, GO).unwrap();
    assert_eq!(drain(&mut m).1, vec![TransitEvent::Connected]);
    assert!(m.is_open());
    assert_eq!(m.poll_timeout(), None, "no deadline once records flow");
}

#[test]
fn a_sender_waits_for_the_application_to_say_go_or_nevermind() {
    let now = Instant::now();
    let mut m = Transit::new(TransitConfig::new(Role::Sender, &TK), now);
    assert_eq!(drain(&mut m).0, sender_handshake(&TK));
    assert_eq!(
        m.send_record(b"x"),
        Err(UsageError::WrongState {
            call: "send_record",
            state: "in the transit handshake"
        })
    );
    assert!(m.go().is_err(), "go before the peer's handshake");
    m.handle_input(now, &receiver_handshake(&TK)).unwrap();
    let (sent, events, done) = drain(&mut m);
    assert!(sent.is_empty());
    assert_eq!(events, vec![TransitEvent::Connected]);
    assert_eq!(done, None);
    assert_eq!(m.poll_timeout(), None, "the decision is the application's");
    m.go().unwrap();
    assert_eq!(drain(&mut m).0, GO);
    assert!(m.is_open());
    assert_eq!(
        m.go(),
        Err(UsageError::WrongState {
            call: "go",
            state: "exchanging records"
        })
    );

    let mut loser = Transit::new(TransitConfig::new(Role::Sender, &TK), now);
    drain(&mut loser);
    loser.handle_input(now, &receiver_handshake(&TK)).unwrap();
    drain(&mut loser);
    loser.nevermind().unwrap();
    assert_eq!(
        drain(&mut loser),
        (NEVERMIND.to_vec(), vec![], Some(Ok(())))
    );
    assert_eq!(loser.go(), Err(UsageError::Closed));
}

#[test]
fn through_a_relay_the_handshake_waits_for_ok() {
    let now = Instant::now();
    let cfg = TransitConfig::new(Role::Sender, &TK).via_relay("0123456789abcdef");
    let mut m = Transit::new(cfg, now);
    assert_eq!(drain(&mut m).0, relay_handshake(&TK, "0123456789abcdef"));
    m.handle_input(now, b"ok").unwrap();
    assert!(drain(&mut m).0.is_empty(), "nothing before the whole ok");
    let mut rest = b"\n".to_vec();
    rest.extend_from_slice(&receiver_handshake(&TK));
    m.handle_input(now, &rest).unwrap();
    let (sent, events, _) = drain(&mut m);
    assert_eq!(sent, sender_handshake(&TK));
    assert_eq!(events, vec![TransitEvent::Connected]);
}

#[test]
fn a_relay_that_refuses_or_closes_fails_with_its_reason() {
    let now = Instant::now();
    let cfg = TransitConfig::new(Role::Receiver, &TK).via_relay("0123456789abcdef");
    let mut m = Transit::new(cfg.clone(), now);
    drain(&mut m);
    assert_eq!(
        m.handle_input(now, b"bad handshake\n"),
        Err(transit(reasons::RELAY_REFUSED))
    );
    assert_eq!(drain(&mut m).2, err(reasons::RELAY_REFUSED));
    let mut m = Transit::new(cfg, now);
    drain(&mut m);
    m.handle_eof(now);
    assert_eq!(drain(&mut m).2, err(reasons::RELAY_CLOSED));
}

#[test]
fn the_first_wrong_handshake_byte_fails_and_nothing_is_buffered() {
    let now = Instant::now();
    let mut m = Transit::new(TransitConfig::new(Role::Receiver, &TK), now);
    drain(&mut m);
    // An endless line of the right prefix costs nothing: matched bytes are
    // let go as they arrive.
    let line = sender_handshake(&TK);
    for b in &line[..line.len() - 1] {
        assert_eq!(m.handle_input(now, std::slice::from_ref(b)), Ok(1));
        assert_eq!(m.rx.len(), 0);
    }
    assert_eq!(
        m.handle_input(now, b"X"),
        Err(transit(reasons::BAD_HANDSHAKE))
    );
    // Sticky, and later input is discarded with it.
    assert_eq!(
        m.handle_input(now, b"more"),
        Err(transit(reasons::BAD_HANDSHAKE))
    );
    assert_eq!(drain(&mut m).2, err(reasons::BAD_HANDSHAKE));
}

#[test]
fn a_receiver_told_nevermind_or_anything_but_go_fails() {
    let now = Instant::now();
    for (after, reason) in [
        (&b"nevermind\n"[..], reasons::NEVERMIND),
        (b"nevermind!", reasons::BAD_GO),
        (b"GO\n", reasons::BAD_GO),
        (b"go\r\n", reasons::BAD_GO),
    ] {
        let mut m = Transit::new(TransitConfig::new(Role::Receiver, &TK), now);
        drain(&mut m);
        let mut peer = sender_handshake(&TK);
        peer.extend_from_slice(after);
        let _ = m.handle_input(now, &peer);
        assert_eq!(drain(&mut m).2, err(reason), "{after:?}");
    }
    // A nevermind cut short by the connection's end is a closed handshake.
    let mut m = Transit::new(TransitConfig::new(Role::Receiver, &TK), now);
    drain(&mut m);
    let mut peer = sender_handshake(&TK);
    peer.extend_from_slice(b"never");
    m.handle_input(now, &peer).unwrap();
    m.handle_eof(now);
    assert_eq!(drain(&mut m).2, err(reasons::CLOSED_IN_HANDSHAKE));
}

#[test]
fn the_handshake_times_out_and_early_timeouts_are_harmless() {
    let now = Instant::now();
    let mut m = Transit::new(TransitConfig::new(Role::Receiver, &TK), now);
    drain(&mut m);
    let limit = Duration::from_secs(60);
    m.handle_timeout(now + limit - Duration::from_millis(1));
    assert_eq!(drain(&mut m).2, None);
    m.handle_timeout(now + limit);
    assert_eq!(drain(&mut m).2, err(reasons::HANDSHAKE_TIMEOUT));
    assert_eq!(m.poll_timeout(), None);
}

#[test]
fn records_open_in_order_and_the_peer_eof_between_them_ends_cleanly() {
    let now = Instant::now();
    let (mut m, mut peer) = open_receiver(now);
    let mut wire = peer.seal(b"one").unwrap().to_vec();
    wire.extend_from_slice(&peer.seal(b"").unwrap());
    wire.extend_from_slice(&peer.seal(b"three").unwrap());
    m.handle_input(now, &wire).unwrap();
    let (_, events, done) = drain(&mut m);
    assert_eq!(
        events,
        vec![
            TransitEvent::Record(Bytes::from_static(b"one")),
            TransitEvent::Record(Bytes::new()),
            TransitEvent::Record(Bytes::from_static(b"three")),
        ]
    );
    assert_eq!(done, None);
    assert_eq!(m.records(), (0, 3));
    m.handle_eof(now);
    assert_eq!(drain(&mut m).2, Some(Ok(())));
    // Input after a normal end is taken and discarded.
    assert_eq!(m.handle_input(now, b"late"), Ok(4));
}

#[test]
fn an_eof_inside_a_record_is_a_truncation() {
    let now = Instant::now();
    let (mut m, mut peer) = open_receiver(now);
    let rec = peer.seal(b"cut").unwrap();
    m.handle_input(now, &rec[..rec.len() - 1]).unwrap();
    m.handle_eof(now);
    assert_eq!(drain(&mut m).2, err(reasons::TRUNCATED));
}

#[test]
fn records_sent_are_sealed_under_this_sides_key_in_order() {
    let now = Instant::now();
    let (mut m, _) = open_receiver(now);
    m.send_record(b"first").unwrap();
    m.send_record(b"second").unwrap();
    let (sent, _, _) = drain(&mut m);
    let mut opener = Direction::new(&receiver_record_key(&TK));
    let mut wire = bytes::BytesMut::from(&sent[..]);
    for want in [&b"first"[..], b"second"] {
        let len = u32::from_be_bytes(wire[..4].try_into().unwrap()) as usize;
        wire.advance(4);
        let mut rec = wire.split_to(len);
        opener.open(&mut rec).unwrap();
        assert_eq!(&rec[..], want);
    }
    assert!(wire.is_empty());
    m.close().unwrap();
    assert_eq!(drain(&mut m).2, Some(Ok(())));
    assert_eq!(m.send_record(b"x"), Err(UsageError::Closed));
}

#[test]
fn the_send_queue_is_bounded_and_a_record_beyond_the_limit_is_refused() {
    let now = Instant::now();
    let mut cfg = TransitConfig::new(Role::Receiver, &TK);
    cfg.send_buffer = 1000;
    cfg.max_record = 2000;
    let mut m = Transit::new(cfg, now);
    drain(&mut m);
    let mut peer = sender_handshake(&TK);
    peer.extend_from_slice(GO);
    m.handle_input(now, &peer).unwrap();
    drain(&mut m);
    assert_eq!(
        m.send_record(&[0; 2001]),
        Err(UsageError::MessageTooLarge {
            len: 2001,
            max: 2000
        })
    );
    // A record larger than the queue goes when nothing waits...
    m.send_record(&[0; 1500]).unwrap();
    // ...and then nothing more until it is handed out.
    assert_eq!(m.send_record(b"x"), Err(UsageError::WouldBlock));
    drain(&mut m);
    m.send_record(&[0; 900]).unwrap();
    assert_eq!(m.send_record(&[0; 100]), Err(UsageError::WouldBlock));
    m.send_record(&[0; 10]).unwrap();
    assert_eq!(m.records(), (3, 0));
}

#[test]
fn an_oversized_prefix_fails_before_its_body_and_allocates_nothing_for_it() {
    let now = Instant::now();
    let (mut m, _) = open_receiver(now);
    let room = m.input_room();
    assert_eq!(room, READ_ROOM);
    let too_big = (OVERHEAD + DEFAULT_MAX_RECORD + 1) as u32;
    assert_eq!(
        m.handle_input(now, &too_big.to_be_bytes()),
        Err(transit(reasons::TOO_LARGE))
    );
    let (mut m, _) = open_receiver(now);
    assert_eq!(
        m.handle_input(now, &39u32.to_be_bytes()),
        Err(transit(reasons::TOO_SHORT))
    );
    // The largest record allowed is announced: the room grows to hold it,
    // the buffer only as bytes arrive.
    let (mut m, _) = open_receiver(now);
    let max = (OVERHEAD + DEFAULT_MAX_RECORD) as u32;
    m.handle_input(now, &max.to_be_bytes()).unwrap();
    assert_eq!(m.input_room(), LEN_PREFIX + max as usize - 4);
    let buf = m.input_buffer(64 * 1024);
    assert_eq!(buf.len(), 64 * 1024);
    assert!(m.rx.len() + m.rx.held().len() < 1 << 20);
}

#[test]
fn a_large_record_arrives_in_reads_with_linear_copying() {
    let now = Instant::now();
    let (mut m, mut peer) = open_receiver(now);
    let plain = vec![0xa5; 3 << 20];
    let rec = peer.seal(&plain).unwrap();
    let mut fed = 0;
    while fed < rec.len() {
        let buf = m.input_buffer(64 * 1024);
        let n = buf.len().min(rec.len() - fed);
        assert!(n > 0, "room for the record's rest");
        buf[..n].copy_from_slice(&rec[fed..fed + n]);
        m.commit_input(now, n).unwrap();
        fed += n;
        assert!(m.rx.len() <= rec.len());
    }
    let (_, events, _) = drain(&mut m);
    assert_eq!(events, vec![TransitEvent::Record(Bytes::from(plain))]);
    assert_eq!(m.input_room(), READ_ROOM, "back to one read once it is out");
}

#[test]
fn a_bad_config_fails_at_once_naming_the_field() {
    let now = Instant::now();
    let cfg = TransitConfig::new(Role::Sender, &TK).via_relay("short");
    let mut m = Transit::new(cfg, now);
    let (sent, _, done) = drain(&mut m);
    assert!(sent.is_empty());
    match done {
        Some(Err(Error::Local(UsageError::BadConfig(e)))) => assert_eq!(e.field(), "relay_side"),
        other => panic!("{other:?}"),
    }
    let mut cfg = TransitConfig::new(Role::Sender, &TK);
    cfg.max_record = 0;
    assert!(matches!(
        drain(&mut Transit::new(cfg, now)).2,
        Some(Err(Error::Local(UsageError::BadConfig(_))))
    ));
}

#[test]
fn bytes_before_go_wait_for_the_senders_decision() {
    let now = Instant::now();
    let mut m = Transit::new(TransitConfig::new(Role::Sender, &TK), now);
    drain(&mut m);
    let mut peer_tx = Direction::new(&receiver_record_key(&TK));
    let mut wire = receiver_handshake(&TK);
    wire.extend_from_slice(&peer_tx.seal(b"early").unwrap());
    m.handle_input(now, &wire).unwrap();
    assert_eq!(drain(&mut m).1, vec![TransitEvent::Connected]);
    assert!(m.input_room() < READ_ROOM, "held, within the room");
    m.go().unwrap();
    let (_, events, _) = drain(&mut m);
    assert_eq!(
        events,
        vec![TransitEvent::Record(Bytes::from_static(b"early"))]
    );
}

#[test]
fn an_aborted_connection_fails_with_the_reason() {
    let now = Instant::now();
    let mut m = Transit::new(TransitConfig::new(Role::Sender, &TK), now);
    m.abort("shutting down".into());
    assert_eq!(
        drain(&mut m).2,
        Some(Err(Error::Aborted("shutting down".into())))
    );
    assert_eq!(m.write_timeout(), Some(Duration::from_secs(60)));
}

#[test]
fn handing_over_a_receiver_reads_nothing_past_go_and_ends_there() {
    let now = Instant::now();
    let cfg = TransitConfig::new(Role::Receiver, &TK)
        .via_relay("0123456789abcdef")
        .handing_over();
    let mut m = Transit::new(cfg, now);
    drain(&mut m);
    let mut peer = RELAY_OK.to_vec();
    peer.extend_from_slice(&sender_handshake(&TK));
    peer.extend_from_slice(GO);
    let lines = peer.len();
    peer.extend_from_slice(b"EXFS and the next protocol's bytes");
    let mut taken = 0;
    while m.input_room() > 0 && taken < peer.len() {
        assert!(
            m.input_room() <= lines - taken,
            "room past the lines expected"
        );
        taken += m.handle_input(now, &peer[taken..]).unwrap();
    }
    assert_eq!(taken, lines, "every line taken, not a byte more");
    let (_, events, done) = drain(&mut m);
    assert_eq!(events, vec![TransitEvent::Connected]);
    assert_eq!(done, Some(Ok(())), "ends normally at go");
}

#[test]
fn handing_over_a_sender_ends_once_go_is_out() {
    let now = Instant::now();
    let cfg = TransitConfig::new(Role::Sender, &TK).handing_over();
    let mut m = Transit::new(cfg, now);
    drain(&mut m);
    let theirs = receiver_handshake(&TK);
    assert_eq!(m.input_room(), theirs.len());
    m.handle_input(now, &theirs).unwrap();
    assert_eq!(drain(&mut m).1, vec![TransitEvent::Connected]);
    m.go().unwrap();
    assert_eq!(drain(&mut m), (GO.to_vec(), vec![], Some(Ok(()))));
    assert_eq!(m.send_record(b"x"), Err(UsageError::Closed));
}

#[test]
fn handing_over_a_receiver_still_fails_on_nevermind() {
    let now = Instant::now();
    let cfg = TransitConfig::new(Role::Receiver, &TK).handing_over();
    let mut m = Transit::new(cfg, now);
    drain(&mut m);
    let mut peer = sender_handshake(&TK);
    peer.extend_from_slice(NEVERMIND);
    let mut taken = 0;
    while taken < peer.len() {
        match m.handle_input(now, &peer[taken..]) {
            Ok(n) => taken += n,
            Err(_) => break,
        }
    }
    assert_eq!(drain(&mut m).2, err(reasons::NEVERMIND));
}
