//! A simulated one-way byte stream, itself sans-IO (after str0m's netem):
//! bytes go in with the time they were sent, and come out later, cut into
//! pieces of random size, delayed, sometimes stalled, sometimes corrupted,
//! and in order, as TCP delivers them. Everything random comes from one
//! seeded generator, so a seed replays a run exactly.
//!
//! This is the one link model of the test suite: the simulator draws its
//! impairments at random, the test [`Pair`](super::Pair) picks them with a
//! [`Cutter`](super::Cutter), and scripted faults (a cut after `n` bytes,
//! a flipped byte at offset `n`) make a property reproducible at any offset.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::tamper::TamperStage;
pub use super::tamper::{Tamper, TamperOp, TamperTarget};

/// What a simulated link does to the bytes it carries.
#[derive(Debug, Clone, PartialEq)]
pub struct Impairments {
    /// Delay of each piece, drawn uniformly from this range.
    pub latency: (Duration, Duration),
    /// Largest piece handed to the reader at once (fragmentation); pieces
    /// queued together may also be delivered together (coalescing).
    pub max_piece: usize,
    /// Chance per piece that the link stalls before it.
    pub stall_chance: f64,
    /// How long a stall lasts.
    pub stall: Duration,
    /// Chance per piece that one of its bits is flipped.
    pub corrupt_chance: f64,
    /// Chance per piece that the connection drops before it.
    pub cut_chance: f64,
    /// Most bytes in flight at once (the peer's receive window): a writer
    /// whose link holds this much waits, so back-pressure reaches the
    /// machine and a dropped connection loses a bounded amount.
    pub window: usize,
    /// Writes of at most this many bytes are never split, as a real stack
    /// sends a small write in one segment (0: any write may tear). The
    /// legacy protocols lean on this; the framed ones must not.
    pub atomic_write: usize,
    /// A read joins a random number of the pieces that have arrived
    /// (`false`: all of them, up to the reader's room).
    pub random_coalesce: bool,
    /// Scripted: the connection drops once this many bytes were delivered.
    pub cut_after: Option<u64>,
    /// Scripted: the byte at this stream offset arrives with all bits flipped.
    pub flip_at: Option<u64>,
    /// A slowloris writer (or a starved link): from a stream offset on,
    /// bytes arrive one at a time, a fixed gap apart.
    pub trickle: Option<Trickle>,
    /// Scripted: one byte or one secure record is flipped, dropped,
    /// duplicated or swapped with the next (see [`Tamper`]).
    pub tamper: Option<Tamper>,
    /// Keep a copy of every byte the writer wrote, as it wrote them (what
    /// an eavesdropper records, to replay later): [`Netem::recorded`].
    pub record: bool,
}

/// Bytes from stream offset `from` on arrive one at a time, `gap` apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trickle {
    /// The first trickled byte's stream offset.
    pub from: u64,
    /// Time between two trickled bytes' arrivals.
    pub gap: Duration,
}

impl Impairments {
    /// A perfect link: no delay, whole writes, nothing lost or changed.
    pub fn none() -> Self {
        Impairments {
            latency: (Duration::ZERO, Duration::ZERO),
            max_piece: usize::MAX,
            stall_chance: 0.0,
            stall: Duration::ZERO,
            corrupt_chance: 0.0,
            cut_chance: 0.0,
            window: usize::MAX,
            atomic_write: 0,
            random_coalesce: false,
            cut_after: None,
            flip_at: None,
            trickle: None,
            tamper: None,
            record: false,
        }
    }
}

/// One direction of a simulated connection.
#[derive(Debug)]
pub struct Netem {
    imp: Impairments,
    /// Pieces in flight with the time they arrive, in order.
    queue: VecDeque<(Instant, Bytes)>,
    /// Arrival time of the last queued piece: nothing overtakes it.
    last_arrival: Option<Instant>,
    /// The writer closed: after the bytes, the reader sees EOF.
    fin: bool,
    eof_delivered: bool,
    cut: bool,
    /// Bytes queued and not yet delivered.
    in_flight: usize,
    /// Stream offsets: bytes written so far, and bytes delivered so far.
    sent: u64,
    delivered: u64,
    /// The reader closed: writes are dropped.
    reader_gone: bool,
    /// Bits flipped so far.
    pub corrupted: u64,
    /// Pieces held back by a stall so far.
    pub stalls: u64,
    /// The scripted edit, if any, and when the writer last wrote (for
    /// what it holds back when the writer closes).
    tamper: Option<TamperStage>,
    last_write: Option<Instant>,
    /// What the writer wrote, with [`Impairments::record`].
    recorded: Vec<u8>,
}

