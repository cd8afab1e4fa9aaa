//! The legacy file receiver fed hostile reads, clock jumps and EOF.

use super::*;

/// The legacy file receiver fed hostile reads (data, `quit`, `quit\n`,
/// empty, oversized), clock jumps and EOF. Invariants: every read but an
/// exact `quit` becomes one write, contiguous, equal to the read; acks are
/// exactly `success`, one at once for a read ending a line, else one per
/// burst after `legacy_ack_delay`; `Complete` comes only after a read that
/// is exactly `quit`, with the size and BLAKE3 of all writes; data beyond
/// `max_file_size` and overfeeding fail typed; idle timeouts fire in
/// virtual time; EOF before `quit` is `UnexpectedEof`.
pub fn legacy_file_receiver(data: &[u8]) {
    let mut input = Input(data);
    let mode = input.byte();
    let config = UnframedConfig {
        max_file_size: [1 << 20, 2000, 1][usize::from(mode % 3)],
        ..small_unframed()
    };
    let mut now = start();
    let mut m = LegacyFileReceiver::new(config.clone(), now);
    let mut seen = RxSeen::default();
    let mut acks_expected = 0usize;
    let mut ack_due: Option<Instant> = None;
    let mut deadline = now + config.idle_timeout;
    let mut result: Option<Result<(), Error>> = None;
    let mut expected: Vec<u8> = Vec::new();
    let mut fed = None;
    while !input.is_empty() && result.is_none() {
        let op = input.byte();
        let arg = input.byte();
        let read: Vec<u8> = match op % 10 {
            0..=3 => {
                let mut r = input.take(usize::from(arg) * 4).to_vec();
                r.truncate(PIECE_MAX);
                if arg % 3 == 0 {
                    r.push(b'\n');
                    r.truncate(PIECE_MAX);
                }
                r
            }
            4 => QUIT.to_vec(),
            5 => b"quit\n".to_vec(),
            6 => {
                now += jump(arg);
                m.handle_timeout(now);
                if ack_due.is_some_and(|d| now >= d) {
                    ack_due = None;
                    acks_expected += 1;
                }
                if now >= deadline {
                    result = Some(Err(Error::TimedOut(config.idle_timeout)));
                }
                seen.check(&mut m, &result);
                continue;
            }
            7 if arg < 16 => {
                // More than one read may hold: what fits is taken as one
                // read, never fatal; the rest is not fed.
                let room = m.input_room();
                let r = m.handle_input(now, &vec![b'q'; room.max(PIECE_MAX) + 1]);
                if let Ok(n) = r {
                    assert_eq!(n, room, "too much input must take what fits");
                }
                fed = Some(r);
                vec![b'q'; room]
            }
            7 => Vec::new(),
            _ if arg < 16 => break,
            _ => input.take(usize::from(arg) % 8).to_vec(),
        };
        // Fed above already (too much input): its outcome is this read's.
        let r = fed.take().unwrap_or_else(|| m.handle_input(now, &read));
        if read.is_empty() {
            assert_eq!(r, Ok(0));
        } else if read == QUIT {
            assert_eq!(r, Ok(read.len()));
            ack_due = None;
            result = Some(Ok(()));
        } else if (expected.len() + read.len()) as u64 > config.max_file_size {
            assert!(
                matches!(r, Err(Error::Remote(ProtocolError::MessageTooLarge { .. }))),
                "{r:?}"
            );
            result = Some(r.map(|_| ()));
            ack_due = None;
        } else {
            assert_eq!(r, Ok(read.len()));
            deadline = now + config.idle_timeout;
            expected.extend_from_slice(&read);
            if read.ends_with(b"\n") {
                acks_expected += 1;
                ack_due = None;
            } else {
                ack_due = Some(now + config.legacy_ack_delay);
            }
        }
        seen.check(&mut m, &result);
        assert_eq!(seen.acks, acks_expected, "acks differ");
    }
    if result.is_none() {
        m.handle_eof(now);
        result = Some(Err(ProtocolError::UnexpectedEof {
            state: "receiving a legacy file (no `quit`: incomplete)",
        }
        .into()));
    }
    seen.check(&mut m, &result);
    assert_eq!(seen.acks, acks_expected, "acks differ");
    assert_eq!(seen.written, expected, "writes differ from the reads");
    assert_eq!(seen.done, result, "the session ended differently");
    assert_eq!(seen.complete.is_some(), matches!(result, Some(Ok(()))));
    let _ = m.handle_input(now, b"x");
    let d = drain(&mut m);
    assert!(
        d.transmits.is_empty() && d.events.is_empty(),
        "output after the end"
    );
}

/// What the legacy receiver did, as seen from outside.
#[derive(Default)]
struct RxSeen {
    written: Vec<u8>,
    acks: usize,
    complete: Option<u64>,
    done: Option<Result<(), Error>>,
}

impl RxSeen {
    fn check(&mut self, m: &mut LegacyFileReceiver, result: &Option<Result<(), Error>>) {
        assert!(m.input_room() <= PIECE_MAX);
        let d = drain(m);
        for t in d.transmits {
            assert_eq!(t[..], *SUCCESS, "receiver sent something else");
            self.acks += 1;
        }
        for e in d.events {
            assert!(self.complete.is_none(), "event after Complete");
            match e {
                LegacyReceiverEvent::Write { offset, data } => {
                    assert_eq!(offset, self.written.len() as u64, "write not contiguous");
                    self.written.extend_from_slice(&data);
                }
                LegacyReceiverEvent::Complete { size, blake3 } => {
                    assert!(matches!(result, Some(Ok(()))), "Complete without quit");
                    assert_eq!(size, self.written.len() as u64);
                    assert_eq!(blake3, *blake3::hash(&self.written).as_bytes());
                    self.complete = Some(size);
                }
            }
        }
        if d.done.is_some() {
            self.done = d.done;
        }
    }
}
