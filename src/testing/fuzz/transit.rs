//! The transit harness (feature `wormhole`): a transit receiver fed
//! hostile bytes in record mode or from its first byte, and an honest
//! sender's records altered on their way to it.

use std::time::Instant;

use bytes::Bytes;

use super::{drain, jump, Input};
use crate::error::{Error, WormholeError};
use crate::machine::{Machine, StreamMachine};
use crate::wormhole::transit::{
    reasons, receiver_handshake, sender_handshake, Role, Transit, TransitConfig, TransitEvent,
    LEN_PREFIX, OVERHEAD,
};

const TK: [u8; 32] = [0x5a; 32];
/// Small records, so that cases stay quick.
const MAX_RECORD: usize = 4096;
/// The most input a transit machine holds: one read, or one whole record.
const HELD_LIMIT: usize = 64 * 1024;

fn config(role: Role, relayed: bool) -> TransitConfig {
    let mut cfg = TransitConfig::new(role, &TK);
    cfg.max_record = MAX_RECORD;
    if relayed {
        cfg = cfg.via_relay("0123456789abcdef");
    }
    cfg
}

/// Checks, whatever the input: no panic; input within the room offered,
/// which stays within one read or one record (bounded memory); every
/// drain settles; an EOF always ends in `Done`, and a failure is a typed
/// transit error; bytes that cannot know the key never open as a record
/// nor pass the handshake; and altered records are never delivered: what
/// arrives is a prefix of what was sent.
pub fn transit(data: &[u8]) {
    let mut input = Input(data);
    match input.byte() % 3 {
        0 => hostile(input, true),
        1 => hostile(input, false),
        _ => altered(input),
    }
}

/// A receiver past `go` (or, `open` false, any side from its first
/// byte), then hostile bytes in pieces the input chooses. The input may
/// well contain the exact handshake (the harness's key is fixed, and the
/// lines are checked byte by byte, which a fuzzer can follow): then the
/// side connects, and a sender says go or nevermind as the input says.
fn hostile(mut input: Input<'_>, open: bool) {
    let now = Instant::now();
    let mut t = now;
    let (mut m, lines) = if open {
        let mut m = Transit::new(config(Role::Receiver, false), now);
        let mut line = sender_handshake(&TK);
        line.extend_from_slice(b"go\n");
        assert_eq!(m.handle_input(now, &line), Ok(line.len()));
        let d = drain(&mut m);
        assert_eq!(d.events, vec![TransitEvent::Connected]);
        (m, None)
    } else {
        let how = input.byte();
        let role = if how & 1 == 0 {
            Role::Sender
        } else {
            Role::Receiver
        };
        let relayed = how & 2 != 0;
        let mut lines = if relayed {
            b"ok\n".to_vec()
        } else {
            Vec::new()
        };
        match role {
            Role::Sender => lines.extend(receiver_handshake(&TK)),
            Role::Receiver => {
                lines.extend(sender_handshake(&TK));
                lines.extend_from_slice(b"go\n");
            }
        }
        (Transit::new(config(role, relayed), now), Some(lines))
    };
    // The first bytes the machine took, as far as the lines go.
    let mut taken = Vec::new();
    while !input.is_empty() {
        let piece = usize::from(input.u16()) % 9000 + 1;
        t += jump(input.byte());
        m.handle_timeout(t);
        let mut bytes = input.take(piece);
        while !bytes.is_empty() {
            let (n, events) = feed(&mut m, t, bytes);
            if let Some(lines) = &lines {
                let keep = n.min(lines.len().saturating_sub(taken.len()));
                taken.extend_from_slice(&bytes[..keep]);
            }
            bytes = &bytes[n..];
            let mut decided = false;
            for e in events {
                let TransitEvent::Connected = e else {
                    panic!("hostile bytes opened as a record");
                };
                let lines = lines.as_deref().expect("Connected twice");
                assert_eq!(taken, lines, "Connected without the exact lines");
                if m.role() == Role::Sender {
                    decided = true;
                    let chose = if input.byte() % 2 == 0 {
                        m.go()
                    } else {
                        m.nevermind()
                    };
                    chose.expect("a decision once Connected");
                }
            }
            if n == 0 && !decided {
                break;
            }
        }
    }
    m.handle_eof(t);
    let done = drain(&mut m).done.expect("EOF ends the session");
    assert_typed(&done);
}

