//! Many small files over a slow link: what the window costs in round trips.

use super::*;

/// What [`many_files_session`] measured.
#[derive(Debug, Clone)]
pub struct ManyFiles {
    /// Virtual time from the connection's start until both sides ended.
    pub elapsed: Duration,
    /// Entries the receiver saved (files) or made (directories).
    pub saved: usize,
}

/// `files` small files (1 KiB each, in 10 directories) over a link with a
/// fixed one-way delay, the receiver confirming in groups when the sender
/// says it waits (`Flush`), as a group commit does. Checks that every file
/// arrives with its content, path and metadata; returns how long it took
/// in virtual time. With no round trip per file, that grows with the
/// window turns (files / window), not with the number of files.
pub fn many_files_session(files: usize, one_way: Duration, seed: u64) -> Result<ManyFiles, String> {
    use crate::testing::{MemDisk, MemReceiver, MemSender};
    use crate::xfer::{
        EntryKind, FileSpec, Meta, Mtime, Receiver, ReceiverRole, SafeName, SafePath, Sender,
    };
    use bytes::Bytes;

    let start = Instant::now();
    let mut sim = Sim::new(seed, start);
    let transfer = crate::config::TransferConfig {
        window: 256,
        ..small_transfer()
    };
    let limits = transfer.path_limits();
    let name = |s: String| SafeName::new(s.as_bytes(), 64).expect("valid");
    let mut entries = Vec::new();
    for d in 0..10 {
        let path = SafePath::new(vec![name(format!("d{d}"))], &limits).expect("valid");
        let meta = Meta {
            mode: 0o755,
            mtime: Mtime { secs: 7, nanos: 0 },
        };
        let spec = FileSpec {
            path,
            kind: EntryKind::Directory,
            size: 0,
            meta,
        };
        entries.push((spec, Bytes::new()));
    }
    for i in 0..files {
        let parts = vec![name(format!("d{}", i % 10)), name(format!("f{i}"))];
        let content = Bytes::from(content(&mut sim.rng, 1024));
        let meta = Meta {
            mode: 0o640,
            mtime: Mtime {
                secs: 1_700_000_000 + i as i64,
                nanos: i as u32,
            },
        };
        let spec = FileSpec {
            path: SafePath::new(parts, &limits).expect("valid"),
            kind: EntryKind::File,
            size: content.len() as u64,
            meta,
        };
        entries.push((spec, content));
    }
    let mut tx = MemSender::entries(entries.clone());
    let mut rx = MemReceiver::new(MemDisk::default(), false);
    rx.defer_saves = true;
    let imp = Impairments {
        latency: (one_way, one_way),
        max_piece: 65_536,
        ..Impairments::none()
    };
    let mut sender = Sender::new(tx.role(transfer.clone()), small_limits(), start);
    let mut receiver = Receiver::new(ReceiverRole::new(transfer), small_limits(), start);
    let (outcome, _) = sim
        .connect(
            (&mut sender, &mut tx),
            (&mut receiver, &mut rx),
            &imp,
            MAX_STEPS,
        )
        .map_err(|e| e.to_string())?;
    if outcome.a.is_err() || outcome.b.is_err() {
        return Err(format!("failed on a clean link: {outcome:?}"));
    }
    for (spec, content) in &entries {
        let path = spec.path.to_string();
        match spec.kind {
            EntryKind::Directory if !rx.disk.dirs.contains(&path) => {
                return Err(format!("{path}: directory not made"))
            }
            EntryKind::File if rx.disk.files.get(&path).map(Vec::as_slice) != Some(content) => {
                return Err(format!("{path}: content differs"))
            }
            EntryKind::File if rx.disk.meta.get(&path) != Some(&spec.meta) => {
                return Err(format!("{path}: metadata differs"))
            }
            _ => {}
        }
    }
    let ended = outcome.ended.0.max(outcome.ended.1);
    Ok(ManyFiles {
        elapsed: ended - start,
        saved: rx.saved.len() + rx.disk.dirs.len(),
    })
}
