//! Transit end to end in memory: a sender and a receiver machine connected
//! directly or through an emulated transit relay (which checks each
//! side's relay handshake and answers `ok\n` once both came), their bytes
//! cut anywhere; and the connections that must fail, each with its typed
//! error: a wrong transit key, garbage, tampered, replayed, reordered or
//! oversized records.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use echoxfer::wormhole::transit::{
    reasons, relay_handshake, Role, Transit, TransitConfig, TransitEvent, LEN_PREFIX, OVERHEAD,
};
use echoxfer::{Error, Machine, Output, StreamMachine, WormholeError};
use proptest::prelude::*;

const TK: [u8; 32] = [0x42; 32];
const SIDES: [&str; 2] = ["aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb"];

fn transit_err(reason: &'static str) -> Result<(), Error> {
    Err(Error::Wormhole(WormholeError::Transit(reason)))
}

/// One end: its machine and what its application does.
struct End {
    m: Transit,
    /// Records to send once open.
    to_send: VecDeque<Vec<u8>>,
    /// Records received.
    got: Vec<Bytes>,
    /// Close once this many records arrived and all were sent.
    close_after: Option<usize>,
    connected: bool,
    done: Option<Result<(), Error>>,
    /// Bytes this end wrote, not yet on their way.
    out: Vec<u8>,
    eof_seen: bool,
}

impl End {
    fn new(m: Transit, to_send: Vec<Vec<u8>>, close_after: Option<usize>) -> Self {
        End {
            m,
            to_send: to_send.into(),
            got: Vec::new(),
            close_after,
            connected: false,
            done: None,
            out: Vec::new(),
            eof_seen: false,
        }
    }

    /// Drains the machine and lets the application act, until it settles.
    fn run(&mut self) {
        loop {
            let mut acted = false;
            loop {
                match self.m.poll_output() {
                    Output::Transmit(b) => self.out.extend_from_slice(&b),
                    Output::Event(TransitEvent::Connected) => {
                        assert!(!self.connected, "Connected twice");
                        self.connected = true;
                        if self.m.role() == Role::Sender {
                            self.m.go().unwrap();
                        }
                    }
                    Output::Event(TransitEvent::Record(r)) => {
                        assert!(self.connected, "a record before Connected");
                        self.got.push(r);
                    }
                    Output::Wait(_) => break,
                    Output::Done(r) => {
                        if let Some(prev) = &self.done {
                            assert_eq!(prev, &r, "Done changed");
                        }
                        self.done = Some(r);
                        return;
                    }
                }
            }
            if self.m.is_open() {
                while let Some(r) = self.to_send.front() {
                    match self.m.send_record(r) {
                        Ok(()) => {
                            self.to_send.pop_front();
                            acted = true;
                        }
                        Err(echoxfer::UsageError::WouldBlock) => break,
                        Err(e) => panic!("send_record: {e}"),
                    }
                }
                if self.to_send.is_empty() && self.close_after == Some(self.got.len()) {
                    self.m.close().unwrap();
                    acted = true;
                }
            }
            if !acted {
                return;
            }
        }
    }
}

/// The emulated transit relay: reads each side's first line, checks it,
/// and once both came answers `ok\n` to both and joins them.
#[derive(Default)]
struct Relay {
    line: [Vec<u8>; 2],
    arrived: [bool; 2],
    paired: bool,
}

/// Two ends and the bytes between them.
struct Net {
    ends: [End; 2],
    relay: Option<Relay>,
    /// Bytes on their way to each end.
    inbox: [VecDeque<u8>; 2],
    /// How each read is cut: sizes taken in turn.
    cuts: Vec<usize>,
    cut_at: usize,
    now: Instant,
}

impl Net {
    fn new(sender: Transit, receiver: Transit, relayed: bool, cuts: Vec<usize>) -> Self {
        Net {
            ends: [
                End::new(sender, vec![], None),
                End::new(receiver, vec![], None),
            ],
            relay: relayed.then(Relay::default),
            inbox: [VecDeque::new(), VecDeque::new()],
            cuts: if cuts.is_empty() {
                vec![usize::MAX]
            } else {
                cuts
            },
            cut_at: 0,
            now: Instant::now(),
        }
    }

    fn next_cut(&mut self) -> usize {
        let c = self.cuts[self.cut_at % self.cuts.len()];
        self.cut_at += 1;
        c.max(1)
    }

