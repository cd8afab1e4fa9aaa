//! Properties of the file-transfer machines over the in-memory pair, with
//! random cutting and coalescing of the byte stream and an in-memory disk.

use bytes::Bytes;
use echoxfer::driver::DriverError;
use echoxfer::error::ErrorCode;
use echoxfer::testing::{Cutter, MemDisk, MemReceiver, MemSender};
use echoxfer::xfer::{EntryKind, FileSpec, Meta, SafeName};
use echoxfer::Error;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

mod common;
use common::session::{run_session, Run};
use common::tree;
use echoxfer::testing::fuzz::small_transfer;

const CHUNK: usize = 1024;

fn name(s: &str) -> SafeName {
    SafeName::new(s.as_bytes(), 255).unwrap()
}

/// Sends `files` into `disk` over the in-memory pair, cut by `cutter`,
/// dropped after `cut` bytes and with the byte at `flip` corrupted if given.
fn run(
    files: &[(&str, Bytes)],
    disk: MemDisk,
    cutter: Cutter,
    cut: Option<u64>,
    flip: Option<u64>,
) -> Run<MemSender, MemReceiver> {
    let tx = MemSender::new(files.iter().map(|(n, c)| (name(n), c.clone())));
    let rx = MemReceiver::new(disk, false);
    run_session(tx.role(small_transfer()), tx, rx, cutter, cut, flip)
}

/// Wire offset of byte `k` of the file content in a fresh single-file
/// session: preamble, Offer, Begin, then one Data header per chunk.
fn wire_offset_of_content(name_len: usize, k: usize) -> u64 {
    // Preamble, Offer (29 fixed bytes, one component: 2 + name), Begin (id, from).
    let before = 6 + (5 + 29 + 2 + name_len) + (5 + 12);
    (before + (k / CHUNK + 1) * 5 + k) as u64
}

