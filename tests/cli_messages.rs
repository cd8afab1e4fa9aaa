//! What the command line says, end to end (issue 19, "messages and output
//! a person can act on"): `--json` keeps stdout for JSON alone, `--quiet`
//! still says why something failed, a plain progress meter is no line per
//! file; a killed peer is a peer that went away, not tampering; no summary
//! from a session that never reached the receiver, the code only once the
//! listener is bound, `--dir` checked (and its last component created) at
//! start, an IPv6 address without brackets explained; `echo connect`
//! tells the server about a Ctrl-C and notices at once that the server
//! went away, a greeting naming what ends a session, a client at a file
//! receiver told what runs there; one flag name per concept.
//! Servers bind port 0; every wait is bounded; every child is killed by
//! its guard; loopback only.
#![cfg(unix)]

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

mod common;
use common::files::{content, dirs, sources, write_src, Dirs};
use common::process::{line_containing, spawn_until, Guard, BOUND};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_echoxfer"))
}

const CODE: &str = "5-acorn-bell-echo";

fn drain(mut r: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut s = Vec::new();
        let _ = r.read_to_end(&mut s);
        String::from_utf8_lossy(&s).into_owned()
    })
}

/// Runs `cmd` to its end (bounded), stdin empty; its status, stdout, stderr.
fn run(mut cmd: Command) -> (ExitStatus, String, String) {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut guard = Guard {
        child: cmd.spawn().unwrap(),
    };
    let out = drain(guard.child.stdout.take().unwrap());
    let err = drain(guard.child.stderr.take().unwrap());
    let status = guard.wait();
    (status, out.join().unwrap(), err.join().unwrap())
}

/// The lines of `r`, as they come.
fn lines_of(r: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// A child with stdout and stderr read line by line.
struct Spawned {
    guard: Guard,
    out: Receiver<String>,
    err: Receiver<String>,
}

fn spawn(mut cmd: Command) -> Spawned {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut guard = Guard {
        child: cmd.spawn().unwrap(),
    };
    let out = lines_of(guard.child.stdout.take().unwrap());
    let err = lines_of(guard.child.stderr.take().unwrap());
    Spawned { guard, out, err }
}

/// Every line left in `rx` once its writer is gone (bounded).
fn rest(rx: &Receiver<String>) -> Vec<String> {
    let until = Instant::now() + BOUND;
    let mut lines = Vec::new();
    loop {
        match rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
            Ok(line) => lines.push(line),
            Err(mpsc::RecvTimeoutError::Disconnected) => return lines,
            Err(mpsc::RecvTimeoutError::Timeout) => panic!("output did not end within {BOUND:?}"),
        }
    }
}

/// `receive --once` on port 0 into `d.dst` with [`CODE`]; its address and later stdout lines.
fn receiver(d: &Dirs, extra: &[&str]) -> (Guard, String, Receiver<String>) {
    let mut cmd = bin();
    cmd.args([
        "receive",
        "--once",
        "--listen",
        "127.0.0.1:0",
        "--code",
        CODE,
        "--dir",
    ])
    .arg(&d.dst)
    .args(extra)
    .stderr(Stdio::null());
    spawn_until(cmd, "listening on")
}

fn send(to: &str, paths: &[PathBuf], extra: &[&str]) -> (ExitStatus, String, String) {
    let mut cmd = bin();
    cmd.args(["send", "--to", to]).args(extra).args(paths);
    if !extra.contains(&"--code") {
        cmd.args(["--code", CODE]);
    }
    run(cmd)
}

fn assert_all_json(what: &str, out: &str) {
    assert!(!out.trim().is_empty(), "{what}: no output");
    for line in out.lines() {
        assert!(
            line.starts_with('{') && line.ends_with('}'),
            "{what} printed a line that is not JSON on stdout: {line:?}\n{out}"
        );
    }
    let last = out.lines().last().unwrap();
    assert!(last.starts_with("{\"total\":"), "{what}: {last}");
}

// ---- 1. --json, --quiet, plain progress ----

/// `receive --json` prints its JSON alone on stdout: `listening on`, the
/// code and what the other side runs go to stderr (the code once the
/// listener is bound, after `listening on`).
#[test]
fn receive_json_keeps_stdout_for_json_and_says_the_rest_on_stderr() {
    let d = dirs();
    let paths = sources(&d, &[10, 70_000]);
    let mut cmd = bin();
    cmd.args([
        "receive",
        "--once",
        "--json",
        "--listen",
        "127.0.0.1:0",
        "--dir",
    ])
    .arg(&d.dst)
    .env_remove("ECHOXFER_CODE");
    let mut rx = spawn(cmd);
    let addr = line_containing(&rx.err, "listening on");
    let addr = addr.trim_start_matches("listening on").trim().to_string();
    let code = line_containing(&rx.err, "code:");
    let code = code.trim_start_matches("code:").trim().to_string();
    let mut cmd = bin();
    cmd.args(["send", "--json", "--to", &addr])
        .args(&paths)
        .env("ECHOXFER_CODE", &code);
    let (status, out, err) = run(cmd);
    assert!(status.success(), "{out}\n{err}");
    assert_all_json("send --json", &out);
    assert!(rx.guard.wait().success());
    let out = rest(&rx.out).join("\n");
    assert_all_json("receive --json", &out);
    assert_eq!(out.lines().count(), 3, "{out}");
}

