//! The secure channel's harness: a `Secure<Receiver>` fed hostile bytes,
//! raw or after an honest handshake, and a whole secure session whose
//! client-to-server stream the input alters after the handshake.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{drain, small_limits, small_transfer, Input};
use crate::driver::App;
use crate::error::{Error, SecureError};
use crate::machine::{Machine, Output, StreamMachine};
use crate::secure::{Secure, SecureConfig, CONFIRM_LEN, HELLO_LEN, RECORD_LIMIT, TAG_LEN};
use crate::testing::mem::{MemDisk, MemReceiver, MemSender};
use crate::xfer::{Receiver, ReceiverRole, SafeName, Sender};

const CODE: &[u8] = b"4-purple-sausages";
const NAME: &str = "f.bin";
/// The most a secure channel ever holds: two whole records.
const HELD_LIMIT: usize = 2 * (4 + RECORD_LIMIT + TAG_LEN);

fn server(now: Instant) -> Secure<Receiver> {
    let m = Receiver::new(ReceiverRole::new(small_transfer()), small_limits(), now);
    let cfg = SecureConfig {
        max_record: 1024,
        ..SecureConfig::default()
    };
    Secure::server(m, CODE, cfg, now, [3; 32])
}

/// Checks, whatever the input: no panic; input within the room the
/// channel offers, which stays within two records (bounded memory); every
/// drain settles; an EOF always ends in `Done`, and a failure is a typed
/// error of the channel (or the wrapped machine's own, once confirmed);
/// and with the raw input (which cannot know the code) the receiver never
/// sees an offer and the channel never confirms.
pub fn secure(data: &[u8]) {
    let mut input = Input(data);
    match input.byte() % 3 {
        0 => raw(input),
        _ => session(input),
    }
}

/// Hostile bytes from the first byte on, in pieces the input chooses.
fn raw(mut input: Input<'_>) {
    let now = Instant::now();
    let mut m = server(now);
    let mut app = MemReceiver::default();
    let mut t = now;
    while !input.is_empty() {
        let piece = usize::from(input.byte()) + 1;
        t += super::jump(input.byte());
        let bytes = input.take(piece);
        feed(&mut m, &mut app, t, bytes, &mut Vec::new());
        m.handle_timeout(t);
        run_events(&mut m, &mut app, t);
    }
    m.handle_eof(t);
    let done = run_events(&mut m, &mut app, t).expect("EOF ends the session");
    assert!(done.is_err(), "hostile bytes completed a secure session");
    assert!(app.offers.is_empty(), "an offer passed without the code");
    assert!(!m.is_confirmed(), "confirmed without the code");
    assert_typed(&done);
}

/// Feeds `bytes` as the machine has room, checking the room's bound;
/// what it sends meanwhile goes to `sent`.
fn feed<P: App<Secure<Receiver>>>(
    m: &mut Secure<Receiver>,
    app: &mut P,
    t: Instant,
    mut bytes: &[u8],
    sent: &mut Vec<Bytes>,
) {
    while !bytes.is_empty() {
        let room = m.input_room();
        assert!(room <= HELD_LIMIT, "room {room} beyond two records");
        let n = room.min(bytes.len());
        if n == 0 {
            run_events_into(m, app, t, sent);
            if m.input_room() == 0 {
                return;
            }
            continue;
        }
        let _ = m.handle_input(t, &bytes[..n]);
        bytes = &bytes[n..];
        run_events_into(m, app, t, sent);
    }
}

/// Drains, handing events to the app, dropping transmits; returns the
/// result once done.
fn run_events<M: Machine, P: App<M>>(
    m: &mut M,
    app: &mut P,
    t: Instant,
) -> Option<Result<(), Error>> {
    run_events_into(m, app, t, &mut Vec::new())
}

/// Drains, handing events to the app and transmits to `sent`.
fn run_events_into<M: Machine, P: App<M>>(
    m: &mut M,
    app: &mut P,
    t: Instant,
    sent: &mut Vec<M::Transmit>,
) -> Option<Result<(), Error>> {
    for _ in 0..1000 {
        let d = drain(m);
        sent.extend(d.transmits);
        if d.events.is_empty() {
            return d.done;
        }
        for e in d.events {
            if app.on_event(m, t, e).is_err() {
                return None;
            }
        }
        if d.done.is_some() {
            return d.done;
        }
    }
    panic!("events did not settle");
}

fn assert_typed(done: &Result<(), Error>) {
    match done {
        Ok(()) => {}
        Err(Error::Secure(_)) => {}
        Err(Error::Local(_)) => {}
        // The wrapped machine's own deadlines, as the input moves the clock.
        Err(Error::TimedOut(_) | Error::TooSlow { .. }) => {}
        // Anything else (a hash mismatch, a protocol error of the wrapped
        // machine) means altered bytes got through the channel.
        Err(other) => panic!("untyped failure of the channel: {other:?}"),
    }
}

