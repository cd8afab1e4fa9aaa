//! The `echoxfer` binary end to end: echo and UDP subcommands over
//! loopback, and a clean stop on SIGINT.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::process::{line_containing, spawn_until, Guard, BOUND};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_echoxfer"))
}

/// The code the native echo servers and clients of these tests share.
const CODE: &str = "7-echo-acorn-bell";

/// A server on port 0; a native echo server is given [`CODE`].
fn serve(args: &[&str]) -> (Guard, String, std::sync::mpsc::Receiver<String>) {
    let mut cmd = bin();
    cmd.args(args).args(["--addr", "127.0.0.1:0"]);
    if args.starts_with(&["echo", "serve"]) && !args.contains(&"--mode") {
        cmd.args(["--code", CODE]);
    }
    spawn_until(cmd, "listening on")
}

fn connect_with_stdin(addr: &str, stdin: &str) -> (bool, String) {
    let mut child = bin()
        .args(["echo", "connect", "--code", CODE, "--addr", addr])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let mut guard = Guard { child };
    let status = guard.wait();
    let mut out = String::new();
    guard
        .child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    (status.success(), out)
}

fn echo_connect_prints_every_reply(runtime: &str) {
    let (_server, addr, _) = serve(&[
        "echo",
        "serve",
        "--runtime",
        runtime,
        "--greeting",
        "hi there",
    ]);
    let (ok, out) = connect_with_stdin(&addr, "hello\nquit\nsuccess\nexit\nnever sent\n");
    assert!(ok, "{out}");
    assert_eq!(out, "hi there\nhello\nquit\nsuccess\n");
}

#[test]
fn blocking_echo_connect_prints_the_greeting_and_every_reply_until_exit() {
    echo_connect_prints_every_reply("blocking");
}

#[test]
fn tokio_echo_connect_prints_the_greeting_and_every_reply_until_exit() {
    echo_connect_prints_every_reply("tokio");
}

#[test]
fn a_greeting_with_bidi_and_zero_width_characters_is_printed_escaped() {
    let greeting = "hi\u{202e}ereht\u{200b}\u{2028}forged";
    let (_server, addr, _) = serve(&["echo", "serve", "--greeting", greeting]);
    let (ok, out) = connect_with_stdin(&addr, "exit\n");
    assert!(ok, "{out}");
    assert_eq!(out, "hi\\u{202e}ereht\\u{200b}\\u{2028}forged\n");
}

#[test]
fn rfc862_mode_echoes_raw_bytes_for_plain_tcp_clients() {
    let (_server, addr, _) = serve(&["echo", "serve", "--mode", "rfc862"]);
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(BOUND)).unwrap();
    let payload = b"exit\nraw \x00\xff bytes\n";
    s.write_all(payload).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut back = Vec::new();
    s.read_to_end(&mut back).unwrap();
    assert_eq!(back, payload);
}

