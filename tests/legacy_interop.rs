//! Interop of the legacy machines with the reference seed peers
//! (`tests/fixtures/seedpeer.py`) over loopback, with both drivers.
//!
//! Rules: we bind port 0 where we listen and hand the peer the real
//! address; where the peer listens we pick a free port and wait for it to
//! print `listening`. Every wait is bounded; every child is killed by its
//! guard. A missing python3 or seed peer FAILS the test (CI has both).

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

mod common;
use common::files::entries;
use common::process::seedpeer;

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use echoxfer::driver::blocking::{self, ServeReport};
use echoxfer::driver::{async_tokio as tdriver, Ignore};
use echoxfer::files::legacy::{ReceiveToDir, SendFromFile, DEFAULT_NAME};
use echoxfer::legacy::{
    LegacyClientEvent, LegacyEchoClient, LegacyEchoServer, LegacyFileReceiver, LegacyFileSender,
    LegacyUdpSender, LegacyUdpSink, SinkEvent, GREETING_BLOCKING, GREETING_THREADED,
};
use echoxfer::{UdpConfig, UnframedConfig};

/// Every wait in this file is bounded by this.
const BOUND: Duration = Duration::from_secs(30);

/// A running seed peer; killed and reaped on drop. Its stdout arrives line
/// by line on a channel.
struct Peer {
    child: Child,
    lines: Receiver<String>,
    role: String,
}

impl Peer {
    fn spawn(role: &str, args: &[&str], stdin: Option<Vec<u8>>) -> Peer {
        let mut cmd = Command::new("python3");
        cmd.arg(seedpeer())
            .arg(role)
            .args(args)
            .env("PYTHONIOENCODING", "utf-8")
            .env("PYTHONUNBUFFERED", "1")
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("spawn python3 seedpeer.py");
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().expect("piped stdin");
            thread::spawn(move || {
                let _ = pipe.write_all(&input);
            });
        }
        let out = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            let mut r = BufReader::new(out);
            let mut buf = Vec::new();
            while let Ok(n) = r.read_until(b'\n', &mut buf) {
                if n == 0 {
                    break;
                }
                let line = String::from_utf8_lossy(&buf)
                    .trim_end_matches('\n')
                    .to_string();
                if tx.send(line).is_err() {
                    break;
                }
                buf.clear();
            }
        });
        Peer {
            child,
            lines,
            role: role.to_string(),
        }
    }

    fn line(&self) -> String {
        self.lines
            .recv_timeout(BOUND)
            .unwrap_or_else(|e| panic!("seed {}: no output line within {BOUND:?}: {e}", self.role))
    }

    fn wait_listening(&self) {
        let until = Instant::now() + BOUND;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l == "listening" => return,
                Ok(_) => {}
                Err(e) => panic!("seed {} never printed `listening`: {e}", self.role),
            }
        }
    }

    fn wait_exit(&mut self) -> ExitStatus {
        let until = Instant::now() + BOUND;
        loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                return s;
            }
            assert!(
                Instant::now() < until,
                "seed {} did not exit within {BOUND:?}",
                self.role
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Every remaining stdout line, after the process exited.
    fn rest(&self) -> Vec<String> {
        let mut v = Vec::new();
        while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(5)) {
            v.push(l);
        }
        v
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

fn stdin_lines(lines: &[String]) -> Vec<u8> {
    let mut v = Vec::new();
    for l in lines {
        v.extend_from_slice(l.as_bytes());
        v.push(b'\n');
    }
    v
}

fn text_lines(seed: u64, extra: usize) -> Vec<String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut lines: Vec<String> = ["hello", "quit", "success", "exit now", "连接成功", "x"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for _ in 0..extra {
        let n = rng.random_range(1..200);
        lines.push((0..n).map(|_| rng.random_range('a'..='z')).collect());
    }
    lines
}

// ---------------------------------------------------------------- echo

/// Serves legacy echo sessions (blocking greeting) on a free port with the
/// blocking driver, in a thread, until `shutdown` is triggered; returns the
/// port and the thread.
fn serve_echo_blocking(
    shutdown: &blocking::Shutdown,
) -> (String, thread::JoinHandle<std::io::Result<ServeReport>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let stop = shutdown.clone();
    let server = thread::spawn(move || {
        blocking::serve(listener, 64, Duration::from_secs(5), &stop, |now| {
            (
                LegacyEchoServer::new(GREETING_BLOCKING, UnframedConfig::default(), now),
                Ignore,
            )
        })
    });
    (port, server)
}

/// A seed echo client to `port` that types `lines`, then `exit`.
fn echo_client(port: &str, lines: &[String]) -> Peer {
    let mut input = lines.to_vec();
    input.push("exit".into());
    Peer::spawn("echo-client", &["--port", port], Some(stdin_lines(&input)))
}

/// Asserts that `client` exits successfully after printing `greeting`
/// then every line of `lines` echoed back; `who` names it in failures.
fn assert_echoed(client: &mut Peer, greeting: &str, lines: &[String], who: &str) {
    assert!(client.wait_exit().success(), "{who}");
    let mut out = vec![client.line()];
    out.extend(client.rest());
    let mut want = vec![greeting.to_string()];
    want.extend(lines.iter().cloned());
    assert_eq!(out, want, "{who}: every reply");
}

#[test]
fn legacy_echo_server_blocking_serves_seed_echo_client() {
    let shutdown = blocking::Shutdown::new();
    let (port, server) = serve_echo_blocking(&shutdown);
    let mut lines = text_lines(1, 5);
    lines.push("y".repeat(1000));
    let mut client = echo_client(&port, &lines);
    assert_echoed(&mut client, GREETING_BLOCKING, &lines, "the client");
    shutdown.trigger();
    let report = server.join().unwrap().unwrap();
    assert_eq!((report.ok, report.failed), (1, 0));
}

#[test]
fn legacy_echo_server_tokio_serves_seed_echo_client() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let stop = echoxfer::driver::Shutdown::new();
    let server = rt.spawn(tdriver::serve(
        listener,
        64,
        Duration::from_secs(5),
        stop.clone(),
        |now| {
            (
                LegacyEchoServer::new(GREETING_THREADED, UnframedConfig::default(), now),
                Ignore,
            )
        },
    ));
    let lines = text_lines(2, 5);
    let mut client = echo_client(&port, &lines);
    assert_echoed(&mut client, GREETING_THREADED, &lines, "the client");
    stop.trigger();
    let report = rt.block_on(server).unwrap().unwrap();
    assert_eq!((report.ok, report.failed), (1, 0));
}