impl Netem {
    /// A link with these impairments.
    pub fn new(imp: Impairments) -> Self {
        Netem {
            queue: VecDeque::new(),
            last_arrival: None,
            fin: false,
            eof_delivered: false,
            cut: false,
            in_flight: 0,
            sent: 0,
            delivered: 0,
            reader_gone: false,
            corrupted: 0,
            stalls: 0,
            tamper: imp.tamper.map(TamperStage::new),
            last_write: None,
            recorded: Vec::new(),
            imp,
        }
    }

    /// Every byte the writer wrote while the link was up, with
    /// [`Impairments::record`] (empty without).
    pub fn recorded(&self) -> &[u8] {
        &self.recorded
    }

    /// The impairments this link applies.
    pub fn impairments(&self) -> &Impairments {
        &self.imp
    }

    /// Bytes written at `now`. Returns false if the connection dropped
    /// (now or earlier): the bytes are lost.
    pub fn send(&mut self, now: Instant, bytes: &[u8], rng: &mut ChaCha8Rng) -> bool {
        if self.cut || self.fin {
            return false;
        }
        if self.reader_gone {
            // Bytes for a reader that has closed: its stack answers with a
            // reset, as TCP does.
            if !bytes.is_empty() {
                self.cut();
            }
            return false;
        }
        self.last_write = Some(now);
        if self.imp.record {
            self.recorded.extend_from_slice(bytes);
        }
        let edited;
        let bytes = match &mut self.tamper {
            Some(stage) => {
                edited = stage.pass(bytes);
                &edited[..]
            }
            None => bytes,
        };
        let max_piece = match bytes.len() <= self.imp.atomic_write {
            true => usize::MAX,
            false => self.imp.max_piece.max(1),
        };
        for piece in bytes.chunks(max_piece) {
            if rng.random_bool(self.imp.cut_chance) {
                self.cut = true;
                return false;
            }
            let n = match max_piece {
                usize::MAX => piece.len(),
                _ => rng.random_range(1..=piece.len().max(1)).min(piece.len()),
            };
            for part in [&piece[..n], &piece[n..]] {
                if !part.is_empty() {
                    self.enqueue(now, part, rng);
                }
            }
        }
        true
    }

    /// Applies the scripted flip if it falls in `part`, the bytes at
    /// stream offset `self.sent`.
    fn scripted_flip(&mut self, part: &mut [u8]) {
        let hit = self.imp.flip_at.and_then(|at| at.checked_sub(self.sent));
        if let Some(i) = hit.filter(|&i| i < part.len() as u64) {
            part[i as usize] ^= 0xff;
            self.corrupted += 1;
        }
        self.sent += part.len() as u64;
    }

    /// Queues `part`, the bytes at stream offset `self.sent`: trickled a
    /// byte at a time from the trickle's offset on.
    fn enqueue(&mut self, now: Instant, part: &[u8], rng: &mut ChaCha8Rng) {
        let Some(t) = self.imp.trickle else {
            return self.enqueue_piece(now, part, Duration::ZERO, rng);
        };
        let fast = t.from.saturating_sub(self.sent).min(part.len() as u64) as usize;
        if fast > 0 {
            self.enqueue_piece(now, &part[..fast], Duration::ZERO, rng);
        }
        for byte in part[fast..].chunks(1) {
            self.enqueue_piece(now, byte, t.gap, rng);
        }
    }

    /// Queues one piece, arriving at least `gap` after the one before.
    fn enqueue_piece(&mut self, now: Instant, part: &[u8], gap: Duration, rng: &mut ChaCha8Rng) {
        let (lo, hi) = self.imp.latency;
        let mut at = now
            + if hi > lo {
                rng.random_range(lo..=hi)
            } else {
                lo
            };
        if rng.random_bool(self.imp.stall_chance) {
            at += self.imp.stall;
            self.stalls += 1;
        }
        // TCP delivers in order: a piece never arrives before the one ahead.
        at = at.max(self.last_arrival.map_or(at, |last| last + gap));
        self.last_arrival = Some(at);
        let mut part = BytesMut::from(part);
        self.scripted_flip(&mut part);
        if rng.random_bool(self.imp.corrupt_chance) {
            let i = rng.random_range(0..part.len());
            part[i] ^= 1 << rng.random_range(0..8);
            self.corrupted += 1;
        }
        self.in_flight += part.len();
        self.queue.push_back((at, part.freeze()));
    }

