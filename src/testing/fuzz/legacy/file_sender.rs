//! The legacy file sender against a hostile receiver, then an honest one.

use super::*;

/// The legacy file sender with content from the input (the words `quit`,
/// `success` and torn words mixed in) against a hostile receiver: acks
/// whole, split, doubled or garbled, clock jumps and EOF; then, if still
/// running, an honest receiver until the end. Invariants: reads asked are
/// contiguous and within the file; pieces are the content in order, each
/// 1 to 1024 bytes and never containing `quit`; a piece goes only after
/// every earlier piece was acked, and after a piece that tore `quit` only
/// once acks have been quiet for `legacy_quit_settle`; `quit` goes only
/// after the whole file was acked and the acks settled, and ends the
/// session `Ok`; progress is monotonic; garbage is a typed error; an honest
/// receiver always gets to `quit` in bounded steps.
pub fn legacy_file_sender(data: &[u8]) {
    let mut input = Input(data);
    let n = usize::from(input.u16() % 6000);
    let content = wordy(&mut Input(input.take(n)), 8000);
    let config = small_unframed();
    let mut now = start();
    let mut model = SenderModel {
        content: Bytes::from(content),
        sent: 0,
        pieces: Vec::new(),
        credited: 0,
        ack_match: 0,
        last_ack: now,
        last_activity: now,
        next_read: 0,
        progress: 0,
        quit: false,
        done: None,
        config: config.clone(),
    };
    let mut m = LegacyFileSender::new(model.content.len() as u64, config.clone(), now);
    model.settle(&mut m, now);
    // Whether the receiver misbehaved (garbage, EOF) or the clock jumped
    // past the idle timeout: only then may the sender fail.
    let mut hostile = false;
    while !input.is_empty() && model.done.is_none() {
        let op = input.byte();
        let arg = input.byte();
        match op % 8 {
            0..=2 => model.feed(&mut m, now, SUCCESS),
            3 => {
                let k = usize::from(arg) % SUCCESS.len();
                model.feed(&mut m, now, &SUCCESS[..k]);
                model.feed(&mut m, now, &SUCCESS[k..]);
            }
            4 => {
                // A torn ack: garbage unless it happens to continue one.
                hostile = true;
                let k = usize::from(arg) % SUCCESS.len();
                model.feed(&mut m, now, &SUCCESS[k..]);
            }
            5 if arg < 8 => {
                hostile = true;
                model.feed(&mut m, now, &[arg]);
            }
            5 | 6 => {
                now += jump(arg);
                m.handle_timeout(now);
                if model.awaiting() && now >= model.last_activity + config.idle_timeout {
                    hostile = true;
                    model.expect_end(Err(Error::TimedOut(config.idle_timeout)));
                }
            }
            _ => {
                if arg < 16 {
                    hostile = true;
                    m.handle_eof(now);
                    model.expect_end(Err(ProtocolError::UnexpectedEof {
                        state: "sending (the receiver closed before `quit`)",
                    }
                    .into()));
                }
            }
        }
        model.settle(&mut m, now);
    }
    // An honest receiver from here: acks what is owed, waits out the settle.
    let bound = 2 * model.content.len() + 64;
    for _ in 0..bound {
        if model.done.is_some() {
            break;
        }
        if model.ack_match != 0 {
            let rest = &SUCCESS[model.ack_match..];
            model.feed(&mut m, now, rest);
        } else if model.awaiting() {
            model.feed(&mut m, now, SUCCESS);
        } else {
            now += config.legacy_quit_settle;
            m.handle_timeout(now);
        }
        model.settle(&mut m, now);
    }
    let done = model
        .done
        .clone()
        .expect("the sender did not finish in bounded steps");
    if done.is_ok() {
        assert!(model.quit && model.sent == model.content.len());
    }
    assert!(
        hostile || done.is_ok(),
        "failed against an honest receiver: {done:?}"
    );
    let _ = m.handle_input(now, SUCCESS);
    let d = drain(&mut m);
    assert!(
        d.transmits.is_empty() && d.events.is_empty(),
        "output after the end"
    );
}