fn content() -> impl Strategy<Value = Vec<u8>> {
    let lines = prop::collection::vec(
        prop_oneof![
            Just(&b"quit\n"[..]),
            Just(&b"exit\r\n"[..]),
            Just(&b"success\n"[..]),
            Just(&b"Quit"[..])
        ],
        0..400,
    )
    .prop_map(|ls| ls.concat());
    prop_oneof![
        Just(Vec::new()),
        any::<u8>().prop_map(|b| vec![b]),
        (CHUNK - 2..=CHUNK + 2).prop_flat_map(|n| prop::collection::vec(any::<u8>(), n)),
        (2 * CHUNK - 1..=2 * CHUNK + 1).prop_flat_map(|n| prop::collection::vec(any::<u8>(), n)),
        prop::collection::vec(any::<u8>(), 0..20_000),
        lines,
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Invariant: any content, however the stream is cut, arrives
    /// byte-identical under its name, and the sender reports the same hash.
    #[test]
    fn any_content_arrives_byte_identical(
        data in content(),
        seed in any::<u64>(),
        piece in 1usize..5000,
    ) {
        let data = Bytes::from(data);
        let r = run(&[("f.bin", data.clone())], MemDisk::default(), Cutter::random(seed, piece), None, None);
        prop_assert!(r.outcome.a.is_ok(), "{:?}", r.outcome.a);
        prop_assert!(r.outcome.b.is_ok(), "{:?}", r.outcome.b);
        prop_assert_eq!(r.rx.disk.files.get("f.bin").map(Vec::as_slice), Some(&data[..]));
        prop_assert!(r.rx.disk.partials.is_empty());
        prop_assert_eq!(r.tx.delivered.clone(), vec![(0, *blake3::hash(&data).as_bytes())]);
        prop_assert_eq!(r.tx.pushed, data.len() as u64);
        prop_assert!(r.rx.largest_write <= CHUNK);
    }

    /// Invariant: a link dropped after any number of bytes never leaves
    /// anything under the final name unless it was verified; the same send
    /// then resumes where the partial ends, re-sends only the rest, and
    /// completes byte-identical.
    #[test]
    fn cut_anywhere_then_resume_completes_and_resends_only_the_rest(
        data in prop::collection::vec(any::<u8>(), 4096..16_384),
        cut_frac in 0.0f64..1.0,
        seed in any::<u64>(),
    ) {
        let data = Bytes::from(data);
        let files = [("big.dat", data.clone())];
        let stream_len = wire_offset_of_content(7, data.len()) + 5 + 32 + 5;
        let cut = (stream_len as f64 * cut_frac) as u64;
        let first = run(&files, MemDisk::default(), Cutter::random(seed, 3000), Some(cut), None);
        let saved = first.rx.disk.files.get("big.dat");
        if let Some(saved) = saved {
            // Only a verified file reaches its final name (the cut came after End).
            prop_assert_eq!(&saved[..], &data[..]);
            prop_assert_eq!(first.rx.saved.clone(), vec!["big.dat".to_string()]);
            return Ok(());
        }
        let held = first.rx.disk.partials.get("big.dat").map_or(0, Vec::len) as u64;
        let second = run(&files, first.rx.disk, Cutter::random(seed ^ 7, 3000), None, None);
        prop_assert!(second.outcome.a.is_ok() && second.outcome.b.is_ok());
        prop_assert_eq!(second.rx.disk.files.get("big.dat").map(Vec::as_slice), Some(&data[..]));
        prop_assert_eq!(second.tx.started.clone(), vec![(0, held)]);
        prop_assert_eq!(second.tx.pushed, data.len() as u64 - held);
        if cut_frac > 0.5 {
            // Far fewer re-sent bytes than the file: at most the unsent half and a chunk.
            prop_assert!(second.tx.pushed <= data.len() as u64 / 2 + 2 * CHUNK as u64,
                "re-sent {} of {}", second.tx.pushed, data.len());
        }
    }

    /// Invariant: one flipped byte of file data in transit is a typed
    /// `HashMismatch` on the receiver and a peer failure with that code on
    /// the sender, and nothing is left under the final name or as a partial.
    #[test]
    fn flipped_byte_is_detected_and_nothing_is_saved(
        data in prop::collection::vec(any::<u8>(), 1..6000),
        at in any::<prop::sample::Index>(),
        seed in any::<u64>(),
    ) {
        let data = Bytes::from(data);
        let k = at.index(data.len());
        let flip = wire_offset_of_content(5, k);
        let r = run(&[("x.bin", data)], MemDisk::default(), Cutter::random(seed, 2000), None, Some(flip));
        prop_assert!(matches!(r.outcome.b, Err(DriverError::Machine(Error::HashMismatch))), "{:?}", r.outcome.b);
        let sender_saw = matches!(&r.outcome.a,
            Err(DriverError::Machine(Error::PeerFailed { code: ErrorCode::HashMismatch, .. })));
        prop_assert!(sender_saw, "{:?}", r.outcome.a);
        prop_assert!(r.rx.disk.files.is_empty());
        prop_assert!(r.rx.disk.partials.is_empty());
        prop_assert_eq!(r.rx.discarded.clone(), vec!["x.bin".to_string()]);
        prop_assert!(r.tx.delivered.is_empty());
    }
}

#[test]
fn several_files_in_one_session_all_arrive() {
    let files: Vec<(String, Bytes)> = (0..5)
        .map(|i| {
            let body: Vec<u8> = (0..i * 1500).map(|j| (j * 31 + i) as u8).collect();
            (format!("file{i}.txt"), Bytes::from(body))
        })
        .collect();
    let refs: Vec<(&str, Bytes)> = files.iter().map(|(n, c)| (n.as_str(), c.clone())).collect();
    let r = run(
        &refs,
        MemDisk::default(),
        Cutter::random(3, 700),
        None,
        None,
    );
    assert!(r.outcome.a.is_ok() && r.outcome.b.is_ok());
    for (n, c) in &files {
        assert_eq!(
            r.rx.disk.files.get(n).map(Vec::as_slice),
            Some(&c[..]),
            "{n}"
        );
    }
    assert_eq!(r.tx.delivered.len(), 5);
    assert_eq!(r.rx.saved.len(), 5);
}

#[test]
fn existing_file_is_rejected_and_the_next_file_still_arrives() {
    let mut disk = MemDisk::default();
    disk.files.insert("a".into(), b"old".to_vec());
    let files = [
        ("a", Bytes::from_static(b"new")),
        ("b", Bytes::from_static(b"bee")),
    ];
    let r = run(&files, disk, Cutter::whole(), None, None);
    assert!(r.outcome.a.is_ok() && r.outcome.b.is_ok());
    assert_eq!(
        r.rx.disk.files["a"], b"old",
        "an existing file was overwritten"
    );
    assert_eq!(r.rx.disk.files["b"], b"bee");
    assert_eq!(
        r.tx.rejected,
        vec![(0, echoxfer::codec::RejectReason::Exists)]
    );
    assert_eq!(r.tx.delivered.len(), 1);
}

#[test]
fn corrupt_partial_restarts_from_zero() {
    let data = Bytes::from((0..5000u32).map(|i| i as u8).collect::<Vec<_>>());
    let mut disk = MemDisk::default();
    let mut bad = data[..3000].to_vec();
    bad[10] ^= 1;
    disk.partials.insert("f".into(), bad);
    let r = run(
        &[("f", data.clone())],
        disk,
        Cutter::random(1, 999),
        None,
        None,
    );
    assert!(r.outcome.a.is_ok() && r.outcome.b.is_ok());
    assert_eq!(
        r.tx.started,
        vec![(0, 0)],
        "a prefix that differs must restart"
    );
    assert_eq!(r.tx.pushed, 5000);
    assert_eq!(r.rx.disk.files["f"], &data[..]);
}

#[test]
fn empty_session_ends_with_quit() {
    let r = run(&[], MemDisk::default(), Cutter::whole(), None, None);
    assert!(r.outcome.a.is_ok() && r.outcome.b.is_ok());
    assert!(r.rx.offers.is_empty());
}

/// Sends a whole tree into `disk`, as [`run`] does for flat files.
fn run_tree(
    entries: &[(FileSpec, Bytes)],
    disk: MemDisk,
    cutter: Cutter,
    cut: Option<u64>,
    defer_saves: bool,
) -> Run<MemSender, MemReceiver> {
    let tx = MemSender::entries(entries.iter().cloned());
    let mut rx = MemReceiver::new(disk, false);
    rx.defer_saves = defer_saves;
    run_session(tx.role(small_transfer()), tx, rx, cutter, cut, None)
}

/// What the receiver must hold for a tree: files with content, their
/// metadata, and directories.
#[derive(Debug, PartialEq)]
struct Expected {
    files: BTreeMap<String, Vec<u8>>,
    metas: BTreeMap<String, Meta>,
    dirs: BTreeSet<String>,
}

fn expect_tree(entries: &[(FileSpec, Bytes)]) -> Expected {
    let mut e = Expected {
        files: BTreeMap::new(),
        metas: BTreeMap::new(),
        dirs: BTreeSet::new(),
    };
    for (spec, content) in entries {
        let path = spec.path.to_string();
        match spec.kind {
            EntryKind::Directory => {
                e.dirs.insert(path);
            }
            EntryKind::File => {
                e.files.insert(path.clone(), content.to_vec());
                e.metas.insert(path, spec.meta);
            }
        }
    }
    e
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Invariant: a random tree (nested and empty directories, empty files,
    /// unicode names, any permission bits and times) arrives with every
    /// path, content, mode and modification time, however the stream is
    /// cut, and whether the receiver confirms each file at once or in
    /// groups.
    #[test]
    fn random_trees_arrive_identical_with_paths_modes_and_mtimes(
        nodes in tree::tree(),
        seed in any::<u64>(),
        piece in 1usize..3000,
        defer_saves in any::<bool>(),
    ) {
        let entries = tree::specs(&nodes);
        let r = run_tree(&entries, MemDisk::default(), Cutter::random(seed, piece), None, defer_saves);
        prop_assert!(r.outcome.a.is_ok() && r.outcome.b.is_ok(), "{:?}", r.outcome);
        let want = expect_tree(&entries);
        prop_assert_eq!(&r.rx.disk.files, &want.files);
        prop_assert_eq!(&r.rx.disk.meta, &want.metas);
        prop_assert_eq!(&r.rx.disk.dirs, &want.dirs);
        prop_assert!(r.rx.disk.partials.values().all(Vec::is_empty));
    }

    /// Invariant: a folder session cut anywhere, then run again, ends with
    /// every file identical; a file saved before the cut is found up to date
    /// and not sent again; a file cut half-way resumes where its partial
    /// file ends; nothing but what was missing is sent.
    #[test]
    fn a_cut_folder_session_run_again_resends_only_what_was_missing(
        nodes in tree::tree(),
        seed in any::<u64>(),
        cut_frac in 0.0f64..1.0,
    ) {
        let entries = tree::specs(&nodes);
        let total: usize = entries.iter().map(|(s, c)| c.len() + 64 + s.path.len()).sum();
        let cut = (total as f64 * cut_frac) as u64;
        let first = run_tree(&entries, MemDisk::default(), Cutter::random(seed, 3000), Some(cut), true);
        let disk = first.rx.disk;
        let held: Vec<usize> = entries
            .iter()
            .map(|(spec, content)| {
                let path = spec.path.to_string();
                match disk.files.contains_key(&path) {
                    true => content.len(),
                    false => disk.partials.get(&path).map_or(0, Vec::len),
                }
            })
            .collect();
        let second = run_tree(&entries, disk, Cutter::random(seed ^ 7, 3000), None, false);
        prop_assert!(second.outcome.a.is_ok() && second.outcome.b.is_ok(), "{:?}", second.outcome);
        let want = expect_tree(&entries);
        prop_assert_eq!(&second.rx.disk.files, &want.files);
        prop_assert_eq!(&second.rx.disk.dirs, &want.dirs);
        // Files saved before the cut kept their metadata; the rest got theirs now.
        prop_assert_eq!(&second.rx.disk.meta, &want.metas);
        let mut missing = 0u64;
        for &(file, from) in &second.tx.started {
            prop_assert_eq!(from, held[file] as u64, "file {} resumed elsewhere", file);
            missing += (entries[file].1.len() - held[file]) as u64;
        }
        prop_assert_eq!(second.tx.pushed, missing);
        for (file, (spec, _)) in entries.iter().enumerate() {
            if spec.kind == EntryKind::File && held[file] == entries[file].1.len() && first.tx.delivered.iter().any(|d| d.0 == file) {
                prop_assert!(second.tx.up_to_date.contains(&file), "saved file {} was not up to date", file);
            }
        }
    }
}
