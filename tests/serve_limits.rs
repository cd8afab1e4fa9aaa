//! What a server's accept loop owes its clients under pressure, for both
//! drivers and the CLI: a burst larger than `std`'s backlog of 128 is
//! served in full, one source at its cap cannot keep another out, a server
//! out of file descriptors backs off and logs once, and an idle connection
//! costs no thread beyond its driver's own. Every listener binds port 0,
//! every wait is bounded, every server and child is stopped.
#![cfg(target_os = "linux")]

use std::io::{BufRead, BufReader, ErrorKind, Read};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use echoxfer::codec::{Frame, FrameDecoder, Protocol};
use echoxfer::driver::listen::{self, Limits, DEFAULT_BACKLOG};
use echoxfer::driver::{blocking, Ignore};
use echoxfer::echo::{Server, ServerRole};
use echoxfer::{EchoConfig, SessionLimits};
use socket2::{Domain, Socket, Type};

mod common;
use common::process::{spawn_until, Guard, BOUND};

#[derive(Clone, Copy, Debug)]
enum Driver {
    Blocking,
    Tokio,
}

fn make(now: Instant) -> (Server, Ignore) {
    let config = SessionLimits {
        idle_timeout: BOUND,
        ..SessionLimits::default()
    };
    (
        Server::new(ServerRole::new("hello", EchoConfig::default()), config, now),
        Ignore,
    )
}

/// An echo server on `listener`; stopping it returns its report.
struct Running {
    addr: SocketAddr,
    stop: Box<dyn FnOnce() -> blocking::ServeReport>,
}

fn start(driver: Driver, listener: std::net::TcpListener, limits: Limits) -> Running {
    let addr = listener.local_addr().unwrap();
    let grace = Duration::from_secs(5);
    match driver {
        Driver::Blocking => {
            let shutdown = blocking::Shutdown::new();
            let trigger = shutdown.clone();
            let handle = thread::spawn(move || {
                blocking::serve(listener, limits, grace, &shutdown, make).unwrap()
            });
            Running {
                addr,
                stop: Box::new(move || {
                    trigger.trigger();
                    handle.join().unwrap()
                }),
            }
        }
        Driver::Tokio => {
            let tx = blocking::Shutdown::new();
            let rx = tx.clone();
            let handle = thread::spawn(move || {
                let rt = tokio::runtime::Runtime::new().unwrap();
                rt.block_on(async {
                    listener.set_nonblocking(true).unwrap();
                    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                    echoxfer::driver::async_tokio::serve(listener, limits, grace, rx, make).await
                })
                .unwrap()
            });
            Running {
                addr,
                stop: Box::new(move || {
                    tx.trigger();
                    handle.join().unwrap()
                }),
            }
        }
    }
}

fn loopback_listener() -> std::net::TcpListener {
    listen::bind("127.0.0.1:0".parse().unwrap(), DEFAULT_BACKLOG).unwrap()
}

/// Connects to `addr` from the loopback address `source` (Linux routes all
/// of 127.0.0.0/8 to loopback, so each is a distinct source).
fn connect_from(source: [u8; 4], addr: SocketAddr) -> TcpStream {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::from((source, 0)).into()).unwrap();
    socket.connect_timeout(&addr.into(), BOUND).unwrap();
    socket.into()
}

/// Reads until the server's greeting arrives (bounded); panics on EOF.
fn greeting(stream: &mut TcpStream) -> Vec<u8> {
    stream.set_read_timeout(Some(BOUND)).unwrap();
    let mut decoder = FrameDecoder::new(Protocol::Echo, 1 << 20);
    let mut buf = BytesMut::new();
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(frame) = decoder.decode(&mut buf).unwrap() {
            match frame {
                Frame::Greeting(g) => return g.to_vec(),
                other => panic!("expected a greeting, got {other:?}"),
            }
        }
        let n = stream.read(&mut chunk).expect("greeted within the bound");
        assert!(n > 0, "the server closed instead of greeting");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Whether the server closed `stream` without sending a single byte.
fn closed_without_a_byte(stream: &mut TcpStream) -> bool {
    stream.set_read_timeout(Some(BOUND)).unwrap();
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => true,
        Err(e) if e.kind() == ErrorKind::ConnectionReset => true,
        Ok(_) => false,
        Err(e) => panic!("no answer within the bound: {e}"),
    }
}

// ------------------------------------------------------ accept bursts

/// More clients than `std`'s backlog of 128, all connected before the
/// server accepts any (a burst faster than the accept loop, made certain):
/// the kernel must queue every one, or the rest wait for SYN retries.
const BURST: usize = 300;

/// Connects `BURST` clients to a listener nobody accepts on yet; each
/// connect must complete at once, as only a queued handshake does.
fn burst(addr: SocketAddr) -> Vec<TcpStream> {
    // Far below the 1 s after which a dropped SYN is retried.
    let queued = Duration::from_millis(900);
    (0..BURST)
        .map(|i| {
            TcpStream::connect_timeout(&addr, queued).unwrap_or_else(|e| {
                panic!("connection {i} of {BURST} was not queued by the listener: {e}")
            })
        })
        .collect()
}

