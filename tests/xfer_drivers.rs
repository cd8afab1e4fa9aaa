//! File transfer over loopback TCP with the real drivers (blocking and
//! tokio) and the real file layer: several files in one session, and a
//! connection cut mid-way then resumed. Every wait is bounded by the
//! machines' idle timeout or an explicit timeout; nothing sleeps.
#![cfg(unix)]

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::thread;
use std::time::{Duration, Instant};

use echoxfer::driver::blocking::{self, ServeReport};
use echoxfer::driver::DriverError;
use echoxfer::files::{FileReport, Outcome, ReceiverApp, SenderApp, Store};
use echoxfer::xfer::{Receiver, ReceiverRole, Sender};
use echoxfer::{SessionLimits, TransferConfig};

mod common;
use common::files::{assert_received, dirs, sources};
use common::tree;

fn config() -> SessionLimits {
    SessionLimits {
        idle_timeout: Duration::from_secs(10),
        ..SessionLimits::default()
    }
}

/// A receiver machine and its app saving into `store`, created at `now`.
fn receiver(store: &Store, now: Instant) -> (Receiver, ReceiverApp) {
    let m = Receiver::new(ReceiverRole::new(TransferConfig::default()), config(), now);
    (m, ReceiverApp::new(store.clone()))
}

/// A sender machine and its app for `paths`, created now.
fn sender(paths: &[PathBuf]) -> (Sender, SenderApp) {
    let app = SenderApp::open(paths, &TransferConfig::default().path_limits()).unwrap();
    (
        Sender::new(
            app.role(TransferConfig::default()),
            config(),
            Instant::now(),
        ),
        app,
    )
}

/// Sends `paths` over `transport` with the blocking driver.
fn send_blocking(
    transport: &mut impl blocking::Transport,
    paths: &[PathBuf],
) -> (Result<(), DriverError>, SenderApp) {
    let (mut m, mut app) = sender(paths);
    (blocking::run_stream(&mut m, transport, &mut app), app)
}

/// Sends `paths` over `io` with the tokio driver.
async fn send_tokio(
    io: &mut (impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin),
    paths: &[PathBuf],
) -> (Result<(), DriverError>, SenderApp) {
    let (mut m, mut app) = sender(paths);
    let r = echoxfer::driver::async_tokio::run_stream(&mut m, io, &mut app).await;
    (r, app)
}

/// Serves receivers saving into `store` on `listener` with the blocking
/// driver, in a thread, until `shutdown` is triggered.
fn serve_blocking(
    listener: TcpListener,
    store: Store,
    shutdown: &blocking::Shutdown,
) -> thread::JoinHandle<io::Result<ServeReport>> {
    let shutdown = shutdown.clone();
    thread::spawn(move || {
        blocking::serve(
            listener,
            4,
            Duration::from_secs(10),
            &shutdown,
            move |now| receiver(&store, now),
        )
    })
}

fn all_saved(report: &[FileReport]) -> bool {
    report
        .iter()
        .all(|f| matches!(f.outcome, Outcome::Saved { .. }))
}

/// A transport that fails for good after `budget` bytes have been written:
/// the connection drops mid-transfer.
struct CutAfter<T> {
    inner: T,
    budget: usize,
}

fn reset() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionReset, "cut by the test")
}

impl Read for CutAfter<TcpStream> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf)
    }
}

impl Write for CutAfter<TcpStream> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.budget == 0 {
            let _ = self.inner.shutdown(std::net::Shutdown::Both);
            return Err(reset());
        }
        let n = self.inner.write(&buf[..buf.len().min(self.budget)])?;
        self.budget -= n;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl blocking::Transport for CutAfter<TcpStream> {
    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.inner.set_read_timeout(timeout)
    }
}

