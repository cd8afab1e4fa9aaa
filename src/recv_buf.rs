//! The receive buffer every stream machine owns, so a driver reads the
//! peer's bytes straight into it (as with rustls `read_tls` or tokio-util's
//! `FramedImpl`) and payloads are split off that same allocation: no byte
//! is copied between the socket and a `Data` payload, an echoed message or
//! a legacy read.
//!
//! Layout: `data` (received, not yet consumed) is followed, in the same
//! allocation, by `spare`, already initialised memory the next read goes
//! into; committing `n` bytes moves them from the front of `spare` to the
//! end of `data` without copying (`BytesMut::unsplit` of neighbours). Only
//! when `spare` is too short does a new block get allocated (and zeroed,
//! once: safe Rust cannot read into uninitialised memory); what `data`
//! then holds, the start of one frame, moves to its front.
//!
//! A block is taken back once every payload split off it is dropped. While
//! payloads of the last block are still held (by an application's work, as
//! a driver reads ahead while the disk writes them, or by events not yet
//! handed out), one of the blocks before it, kept on standby, is taken back
//! instead: a few blocks take turns, memory already faulted in, rather than
//! a fresh allocation (mapped, zeroed, faulted in and unmapped again) per
//! block. A buffer keeps at most [`STANDBY`] blocks besides its own.

use bytes::BytesMut;

/// The least a new block for reads holds (see [`RecvBuf::writable`]).
const READ_BLOCK: usize = 64 * 1024;

/// How many earlier blocks a buffer keeps to take back: as many as a
/// receiver may hold payloads in at once with 256 KiB frames (a block
/// each), a MiB of writes gathered for the disk and a MiB read ahead while
/// they are written. (With three, a tokio receive of 1 GiB still took 19k
/// page faults; with eight, 1k, as many as the blocking driver's 0.7k.)
/// The blocks kept were all in use at once before, so the most a session
/// holds does not grow; it keeps them until it ends.
const STANDBY: usize = 8;

/// Held input plus the initialised room after it.
#[derive(Debug, Default)]
pub(crate) struct RecvBuf {
    data: BytesMut,
    spare: BytesMut,
    /// Earlier blocks, empty, kept to be taken back once the payloads
    /// split off them are dropped (oldest first).
    standby: Vec<BytesMut>,
    /// Length of the slice last handed out by [`writable`](Self::writable).
    offered: usize,
}

impl RecvBuf {
    /// A writable slice of exactly `len` bytes right after the held data
    /// (its content is unspecified). [`commit`](Self::commit) says how
    /// much of it was filled.
    pub(crate) fn writable(&mut self, len: usize) -> &mut [u8] {
        if self.spare.len() < len {
            // Room for several small reads at once: a read of a few bytes
            // must not cost a fresh block (and its zeroing) every time.
            self.reserve(len.max(READ_BLOCK));
        }
        self.offered = len;
        &mut self.spare[..len]
    }

    /// The first `n` bytes of the last writable slice are input now.
    /// `Err(offered)` if `n` is more than that slice held (nothing changes).
    pub(crate) fn commit(&mut self, n: usize) -> Result<(), usize> {
        let offered = std::mem::take(&mut self.offered);
        if n > offered {
            return Err(offered);
        }
        if n > 0 {
            // Neighbours in one block: no copy.
            self.data.unsplit(self.spare.split_to(n));
        }
        Ok(())
    }

    /// Forgets the last writable slice without taking any of it (for a
    /// machine that reads and discards).
    pub(crate) fn discard(&mut self) {
        self.offered = 0;
    }

    /// Makes sure `additional` bytes can follow the held data without a
    /// copy of what is held later (a frame whose header announced its
    /// length is then received in one block).
    pub(crate) fn reserve(&mut self, additional: usize) {
        if self.spare.len() >= additional {
            return;
        }
        let held = self.data.len();
        // Neighbours in one block: joining them copies nothing.
        let mut block = std::mem::take(&mut self.data);
        block.unsplit(std::mem::take(&mut self.spare));
        block.truncate(held);
        // Once every payload split off this block has been dropped (the
        // application wrote them), the block is taken back in place.
        if !block.try_reclaim(additional) {
            block = self.next_block(block, held + additional);
        }
        block.resize(held + additional, 0);
        self.spare = block.split_off(held);
        self.data = block;
    }

    /// A block for `len` bytes that starts with what `current` holds (the
    /// start of one frame, the one copy left), when `current` is still in
    /// use: a standby block whose payloads are gone, else a new one.
    /// `current` goes on standby (the oldest one is let go past
    /// [`STANDBY`]).
    fn next_block(&mut self, mut current: BytesMut, len: usize) -> BytesMut {
        let free = self.standby.iter_mut().position(|b| b.try_reclaim(len));
        let mut next = match free {
            Some(i) => self.standby.remove(i),
            None => BytesMut::with_capacity(len),
        };
        next.extend_from_slice(&current);
        current.clear();
        if self.standby.len() == STANDBY {
            self.standby.remove(0);
        }
        self.standby.push(current);
        next
    }