/// `send --dry-run` honours `--json` (an object per entry and a total)
/// and `--quiet` (the total alone).
#[test]
fn dry_run_prints_json_with_json_and_the_total_alone_with_quiet() {
    let d = dirs();
    let paths = sources(&d, &[0, 12_345]);
    let mut cmd = bin();
    cmd.args(["send", "--dry-run", "--json"]).args(&paths);
    let (status, out, err) = run(cmd);
    assert!(status.success(), "{err}");
    assert_all_json("send --dry-run --json", &out);
    assert_eq!(out.lines().count(), 3, "{out}");
    assert!(
        out.contains(r#"{"path":"file-1.bin","kind":"file","size":12345,"outcome":"would send""#),
        "{out}"
    );
    assert!(
        out.ends_with(
            "{\"total\":{\"dry_run\":true,\"files\":2,\"directories\":0,\"bytes\":12345,\"skipped\":0}}\n"
        ),
        "{out}"
    );
    let mut cmd = bin();
    cmd.args(["send", "--dry-run", "--quiet"]).args(&paths);
    let (status, out, err) = run(cmd);
    assert!(status.success(), "{err}");
    assert_eq!(
        out,
        "total: 2 files, 0 directories, 12345 bytes, 0 skipped (dry run: nothing sent)\n"
    );
}

/// `--quiet` prints the total alone on stdout, but still names what was
/// not delivered, and why, on stderr.
#[test]
fn quiet_still_says_why_an_entry_was_refused() {
    let d = dirs();
    let paths = sources(&d, &[1000]);
    fs::write(d.dst.join("file-0.bin"), b"something else").unwrap();
    let (mut rx, addr, _) = receiver(&d, &[]);
    let (status, out, err) = send(&addr, &paths, &["--quiet"]);
    assert_eq!(status.code(), Some(23), "{out}\n{err}");
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.starts_with("total: "), "{out}");
    assert!(
        err.contains("refused file-0.bin") && err.contains("exists on the receiver"),
        "the reason is lost with --quiet: {err}"
    );
    rx.wait();
}

/// With stderr not a terminal, progress is a line every few seconds, not
/// a line per file.
#[test]
fn plain_progress_is_not_a_line_per_file() {
    let d = dirs();
    let folder = d.src.join("many");
    fs::create_dir(&folder).unwrap();
    for i in 0..200 {
        fs::write(folder.join(format!("f{i:03}.txt")), format!("file {i}")).unwrap();
    }
    let (mut rx, addr, _) = receiver(&d, &[]);
    let (status, out, err) = send(&addr, &[folder], &[]);
    assert!(status.success(), "{out}\n{err}");
    let per_file = err.lines().filter(|l| l.starts_with("sending ")).count();
    assert!(
        per_file < 10,
        "{per_file} progress lines for 200 small files:\n{err}"
    );
    assert!(rx.wait().success());
}

// ---- 2. a peer that went away ----

/// A sender killed mid-transfer is a peer that closed the connection
/// without ending the session (or a broken connection), never "tampered".
#[test]
fn a_killed_sender_is_a_peer_that_went_away_not_an_integrity_failure() {
    let d = dirs();
    let size = 200 << 20;
    let path = write_src(&d, "big.bin", &content(size, 7));
    let mut cmd = bin();
    cmd.args([
        "receive",
        "--once",
        "--listen",
        "127.0.0.1:0",
        "--code",
        CODE,
        "--dir",
    ])
    .arg(&d.dst)
    .stderr(Stdio::piped());
    let (mut rx, addr, _) = spawn_until(cmd, "listening on");
    let err = drain(rx.child.stderr.take().unwrap());
    let mut cmd = bin();
    cmd.args(["send", "--quiet", "--code", CODE, "--to", &addr])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut tx = Guard {
        child: cmd.spawn().unwrap(),
    };
    let part = d.dst.join(".big.bin.echoxfer-part");
    let until = Instant::now() + BOUND;
    while fs::metadata(&part).map(|m| m.len()).unwrap_or(0) < 16 << 20 {
        assert!(tx.child.try_wait().unwrap().is_none(), "sender ended early");
        assert!(Instant::now() < until, "no progress within {BOUND:?}");
        thread::sleep(Duration::from_millis(1));
    }
    tx.child.kill().unwrap();
    tx.wait();
    assert!(!rx.wait().success());
    let err = err.join().unwrap();
    let said = err.lines().find(|l| l.starts_with("error: ")).unwrap_or("");
    assert!(
        said.contains("closed the connection without ending the session")
            || said.contains("connection with"),
        "{err}"
    );
    assert!(
        !err.contains("tampered") && !err.contains("integrity"),
        "{err}"
    );
}

