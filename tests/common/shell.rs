//! A shell of the stream core over an in-memory peer, for tests that drive
//! `StreamCore` step by step: the peer takes every write whole, and its
//! bytes come from one prepared stream.

use std::time::Instant;

use echoxfer::driver::stream::StreamCore;
use echoxfer::driver::App;
use echoxfer::StreamMachine;

/// The peer's side: its whole stream, and how much of it was read.
pub struct Peer<'w> {
    pub wire: &'w [u8],
    pub at: usize,
}

impl Peer<'_> {
    /// One read of at most `max` bytes into the machine's buffer,
    /// reported to the core (nothing left: the peer's end). Returns how
    /// many bytes it read.
    pub fn read<M: StreamMachine, A: App<M>>(
        &mut self,
        core: &mut StreamCore<'_, M, A>,
        now: Instant,
        max: usize,
    ) -> usize {
        let buf = core.read_buffer(max);
        let n = buf.len().min(self.wire.len() - self.at);
        buf[..n].copy_from_slice(&self.wire[self.at..self.at + n]);
        core.filled(now, n);
        self.at += n;
        n
    }

    /// Whether all of the stream was read.
    pub fn is_read(&self) -> bool {
        self.at == self.wire.len()
    }
}

/// The core's batch, taken whole by the peer.
pub fn write_all<M: StreamMachine, A: App<M>>(core: &mut StreamCore<'_, M, A>, now: Instant) {
    let n = core.transmit().iter().map(|s| s.len()).sum();
    core.wrote(now, n);
}