struct SenderModel {
    content: Bytes,
    /// Bytes of content sent.
    sent: usize,
    /// End offsets of the pieces sent.
    pieces: Vec<usize>,
    /// Acks credited to pieces.
    credited: usize,
    ack_match: usize,
    last_ack: Instant,
    last_activity: Instant,
    next_read: u64,
    progress: u64,
    quit: bool,
    done: Option<Result<(), Error>>,
    config: UnframedConfig,
}

impl SenderModel {
    fn awaiting(&self) -> bool {
        self.credited < self.pieces.len()
    }

    fn expect_end(&mut self, result: Result<(), Error>) {
        if self.done.is_none() {
            self.done = Some(result);
        }
    }

    /// Feeds ack bytes, tracking what the sender must make of them.
    fn feed(&mut self, m: &mut LegacyFileSender, now: Instant, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let r = m.handle_input(now, bytes);
        if let Some(end) = &self.done {
            after_end(&r, end);
            return;
        }
        for &b in bytes {
            if b != SUCCESS[self.ack_match] {
                let e: Error = ProtocolError::InvalidField {
                    field: "legacy ack",
                    reason: "expected the bytes `success`",
                }
                .into();
                assert_eq!(r, Err(e.clone()));
                self.done = Some(Err(e));
                return;
            }
            self.ack_match += 1;
            if self.ack_match == SUCCESS.len() {
                self.ack_match = 0;
                self.last_ack = now;
                self.last_activity = now;
                if self.credited < self.pieces.len() {
                    self.credited += 1;
                }
            }
        }
        assert_eq!(r, Ok(bytes.len()));
    }

    /// Drains the sender, answering reads, and checks every output.
    fn settle(&mut self, m: &mut LegacyFileSender, now: Instant) {
        loop {
            let d = drain(m);
            for t in &d.transmits {
                assert!(!self.quit, "output after quit");
                self.transmit(t, now);
            }
            let mut answered = false;
            for e in d.events {
                match e {
                    LegacySenderEvent::Read { offset, len } => {
                        assert_eq!(offset, self.next_read, "reads not contiguous");
                        assert!(len > 0 && len <= PIECE_MAX, "read of {len}");
                        let end = offset as usize + len;
                        assert!(end <= self.content.len(), "read beyond the file");
                        self.next_read = end as u64;
                        let chunk = self.content.slice(offset as usize..end);
                        m.provide(offset, chunk)
                            .expect("the exact range is accepted");
                        answered = true;
                    }
                    LegacySenderEvent::Progress { acked, size } => {
                        assert_eq!(size, self.content.len() as u64);
                        assert!(acked >= self.progress && acked <= size, "progress {acked}");
                        assert!(self.pieces.contains(&(acked as usize)), "not a piece end");
                        self.progress = acked;
                    }
                }
            }
            if let Some(r) = d.done {
                if self.quit {
                    self.expect_end(Ok(()));
                }
                assert_eq!(
                    Some(&r),
                    self.done.as_ref(),
                    "the sender ended unexpectedly"
                );
                return;
            }
            if !answered {
                return;
            }
        }
    }

    fn transmit(&mut self, t: &Bytes, now: Instant) {
        let settle = self.config.legacy_quit_settle;
        assert!(self.done.is_none(), "output after the end");
        assert!(!self.awaiting(), "a piece before the last was acked");
        if t[..] == *QUIT && self.sent == self.content.len() {
            if !self.pieces.is_empty() {
                assert!(
                    now >= self.last_ack + settle,
                    "quit before the acks settled"
                );
            }
            self.quit = true;
            return;
        }
        assert!(
            !t.is_empty() && t.len() <= PIECE_MAX,
            "piece of {}",
            t.len()
        );
        assert!(!contains(t, QUIT), "a piece contains quit");
        let end = self.sent + t.len();
        assert_eq!(
            self.content.get(self.sent..end),
            Some(&t[..]),
            "piece differs"
        );
        if let Some(&prev) = self.pieces.last() {
            let start = self
                .pieces
                .len()
                .checked_sub(2)
                .map_or(0, |i| self.pieces[i]);
            let piece = &self.content[start..prev];
            let torn = (1..QUIT.len()).any(|k| piece.ends_with(&QUIT[..k]));
            if torn {
                assert!(
                    now >= self.last_ack + settle,
                    "piece after a torn quit too soon"
                );
            }
        }
        self.sent = end;
        self.pieces.push(end);
        self.last_activity = now;
    }
}