    /// Moves what each end wrote toward the other (through the relay).
    fn carry(&mut self) {
        for (i, side) in SIDES.iter().enumerate() {
            let out = std::mem::take(&mut self.ends[i].out);
            let Some(relay) = &mut self.relay else {
                self.inbox[1 - i].extend(out);
                continue;
            };
            let mut rest = &out[..];
            if !relay.arrived[i] {
                let nl = rest.iter().position(|&b| b == b'\n');
                let take = nl.map_or(rest.len(), |p| p + 1);
                relay.line[i].extend_from_slice(&rest[..take]);
                rest = &rest[take..];
                if nl.is_some() {
                    assert_eq!(
                        relay.line[i],
                        relay_handshake(&TK, side),
                        "side {i}'s relay handshake"
                    );
                    relay.arrived[i] = true;
                }
            }
            if !rest.is_empty() {
                assert!(relay.paired, "side {i} wrote before the relay's ok");
            }
            self.inbox[1 - i].extend(rest);
            if relay.arrived == [true, true] && !relay.paired {
                relay.paired = true;
                for inbox in &mut self.inbox {
                    inbox.extend(b"ok\n");
                }
            }
        }
    }

    /// One round: every end runs, bytes move, each end reads one cut.
    /// Whether anything happened.
    fn step(&mut self) -> bool {
        let mut moved = false;
        for i in 0..2 {
            self.ends[i].run();
            moved |= !self.ends[i].out.is_empty();
        }
        self.carry();
        for i in 0..2 {
            if !self.inbox[i].is_empty() {
                let cut = self.next_cut().min(self.inbox[i].len());
                let piece: Vec<u8> = self.inbox[i].iter().take(cut).copied().collect();
                let end = &mut self.ends[i];
                match end.m.handle_input(self.now, &piece) {
                    Ok(n) => {
                        self.inbox[i].drain(..n);
                        moved |= n > 0;
                    }
                    Err(_) => {
                        // Failed: the connection is dropped, unread bytes too.
                        self.inbox[i].clear();
                        moved = true;
                    }
                }
            } else if self.ends[1 - i].done.is_some()
                && self.ends[1 - i].out.is_empty()
                && !self.ends[i].eof_seen
            {
                // The other end is over and all it wrote has arrived: its
                // connection closes (a relay closes the other side too).
                self.ends[i].eof_seen = true;
                self.ends[i].m.handle_eof(self.now);
                moved = true;
            }
            self.ends[i].run();
        }
        moved
    }

    /// Runs until nothing moves; then both ends must be done.
    fn run(&mut self) -> [Result<(), Error>; 2] {
        for _ in 0..1_000_000 {
            if !self.step() && self.ends.iter().all(|e| e.done.is_some()) {
                break;
            }
        }
        let d = |e: &End| e.done.clone().expect("an end never finished");
        [d(&self.ends[0]), d(&self.ends[1])]
    }
}

fn config(role: Role, tk: &[u8], relayed: bool) -> TransitConfig {
    let cfg = TransitConfig::new(role, tk);
    if relayed {
        let side = SIDES[(role == Role::Receiver) as usize];
        cfg.via_relay(side)
    } else {
        cfg
    }
}

/// A sender that sends `to_receiver` then closes once `back` records came
/// back; a receiver that sends `back` records once it has everything.
fn session(to_receiver: &[Vec<u8>], back: &[Vec<u8>], relayed: bool, cuts: Vec<usize>) -> Net {
    let now = Instant::now();
    let s = Transit::new(config(Role::Sender, &TK, relayed), now);
    let r = Transit::new(config(Role::Receiver, &TK, relayed), now);
    let mut net = Net::new(s, r, relayed, cuts);
    net.ends[0].to_send = to_receiver.iter().cloned().collect();
    net.ends[0].close_after = Some(back.len());
    net.ends[1].to_send = back.iter().cloned().collect();
    net
}

fn records() -> Vec<Vec<u8>> {
    vec![
        b"hello".to_vec(),
        Vec::new(),
        vec![7; 100_000],
        (0..=255).collect(),
    ]
}

fn check_intact(net: &Net, to_receiver: &[Vec<u8>], back: &[Vec<u8>]) {
    let got = |i: usize| -> Vec<Vec<u8>> { net.ends[i].got.iter().map(|b| b.to_vec()).collect() };
    assert_eq!(got(1), to_receiver);
    assert_eq!(got(0), back);
}

