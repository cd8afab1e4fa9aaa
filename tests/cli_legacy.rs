//! The `--legacy` flags end to end against the reference seed peers
//! (`tests/fixtures/seedpeer.py`): file send and receive both ways, the echo
//! server and client, and UDP both ways. Where we listen we bind port 0 and
//! read `listening on`; where the seed listens we pick a free port and wait
//! for its `listening`. Every wait is bounded; every child is guarded.
#![cfg(unix)]

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc::Receiver;
use std::thread;

mod common;
use common::process::{line_containing, seedpeer, spawn_until, Guard, BOUND};

const WARNING: &str = "legacy mode has no integrity check";

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_echoxfer"))
}

fn seed(role: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new("python3");
    cmd.arg(seedpeer())
        .arg(role)
        .args(args)
        .env("PYTHONIOENCODING", "utf-8")
        .env("PYTHONUNBUFFERED", "1");
    cmd
}

/// Starts a seed server on a free port; returns it, the port and its later
/// stdout lines (keep the receiver: dropping it closes the seed's stdout,
/// and its next `print` kills it).
fn seed_server(role: &str, udp: bool, args: &[&str]) -> (Guard, u16, Receiver<String>) {
    let port = if udp {
        UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .unwrap()
            .port()
    } else {
        TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port()
    };
    let mut cmd = seed(role, args);
    cmd.args(["--port", &port.to_string()]);
    let (guard, _, lines) = spawn_until(cmd, "listening");
    (guard, port, lines)
}

/// Starts one of our servers on port 0; returns it, its port and its later lines.
fn our_server(args: &[&str]) -> (Guard, u16, Receiver<String>) {
    let mut cmd = bin();
    cmd.args(args);
    let (guard, addr, lines) = spawn_until(cmd, "listening on");
    let port = addr.rsplit(':').next().unwrap().parse().unwrap();
    (guard, port, lines)
}

/// Runs `cmd` with `input` on stdin to its end (bounded); returns its
/// status, stdout and stderr.
fn run(mut cmd: Command, input: &[u8]) -> (ExitStatus, String, String) {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut guard = Guard {
        child: cmd.spawn().unwrap(),
    };
    let mut stdin = guard.child.stdin.take().unwrap();
    let input = input.to_vec();
    thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let drain = |mut r: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut s = Vec::new();
            let _ = r.read_to_end(&mut s);
            String::from_utf8_lossy(&s).into_owned()
        })
    };
    let out = drain(Box::new(guard.child.stdout.take().unwrap()));
    let err = drain(Box::new(guard.child.stderr.take().unwrap()));
    let status = guard.wait();
    (status, out.join().unwrap(), err.join().unwrap())
}

/// Text the seed protocols stumble on (their in-band words as lines, a
/// greeting in Chinese), plus some binary-ish lines; every line ends with
/// a newline and stays well under 1024 bytes.
fn file_content() -> Vec<u8> {
    let mut v = b"quit\nexit\nsuccess\n\xe8\xbf\x9e\xe6\x8e\xa5\nquit".to_vec();
    v.extend_from_slice(b"\n");
    let mut x = 0x9e37_79b9_u32;
    for i in 0..300 {
        let n = 1 + (i * 37) % 300;
        for _ in 0..n {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let b = (x % 251) as u8;
            v.push(if b == b'\n' { b'.' } else { b });
        }
        v.push(b'\n');
    }
    v.extend_from_slice(b"success\n");
    v
}

fn b3(path: &Path) -> String {
    blake3::hash(&fs::read(path).unwrap()).to_hex().to_string()
}

#[test]
fn send_legacy_delivers_to_the_seed_file_receiver() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, got) = (tmp.path().join("src.bin"), tmp.path().join("got"));
    fs::write(&src, file_content()).unwrap();
    let (mut peer, port, _lines) =
        seed_server("file-receive", false, &["--out", got.to_str().unwrap()]);
    let mut cmd = bin();
    cmd.args(["send", "--legacy", "--to", &format!("127.0.0.1:{port}")])
        .arg(&src);
    let (status, out, err) = run(cmd, b"");
    assert!(status.success(), "{out}\n{err}");
    assert_eq!(err.matches(WARNING).count(), 1, "{err}");
    assert!(out.contains(&format!("blake3 {}", b3(&src))), "{out}");
    assert!(
        peer.wait().success(),
        "the seed receiver exits after one sender"
    );
    assert_eq!(fs::read(&got).unwrap(), fs::read(&src).unwrap());
}

#[test]
fn send_legacy_takes_exactly_one_file() {
    let (status, _, err) = run(
        {
            let mut cmd = bin();
            cmd.args(["send", "--legacy", "a", "b"]);
            cmd
        },
        b"",
    );
    assert!(!status.success());
    assert!(err.contains("exactly one file"), "{err}");
}