#[test]
fn blocking_a_burst_larger_than_std_s_backlog_of_128_is_served_in_full() {
    let listener = loopback_listener();
    let clients = burst(listener.local_addr().unwrap());
    let server = start(Driver::Blocking, listener, Limits::from(1024));
    for mut c in clients {
        assert_eq!(greeting(&mut c), b"hello");
    }
    let report = (server.stop)();
    assert_eq!(report.refused, 0, "{report:?}");
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_echoxfer"))
}

fn signal(child: &std::process::Child, sig: libc::c_int) {
    // SAFETY: kill(2) on our own child's pid, which the guard has not reaped.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, sig) };
    assert_eq!(rc, 0, "kill({sig})");
}

#[test]
fn cli_blocking_echo_serve_queues_a_burst_larger_than_128_while_it_is_stopped() {
    let mut cmd = bin();
    cmd.args(["echo", "serve", "--insecure", "--addr", "127.0.0.1:0"])
        .args(["--max-per-source", "1024"])
        .stderr(Stdio::null());
    let (guard, addr, _) = spawn_until(cmd, "listening on");
    let addr: SocketAddr = addr.parse().unwrap();
    // Stopped, the server accepts nothing: only its backlog holds the burst.
    signal(&guard.child, libc::SIGSTOP);
    // (A panic kills it stopped: the guard's SIGKILL needs no SIGCONT.)
    let clients = burst(addr);
    signal(&guard.child, libc::SIGCONT);
    for mut c in clients {
        greeting(&mut c);
    }
}

// ------------------------------------------------- per-source caps

const A: [u8; 4] = [127, 0, 0, 2];
const B: [u8; 4] = [127, 0, 0, 3];

fn a_source_at_its_cap_is_closed_at_once_and_another_is_served(driver: Driver) {
    let limits = Limits {
        max_connections: 16,
        max_per_source: 2,
        ..Limits::default()
    };
    let server = start(driver, loopback_listener(), limits);
    let mut held: Vec<_> = (0..2).map(|_| connect_from(A, server.addr)).collect();
    for c in &mut held {
        greeting(c);
    }
    let mut third = connect_from(A, server.addr);
    assert!(
        closed_without_a_byte(&mut third),
        "a third connection from a source at its cap of 2 was served"
    );
    let mut other = connect_from(B, server.addr);
    assert_eq!(greeting(&mut other), b"hello", "another source is served");
    drop((held, third, other));
    let report = (server.stop)();
    assert_eq!(report.refused, 1, "{report:?}");
}

#[test]
fn blocking_a_source_at_its_cap_is_closed_at_once_and_another_is_still_served() {
    a_source_at_its_cap_is_closed_at_once_and_another_is_served(Driver::Blocking);
}

#[test]
fn tokio_a_source_at_its_cap_is_closed_at_once_and_another_is_still_served() {
    a_source_at_its_cap_is_closed_at_once_and_another_is_served(Driver::Tokio);
}

/// The file preamble a receiver sends as soon as its session starts.
fn receiver_preamble(stream: &mut TcpStream) {
    stream.set_read_timeout(Some(BOUND)).unwrap();
    let mut got = [0u8; 6];
    stream
        .read_exact(&mut got)
        .expect("a session within the bound");
    assert_eq!(got, Protocol::File.preamble());
}

fn receive(runtime: &str, extra: &[&str]) -> (Guard, SocketAddr, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = bin();
    cmd.args([
        "receive",
        "--insecure",
        "--listen",
        "127.0.0.1:0",
        "--runtime",
        runtime,
    ])
    .arg("--dir")
    .arg(dir.path())
    .args(extra)
    .stderr(Stdio::null());
    let (guard, addr, _) = spawn_until(cmd, "listening on");
    (guard, addr.parse().unwrap(), dir)
}

fn receive_caps_connections_per_source(runtime: &str) {
    let (_guard, addr, _dir) = receive(runtime, &["--max-per-source", "1"]);
    let mut held = connect_from(A, addr);
    receiver_preamble(&mut held);
    let mut second = connect_from(A, addr);
    assert!(closed_without_a_byte(&mut second));
    receiver_preamble(&mut connect_from(B, addr));
}

#[test]
fn cli_blocking_receive_closes_a_second_connection_from_a_source_capped_at_one() {
    receive_caps_connections_per_source("blocking");
}

#[test]
fn cli_tokio_receive_closes_a_second_connection_from_a_source_capped_at_one() {
    receive_caps_connections_per_source("tokio");
}

#[test]
fn cli_receive_with_max_connections_one_starts_the_next_session_when_the_first_ends() {
    let (_guard, addr, _dir) = receive("blocking", &["--max-connections", "1"]);
    let mut first = connect_from(A, addr);
    receiver_preamble(&mut first);
    let mut second = connect_from(B, addr);
    second
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let early = second.read(&mut [0u8; 1]);
    assert!(
        matches!(&early, Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)),
        "a second session started while the cap of one was taken: {early:?}"
    );
    drop(first);
    receiver_preamble(&mut second);
}

