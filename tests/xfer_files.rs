//! The file layer (`Store`, `Source`, the apps) on real directories, with the
//! machines joined by the in-memory pair: symlinks, overwrites, partial
//! files, resume and integrity on an actual file system.
#![cfg(unix)]

use std::fs;
use std::path::PathBuf;

use echoxfer::codec::RejectReason;
use echoxfer::driver::DriverError;
use echoxfer::files::{Committed, Outcome, ReceiverApp, SenderApp, Store};
use echoxfer::testing::Cutter;
use echoxfer::xfer::{Meta, Mtime, PathLimits, Resume, SafeName, SafePath, PARTIAL_SUFFIX};
use echoxfer::Error;
use echoxfer::TransferConfig;

mod common;
use common::files::{assert_received, content, dirs, entries, same_file, write_src};
use common::session::{self, run_session};
use echoxfer::testing::fuzz::small_transfer;

type Run = session::Run<SenderApp, ReceiverApp>;

/// Sends `paths` into `store` over the in-memory pair, cut at random,
/// dropped after `cut` bytes and with the byte at `flip` corrupted if given.
fn send(paths: &[PathBuf], store: &Store, cut: Option<u64>, flip: Option<u64>) -> Run {
    let tx = SenderApp::open(paths, &TransferConfig::default().path_limits()).unwrap();
    let rx = ReceiverApp::new(store.clone());
    run_session(
        tx.role(small_transfer()),
        tx,
        rx,
        Cutter::random(9, 2500),
        cut,
        flip,
    )
}

fn ok(r: &Run) {
    assert!(r.outcome.a.is_ok(), "sender: {:?}", r.outcome.a);
    assert!(r.outcome.b.is_ok(), "receiver: {:?}", r.outcome.b);
}

#[test]
fn several_files_arrive_byte_identical_and_no_partials_remain() {
    let d = dirs();
    let paths: Vec<PathBuf> = [0, 1, 1023, 1024, 1025, 5000]
        .iter()
        .enumerate()
        .map(|(i, &n)| write_src(&d, &format!("f{i}..bin"), &content(n, i as u8)))
        .collect();
    let store = Store::new(&d.dst, false).unwrap();
    let r = send(&paths, &store, None, None);
    ok(&r);
    assert_received(&d, &paths);
    assert!(r
        .tx
        .report()
        .iter()
        .all(|f| matches!(f.outcome, Outcome::Saved { .. })));
    let total: u64 = [0, 1, 1023, 1024, 1025, 5000].iter().sum();
    assert_eq!(r.tx.bytes_sent(), total);
    assert_eq!(r.rx.bytes_written(), total);
    assert_eq!(r.tx.progress().done(), total);
    assert_eq!(r.rx.progress().total(), total);
}

