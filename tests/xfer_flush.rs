//! A sender that says `Flush` far more often than once per wait (after
//! every file, before every read of its socket) against the real receiver
//! app and store: the receiver must not make one group commit (one
//! `fsync`) per `Flush` (PROTOCOL §4, "Flush").
#![cfg(unix)]

use std::fs;
use std::io::{self, Read, Write};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use echoxfer::codec::{Frame, FrameDecoder, Protocol};
use echoxfer::driver::{blocking, App, DriverError, Work};
use echoxfer::files::{Outcome, ReceiverApp, Store};
use echoxfer::xfer::{Receiver, ReceiverEvent, ReceiverRole};
use echoxfer::{SessionLimits, TransferConfig};

fn limits() -> SessionLimits {
    SessionLimits {
        idle_timeout: Duration::from_secs(30),
        ..SessionLimits::default()
    }
}

fn receiver(store: &Store) -> (Receiver, ReceiverApp) {
    let m = Receiver::new(
        ReceiverRole::new(TransferConfig::default()),
        limits(),
        Instant::now(),
    );
    (m, ReceiverApp::new(store.clone()))
}

/// The bytes of a sender that writes `n` tiny files, each followed by
/// `Flush`, then `Quit`, without waiting for any answer: what a receiver
/// finds in one read from a sender that flushes after every file.
fn flush_after_every_file(n: usize) -> Vec<u8> {
    let mut bytes = Protocol::File.preamble().to_vec();
    for i in 0..n {
        let content = format!("file {i}").into_bytes();
        let offer = Frame::Offer {
            id: i as u32,
            kind: 0,
            mode: 0o644,
            mtime_secs: 1_700_000_000,
            mtime_nanos: 0,
            size: content.len() as u64,
            path: echoxfer::xfer::encode_raw_path(&[format!("f{i}").as_bytes()]),
        };
        let end = Frame::End {
            id: i as u32,
            hash: *blake3::hash(&content).as_bytes(),
            offer: echoxfer::xfer::offer_digest(&offer),
        };
        for f in [
            offer,
            Frame::Begin {
                id: i as u32,
                from: 0,
            },
            Frame::Data(content.into()),
            end,
            Frame::Flush,
        ] {
            bytes.extend_from_slice(&f.encode_to_vec());
        }
    }
    bytes.extend_from_slice(&Frame::Quit.encode_to_vec());
    bytes
}

/// A receiver app that counts the works whose results saved files: each
/// such work made at least one group commit.
struct CountCommits {
    app: ReceiverApp,
    saved: u64,
    commits: usize,
}

impl App<Receiver> for CountCommits {
    fn on_event(&mut self, m: &mut Receiver, now: Instant, e: ReceiverEvent) -> io::Result<()> {
        self.app.on_event(m, now, e)
    }

    fn poll_work(&mut self) -> Option<Work<Self, Receiver>> {
        let work = App::<Receiver>::poll_work(&mut self.app)?;
        Some(work.within(|c: &mut CountCommits| &mut c.app).and_then(
            |c: &mut CountCommits, m: &mut Receiver, _| {
                if m.role().files_saved() > c.saved {
                    c.saved = m.role().files_saved();
                    c.commits += 1;
                }
                Ok(())
            },
        ))
    }

    fn on_end(&mut self, result: &Result<(), DriverError>) {
        App::<Receiver>::on_end(&mut self.app, result)
    }
}

fn counting(store: &Store) -> CountCommits {
    CountCommits {
        app: ReceiverApp::new(store.clone()),
        saved: 0,
        commits: 0,
    }
}

/// A sender's bytes, all there to read, and the receiver's answers.
struct Canned {
    input: io::Cursor<Vec<u8>>,
    output: Vec<u8>,
}

impl Read for Canned {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.input.read(buf)
    }
}

impl Write for Canned {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.output.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl blocking::Transport for Canned {
    fn set_read_timeout(&mut self, _: Option<Duration>) -> io::Result<()> {
        Ok(())
    }
}

impl tokio::io::AsyncRead for Canned {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = self.get_mut().input.read(buf.initialize_unfilled())?;
        buf.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl tokio::io::AsyncWrite for Canned {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(self.get_mut().output.write(buf))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Files in [`flush_after_every_file`], all in the receiver's first read.
const FILES: usize = 64;

/// Receives [`flush_after_every_file`] with `run` (one driver or the
/// other); checks every file arrived and returns how many works committed.
fn many_flushes_in_one_read(
    run: impl FnOnce(&mut Receiver, &mut Canned, &mut CountCommits) -> Result<(), DriverError>,
) -> usize {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::new(tmp.path(), false).unwrap();
    let mut app = counting(&store);
    let mut m = receiver(&store).0;
    let bytes = flush_after_every_file(FILES);
    assert!(bytes.len() < 16 * 1024, "one read: {}", bytes.len());
    let mut t = Canned {
        input: io::Cursor::new(bytes),
        output: Vec::new(),
    };
    run(&mut m, &mut t, &mut app).unwrap();
    assert_eq!(m.role().files_saved(), FILES as u64);
    let report = app.app.report();
    assert_eq!(report.len(), FILES);
    assert!(report
        .iter()
        .all(|f| matches!(f.outcome, Outcome::Saved { .. })));
    for i in 0..FILES {
        let got = fs::read(tmp.path().join(format!("f{i}"))).unwrap();
        assert_eq!(got, format!("file {i}").into_bytes());
    }
    // Every file confirmed, after the commit that made it durable.
    let mut wire = BytesMut::from(&t.output[..]);
    let mut decoder = FrameDecoder::new(Protocol::File, 1 << 20);
    let mut saved = 0;
    while let Some(f) = decoder.decode(&mut wire).unwrap() {
        saved += matches!(f, Frame::Saved { .. }) as usize;
    }
    assert_eq!(saved, FILES);
    app.commits
}

#[test]
fn blocking_many_flushes_in_one_read_make_a_few_group_commits_not_one_per_file() {
    let commits = many_flushes_in_one_read(blocking::run_stream);
    assert!(
        commits <= 2,
        "{FILES} files, each followed by Flush, all in one read: {commits} group commits"
    );
}

#[test]
fn tokio_many_flushes_in_one_read_make_a_few_group_commits_not_one_per_file() {
    let commits = many_flushes_in_one_read(|m, t, app| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(echoxfer::driver::async_tokio::run_stream(m, t, app))
    });
    assert!(
        commits <= 2,
        "{FILES} files, each followed by Flush, all in one read: {commits} group commits"
    );
}
