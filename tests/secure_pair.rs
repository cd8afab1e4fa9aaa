//! The secure channel in memory: `Secure<Sender>` against `Secure<Receiver>`
//! over the cutting pair, and over a tampering link that drops, duplicates,
//! reorders or flips bytes and records, records what crossed, or puts a
//! man in the middle.

use std::time::{Duration, Instant};

use bytes::Bytes;
use echoxfer::driver::{App, DriverError};
use echoxfer::echo;
use echoxfer::error::CodecError;
use echoxfer::secure::{Secure, SecureConfig};
use echoxfer::testing::fuzz::{small_limits, small_transfer};
use echoxfer::testing::wire::{CONFIRM_LEN, HELLO_LEN, RECORD_HEADER, TAG_LEN};
use echoxfer::testing::{Cutter, MemDisk, MemReceiver, MemSender, Pair};
use echoxfer::xfer::{Receiver, ReceiverRole, SafeName, Sender};
use echoxfer::{Error, Machine, Output, ProtocolError, SecureError, StreamMachine};
use proptest::prelude::*;

const CODE: &[u8] = b"7-crossover-clockwork";
const NAME: &str = "secret-plans.txt";
/// Where records begin in either direction: after the hello and the confirmation.
const HANDSHAKE: usize = HELLO_LEN + CONFIRM_LEN;

fn seed(n: u8) -> [u8; 32] {
    [n; 32]
}

fn sender_app(content: &Bytes) -> MemSender {
    let name = SafeName::new(NAME.as_bytes(), 255).unwrap();
    MemSender::new([(name, content.clone())])
}

fn secure_sender(app: &MemSender, code: &[u8], cfg: SecureConfig, now: Instant) -> Secure<Sender> {
    let m = Sender::new(app.role(small_transfer()), small_limits(), now);
    Secure::client(m, code, cfg, now, seed(1))
}

fn secure_receiver(code: &[u8], cfg: SecureConfig, now: Instant, s: u8) -> Secure<Receiver> {
    let m = Receiver::new(ReceiverRole::new(small_transfer()), small_limits(), now);
    Secure::server(m, code, cfg, now, seed(s))
}

fn is_integrity(r: &Result<(), DriverError>) -> bool {
    matches!(
        r,
        Err(DriverError::Machine(Error::Secure(
            SecureError::Integrity(_) | SecureError::Truncated
        )))
    )
}

fn is_wrong_code(r: &Result<(), DriverError>) -> bool {
    matches!(
        r,
        Err(DriverError::Machine(Error::Secure(SecureError::WrongCode)))
    )
}

/// One side of the hand-made link: its machine, its app, and what it ended with.
struct End<M, P> {
    m: M,
    app: P,
    done: Option<Result<(), Error>>,
    /// What it sent and the link has not taken yet.
    outbox: Vec<u8>,
}

impl<M: StreamMachine, P: App<M>> End<M, P> {
    fn new(m: M, app: P) -> Self {
        End {
            m,
            app,
            done: None,
            outbox: Vec::new(),
        }
    }

    /// Drains the machine; returns what it sent (and what it sent since
    /// the last call).
    fn drain(&mut self, now: Instant) -> Vec<u8> {
        self.pump(now);
        std::mem::take(&mut self.outbox)
    }

    /// Drains the machine into the outbox.
    fn pump(&mut self, now: Instant) {
        let out = &mut self.outbox;
        for _ in 0..1_000_000 {
            match self.m.poll_output() {
                Output::Transmit(b) => out.extend_from_slice(&b),
                Output::Event(e) => {
                    if let Err(e) = self.app.on_event(&mut self.m, now, e) {
                        self.m.abort(e.to_string());
                    }
                }
                Output::Wait(_) => return,
                Output::Done(r) => {
                    self.done.get_or_insert(r);
                    return;
                }
            }
        }
        panic!("machine did not settle");
    }

    /// Feeds `bytes` in pieces of at most `piece`, as the machine has room.
    fn feed(&mut self, now: Instant, mut bytes: &[u8], piece: usize) {
        while !bytes.is_empty() && self.done.is_none() {
            let n = bytes.len().min(piece).min(self.m.input_room());
            if n == 0 {
                return;
            }
            let _ = self.m.handle_input(now, &bytes[..n]);
            bytes = &bytes[n..];
            // Drains between pieces: output makes room.
            self.pump(now);
        }
    }
}

/// What the link does to the A-to-B stream.
#[derive(Debug, Clone, Copy)]
enum Tamper {
    None,
    FlipByte(usize),
    DropByte(usize),
    DupByte(usize),
    SwapBytes(usize),
    DropRecord(usize),
    DupRecord(usize),
    SwapRecords(usize),
}

/// Applies a [`Tamper`] to a whole stream (the link holds back nothing
/// else: it runs on everything A has sent so far, and forwards the new part).
fn tampered(stream: &[u8], t: Tamper) -> Vec<u8> {
    let mut s = stream.to_vec();
    match t {
        Tamper::None => {}
        Tamper::FlipByte(n) if n < s.len() => s[n] ^= 0x20,
        Tamper::DropByte(n) if n < s.len() => {
            s.remove(n);
        }
        Tamper::DupByte(n) if n < s.len() => s.insert(n, s[n]),
        // Swapping equal bytes (the zeros of a length) would change nothing.
        Tamper::SwapBytes(n) if n + 1 < s.len() && s[n] == s[n + 1] => s[n] ^= 0x20,
        Tamper::SwapBytes(n) if n + 1 < s.len() => s.swap(n, n + 1),
        Tamper::DropRecord(i) | Tamper::DupRecord(i) | Tamper::SwapRecords(i) => {
            s = tamper_records(&s, t, i)
        }
        _ => {}
    }
    s
}