#[test]
fn existing_file_is_refused_and_left_untouched_without_overwrite() {
    let d = dirs();
    let p = write_src(&d, "a.txt", b"new content");
    fs::write(d.dst.join("a.txt"), b"old").unwrap();
    let r = send(&[p], &Store::new(&d.dst, false).unwrap(), None, None);
    ok(&r);
    assert_eq!(fs::read(d.dst.join("a.txt")).unwrap(), b"old");
    match &r.tx.report()[0].outcome {
        Outcome::Refused {
            reason: RejectReason::Exists,
            message,
        } => assert!(message.contains("told to overwrite"), "says how: {message}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(entries(&d.dst), vec!["a.txt"]);
}

#[test]
fn overwrite_replaces_an_existing_file() {
    let d = dirs();
    let p = write_src(&d, "a.txt", b"new content");
    fs::write(d.dst.join("a.txt"), b"old").unwrap();
    let r = send(&[p], &Store::new(&d.dst, true).unwrap(), None, None);
    ok(&r);
    assert_eq!(fs::read(d.dst.join("a.txt")).unwrap(), b"new content");
}

#[test]
fn final_name_symlinked_outside_is_never_written_through() {
    let d = dirs();
    let target = d.outside.join("authorized_keys");
    fs::write(&target, b"secret").unwrap();
    std::os::unix::fs::symlink(&target, d.dst.join("k")).unwrap();
    let p = write_src(&d, "k", b"attacker key");
    // Without overwrite: the link counts as an existing file.
    let r = send(
        std::slice::from_ref(&p),
        &Store::new(&d.dst, false).unwrap(),
        None,
        None,
    );
    ok(&r);
    assert!(matches!(
        r.tx.report()[0].outcome,
        Outcome::Refused {
            reason: RejectReason::Exists,
            ..
        }
    ));
    assert_eq!(fs::read(&target).unwrap(), b"secret");
    // With overwrite: the link itself is replaced; its target is untouched.
    let r = send(&[p], &Store::new(&d.dst, true).unwrap(), None, None);
    ok(&r);
    assert_eq!(fs::read(&target).unwrap(), b"secret");
    let meta = fs::symlink_metadata(d.dst.join("k")).unwrap();
    assert!(meta.file_type().is_file());
    assert_eq!(fs::read(d.dst.join("k")).unwrap(), b"attacker key");
}

#[test]
fn partial_name_symlink_is_refused_and_never_followed() {
    let d = dirs();
    let target = d.outside.join("victim");
    fs::write(&target, b"precious").unwrap();
    let name = SafeName::new(b"x.bin", 255).unwrap();
    let part = Store::partial_name(&name);
    std::os::unix::fs::symlink(&target, d.dst.join(&part)).unwrap();
    let p = write_src(&d, "x.bin", &content(3000, 1));
    let r = send(
        &[p],
        &Store::new(&d.dst, false).unwrap().unnamed_below(0),
        None,
        None,
    );
    ok(&r);
    assert!(matches!(
        r.tx.report()[0].outcome,
        Outcome::Refused {
            reason: RejectReason::Disk,
            ..
        }
    ));
    assert_eq!(fs::read(&target).unwrap(), b"precious");
    assert!(!d.dst.join("x.bin").exists());
}

#[test]
fn partial_hard_linked_elsewhere_is_refused() {
    let d = dirs();
    let victim = d.outside.join("victim");
    fs::write(&victim, b"precious").unwrap();
    let name = SafeName::new(b"h", 255).unwrap();
    fs::hard_link(&victim, d.dst.join(Store::partial_name(&name))).unwrap();
    let store = Store::new(&d.dst, false).unwrap().unnamed_below(0);
    let refusal = store
        .prepare(&SafePath::single(name.clone()), 100, Meta::default())
        .unwrap_err();
    assert_eq!(refusal.reason, RejectReason::Disk);
    assert_eq!(fs::read(&victim).unwrap(), b"precious");
}

#[test]
fn two_sessions_never_receive_the_same_name_at_once() {
    let d = dirs();
    let store = Store::new(&d.dst, false).unwrap().unnamed_below(0);
    let name = SafeName::new(b"same", 255).unwrap();
    let (first, _) = store
        .prepare(&SafePath::single(name.clone()), 10, Meta::default())
        .unwrap();
    let again = store
        .clone()
        .prepare(&SafePath::single(name.clone()), 10, Meta::default())
        .unwrap_err();
    assert_eq!(again.reason, RejectReason::Busy);
    drop(first);
    assert!(store
        .prepare(&SafePath::single(name.clone()), 10, Meta::default())
        .is_ok());
}

#[test]
fn two_stores_on_one_directory_never_share_a_partial_file() {
    // Two `Store`s open the directory and the partial file separately, as
    // two receiver processes do: the claim must hold across them, not only
    // within one process.
    let d = dirs();
    let name = SafeName::new(b"same", 255).unwrap();
    let one = Store::new(&d.dst, false).unwrap().unnamed_below(0);
    let two = Store::new(&d.dst, false).unwrap().unnamed_below(0);
    let (mut first, _) = one
        .prepare(&SafePath::single(name.clone()), 10, Meta::default())
        .unwrap();
    first.start(0).unwrap();
    first.write_at(0, b"01234").unwrap();
    let refused = two
        .prepare(&SafePath::single(name.clone()), 10, Meta::default())
        .unwrap_err();
    assert_eq!(refused.reason, RejectReason::Busy);
    assert!(refused.message.contains("in progress"), "{refused:?}");
    drop(first);
    let (_, resume) = two
        .prepare(&SafePath::single(name.clone()), 10, Meta::default())
        .unwrap();
    assert!(matches!(resume, Resume::From { have: 5, .. }));
}

#[test]
fn commit_never_publishes_a_file_swapped_in_under_the_partial_name() {
    // Another process replaces the partial file's name with its own file
    // while a transfer runs: the final name must never get the intruder's
    // bytes (publishing by name would), and the intruder's file is left
    // alone. The written file lost its only name, so it cannot be
    // published either: the save fails and says so.
    let d = dirs();
    let name = SafeName::new(b"v.bin", 255).unwrap();
    let store = Store::new(&d.dst, false).unwrap().unnamed_below(0);
    let (mut incoming, _) = store
        .prepare(&SafePath::single(name.clone()), 6, Meta::default())
        .unwrap();
    incoming.start(0).unwrap();
    incoming.write_at(0, b"honest").unwrap();
    let part = d.dst.join(Store::partial_name(&name));
    let intruder = d.outside.join("intruder");
    fs::write(&intruder, b"forged").unwrap();
    fs::rename(&intruder, &part).unwrap();
    let refused = incoming.commit().unwrap_err();
    assert_eq!(refused.reason, RejectReason::Disk);
    assert!(
        !d.dst.join("v.bin").exists(),
        "the forged file was published"
    );
    assert_eq!(fs::read(&part).unwrap(), b"forged", "not ours to delete");
}

#[test]
fn commit_with_overwrite_replaces_the_old_file_with_the_one_written() {
    let d = dirs();
    let name = SafeName::new(b"o.bin", 255).unwrap();
    fs::write(d.dst.join("o.bin"), b"old").unwrap();
    let store = Store::new(&d.dst, true).unwrap();
    let (mut incoming, _) = store
        .prepare(&SafePath::single(name.clone()), 3, Meta::default())
        .unwrap();
    incoming.start(0).unwrap();
    incoming.write_at(0, b"new").unwrap();
    incoming.commit().unwrap();
    assert_eq!(fs::read(d.dst.join("o.bin")).unwrap(), b"new");
    assert_eq!(entries(&d.dst), ["o.bin"], "no temporary name is left");
}

#[test]
fn offer_larger_than_the_free_space_is_refused_saying_how_much_is_free() {
    let d = dirs();
    let store = Store::new(&d.dst, false).unwrap();
    let free = store.free_space().unwrap();
    let name = SafeName::new(b"huge", 255).unwrap();
    // Far beyond the free space, which other processes change meanwhile.
    let refused = store
        .prepare(
            &SafePath::single(name.clone()),
            free * 2 + (1 << 30),
            Meta::default(),
        )
        .unwrap_err();
    assert_eq!(refused.reason, RejectReason::Disk);
    assert!(refused.message.contains("free"), "{refused:?}");
    assert!(entries(&d.dst).is_empty(), "{:?}", entries(&d.dst));
}

#[test]
fn an_abandoned_transfer_keeps_its_partial_only_if_it_holds_data() {
    let d = dirs();
    let store = Store::new(&d.dst, false).unwrap().unnamed_below(0);
    let empty = SafeName::new(b"e", 255).unwrap();
    drop(
        store
            .prepare(&SafePath::single(empty.clone()), 10, Meta::default())
            .unwrap(),
    );
    assert!(entries(&d.dst).is_empty(), "{:?}", entries(&d.dst));
    let some = SafeName::new(b"s", 255).unwrap();
    let (mut incoming, _) = store
        .prepare(&SafePath::single(some.clone()), 10, Meta::default())
        .unwrap();
    incoming.start(0).unwrap();
    incoming.write_at(0, b"abc").unwrap();
    drop(incoming);
    assert_eq!(entries(&d.dst), [Store::partial_name(&some)]);
    assert_eq!(store.partials().unwrap(), (1, 3));
}

#[test]
fn partial_is_resumed_with_its_hash() {
    let d = dirs();
    let store = Store::new(&d.dst, false).unwrap().unnamed_below(0);
    let name = SafeName::new(b"r", 255).unwrap();
    fs::write(d.dst.join(Store::partial_name(&name)), b"hello").unwrap();
    let (_, resume) = store
        .prepare(&SafePath::single(name.clone()), 10, Meta::default())
        .unwrap();
    match resume {
        Resume::From { have, hasher } => {
            assert_eq!(have, 5);
            assert_eq!(hasher.finalize(), blake3::hash(b"hello"));
        }
        other => panic!("expected a resume, got {other:?}"),
    }
}

#[test]
fn cut_transfer_keeps_a_partial_then_resumes_with_few_resent_bytes() {
    let d = dirs();
    let data = content(200_000, 7);
    let p = write_src(&d, "big.bin", &data);
    let store = Store::new(&d.dst, false).unwrap();
    let first = send(std::slice::from_ref(&p), &store, Some(150_000), None);
    assert!(first.outcome.a.is_err() && first.outcome.b.is_err());
    assert!(!d.dst.join("big.bin").exists(), "a cut left the final name");
    let part = d.dst.join(Store::partial_name(
        &SafeName::new(b"big.bin", 255).unwrap(),
    ));
    let held = fs::metadata(&part).unwrap().len();
    assert!(held > 100_000, "held {held}");
    // While another transfer holds the name (the partial file, locked),
    // a session for it is refused as busy.
    let name = SafePath::single(SafeName::new(b"big.bin", 255).unwrap());
    let holder = store.prepare(&name, 200_000, Meta::default()).unwrap();
    let busy = send(std::slice::from_ref(&p), &store, None, None);
    assert!(matches!(
        busy.tx.report()[0].outcome,
        Outcome::Refused {
            reason: RejectReason::Busy,
            ..
        }
    ));
    drop(holder);
    // The cut session let go of the name when it ended, although its
    // receiver still exists: the next session resumes at once.
    let second = send(&[p], &store, None, None);
    drop(first);
    ok(&second);
    assert!(matches!(
        second.rx.report()[0].outcome,
        Outcome::Saved { .. }
    ));
    assert_eq!(fs::read(d.dst.join("big.bin")).unwrap(), data);
    assert!(!part.exists());
    assert_eq!(second.tx.report()[0].from, held);
    assert_eq!(second.tx.bytes_sent(), data.len() as u64 - held);
    assert!(
        second.tx.bytes_sent() < 60_000,
        "re-sent {}",
        second.tx.bytes_sent()
    );
}

#[test]
fn changed_source_prefix_restarts_from_zero() {
    let d = dirs();
    let store = Store::new(&d.dst, false).unwrap();
    let name = SafeName::new(b"c.bin", 255).unwrap();
    fs::write(d.dst.join(Store::partial_name(&name)), content(4000, 99)).unwrap();
    let data = content(9000, 1);
    let p = write_src(&d, "c.bin", &data);
    let r = send(&[p], &store, None, None);
    ok(&r);
    assert_eq!(r.tx.report()[0].from, 0);
    assert_eq!(fs::read(d.dst.join("c.bin")).unwrap(), data);
}

#[test]
fn flipped_byte_deletes_the_partial_and_leaves_no_final_file() {
    let d = dirs();
    let data = content(5000, 3);
    let p = write_src(&d, "z.bin", &data);
    // Preamble, Offer (5+8+5), Begin (13), Data header: byte 100 of the content.
    let flip = (6 + 18 + 13 + 5 + 100) as u64;
    let r = send(&[p], &Store::new(&d.dst, false).unwrap(), None, Some(flip));
    assert!(matches!(
        r.outcome.b,
        Err(DriverError::Machine(Error::HashMismatch))
    ));
    assert!(matches!(
        r.outcome.a,
        Err(DriverError::Machine(Error::PeerFailed { .. }))
    ));
    assert!(entries(&d.dst).is_empty(), "{:?}", entries(&d.dst));
    assert_eq!(r.rx.report()[0].outcome, Outcome::Discarded);
}

#[test]
fn a_source_whose_name_cannot_be_offered_is_skipped_with_its_reason() {
    let d = dirs();
    let p = write_src(&d, "ok.txt", b"x");
    let limits = PathLimits {
        max_name_len: 2,
        ..TransferConfig::default().path_limits()
    };
    let app = SenderApp::open(&[p], &limits).unwrap();
    assert!(app.specs().is_empty(), "{:?}", app.specs());
    assert_eq!(app.skipped().len(), 1);
    assert!(app.skipped()[0].why.to_string().contains("the limit is 2"));
}

#[test]
fn a_source_that_shrank_is_skipped_never_padded_and_the_session_goes_on() {
    // rsync CVE-2024-12085 class: no byte that was not read may be sent;
    // and one bad file must not sink the rest of a folder.
    let d = dirs();
    let shrinks = write_src(&d, "s.bin", &content(5000, 5));
    let after = write_src(&d, "t.bin", &content(3000, 6));
    let tx = SenderApp::open(
        &[shrinks.clone(), after],
        &TransferConfig::default().path_limits(),
    )
    .unwrap();
    fs::OpenOptions::new()
        .write(true)
        .open(&shrinks)
        .unwrap()
        .set_len(2000)
        .unwrap();
    let rx = ReceiverApp::new(Store::new(&d.dst, false).unwrap());
    let Run { outcome, tx, rx } = run_session(
        tx.role(small_transfer()),
        tx,
        rx,
        Cutter::whole(),
        None,
        None,
    );
    assert!(outcome.a.is_ok() && outcome.b.is_ok(), "{outcome:?}");
    assert!(!d.dst.join("s.bin").exists());
    assert_eq!(fs::read(d.dst.join("t.bin")).unwrap(), content(3000, 6));
    match &tx.report()[0].outcome {
        Outcome::Unreadable { message } => assert!(message.contains("shrank"), "{message}"),
        other => panic!("the shrunk file is {other:?}"),
    }
    assert!(matches!(rx.report()[0].outcome, Outcome::Unreadable { .. }));
    assert_eq!((tx.totals().unreadable, tx.totals().saved), (1, 1));
    // Every byte sent was read from the file: the short read at 2000 ends
    // the data, and the next read finds nothing: the file is skipped.
    assert_eq!(
        tx.bytes_sent(),
        2000 + 3000,
        "only bytes read are sent, never padding"
    );
}

#[test]
fn a_source_that_vanished_after_the_listing_is_skipped_and_the_rest_arrives() {
    let d = dirs();
    let gone = write_src(&d, "gone.bin", &content(100_000, 1));
    let kept = write_src(&d, "kept.bin", &content(100_000, 2));
    let tx = SenderApp::open(
        &[gone.clone(), kept],
        &TransferConfig::default().path_limits(),
    )
    .unwrap();
    fs::remove_file(&gone).unwrap();
    let rx = ReceiverApp::new(Store::new(&d.dst, false).unwrap());
    let Run { outcome, tx, .. } = run_session(
        tx.role(small_transfer()),
        tx,
        rx,
        Cutter::whole(),
        None,
        None,
    );
    assert!(outcome.a.is_ok() && outcome.b.is_ok(), "{outcome:?}");
    match &tx.report()[0].outcome {
        Outcome::Unreadable { message } => assert!(message.contains("vanished"), "{message}"),
        other => panic!("the vanished file is {other:?}"),
    }
    assert_eq!(
        fs::read(d.dst.join("kept.bin")).unwrap(),
        content(100_000, 2)
    );
    assert_eq!(
        entries(&d.dst),
        ["kept.bin"],
        "nothing left of the vanished file"
    );
}

// ---- Trees, metadata, up-to-date files and group commit (the store alone) ----

fn path(parts: &[&str]) -> SafePath {
    let limits = PathLimits {
        max_name_len: 255,
        max_depth: 32,
        max_path_len: 4096,
    };
    let names = parts
        .iter()
        .map(|p| SafeName::new(p.as_bytes(), 255).unwrap())
        .collect();
    SafePath::new(names, &limits).unwrap()
}

fn meta(mode: u32, secs: i64, nanos: u32) -> Meta {
    Meta {
        mode,
        mtime: Mtime { secs, nanos },
    }
}

/// The umask, read here independently of the store.
fn umask() -> u32 {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("Umask:")).unwrap();
    u32::from_str_radix(line["Umask:".len()..].trim(), 8).unwrap()
}

/// Writes `data` through the store as `parts` and commits it.
fn save(store: &Store, parts: &[&str], data: &[u8], m: Meta) -> PathBuf {
    let (mut incoming, _) = store.prepare(&path(parts), data.len() as u64, m).unwrap();
    incoming.start(0).unwrap();
    incoming.write_at(0, data).unwrap();
    incoming.commit().unwrap()
}

/// Every entry under `dir`, recursively, relative, sorted.
fn tree(dir: &std::path::Path) -> Vec<String> {
    fn walk(base: &std::path::Path, dir: &std::path::Path, out: &mut Vec<String>) {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            out.push(p.strip_prefix(base).unwrap().display().to_string());
            if fs::symlink_metadata(&p).unwrap().is_dir() {
                walk(base, &p, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[test]
fn symlinked_parent_pointing_outside_is_refused_and_nothing_is_made_outside() {
    let d = dirs();
    fs::write(d.outside.join("keep"), b"x").unwrap();
    std::os::unix::fs::symlink(&d.outside, d.dst.join("evil")).unwrap();
    fs::create_dir(d.dst.join("a")).unwrap();
    std::os::unix::fs::symlink(&d.outside, d.dst.join("a").join("deep")).unwrap();
    let before = tree(&d.outside);
    let outside_time = fs::metadata(&d.outside).unwrap().modified().unwrap();
    let store = Store::new(&d.dst, true).unwrap();
    let local = d.dst.display().to_string();
    let offers = [
        (&["evil", "x.txt"][..], "evil "),
        (&["evil", "sub", "x.txt"], "evil "),
        (&["a", "deep", "b", "c"], "a/deep "),
    ];
    for (parts, named) in offers {
        let refused = store.prepare(&path(parts), 3, Meta::default()).unwrap_err();
        assert_eq!(refused.reason, RejectReason::NotADirectory, "{parts:?}");
        assert!(refused.message.starts_with(named), "{refused:?}");
        assert!(
            !refused.message.contains(&local),
            "a local path: {refused:?}"
        );
    }
    let refused = store.make_dir(&path(&["evil", "new"]), &meta(0o755, 0, 0));
    assert_eq!(refused.unwrap_err().reason, RejectReason::NotADirectory);
    let refused = store.set_dir_mtime(&path(&["evil"]), Mtime::default());
    assert_eq!(refused.unwrap_err().reason, RejectReason::NotADirectory);
    assert_eq!(tree(&d.outside), before, "something was made outside");
    let after = fs::metadata(&d.outside).unwrap().modified().unwrap();
    assert_eq!(after, outside_time, "the outside directory was changed");
}

#[test]
fn a_parent_that_is_a_file_is_refused_as_not_a_directory() {
    let d = dirs();
    fs::write(d.dst.join("f"), b"plain").unwrap();
    let store = Store::new(&d.dst, true).unwrap();
    let refused = store
        .prepare(&path(&["f", "x"]), 1, Meta::default())
        .unwrap_err();
    assert_eq!(refused.reason, RejectReason::NotADirectory);
    assert!(refused.message.starts_with("f "), "{refused:?}");
    let refused = store
        .make_dir(&path(&["f", "g"]), &Meta::default())
        .unwrap_err();
    assert_eq!(refused.reason, RejectReason::NotADirectory);
    assert_eq!(fs::read(d.dst.join("f")).unwrap(), b"plain");
}

#[test]
fn a_file_offered_where_a_directory_exists_is_refused_as_is_a_directory() {
    let d = dirs();
    fs::create_dir_all(d.dst.join("p").join("d")).unwrap();
    for overwrite in [false, true] {
        let store = Store::new(&d.dst, overwrite).unwrap();
        let refused = store
            .prepare(&path(&["p", "d"]), 0, Meta::default())
            .unwrap_err();
        assert_eq!(refused.reason, RejectReason::IsADirectory);
        assert!(refused.message.contains("p/d"), "{refused:?}");
    }
    assert_eq!(tree(&d.dst), ["p", "p/d"]);
}

#[test]
fn nested_paths_are_made_and_the_partial_lives_beside_the_file() {
    let d = dirs();
    let store = Store::new(&d.dst, false).unwrap().unnamed_below(0);
    let p = path(&["a", "b", "c.bin"]);
    let (mut incoming, resume) = store.prepare(&p, 5, Meta::default()).unwrap();
    assert!(matches!(resume, Resume::Fresh));
    let part = d
        .dst
        .join("a")
        .join("b")
        .join(Store::partial_name(p.file_name()));
    assert!(part.is_file(), "{:?}", tree(&d.dst));
    incoming.start(0).unwrap();
    incoming.write_at(0, b"hello").unwrap();
    let saved = incoming.commit().unwrap();
    assert_eq!(saved, d.dst.join("a/b/c.bin"));
    assert_eq!(fs::read(&saved).unwrap(), b"hello");
    assert_eq!(tree(&d.dst), ["a", "a/b", "a/b/c.bin"]);
}

#[test]
fn mode_bits_are_masked_by_the_umask_and_setuid_setgid_sticky_never_set() {
    use std::os::unix::fs::PermissionsExt;
    let d = dirs();
    let store = Store::new(&d.dst, false).unwrap();
    assert_eq!(store.umask(), umask());
    for (i, mode) in [0o7777u32, 0o4755, 0o640, 0o600, 0o777]
        .into_iter()
        .enumerate()
    {
        let saved = save(&store, &[&format!("m{i}")], b"x", meta(mode, 0, 0));
        let got = fs::metadata(&saved).unwrap().permissions().mode() & 0o7777;
        assert_eq!(got, mode & 0o777 & !umask(), "offered {mode:o}");
    }
}

#[test]
fn mtime_is_kept_to_the_nanosecond() {
    use std::os::unix::fs::MetadataExt;
    let d = dirs();
    let store = Store::new(&d.dst, false).unwrap();
    for (i, (secs, nanos)) in [
        (1_234_567_890, 123_456_789),
        (0, 1),
        (4_000_000_000, 999_999_999),
    ]
    .into_iter()
    .enumerate()
    {
        let saved = save(
            &store,
            &["t", &format!("f{i}")],
            b"data",
            meta(0o644, secs, nanos),
        );
        let m = fs::metadata(&saved).unwrap();
        assert_eq!((m.mtime(), m.mtime_nsec()), (secs, i64::from(nanos)));
    }
}

#[test]
fn an_identical_existing_file_keeps_its_content_and_inode_and_takes_the_offered_mode_and_time() {
    use std::os::unix::fs::MetadataExt;
    let d = dirs();
    let data = content(70_000, 4);
    fs::create_dir(d.dst.join("s")).unwrap();
    let existing = d.dst.join("s").join("same.bin");
    fs::write(&existing, &data).unwrap();
    let old = std::time::UNIX_EPOCH + std::time::Duration::new(1_000_000_000, 42);
    fs::File::options()
        .write(true)
        .open(&existing)
        .unwrap()
        .set_modified(old)
        .unwrap();
    // First with another mode and time (brought in line, the content and
    // inode kept), then again (nothing left to change: not even touched).
    let offered = meta(0o600, 5, 5);
    for (overwrite, updated) in [(false, true), (true, false)] {
        let store = Store::new(&d.dst, overwrite).unwrap();
        let p = path(&["s", "same.bin"]);
        let before = fs::metadata(&existing).unwrap();
        let (mut incoming, resume) = store.prepare(&p, data.len() as u64, offered).unwrap();
        match resume {
            Resume::Complete { hasher, replace } => {
                assert_eq!(hasher.finalize(), blake3::hash(&data));
                assert_eq!(replace, overwrite);
            }
            other => panic!("expected Complete, got {other:?}"),
        }
        assert!(incoming.is_existing() && incoming.is_up_to_date());
        incoming.start(data.len() as u64).unwrap();
        let committed = Store::commit_reported(vec![incoming]).remove(0).unwrap();
        let expected = if updated {
            Committed::MetadataUpdated(existing.clone())
        } else {
            Committed::UpToDate(existing.clone())
        };
        assert_eq!(committed, expected);
        let after = fs::metadata(&existing).unwrap();
        assert_eq!(
            after.ino(),
            before.ino(),
            "replaced (overwrite {overwrite})"
        );
        assert_eq!(after.mtime(), 5);
        assert_eq!(after.mtime_nsec(), 5);
        assert_eq!(after.mode() & 0o7777, 0o600 & !umask());
        if !updated {
            assert_eq!(after.ctime_nsec(), before.ctime_nsec(), "touched");
        }
        assert_eq!(fs::read(&existing).unwrap(), data);
        assert_eq!(tree(&d.dst), ["s", "s/same.bin"], "a partial was left");
    }
}

#[test]
fn an_existing_file_of_the_offered_size_is_rewritten_only_with_overwrite() {
    let d = dirs();
    fs::write(d.dst.join("r"), b"old!").unwrap();
    let store = Store::new(&d.dst, false).unwrap();
    let (mut kept, _) = store.prepare(&path(&["r"]), 4, Meta::default()).unwrap();
    assert!(kept.start(0).is_err(), "rewrote without --overwrite");
    assert!(kept.write_at(0, b"new!").is_err());
    drop(kept);
    assert_eq!(fs::read(d.dst.join("r")).unwrap(), b"old!");
    let store = Store::new(&d.dst, true).unwrap();
    let (mut incoming, _) = store.prepare(&path(&["r"]), 4, meta(0o644, 7, 7)).unwrap();
    incoming.start(0).unwrap();
    assert!(!incoming.is_up_to_date());
    incoming.write_at(0, b"new!").unwrap();
    incoming.commit().unwrap();
    assert_eq!(fs::read(d.dst.join("r")).unwrap(), b"new!");
    assert_eq!(tree(&d.dst), ["r"]);
}

#[test]
fn commit_all_saves_fifty_files_in_five_dirs_in_order_and_leaves_no_partial() {
    let d = dirs();
    let store = Store::new(&d.dst, false).unwrap();
    let mut batch = Vec::new();
    let mut expected = Vec::new();
    for i in 0..50 {
        let parts = [format!("d{}", i % 5), format!("f{i}")];
        let p = path(&[&parts[0], &parts[1]]);
        let data = content(100 + i * 37, i as u8);
        let (mut incoming, _) = store
            .prepare(&p, data.len() as u64, meta(0o644, 1, 0))
            .unwrap();
        incoming.start(0).unwrap();
        incoming.write_at(0, &data).unwrap();
        batch.push(incoming);
        expected.push((d.dst.join(&parts[0]).join(&parts[1]), data));
    }
    let results = Store::commit_all(batch);
    assert_eq!(results.len(), 50);
    for (result, (want_path, data)) in results.into_iter().zip(&expected) {
        assert_eq!(&result.unwrap(), want_path);
        assert_eq!(&fs::read(want_path).unwrap(), data);
    }
    let all = tree(&d.dst);
    assert_eq!(all.len(), 55, "{all:?}");
    assert!(!all.iter().any(|e| e.contains(".echoxfer")), "{all:?}");
}

#[test]
fn make_dir_makes_empty_nested_directories_with_their_mode() {
    use std::os::unix::fs::PermissionsExt;
    let d = dirs();
    let store = Store::new(&d.dst, false).unwrap();
    let made = store
        .make_dir(&path(&["x", "y", "z"]), &meta(0o750, 0, 0))
        .unwrap();
    assert_eq!(made, d.dst.join("x/y/z"));
    assert_eq!(tree(&d.dst), ["x", "x/y", "x/y/z"]);
    let mode = |p: &str| fs::metadata(d.dst.join(p)).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode("x/y/z"), 0o750 & !umask());
    assert_eq!(mode("x/y"), 0o777 & !umask());
    // Again: an existing directory is fine, and keeps its mode.
    store
        .make_dir(&path(&["x", "y", "z"]), &meta(0o700, 0, 0))
        .unwrap();
    assert_eq!(mode("x/y/z"), 0o750 & !umask());
    fs::write(d.dst.join("x/file"), b"").unwrap();
    let refused = store
        .make_dir(&path(&["x", "file"]), &meta(0o755, 0, 0))
        .unwrap_err();
    assert_eq!(refused.reason, RejectReason::IsADirectory);
}

#[test]
fn set_dir_mtime_sets_a_directorys_time_to_the_nanosecond() {
    use std::os::unix::fs::MetadataExt;
    let d = dirs();
    let store = Store::new(&d.dst, false).unwrap();
    save(&store, &["a", "b", "f"], b"1", Meta::default());
    let t = Mtime {
        secs: 1_500_000_000,
        nanos: 7,
    };
    store.set_dir_mtime(&path(&["a", "b"]), t).unwrap();
    let m = fs::metadata(d.dst.join("a/b")).unwrap();
    assert_eq!((m.mtime(), m.mtime_nsec()), (1_500_000_000, 7));
    let missing = store.set_dir_mtime(&path(&["nope"]), t).unwrap_err();
    assert_eq!(missing.reason, RejectReason::Disk);
    assert!(!d.dst.join("nope").exists());
}

#[test]
fn a_tail_never_written_gets_its_full_length_as_a_hole() {
    use std::os::unix::fs::MetadataExt;
    let d = dirs();
    let store = Store::new(&d.dst, false).unwrap();
    let size = 8 << 20;
    let (mut incoming, _) = store
        .prepare(&path(&["sparse"]), size, Meta::default())
        .unwrap();
    incoming.start(0).unwrap();
    incoming.write_at(0, &[1u8; 4096]).unwrap();
    let saved = incoming.commit().unwrap();
    let m = fs::metadata(&saved).unwrap();
    assert_eq!(m.len(), size);
    assert!(
        m.blocks() * 512 < size / 2,
        "the hole was filled: {} blocks",
        m.blocks()
    );
}

#[test]
fn a_parent_removed_after_use_is_made_again() {
    let d = dirs();
    let store = Store::new(&d.dst, false).unwrap();
    save(&store, &["gone", "one"], b"1", Meta::default());
    fs::remove_dir_all(d.dst.join("gone")).unwrap();
    let saved = save(&store, &["gone", "two"], b"2", Meta::default());
    assert_eq!(fs::read(saved).unwrap(), b"2");
    assert_eq!(tree(&d.dst), ["gone", "gone/two"]);
}

/// The hostile table on a whole session: a tree whose directory name is,
/// in the destination, a symbolic link pointing outside it, and whose
/// other directory is there as a file. Each is refused with its reason,
/// nothing is written outside the destination, and the session goes on:
/// the rest of the tree is saved and the session ends well.
#[test]
fn planted_links_and_files_in_the_destination_cost_their_entries_not_the_session() {
    let d = dirs();
    let outside = d.dst.parent().unwrap().join("outside");
    fs::create_dir_all(&outside).unwrap();
    let root = d.src.join("t");
    fs::create_dir_all(root.join("evil")).unwrap();
    fs::create_dir_all(root.join("blocked")).unwrap();
    fs::write(root.join("evil/x"), b"pwn").unwrap();
    fs::write(root.join("blocked/y"), b"why").unwrap();
    fs::write(root.join("good.txt"), b"fine").unwrap();
    fs::create_dir_all(d.dst.join("t")).unwrap();
    std::os::unix::fs::symlink(&outside, d.dst.join("t/evil")).unwrap();
    fs::write(d.dst.join("t/blocked"), b"a file").unwrap();
    let r = send(&[root], &Store::new(&d.dst, false).unwrap(), None, None);
    ok(&r);
    let refused = |name: &str| {
        r.rx.report()
            .into_iter()
            .find(|f| f.name == name)
            .map(|f| f.outcome)
    };
    for (name, reason) in [
        ("t/evil", RejectReason::IsADirectory),
        ("t/evil/x", RejectReason::NotADirectory),
        ("t/blocked", RejectReason::IsADirectory),
        ("t/blocked/y", RejectReason::NotADirectory),
    ] {
        assert!(
            matches!(refused(name), Some(Outcome::Refused { reason: r, .. }) if r == reason),
            "{name}: {:?}",
            refused(name)
        );
    }
    assert_eq!(fs::read(d.dst.join("t/good.txt")).unwrap(), b"fine");
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 0, "wrote outside");
    assert_eq!(fs::read(d.dst.join("t/blocked")).unwrap(), b"a file");
}

/// A sparse file keeps its holes: the sender sends them as holes (found
/// with `SEEK_DATA`/`SEEK_HOLE`), the receiver writes nothing there, and
/// the content still arrives identical and verified, its hash covering
/// every byte.
#[test]
fn a_sparse_file_arrives_identical_with_its_holes() {
    use std::os::unix::fs::{FileExt, MetadataExt};
    let d = dirs();
    let p = d.src.join("disk.img");
    let f = fs::File::create(&p).unwrap();
    // Within the test transfer's 1 MiB file limit.
    let size = 1_000_000;
    f.set_len(size).unwrap();
    f.write_all_at(&content(5000, 3), 300_000).unwrap();
    f.write_all_at(b"tail", size - 4).unwrap();
    f.sync_all().unwrap();
    if f.metadata().unwrap().blocks() * 512 >= size {
        return; // a file system without holes: nothing to check here
    }
    let r = send(
        std::slice::from_ref(&p),
        &Store::new(&d.dst, false).unwrap(),
        None,
        None,
    );
    ok(&r);
    let got = d.dst.join("disk.img");
    assert!(same_file(&p, &got), "content differs");
    let used = fs::metadata(&got).unwrap().blocks() * 512;
    assert!(
        used < 100_000,
        "{used} bytes allocated for a 1 MB file of 5 KB data"
    );
    assert!(
        r.tx.bytes_sent() < 100_000,
        "sent {} bytes",
        r.tx.bytes_sent()
    );
}

/// A read-only directory (0555) offered with files inside: made writable
/// for the owner so that the session can fill it, and given its own mode
/// (masked by the umask) when the session ends, as rsync does.
#[test]
fn a_read_only_directory_is_filled_then_given_its_mode_at_the_end() {
    use std::os::unix::fs::PermissionsExt;
    let d = dirs();
    let store = Store::new(&d.dst, false).unwrap();
    let limits = TransferConfig::default().path_limits();
    let path = SafePath::new(vec![SafeName::new(b"ro", 255).unwrap()], &limits).unwrap();
    let meta = Meta {
        mode: 0o555,
        mtime: Mtime {
            secs: 1_600_000_000,
            nanos: 5,
        },
    };
    assert!(store.make_dir_to_fill(&path, &meta).unwrap(), "made");
    let mode = |p: &std::path::Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        mode(&d.dst.join("ro")) & 0o700,
        0o700,
        "writable while filled"
    );
    assert!(
        !store.make_dir_to_fill(&path, &meta).unwrap(),
        "already there"
    );
    store
        .set_dir_meta(&path, meta.mtime, Some(meta.mode))
        .unwrap();
    assert_eq!(mode(&d.dst.join("ro")), 0o555 & !umask());
    // A whole session: the files arrive, then the directory is 0555.
    let src = d.src.join("t");
    fs::create_dir_all(src.join("locked")).unwrap();
    fs::write(src.join("locked/a.txt"), b"inside").unwrap();
    fs::set_permissions(src.join("locked"), fs::Permissions::from_mode(0o555)).unwrap();
    let r = send(&[src], &store, None, None);
    ok(&r);
    assert_eq!(fs::read(d.dst.join("t/locked/a.txt")).unwrap(), b"inside");
    assert_eq!(mode(&d.dst.join("t/locked")), 0o555 & !umask());
}

// ---- A cut session keeps what it verified ----

/// Nothing verified is lost with the connection: small files whose content
/// checked out and that wait for their group commit are committed when
/// the connection drops. They are byte-identical under their final names,
/// nothing else is under a final name, and the sender (never told of the
/// last group) finds them all up to date on the next run.
#[test]
fn a_cut_session_still_saves_the_files_it_verified_and_the_next_run_finds_them_up_to_date() {
    let d = dirs();
    let sizes = [1000usize; 40];
    let paths = common::files::sources(&d, &sizes);
    let store = Store::new(&d.dst, false).unwrap();
    // Cut at about 60% of the data: well before the end, past many files.
    let first = send(&paths, &store, Some(24_000), None);
    assert!(first.outcome.b.is_err(), "the connection was cut");
    let saved: Vec<String> = first
        .rx
        .report()
        .iter()
        .filter(|f| matches!(f.outcome, Outcome::Saved { .. }))
        .map(|f| f.name.clone())
        .collect();
    assert!(
        saved.len() >= 10,
        "the files verified before the cut were lost: saved {saved:?}"
    );
    // Under final names: exactly those. (The files in flight at the cut
    // may keep a partial file, with the portable store: it has no
    // unnamed files.)
    let on_disk: Vec<String> = (entries(&d.dst).into_iter())
        .filter(|n| !n.ends_with(PARTIAL_SUFFIX))
        .collect();
    assert_eq!(on_disk, {
        let mut s = saved.clone();
        s.sort();
        s
    });
    for name in &saved {
        assert!(same_file(&d.src.join(name), &d.dst.join(name)), "{name}");
    }
    // Those of the last group were committed after the cut: the sender
    // never heard of them.
    let confirmed = (first.tx.report().iter())
        .filter(|f| matches!(f.outcome, Outcome::Saved { .. }))
        .count();
    assert!(
        confirmed < saved.len(),
        "nothing was saved after the cut: {confirmed} confirmed, {} saved",
        saved.len()
    );
    // The sender's summary never contradicts the receiver's: each file the
    // receiver saved is, for the sender, confirmed or sent but
    // unconfirmed, never "incomplete"; what it counts as saved, the
    // receiver saved.
    for f in first.tx.report() {
        let there = saved.contains(&f.name);
        match &f.outcome {
            Outcome::Saved { .. } => assert!(there, "{} confirmed, not saved", f.name),
            Outcome::Pending => assert!(!there, "{} saved, yet incomplete", f.name),
            Outcome::Unconfirmed => assert_eq!(f.from + f.moved, f.size),
            other => panic!("{}: {other:?}", f.name),
        }
    }
    let second = send(&paths, &store, None, None);
    ok(&second);
    assert_received(&d, &paths);
    let up_to_date = second
        .tx
        .report()
        .iter()
        .filter(|f| matches!(f.outcome, Outcome::UpToDate { .. }))
        .count();
    assert_eq!(up_to_date, saved.len());
}

// ---- Concurrent senders, --overwrite resumes, partials anywhere, free space ----

/// Two sessions receive the same name at once (each its own partial): the
/// one that commits second finds the name taken.
fn raced(dst: &std::path::Path, ours: &[u8], theirs: &[u8]) -> Result<PathBuf, RejectReason> {
    let store = Store::new(dst, false).unwrap().unnamed_below(0);
    let (mut incoming, _) = store
        .prepare(&path(&["dup.bin"]), ours.len() as u64, Meta::default())
        .unwrap();
    incoming.start(0).unwrap();
    incoming.write_at(0, ours).unwrap();
    fs::write(dst.join("dup.bin"), theirs).unwrap();
    incoming.commit().map_err(|r| r.reason)
}

#[test]
fn a_verified_file_whose_name_was_taken_meanwhile_leaves_no_partial_either_way() {
    let d = dirs();
    // The same content won the race: this one is up to date, dropped.
    let same = raced(&d.dst, b"identical", b"identical");
    assert_eq!(same, Ok(d.dst.join("dup.bin")));
    assert_eq!(entries(&d.dst), ["dup.bin"], "a stray partial was left");
    // Other content won: refused, the receiver's file kept, ours dropped.
    fs::remove_file(d.dst.join("dup.bin")).unwrap();
    let other = raced(&d.dst, b"ours!", b"THEIR");
    assert_eq!(other, Err(RejectReason::Exists));
    assert_eq!(fs::read(d.dst.join("dup.bin")).unwrap(), b"THEIR");
    assert_eq!(entries(&d.dst), ["dup.bin"], "a stray partial was left");
}

#[test]
fn overwrite_resumes_a_newer_partial_beside_an_old_file_of_the_same_size() {
    let d = dirs();
    let name = SafeName::new(b"v.iso", 255).unwrap();
    fs::write(d.dst.join("v.iso"), b"old version!").unwrap();
    // A cut transfer of the new version left 4 bytes.
    fs::write(d.dst.join(Store::partial_name(&name)), b"new ").unwrap();
    let store = Store::new(&d.dst, true).unwrap().unnamed_below(0);
    let (mut incoming, resume) = store
        .prepare(&path(&["v.iso"]), 12, Meta::default())
        .unwrap();
    match resume {
        Resume::From { have, hasher } => {
            assert_eq!((have, hasher.finalize()), (4, blake3::hash(b"new ")));
        }
        other => panic!("the partial was thrown away: {other:?}"),
    }
    incoming.start(4).unwrap();
    incoming.write_at(4, b"version!").unwrap();
    incoming.commit().unwrap();
    assert_eq!(fs::read(d.dst.join("v.iso")).unwrap(), b"new version!");
    assert_eq!(entries(&d.dst), ["v.iso"]);
    // A partial that only repeats the old file's start adds nothing: the
    // old file is compared whole (it may be up to date).
    fs::write(d.dst.join(Store::partial_name(&name)), b"new ").unwrap();
    let (_, resume) = store
        .prepare(&path(&["v.iso"]), 12, Meta::default())
        .unwrap();
    assert!(
        matches!(resume, Resume::Complete { replace: true, .. }),
        "{resume:?}"
    );
}

#[test]
fn partials_are_counted_in_every_folder_not_only_the_top() {
    let d = dirs();
    let store = Store::new(&d.dst, false).unwrap().unnamed_below(0);
    for parts in [&["top.bin"][..], &["a", "b", "deep.bin"]] {
        let (mut incoming, _) = store.prepare(&path(parts), 10, Meta::default()).unwrap();
        incoming.start(0).unwrap();
        incoming.write_at(0, b"abc").unwrap();
    }
    assert_eq!(store.partials().unwrap(), (2, 6));
}

#[test]
fn the_free_space_check_counts_a_sparse_partial_by_its_blocks_not_its_length() {
    let d = dirs();
    let store = Store::new(&d.dst, false).unwrap().unnamed_below(0);
    let free = store.free_space().unwrap();
    let name = SafeName::new(b"sparse.img", 255).unwrap();
    // A partial whose length is all holes: resuming it still needs every
    // byte of the file on disk (holes were not data written).
    let part = fs::File::create(d.dst.join(Store::partial_name(&name))).unwrap();
    part.set_len(free + (1 << 30)).unwrap();
    let size = free + (2 << 30);
    let refused = store
        .prepare(&path(&["sparse.img"]), size, Meta::default())
        .unwrap_err();
    assert_eq!(refused.reason, RejectReason::Disk);
    assert!(refused.message.contains("not enough space"), "{refused:?}");
}