#[test]
fn receive_legacy_takes_one_seed_sender_and_reports_size_and_hash() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, dir) = (tmp.path().join("src.txt"), tmp.path().join("in"));
    fs::create_dir(&dir).unwrap();
    fs::write(&src, file_content()).unwrap();
    let mut cmd = bin();
    cmd.args([
        "receive",
        "--legacy",
        "--name",
        "notes.txt",
        "--listen",
        "127.0.0.1:0",
    ])
    .arg("--dir")
    .arg(&dir)
    .stderr(Stdio::null());
    let (mut ours, addr, lines) = spawn_until(cmd, "listening on");
    let port = addr.rsplit(':').next().unwrap();
    let (status, out, err) = run(
        seed("file-send", &[src.to_str().unwrap(), "--port", port]),
        b"",
    );
    assert!(status.success(), "{out}\n{err}");
    assert!(ours.wait().success(), "one sender, then exit 0");
    let size = fs::metadata(&src).unwrap().len();
    let line = line_containing(&lines, "received ");
    assert!(line.contains(&format!(": {size} bytes in ")), "{line}");
    assert!(line.contains(&format!("blake3 {}", b3(&src))), "{line}");
    assert_eq!(
        fs::read(dir.join("notes.txt")).unwrap(),
        fs::read(&src).unwrap()
    );
    let names: Vec<_> = fs::read_dir(&dir).unwrap().collect();
    assert_eq!(names.len(), 1, "no temporary file left: {names:?}");
}

fn lines_in(lines: &[&str]) -> Vec<u8> {
    let mut v = Vec::new();
    for l in lines {
        v.extend_from_slice(l.as_bytes());
        v.push(b'\n');
    }
    v
}

const ECHO_LINES: &[&str] = &["hello", "quit", "success", "exit now", "连接成功", "x"];

fn seed_client_against_echo_serve_legacy(server_args: &[&str], greeting: &str) {
    let mut args = vec!["echo", "serve", "--legacy", "--addr", "127.0.0.1:0"];
    args.extend_from_slice(server_args);
    let (_server, port, server_lines) = our_server(&args);
    let mut input = ECHO_LINES.to_vec();
    input.push("exit");
    let (status, out, err) = run(
        seed("echo-client", &["--port", &port.to_string()]),
        &lines_in(&input),
    );
    assert!(status.success(), "{out}\n{err}");
    let mut want = vec![greeting];
    want.extend_from_slice(ECHO_LINES);
    assert_eq!(out.lines().collect::<Vec<_>>(), want);
    // The server prints each read, as the seed server does, `exit` included.
    for l in input {
        assert_eq!(line_containing(&server_lines, l), l);
    }
}

#[test]
fn echo_serve_legacy_single_serves_a_seed_client_with_the_blocking_greeting() {
    seed_client_against_echo_serve_legacy(
        &["--single", "--preset", "blocking"],
        echoxfer::legacy::GREETING_BLOCKING,
    );
}

#[test]
fn echo_serve_legacy_on_tokio_with_a_custom_greeting() {
    seed_client_against_echo_serve_legacy(
        &["--runtime", "tokio", "--greeting", "hi there"],
        "hi there",
    );
}

#[test]
fn echo_connect_legacy_talks_to_the_seed_echo_server() {
    let (_peer, port, _lines) = seed_server("echo-server", false, &[]);
    let mut input = ECHO_LINES.to_vec();
    input.extend(["exit", "never sent"]);
    let mut cmd = bin();
    cmd.args([
        "echo",
        "connect",
        "--legacy",
        "--addr",
        &format!("127.0.0.1:{port}"),
    ]);
    let (status, out, err) = run(cmd, &lines_in(&input));
    assert!(status.success(), "{out}\n{err}");
    assert_eq!(err.matches(WARNING).count(), 1, "{err}");
    let mut want = vec![echoxfer::legacy::GREETING_BLOCKING];
    want.extend_from_slice(ECHO_LINES);
    assert_eq!(out.lines().collect::<Vec<_>>(), want);
}

#[test]
fn udp_send_delivers_each_line_to_the_seed_udp_server() {
    let (_peer, port, lines) = seed_server("udp-server", true, &[]);
    let sent = ["one", "quit", "", "exit", "连接成功", &"u".repeat(1000)];
    let mut cmd = bin();
    cmd.args(["udp", "send", "--addr", &format!("127.0.0.1:{port}")]);
    let (status, out, err) = run(cmd, &lines_in(&sent));
    assert!(status.success(), "{out}\n{err}");
    for want in sent {
        let got = lines
            .recv_timeout(BOUND)
            .expect("the seed server printed every datagram");
        assert_eq!(got, want);
    }
}

#[test]
fn udp_send_refuses_a_line_the_seed_server_would_cut() {
    let mut cmd = bin();
    cmd.args(["udp", "send", "--addr", "127.0.0.1:9"]);
    let (status, _, err) = run(cmd, format!("ok\n{}\n", "v".repeat(1025)).as_bytes());
    assert!(!status.success());
    assert!(err.contains("line 2"), "{err}");
}

#[test]
fn udp_serve_legacy_prints_seed_datagrams_sanitized() {
    let (_server, port, lines) = our_server(&["udp", "serve", "--legacy", "--addr", "127.0.0.1:0"]);
    let input = b"plain\nclear \x1b[2J screen\nquit\n";
    let (status, out, err) = run(seed("udp-client", &["--port", &port.to_string()]), input);
    assert!(status.success(), "{out}\n{err}");
    let got: Vec<String> = (0..3)
        .map(|_| lines.recv_timeout(BOUND).expect("a printed datagram"))
        .collect();
    assert_eq!(got, ["plain", "clear \\u{1b}[2J screen", "quit"]);
    assert!(got.iter().all(|l| !l.contains('\x1b')));
}
