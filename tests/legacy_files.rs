//! The legacy file app (`echoxfer::files::legacy`): the final name appears
//! only at completion, never over an existing file unless asked, and an
//! incomplete transfer leaves nothing behind.

use std::io;
use std::time::Instant;

use bytes::Bytes;

use echoxfer::driver::work::work_in_place;
use echoxfer::driver::App;
use echoxfer::files::legacy::{ReceiveToDir, SendFromFile, DEFAULT_NAME};
use echoxfer::legacy::{LegacyFileReceiver, LegacyFileSender, LegacyReceiverEvent};
use echoxfer::{Machine, Output, UnframedConfig};

mod common;
use common::files::entries;

/// Hands `app` the first `data` of a transfer, as the machine `m` would.
fn write(
    app: &mut ReceiveToDir,
    m: &mut LegacyFileReceiver,
    now: Instant,
    data: &[u8],
) -> io::Result<()> {
    let event = LegacyReceiverEvent::Write {
        offset: 0,
        data: Bytes::copy_from_slice(data),
    };
    app.on_event(m, now, event)?;
    work_in_place(app, m, now)
}

/// Hands `app` a whole transfer of `data`: written, then complete.
fn receive(app: &mut ReceiveToDir, data: &[u8]) -> io::Result<()> {
    let now = Instant::now();
    let mut m = LegacyFileReceiver::new(UnframedConfig::default(), now);
    write(app, &mut m, now, data)?;
    app.on_event(
        &mut m,
        now,
        LegacyReceiverEvent::Complete {
            size: data.len() as u64,
            blake3: *blake3::hash(data).as_bytes(),
        },
    )?;
    work_in_place(app, &mut m, now)
}

#[test]
fn final_name_appears_only_at_completion() {
    let dir = tempfile::tempdir().unwrap();
    let mut app = ReceiveToDir::create(dir.path(), DEFAULT_NAME, false).unwrap();
    assert!(!dir.path().join(DEFAULT_NAME).exists());
    assert!(app.temp_path().exists());
    receive(&mut app, b"payload").unwrap();
    assert_eq!(entries(dir.path()), vec![DEFAULT_NAME]);
    assert_eq!(
        std::fs::read(dir.path().join(DEFAULT_NAME)).unwrap(),
        b"payload"
    );
    let done = app.completed().unwrap();
    assert_eq!(done.size, 7);
    assert_eq!(
        done.blake3_hex(),
        blake3::hash(b"payload").to_hex().to_string()
    );
    drop(app);
    assert_eq!(
        entries(dir.path()),
        vec![DEFAULT_NAME],
        "completed file kept"
    );
}

#[test]
fn refuses_existing_final_file_unless_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join(DEFAULT_NAME);
    std::fs::write(&target, b"old").unwrap();
    let err = ReceiveToDir::create(dir.path(), DEFAULT_NAME, false).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
    assert_eq!(entries(dir.path()), vec![DEFAULT_NAME], "no temp file left");
    let mut app = ReceiveToDir::create(dir.path(), DEFAULT_NAME, true).unwrap();
    receive(&mut app, b"new").unwrap();
    assert_eq!(std::fs::read(&target).unwrap(), b"new");
}

#[test]
fn a_final_file_appearing_meanwhile_is_not_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join(DEFAULT_NAME);
    let mut app = ReceiveToDir::create(dir.path(), DEFAULT_NAME, false).unwrap();
    std::fs::write(&target, b"someone else's").unwrap();
    assert!(receive(&mut app, b"ours").is_err());
    drop(app);
    assert_eq!(std::fs::read(&target).unwrap(), b"someone else's");
    assert_eq!(entries(dir.path()), vec![DEFAULT_NAME], "temp file removed");
}

#[test]
fn incomplete_transfer_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut app = ReceiveToDir::create(dir.path(), "out.bin", false).unwrap();
    let now = Instant::now();
    let mut m = LegacyFileReceiver::new(UnframedConfig::default(), now);
    write(&mut app, &mut m, now, b"half").unwrap();
    drop(app);
    assert!(entries(dir.path()).is_empty());
}

#[test]
fn bad_names_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["", ".", "..", "a/b", "../x"] {
        assert!(
            ReceiveToDir::create(dir.path(), name, true).is_err(),
            "{name:?}"
        );
    }
    assert!(entries(dir.path()).is_empty());
}

#[test]
fn sender_app_answers_reads_from_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let content: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&src, &content).unwrap();
    let (mut app, size) = SendFromFile::open(&src).unwrap();
    assert_eq!(size, 3000);
    let now = Instant::now();
    let mut m = LegacyFileSender::new(size, UnframedConfig::default(), now);
    let mut sent = Vec::new();
    loop {
        match m.poll_output() {
            Output::Event(e) => {
                app.on_event(&mut m, now, e).unwrap();
                work_in_place(&mut app, &mut m, now).unwrap();
            }
            Output::Transmit(piece) => {
                sent.extend_from_slice(&piece);
                echoxfer::StreamMachine::handle_input(&mut m, now, b"success").unwrap();
            }
            Output::Wait(_) if sent.len() < content.len() => panic!("stalled"),
            Output::Wait(_) | Output::Done(_) => break,
        }
    }
    assert_eq!(sent, content);
    assert_eq!(app.acked(), size);
}
