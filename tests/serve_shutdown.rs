//! Stopping a server as a person at a terminal does: the first Ctrl-C stops
//! accepting and gives sessions a grace period, then aborts the ones still
//! running, telling each peer why; a second one aborts at once. Every
//! session is counted once, as it ended. Both drivers; every wait bounded.
#![cfg(unix)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use echoxfer::codec::{Frame, FrameDecoder, Protocol};
use echoxfer::driver::{blocking, listen, ServeReport, Shutdown};
use echoxfer::files::{ReceiverApp, Store};
use echoxfer::xfer::{Receiver, ReceiverRole};
use echoxfer::{SessionLimits, TransferConfig};

use echoxfer::testing::file_offer;

mod common;
use common::files::dirs;
use common::process::BOUND;

#[derive(Clone, Copy, Debug)]
enum Driver {
    Blocking,
    Tokio,
}

/// A receiver server on a free port, in a thread; joining gives its report.
fn serve(
    driver: Driver,
    store: Store,
    grace: Duration,
    shutdown: &Shutdown,
) -> (SocketAddr, thread::JoinHandle<ServeReport>) {
    let listener = listen::bind("127.0.0.1:0".parse().unwrap(), 64).unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = shutdown.clone();
    let make = move |now| {
        let machine = Receiver::new(
            ReceiverRole::new(TransferConfig::default()),
            SessionLimits::default(),
            now,
        );
        (machine, ReceiverApp::new(store.clone()))
    };
    let handle = thread::spawn(move || match driver {
        Driver::Blocking => blocking::serve(listener, 8, grace, &shutdown, make).unwrap(),
        Driver::Tokio => {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async {
                listener.set_nonblocking(true).unwrap();
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                echoxfer::driver::async_tokio::serve(listener, 8, grace, shutdown, make).await
            })
            .unwrap()
        }
    });
    (addr, handle)
}

/// A sender driven by hand: it has offered a file, been accepted, sent a
/// little data, and now waits, mid-transfer.
struct MidTransfer {
    stream: TcpStream,
    decoder: FrameDecoder,
    buf: BytesMut,
}

