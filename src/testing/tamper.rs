//! A scripted edit of a byte stream, for the [`Netem`](super::netem::Netem):
//! one byte, or one record of a secure channel's stream, flipped, dropped,
//! duplicated or swapped with the next one. The stage holds back the bytes
//! from the edit's target on until the target (and, for a swap, the unit
//! after it) is whole, edits them, and lets everything through from then
//! on: the reader sees exactly one edit of an otherwise untouched stream.

use crate::secure::{CONFIRM_LEN, HELLO_LEN, RECORD_HEADER, TAG_LEN};

/// What a [`Tamper`] does to its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TamperOp {
    /// One bit of the target (for a record, of a byte in its middle) flips.
    Flip,
    /// The target never arrives.
    Drop,
    /// The target arrives twice in a row.
    Duplicate,
    /// The target and the unit after it arrive in each other's place.
    Swap,
}

/// The unit a [`Tamper`] edits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TamperTarget {
    /// The byte at this stream offset.
    Byte(u64),
    /// The record of this index (0: the first) of a secure channel's
    /// stream, counted after the handshake (the hello and the key
    /// confirmation).
    Record(usize),
}

/// One scripted edit of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tamper {
    /// What happens.
    pub op: TamperOp,
    /// To what.
    pub target: TamperTarget,
}

/// Where the bytes a tamper needs are: not known yet (hold from this
/// stream offset on), or the target's range and the next unit's.
enum Span {
    HoldFrom(u64),
    Ready {
        target: (u64, u64),
        next: (u64, u64),
    },
}

/// The stage of a link that applies one [`Tamper`].
#[derive(Debug)]
pub(crate) struct TamperStage {
    tamper: Tamper,
    /// Bytes held back, and the stream offset of the first.
    held: Vec<u8>,
    held_at: u64,
    /// The record walk: where record `record_index` starts.
    record_at: u64,
    record_index: usize,
    /// The edit was made (`changed`: and it changed the stream).
    done: bool,
    changed: bool,
}

impl TamperStage {
    pub(crate) fn new(tamper: Tamper) -> Self {
        TamperStage {
            tamper,
            held: Vec::new(),
            held_at: 0,
            record_at: (HELLO_LEN + CONFIRM_LEN) as u64,
            record_index: 0,
            done: false,
            changed: false,
        }
    }

    /// Whether the edit was made and changed the stream (a swap of two
    /// equal bytes does not; an edit beyond the stream's end never happens).
    pub(crate) fn changed(&self) -> bool {
        self.changed
    }

    /// Takes the writer's next bytes; returns what may go on now.
    pub(crate) fn pass(&mut self, bytes: &[u8]) -> Vec<u8> {
        if self.done {
            return bytes.to_vec();
        }
        self.held.extend_from_slice(bytes);
        match self.span() {
            Span::HoldFrom(at) => {
                let free = (at.saturating_sub(self.held_at) as usize).min(self.held.len());
                self.held_at += free as u64;
                self.held.drain(..free).collect()
            }
            Span::Ready { target, next } => {
                self.apply(target, next);
                self.done = true;
                std::mem::take(&mut self.held)
            }
        }
    }

    /// The writer closed: whatever is held goes, unedited.
    pub(crate) fn flush(&mut self) -> Vec<u8> {
        self.done = true;
        std::mem::take(&mut self.held)
    }

    /// The stream offset just after the last byte seen.
    fn end(&self) -> u64 {
        self.held_at + self.held.len() as u64
    }

    fn span(&mut self) -> Span {
        let (start, lens) = match self.tamper.target {
            TamperTarget::Byte(at) => (at, Some((1, 1))),
            TamperTarget::Record(index) => {
                while self.record_index < index {
                    let Some(len) = self.record_len(self.record_at) else {
                        return Span::HoldFrom(self.record_at);
                    };
                    self.record_at += len;
                    self.record_index += 1;
                }
                let first = self.record_len(self.record_at);
                // Only a swap needs the record after it.
                let second = match self.tamper.op {
                    TamperOp::Swap => first.and_then(|len| self.record_len(self.record_at + len)),
                    _ => Some(0),
                };
                (self.record_at, first.zip(second))
            }
        };
        let Some((first, second)) = lens else {
            return Span::HoldFrom(start);
        };
        let needed = match self.tamper.op {
            TamperOp::Swap => start + first + second,
            _ => start + first,
        };
        if self.end() < needed {
            return Span::HoldFrom(start);
        }
        Span::Ready {
            target: (start, start + first),
            next: (start + first, start + first + second),
        }
    }