#[test]
fn legacy_echo_server_blocking_serves_20_seed_clients_at_once() {
    let shutdown = blocking::Shutdown::new();
    let (port, server) = serve_echo_blocking(&shutdown);
    let mut clients: Vec<(Peer, Vec<String>)> = (0..20)
        .map(|i| {
            let mut lines = text_lines(100 + i, 10);
            lines.push(format!("client {i} done"));
            (echo_client(&port, &lines), lines)
        })
        .collect();
    for (i, (client, lines)) in clients.iter_mut().enumerate() {
        assert_echoed(client, GREETING_BLOCKING, lines, &format!("client {i}"));
    }
    shutdown.trigger();
    let report = server.join().unwrap().unwrap();
    assert_eq!((report.ok, report.failed), (20, 0));
}

/// Lines for our client: seed-troubling words and a line over 1024 bytes
/// that ends in `exit` (a naive client would let the server read a lone
/// `exit` and stop).
fn client_lines() -> Vec<Bytes> {
    let mut v: Vec<Bytes> = text_lines(3, 4).into_iter().map(Bytes::from).collect();
    let mut long = "z".repeat(1024);
    long.push_str("exit");
    v.push(Bytes::from(long));
    v.push(Bytes::from("w".repeat(3000)));
    v
}

type Collected = Arc<Mutex<Vec<LegacyClientEvent>>>;

fn client_with_lines(lines: &[Bytes], now: Instant) -> LegacyEchoClient {
    let mut c = LegacyEchoClient::new(UnframedConfig::default(), now);
    for l in lines {
        c.send_line(l.clone()).unwrap();
    }
    c.send_line(&b"exit"[..]).unwrap();
    c
}