    /// Whether the writer must wait: the window is full (never once the
    /// connection is gone, since whatever is written then is lost anyway).
    pub fn is_full(&self) -> bool {
        !self.cut && !self.fin && !self.reader_gone && self.in_flight >= self.imp.window
    }

    /// The reader has gone: everything in flight or written later is lost.
    /// As with TCP, a reader that closes with bytes unread (or that gets
    /// bytes afterwards, see [`send`](Self::send)) resets the connection:
    /// the link is cut, and the simulator cuts the other direction too,
    /// destroying what was in flight to the writer.
    pub fn discard(&mut self) {
        if !self.queue.is_empty() && !self.reader_gone {
            self.cut();
        }
        self.reader_gone = true;
        // No EOF is due either: there is nobody to tell.
        self.eof_delivered = true;
        self.queue.clear();
        self.in_flight = 0;
    }

    /// The writer is done; the reader sees EOF after the bytes in flight
    /// (and after any a scripted edit still held, which go unedited).
    pub fn close(&mut self) {
        let held = self.tamper.as_mut().map(TamperStage::flush);
        if let (Some(held), Some(at)) = (held, self.last_write) {
            if !held.is_empty() && !self.cut && !self.fin && !self.reader_gone {
                let at = self.last_arrival.map_or(at, |last| last.max(at));
                self.in_flight += held.len();
                self.queue.push_back((at, Bytes::from(held)));
            }
        }
        self.fin = true;
    }

    /// Whether the scripted edit ([`Impairments::tamper`]) was made and
    /// changed the stream.
    pub fn tampered(&self) -> bool {
        self.tamper.as_ref().is_some_and(TamperStage::changed)
    }

    /// Whether the connection has dropped.
    pub fn is_cut(&self) -> bool {
        self.cut
    }

    /// Drops the connection: what is in flight is lost, the reader sees EOF.
    pub fn cut(&mut self) {
        self.cut = true;
        self.queue.clear();
        self.in_flight = 0;
    }

    /// What the reader gets at `now`, at most `room` bytes: coalesced
    /// pieces that have arrived, `Some(empty)` for EOF, `None` for nothing yet.
    pub fn receive(&mut self, now: Instant, room: usize, rng: &mut ChaCha8Rng) -> Option<Bytes> {
        let room = room.min(self.bytes_before_cut());
        let mut pieces = self.pieces_to_join(now, rng);
        let mut out = BytesMut::new();
        while let Some((at, piece)) = self.queue.front_mut() {
            if *at > now || out.len() >= room || pieces == 0 {
                break;
            }
            let take = piece.len().min(room - out.len());
            out.extend_from_slice(&piece.split_to(take));
            self.in_flight -= take;
            if piece.is_empty() {
                self.queue.pop_front();
                pieces -= 1;
            }
        }
        self.delivered += out.len() as u64;
        if self.imp.cut_after == Some(self.delivered) && !self.cut {
            self.cut();
        }
        if !out.is_empty() {
            return Some(out.freeze());
        }
        let ended = (self.fin || self.cut) && self.queue.is_empty();
        if ended && !self.eof_delivered {
            self.eof_delivered = true;
            return Some(Bytes::new());
        }
        None
    }

    /// How many bytes may still be delivered before the scripted cut.
    fn bytes_before_cut(&self) -> usize {
        let left = self.imp.cut_after.map_or(u64::MAX, |n| n - self.delivered);
        usize::try_from(left).unwrap_or(usize::MAX)
    }

    /// How many arrived pieces the next read joins.
    fn pieces_to_join(&self, now: Instant, rng: &mut ChaCha8Rng) -> usize {
        if !self.imp.random_coalesce {
            return usize::MAX;
        }
        let arrived = self.queue.iter().take_while(|(at, _)| *at <= now).count();
        rng.random_range(1..=arrived.max(1))
    }

    /// When the next piece arrives (or the EOF is due), if anything is pending.
    pub fn next_arrival(&self, now: Instant) -> Option<Instant> {
        match self.queue.front() {
            Some((at, _)) => Some(*at),
            None if (self.fin || self.cut) && !self.eof_delivered => Some(now),
            None => None,
        }
    }
}