#[test]
fn cli_receive_refuses_a_zero_connection_cap() {
    for flag in ["--max-connections", "--max-per-source"] {
        let out = bin()
            .args(["receive", "--listen", "127.0.0.1:0", flag, "0"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(!out.status.success(), "{flag} 0 was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("must not be zero"), "{flag}: {err}");
    }
}

// --------------------------------------------- out of file descriptors

/// Lines of a child's stderr, as they come.
fn lines_of(stderr: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits (bounded) for a line containing `needle`; returns the lines before it.
fn until_line(lines: &mpsc::Receiver<String>, needle: &str) -> Vec<String> {
    let until = Instant::now() + BOUND;
    let mut before = Vec::new();
    loop {
        let left = until.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no {needle:?} within {BOUND:?}; saw {before:?}"));
        if line.contains(needle) {
            return before;
        }
        before.push(line);
    }
}

/// `echoxfer echo serve` with at most `fds` open file descriptors.
fn serve_with_fd_limit(runtime: &str, fds: u64) -> (Guard, SocketAddr, mpsc::Receiver<String>) {
    let mut cmd = bin();
    cmd.args([
        "echo",
        "serve",
        "--insecure",
        "--addr",
        "127.0.0.1:0",
        "--runtime",
        runtime,
    ])
    .env("RUST_LOG", "warn")
    .stderr(Stdio::piped());
    let limit = libc::rlimit {
        rlim_cur: fds,
        rlim_max: fds,
    };
    // SAFETY: setrlimit is async-signal-safe; the closure touches nothing else.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.stdout(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let stderr = lines_of(child.stderr.take().unwrap());
    let stdout = lines_of(child.stdout.take().unwrap());
    let guard = Guard { child };
    let addr = common::process::line_containing(&stdout, "listening on");
    let addr = addr
        .trim_start_matches("listening on ")
        .trim()
        .parse()
        .unwrap();
    (guard, addr, stderr)
}

fn out_of_descriptors_backs_off_logs_once_and_recovers(runtime: &str) {
    let (_guard, addr, stderr) = serve_with_fd_limit(runtime, 24);
    // More connections than descriptors: the server accepts until it has none.
    let held: Vec<_> = (0..32).map(|_| connect_from(A, addr)).collect();
    until_line(&stderr, "accept failed");
    // Accepts keep failing while the clients hold their sessions. The old
    // loop logged each failure, every 10 ms: a hundred lines a second.
    thread::sleep(Duration::from_millis(1500));
    // A new thread's first allocation may briefly hold a descriptor (glibc
    // reads the CPU count for its arenas), so one accept in between can
    // succeed and end the episode: a new one may start. A few lines, not
    // one per failure.
    let seen: Vec<_> = stderr.try_iter().collect();
    let repeated = seen.iter().filter(|l| l.contains("accept failed")).count();
    assert!(repeated <= 2, "logged per failure: {seen:#?}");
    drop(held);
    let mut late = connect_from(B, addr);
    greeting(&mut late);
    until_line(&stderr, "accepting again after");
}

#[test]
fn blocking_a_server_out_of_descriptors_backs_off_logs_once_and_serves_again() {
    out_of_descriptors_backs_off_logs_once_and_recovers("blocking");
}

#[test]
fn tokio_a_server_out_of_descriptors_backs_off_logs_once_and_serves_again() {
    out_of_descriptors_backs_off_logs_once_and_recovers("tokio");
}

// ------------------------------------------- threads per idle connection

fn threads_of(child: &std::process::Child) -> usize {
    std::fs::read_dir(format!("/proc/{}/task", child.id()))
        .unwrap()
        .count()
}

/// Threads `echoxfer receive` adds for `idle` connections that never offer
/// a file (progress shown as plain lines: stderr is not a terminal).
fn threads_added_by_idle_connections(runtime: &str, idle: usize) -> usize {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = bin();
    cmd.args([
        "receive",
        "--insecure",
        "--listen",
        "127.0.0.1:0",
        "--runtime",
        runtime,
    ])
    .arg("--dir")
    .arg(dir.path())
    .stderr(Stdio::piped());
    let (guard, addr, _) = spawn_until(cmd, "listening on");
    let addr: SocketAddr = addr.parse().unwrap();
    // One session first, so whatever a first session starts once is counted before.
    let mut first = TcpStream::connect(addr).unwrap();
    receiver_preamble(&mut first);
    let before = threads_of(&guard.child);
    let mut conns: Vec<_> = (0..idle)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    for c in &mut conns {
        receiver_preamble(c);
    }
    threads_of(&guard.child).saturating_sub(before)
}

const IDLE: usize = 24;

#[test]
fn tokio_receive_starts_no_thread_for_idle_connections() {
    let added = threads_added_by_idle_connections("tokio", IDLE);
    assert!(added <= 2, "{added} threads for {IDLE} idle connections");
}

#[test]
fn blocking_receive_starts_only_the_connection_thread_for_idle_connections() {
    let added = threads_added_by_idle_connections("blocking", IDLE);
    assert!(
        added <= IDLE + 2,
        "{added} threads for {IDLE} idle connections"
    );
}