    /// The held input, for decoding and splitting payloads off.
    pub(crate) fn data(&mut self) -> &mut BytesMut {
        &mut self.data
    }

    /// The held input, read-only.
    pub(crate) fn held(&self) -> &[u8] {
        &self.data
    }

    /// Bytes held.
    pub(crate) fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether nothing is held.
    pub(crate) fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Drops everything, memory included.
    pub(crate) fn clear(&mut self) {
        *self = RecvBuf::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_bytes_follow_the_held_ones_and_split_off_without_copy() {
        let mut b = RecvBuf::default();
        b.writable(8)[..3].copy_from_slice(b"abc");
        b.commit(3).unwrap();
        b.writable(8)[..2].copy_from_slice(b"de");
        b.commit(2).unwrap();
        assert_eq!(b.held(), b"abcde");
        let start = b.held().as_ptr();
        let payload = b.data().split_to(4).freeze();
        assert_eq!(&payload[..], b"abcd");
        // The payload is the very memory the bytes were read into.
        assert_eq!(payload.as_ptr(), start);
        assert_eq!(b.held(), b"e");
    }

    #[test]
    fn a_commit_beyond_the_slice_handed_out_is_refused_and_changes_nothing() {
        let mut b = RecvBuf::default();
        b.writable(4);
        assert_eq!(b.commit(5), Err(4));
        assert!(b.is_empty());
        // A commit refers to the last slice only.
        assert_eq!(b.commit(1), Err(0));
    }

    #[test]
    fn a_block_whose_payloads_are_gone_is_reused_and_one_still_in_use_is_not() {
        let mut b = RecvBuf::default();
        b.reserve(100);
        b.writable(100).fill(7);
        b.commit(100).unwrap();
        let first = b.held().as_ptr();
        let payload = b.data().split_to(100).freeze();
        b.reserve(100);
        assert_ne!(b.writable(100).as_ptr(), first, "a payload still uses it");
        drop(payload);
        b.writable(100).fill(8);
        b.commit(100).unwrap();
        let second = b.held().as_ptr();
        drop(b.data().split_to(100).freeze());
        b.reserve(100);
        assert_eq!(b.writable(100).as_ptr(), second, "taken back once unused");
    }

    #[test]
    fn two_blocks_alternate_while_the_payloads_of_the_last_one_are_still_held() {
        let mut b = RecvBuf::default();
        let fill = |b: &mut RecvBuf| {
            b.reserve(1000);
            b.writable(1000).fill(1);
            b.commit(1000).unwrap();
            let at = b.held().as_ptr();
            (at, b.data().split_to(1000).freeze())
        };
        let (first, one) = fill(&mut b);
        let (second, two) = fill(&mut b);
        assert_ne!(second, first, "the first block's payload is still held");
        drop(one);
        // The work wrote the first block's payload and holds the second's.
        let (third, three) = fill(&mut b);
        assert_eq!(third, first, "the first block, on standby, is taken back");
        drop(two);
        let (fourth, _four) = fill(&mut b);
        assert_eq!(fourth, second, "and then the second");
        drop(three);
    }

    #[test]
    fn a_standby_block_still_in_use_is_not_taken_and_the_held_bytes_move_to_the_new_one() {
        let mut b = RecvBuf::default();
        b.reserve(1000);
        b.writable(1000).fill(1);
        b.commit(1000).unwrap();
        let first = b.held().as_ptr();
        let one = b.data().split_to(999).freeze();
        // One byte is held (the start of a frame); the payload pins the block.
        b.reserve(5000);
        let second = b.held().as_ptr();
        assert_ne!(second, first);
        assert_eq!(b.held(), [1]);
        let two = b.data().split_to(1).freeze();
        b.writable(5000).fill(2);
        b.commit(5000).unwrap();
        let _rest = b.data().split_to(5000).freeze();
        b.reserve(5000);
        let third = b.held().as_ptr();
        assert_ne!(third, first, "the standby's payload is still held");
        assert_ne!(third, second, "and so is the current one's");
        assert_eq!(b.writable(5000).len(), 5000);
        drop((one, two));
    }

    #[test]
    fn a_new_block_keeps_the_held_bytes() {
        let mut b = RecvBuf::default();
        b.writable(2).copy_from_slice(b"xy");
        b.commit(2).unwrap();
        b.writable(1000)[..1].copy_from_slice(b"z");
        b.commit(1).unwrap();
        assert_eq!(b.held(), b"xyz");
    }
}