/// Feeds `bytes` as the machine has room, checking the room's bound;
/// returns how many it took, and the events. It stops early only after
/// the end, or when a sender waits for its decision (its room is then
/// spent on what it holds).
fn feed(m: &mut Transit, t: Instant, mut bytes: &[u8]) -> (usize, Vec<TransitEvent>) {
    let mut events = Vec::new();
    let mut total = 0;
    while !bytes.is_empty() {
        let room = m.input_room();
        let limit = HELD_LIMIT.max(LEN_PREFIX + OVERHEAD + MAX_RECORD);
        assert!(room <= limit, "room {room} beyond one read or record");
        let took = m.handle_input(t, bytes);
        let d = drain(m);
        let connected = d.events.contains(&TransitEvent::Connected);
        events.extend(d.events);
        let Ok(n) = took else {
            // It failed on these bytes, having taken what fit (the lines
            // before a bad record among them, say).
            total += room.min(bytes.len());
            break;
        };
        total += n;
        bytes = &bytes[n..];
        if d.done.is_some() || connected {
            break;
        }
        // A record or a line whole is consumed at once: only a sender's
        // pending decision (after Connected) withholds room.
        assert!(n > 0, "no room, and nothing to drain");
    }
    (total, events)
}

/// Feeds all of `bytes` (the receiver is open: it never waits for a
/// decision); returns the events.
fn feed_all(m: &mut Transit, t: Instant, mut bytes: &[u8]) -> Vec<TransitEvent> {
    let mut events = Vec::new();
    while !bytes.is_empty() {
        let (n, e) = feed(m, t, bytes);
        events.extend(e);
        if n == 0 {
            break;
        }
        bytes = &bytes[n..];
    }
    events
}

fn assert_typed(done: &Result<(), Error>) {
    match done {
        Ok(()) => {}
        Err(Error::Wormhole(WormholeError::Transit(_))) => {}
        Err(other) => panic!("untyped failure of transit: {other:?}"),
    }
}

/// An honest sender's records, the wire altered at offsets the input
/// chooses (a flip, an inserted byte, a cut): the receiver delivers a
/// prefix of the records sent, whole, and fails with a record error once
/// an alteration reaches it.
fn altered(mut input: Input<'_>) {
    let now = Instant::now();
    let mut s = Transit::new(config(Role::Sender, false), now);
    let mut r = Transit::new(config(Role::Receiver, false), now);
    // The handshakes, honest.
    let to_s: Vec<u8> = drain(&mut r).transmits.concat();
    let mut to_r: Vec<u8> = drain(&mut s).transmits.concat();
    s.handle_input(now, &to_s)
        .expect("the receiver's handshake");
    assert_eq!(drain(&mut s).events, vec![TransitEvent::Connected]);
    s.go().expect("go after Connected");
    to_r.extend(drain(&mut s).transmits.concat());
    assert_eq!(r.handle_input(now, &to_r), Ok(to_r.len()));
    assert_eq!(drain(&mut r).events, vec![TransitEvent::Connected]);
    // Records of lengths the input picks.
    let count = usize::from(input.byte() % 8);
    let mut sent = Vec::new();
    let mut wire = Vec::new();
    for i in 0..count {
        let len = usize::from(input.u16()) % (MAX_RECORD + 1);
        let plain: Vec<u8> = (0..len).map(|j| (i * 31 + j) as u8).collect();
        s.send_record(&plain).expect("within the limits");
        wire.extend(drain(&mut s).transmits.concat());
        sent.push(Bytes::from(plain));
    }
    // Edits: (offset, byte, kind).
    let mut changed = false;
    let mut cut = wire.len();
    while !input.is_empty() {
        let at = usize::from(input.u16());
        let b = input.byte();
        match input.byte() % 3 {
            0 if at < wire.len() && b != 0 => {
                wire[at] ^= b;
                changed = true;
            }
            1 if at <= wire.len() => {
                wire.insert(at, b);
                changed = true;
            }
            2 => cut = cut.min(at),
            _ => {}
        }
    }
    let truncated = cut < wire.len();
    wire.truncate(cut);
    let mut got = Vec::new();
    for piece in wire.chunks(777) {
        for e in feed_all(&mut r, now, piece) {
            match e {
                TransitEvent::Record(b) => got.push(b),
                TransitEvent::Connected => panic!("Connected twice"),
            }
        }
    }
    r.handle_eof(now);
    let done = drain(&mut r).done.expect("EOF ends the session");
    assert_typed(&done);
    assert!(got.len() <= sent.len(), "more records than sent");
    assert_eq!(got[..], sent[..got.len()], "a record arrived altered");
    if !changed && !truncated {
        assert_eq!(done, Ok(()), "an honest stream failed");
        assert_eq!(got, sent);
    }
    if let Err(Error::Wormhole(WormholeError::Transit(reason))) = done {
        let record_error = [
            reasons::NOT_AUTHENTIC,
            reasons::OUT_OF_ORDER,
            reasons::TOO_LARGE,
            reasons::TOO_SHORT,
            reasons::TRUNCATED,
        ];
        assert!(record_error.contains(&reason), "{reason}");
    }
}