// ---- 3. wrong code, nothing listening, the code, addresses, --dir ----

/// A wrong code: no summary listing the files as incomplete, no "run the
/// same send again to resume".
#[test]
fn a_wrong_code_prints_no_summary_and_no_resume_hint() {
    let d = dirs();
    let paths = sources(&d, &[100_000]);
    let (mut rx, addr, _) = receiver(&d, &[]);
    let (status, out, err) = send(&addr, &paths, &["--code", "6-other-code-here"]);
    assert!(!status.success());
    assert!(err.contains("wrong code"), "{err}");
    assert!(
        !out.contains("incomplete") && !out.contains("total:") && !err.contains("to resume"),
        "{out}\n{err}"
    );
    rx.wait();
}

/// Nothing listening: `cannot connect`, and no summary with "1 incomplete".
#[test]
fn a_refused_connection_prints_no_summary() {
    let d = dirs();
    let paths = sources(&d, &[10]);
    let free = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = free.local_addr().unwrap().to_string();
    drop(free);
    let (status, out, err) = send(&addr, &paths, &[]);
    assert!(!status.success());
    assert!(err.contains("cannot connect"), "{err}");
    assert_eq!(out, "", "a summary of a session that never was: {out}");
}

/// A port in use: the receiver fails to bind and prints no code.
#[test]
fn no_code_is_printed_before_the_listener_is_bound() {
    let d = dirs();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let mut cmd = bin();
    cmd.args(["receive", "--once", "--listen", &addr, "--dir"])
        .arg(&d.dst)
        .env_remove("ECHOXFER_CODE");
    let (status, out, err) = run(cmd);
    assert!(!status.success());
    assert!(
        !out.contains("code:"),
        "a code for a listener that never was: {out}"
    );
    assert!(!err.contains("type the code"), "{err}");
}

/// `::1:9999` is explained with the brackets it needs.
#[test]
fn an_ipv6_address_without_brackets_is_explained() {
    let d = dirs();
    let paths = sources(&d, &[10]);
    let (status, _, err) = send("::1:9999", &paths, &[]);
    assert!(!status.success());
    assert!(
        err.contains("[::1]:9999") && !err.contains("no port"),
        "{err}"
    );
}

/// `--dir`: a missing last component is created; missing parents are not
/// (the error says `mkdir -p`); a regular file, or a path under one, is
/// refused at start with what to do (chosen over an unwritable mode,
/// which root would write through anyway).
#[test]
fn receive_creates_the_last_component_of_dir_and_refuses_what_cannot_take_files() {
    let d = dirs();
    let new = d.dst.join("new");
    let mut cmd = bin();
    cmd.args([
        "receive",
        "--once",
        "--insecure",
        "--listen",
        "127.0.0.1:0",
        "--dir",
    ])
    .arg(&new)
    .stderr(Stdio::null());
    let (rx, _, _) = spawn_until(cmd, "listening on");
    assert!(new.is_dir(), "--dir's last component was not created");
    drop(rx);

    let deep = d.dst.join("missing/deeper");
    let mut cmd = bin();
    cmd.args([
        "receive",
        "--once",
        "--insecure",
        "--listen",
        "127.0.0.1:0",
        "--dir",
    ])
    .arg(&deep);
    let (status, out, err) = run(cmd);
    assert!(!status.success());
    assert!(
        err.contains("mkdir -p") && !out.contains("listening"),
        "{err}"
    );
    assert!(!deep.exists() && !d.dst.join("missing").exists());

    let file = d.dst.join("plain.txt");
    fs::write(&file, b"x").unwrap();
    for dir in [file.clone(), file.join("sub")] {
        let mut cmd = bin();
        cmd.args([
            "receive",
            "--once",
            "--insecure",
            "--listen",
            "127.0.0.1:0",
            "--dir",
        ])
        .arg(&dir);
        let (status, out, err) = run(cmd);
        assert!(!status.success(), "{}", dir.display());
        assert!(!out.contains("listening"), "{out}");
        assert!(
            err.contains("not a directory") && err.contains("--dir"),
            "{}: {err}",
            dir.display()
        );
    }
}

// ---- 4. echo ----