#[test]
fn udp_ping_reports_zero_loss_against_udp_serve() {
    let (_server, addr, _) = serve(&["udp", "serve"]);
    let out = bin()
        .args([
            "udp",
            "ping",
            "--addr",
            &addr,
            "--count",
            "5",
            "--timeout",
            "5s",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("5 probes, 5 received, 0 lost"), "{text}");
}

#[test]
fn udp_ping_refuses_a_size_outside_12_to_65507_and_names_the_range() {
    for size in ["5", "11", "65508", "70000", "-1", "big"] {
        // A discard port: a refused size must fail before anything is sent.
        let out = bin()
            .args(["udp", "ping", "--addr", "127.0.0.1:9"])
            .arg(format!("--size={size}"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "--size {size}: {err}");
        assert!(err.contains("--size"), "--size {size}: {err}");
        assert!(err.contains("12 to 65507 bytes"), "--size {size}: {err}");
        assert!(out.stdout.is_empty(), "--size {size}: nothing may be sent");
    }
}

#[test]
fn udp_ping_sends_probes_of_exactly_the_smallest_and_largest_size() {
    let (_server, addr, _) = serve(&["udp", "serve"]);
    for size in ["12", "65507"] {
        let out = bin()
            .args(["udp", "ping", "--addr", &addr, "--count", "1"])
            .args(["--timeout", "5s", "--size", size])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "--size {size}: {text}");
        assert!(text.contains("1 probes, 1 received, 0 lost"), "{text}");
    }
}

/// A naive RFC 862 peer on `socket`: echoes every datagram from `server`
/// until it has been silent for a second (or ten seconds have passed).
/// Returns how many it echoed and over how long.
fn naive_echo_peer(socket: &UdpSocket, server: SocketAddr) -> (u64, Duration) {
    socket
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let start = Instant::now();
    let mut last = start;
    let mut echoed = 0;
    let mut buf = [0u8; 2048];
    while start.elapsed() < Duration::from_secs(10) {
        let Ok((n, from)) = socket.recv_from(&mut buf) else {
            break;
        };
        if from == server {
            last = Instant::now();
            echoed += 1;
            socket.send_to(&buf[..n], server).unwrap();
        }
    }
    (echoed, last - start)
}

#[test]
fn udp_serve_ends_a_loop_with_a_naive_echo_peer_and_summarises_refusals() {
    let mut cmd = bin();
    cmd.args(["udp", "serve", "--addr", "127.0.0.1:0"])
        .stderr(Stdio::piped());
    let (mut server, addr, lines) = spawn_until(cmd, "listening on");
    let server_addr: SocketAddr = addr.parse().unwrap();
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    // One datagram starts the loop: each side echoes the other's echo.
    peer.send_to(b"loop", server_addr).unwrap();
    let (echoed, elapsed) = naive_echo_peer(&peer, server_addr);
    // The defaults: a burst of 50, then 100 replies a second.
    let bound = 50 + (elapsed.as_millis() as u64).div_ceil(10);
    assert!(
        (50..=bound).contains(&echoed),
        "{echoed} replies in {elapsed:?}"
    );
    // A flood from one source, not echoed, is refused past its rate (the
    // kernel may drop some of it before the server reads it).
    for _ in 0..200 {
        peer.send_to(b"flood", server_addr).unwrap();
    }
    // Wait out the replies to the flood.
    peer.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let mut buf = [0u8; 16];
    while peer.recv_from(&mut buf).is_ok() {}
    let pid = server.child.id() as i32;
    // SAFETY: sending a signal to our own child process.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    assert!(server.wait().success());
    let stopped = line_containing(&lines, "stopped:");
    let limited: u64 = stopped
        .split(", ")
        .find_map(|part| part.strip_suffix(" over the reply rate"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{stopped}"));
    assert!(limited >= 1, "{stopped}");
    let mut err = String::new();
    let mut stderr = server.child.stderr.take().unwrap();
    stderr.read_to_string(&mut err).unwrap();
    let summaries = err.lines().filter(|l| l.contains("refused")).count();
    // Hundreds of refusals, summarised: one line per ten seconds at most.
    assert!((1..=2).contains(&summaries), "{err}");
}

#[test]
fn echo_serve_stops_cleanly_on_sigint() {
    let (mut server, addr, lines) = serve(&["echo", "serve"]);
    let (ok, _) = connect_with_stdin(&addr, "one\n");
    assert!(ok);
    let pid = server.child.id() as i32;
    // SAFETY: sending a signal to our own child process.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let status = server.wait();
    assert!(status.success(), "{status:?}");
    let stopped = lines.recv_timeout(BOUND).expect("a closing line");
    assert_eq!(
        stopped,
        "stopped: 1 sessions: 1 ended cleanly, 0 failed, 0 aborted by the shutdown"
    );
}

#[test]
fn a_bad_address_is_a_human_error_and_a_non_zero_exit() {
    let out = bin()
        .args(["echo", "connect", "--addr", "127.0.0.1:1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("error: "), "{err}");
}

/// Lines of a child's stderr, as they come.
fn stderr_lines(child: &mut std::process::Child) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let err = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    rx
}

#[test]
fn echo_serve_says_what_each_ctrl_c_does_and_exits_at_the_third() {
    let mut cmd = bin();
    cmd.args(["echo", "serve", "--insecure", "--addr", "127.0.0.1:0"])
        .stderr(Stdio::piped());
    let (mut server, addr, _lines) = spawn_until(cmd, "listening on");
    let err = stderr_lines(&mut server.child);
    // A client that sends and never reads: its session cannot end soon.
    let mut stuck = TcpStream::connect(addr.trim()).unwrap();
    stuck
        .set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    stuck
        .write_all(&echoxfer::codec::Protocol::Echo.preamble())
        .unwrap();
    let message: Vec<u8> = [0x11, 0, 0, 0xff, 0]
        .into_iter()
        .chain([b'x'; 0xff00])
        .collect();
    let until = Instant::now() + BOUND;
    // Until the server, whose replies go unread, stops taking more.
    while stuck.write_all(&message).is_ok() {
        assert!(Instant::now() < until, "the server never stopped reading");
    }
    let pid = server.child.id() as i32;
    let sigint = || {
        // SAFETY: sending a signal to our own child process.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    };
    sigint();
    line_containing(&err, "stopping: no new connections; 1 running sessions");
    sigint();
    line_containing(&err, "aborting 1 sessions now");
    sigint();
    line_containing(&err, "exiting at once");
    let status = server.wait();
    assert_eq!(status.code(), Some(130), "{status:?}");
}

#[test]
fn echo_and_udp_take_host_names_on_every_address_flag() {
    let port_of = |addr: &str| addr.rsplit_once(':').unwrap().1.to_string();
    let mut cmd = bin();
    cmd.args(["echo", "serve", "--addr", "localhost:0", "--code", CODE]);
    let (_server, addr, _) = spawn_until(cmd, "listening on");
    let (ok, out) = connect_with_stdin(&format!("localhost:{}", port_of(&addr)), "hello\nexit\n");
    assert!(ok, "{out}");
    assert!(out.ends_with("hello\n"), "{out}");

    let mut cmd = bin();
    cmd.args(["udp", "serve", "--addr", "localhost:0"]);
    let (_server, addr, _) = spawn_until(cmd, "listening on");
    let to = format!("localhost:{}", port_of(&addr));
    let out = bin()
        .args([
            "udp",
            "ping",
            "--addr",
            &to,
            "--count",
            "2",
            "--timeout",
            "5s",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("2 probes, 2 received, 0 lost"), "{text}");
}
