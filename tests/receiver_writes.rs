//! The receiver app hands its writes to the disk a MiB at a time (sooner
//! with anything else to do), and a session's end hands out what it still
//! holds: a cut transfer leaves every byte received in the partial file.
//! Driven through the stream core's public API on a real directory, the
//! work run in place as the blocking driver does; no sockets, no timing.
#![cfg(unix)]

use std::time::Instant;

use bytes::Bytes;
use echoxfer::codec::{Frame, Protocol};
use echoxfer::driver::stream::{Next, StreamCore};
use echoxfer::driver::Abort;
use echoxfer::files::{ReceiverApp, Store};
use echoxfer::testing::file_offer;
use echoxfer::xfer::{Receiver, ReceiverRole, SafeName};
use echoxfer::{SessionLimits, TransferConfig};

mod common;
use common::shell::{write_all, Peer};

const KIB: usize = 1024;

/// Feeds `wire` to a receiver over `dir`, then its end; returns how many
/// works ran once `data_from` bytes were fed, before the end.
fn receive(dir: &std::path::Path, wire: &[u8], data_from: usize) -> usize {
    let now = Instant::now();
    let role = ReceiverRole::new(TransferConfig::default());
    let mut machine = Receiver::new(role, SessionLimits::default(), now);
    let mut app = ReceiverApp::new(Store::new(dir, false).unwrap());
    let mut core = StreamCore::new(&mut machine, &mut app, &Abort::new());
    let mut peer = Peer { wire, at: 0 };
    let mut works_mid_data = 0;
    loop {
        match core.next(now) {
            Next::Write { .. } => write_all(&mut core, now),
            Next::Flush => core.flushed(now),
            // 4 KiB reads: every frame takes several.
            Next::Read { max, .. } => _ = peer.read(&mut core, now, max.min(4 * KIB)),
            Next::Work => {
                if peer.at >= data_from && !peer.is_read() {
                    works_mid_data += 1;
                }
                let work = core.take_work().expect("work announced");
                core.worked(now, work.run());
            }
            Next::Sleep(_) => core.timed_out(now),
            Next::Close => core.closed(now),
            Next::Done(_) => return works_mid_data,
            Next::AwaitWork => unreachable!("work runs in place"),
        }
    }
}

#[test]
fn writes_under_a_mib_wait_for_more_and_a_cut_session_still_writes_every_byte_received() {
    let tmp = tempfile::tempdir().unwrap();
    let mut wire = Protocol::File.preamble().to_vec();
    wire.extend(file_offer(0, b"big", 3 * 1024 * 1024).encode_to_vec());
    wire.extend(Frame::Begin { id: 0, from: 0 }.encode_to_vec());
    let chunk: Vec<u8> = (0..100 * KIB).map(|i| (i % 251) as u8).collect();
    let data = Frame::Data(Bytes::from(chunk.clone())).encode_to_vec();
    // From the first whole `Data` frame on (the offer and the start are
    // decided by works of their own before it).
    let data_from = wire.len() + data.len();
    for _ in 0..3 {
        wire.extend(&data);
    }
    // The connection is cut here, 300 KiB into a 3 MiB file.
    let works = receive(tmp.path(), &wire, data_from);
    assert_eq!(works, 0, "300 KiB of writes go to the disk together");
    let name = SafeName::new(b"big", 255).unwrap();
    let partial = std::fs::read(tmp.path().join(Store::partial_name(&name))).unwrap();
    assert_eq!(
        partial.len(),
        300 * KIB,
        "every byte received is in the partial file"
    );
    assert!(partial.chunks(100 * KIB).all(|c| c == &chunk[..]));
    assert!(
        !tmp.path().join("big").exists(),
        "nothing under the final name"
    );
}
