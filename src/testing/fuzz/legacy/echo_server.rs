//! The legacy echo server against hostile reads, clock jumps and overfeeding.

use super::*;

/// The legacy echo server fed hostile reads, clock jumps, overfeeding and
/// EOF, with output drained only now and then (back-pressure). Invariants:
/// the output is the greeting, then every read that is not exactly `exit`,
/// byte for byte and in order; one `Received` per read; a read that is
/// exactly `exit` ends the session `Ok` and nothing after it is processed;
/// `input_room` never exceeds 1024 nor what `send_buffer` leaves; idle
/// timeouts fire in virtual time; EOF always ends in `Done`.
pub fn legacy_echo_server(data: &[u8]) {
    let mut input = Input(data);
    let mode = input.byte();
    let greeting: &[u8] = match mode % 3 {
        0 => GREETING_BLOCKING.as_bytes(),
        1 => GREETING_THREADED.as_bytes(),
        _ => b"",
    };
    let config = UnframedConfig {
        send_buffer: [16, 1024, 1500, 8192][usize::from(mode >> 2) % 4],
        ..small_unframed()
    };
    let auto_drain = mode & 0x40 == 0;
    let mut now = start();
    let mut m = LegacyEchoServer::new(greeting, config.clone(), now);
    let mut expected_out = greeting.to_vec();
    let mut out = Vec::new();
    let mut expected_events = Vec::new();
    let mut events = Vec::new();
    let mut result: Option<Result<(), Error>> = None;
    let mut deadline = now + config.idle_timeout;
    let mut done = None;

    let mut check = |m: &mut LegacyEchoServer,
                     out: &mut Vec<u8>,
                     events: &mut Vec<LegacyServerEvent>,
                     expected_out: &[u8],
                     drain_now: bool| {
        let queued = expected_out.len() - out.len();
        let room = m.input_room();
        assert!(room <= PIECE_MAX, "room {room} beyond one read");
        assert!(
            room <= config.send_buffer.saturating_sub(queued),
            "room {room} with {queued} bytes queued of {}",
            config.send_buffer
        );
        if !drain_now {
            return;
        }
        let d = drain(m);
        for t in d.transmits {
            assert!(!t.is_empty(), "empty transmit");
            out.extend_from_slice(&t);
        }
        events.extend(d.events);
        if d.done.is_some() {
            done = d.done;
        }
    };
    check(&mut m, &mut out, &mut events, &expected_out, true);
    while !input.is_empty() {
        let op = input.byte();
        let arg = input.byte();
        match op % 10 {
            0..=4 => {
                let want = usize::from(arg) * 5;
                let n = want.min(m.input_room());
                let read = input.take(n).to_vec();
                let r = m.handle_input(now, &read);
                if result.is_none() && !read.is_empty() {
                    deadline = now + config.idle_timeout;
                    expected_events.push(LegacyServerEvent::Received(Bytes::from(read.clone())));
                    if read == EXIT {
                        expected_events.push(LegacyServerEvent::ClientExited);
                        result = Some(Ok(()));
                    } else {
                        expected_out.extend_from_slice(&read);
                    }
                    assert_eq!(r, Ok(read.len()));
                } else if let Some(end) = &result {
                    after_end(&r, end);
                }
            }
            5 => {
                let room = m.input_room();
                let r = m.handle_input(now, EXIT);
                if let Some(end) = &result {
                    after_end(&r, end);
                } else if room >= EXIT.len() {
                    assert_eq!(r, Ok(EXIT.len()));
                    deadline = now + config.idle_timeout;
                    expected_events.push(LegacyServerEvent::Received(Bytes::from_static(EXIT)));
                    expected_events.push(LegacyServerEvent::ClientExited);
                    result = Some(Ok(()));
                } else {
                    // More than fits is never fatal: what fits is one read.
                    assert_eq!(r, Ok(room), "too much input must take what fits");
                    overfed(&EXIT[..room], &mut expected_events, &mut expected_out);
                    if room > 0 {
                        deadline = now + config.idle_timeout;
                    }
                }
            }
            6 => {
                now += jump(arg);
                m.handle_timeout(now);
                if result.is_none() && now >= deadline {
                    result = Some(Err(Error::TimedOut(config.idle_timeout)));
                }
            }
            7 => {
                check(&mut m, &mut out, &mut events, &expected_out, true);
                continue;
            }
            8 if arg < 16 => {
                let room = m.input_room();
                let read = vec![b'x'; room + 1];
                let r = m.handle_input(now, &read);
                if let Some(end) = &result {
                    after_end(&r, end);
                } else {
                    assert_eq!(r, Ok(room), "too much input must take what fits");
                    overfed(&read[..room], &mut expected_events, &mut expected_out);
                    if room > 0 {
                        deadline = now + config.idle_timeout;
                    }
                }
            }
            8 => {}
            _ => {
                if arg < 32 {
                    break;
                }
            }
        }
        check(&mut m, &mut out, &mut events, &expected_out, auto_drain);
    }
    m.handle_eof(now);
    result.get_or_insert(Ok(()));
    check(&mut m, &mut out, &mut events, &expected_out, true);
    assert_eq!(out, expected_out, "echo output differs");
    assert_eq!(events, expected_events, "events differ");
    assert_eq!(done, result, "the session ended differently");
    // Nothing after the end.
    let _ = m.handle_input(now, b"more");
    let d = drain(&mut m);
    assert!(d.transmits.is_empty() && d.events.is_empty());
}

/// What the server makes of `taken`, the part of too much input that fit:
/// one read like any other (never `exit`, which is longer).
fn overfed(taken: &[u8], events: &mut Vec<LegacyServerEvent>, out: &mut Vec<u8>) {
    if !taken.is_empty() {
        events.push(LegacyServerEvent::Received(Bytes::copy_from_slice(taken)));
        out.extend_from_slice(taken);
    }
}
