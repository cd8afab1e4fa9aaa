//! What a shell may read while the application's work runs
//! ([`StreamCore::read_while_working`]) is bounded: the machine decodes what
//! it is given, and the events it decodes wait, undrained, until the work
//! is done, so a receiver whose disk stalls must not take in the whole of
//! a fast sender's stream meanwhile. Driven through the core's public API
//! with a work that is taken and never finished: no sockets, no timing.

use std::io;
use std::time::Instant;

use bytes::Bytes;
use echoxfer::codec::{Frame, Protocol};
use echoxfer::driver::stream::{Next, StreamCore};
use echoxfer::driver::{Abort, App, Work};
use echoxfer::testing::{file_offer, MemDisk, MemReceiver};
use echoxfer::xfer::{Receiver, ReceiverEvent, ReceiverRole};
use echoxfer::{SessionLimits, TransferConfig};

mod common;
use common::shell::{write_all, Peer};

const MIB: usize = 1024 * 1024;

/// The in-memory receiver app, plus one work (a stalled disk) asked for
/// after the first write.
struct StallingDisk {
    inner: MemReceiver,
    writes: usize,
    stalled: bool,
}

impl App<Receiver> for StallingDisk {
    fn on_event(&mut self, m: &mut Receiver, now: Instant, e: ReceiverEvent) -> io::Result<()> {
        if matches!(e, ReceiverEvent::Write { .. }) {
            self.writes += 1;
        }
        self.inner.on_event(m, now, e)
    }

    fn poll_work(&mut self) -> Option<Work<Self, Receiver>> {
        if self.writes == 0 || self.stalled {
            return None;
        }
        self.stalled = true;
        Some(Work::new(|| {
            |_: &mut StallingDisk, _: &mut Receiver, _| Ok(())
        }))
    }
}

/// A sender's stream: the preamble, an offer of a `size`-byte file, its
/// `Begin` and `Data` frames of `chunk` bytes (no `End`: it never gets
/// that far).
fn sender_stream(size: usize, chunk: usize) -> Vec<u8> {
    let mut wire = Protocol::File.preamble().to_vec();
    wire.extend(file_offer(0, b"big", size as u64).encode_to_vec());
    wire.extend(Frame::Begin { id: 0, from: 0 }.encode_to_vec());
    for _ in 0..size / chunk {
        wire.extend(Frame::Data(Bytes::from(vec![7u8; chunk])).encode_to_vec());
    }
    wire
}

#[test]
fn while_the_disk_stalls_a_shell_reads_at_most_the_machines_buffer_ahead() {
    let limits = SessionLimits::default();
    let now = Instant::now();
    let role = ReceiverRole::new(TransferConfig::default());
    let mut machine = Receiver::new(role, limits.clone(), now);
    let mut app = StallingDisk {
        inner: MemReceiver::new(MemDisk::default(), false),
        writes: 0,
        stalled: false,
    };
    let wire = sender_stream(64 * MIB, 256 * 1024);
    let mut core = StreamCore::new(&mut machine, &mut app, &Abort::new());
    let mut peer = Peer { wire: &wire, at: 0 };
    let mut held_work = None;
    let mut ahead = 0;
    while !peer.is_read() {
        match core.next(now) {
            Next::Write { .. } => write_all(&mut core, now),
            Next::Flush => core.flushed(now),
            Next::Read { max, .. } => {
                assert!(held_work.is_none(), "no plain read while the work runs");
                peer.read(&mut core, now, max);
            }
            Next::Work => held_work = core.take_work(),
            Next::AwaitWork => {
                // The disk never answers: read as far as the core allows.
                let Some(max) = core.read_while_working() else {
                    break;
                };
                ahead += peer.read(&mut core, now, max);
            }
            other => panic!("unexpected step {other:?}"),
        }
    }
    assert!(held_work.is_some(), "the stalled work was asked for");
    assert!(ahead > 0, "the network and the disk overlap");
    let bound = limits.recv_buffer;
    assert!(
        ahead <= bound,
        "read {ahead} bytes ahead of a stalled disk; the bound is the machine's receive buffer, {bound}"
    );
}
