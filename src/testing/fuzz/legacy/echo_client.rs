//! The legacy echo client against a hostile server, or the legacy server over a cutting link.

use super::*;

/// The legacy echo client with lines from the input, against either a
/// hostile server (bytes and timing from the input) or the legacy echo
/// server over a link that cuts the stream at random. Invariants: pieces
/// are non-empty, at most 1024 bytes and never contain `exit` (a line that
/// is exactly `exit` goes last and whole); a piece goes only after
/// everything before it came back; the pieces are the lines, in order;
/// replies are exactly the lines, in order; the receive buffer stays within
/// `recv_buffer`; every run ends in `Done` in bounded steps.
pub fn legacy_echo_client(data: &[u8]) {
    let mut input = Input(data);
    let mode = input.byte();
    let config = UnframedConfig {
        max_message: 4096,
        ..small_unframed()
    };
    let mut lines = Vec::new();
    for _ in 0..input.byte() % 6 {
        let n = usize::from(input.byte() % 32);
        let mut sub = Input(input.take(n * 8));
        let line = match input.byte() % 8 {
            0 => EXIT.to_vec(),
            1 => Vec::new(),
            _ => wordy(&mut sub, 3000),
        };
        lines.push(Bytes::from(line));
    }
    let close = mode & 2 == 0;
    if mode & 1 == 0 {
        client_vs_server(input, config, lines, close);
    } else {
        client_vs_hostile(input, config, lines, close);
    }
}

/// Queues `lines` on `m` as a user would; returns the lines the client
/// will send and echo (up to an `exit`) and whether `exit` is among them.
fn queue_lines(m: &mut LegacyEchoClient, lines: &[Bytes], close: bool) -> (Vec<Bytes>, bool) {
    let mut echoed = Vec::new();
    let mut exit = false;
    for line in lines {
        let r = m.send_line(line.clone());
        if exit {
            assert_eq!(r, Err(UsageError::Closed), "a line after exit");
            continue;
        }
        match r {
            Ok(()) => {}
            // More than `send_buffer` queued: the user must wait.
            Err(UsageError::WouldBlock) => continue,
            Err(e) => panic!("line refused: {e}"),
        }
        if line[..] == *EXIT {
            exit = true;
        } else if !line.is_empty() {
            echoed.push(line.clone());
        }
    }
    if close {
        m.close();
    }
    (echoed, exit)
}

/// Checks what the client sent: pieces of the lines, in order, then
/// `exit` when queued. Returns the bytes of data sent.
fn check_pieces(pieces: &[Bytes], lines: &[Bytes], exit: bool) -> usize {
    let all: Vec<u8> = lines.iter().flat_map(|l| l.iter().copied()).collect();
    let mut at = 0;
    for (i, p) in pieces.iter().enumerate() {
        assert!(
            !p.is_empty() && p.len() <= PIECE_MAX,
            "piece of {}",
            p.len()
        );
        if p[..] == *EXIT && at == all.len() {
            assert!(exit && i + 1 == pieces.len(), "exit sent but not last");
            continue;
        }
        assert!(!contains(p, EXIT), "a piece contains exit: {p:?}");
        assert_eq!(
            all.get(at..at + p.len()),
            Some(&p[..]),
            "pieces differ from the lines"
        );
        at += p.len();
    }
    at
}

fn client_vs_server(mut input: Input<'_>, config: UnframedConfig, lines: Vec<Bytes>, close: bool) {
    let now = start();
    let seed = u64::from(input.u32());
    let cut = (input.byte() % 4 == 0).then(|| u64::from(input.u16()));
    let mut client = LegacyEchoClient::new(config.clone(), now);
    let (echoed, exit) = queue_lines(&mut client, &lines, close);
    let server = LegacyEchoServer::new(GREETING_BLOCKING, config, now);
    let mut replies = Vec::new();
    let mut greetings = Vec::new();
    let mut client_app = |_: &mut LegacyEchoClient, _: Instant, e: LegacyClientEvent| {
        match e {
            LegacyClientEvent::Greeting(g) => greetings.push(g),
            LegacyClientEvent::Reply(r) => replies.push(r),
        }
        Ok::<(), std::io::Error>(())
    };
    let mut reads = Vec::new();
    let mut exited = false;
    let mut server_app = |_: &mut LegacyEchoServer, _: Instant, e: LegacyServerEvent| {
        assert!(!exited, "server read after exit");
        match e {
            LegacyServerEvent::Received(r) => reads.push(r),
            LegacyServerEvent::ClientExited => exited = true,
        }
        Ok::<(), std::io::Error>(())
    };
    let mut pair = Pair::new(client, server, now, Cutter::random(seed, 1500));
    if let Some(n) = cut {
        pair = pair.cut_after(n);
    }
    let outcome = pair
        .run(&mut client_app, &mut server_app, 400_000)
        .expect("legacy echo pair stuck");
    let data_reads = if exited {
        assert!(exit, "the server saw exit that was never a line");
        &reads[..reads.len() - 1]
    } else {
        &reads[..]
    };
    let sent: Vec<u8> = data_reads.iter().flat_map(|r| r.iter().copied()).collect();
    // The server saw only line bytes (and maybe a torn final `exit`).
    let all: Vec<u8> = echoed.iter().flat_map(|l| l.iter().copied()).collect();
    let data_len = sent.len().min(all.len());
    assert_eq!(sent[..data_len], all[..data_len], "server saw other bytes");
    if sent.len() > all.len() {
        assert!(exit && EXIT.starts_with(&sent[all.len()..]), "extra bytes");
    }
    if exited {
        assert_eq!(sent, all, "exit before every line was sent");
    }
    assert!(greetings.len() <= 1);
    assert!(replies.len() <= echoed.len(), "more replies than lines");
    assert_eq!(replies[..], echoed[..replies.len()], "replies differ");
    if cut.is_none() {
        if let Some(g) = greetings.first() {
            assert_eq!(g[..], *GREETING_BLOCKING.as_bytes(), "greeting torn");
        }
        assert!(outcome.a.is_ok(), "clean client failed: {:?}", outcome.a);
        if close || exit {
            assert!(outcome.b.is_ok(), "clean server failed: {:?}", outcome.b);
            assert_eq!(replies, echoed, "not every line came back");
        } else {
            // The client waits for a line that never comes; the server
            // drops it after the idle timeout.
            assert!(
                matches!(
                    outcome.b,
                    Ok(()) | Err(crate::driver::DriverError::Machine(Error::TimedOut(_)))
                ),
                "{:?}",
                outcome.b
            );
        }
    }
}