/// Splits the stream after the handshake into whole records and drops,
/// duplicates or swaps record `i` (with `i + 1`); a partial tail stays.
fn tamper_records(s: &[u8], t: Tamper, i: usize) -> Vec<u8> {
    let mut records: Vec<&[u8]> = Vec::new();
    let mut at = HANDSHAKE.min(s.len());
    while at + RECORD_HEADER <= s.len() {
        let len = u32::from_be_bytes([0, s[at + 1], s[at + 2], s[at + 3]]) as usize;
        let end = at + RECORD_HEADER + len + TAG_LEN;
        if end > s.len() {
            break;
        }
        records.push(&s[at..end]);
        at = end;
    }
    match t {
        Tamper::DropRecord(_) if i < records.len() => {
            records.remove(i);
        }
        Tamper::DupRecord(_) if i < records.len() => records.insert(i, records[i]),
        // Only once both are whole: a swap of a record with nothing is no swap.
        Tamper::SwapRecords(_) if i + 1 < records.len() => records.swap(i, i + 1),
        _ => {}
    }
    let mut out = s[..HANDSHAKE.min(s.len())].to_vec();
    out.extend(records.concat());
    out.extend_from_slice(&s[at..]);
    out
}

/// Everything that crossed a hand-made link, each way.
#[derive(Default)]
struct Wire {
    a_to_b: Vec<u8>,
    b_to_a: Vec<u8>,
}

/// Runs A and B over a link cut into pieces of at most `piece` bytes,
/// applying `t` to the A-to-B stream, until both are done. Returns what
/// crossed (after tampering).
fn run_link<A: StreamMachine, PA: App<A>, B: StreamMachine, PB: App<B>>(
    a: &mut End<A, PA>,
    b: &mut End<B, PB>,
    t: Tamper,
    piece: usize,
) -> Wire {
    let now = Instant::now();
    let mut sent_by_a = Vec::new();
    let mut wire = Wire::default();
    let (mut a_eof, mut b_eof) = (false, false);
    let mut later = now;
    for _ in 0..100_000 {
        let before = (
            sent_by_a.len(),
            wire.b_to_a.len(),
            a.done.is_some(),
            b.done.is_some(),
        );
        sent_by_a.extend(a.drain(now));
        // The link only forwards what it will not change any more: with a
        // record tamper, whole records; the rest once A is done.
        let view = tampered(&sent_by_a, t);
        let ready = if a.done.is_some() {
            view.len()
        } else {
            stable_len(&view, t)
        };
        if ready > wire.a_to_b.len() {
            let new = view[wire.a_to_b.len()..ready].to_vec();
            wire.a_to_b.extend_from_slice(&new);
            b.feed(now, &new, piece);
        }
        let from_b = b.drain(now);
        wire.b_to_a.extend_from_slice(&from_b);
        a.feed(now, &from_b, piece);
        if a.done.is_some() && a.outbox.is_empty() && !b_eof && ready == view.len() {
            b_eof = true;
            b.m.handle_eof(now);
        }
        if b.done.is_some() && b.outbox.is_empty() && !a_eof {
            a_eof = true;
            a.m.handle_eof(now);
        }
        if a.done.is_some() && b.done.is_some() {
            return wire;
        }
        let after = (
            sent_by_a.len(),
            wire.b_to_a.len(),
            a.done.is_some(),
            b.done.is_some(),
        );
        if before == after {
            // Stalled: only timers are left. A's first, so that its end
            // (and whatever it still sends) reaches B before B's timers.
            later += Duration::from_secs(3600);
            a.m.handle_timeout(later);
            let more = a.drain(later);
            if more.is_empty() {
                b.m.handle_timeout(later);
            }
            sent_by_a.extend(more);
        }
    }
    panic!("link did not settle");
}

/// How much of the tampered view is final: before the byte tamper's
/// position (plus one, for a swap), or, for a record tamper, up to record
/// `i` until the records it needs are whole (`i` for a drop or a
/// duplicate, `i + 1` for a swap).
fn stable_len(view: &[u8], t: Tamper) -> usize {
    let (i, needed) = match t {
        Tamper::None => return view.len(),
        Tamper::FlipByte(n) | Tamper::DropByte(n) | Tamper::DupByte(n) | Tamper::SwapBytes(n) => {
            return if view.len() > n + 2 {
                view.len()
            } else {
                view.len().min(n)
            };
        }
        Tamper::DropRecord(i) | Tamper::DupRecord(i) => (i, i + 1),
        Tamper::SwapRecords(i) => (i, i + 2),
    };
    let ends = record_ends(view);
    if ends.len() >= needed {
        return view.len();
    }
    // Everything before record `i` is final.
    match i.checked_sub(1) {
        None => HANDSHAKE.min(view.len()),
        Some(before) => ends.get(before).copied().unwrap_or(view.len()),
    }
}

/// Where each whole record after the handshake ends.
fn record_ends(s: &[u8]) -> Vec<usize> {
    let mut ends = Vec::new();
    let mut at = HANDSHAKE.min(s.len());
    while at + RECORD_HEADER <= s.len() {
        let len = u32::from_be_bytes([0, s[at + 1], s[at + 2], s[at + 3]]) as usize;
        let end = at + RECORD_HEADER + len + TAG_LEN;
        if end > s.len() {
            break;
        }
        ends.push(end);
        at = end;
    }
    ends
}

/// Both ends of a transfer after it, and what crossed.
type Transfer = (
    End<Secure<Sender>, MemSender>,
    End<Secure<Receiver>, MemReceiver>,
    Wire,
);