#[test]
fn a_direct_pair_exchanges_records_both_ways_and_ends_cleanly() {
    let back = vec![br#"{"ack": "ok", "sha256": "00"}"#.to_vec()];
    let mut net = session(&records(), &back, false, vec![]);
    assert_eq!(net.run(), [Ok(()), Ok(())]);
    check_intact(&net, &records(), &back);
}

#[test]
fn a_pair_through_a_relay_exchanges_records_both_ways() {
    let back = vec![b"ack".to_vec()];
    let mut net = session(&records(), &back, true, vec![]);
    assert_eq!(net.run(), [Ok(()), Ok(())]);
    assert!(net.relay.as_ref().unwrap().paired);
    check_intact(&net, &records(), &back);
}

#[test]
fn bytes_fed_one_at_a_time_change_nothing() {
    for relayed in [false, true] {
        let small = vec![b"one".to_vec(), vec![9; 300], Vec::new()];
        let back = vec![b"ack".to_vec()];
        let mut net = session(&small, &back, relayed, vec![1]);
        assert_eq!(net.run(), [Ok(()), Ok(())]);
        check_intact(&net, &small, &back);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn records_arrive_intact_whatever_the_cuts(
        small in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..3000), 0..6),
        // Now and then one record larger than a read (64 KiB), whose
        // buffer grows as its bytes arrive.
        large in proptest::option::weighted(0.25, 64_000usize..200_000),
        back in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 0..3),
        cuts in proptest::collection::vec(1usize..20_000, 1..16),
        relayed in any::<bool>(),
    ) {
        let mut to_receiver = small;
        if let Some(len) = large {
            let at = len % (to_receiver.len() + 1);
            to_receiver.insert(at, (0..len).map(|i| (i % 239) as u8).collect());
        }
        let mut net = session(&to_receiver, &back, relayed, cuts);
        prop_assert_eq!(net.run(), [Ok(()), Ok(())]);
        check_intact(&net, &to_receiver, &back);
    }
}

#[test]
fn a_wrong_transit_key_fails_both_sides_before_any_record() {
    let now = Instant::now();
    let s = Transit::new(config(Role::Sender, &TK, false), now);
    let r = Transit::new(config(Role::Receiver, &[0x43; 32], false), now);
    let mut net = Net::new(s, r, false, vec![]);
    net.ends[0].to_send = records().into();
    let bad = transit_err(reasons::BAD_HANDSHAKE);
    assert_eq!(net.run(), [bad.clone(), bad]);
    for end in &net.ends {
        assert!(!end.connected, "Connected with the wrong key");
        assert!(end.got.is_empty());
    }
}

#[test]
fn through_a_relay_a_wrong_key_is_never_paired_and_times_out() {
    let now = Instant::now();
    let mut s = Transit::new(config(Role::Sender, &TK, true), now);
    let mut r = Transit::new(config(Role::Receiver, &[0x43; 32], true), now);
    // A relay pairs equal tokens only: each waits for its ok in vain.
    let (a, b) = (drain(&mut s), drain(&mut r));
    assert_ne!(a[..a.len() - 17], b[..b.len() - 17], "different tokens");
    let later = now + Duration::from_secs(60);
    for m in [&mut s, &mut r] {
        assert_eq!(m.poll_timeout(), Some(later));
        m.handle_timeout(later);
        assert_eq!(done(m), transit_err(reasons::HANDSHAKE_TIMEOUT));
    }
}

fn drain(m: &mut Transit) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        match m.poll_output() {
            Output::Transmit(b) => out.extend_from_slice(&b),
            Output::Event(_) => {}
            Output::Wait(_) | Output::Done(_) => return out,
        }
    }
}

fn done(m: &mut Transit) -> Result<(), Error> {
    loop {
        match m.poll_output() {
            Output::Done(r) => return r,
            Output::Wait(_) => panic!("not done"),
            _ => {}
        }
    }
}

fn events(m: &mut Transit) -> Vec<TransitEvent> {
    let mut out = Vec::new();
    loop {
        match m.poll_output() {
            Output::Event(e) => out.push(e),
            Output::Transmit(_) => {}
            Output::Wait(_) | Output::Done(_) => return out,
        }
    }
}

/// A sender and a receiver past `go`, directly connected.
fn open_pair() -> (Transit, Transit, Instant) {
    let now = Instant::now();
    let mut s = Transit::new(config(Role::Sender, &TK, false), now);
    let mut r = Transit::new(config(Role::Receiver, &TK, false), now);
    let (to_r, to_s) = (drain(&mut s), drain(&mut r));
    s.handle_input(now, &to_s).unwrap();
    assert_eq!(events(&mut s), vec![TransitEvent::Connected]);
    s.go().unwrap();
    r.handle_input(now, &to_r).unwrap();
    r.handle_input(now, &drain(&mut s)).unwrap();
    assert_eq!(events(&mut r), vec![TransitEvent::Connected]);
    (s, r, now)
}

/// The sender's next records on the wire, one `Vec` each.
fn sealed(s: &mut Transit, plains: &[&[u8]]) -> Vec<Vec<u8>> {
    plains
        .iter()
        .map(|p| {
            s.send_record(p).unwrap();
            drain(s)
        })
        .collect()
}