impl MidTransfer {
    fn start(addr: SocketAddr, name: &str) -> MidTransfer {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(BOUND)).unwrap();
        let mut wire = Protocol::File.preamble().to_vec();
        // Large enough for a named, resumable partial file.
        wire.extend(file_offer(0, name.as_bytes(), 1 << 20).encode_to_vec());
        stream.write_all(&wire).unwrap();
        let mut this = MidTransfer {
            stream,
            decoder: FrameDecoder::new(Protocol::File, 1 << 20),
            buf: BytesMut::new(),
        };
        // The receiver's window comes first.
        let accepted = match this.next_frame() {
            Some(Frame::Window { .. }) => this.next_frame(),
            other => other,
        };
        assert!(
            matches!(accepted, Some(Frame::Accept { .. })),
            "{accepted:?}"
        );
        let mut wire = Frame::Begin { id: 0, from: 0 }.encode_to_vec();
        wire.extend(Frame::Data(Bytes::from(vec![1u8; 100])).encode_to_vec());
        this.stream.write_all(&wire).unwrap();
        this
    }

    /// The next frame from the receiver, or `None` at its end (bounded).
    fn next_frame(&mut self) -> Option<Frame> {
        loop {
            if let Some(frame) = self.decoder.decode(&mut self.buf).unwrap() {
                return Some(frame);
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// What the receiver said last: the text of its `Error` frame.
    fn last_words(mut self) -> String {
        match self.next_frame() {
            Some(Frame::Error { message, .. }) => String::from_utf8_lossy(&message).into_owned(),
            other => panic!("the peer was not told why the session ended: {other:?}"),
        }
    }
}

fn a_running_session_is_aborted_after_the_grace_and_told_why(driver: Driver) {
    let d = dirs();
    let store = Store::new(&d.dst, false).unwrap();
    let shutdown = Shutdown::new();
    let (addr, server) = serve(driver, store, Duration::from_millis(300), &shutdown);
    let client = MidTransfer::start(addr, "a.bin");
    wait_until(|| shutdown.running() == 1);
    shutdown.trigger();
    let said = client.last_words();
    assert!(said.contains("shutting down"), "{said}");
    let report = server.join().unwrap();
    assert_eq!(
        report,
        ServeReport {
            aborted: 1,
            ..ServeReport::default()
        }
    );
    // The partial file is kept for a resume.
    assert_eq!(
        std::fs::metadata(d.dst.join(".a.bin.echoxfer-part"))
            .unwrap()
            .len(),
        100
    );
}

#[test]
fn blocking_a_running_session_is_aborted_after_the_grace_and_told_why() {
    a_running_session_is_aborted_after_the_grace_and_told_why(Driver::Blocking);
}

#[test]
fn tokio_a_running_session_is_aborted_after_the_grace_and_told_why() {
    a_running_session_is_aborted_after_the_grace_and_told_why(Driver::Tokio);
}

fn a_second_trigger_aborts_without_waiting_for_the_grace(driver: Driver) {
    let d = dirs();
    let store = Store::new(&d.dst, false).unwrap();
    let shutdown = Shutdown::new();
    // A grace far longer than the bound: only the second trigger can end it in time.
    let grace = BOUND * 10;
    let (addr, server) = serve(driver, store, grace, &shutdown);
    let client = MidTransfer::start(addr, "b.bin");
    wait_until(|| shutdown.running() == 1);
    shutdown.trigger();
    shutdown.trigger();
    let said = client.last_words();
    assert!(said.contains("shutting down"), "{said}");
    let report = join_within(server, BOUND);
    assert_eq!(report.aborted, 1, "{report:?}");
}

#[test]
fn blocking_a_second_trigger_aborts_without_waiting_for_the_grace() {
    a_second_trigger_aborts_without_waiting_for_the_grace(Driver::Blocking);
}

#[test]
fn tokio_a_second_trigger_aborts_without_waiting_for_the_grace() {
    a_second_trigger_aborts_without_waiting_for_the_grace(Driver::Tokio);
}

fn every_session_is_counted_once_as_it_ended(driver: Driver) {
    let d = dirs();
    let store = Store::new(&d.dst, false).unwrap();
    let shutdown = Shutdown::new();
    let (addr, server) = serve(driver, store, Duration::from_millis(300), &shutdown);
    // One clean session (nothing to send), one that fails (garbage), one aborted.
    let mut clean = TcpStream::connect(addr).unwrap();
    let mut wire = Protocol::File.preamble().to_vec();
    wire.extend(Frame::Quit.encode_to_vec());
    clean.write_all(&wire).unwrap();
    let mut garbage = TcpStream::connect(addr).unwrap();
    garbage.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    for mut done in [clean, garbage] {
        done.set_read_timeout(Some(BOUND)).unwrap();
        let _ = done.read_to_end(&mut Vec::new());
    }
    let _aborted = MidTransfer::start(addr, "c.bin");
    wait_until(|| shutdown.running() == 1);
    shutdown.trigger();
    let report = server.join().unwrap();
    let expected = ServeReport {
        ok: 1,
        failed: 1,
        aborted: 1,
        ..ServeReport::default()
    };
    assert_eq!(report, expected);
}

#[test]
fn blocking_every_session_is_counted_once_as_it_ended() {
    every_session_is_counted_once_as_it_ended(Driver::Blocking);
}

#[test]
fn tokio_every_session_is_counted_once_as_it_ended() {
    every_session_is_counted_once_as_it_ended(Driver::Tokio);
}

/// Waits (bounded) until `cond` holds.
fn wait_until(cond: impl Fn() -> bool) {
    let until = Instant::now() + BOUND;
    while !cond() {
        assert!(
            Instant::now() < until,
            "condition not reached within {BOUND:?}"
        );
        thread::sleep(Duration::from_millis(5));
    }
}

/// Joins `handle`, failing if it takes longer than `bound`.
fn join_within<T: Send + 'static>(handle: thread::JoinHandle<T>, bound: Duration) -> T {
    let until = Instant::now() + bound;
    while !handle.is_finished() {
        assert!(
            Instant::now() < until,
            "the server did not stop within {bound:?}"
        );
        thread::sleep(Duration::from_millis(10));
    }
    handle.join().unwrap()
}