/// An honest sender against the receiver; after the handshake the input
/// flips bytes of the sender's stream, or inserts its own bytes, at
/// offsets it chooses. The receiver's final file, if any, is exactly the
/// content sent; any alteration it took in is an integrity failure.
fn session(mut input: Input<'_>) {
    let now = Instant::now();
    let len = usize::from(input.u16()) % 6000;
    let content = Bytes::from((0..len).map(|i| (i % 253) as u8).collect::<Vec<_>>());
    let name = SafeName::new(NAME.as_bytes(), 64).expect("valid name");
    let mut tx = MemSender::new([(name, content.clone())]);
    let cfg = SecureConfig {
        max_record: 1024,
        ..SecureConfig::default()
    };
    let mut a = Secure::client(
        Sender::new(tx.role(small_transfer()), small_limits(), now),
        CODE,
        cfg,
        now,
        [4; 32],
    );
    let mut b = server(now);
    let mut rx = MemReceiver::new(MemDisk::default(), false);
    // Alterations: (offset after the handshake, xor mask or inserted byte).
    let mut edits: Vec<(usize, u8, bool)> = Vec::new();
    while !input.is_empty() && edits.len() < 8 {
        edits.push((
            usize::from(input.u16()),
            input.byte(),
            input.byte() % 2 == 0,
        ));
    }
    let mut offset = 0usize;
    let mut t = now;
    let mut altered = false;
    let (mut a_done, mut b_done) = (None, None);
    for _ in 0..10_000 {
        let d = drain_with(&mut a, &mut tx, t);
        a_done = a_done.or(d.1);
        let mut moved = !d.0.is_empty();
        let mut from_b = Vec::new();
        for chunk in d.0 {
            let mut bytes = chunk.to_vec();
            altered |= alter(&mut bytes, offset, &edits);
            offset += chunk.len();
            feed(&mut b, &mut rx, t, &bytes, &mut from_b);
        }
        let d = drain_with(&mut b, &mut rx, t);
        b_done = b_done.or(d.1);
        from_b.extend(d.0);
        moved |= !from_b.is_empty();
        for chunk in from_b {
            let _ = a.handle_input(t, &chunk);
        }
        if a_done.is_some() && b_done.is_none() {
            b.handle_eof(t);
            b_done = run_events(&mut b, &mut rx, t);
        }
        if b_done.is_some() && a_done.is_none() {
            a.handle_eof(t);
        }
        if a_done.is_some() && b_done.is_some() {
            break;
        }
        if !moved {
            // Stalled (an alteration left a record incomplete): timers.
            t += Duration::from_secs(30);
            a.handle_timeout(t);
            b.handle_timeout(t);
        }
    }
    let b_done = b_done.expect("the session ends");
    assert_typed(&b_done);
    if let Some(file) = rx.disk.files.get(NAME) {
        assert_eq!(
            file[..],
            content[..],
            "a final file differs from what was sent"
        );
    }
    if let Err(e) = &b_done {
        // After an honest handshake, the only way to fail is an
        // alteration caught by the records (a dropped close record is a
        // truncation), or the stall it caused.
        let caught = matches!(
            e,
            Error::Secure(SecureError::Integrity(_) | SecureError::Truncated)
                | Error::TimedOut(_)
                | Error::TooSlow { .. }
                | Error::PeerFailed { .. }
        );
        assert!(altered && caught, "altered={altered}: {e:?}");
    }
    if !altered {
        assert_eq!(b_done, Ok(()), "an honest session failed");
    }
}

/// Applies the edits that fall within `bytes` (at stream `offset`);
/// returns whether any did. Offsets count from the end of the handshake.
fn alter(bytes: &mut Vec<u8>, offset: usize, edits: &[(usize, u8, bool)]) -> bool {
    let start = HELLO_LEN + CONFIRM_LEN;
    let mut any = false;
    for &(at, b, insert) in edits.iter().rev() {
        let pos = start + at;
        if pos < offset || pos >= offset + bytes.len() {
            continue;
        }
        let i = pos - offset;
        if insert {
            bytes.insert(i, b);
            any = true;
        } else if b != 0 {
            bytes[i] ^= b;
            any = true;
        }
    }
    any
}

/// Drains `m`, answering events with `app`; returns what it sent and its
/// result once done.
fn drain_with<M: StreamMachine, P: App<M>>(
    m: &mut M,
    app: &mut P,
    t: Instant,
) -> (Vec<Bytes>, Option<Result<(), Error>>) {
    let mut sent = Vec::new();
    for _ in 0..100_000 {
        match m.poll_output() {
            Output::Transmit(b) => sent.push(b),
            Output::Event(e) => {
                if let Err(e) = app.on_event(m, t, e) {
                    m.abort(e.to_string());
                }
            }
            Output::Wait(_) => return (sent, None),
            Output::Done(r) => return (sent, Some(r)),
        }
    }
    panic!("machine did not settle");
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_honest_session_passes_the_harness_and_a_flip_is_caught() {
        // Mode 1, 3000 bytes of content, no edits: must end cleanly.
        super::secure(&[1, 0xb8, 0x0b]);
        // One flip 100 bytes after the handshake.
        super::secure(&[1, 0xb8, 0x0b, 100, 0, 0x20, 1]);
        // Raw bytes that start like a plaintext session.
        super::secure(b"\x00\x05\x00EXFR\x02F");
    }
}