/// Receives one session on `listener` in a thread; returns its result and report.
fn receive_one(
    listener: &TcpListener,
    store: &Store,
) -> thread::JoinHandle<(Result<(), DriverError>, Vec<FileReport>)> {
    let listener = listener.try_clone().unwrap();
    let store = store.clone();
    thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let (mut m, mut app) = receiver(&store, Instant::now());
        let r = blocking::run_stream(&mut m, &mut stream, &mut app);
        (r, app.report().to_vec())
    })
}

#[test]
fn blocking_several_files_in_one_session() {
    let d = dirs();
    let paths = sources(&d, &[0, 1, 100_000, 262_144, 1_000_003]);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let store = Store::new(&d.dst, false).unwrap();
    let shutdown = blocking::Shutdown::new();
    let server = serve_blocking(listener, store, &shutdown);
    let (sent, app) = send_blocking(&mut TcpStream::connect(addr).unwrap(), &paths);
    sent.unwrap();
    assert!(all_saved(app.report()), "{:?}", app.report());
    shutdown.trigger();
    let report = server.join().unwrap().unwrap();
    assert_eq!((report.ok, report.failed), (1, 0));
    assert_received(&d, &paths);
}

#[test]
fn blocking_cut_mid_transfer_then_resumed_with_few_resent_bytes() {
    let d = dirs();
    let size = 3_000_000;
    let paths = sources(&d, &[size]);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let store = Store::new(&d.dst, false).unwrap();

    let server = receive_one(&listener, &store);
    let mut cut = CutAfter {
        inner: TcpStream::connect(addr).unwrap(),
        budget: 2_500_000,
    };
    assert!(send_blocking(&mut cut, &paths).0.is_err());
    drop(cut);
    let (result, report) = server.join().unwrap();
    assert!(result.is_err(), "an interrupted transfer is not a success");
    assert_eq!(report[0].outcome, Outcome::Pending);
    assert!(
        !d.dst.join("file-0.bin").exists(),
        "a cut left the final name"
    );

    let server = receive_one(&listener, &store);
    let (sent, app) = send_blocking(&mut TcpStream::connect(addr).unwrap(), &paths);
    sent.unwrap();
    let (result, report) = server.join().unwrap();
    result.unwrap();
    assert!(all_saved(&report));
    let from = app.report()[0].from;
    assert!(from > 2_000_000, "resumed from {from}");
    assert_eq!(app.bytes_sent(), size as u64 - from);
    assert!(
        app.bytes_sent() < size as u64 / 3,
        "re-sent {}",
        app.bytes_sent()
    );
    assert_received(&d, &paths);
}

struct AsyncCutAfter {
    inner: tokio::net::TcpStream,
    budget: usize,
}

