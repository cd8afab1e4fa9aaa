//! A sender that says `Flush` far more often than once per wait (after
//! every file, before every read of its socket) against the real receiver
//! app and store: the receiver must not make one group commit (one
//! `fsync`) per `Flush` (PROTOCOL §4, "Flush").
#![cfg(unix)]

use std::fs;
use std::io::{self, IoSlice, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::thread;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use echoxfer::codec::{Frame, FrameDecoder, Protocol};
use echoxfer::driver::{blocking, App, DriverError, Work};
use echoxfer::files::{Outcome, ReceiverApp, SenderApp, Store};
use echoxfer::xfer::{Receiver, ReceiverEvent, ReceiverRole, Sender};
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

/// `n` files of `size` bytes under `root/tree`; returns `root/tree`.
fn make_tree(root: &Path, n: usize, size: usize) -> PathBuf {
    let tree = root.join("tree");
    fs::create_dir_all(&tree).unwrap();
    for i in 0..n {
        let mut data = vec![0u8; size];
        blake3::Hasher::new()
            .update(&(i as u64).to_le_bytes())
            .finalize_xof()
            .fill(&mut data);
        fs::write(tree.join(format!("f{i:05}")), data).unwrap();
    }
    tree
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
    /// Queues the group commit at each `Flush` as it comes, as the receiver
    /// did before it coalesced them (for the timing comparison).
    eager: bool,
}

impl App<Receiver> for CountCommits {
    fn on_event(&mut self, m: &mut Receiver, now: Instant, e: ReceiverEvent) -> io::Result<()> {
        let flush = matches!(e, ReceiverEvent::Flush);
        self.app.on_event(m, now, e)?;
        if flush && self.eager {
            // What ends a session queues the group commit at once.
            App::<Receiver>::on_end(&mut self.app, &Ok(()));
        }
        Ok(())
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
        eager: false,
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
        rt.block_on(echoxfer::driver::tokio::run_stream(m, t, app))
    });
    assert!(
        commits <= 2,
        "{FILES} files, each followed by Flush, all in one read: {commits} group commits"
    );
}

/// The sender's transport: says `Flush` before every read of its socket
/// (once the preamble went, until `Quit` went).
struct FlushBeforeRead {
    inner: TcpStream,
    started: bool,
    quit: bool,
    flushes: u64,
}

impl FlushBeforeRead {
    fn saw(&mut self, written: &[u8]) {
        self.started = true;
        if written.ends_with(&Frame::Quit.encode_to_vec()) {
            self.quit = true;
        }
    }
}

impl Read for FlushBeforeRead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.started && !self.quit {
            self.inner.write_all(&Frame::Flush.encode_to_vec())?;
            self.flushes += 1;
        }
        self.inner.read(buf)
    }
}

impl Write for FlushBeforeRead {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // Whole: a Flush may only go between frames.
        self.inner.write_all(buf)?;
        self.saw(buf);
        Ok(buf.len())
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let all: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
        self.write(&all)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl blocking::Transport for FlushBeforeRead {
    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.inner.set_read_timeout(timeout)
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        let _ = self.inner.shutdown(std::net::Shutdown::Write);
        Ok(())
    }
}

/// Sends `tree` over `stream` with echoxfer's sender on the blocking
/// driver, saying `Flush` before every read when `storm`.
fn send(stream: TcpStream, tree: &Path, storm: bool) -> u64 {
    let config = TransferConfig::default();
    let mut app = SenderApp::open(&[tree], &config.path_limits()).unwrap();
    let mut m = Sender::new(app.role(config), limits(), Instant::now());
    let mut t = FlushBeforeRead {
        inner: stream,
        started: false,
        quit: !storm,
        flushes: 0,
    };
    // `quit` set from the start: no Flush is added.
    blocking::run_stream(&mut m, &mut t, &mut app).unwrap();
    t.flushes
}

/// Times one session of `tree` to a fresh directory, the receiver on
/// `runtime` (committing at each `Flush` as it comes when `eager`);
/// returns the time, the Flushes added and the works that
/// committed.
fn timed(tree: &Path, runtime: &str, storm: bool, eager: bool) -> (Duration, u64, usize) {
    let dst = tempfile::tempdir_in(tree.parent().unwrap()).unwrap();
    let store = Store::new(dst.path(), false).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut app = CountCommits {
        eager,
        ..counting(&store)
    };
    let start = Instant::now();
    let rx = match runtime {
        "blocking" => thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut m = receiver(&store).0;
            blocking::run_stream(&mut m, &mut stream, &mut app).unwrap();
            (m.role().files_saved(), app.commits)
        }),
        _ => thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                listener.set_nonblocking(true).unwrap();
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let (mut stream, _) = listener.accept().await.unwrap();
                let mut m = receiver(&store).0;
                echoxfer::driver::tokio::run_stream(&mut m, &mut stream, &mut app)
                    .await
                    .unwrap();
                (m.role().files_saved(), app.commits)
            })
        }),
    };
    let flushes = send(TcpStream::connect(addr).unwrap(), tree, storm);
    let (saved, commits) = rx.join().unwrap();
    let took = start.elapsed();
    let n = fs::read_dir(tree).unwrap().count() as u64;
    assert_eq!(saved, n + 1, "every file and the directory");
    (took, flushes, commits)
}

/// `FILES=5000 ROUNDS=3 cargo test --release --test xfer_flush -- --ignored --nocapture`
/// (`ONLY="blocking eager"`: only the runs whose runtime or name match
/// every word; run it under `strace -f -c -e trace=fsync,syncfs` to count
/// the syncs).
#[test]
#[ignore = "a timing comparison, not a check"]
fn time_a_sender_that_flushes_before_every_read() {
    let files = std::env::var("FILES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    let root = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let rounds = std::env::var("ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    // ONLY: words a run must match, e.g. `ONLY="blocking eager"`.
    let only: Vec<String> = std::env::var("ONLY")
        .unwrap_or_default()
        .split_whitespace()
        .map(String::from)
        .collect();
    let tree = make_tree(root.path(), files, 64);
    let runs = [
        (false, false, "echoxfer"),
        (
            true,
            true,
            "Flush before every read, eager: a commit per Flush (as before)",
        ),
        (true, false, "Flush before every read, coalesced (now)"),
    ];
    for _ in 0..rounds {
        for (storm, eager, what) in runs {
            for runtime in ["blocking", "tokio"] {
                if !only
                    .iter()
                    .all(|w| what.contains(w.as_str()) || runtime == w)
                {
                    continue;
                }
                let (took, flushes, commits) = timed(&tree, runtime, storm, eager);
                println!(
                    "{files} files, receiver {runtime:8}, sender {what}: {:6.2} s, \
                     {commits} works that committed ({flushes} Flush added)",
                    took.as_secs_f64()
                );
            }
        }
    }
}