/// `echo serve` on port 0 with [`CODE`], stderr collected.
fn echo_server() -> (Guard, String, Receiver<String>) {
    let mut cmd = bin();
    cmd.args([
        "echo",
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--code",
        "7-echo-acorn-bell",
    ])
    .stderr(Stdio::piped());
    let (mut guard, addr, _) = spawn_until(cmd, "listening on");
    let err = lines_of(guard.child.stderr.take().unwrap());
    (guard, addr, err)
}

/// `echo connect` with its stdin held open (a person who types nothing).
fn idle_client(addr: &str) -> (Spawned, std::process::ChildStdin) {
    let mut cmd = bin();
    cmd.args([
        "echo",
        "connect",
        "--to",
        addr,
        "--code",
        "7-echo-acorn-bell",
    ])
    .stdin(Stdio::piped());
    let mut c = spawn(cmd);
    let stdin = c.guard.child.stdin.take().unwrap();
    (c, stdin)
}

/// The greeting names the line that ends a session, and Ctrl-C on an idle
/// client ends it at once, telling the server why.
#[test]
fn ctrl_c_on_echo_connect_tells_the_server_why() {
    let (_server, addr, server_err) = echo_server();
    let (mut c, _stdin) = idle_client(&addr);
    let greeting = c.out.recv_timeout(BOUND).expect("a greeting");
    assert!(
        greeting.contains("`exit`") && !greeting.contains("Exit ends"),
        "{greeting}"
    );
    let pid = c.guard.child.id() as i32;
    // SAFETY: a signal to our own child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    c.guard.wait();
    line_containing(&server_err, "stopped with Ctrl-C");
}

/// An idle client notices at once that the server went away, and says
/// so without a word about files.
#[test]
fn an_idle_echo_connect_notices_the_server_went_away() {
    let (mut server, addr, _) = echo_server();
    let (mut c, _stdin) = idle_client(&addr);
    c.out.recv_timeout(BOUND).expect("a greeting");
    server.child.kill().unwrap();
    server.wait();
    let status = c.guard.wait();
    assert!(!status.success());
    let err = rest(&c.err).join("\n");
    assert!(
        err.contains("closed the connection without ending the session")
            || err.contains("connection with"),
        "{err}"
    );
    assert!(!err.contains("file") && !err.contains("tampered"), "{err}");
}

/// A client that reached a file receiver hears what runs there.
#[test]
fn an_echo_client_at_a_file_receiver_hears_that_it_runs_receive() {
    let d = dirs();
    let (_rx, addr, _) = receiver(&d, &[]);
    let mut cmd = bin();
    cmd.args(["echo", "connect", "--to", &addr, "--code", CODE]);
    let (status, _, err) = run(cmd);
    assert!(!status.success());
    assert!(
        err.contains("runs `echoxfer receive`") && !err.contains("0x46"),
        "{err}"
    );
}

// ---- 5. one flag name per concept ----

/// Echo and UDP take `--listen` and `--to` as the file commands do (the
/// old `--addr` still works); sizes say their unit.
#[test]
fn echo_and_udp_take_listen_and_to_and_sizes_name_their_unit() {
    let mut cmd = bin();
    cmd.args(["udp", "serve", "--listen", "127.0.0.1:0"]);
    let (_server, addr, _) = spawn_until(cmd, "listening on");
    let mut cmd = bin();
    cmd.args([
        "udp",
        "ping",
        "--to",
        &addr,
        "--count",
        "2",
        "--size-bytes",
        "12",
    ]);
    let (status, out, err) = run(cmd);
    assert!(status.success(), "{out}\n{err}");
    let mut cmd = bin();
    cmd.args([
        "udp", "ping", "--addr", &addr, "--count", "1", "--size", "12",
    ]);
    let (status, out, err) = run(cmd);
    assert!(status.success(), "the old spellings: {out}\n{err}");
    let (status, out, _) = run({
        let mut c = bin();
        c.args(["demo", "--help"]);
        c
    });
    assert!(status.success() && out.contains("--size-mib"), "{out}");
}

/// Over `--max-per-source`, a client hears that limit and its flag, not
/// "closed the connection during the handshake".
#[test]
fn a_client_over_the_per_source_cap_hears_the_limit_and_its_flag() {
    let mut cmd = bin();
    cmd.args([
        "echo",
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--max-per-source",
        "1",
    ])
    .args(["--code", "7-echo-acorn-bell"])
    .stderr(Stdio::null());
    let (_server, addr, _) = spawn_until(cmd, "listening on");
    let (first, _stdin) = idle_client(&addr);
    first.out.recv_timeout(BOUND).expect("a greeting");
    let mut cmd = bin();
    cmd.args([
        "echo",
        "connect",
        "--to",
        &addr,
        "--code",
        "7-echo-acorn-bell",
    ]);
    let (status, _, err) = run(cmd);
    assert!(!status.success());
    assert!(
        err.contains("--max-per-source") && err.contains("refused"),
        "{err}"
    );
}
