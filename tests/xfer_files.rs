//! The file layer (`Store`, `Source`, the apps) on real directories, with the
//! machines joined by the in-memory pair: symlinks, overwrites, partial
//! files, resume and integrity on an actual file system.
#![cfg(unix)]

use std::fs;
use std::path::PathBuf;

use echoxfer::codec::RejectReason;
use echoxfer::driver::DriverError;
use echoxfer::files::{Outcome, ReceiverApp, SenderApp, Store};
use echoxfer::testing::Cutter;
use echoxfer::xfer::{Resume, SafeName};
use echoxfer::Error;

mod common;
use common::files::{assert_received, content, dirs, entries, write_src};
use common::session::{self, run_session};
use echoxfer::testing::fuzz::small_transfer;

type Run = session::Run<SenderApp, ReceiverApp>;

/// Sends `paths` into `store` over the in-memory pair, cut at random,
/// dropped after `cut` bytes and with the byte at `flip` corrupted if given.
fn send(paths: &[PathBuf], store: &Store, cut: Option<u64>, flip: Option<u64>) -> Run {
    let tx = SenderApp::open(paths, 255).unwrap();
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
        } => assert!(message.contains("--overwrite"), "says how: {message}"),
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
    let r = send(&[p], &Store::new(&d.dst, false).unwrap(), None, None);
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
    let store = Store::new(&d.dst, false).unwrap();
    let refusal = store.prepare(&name, 100).unwrap_err();
    assert_eq!(refusal.reason, RejectReason::Disk);
    assert_eq!(fs::read(&victim).unwrap(), b"precious");
}

#[test]
fn two_sessions_never_receive_the_same_name_at_once() {
    let d = dirs();
    let store = Store::new(&d.dst, false).unwrap();
    let name = SafeName::new(b"same", 255).unwrap();
    let (first, _) = store.prepare(&name, 10).unwrap();
    let again = store.clone().prepare(&name, 10).unwrap_err();
    assert_eq!(again.reason, RejectReason::Busy);
    drop(first);
    assert!(store.prepare(&name, 10).is_ok());
}

#[test]
fn two_stores_on_one_directory_never_share_a_partial_file() {
    // Two `Store`s open the directory and the partial file separately, as
    // two receiver processes do: the claim must hold across them, not only
    // within one process.
    let d = dirs();
    let name = SafeName::new(b"same", 255).unwrap();
    let one = Store::new(&d.dst, false).unwrap();
    let two = Store::new(&d.dst, false).unwrap();
    let (mut first, _) = one.prepare(&name, 10).unwrap();
    first.start(0).unwrap();
    first.write_at(0, b"01234").unwrap();
    let refused = two.prepare(&name, 10).unwrap_err();
    assert_eq!(refused.reason, RejectReason::Busy);
    assert!(refused.message.contains("in progress"), "{refused:?}");
    drop(first);
    let (_, resume) = two.prepare(&name, 10).unwrap();
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
    let store = Store::new(&d.dst, false).unwrap();
    let (mut incoming, _) = store.prepare(&name, 6).unwrap();
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
    let (mut incoming, _) = store.prepare(&name, 3).unwrap();
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
    let refused = store.prepare(&name, free * 2 + (1 << 30)).unwrap_err();
    assert_eq!(refused.reason, RejectReason::Disk);
    assert!(refused.message.contains("free"), "{refused:?}");
    assert!(entries(&d.dst).is_empty(), "{:?}", entries(&d.dst));
}

#[test]
fn an_abandoned_transfer_keeps_its_partial_only_if_it_holds_data() {
    let d = dirs();
    let store = Store::new(&d.dst, false).unwrap();
    let empty = SafeName::new(b"e", 255).unwrap();
    drop(store.prepare(&empty, 10).unwrap());
    assert!(entries(&d.dst).is_empty(), "{:?}", entries(&d.dst));
    let some = SafeName::new(b"s", 255).unwrap();
    let (mut incoming, _) = store.prepare(&some, 10).unwrap();
    incoming.start(0).unwrap();
    incoming.write_at(0, b"abc").unwrap();
    drop(incoming);
    assert_eq!(entries(&d.dst), [Store::partial_name(&some)]);
    assert_eq!(store.partials().unwrap(), (1, 3));
}

#[test]
fn partial_is_resumed_with_its_hash() {
    let d = dirs();
    let store = Store::new(&d.dst, false).unwrap();
    let name = SafeName::new(b"r", 255).unwrap();
    fs::write(d.dst.join(Store::partial_name(&name)), b"hello").unwrap();
    let (_, resume) = store.prepare(&name, 10).unwrap();
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
    // The first session's receiver still holds the name until it is dropped.
    let busy = send(std::slice::from_ref(&p), &store, None, None);
    assert!(matches!(
        busy.tx.report()[0].outcome,
        Outcome::Refused {
            reason: RejectReason::Busy,
            ..
        }
    ));
    drop(first);
    let second = send(&[p], &store, None, None);
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
fn source_name_must_be_safe_and_regular() {
    let d = dirs();
    assert!(
        SenderApp::open(std::slice::from_ref(&d.src), 255).is_err(),
        "a directory"
    );
    let p = write_src(&d, "ok.txt", b"x");
    assert!(
        SenderApp::open(&[p], 2).is_err(),
        "name longer than the limit"
    );
}

#[test]
fn source_that_shrank_is_refused_never_padded() {
    // rsync CVE-2024-12085 class: no byte that was not read may be sent.
    let d = dirs();
    let p = write_src(&d, "s.bin", &content(5000, 5));
    let tx = SenderApp::open(std::slice::from_ref(&p), 255).unwrap();
    fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(2000)
        .unwrap();
    let rx = ReceiverApp::new(Store::new(&d.dst, false).unwrap());
    let Run { outcome, tx, .. } = run_session(
        tx.role(small_transfer()),
        tx,
        rx,
        Cutter::whole(),
        None,
        None,
    );
    assert!(
        matches!(
            outcome.a,
            Err(DriverError::Machine(Error::SourceChanged(_)))
        ),
        "{:?}",
        outcome.a
    );
    assert!(
        outcome.b.is_err(),
        "the receiver must see an interrupted transfer"
    );
    assert!(!d.dst.join("s.bin").exists());
    assert_eq!(tx.bytes_sent(), 1024, "only chunks read in full are sent");
}