    /// The whole length of the record at stream offset `at`, once its
    /// header is in.
    fn record_len(&self, at: u64) -> Option<u64> {
        let i = usize::try_from(at.checked_sub(self.held_at)?).ok()?;
        let head = self.held.get(i..i + RECORD_HEADER)?;
        let body = u32::from_be_bytes([0, head[1], head[2], head[3]]) as u64;
        Some((RECORD_HEADER + TAG_LEN) as u64 + body)
    }

    fn apply(&mut self, (start, end): (u64, u64), (_, next_end): (u64, u64)) {
        let [start, end, next_end] = [start, end, next_end].map(|o| (o - self.held_at) as usize);
        let before = self.held.clone();
        match self.tamper.op {
            TamperOp::Flip => self.held[start + (end - start) / 2] ^= 0x01,
            TamperOp::Drop => {
                self.held.drain(start..end);
            }
            TamperOp::Duplicate => {
                let unit = self.held[start..end].to_vec();
                self.held.splice(end..end, unit);
            }
            TamperOp::Swap => self.held[start..next_end].rotate_left(end - start),
        }
        self.changed = self.held != before;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A secure-looking stream: the handshake, then records of these body lengths.
    fn stream(bodies: &[usize]) -> Vec<u8> {
        let mut s: Vec<u8> = (0..(HELLO_LEN + CONFIRM_LEN) as u8).collect();
        for (i, &len) in bodies.iter().enumerate() {
            let len32 = len as u32;
            s.extend_from_slice(&[1, (len32 >> 16) as u8, (len32 >> 8) as u8, len32 as u8]);
            s.extend(std::iter::repeat_n(i as u8 + 100, len + TAG_LEN));
        }
        s
    }

    fn run(s: &[u8], tamper: Tamper, piece: usize) -> (Vec<u8>, bool) {
        let mut stage = TamperStage::new(tamper);
        let mut out = Vec::new();
        for part in s.chunks(piece) {
            out.extend(stage.pass(part));
        }
        out.extend(stage.flush());
        (out, stage.changed())
    }

    fn record(i: usize, len: usize) -> Vec<u8> {
        let mut r = vec![1, 0, 0, len as u8];
        r.extend(std::iter::repeat_n(i as u8 + 100, len + TAG_LEN));
        r
    }

    #[test]
    fn each_edit_changes_exactly_its_unit_however_the_stream_is_cut() {
        let s = stream(&[5, 9, 3]);
        let h = HELLO_LEN + CONFIRM_LEN;
        let (r0, r1, r2) = (record(0, 5), record(1, 9), record(2, 3));
        for piece in [1, 3, 7, 1000] {
            let rec = |op, i| {
                run(
                    &s,
                    Tamper {
                        op,
                        target: TamperTarget::Record(i),
                    },
                    piece,
                )
            };
            let mut dropped = s[..h].to_vec();
            dropped.extend([&r0[..], &r2[..]].concat());
            assert_eq!(rec(TamperOp::Drop, 1), (dropped, true));
            let mut dup = s[..h].to_vec();
            dup.extend([&r0[..], &r1[..], &r1[..], &r2[..]].concat());
            assert_eq!(rec(TamperOp::Duplicate, 1), (dup, true));
            let mut swapped = s[..h].to_vec();
            swapped.extend([&r0[..], &r2[..], &r1[..]].concat());
            assert_eq!(rec(TamperOp::Swap, 1), (swapped, true));
            let (flipped, changed) = rec(TamperOp::Flip, 2);
            let diffs = flipped.iter().zip(&s).filter(|(a, b)| a != b).count();
            assert!(changed && diffs == 1 && flipped.len() == s.len());
            // Beyond the stream: nothing happens, nothing is lost.
            assert_eq!(rec(TamperOp::Drop, 3), (s.clone(), false));
            assert_eq!(rec(TamperOp::Swap, 2), (s.clone(), false));

            let byte = |op, at| {
                run(
                    &s,
                    Tamper {
                        op,
                        target: TamperTarget::Byte(at),
                    },
                    piece,
                )
            };
            let mut one_less = s.clone();
            one_less.remove(10);
            assert_eq!(byte(TamperOp::Drop, 10), (one_less, true));
            let mut swapped = s.clone();
            swapped.swap(10, 11);
            assert_eq!(byte(TamperOp::Swap, 10), (swapped, true));
            // Two equal bytes swapped: no change, and it says so.
            assert_eq!(byte(TamperOp::Swap, h as u64 + 5), (s.clone(), false));
        }
    }
}