fn collector() -> (
    Collected,
    impl FnMut(&mut LegacyEchoClient, Instant, LegacyClientEvent) -> std::io::Result<()>,
) {
    let events: Collected = Arc::default();
    let sink = events.clone();
    (events, move |_: &mut LegacyEchoClient, _: Instant, e| {
        sink.lock().unwrap().push(e);
        Ok(())
    })
}

fn check_client_events(events: &Collected, greeting: &str, lines: &[Bytes]) {
    let mut want = vec![LegacyClientEvent::Greeting(Bytes::from(
        greeting.to_string(),
    ))];
    want.extend(lines.iter().cloned().map(LegacyClientEvent::Reply));
    assert_eq!(*events.lock().unwrap(), want);
}

#[test]
fn legacy_echo_client_against_both_seed_servers_both_drivers() {
    for (role, greeting) in [
        ("echo-server", GREETING_BLOCKING),
        ("echo-server-threaded", GREETING_THREADED),
    ] {
        let port = free_port();
        let server = Peer::spawn(role, &["--port", &port.to_string()], None);
        server.wait_listening();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let lines = client_lines();

        // Blocking driver.
        let mut stream = TcpStream::connect_timeout(&addr, BOUND).unwrap();
        let mut client = client_with_lines(&lines, Instant::now());
        let (events, mut app) = collector();
        blocking::run_stream(&mut client, &mut stream, &mut app)
            .unwrap_or_else(|e| panic!("{role}, blocking: {e}"));
        check_client_events(&events, greeting, &lines);

        // Tokio driver.
        let rt = tokio::runtime::Runtime::new().unwrap();
        let (events, mut app) = collector();
        rt.block_on(async {
            let mut stream = tokio::time::timeout(BOUND, tokio::net::TcpStream::connect(addr))
                .await
                .unwrap()
                .unwrap();
            let mut client = client_with_lines(&lines, Instant::now());
            tokio::time::timeout(
                BOUND,
                tdriver::run_stream(&mut client, &mut stream, &mut app),
            )
            .await
            .expect("bounded")
            .unwrap_or_else(|e| panic!("{role}, tokio: {e}"));
        });
        check_client_events(&events, greeting, &lines);
        drop(server);
    }
}

// ---------------------------------------------------------------- UDP

fn udp_lines() -> Vec<String> {
    let mut v = text_lines(4, 6);
    v.push(String::new());
    v.push("u".repeat(1000));
    v
}

/// A sink app that forwards every datagram's payload to `tx`.
fn forward_payloads(
    tx: mpsc::Sender<Bytes>,
) -> impl FnMut(&mut LegacyUdpSink, Instant, SinkEvent) -> std::io::Result<()> {
    move |_, _, SinkEvent::Datagram { payload, .. }| {
        let _ = tx.send(payload);
        Ok(())
    }
}

/// Runs the seed UDP client to `port` with `lines`; asserts that each line
/// arrives on `rx` as one datagram, in order, and that the client succeeds.
fn assert_udp_client_delivers(port: &str, lines: &[String], rx: &Receiver<Bytes>) {
    let want: Vec<Bytes> = lines.iter().map(|l| Bytes::from(l.clone())).collect();
    let mut client = Peer::spawn("udp-client", &["--port", port], Some(stdin_lines(lines)));
    let got: Vec<Bytes> = (0..want.len())
        .map(|_| rx.recv_timeout(BOUND).expect("datagram within bound"))
        .collect();
    assert_eq!(got, want);
    assert!(client.wait_exit().success());
}

#[test]
fn legacy_udp_sink_receives_seed_udp_client_both_drivers() {
    let lines = udp_lines();

    // Blocking driver.
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = socket.local_addr().unwrap().port().to_string();
    let (tx, rx) = mpsc::channel();
    let shutdown = blocking::Shutdown::new();
    let stop = shutdown.clone();
    let sink = thread::spawn(move || {
        let mut m = LegacyUdpSink::new();
        let mut app = forward_payloads(tx);
        blocking::run_datagram(&mut m, &socket, &mut app, &stop)
    });
    assert_udp_client_delivers(&port, &lines, &rx);
    shutdown.trigger();
    sink.join().unwrap().unwrap();

    // Tokio driver.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let socket = rt
        .block_on(tokio::net::UdpSocket::bind("127.0.0.1:0"))
        .unwrap();
    let port = socket.local_addr().unwrap().port().to_string();
    let (tx, rx) = mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let sink = rt.spawn(async move {
        let mut m = LegacyUdpSink::new();
        let mut app = forward_payloads(tx);
        tdriver::run_datagram(&mut m, &socket, &mut app, async move {
            let _ = stop_rx.await;
        })
        .await
    });
    assert_udp_client_delivers(&port, &lines, &rx);
    let _ = stop_tx.send(());
    rt.block_on(sink).unwrap().unwrap();
}