/// What a client fed by a hostile server did, as seen from outside.
struct ClientSeen {
    pieces: Vec<Bytes>,
    fed: usize,
    greeting: Option<usize>,
    replies: Vec<Bytes>,
    done: Option<Result<(), Error>>,
}

impl ClientSeen {
    fn check(&mut self, m: &mut LegacyEchoClient, echoed: &[Bytes], recv_buffer: usize) {
        assert!(m.input_room() <= recv_buffer);
        let d = drain(m);
        for e in d.events {
            match e {
                LegacyClientEvent::Greeting(g) => {
                    assert!(self.greeting.is_none(), "two greetings");
                    assert!(self.pieces.is_empty(), "greeting after a line");
                    self.greeting = Some(g.len());
                }
                LegacyClientEvent::Reply(r) => {
                    assert_eq!(
                        Some(&r),
                        echoed.get(self.replies.len()),
                        "reply out of order"
                    );
                    self.replies.push(r);
                }
            }
        }
        for t in d.transmits {
            let g = self.greeting.expect("a line sent before the greeting");
            let sent: usize = self.pieces.iter().map(Bytes::len).sum();
            // Everything sent before came back first.
            assert!(self.fed - g >= sent, "piece sent before the last came back");
            self.pieces.push(t);
        }
        if d.done.is_some() {
            self.done = d.done;
        }
    }

    /// What an honest server owes: the greeting, or the echo of the pieces.
    fn owed(&self) -> Vec<u8> {
        match self.greeting {
            None => GREETING_THREADED.as_bytes().to_vec(),
            Some(g) => {
                let all: Vec<u8> = self
                    .pieces
                    .iter()
                    .filter(|p| p[..] != *EXIT)
                    .flat_map(|p| p.iter().copied())
                    .collect();
                all.get(self.fed - g..).unwrap_or_default().to_vec()
            }
        }
    }
}

fn client_vs_hostile(mut input: Input<'_>, config: UnframedConfig, lines: Vec<Bytes>, close: bool) {
    let mut now = start();
    let mut m = LegacyEchoClient::new(config.clone(), now);
    let (echoed, exit) = queue_lines(&mut m, &lines, close);
    let mut seen = ClientSeen {
        pieces: Vec::new(),
        fed: 0,
        greeting: None,
        replies: Vec::new(),
        done: None,
    };
    let mut honest = true;
    let rb = config.recv_buffer;
    seen.check(&mut m, &echoed, rb);
    while !input.is_empty() && seen.done.is_none() {
        let op = input.byte();
        let arg = input.byte();
        match op % 6 {
            0 | 1 => {
                let owed = seen.owed();
                let n = owed.len().min(usize::from(arg) + 1).min(m.input_room());
                if n > 0 {
                    let _ = m.handle_input(now, &owed[..n]);
                    seen.fed += n;
                }
            }
            2 => {
                let bytes = input.take(usize::from(arg % 16));
                let n = bytes.len().min(m.input_room());
                if n > 0 {
                    honest = false;
                    let _ = m.handle_input(now, &bytes[..n]);
                    seen.fed += n;
                }
            }
            3 | 4 => {
                now += jump(arg);
                m.handle_timeout(now);
            }
            _ => {
                if arg < 32 {
                    break;
                }
            }
        }
        seen.check(&mut m, &echoed, rb);
    }
    m.handle_eof(now);
    seen.check(&mut m, &echoed, rb);
    let done = seen.done.expect("EOF must end the session");
    check_pieces(&seen.pieces, &echoed, exit);
    if honest {
        assert!(
            !matches!(done, Err(Error::Remote(ProtocolError::EchoMismatch))),
            "mismatch against an honest server"
        );
    }
    if done.is_ok() {
        assert_eq!(seen.replies.len(), echoed.len(), "Ok with lines not echoed");
    }
}