impl tokio::io::AsyncRead for AsyncCutAfter {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for AsyncCutAfter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.budget == 0 {
            return Poll::Ready(Err(reset()));
        }
        let n = buf.len().min(self.budget);
        let written = Pin::new(&mut self.inner).poll_write(cx, &buf[..n]);
        if let Poll::Ready(Ok(n)) = written {
            self.budget -= n;
        }
        written
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

async fn tokio_receive_one(
    listener: &tokio::net::TcpListener,
    store: &Store,
) -> (Result<(), DriverError>, Vec<FileReport>) {
    let (mut stream, _) = listener.accept().await.unwrap();
    let (mut m, mut app) = receiver(store, Instant::now());
    let r = echoxfer::driver::async_tokio::run_stream(&mut m, &mut stream, &mut app).await;
    (r, app.report().to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_several_files_in_one_session() {
    let d = dirs();
    let paths = sources(&d, &[3, 0, 700_000, 65_536]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let store = Store::new(&d.dst, false).unwrap();
    let stop = echoxfer::driver::Shutdown::new();
    let server = tokio::spawn(echoxfer::driver::async_tokio::serve(
        listener,
        4,
        Duration::from_secs(10),
        stop.clone(),
        move |now| receiver(&store, now),
    ));
    let client = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (sent, app) = send_tokio(&mut stream, &paths).await;
        sent.unwrap();
        app
    };
    let app = tokio::time::timeout(Duration::from_secs(30), client)
        .await
        .expect("bounded");
    assert!(all_saved(app.report()), "{:?}", app.report());
    stop.trigger();
    let report = tokio::time::timeout(Duration::from_secs(30), server)
        .await
        .expect("bounded")
        .unwrap()
        .unwrap();
    assert_eq!((report.ok, report.failed), (1, 0));
    assert_received(&d, &paths);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_cut_mid_transfer_then_resumed_with_few_resent_bytes() {
    let d = dirs();
    let size = 3_000_000;
    let paths = sources(&d, &[size]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let store = Store::new(&d.dst, false).unwrap();
    let bound = Duration::from_secs(30);

    let first = async {
        let client = async {
            let mut cut = AsyncCutAfter {
                inner: tokio::net::TcpStream::connect(addr).await.unwrap(),
                budget: 2_500_000,
            };
            let (r, _) = send_tokio(&mut cut, &paths).await;
            drop(cut);
            r
        };
        tokio::join!(client, tokio_receive_one(&listener, &store))
    };
    let (sent, (received, report)) = tokio::time::timeout(bound, first).await.expect("bounded");
    assert!(sent.is_err() && received.is_err());
    assert_eq!(report[0].outcome, Outcome::Pending);
    assert!(
        !d.dst.join("file-0.bin").exists(),
        "a cut left the final name"
    );

    let second = async {
        let client = async {
            let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            send_tokio(&mut stream, &paths).await
        };
        tokio::join!(client, tokio_receive_one(&listener, &store))
    };
    let ((sent, app), (received, report)) =
        tokio::time::timeout(bound, second).await.expect("bounded");
    sent.unwrap();
    received.unwrap();
    assert!(all_saved(&report));
    let from = app.report()[0].from;
    assert!(from > 2_000_000, "resumed from {from}");
    assert_eq!(app.bytes_sent(), size as u64 - from);
    assert!(app.bytes_sent() < size as u64 / 3);
    assert_received(&d, &paths);
}

#[test]
fn blocking_server_survives_a_hostile_session_and_serves_the_next() {
    use echoxfer::codec::{Frame, Protocol};
    let d = dirs();
    let paths = sources(&d, &[12_345]);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let store = Store::new(&d.dst, false).unwrap();
    let shutdown = blocking::Shutdown::new();
    let server = serve_blocking(listener, store, &shutdown);
    // A hostile sender: a traversal name, then data nobody accepted.
    let mut evil = TcpStream::connect(addr).unwrap();
    evil.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut bytes = Protocol::File.preamble().to_vec();
    for f in [
        Frame::Offer {
            id: 0,
            kind: 0,
            mode: 0o644,
            mtime_secs: 0,
            mtime_nanos: 0,
            size: 3,
            path: echoxfer::xfer::encode_raw_path(&[b"..", b"..", b"etc", b"x"]),
        },
        Frame::Data(bytes::Bytes::from_static(b"pwn")),
    ] {
        bytes.extend_from_slice(&f.encode_to_vec());
    }
    evil.write_all(&bytes).unwrap();
    let mut reply = Vec::new();
    let _ = evil.read_to_end(&mut reply); // the server ends that session
    let text = String::from_utf8_lossy(&reply);
    assert!(text.contains("Data frame with no file begun"), "{text:?}");

    let (sent, _) = send_blocking(&mut TcpStream::connect(addr).unwrap(), &paths);
    sent.unwrap();
    shutdown.trigger();
    let report = server.join().unwrap().unwrap();
    assert_eq!((report.ok, report.failed), (1, 1));
    assert_received(&d, &paths);
    assert!(!d.dst.parent().unwrap().join("etc").exists());
}

/// A receiver app on a disk that fills up after `room` bytes of file data.
struct FillsUp {
    app: ReceiverApp,
    room: u64,
}

impl echoxfer::driver::App<Receiver> for FillsUp {
    fn on_event(
        &mut self,
        m: &mut Receiver,
        now: Instant,
        event: echoxfer::xfer::ReceiverEvent,
    ) -> io::Result<()> {
        if let echoxfer::xfer::ReceiverEvent::Write { data, .. } = &event {
            if data.len() as u64 > self.room {
                return Err(io::Error::from_raw_os_error(libc::ENOSPC));
            }
            self.room -= data.len() as u64;
        }
        self.app.on_event(m, now, event)
    }

    fn poll_work(&mut self) -> Option<echoxfer::driver::Work<Self, Receiver>> {
        let work = echoxfer::driver::App::<Receiver>::poll_work(&mut self.app)?;
        Some(work.within(|f: &mut FillsUp| &mut f.app))
    }
}

/// The sender's error once the receiver's disk filled mid-transfer: it
/// must carry the receiver's reason, not a bare "broken pipe".
fn assert_told_disk_full(sent: Result<(), DriverError>) {
    match sent {
        Err(DriverError::Machine(echoxfer::Error::PeerFailed { message, .. })) => {
            assert!(message.contains("No space left"), "{message}")
        }
        other => panic!("the sender was not told why: {other:?}"),
    }
}

#[test]
fn blocking_sender_is_told_the_receivers_disk_is_full() {
    let d = dirs();
    // Large enough that the sender is still writing when the receiver fails.
    let paths = sources(&d, &[48 << 20]);
    let store = Store::new(&d.dst, false).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let rx = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let (mut m, app) = receiver(&store, Instant::now());
        let mut app = FillsUp { app, room: 1 << 20 };
        blocking::run_stream(&mut m, &mut stream, &mut app)
    });
    let mut stream = TcpStream::connect(addr).unwrap();
    let (sent, _) = send_blocking(&mut stream, &paths);
    assert_told_disk_full(sent);
    let received = rx.join().unwrap();
    assert!(
        matches!(&received, Err(DriverError::App(source)) if source.raw_os_error() == Some(libc::ENOSPC)),
        "{received:?}"
    );
    assert!(!d.dst.join("file-0.bin").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_sender_is_told_the_receivers_disk_is_full() {
    let d = dirs();
    let paths = sources(&d, &[48 << 20]);
    let store = Store::new(&d.dst, false).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let rx = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let (mut m, app) = receiver(&store, Instant::now());
        let mut app = FillsUp { app, room: 1 << 20 };
        echoxfer::driver::async_tokio::run_stream(&mut m, &mut stream, &mut app).await
    });
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (sent, _) = send_tokio(&mut stream, &paths).await;
    assert_told_disk_full(sent);
    let received = tokio::time::timeout(Duration::from_secs(60), rx)
        .await
        .expect("the receiver ends")
        .unwrap();
    assert!(received.is_err(), "{received:?}");
    assert!(!d.dst.join("file-0.bin").exists());
}

/// A [`ReceiverApp`] whose file-system work notes the thread it ran on and
/// waits, before it runs, until `gate` opens (or 20 s pass).
struct Watched {
    app: ReceiverApp,
    threads: std::sync::Arc<std::sync::Mutex<Vec<thread::ThreadId>>>,
    gate: std::sync::Arc<std::sync::Mutex<std::sync::mpsc::Receiver<()>>>,
}

impl echoxfer::driver::App<Receiver> for Watched {
    fn on_event(
        &mut self,
        m: &mut Receiver,
        now: Instant,
        event: echoxfer::xfer::ReceiverEvent,
    ) -> io::Result<()> {
        self.app.on_event(m, now, event)
    }

    fn poll_work(&mut self) -> Option<echoxfer::driver::Work<Self, Receiver>> {
        let inner = echoxfer::driver::App::<Receiver>::poll_work(&mut self.app)?;
        let (threads, gate) = (self.threads.clone(), self.gate.clone());
        Some(echoxfer::driver::Work::new(move || {
            threads.lock().unwrap().push(thread::current().id());
            let opened = gate.lock().unwrap().recv_timeout(Duration::from_secs(20));
            let finish = inner.run();
            move |w: &mut Watched, m: &mut Receiver, now| {
                opened
                    .map_err(|_| io::Error::other("the gate never opened: the runtime stalled"))?;
                finish.apply(&mut w.app, m, now)
            }
        }))
    }
}

/// On a runtime with one thread, a receiver's file-system work runs off it:
/// while the work waits, another task on that thread still runs (and opens
/// the work's gate), which it could not if the work blocked the runtime.
#[test]
fn tokio_file_system_work_never_runs_on_the_runtime_thread_nor_stalls_it() {
    let d = dirs();
    let paths = sources(&d, &[300_000, 0]);
    let store = Store::new(&d.dst, false).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let runtime_thread = thread::current().id();
    let threads = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (open, gate) = std::sync::mpsc::channel();
    runtime.block_on(async {
        let (mut a, mut b) = tokio::io::duplex(64 * 1024);
        let (mut rx, app) = receiver(&store, Instant::now());
        let mut app = Watched {
            app,
            threads: threads.clone(),
            gate: std::sync::Arc::new(std::sync::Mutex::new(gate)),
        };
        // Opens the gate again and again, from the runtime's one thread.
        let opener = tokio::spawn(async move {
            while open.send(()).is_ok() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
        let receiving = echoxfer::driver::async_tokio::run_stream(&mut rx, &mut b, &mut app);
        let (sent, received) = tokio::join!(send_tokio(&mut a, &paths), receiving);
        sent.0.unwrap();
        received.unwrap();
        drop(app);
        opener.await.unwrap();
    });
    assert_received(&d, &paths);
    let threads = threads.lock().unwrap();
    assert!(
        threads.len() >= 3,
        "offers, writes and saves ran as work: {threads:?}"
    );
    assert!(
        threads.iter().all(|t| *t != runtime_thread),
        "a file-system call ran on the runtime's thread"
    );
}

/// Sends the tree `nodes` (written under `src/t`) to a fresh receiver over
/// loopback with the blocking driver or the tokio one; checks both ends.
fn tree_over(runtime: &str, nodes: &[tree::Node]) {
    let d = dirs();
    let root = d.src.join("t");
    std::fs::create_dir(&root).unwrap();
    tree::write(&root, nodes);
    let paths = vec![root];
    let store = Store::new(&d.dst, false).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (sent, received) = match runtime {
        "blocking" => {
            let server = receive_one(&listener, &store);
            let (sent, _) = send_blocking(&mut TcpStream::connect(addr).unwrap(), &paths);
            (sent, server.join().unwrap().0)
        }
        _ => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                listener.set_nonblocking(true).unwrap();
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let server = tokio_receive_one(&listener, &store);
                let client = async {
                    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
                    send_tokio(&mut stream, &paths).await.0
                };
                let both = async { tokio::join!(client, server) };
                let (sent, (received, _)) = tokio::time::timeout(Duration::from_secs(60), both)
                    .await
                    .expect("bounded");
                (sent, received)
            })
        }
    };
    sent.unwrap();
    received.unwrap();
    tree::assert_tree(&d.dst.join("t"), nodes);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 6, ..Default::default() })]

    /// Invariant: a random tree on disk (nested and empty directories,
    /// empty files, unicode names, modes, times to the nanosecond) arrives
    /// identical over real sockets and the real file layer, with either
    /// driver: paths, content, permission bits (masked by the umask) and
    /// modification times, directories' included, and nothing else.
    #[test]
    fn random_trees_arrive_identical_on_disk_over_both_drivers(nodes in tree::tree()) {
        tree_over("blocking", &nodes);
        tree_over("tokio", &nodes);
    }
}