fn udp_sender(lines: &[String], target: SocketAddr) -> LegacyUdpSender {
    let mut m = LegacyUdpSender::new(UdpConfig::default(), target);
    for l in lines {
        m.send_line(Bytes::from(l.clone())).unwrap();
    }
    m.close();
    m
}

#[test]
fn legacy_udp_sender_reaches_seed_udp_server_both_drivers() {
    let lines = udp_lines();
    for driver in ["blocking", "tokio"] {
        let port = free_udp_port();
        let server = Peer::spawn("udp-server", &["--port", &port.to_string()], None);
        server.wait_listening();
        let target: SocketAddr = ([127, 0, 0, 1], port).into();
        if driver == "blocking" {
            let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
            let mut m = udp_sender(&lines, target);
            blocking::run_datagram(&mut m, &socket, &mut Ignore, &blocking::Shutdown::new())
                .unwrap();
        } else {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async {
                let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
                let mut m = udp_sender(&lines, target);
                tdriver::run_datagram(&mut m, &socket, &mut Ignore, std::future::pending())
                    .await
                    .unwrap();
            });
        }
        let printed: Vec<String> = (0..lines.len()).map(|_| server.line()).collect();
        assert_eq!(
            printed, lines,
            "{driver}: the seed server printed every line"
        );
    }
}

// ---------------------------------------------------------------- files

/// The contents every file test sends: name and bytes.
fn contents(with_last_quit: bool) -> Vec<(&'static str, Vec<u8>)> {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let binary: Vec<u8> = (0..100_000).map(|_| rng.random()).collect();
    let mut text = String::new();
    for l in text_lines(5, 40) {
        text.push_str(&l);
        text.push('\n');
    }
    text.push_str("quit\nexit\nsuccess\nquite quit\n");
    let mut long = "L".repeat(2500);
    long.push('\n');
    long.push_str(&"M".repeat(1030));
    long.push_str("\nend\n");
    let mut v = vec![
        ("binary", binary),
        ("text", text.clone().into_bytes()),
        ("long line", long.into_bytes()),
        ("empty", Vec::new()),
        ("no final newline", b"alpha\nbeta".to_vec()),
    ];
    if with_last_quit {
        let mut t = text.into_bytes();
        t.extend_from_slice(b"quit");
        v.push(("last line quit", t));
        v.push(("only quit", b"quit".to_vec()));
    }
    v
}

#[test]
fn legacy_file_sender_to_seed_file_receive_both_drivers() {
    let dir = tempfile::tempdir().unwrap();
    for (name, content) in contents(true) {
        for driver in ["blocking", "tokio"] {
            let src = dir.path().join("src");
            std::fs::write(&src, &content).unwrap();
            let out = dir.path().join(format!("out-{driver}"));
            let _ = std::fs::remove_file(&out);
            let port = free_port();
            let mut peer = Peer::spawn(
                "file-receive",
                &["--port", &port.to_string(), "--out", out.to_str().unwrap()],
                None,
            );
            peer.wait_listening();
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            let (mut app, size) = SendFromFile::open(&src).unwrap();
            let mut m = LegacyFileSender::new(size, UnframedConfig::default(), Instant::now());
            if driver == "blocking" {
                let mut stream = TcpStream::connect_timeout(&addr, BOUND).unwrap();
                blocking::run_stream(&mut m, &mut stream, &mut app)
                    .unwrap_or_else(|e| panic!("{name}, {driver}: {e}"));
            } else {
                let rt = tokio::runtime::Runtime::new().unwrap();
                rt.block_on(async {
                    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
                    tokio::time::timeout(BOUND, tdriver::run_stream(&mut m, &mut stream, &mut app))
                        .await
                        .expect("bounded")
                        .unwrap_or_else(|e| panic!("{name}, {driver}: {e}"));
                });
            }
            assert!(peer.wait_exit().success());
            assert_eq!(app.acked(), size, "{name}, {driver}: all acked");
            let got = std::fs::read(&out).unwrap();
            assert!(
                got == content,
                "{name}, {driver}: file differs ({} vs {} bytes)",
                got.len(),
                content.len()
            );
        }
    }
}