/// Seed inputs for the `transit` fuzz target (`fuzz/corpus/transit/`):
/// `(file name, bytes)`. An honest stream of records, the same with a
/// flip, hostile bytes after `go`, and the exact lines from the first
/// byte for a sender and a relayed receiver, so a fuzzer starts past the
/// handshake.
pub fn transit_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let records = vec![2, 3, 10, 0, 0, 0x10, 0x10, 0];
    let mut flipped = records.clone();
    flipped.extend_from_slice(&[50, 0, 0xff, 0]);
    let mut prefix = vec![0];
    prefix.extend_from_slice(&[8, 0, 0]);
    prefix.extend_from_slice(&[0, 0, 0, 0x30, 1, 2, 3, 4]);
    let from_first = |how: u8, lines: Vec<u8>| {
        let mut data = vec![1, how];
        let len = (lines.len() + 4 - 1) as u16;
        data.extend_from_slice(&len.to_le_bytes());
        data.push(0);
        data.extend_from_slice(&lines);
        data.extend_from_slice(&[0, 0, 0, 0x29]);
        data.push(0);
        data
    };
    let sender = from_first(0, receiver_handshake(&TK));
    let mut relayed = b"ok\n".to_vec();
    relayed.extend(sender_handshake(&TK));
    relayed.extend_from_slice(b"go\n");
    let receiver = from_first(3, relayed);
    vec![
        ("records", records),
        ("flipped", flipped),
        ("prefix", prefix),
        ("sender", sender),
        ("relayed-receiver", receiver),
    ]
}

#[cfg(test)]
mod tests {
    #[test]
    fn honest_records_pass_and_hostile_bytes_fail_typed() {
        // Mode 2, three records, no edits: all arrive.
        super::transit(&[2, 3, 10, 0, 0, 0, 0x10, 0]);
        // The same with a flip at offset 50.
        super::transit(&[2, 3, 10, 0, 0, 0, 0x10, 0, 50, 0, 0xff, 0]);
        // Raw bytes in record mode: a length prefix and garbage.
        super::transit(&[0, 8, 0, 0, 0, 0, 0, 0x30, 1, 2, 3]);
        // From the first byte, a relayed receiver told something else.
        super::transit(&[1, 3, 4, 0, 0, b'n', b'o', b'\n', b'x']);
    }

    #[test]
    fn lines_then_a_bad_record_in_one_read_count_as_taken() {
        // Found by cargo fuzz: a relayed receiver given `ok`, the sender's
        // handshake, `go` and a bad length prefix in one piece connects,
        // then fails on the prefix in the same input.
        let mut data = vec![1, 3, 0x60, 0, 0];
        data.extend_from_slice(b"ok\n");
        data.extend(super::sender_handshake(&super::TK));
        data.extend_from_slice(b"go\nb\0\0)\0");
        super::transit(&data);
    }

    #[test]
    fn the_exact_lines_connect_from_the_first_byte() {
        // Mode 1, a direct sender, one piece: the receiver's handshake and
        // 5 more bytes; then the decision byte (0: go).
        let line = super::receiver_handshake(&super::TK);
        let len = (line.len() + 5 - 1) as u16;
        let mut data = vec![1, 0];
        data.extend_from_slice(&len.to_le_bytes());
        data.push(0);
        data.extend_from_slice(&line);
        data.extend_from_slice(b"abcde");
        data.push(0);
        super::transit(&data);
    }
}