/// A secure transfer of `content` over the hand-made link.
fn transfer(content: &Bytes, t: Tamper, piece: usize, cfg: SecureConfig) -> Transfer {
    let now = Instant::now();
    let tx = sender_app(content);
    let mut a = End::new(secure_sender(&tx, CODE, cfg.clone(), now), tx);
    let mut b = End::new(
        secure_receiver(CODE, cfg, now, 2),
        MemReceiver::new(MemDisk::default(), false),
    );
    let wire = run_link(&mut a, &mut b, t, piece);
    (a, b, wire)
}

fn content_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(Vec::new()),
        prop::collection::vec(any::<u8>(), 0..3000),
        (5000usize..40_000).prop_map(|n| (0..n).map(|i| (i * 7 % 251) as u8).collect()),
    ]
}

fn record_config(max_record: usize) -> SecureConfig {
    SecureConfig {
        max_record,
        ..SecureConfig::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Invariant: over the cutting pair, any content arrives byte-identical
    /// through the secure channel, whatever the record size.
    #[test]
    fn any_content_arrives_identical_through_the_secure_channel(
        data in content_strategy(),
        cut_seed in any::<u64>(),
        piece in 1usize..3000,
        max_record in prop_oneof![Just(65_536usize), 1usize..2000],
    ) {
        let data = Bytes::from(data);
        let now = Instant::now();
        let mut tx = sender_app(&data);
        let mut rx = MemReceiver::new(MemDisk::default(), false);
        let a = secure_sender(&tx, CODE, record_config(max_record), now);
        let b = secure_receiver(CODE, record_config(max_record), now, 2);
        let mut pair = Pair::new(a, b, now, Cutter::random(cut_seed, piece));
        let outcome = pair.run(&mut tx, &mut rx, 1_000_000).expect("bounded");
        prop_assert!(outcome.a.is_ok(), "{:?}", outcome.a);
        prop_assert!(outcome.b.is_ok(), "{:?}", outcome.b);
        prop_assert_eq!(rx.disk.files.get(NAME).map(Vec::as_slice), Some(&data[..]));
        prop_assert_eq!(tx.delivered.clone(), vec![(0, *blake3::hash(&data).as_bytes())]);
    }

    /// Invariant: one flipped, dropped, duplicated or swapped byte after the
    /// handshake, within the file's data, ends the receiver's session with
    /// an integrity error and never leaves a file under its final name.
    #[test]
    fn one_altered_byte_after_the_handshake_is_an_integrity_error_and_no_final_file(
        kind in 0u8..4,
        at in 60usize..2000,
        piece in 1usize..3000,
    ) {
        let data = Bytes::from(vec![b'x'; 5000]);
        let n = HANDSHAKE + at;
        let t = [Tamper::FlipByte(n), Tamper::DropByte(n), Tamper::DupByte(n), Tamper::SwapBytes(n)][kind as usize];
        let (_, b, _) = transfer(&data, t, piece, record_config(1024));
        let r = b.done.clone().map(|r| r.map_err(DriverError::from)).expect("done");
        prop_assert!(is_integrity(&r), "{:?} gave {:?}", t, r);
        prop_assert!(b.app.disk.files.is_empty(), "{:?} left a final file", t);
        prop_assert!(b.app.saved.is_empty());
        // The peer proved the code before the alteration: a failure after
        // that is no guess, and the channel still says so.
        prop_assert!(b.m.is_confirmed(), "{:?}: confirmation forgotten", t);
    }

    /// Invariant: one dropped, duplicated or reordered record (of those
    /// before the file's end) ends the receiver's session with an
    /// integrity error and never leaves a file under its final name.
    #[test]
    fn one_dropped_duplicated_or_reordered_record_is_an_integrity_error_and_no_final_file(
        kind in 0u8..3,
        i in 1usize..4,
        piece in 1usize..3000,
    ) {
        let data = Bytes::from(vec![b'y'; 6000]);
        let t = [Tamper::DropRecord(i), Tamper::DupRecord(i), Tamper::SwapRecords(i)][kind as usize];
        let (_, b, _) = transfer(&data, t, piece, record_config(1024));
        let r = b.done.clone().map(|r| r.map_err(DriverError::from)).expect("done");
        prop_assert!(is_integrity(&r), "{:?} gave {:?}", t, r);
        prop_assert!(b.app.disk.files.is_empty(), "{:?} left a final file", t);
    }
}

#[test]
fn the_tampering_link_changes_nothing_when_told_to_change_nothing() {
    // The control for the tamper properties: the same link, untouched, delivers.
    let data = Bytes::from(vec![b'x'; 5000]);
    let (a, b, _) = transfer(&data, Tamper::None, 700, record_config(1024));
    assert_eq!(a.done, Some(Ok(())));
    assert_eq!(b.done, Some(Ok(())));
    assert_eq!(b.app.disk.files.get(NAME).map(Vec::len), Some(5000));
}

#[test]
fn a_wrong_code_fails_the_handshake_on_both_sides_before_any_offer_is_seen() {
    let now = Instant::now();
    let mut tx = sender_app(&Bytes::from_static(b"content"));
    let mut rx = MemReceiver::new(MemDisk::default(), false);
    let a = secure_sender(&tx, b"7-crossover-clockwork", SecureConfig::default(), now);
    let b = secure_receiver(b"7-crossover-clockwerk", SecureConfig::default(), now, 2);
    let mut pair = Pair::new(a, b, now, Cutter::random(3, 17));
    let outcome = pair.run(&mut tx, &mut rx, 100_000).expect("bounded");
    assert!(is_wrong_code(&outcome.a), "{:?}", outcome.a);
    assert!(is_wrong_code(&outcome.b), "{:?}", outcome.b);
    assert!(outcome.a.unwrap_err().to_string().starts_with("wrong code"));
    assert!(
        rx.offers.is_empty(),
        "an offer got through: {:?}",
        rx.offers
    );
    assert!(!pair.a.is_confirmed() && !pair.b.is_confirmed());
}

#[test]
fn a_recorded_session_replayed_to_a_new_receiver_fails_before_any_offer() {
    let data = Bytes::from(vec![b'r'; 3000]);
    let (_, b, wire) = transfer(&data, Tamper::None, 4096, SecureConfig::default());
    assert_eq!(b.done, Some(Ok(())), "the recorded session itself worked");
    // The same code, a new receiver (new randomness): the old client's
    // confirmation does not match the new exchange.
    let now = Instant::now();
    let mut fresh = End::new(
        secure_receiver(CODE, SecureConfig::default(), now, 9),
        MemReceiver::new(MemDisk::default(), false),
    );
    fresh.drain(now);
    fresh.feed(now, &wire.a_to_b, 1000);
    fresh.m.handle_eof(now);
    fresh.drain(now);
    let r = fresh.done.clone().expect("done").map_err(DriverError::from);
    assert!(is_wrong_code(&r), "{r:?}");
    assert!(fresh.app.offers.is_empty() && fresh.app.disk.files.is_empty());
}

/// A man in the middle that does not know the code: it answers each real
/// side with its own exchange, under its best guess.
#[test]
fn a_man_in_the_middle_without_the_code_learns_nothing_and_completes_neither_side() {
    let data = Bytes::from(format!("the content of {NAME}: launch at dawn").into_bytes());
    let now = Instant::now();
    let tx = sender_app(&data);
    let mut client = End::new(secure_sender(&tx, CODE, SecureConfig::default(), now), tx);
    let mut server = End::new(
        secure_receiver(CODE, SecureConfig::default(), now, 2),
        MemReceiver::new(MemDisk::default(), false),
    );
    let guess = b"1-guess-guess";
    // The attacker's two faces: a receiver toward the client, a sender toward the server.
    let fake_tx = sender_app(&Bytes::from_static(b"forged"));
    let mut to_server = End::new(
        secure_sender(&fake_tx, guess, SecureConfig::default(), now),
        fake_tx,
    );
    let mut to_client = End::new(
        secure_receiver(guess, SecureConfig::default(), now, 5),
        MemReceiver::new(MemDisk::default(), false),
    );
    let w1 = run_link(&mut client, &mut to_client, Tamper::None, 64);
    let w2 = run_link(&mut to_server, &mut server, Tamper::None, 64);
    for r in [&client.done, &server.done] {
        let r = r.clone().expect("done").map_err(DriverError::from);
        assert!(is_wrong_code(&r), "{r:?}");
    }
    assert!(
        to_client.app.offers.is_empty(),
        "the client offered to the attacker"
    );
    assert!(server.app.offers.is_empty() && server.app.disk.files.is_empty());
    for bytes in [&w1.a_to_b, &w1.b_to_a, &w2.a_to_b, &w2.b_to_a] {
        assert!(!contains(bytes, &data) && !contains(bytes, NAME.as_bytes()));
    }

    // A passive listener on a good session sees neither content nor name.
    let (_, b, wire) = transfer(&data, Tamper::None, 4096, SecureConfig::default());
    assert_eq!(b.app.disk.files.get(NAME), Some(&data.to_vec()));
    for bytes in [&wire.a_to_b, &wire.b_to_a] {
        assert!(!contains(bytes, &data[..16]) && !contains(bytes, NAME.as_bytes()));
        assert!(
            !contains(bytes, b"EXFR"),
            "the plaintext preamble crossed in clear"
        );
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn a_plaintext_peer_and_a_secure_one_each_get_a_typed_mismatch() {
    let now = Instant::now();
    let mut tx = sender_app(&Bytes::from_static(b"content"));
    let mut rx = MemReceiver::new(MemDisk::default(), false);
    let a = secure_sender(&tx, CODE, SecureConfig::default(), now);
    let b = Receiver::new(ReceiverRole::new(small_transfer()), small_limits(), now);
    let mut pair = Pair::new(a, b, now, Cutter::random(4, 3));
    let outcome = pair.run(&mut tx, &mut rx, 100_000).expect("bounded");
    assert!(
        matches!(
            outcome.a,
            Err(DriverError::Machine(Error::Secure(
                SecureError::PeerIsPlaintext
            )))
        ),
        "{:?}",
        outcome.a
    );
    assert!(
        matches!(
            outcome.b,
            Err(DriverError::Machine(Error::Remote(ProtocolError::Codec(
                CodecError::PeerExpectsEncryption
            ))))
        ),
        "{:?}",
        outcome.b
    );
    assert!(rx.offers.is_empty());
}

#[test]
fn a_silent_peer_fails_the_handshake_at_its_timeout() {
    let now = Instant::now();
    let cfg = SecureConfig {
        handshake_timeout: Duration::from_secs(3),
        ..SecureConfig::default()
    };
    let mut m = secure_receiver(CODE, cfg, now, 2);
    assert!(matches!(m.poll_output(), Output::Transmit(h) if h.len() == HELLO_LEN));
    assert_eq!(
        m.poll_output(),
        Output::Wait(Some(now + Duration::from_secs(3)))
    );
    m.handle_timeout(now + Duration::from_secs(2));
    assert!(matches!(m.poll_output(), Output::Wait(_)), "early");
    m.handle_timeout(now + Duration::from_secs(3));
    assert_eq!(
        m.poll_output(),
        Output::Done(Err(
            SecureError::HandshakeTimeout(Duration::from_secs(3)).into()
        ))
    );
}

#[test]
fn a_connection_cut_after_the_handshake_is_a_truncation_not_a_clean_end() {
    let data = Bytes::from(vec![b'c'; 20_000]);
    for cut_at in [HANDSHAKE + 10, HANDSHAKE + 5000] {
        let now = Instant::now();
        let mut tx = sender_app(&data);
        let mut rx = MemReceiver::new(MemDisk::default(), false);
        let a = secure_sender(&tx, CODE, record_config(1024), now);
        let b = secure_receiver(CODE, record_config(1024), now, 2);
        let mut pair = Pair::new(a, b, now, Cutter::random(5, 999)).cut_after(cut_at as u64);
        let outcome = pair.run(&mut tx, &mut rx, 1_000_000).expect("bounded");
        assert!(is_integrity(&outcome.b), "{:?}", outcome.b);
        assert!(rx.disk.files.is_empty());
    }
}

#[test]
fn no_plaintext_goes_out_and_nothing_reaches_the_inner_machine_before_both_confirmations() {
    let now = Instant::now();
    let tx = sender_app(&Bytes::from_static(b"content"));
    let mut a = secure_sender(&tx, CODE, SecureConfig::default(), now);
    let mut b = secure_receiver(CODE, SecureConfig::default(), now, 2);
    // Before the peer's hello, only the hello goes out.
    let first: Vec<Bytes> = std::iter::from_fn(|| match a.poll_output() {
        Output::Transmit(t) => Some(t),
        _ => None,
    })
    .collect();
    assert_eq!(first.len(), 1);
    assert_eq!(&first[0][..4], b"EXFS");
    let b_hello = match b.poll_output() {
        Output::Transmit(t) => t,
        other => panic!("{other:?}"),
    };
    // With the peer's hello, only the confirmation follows.
    a.handle_input(now, &b_hello).unwrap();
    let confirm = match a.poll_output() {
        Output::Transmit(t) => t,
        other => panic!("{other:?}"),
    };
    assert_eq!(confirm.len(), CONFIRM_LEN);
    assert!(
        matches!(a.poll_output(), Output::Wait(_)),
        "the sender's offer is held"
    );
    assert!(!a.is_confirmed());
    assert_eq!(a.inner().buffered(), 0);
}

#[test]
fn a_guess_is_spent_once_the_peers_hello_arrived_and_not_after_its_confirmation() {
    let now = Instant::now();
    let tx = sender_app(&Bytes::from_static(b"content"));
    let mut client = secure_sender(&tx, b"1-wrong-guess", SecureConfig::default(), now);
    let mut server = secure_receiver(CODE, SecureConfig::default(), now, 2);
    let hello = |m: &mut dyn FnMut() -> Output<Bytes, _>| match m() {
        Output::Transmit(t) => t,
        other => panic!("{other:?}"),
    };
    let client_hello = hello(&mut || client.poll_output());
    assert!(!server.failed_guess(), "nothing arrived yet");
    // The guesser's hello arrives; the server's confirmation goes out, and
    // the guesser resets: no error of the channel's says so, the machine must.
    server.handle_input(now, &client_hello).unwrap();
    while let Output::Transmit(_) = server.poll_output() {}
    assert!(server.error().is_none());
    assert!(
        server.failed_guess(),
        "the confirmation went out unanswered"
    );
    assert!(
        !client.failed_guess(),
        "the client never got the server's hello"
    );

    // An honest session, cut after the handshake (a truncation): no guess.
    let data = Bytes::from(vec![b'h'; 20_000]);
    let mut tx = sender_app(&data);
    let mut rx = MemReceiver::new(MemDisk::default(), false);
    let a = secure_sender(&tx, CODE, record_config(1024), now);
    let b = secure_receiver(CODE, record_config(1024), now, 2);
    let cut = (HANDSHAKE + 5000) as u64;
    let mut pair = Pair::new(a, b, now, Cutter::random(5, 999)).cut_after(cut);
    let outcome = pair.run(&mut tx, &mut rx, 1_000_000).expect("bounded");
    assert!(is_integrity(&outcome.b), "{:?}", outcome.b);
    assert!(!pair.b.failed_guess() && !pair.a.failed_guess());
}

/// Drains `m`'s output onto `wire`; returns its events and whether it
/// ended (cleanly).
fn drain_into<M: StreamMachine>(m: &mut M, wire: &mut Vec<u8>) -> (Vec<M::Event>, bool) {
    let mut events = Vec::new();
    loop {
        match m.poll_output() {
            Output::Transmit(bytes) => wire.extend_from_slice(&bytes),
            Output::Event(e) => events.push(e),
            Output::Wait(_) => return (events, false),
            Output::Done(r) => {
                r.expect("a clean end");
                return (events, true);
            }
        }
    }
}

/// Hands `m` as much of `wire` as it takes now.
fn feed_some<M: StreamMachine>(m: &mut M, wire: &mut Vec<u8>, now: Instant) {
    let n = m.input_room().min(wire.len());
    m.handle_input(now, &wire[..n]).expect("taken");
    wire.drain(..n);
}

/// The plaintext lengths of the records in `wire`, after the handshake.
fn record_lengths(wire: &[u8]) -> Vec<usize> {
    let mut at = HELLO_LEN + CONFIRM_LEN;
    let mut lengths = Vec::new();
    while at + RECORD_HEADER <= wire.len() {
        let len = u32::from_be_bytes([0, wire[at + 1], wire[at + 2], wire[at + 3]]) as usize;
        lengths.push(len);
        at += RECORD_HEADER + len + TAG_LEN;
    }
    assert_eq!(at, wire.len(), "the wire ends on a record boundary");
    lengths
}

/// A file chunk is encrypted straight from where it is, into whole
/// records of its own (the frame header before it goes in a record of its
/// own): it is never gathered with other output first. The content
/// arrives intact.
#[test]
fn a_large_chunk_is_sealed_from_where_it_is_in_whole_records_and_arrives_intact() {
    use echoxfer::testing::wire::RECORD_LIMIT;
    use echoxfer::xfer::{FileSpec, ReceiverEvent, Resume, SenderEvent, SenderRole};
    use echoxfer::{SessionLimits, TransferConfig};
    let now = Instant::now();
    let size = 3 * RECORD_LIMIT + 3392;
    let name = SafeName::new(NAME.as_bytes(), 64).unwrap();
    let files = vec![FileSpec::file(name, size as u64)];
    let role = SenderRole::new(files, TransferConfig::default());
    let sender = Sender::new(role, SessionLimits::default(), now);
    let mut a = Secure::client(sender, CODE, SecureConfig::default(), now, seed(1));
    let role = ReceiverRole::new(TransferConfig::default());
    let receiver = Receiver::new(role, SessionLimits::default(), now);
    let mut b = Secure::server(receiver, CODE, SecureConfig::default(), now, seed(2));
    let content: Vec<u8> = (0..size).map(|i| (i % 241) as u8).collect();
    let (mut to_a, mut to_b, mut received, mut sent) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut chunks = 0;
    let mut sender_done = false;
    for _ in 0..1000 {
        let from = to_b.len();
        let (events, done) = drain_into(&mut a, &mut to_b);
        sent.extend_from_slice(&to_b[from..]);
        sender_done |= done;
        for e in events {
            if let SenderEvent::Read {
                offset,
                len,
                request,
                ..
            } = e
            {
                assert_eq!(len, size, "one read for the whole file");
                let chunk = Bytes::from(content[offset as usize..][..len].to_vec());
                chunks += 1;
                a.push_chunk(request, chunk).unwrap();
            }
        }
        feed_some(&mut b, &mut to_b, now);
        let (events, _) = drain_into(&mut b, &mut to_a);
        for e in events {
            match e {
                ReceiverEvent::Offer { request, .. } => b.accept(request, Resume::Fresh).unwrap(),
                ReceiverEvent::Write { data, .. } => received.extend_from_slice(&data),
                ReceiverEvent::Verified { request, .. } => b.saved(request).unwrap(),
                _ => {}
            }
        }
        feed_some(&mut a, &mut to_a, now);
        if sender_done && to_b.is_empty() {
            break;
        }
    }
    assert_eq!(received, content);
    assert_eq!(b.role().files_saved(), 1);
    assert_eq!(chunks, 1);
    let lengths = record_lengths(&sent);
    let whole = [RECORD_LIMIT, RECORD_LIMIT, RECORD_LIMIT, 3392];
    assert!(
        lengths.windows(4).any(|w| w == whole),
        "the chunk was gathered with other output: records {lengths:?}"
    );
}

/// After its session ends, a side sends its close record and then reads
/// until the peer's arrives (so the peer's last records never meet a
/// reset), for at most `close_timeout`; its result is the session's
/// either way.
#[test]
fn an_ended_side_waits_for_the_peers_close_record_at_most_close_timeout() {
    use echoxfer::xfer::{FileSpec, ReceiverEvent, Resume, SenderEvent, SenderRole};
    use echoxfer::{SessionLimits, TransferConfig};
    for peer_close_arrives in [true, false] {
        let now = Instant::now();
        let cfg = SecureConfig {
            close_timeout: Duration::from_secs(5),
            ..SecureConfig::default()
        };
        let name = SafeName::new(NAME.as_bytes(), 64).unwrap();
        let role = SenderRole::new(vec![FileSpec::file(name, 3)], TransferConfig::default());
        let sender = Sender::new(role, SessionLimits::default(), now);
        let mut a = Secure::client(sender, CODE, cfg.clone(), now, seed(1));
        let role = ReceiverRole::new(TransferConfig::default());
        let receiver = Receiver::new(role, SessionLimits::default(), now);
        let mut b = Secure::server(receiver, CODE, cfg, now, seed(2));
        let (mut to_a, mut to_b) = (Vec::new(), Vec::new());
        let (mut a_done, mut b_done) = (false, false);
        for _ in 0..100 {
            let (events, done) = drain_into(&mut a, &mut to_b);
            a_done |= done;
            for e in events {
                if let SenderEvent::Read { request, .. } = e {
                    a.push_chunk(request, Bytes::from_static(b"abc")).unwrap();
                }
            }
            feed_some(&mut b, &mut to_b, now);
            let (events, done) = drain_into(&mut b, &mut to_a);
            b_done |= done;
            for e in events {
                match e {
                    ReceiverEvent::Offer { request, .. } => {
                        b.accept(request, Resume::Fresh).unwrap()
                    }
                    ReceiverEvent::Verified { request, .. } => b.saved(request).unwrap(),
                    _ => {}
                }
            }
            if b_done && !peer_close_arrives {
                break;
            }
            feed_some(&mut a, &mut to_a, now);
            if a_done && b_done {
                break;
            }
        }
        assert!(
            b_done,
            "the receiver ended (it had the sender's close record)"
        );
        if peer_close_arrives {
            assert!(a_done, "the peer's close record ends the wait");
            continue;
        }
        assert!(!a_done, "the sender waits for the receiver's close record");
        assert_eq!(a.poll_timeout(), Some(now + Duration::from_secs(5)));
        assert_eq!(
            a.poll_output(),
            Output::Wait(Some(now + Duration::from_secs(5)))
        );
        a.handle_timeout(now + Duration::from_secs(5));
        assert_eq!(a.poll_output(), Output::Done(Ok(())));
    }
}

/// A side aborted mid-session (Ctrl-C, a server shutting down) whose
/// driver then shuts its reading side (to wake a blocked read) ends with
/// its abort, not a truncation: the end of input is its own doing. The
/// peer reads why, in a record.
#[test]
fn an_aborted_side_that_meets_the_end_of_input_ends_with_its_abort_and_the_peer_reads_why() {
    let now = Instant::now();
    let data = Bytes::from(vec![b'a'; 900_000]);
    let tx = sender_app(&data);
    let mut a = End::new(secure_sender(&tx, CODE, SecureConfig::default(), now), tx);
    let mut b = End::new(
        secure_receiver(CODE, SecureConfig::default(), now, 2),
        MemReceiver::new(MemDisk::default(), false),
    );
    // The handshake, the offer and its answer, and some data.
    for _ in 0..2 {
        let to_b = a.drain(now);
        b.feed(now, &to_b, 4096);
        let to_a = b.drain(now);
        a.feed(now, &to_a, 4096);
    }
    assert!(
        a.m.is_confirmed() && a.done.is_none() && b.done.is_none(),
        "{:?} {:?}",
        a.done,
        b.done
    );
    assert!(
        b.app.disk.files.is_empty(),
        "the transfer is under way, not over"
    );
    a.m.abort("stopped with Ctrl-C".into());
    a.m.handle_eof(now);
    let last = a.drain(now);
    match &a.done {
        Some(Err(Error::Aborted(reason))) => assert_eq!(reason, "stopped with Ctrl-C"),
        other => panic!("the aborted side ended with {other:?}"),
    }
    b.feed(now, &last, 4096);
    b.m.handle_eof(now);
    b.drain(now);
    let told = b.done.clone().expect("the peer ended");
    assert!(
        matches!(&told, Err(e) if e.to_string().contains("stopped with Ctrl-C")),
        "{told:?}"
    );
    assert!(b.app.disk.files.is_empty());
}

/// Hands `m` everything in `wire` at once, as a transport that delivered
/// it in one read would: it takes what fits (two records' worth for the
/// secure layer) and says how much, never failing for the rest.
fn feed_everything<M: StreamMachine>(m: &mut M, wire: &mut Vec<u8>, now: Instant) {
    let room = m.input_room();
    let taken = m
        .handle_input(now, wire)
        .expect("too much input is never fatal");
    assert_eq!(taken, room.min(wire.len()), "took less than fits");
    wire.drain(..taken);
}

#[test]
fn a_secure_machine_handed_far_more_than_two_records_takes_what_fits_and_the_file_arrives() {
    // An embedder's loop fed 300 KB at once and got InputOverflow for good.
    use echoxfer::xfer::{FileSpec, ReceiverEvent, Resume, SenderEvent, SenderRole};
    use echoxfer::{SessionLimits, TransferConfig};
    let now = Instant::now();
    let size = 1_000_000;
    let name = SafeName::new(NAME.as_bytes(), 64).unwrap();
    let role = SenderRole::new(
        vec![FileSpec::file(name, size as u64)],
        TransferConfig::default(),
    );
    let sender = Sender::new(role, SessionLimits::default(), now);
    let mut a = Secure::client(sender, CODE, SecureConfig::default(), now, seed(1));
    let receiver = Receiver::new(
        ReceiverRole::new(TransferConfig::default()),
        SessionLimits::default(),
        now,
    );
    let mut b = Secure::server(receiver, CODE, SecureConfig::default(), now, seed(2));
    let content: Vec<u8> = (0..size).map(|i| (i % 239) as u8).collect();
    let (mut to_a, mut to_b, mut received) = (Vec::new(), Vec::new(), Vec::new());
    let (mut most_waiting, mut sender_done) = (0, false);
    for _ in 0..10_000 {
        let (events, done) = drain_into(&mut a, &mut to_b);
        sender_done |= done;
        for e in events {
            if let SenderEvent::Read {
                offset,
                len,
                request,
                ..
            } = e
            {
                let chunk = Bytes::from(content[offset as usize..][..len].to_vec());
                a.push_chunk(request, chunk).unwrap();
            }
        }
        most_waiting = most_waiting.max(to_b.len());
        feed_everything(&mut b, &mut to_b, now);
        let (events, _) = drain_into(&mut b, &mut to_a);
        for e in events {
            match e {
                ReceiverEvent::Offer { request, .. } => b.accept(request, Resume::Fresh).unwrap(),
                ReceiverEvent::Write { data, .. } => received.extend_from_slice(&data),
                ReceiverEvent::Verified { request, .. } => b.saved(request).unwrap(),
                _ => {}
            }
        }
        feed_everything(&mut a, &mut to_a, now);
        if sender_done && b.role().files_saved() == 1 {
            break;
        }
    }
    // A secure side holds at most two records (131 112 bytes).
    assert!(
        most_waiting > 200_000,
        "never more than fits was handed over: {most_waiting}"
    );
    assert!(
        received == content,
        "{} of {} bytes arrived intact",
        received.len(),
        size
    );
    assert_eq!(b.role().files_saved(), 1);
}

/// Moves what each side sends to the other until both are quiet or
/// ended; returns the events of each and everything `a` sent. How each
/// ended is left to the caller (`poll_output` keeps saying it).
fn exchange<A: StreamMachine, B: StreamMachine>(
    a: &mut A,
    b: &mut B,
    now: Instant,
) -> (Vec<A::Event>, Vec<B::Event>, Vec<u8>) {
    fn drain<M: StreamMachine>(m: &mut M, wire: &mut Vec<u8>, events: &mut Vec<M::Event>) {
        loop {
            match m.poll_output() {
                Output::Transmit(t) => wire.extend_from_slice(&t),
                Output::Event(e) => events.push(e),
                Output::Wait(_) | Output::Done(_) => return,
            }
        }
    }
    let (mut events_a, mut events_b, mut sent_by_a) = (Vec::new(), Vec::new(), Vec::new());
    let (mut to_a, mut to_b) = (Vec::new(), Vec::new());
    for _ in 0..100 {
        let before = (sent_by_a.len(), to_a.len(), to_b.len());
        let from = to_b.len();
        drain(a, &mut to_b, &mut events_a);
        sent_by_a.extend_from_slice(&to_b[from..]);
        let taken = b.handle_input(now, &to_b).unwrap_or(to_b.len());
        to_b.drain(..taken);
        drain(b, &mut to_a, &mut events_b);
        let taken = a.handle_input(now, &to_a).unwrap_or(to_a.len());
        to_a.drain(..taken);
        if before == (sent_by_a.len(), to_a.len(), to_b.len()) && to_a.is_empty() {
            return (events_a, events_b, sent_by_a);
        }
    }
    panic!("the two sides did not settle");
}

fn echo_pair(now: Instant) -> (echo::Client, echo::Server) {
    use echoxfer::echo::{ClientRole, ServerRole};
    use echoxfer::{EchoConfig, SessionLimits};
    let limits = SessionLimits::default();
    let client = echo::Client::new(ClientRole::new(EchoConfig::default()), limits.clone(), now);
    let server = echo::Server::new(ServerRole::new("hi", EchoConfig::default()), limits, now);
    (client, server)
}

/// `Secure<M>` dereferences to `M`: `M`'s commands are called on the
/// channel (`echo::Client::close` too, though `Secure` has a private method
/// of that name) and their output goes out sealed, while `poll_output`
/// and the other trait methods stay the channel's.
#[test]
fn a_secure_machine_takes_its_inner_machines_commands_and_keeps_the_machine_methods() {
    use echoxfer::echo::ClientEvent;
    let now = Instant::now();
    let (client, server) = echo_pair(now);
    let mut a = Secure::client(client, CODE, SecureConfig::default(), now, seed(1));
    let mut b = Secure::server(server, CODE, SecureConfig::default(), now, seed(2));
    a.send(&b"over the channel"[..]).unwrap();
    a.close().unwrap();
    let (events, _, wire) = exchange(&mut a, &mut b, now);
    assert_eq!(&wire[..4], b"EXFS", "the channel's hello goes first");
    assert!(!contains(&wire, b"over the channel") && !contains(&wire, b"EXFR"));
    assert_eq!(
        events,
        [
            ClientEvent::Greeted(Bytes::from_static(b"hi")),
            ClientEvent::Reply(Bytes::from_static(b"over the channel")),
            ClientEvent::Closed
        ]
    );
    assert_eq!(a.poll_output(), Output::Done(Ok(())));
    assert_eq!(b.poll_output(), Output::Done(Ok(())));
}

/// `error()` on a secure machine is the channel's own (it shadows the
/// inner machine's); the inner machine's is on `inner()`.
#[test]
fn error_on_a_secure_machine_is_the_channels_and_the_inner_machines_is_on_inner() {
    let now = Instant::now();
    let (client, server) = echo_pair(now);
    let mut a = Secure::client(
        client,
        b"another code",
        SecureConfig::default(),
        now,
        seed(1),
    );
    let mut b = Secure::server(server, CODE, SecureConfig::default(), now, seed(2));
    exchange(&mut a, &mut b, now);
    assert_eq!(a.error(), Some(&Error::Secure(SecureError::WrongCode)));
    assert_eq!(a.inner().error(), None, "the echo client never ran");
}

/// A `Channel` given a secret runs behind the secure channel (seeded from
/// the OS) and talks to a secure peer; one given none runs plain and
/// talks to a plain peer. Either way its machine's commands are called on it.
#[test]
fn a_channel_with_a_secret_runs_secure_and_one_without_runs_plain() {
    use echoxfer::echo::ClientEvent;
    use echoxfer::secure::{Channel, Handshake};
    for secret in [Some(CODE), None] {
        let now = Instant::now();
        let (client, server) = echo_pair(now);
        let cfg = SecureConfig::default();
        let mut a = Channel::client(client, secret, cfg.clone(), now).expect("seeded");
        let mut b = Channel::server(server, secret, cfg, now).expect("seeded");
        assert_eq!(a.is_secure(), secret.is_some());
        a.send(&b"hello"[..]).unwrap();
        a.close().unwrap();
        let (events, _, wire) = exchange(&mut a, &mut b, now);
        assert!(events.contains(&ClientEvent::Reply(Bytes::from_static(b"hello"))));
        assert_eq!(a.poll_output(), Output::Done(Ok(())));
        assert_eq!(b.poll_output(), Output::Done(Ok(())));
        match secret {
            Some(_) => {
                assert_eq!(&wire[..4], b"EXFS");
                assert!(!contains(&wire, b"hello"), "the message crossed in clear");
                assert_eq!(a.handshake(), Some(Handshake::Confirmed));
                assert_eq!(b.handshake(), Some(Handshake::Confirmed));
            }
            None => {
                assert!(contains(&wire, b"EXFR") && contains(&wire, b"hello"));
                assert_eq!(a.handshake(), None);
                assert!(!a.failed_guess());
            }
        }
    }
}

/// Two sessions never share a seed.
#[test]
fn os_seeds_are_fresh_each_time() {
    use echoxfer::secure::os_seed;
    let (one, two) = (os_seed().unwrap(), os_seed().unwrap());
    assert_ne!(one, two);
    assert_ne!(one, [0; 32]);
}