fn receive_one_blocking(listener: TcpListener, dir: &Path) -> Result<(), String> {
    let mut app = ReceiveToDir::create(dir, DEFAULT_NAME, false).map_err(|e| e.to_string())?;
    let (mut stream, _) = listener.accept().map_err(|e| e.to_string())?;
    let mut m = LegacyFileReceiver::new(UnframedConfig::default(), Instant::now());
    blocking::run_stream(&mut m, &mut stream, &mut app).map_err(|e| e.to_string())?;
    assert!(app.completed().is_some());
    Ok(())
}

async fn receive_one_tokio(listener: tokio::net::TcpListener, dir: &Path) -> Result<(), String> {
    let mut app = ReceiveToDir::create(dir, DEFAULT_NAME, false).map_err(|e| e.to_string())?;
    let (mut stream, _) = listener.accept().await.map_err(|e| e.to_string())?;
    let mut m = LegacyFileReceiver::new(UnframedConfig::default(), Instant::now());
    tdriver::run_stream(&mut m, &mut stream, &mut app)
        .await
        .map_err(|e| e.to_string())?;
    assert!(app.completed().is_some());
    Ok(())
}

#[test]
fn seed_file_send_to_legacy_receiver_both_drivers() {
    let src_dir = tempfile::tempdir().unwrap();
    for (name, content) in contents(false) {
        let src = src_dir.path().join("src");
        std::fs::write(&src, &content).unwrap();
        for driver in ["blocking", "tokio"] {
            let dir = tempfile::tempdir().unwrap();
            let result = if driver == "blocking" {
                let listener = TcpListener::bind("127.0.0.1:0").unwrap();
                let port = listener.local_addr().unwrap().port().to_string();
                let target = dir.path().to_path_buf();
                let rx = thread::spawn(move || receive_one_blocking(listener, &target));
                let mut peer =
                    Peer::spawn("file-send", &[src.to_str().unwrap(), "--port", &port], None);
                assert!(peer.wait_exit().success());
                rx.join().unwrap()
            } else {
                let rt = tokio::runtime::Runtime::new().unwrap();
                let listener = rt
                    .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
                    .unwrap();
                let port = listener.local_addr().unwrap().port().to_string();
                let target = dir.path().to_path_buf();
                let rx = rt.spawn(async move { receive_one_tokio(listener, &target).await });
                let mut peer =
                    Peer::spawn("file-send", &[src.to_str().unwrap(), "--port", &port], None);
                assert!(peer.wait_exit().success());
                rt.block_on(async { tokio::time::timeout(BOUND, rx).await })
                    .expect("bounded")
                    .unwrap()
            };
            result.unwrap_or_else(|e| panic!("{name}, {driver}: {e}"));
            assert_eq!(entries(dir.path()), vec![DEFAULT_NAME.to_string()]);
            let got = std::fs::read(dir.path().join(DEFAULT_NAME)).unwrap();
            assert!(
                got == content,
                "{name}, {driver}: file differs ({} vs {} bytes)",
                got.len(),
                content.len()
            );
        }
    }
}

#[test]
fn legacy_receiver_leaves_no_file_when_the_sender_never_says_quit() {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let target = dir.path().to_path_buf();
    let rx = thread::spawn(move || receive_one_blocking(listener, &target));
    let mut s = TcpStream::connect_timeout(&addr, BOUND).unwrap();
    s.write_all(b"half a file\n").unwrap();
    let mut ack = [0u8; 7];
    s.set_read_timeout(Some(BOUND)).unwrap();
    std::io::Read::read_exact(&mut s, &mut ack).unwrap();
    assert_eq!(&ack, b"success");
    drop(s);
    let err = rx
        .join()
        .unwrap()
        .expect_err("incomplete transfer is an error");
    assert!(err.contains("closed"), "{err}");
    assert!(entries(dir.path()).is_empty(), "{:?}", entries(dir.path()));
}