#[test]
fn a_tampered_record_fails_the_receiver_and_is_not_delivered() {
    let (mut s, mut r, now) = open_pair();
    let recs = sealed(&mut s, &[b"fine", b"altered"]);
    r.handle_input(now, &recs[0]).unwrap();
    let mut bad = recs[1].clone();
    let last = bad.len() - 1;
    bad[last] ^= 0x80;
    let fail = transit_err(reasons::NOT_AUTHENTIC);
    assert_eq!(r.handle_input(now, &bad).map(drop), fail);
    assert_eq!(
        events(&mut r),
        vec![TransitEvent::Record(Bytes::from_static(b"fine"))]
    );
    assert_eq!(done(&mut r), fail);
    // A flipped tag byte, and a flipped nonce byte, likewise.
    let (mut s, mut r, now) = open_pair();
    let mut bad = sealed(&mut s, &[b"x"]).remove(0);
    bad[LEN_PREFIX + 24] ^= 1;
    assert_eq!(
        r.handle_input(now, &bad).map(drop),
        transit_err(reasons::NOT_AUTHENTIC)
    );
    let (mut s, mut r, now) = open_pair();
    let mut bad = sealed(&mut s, &[b"x"]).remove(0);
    bad[LEN_PREFIX + 23] ^= 1;
    assert_eq!(
        r.handle_input(now, &bad).map(drop),
        transit_err(reasons::OUT_OF_ORDER)
    );
}

#[test]
fn a_replayed_or_reordered_record_fails_as_out_of_order() {
    let (mut s, mut r, now) = open_pair();
    let recs = sealed(&mut s, &[b"zero", b"one"]);
    r.handle_input(now, &recs[0]).unwrap();
    let fail = transit_err(reasons::OUT_OF_ORDER);
    assert_eq!(r.handle_input(now, &recs[0]).map(drop), fail, "replayed");
    assert_eq!(events(&mut r).len(), 1);

    let (mut s, mut r, now) = open_pair();
    let recs = sealed(&mut s, &[b"zero", b"one"]);
    assert_eq!(r.handle_input(now, &recs[1]).map(drop), fail, "reordered");
    assert!(events(&mut r).is_empty());

    let (mut s, mut r, now) = open_pair();
    let recs = sealed(&mut s, &[b"zero", b"one", b"two"]);
    r.handle_input(now, &recs[0]).unwrap();
    assert_eq!(r.handle_input(now, &recs[2]).map(drop), fail, "dropped");
}

#[test]
fn an_oversized_length_prefix_fails_as_soon_as_it_arrives() {
    let (_, mut r, now) = open_pair();
    let prefix = u32::MAX.to_be_bytes();
    assert_eq!(
        r.handle_input(now, &prefix).map(drop),
        transit_err(reasons::TOO_LARGE)
    );
    // A smaller limit of the receiver's own is enforced as well.
    let mut cfg = config(Role::Receiver, &TK, false);
    cfg.max_record = 1000;
    let (mut s, _, _) = open_pair();
    let mut r = Transit::new(cfg, now);
    drain(&mut r);
    let mut wire = echoxfer::wormhole::transit::sender_handshake(&TK);
    wire.extend_from_slice(b"go\n");
    r.handle_input(now, &wire).unwrap();
    let rec = sealed(&mut s, &[&[0u8; 1001]]).remove(0);
    assert_eq!(
        &rec[..LEN_PREFIX],
        &((OVERHEAD + 1001) as u32).to_be_bytes()
    );
    assert_eq!(
        r.handle_input(now, &rec[..LEN_PREFIX]).map(drop),
        transit_err(reasons::TOO_LARGE)
    );
}

#[test]
fn garbage_instead_of_a_handshake_fails_either_side() {
    let now = Instant::now();
    for role in [Role::Sender, Role::Receiver] {
        for garbage in [
            &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            b"transit sender 00",
            b"transit receiver 00",
            b"\x00\x00\x00\x28",
        ] {
            let mut m = Transit::new(config(role, &TK, false), now);
            drain(&mut m);
            let _ = m.handle_input(now, garbage);
            assert_eq!(
                done(&mut m),
                transit_err(reasons::BAD_HANDSHAKE),
                "{role:?} {garbage:?}"
            );
        }
    }
    // A side's own handshake reflected back (an echo server) is wrong too.
    let mut m = Transit::new(config(Role::Sender, &TK, false), now);
    let mine = drain(&mut m);
    let _ = m.handle_input(now, &mine);
    assert_eq!(done(&mut m), transit_err(reasons::BAD_HANDSHAKE));
}
