//! `echoxfer send|receive` end to end over loopback (and over pipes with
//! `--stdio`): several files per session on both runtimes, `--once` and
//! overwrite exit codes, and a sender killed mid-transfer that resumes.
//! Receivers bind port 0 and announce the real one; every wait is bounded;
//! every child is killed by its guard.
#![cfg(unix)]

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

mod common;
use common::files::{assert_received, content, dirs, same_file, sources, write_src, Dirs};
use common::process::{line_containing, spawn_until, Guard, BOUND};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_echoxfer"))
}

fn hex(path: &Path) -> String {
    blake3::hash(&fs::read(path).unwrap()).to_hex().to_string()
}

/// The code receivers and senders of these tests share unless a test
/// says otherwise.
const CODE: &str = "9-acorn-bell-echo";

/// Whether `args` already say how to authenticate.
fn has_auth(args: &[&str]) -> bool {
    args.iter()
        .any(|a| ["--code", "--secret-file", "--insecure"].contains(a))
}

/// Starts `echoxfer receive` on port 0 (with [`CODE`] unless `extra`
/// authenticates otherwise); returns the guard, the address and its later
/// stdout lines.
fn receiver(d: &Dirs, extra: &[&str]) -> (Guard, String, std::sync::mpsc::Receiver<String>) {
    let mut cmd = bin();
    cmd.args(["receive", "--listen", "127.0.0.1:0", "--dir"])
        .arg(&d.dst)
        .args(extra);
    if !has_auth(extra) {
        cmd.args(["--code", CODE]);
    }
    spawn_until(cmd, "listening on")
}

/// Runs `cmd` to its end (bounded); returns its status, stdout and stderr.
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
fn lines_of(r: impl Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        for line in io::BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn drain(mut r: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut s = Vec::new();
        let _ = r.read_to_end(&mut s);
        String::from_utf8_lossy(&s).into_owned()
    })
}

/// `echoxfer send` (with [`CODE`] unless `extra` authenticates otherwise).
fn send(to: &str, paths: &[PathBuf], extra: &[&str]) -> (ExitStatus, String, String) {
    let mut cmd = bin();
    cmd.args(["send", "--to", to]).args(extra).args(paths);
    if !has_auth(extra) {
        cmd.args(["--code", CODE]);
    }
    run(cmd)
}

fn several_files_in_one_session(runtime: &str) {
    let d = dirs();
    let paths = sources(&d, &[0, 1, 100_000, 3_000_017]);
    let (_rx, addr, lines) = receiver(&d, &["--runtime", runtime]);
    let (status, out, err) = send(&addr, &paths, &["--runtime", runtime]);
    assert!(status.success(), "{out}\n{err}");
    for p in &paths {
        let name = p.file_name().unwrap().to_str().unwrap();
        let size = fs::metadata(p).unwrap().len();
        let want = format!("sent {name}: {size} bytes ");
        let line = out
            .lines()
            .find(|l| l.starts_with(&want))
            .unwrap_or_else(|| panic!("no {want:?} in {out}"));
        assert!(line.ends_with(&format!("blake3 {}", hex(p))), "{line}");
        let got = line_containing(&lines, &format!("received {name}: {size} bytes"));
        assert!(got.ends_with(&format!("blake3 {}", hex(p))), "{got}");
    }
    assert!(
        out.contains("total: 4 sent (0 resumed), 0 up to date, 0 skipped, 0 refused, 0 directories; 3100018 bytes moved"),
        "{out}"
    );
    assert_received(&d, &paths);
}

#[test]
fn blocking_send_receive_several_files_in_one_session() {
    several_files_in_one_session("blocking");
}

#[test]
fn tokio_send_receive_several_files_in_one_session() {
    several_files_in_one_session("tokio");
}

#[test]
fn once_exits_with_the_session_status_and_refuses_to_overwrite() {
    let d = dirs();
    let paths = sources(&d, &[12_345]);

    // Every offered file saved: both exit 0, and the receiver exits by itself.
    let (mut rx, addr, lines) = receiver(&d, &["--once"]);
    let (status, out, err) = send(&addr, &paths, &[]);
    assert!(status.success(), "{out}\n{err}");
    assert!(rx.wait().success());
    line_containing(&lines, "received file-0.bin: 12345 bytes");
    assert_received(&d, &paths);

    // The same name again: refused, the existing file untouched, both non-zero.
    let original = fs::read(&paths[0]).unwrap();
    fs::write(&paths[0], content(777, 200)).unwrap();
    let (mut rx, addr, lines) = receiver(&d, &["--once", "--runtime", "tokio"]);
    let (status, out, err) = send(&addr, &paths, &[]);
    assert_eq!(status.code(), Some(23), "a partial transfer: {out}\n{err}");
    assert!(out.contains("refused file-0.bin: Exists"), "{out}");
    assert!(
        out.contains("exists on the receiver") && out.contains("--overwrite"),
        "says where it exists and what would replace it: {out}"
    );
    assert!(
        err.contains("partial transfer: 1 of 1 entries not delivered (1 refused)"),
        "{err}"
    );
    assert_eq!(rx.wait().code(), Some(23));
    line_containing(&lines, "refused file-0.bin: Exists");
    assert_eq!(fs::read(d.dst.join("file-0.bin")).unwrap(), original);

    // With --overwrite it is replaced.
    let (mut rx, addr, _lines) = receiver(&d, &["--once", "--overwrite"]);
    let (status, out, err) = send(&addr, &paths, &[]);
    assert!(status.success(), "{out}\n{err}");
    assert!(rx.wait().success());
    assert_received(&d, &paths);
}

#[test]
fn stdio_carries_the_session_over_pipes() {
    let d = dirs();
    let paths = sources(&d, &[2_000_003, 10]);
    let spawn = |args: &[&str], path: Option<&Path>| {
        let mut cmd = bin();
        cmd.args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(p) = path {
            cmd.arg(p);
        }
        Guard {
            child: cmd.spawn().unwrap(),
        }
    };
    let mut rx = spawn(
        &["receive", "--stdio", "--code", CODE, "--dir"],
        Some(&d.dst),
    );
    let mut cmd = bin();
    cmd.args(["send", "--stdio", "--code", CODE])
        .args(&paths)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut tx = Guard {
        child: cmd.spawn().unwrap(),
    };
    // Join the pipes: the sender's stdout to the receiver's stdin and back.
    let pump = |mut from: Box<dyn Read + Send>, mut to: Box<dyn io::Write + Send>| {
        thread::spawn(move || {
            let _ = io::copy(&mut from, &mut to);
        })
    };
    let a = pump(
        Box::new(tx.child.stdout.take().unwrap()),
        Box::new(rx.child.stdin.take().unwrap()),
    );
    let b = pump(
        Box::new(rx.child.stdout.take().unwrap()),
        Box::new(tx.child.stdin.take().unwrap()),
    );
    let tx_err = drain(tx.child.stderr.take().unwrap());
    let rx_err = drain(rx.child.stderr.take().unwrap());
    let (ts, rs) = (tx.wait(), rx.wait());
    let (tx_err, rx_err) = (tx_err.join().unwrap(), rx_err.join().unwrap());
    assert!(ts.success(), "sender: {tx_err}");
    assert!(rs.success(), "receiver: {rx_err}");
    a.join().unwrap();
    b.join().unwrap();
    // With stdout taken by the protocol, the summaries went to stderr.
    assert!(
        tx_err.contains("sent file-0.bin: 2000003 bytes"),
        "{tx_err}"
    );
    assert!(rx_err.contains("received file-1.bin: 10 bytes"), "{rx_err}");
    assert_received(&d, &paths);
}

#[test]
fn a_sender_killed_mid_transfer_resumes_on_the_next_run() {
    let d = dirs();
    let size = 200 << 20;
    let path = write_src(&d, "big.bin", &content(size, 100));
    let paths = [path.clone()];
    let (_rx, addr, lines) = receiver(&d, &[]);

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
    let held = loop {
        let held = fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
        if held > 16 << 20 {
            break held;
        }
        assert!(tx.child.try_wait().unwrap().is_none(), "sender ended early");
        assert!(Instant::now() < until, "no progress within {BOUND:?}");
        thread::sleep(Duration::from_millis(1));
    };
    tx.child.kill().unwrap(); // SIGKILL
    tx.wait();
    assert!(held < size as u64, "the transfer finished before the kill");
    // The receiver ends that session (and frees the name) before the retry.
    let cut = line_containing(&lines, "incomplete big.bin");
    assert!(!d.dst.join("big.bin").exists(), "a cut left the final name");

    let (status, out, err) = send(&addr, &paths, &[]);
    assert!(status.success(), "{cut}\n{out}\n{err}");
    let line = out
        .lines()
        .find(|l| l.starts_with(&format!("sent big.bin: {size} bytes (resumed from ")))
        .unwrap_or_else(|| panic!("no resumed summary in {out}"));
    let from: u64 = line
        .split("resumed from ")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("cannot parse {line}"));
    assert!(from > 0 && from < size as u64, "{line}");
    line_containing(
        &lines,
        &format!("received big.bin: {size} bytes (resumed from {from})"),
    );
    assert!(!part.exists(), "the partial file is left over");
    assert_received(&d, &paths);
}

/// A `receive --stdio` process driven by hand: its stdin takes frames, its
/// stdout is decoded frame by frame (every wait bounded).
struct HandDriven {
    guard: Guard,
    frames: std::sync::mpsc::Receiver<echoxfer::codec::Frame>,
}

impl HandDriven {
    fn start(dir: &Path) -> HandDriven {
        use echoxfer::codec::{FrameDecoder, Protocol};
        let mut cmd = bin();
        cmd.args(["receive", "--stdio", "--insecure", "--quiet", "--dir"])
            .arg(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut guard = Guard {
            child: cmd.spawn().unwrap(),
        };
        let mut stdout = guard.child.stdout.take().unwrap();
        let (tx, frames) = std::sync::mpsc::channel();
        thread::spawn(move || {
            let mut decoder = FrameDecoder::new(Protocol::File, 1 << 20);
            let mut buf = bytes::BytesMut::new();
            let mut chunk = [0u8; 4096];
            while let Ok(n @ 1..) = stdout.read(&mut chunk) {
                buf.extend_from_slice(&chunk[..n]);
                while let Ok(Some(frame)) = decoder.decode(&mut buf) {
                    let _ = tx.send(frame);
                }
            }
        });
        HandDriven { guard, frames }
    }

    fn send(&mut self, bytes: &[u8]) {
        use std::io::Write;
        let stdin = self.guard.child.stdin.as_mut().unwrap();
        stdin.write_all(bytes).unwrap();
        stdin.flush().unwrap();
    }

    fn offer(&mut self, name: &str, size: u64) -> echoxfer::codec::Frame {
        use echoxfer::codec::{Frame, Protocol};
        let mut wire = Protocol::File.preamble().to_vec();
        wire.extend(echoxfer::testing::file_offer(0, name.as_bytes(), size).encode_to_vec());
        self.send(&wire);
        loop {
            match self.frames.recv_timeout(BOUND) {
                // The receiver's window comes first.
                Ok(Frame::Window { .. }) => continue,
                Ok(answer) => return answer,
                Err(e) => panic!("no answer to the offer: {e}"),
            }
        }
    }
}

#[test]
fn two_receiver_processes_on_one_directory_never_write_one_partial_file() {
    use echoxfer::codec::{Frame, RejectReason};
    let d = dirs();
    let mut first = HandDriven::start(&d.dst);
    // Files this large get a named partial file (smaller ones are
    // written unnamed: nothing for two receivers to share).
    let size = 1 << 20;
    let answer = first.offer("same.bin", size);
    assert!(
        matches!(answer, Frame::Accept { have: 0, .. }),
        "{answer:?}"
    );
    first.send(&Frame::Begin { id: 0, from: 0 }.encode_to_vec());
    let data = bytes::Bytes::from(vec![7u8; 100]);
    first.send(&Frame::Data(data).encode_to_vec());
    let part = d.dst.join(".same.bin.echoxfer-part");
    let until = Instant::now() + BOUND;
    while fs::metadata(&part).map_or(0, |m| m.len()) < 100 {
        assert!(Instant::now() < until, "the first receiver wrote nothing");
        thread::sleep(Duration::from_millis(10));
    }
    // The second process is offered the same name while the first holds it.
    let mut second = HandDriven::start(&d.dst);
    match second.offer("same.bin", 2 * size) {
        Frame::Reject { reason, .. } => assert_eq!(reason, RejectReason::Busy),
        other => panic!("a second receiver took a name in use: {other:?}"),
    }
    // Once the first is gone (its partial file kept), the name is free again.
    drop(first);
    let mut third = HandDriven::start(&d.dst);
    let answer = third.offer("same.bin", size);
    assert!(
        matches!(answer, Frame::Accept { have: 100, .. }),
        "{answer:?}"
    );
}

fn once_survives_a_connection_that_offers_nothing(runtime: &str) {
    use std::io::Write;
    let d = dirs();
    let paths = sources(&d, &[1000]);
    let (mut rx, addr, lines) = receiver(&d, &["--once", "--runtime", runtime]);
    let mut garbage = std::net::TcpStream::connect(&addr).unwrap();
    garbage.set_read_timeout(Some(BOUND)).unwrap();
    garbage.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    // The receiver answers with its own preamble and an Error frame, then closes.
    let mut answer = Vec::new();
    let _ = garbage.read_to_end(&mut answer);
    assert!(!answer.is_empty(), "the garbage client got no answer");
    let (status, out, err) = send(&addr, &paths, &["--runtime", runtime]);
    assert!(status.success(), "{out}\n{err}");
    assert!(
        rx.wait().success(),
        "--once must exit 0 after the real sender"
    );
    assert_received(&d, &paths);
    drop(lines);
}

#[test]
fn once_is_not_used_up_by_a_connection_that_offers_nothing() {
    once_survives_a_connection_that_offers_nothing("blocking");
    once_survives_a_connection_that_offers_nothing("tokio");
}

#[test]
fn a_missing_file_is_named_in_the_error_with_what_to_do() {
    let d = dirs();
    let missing = d.src.join("not-there.bin");
    let (status, out, err) = send("127.0.0.1:9", std::slice::from_ref(&missing), &[]);
    assert!(!status.success(), "{out}");
    let want = format!(
        "cannot open {}: No such file or directory (check the path)",
        missing.display()
    );
    assert!(err.contains(&want), "{err}");
}

#[test]
fn receive_says_at_start_what_partial_files_interrupted_transfers_left() {
    let d = dirs();
    fs::write(d.dst.join(".a.bin.echoxfer-part"), vec![1u8; 1234]).unwrap();
    fs::write(d.dst.join("b.bin"), b"not a partial").unwrap();
    let mut cmd = bin();
    cmd.args(["receive", "--stdio", "--insecure", "--dir"])
        .arg(&d.dst);
    // Stdin is empty: the session ends at once, after the note.
    let (_, _, err) = run(cmd);
    assert!(
        err.contains("1 partial files (1234 bytes) from interrupted transfers"),
        "{err}"
    );
}

/// `localhost:PORT` for an announced `127.0.0.1:PORT`.
fn by_name(addr: &str) -> String {
    let port = addr.rsplit_once(':').unwrap().1;
    format!("localhost:{port}")
}

#[test]
fn a_host_name_on_listen_and_to_works_end_to_end_with_a_code() {
    let d = dirs();
    let paths = sources(&d, &[54_321]);
    let mut cmd = bin();
    cmd.args([
        "receive",
        "--once",
        "--listen",
        "localhost:0",
        "--code",
        CODE,
    ])
    .arg("--dir")
    .arg(&d.dst);
    let (mut rx, addr, lines) = spawn_until(cmd, "listening on");
    let (status, out, err) = send(&by_name(&addr), &paths, &[]);
    assert!(status.success(), "{out}\n{err}");
    assert!(rx.wait().success());
    line_containing(&lines, "received file-0.bin: 54321 bytes");
    assert_received(&d, &paths);
}

#[test]
fn an_unresolvable_name_is_refused_naming_it_on_to_and_listen() {
    let d = dirs();
    let paths = sources(&d, &[10]);
    let name = "no-such-host.invalid:9999";
    let (status, _, err) = send(name, &paths, &[]);
    assert!(!status.success());
    assert!(err.contains(&format!("cannot resolve {name}")), "{err}");
    assert!(err.contains("check the host name"), "{err}");
    let mut cmd = bin();
    cmd.args(["receive", "--insecure", "--listen", name]);
    let (status, _, err) = run(cmd);
    assert!(!status.success());
    assert!(err.contains(&format!("cannot resolve {name}")), "{err}");
    // A name without a port says what the syntax is.
    let (status, _, err) = send("localhost", &paths, &[]);
    assert!(!status.success());
    assert!(
        err.contains("has no port") && err.contains("HOST:PORT"),
        "{err}"
    );
}

#[test]
fn completions_bash_prints_a_script_that_completes_echoxfer_send() {
    let mut cmd = bin();
    cmd.args(["completions", "bash"]);
    let (status, out, err) = run(cmd);
    assert!(status.success(), "{err}");
    assert!(out.contains("echoxfer"), "{out}");
    assert!(out.contains("send"), "{out}");
    assert!(
        out.contains("complete "),
        "a bash `complete` command: {out}"
    );
    let mut cmd = bin();
    cmd.args(["completions", "no-such-shell"]);
    let (status, _, err) = run(cmd);
    assert!(!status.success());
    assert!(err.contains("no-such-shell"), "{err}");
}

/// `send --dry-run` lists each file as it would be offered and a total,
/// needs no code and no receiver (nothing listens on the address), and
/// checks the files as a real run does.
#[test]
fn dry_run_lists_what_would_be_sent_and_connects_nowhere() {
    let d = dirs();
    let paths = sources(&d, &[0, 12_345]);
    let mut cmd = bin();
    cmd.args(["send", "--dry-run", "--to", "127.0.0.1:9"])
        .args(&paths);
    let (status, out, err) = run(cmd);
    assert!(status.success(), "{err}");
    for p in &paths {
        let name = p.file_name().unwrap().to_string_lossy();
        let size = std::fs::metadata(p).unwrap().len();
        assert!(
            out.contains(&format!(
                "would send {name} ({size} bytes) from {}",
                p.display()
            )),
            "{out}"
        );
    }
    assert!(
        out.contains(
            "total: 2 files, 0 directories, 12345 bytes, 0 skipped (dry run: nothing sent)"
        ),
        "{out}"
    );
    let missing = d.src.join("missing.bin");
    let mut cmd = bin();
    cmd.args(["send", "--dry-run"]).arg(&missing);
    let (status, _, err) = run(cmd);
    assert!(!status.success());
    assert!(
        err.contains("cannot open") && err.contains("missing.bin"),
        "{err}"
    );
}

/// A folder as a user sends one: the tree arrives (links skipped and
/// counted), `--quiet` prints one total line, a second run moves no data
/// and says every file is up to date, and `--json` prints one object per
/// entry and a total that scripts can read.
#[test]
fn a_folder_goes_across_then_a_second_run_is_up_to_date() {
    let d = dirs();
    let root = d.src.join("album");
    fs::create_dir_all(root.join("2024/empty")).unwrap();
    fs::write(root.join("cover.jpg"), content(70_000, 1)).unwrap();
    fs::write(root.join("2024/été.txt"), b"summer").unwrap();
    fs::write(root.join("2024/none"), b"").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", root.join("link")).unwrap();
    let (mut rx, addr, _lines) = receiver(&d, &["--once"]);
    let (status, out, err) = send(&addr, std::slice::from_ref(&root), &["--quiet"]);
    assert!(status.success(), "{out}\n{err}");
    assert!(rx.wait().success());
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "--quiet prints one total line: {out}");
    assert!(
        lines[0].starts_with("total: 3 sent (0 resumed), 0 up to date, 1 skipped, 0 refused, 3 directories; 70006 bytes moved"),
        "{out}"
    );
    assert!(
        err.contains("skipped") && err.contains("symbolic link"),
        "{err}"
    );
    assert_eq!(
        fs::read(d.dst.join("album/2024/été.txt")).unwrap(),
        b"summer"
    );
    assert!(d.dst.join("album/2024/empty").is_dir());
    assert!(!d.dst.join("album/link").exists());

    // rsync -a semantics: a mode or a time changed since is brought over
    // without moving data, and counted.
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    fs::set_permissions(root.join("cover.jpg"), fs::Permissions::from_mode(0o600)).unwrap();
    let y2001 = std::time::UNIX_EPOCH + std::time::Duration::from_secs(978_307_200);
    fs::File::options()
        .write(true)
        .open(root.join("2024/été.txt"))
        .unwrap()
        .set_modified(y2001)
        .unwrap();
    // With --json, stdout holds JSON alone: `listening on` is on stderr.
    let mut cmd = bin();
    cmd.args(["receive", "--once", "--json", "--code", CODE])
        .args(["--listen", "127.0.0.1:0", "--dir"])
        .arg(&d.dst)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut rx = Guard {
        child: cmd.spawn().unwrap(),
    };
    let lines = lines_of(rx.child.stdout.take().unwrap());
    let err_lines = lines_of(rx.child.stderr.take().unwrap());
    let addr = line_containing(&err_lines, "listening on");
    let addr = addr.trim_start_matches("listening on").trim().to_string();
    let (status, out, err) = send(&addr, std::slice::from_ref(&root), &["--json"]);
    assert!(status.success(), "{out}\n{err}");
    assert!(rx.wait().success());
    let cover = fs::metadata(d.dst.join("album/cover.jpg")).unwrap();
    assert_eq!(cover.mode() & 0o777, 0o600, "the new mode did not arrive");
    let summer = fs::metadata(d.dst.join("album/2024/été.txt")).unwrap();
    assert_eq!(summer.mtime(), 978_307_200, "the new time did not arrive");
    assert!(
        out.contains(
            r#"{"path":"album/cover.jpg","kind":"file","size":70000,"outcome":"metadata updated","#
        ),
        "{out}"
    );
    let objects: Vec<&str> = out.lines().collect();
    assert_eq!(objects.len(), 7, "six entries and a total: {out}");
    assert!(
        objects
            .iter()
            .all(|l| l.starts_with('{') && l.ends_with('}')),
        "{out}"
    );
    assert!(
        out.contains(r#"{"path":"album/2024/none","kind":"file","size":0,"outcome":"up to date","#),
        "{out}"
    );
    assert!(
        objects[6].starts_with(
            r#"{"total":{"sent":0,"resumed":0,"up_to_date":3,"metadata_updated":2,"skipped":1,"refused":0"#
        ),
        "{out}"
    );
    assert!(objects[6].contains(r#""bytes_moved":0,"#), "{out}");
    line_containing(&lines, r#""up_to_date":3,"metadata_updated":2"#);
    // A third run: nothing left to update.
    let (mut rx, addr, _lines) = receiver(&d, &["--once", "--quiet"]);
    let (status, out, err) = send(&addr, std::slice::from_ref(&root), &["--quiet"]);
    assert!(status.success() && rx.wait().success(), "{out}\n{err}");
    assert!(
        out.starts_with(
            "total: 0 sent (0 resumed), 3 up to date, 1 skipped, 0 refused, 3 directories;"
        ),
        "{out}"
    );
}

/// Ctrl-C on a `receive --once` mid-folder: the sender is told why (not a
/// bare reset), the small files the receiver had verified are saved even
/// those of the group not yet committed, the big file keeps its partial
/// file, and the same `send` again finds the saved files up to date and
/// resumes the big one.
#[test]
fn ctrl_c_on_a_receiver_tells_the_sender_keeps_what_was_verified_and_the_next_send_resumes() {
    let d = dirs();
    let tree = d.src.join("tree");
    fs::create_dir(&tree).unwrap();
    // 300 small files (two groups of 128 committed, 44 waiting), then a
    // big one that is still arriving at the interruption.
    for i in 0..300 {
        fs::write(tree.join(format!("a{i:03}")), content(2000, i as u8)).unwrap();
    }
    let size = 200 << 20;
    fs::write(tree.join("zbig.bin"), content(size, 7)).unwrap();
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
    let (mut rx, addr, _lines) = spawn_until(cmd, "listening on");
    let rx_err = drain(rx.child.stderr.take().unwrap());
    let mut cmd = bin();
    cmd.args(["send", "--quiet", "--code", CODE, "--to", &addr])
        .arg(&tree)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut tx = Guard {
        child: cmd.spawn().unwrap(),
    };
    let tx_err = drain(tx.child.stderr.take().unwrap());
    let part = d.dst.join("tree/.zbig.bin.echoxfer-part");
    let until = Instant::now() + BOUND;
    while fs::metadata(&part).map_or(0, |m| m.len()) < 16 << 20 {
        assert!(tx.child.try_wait().unwrap().is_none(), "sender ended early");
        assert!(Instant::now() < until, "no progress within {BOUND:?}");
        thread::sleep(Duration::from_millis(1));
    }
    let pid = rx.child.id() as libc::pid_t;
    // SAFETY: a plain kill(2) of our own child, which is still running.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let (rx_status, tx_status) = (rx.wait(), tx.wait());
    let (rx_err, tx_err) = (rx_err.join().unwrap(), tx_err.join().unwrap());
    assert!(!rx_status.success() && !tx_status.success());
    assert!(rx_err.contains("stopping:"), "{rx_err}");
    assert!(
        tx_err.contains("stopped with Ctrl-C"),
        "the sender is told why: {tx_err}"
    );
    for i in 0..300 {
        let name = format!("a{i:03}");
        assert!(
            same_file(&tree.join(&name), &d.dst.join("tree").join(&name)),
            "{name} was verified before the interruption, yet not saved"
        );
    }
    assert!(part.exists() && !d.dst.join("tree/zbig.bin").exists());

    let (_rx, addr, _) = receiver(&d, &["--once"]);
    let (status, out, err) = send(&addr, std::slice::from_ref(&tree), &["--json"]);
    assert!(status.success(), "{out}\n{err}");
    let total = out.lines().last().unwrap_or_default();
    assert!(total.contains("\"up_to_date\":300"), "{total}");
    assert!(total.contains("\"resumed\":1"), "{total}");
    assert!(same_file(
        &tree.join("zbig.bin"),
        &d.dst.join("tree/zbig.bin")
    ));
}

#[test]
fn a_name_the_receiver_machine_refuses_is_shown_decoded_with_the_reason_sent_to_the_peer() {
    use echoxfer::codec::{Frame, FrameDecoder, Protocol};
    use std::io::Write;
    let d = dirs();
    let mut cmd = bin();
    cmd.args(["receive", "--stdio", "--insecure", "--json", "--dir"])
        .arg(&d.dst)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut guard = Guard {
        child: cmd.spawn().unwrap(),
    };
    let err = drain(guard.child.stderr.take().unwrap());
    let mut stdout = guard.child.stdout.take().unwrap();
    let (tx, frames) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let mut decoder = FrameDecoder::new(Protocol::File, 1 << 20);
        let mut buf = bytes::BytesMut::new();
        let mut chunk = [0u8; 4096];
        while let Ok(n @ 1..) = stdout.read(&mut chunk) {
            buf.extend_from_slice(&chunk[..n]);
            while let Ok(Some(frame)) = decoder.decode(&mut buf) {
                let _ = tx.send(frame);
            }
        }
    });
    let offer = |id: u32, path: &[&[u8]]| Frame::Offer {
        id,
        kind: 0,
        mode: 0o644,
        mtime_secs: 0,
        mtime_nanos: 0,
        size: 3,
        path: echoxfer::xfer::encode_raw_path(path),
    };
    let mut wire = Protocol::File.preamble().to_vec();
    wire.extend(offer(0, &[b"docs", b"C:x"]).encode_to_vec());
    wire.extend(offer(1, &[b"d", b"a\x1b]0;TITLE\x07\x1b[2J"]).encode_to_vec());
    let stdin = guard.child.stdin.as_mut().unwrap();
    stdin.write_all(&wire).unwrap();
    stdin.flush().unwrap();
    let mut messages = Vec::new();
    while messages.len() < 2 {
        match frames.recv_timeout(BOUND) {
            Ok(Frame::Reject { message, .. }) => {
                messages.push(String::from_utf8(message.to_vec()).unwrap())
            }
            Ok(_) => continue,
            Err(e) => panic!("no Reject for both offers: {e}"),
        }
    }
    drop(guard.child.stdin.take());
    guard.wait();
    let err = err.join().unwrap();
    let first = err
        .lines()
        .find(|l| l.contains("\"path\":\"docs/C:x\""))
        .unwrap_or_else(|| panic!("no decoded docs/C:x in {err}"));
    assert!(
        first.contains("\"reason\":\"NameRefused\"")
            && first.contains(&format!("\"message\":\"{}\"", messages[0])),
        "{first}\nsent to the peer: {messages:?}"
    );
    assert!(!err.contains("refused by the protocol machine"), "{err}");
    // The hostile name is decoded too, and escaped: nothing reaches the terminal raw.
    assert!(
        err.contains(r#""path":"d/a\\u{1b}]0;TITLE\\u{7}\\u{1b}[2J""#),
        "{err}"
    );
    assert!(!err.contains('\x1b') && !err.contains('\x07'), "{err:?}");
}

#[test]
fn send_escapes_local_names_in_its_warnings() {
    use std::os::unix::fs::symlink;
    let d = dirs();
    let tree = d.src.join("tree");
    fs::create_dir(&tree).unwrap();
    fs::write(tree.join("ok.txt"), b"fine").unwrap();
    // A link (skipped) and a file whose name cannot be offered, both named
    // with a title change, a screen clear and a forged line.
    let hostile = "a\x1b]0;TITLE\x07\x1b[2J\nwarning: forged";
    symlink("ok.txt", tree.join(format!("{hostile} link"))).unwrap();
    fs::write(tree.join(format!("{hostile} file")), b"x").unwrap();
    // A root that cannot be opened is named escaped in the error too.
    let missing = d.src.join("gone\x1b[2J");
    let mut cmd = bin();
    cmd.args(["send", "--dry-run"]).arg(&tree);
    let (status, out, err) = run(cmd);
    assert!(status.success(), "{out}\n{err}");
    let warnings: Vec<&str> = err.lines().collect();
    assert_eq!(warnings.len(), 2, "one line per skipped entry: {err:?}");
    for w in &warnings {
        assert!(w.starts_with("warning: skipped "), "{w:?}");
        assert!(
            w.contains(r"a\u{1b}]0;TITLE\u{7}\u{1b}[2J\nwarning: forged"),
            "{w:?}"
        );
    }
    assert!(!err.contains('\x1b') && !err.contains('\x07'), "{err:?}");
    let mut cmd = bin();
    cmd.args(["send", "--dry-run"]).arg(&missing);
    let (status, _, err) = run(cmd);
    assert!(!status.success());
    assert!(err.contains(r"gone\u{1b}[2J"), "{err:?}");
    assert!(!err.contains('\x1b'), "{err:?}");
}

/// A folder whose files cannot all be delivered: what can be sent is, the
/// rest is named with its reason, and the run exits 23 (a partial
/// transfer, as rsync says it), not 0 and not the failure status.
#[test]
fn a_run_that_leaves_files_behind_exits_23_and_says_how_many_and_why() {
    use std::os::unix::ffi::OsStrExt;
    let d = dirs();
    let tree = d.src.join("tree");
    fs::create_dir(&tree).unwrap();
    fs::write(tree.join("ok.txt"), b"fine").unwrap();
    // Not UTF-8: no receiver could take this name.
    let bad = std::ffi::OsStr::from_bytes(b"caf\xe9.txt");
    fs::write(tree.join(bad), b"x").unwrap();
    // A link is left out by design, which is no failure.
    std::os::unix::fs::symlink("ok.txt", tree.join("link")).unwrap();
    let (mut rx, addr, _lines) = receiver(&d, &["--once"]);
    let (status, out, err) = send(&addr, std::slice::from_ref(&tree), &[]);
    assert_eq!(status.code(), Some(23), "{out}\n{err}");
    assert!(
        err.contains("partial transfer: 1 of 3 entries not delivered (1 could not be offered or read when listed)"),
        "{err}"
    );
    assert!(rx.wait().success(), "the receiver got all it was offered");
    assert_eq!(fs::read(d.dst.join("tree/ok.txt")).unwrap(), b"fine");
    // Only the link left out: a full delivery.
    fs::remove_file(tree.join(bad)).unwrap();
    let (mut rx, addr, _lines) = receiver(&d, &["--once"]);
    let (status, out, err) = send(&addr, std::slice::from_ref(&tree), &[]);
    assert!(status.success() && rx.wait().success(), "{out}\n{err}");
}

/// Hard links are not kept (a documented choice): each name arrives as a
/// copy of its own, and `send` says so before it starts.
#[test]
fn hard_links_arrive_as_separate_copies_and_send_says_so() {
    use std::os::unix::fs::MetadataExt;
    let d = dirs();
    let tree = d.src.join("linked");
    fs::create_dir(&tree).unwrap();
    fs::write(tree.join("a.txt"), b"same bytes").unwrap();
    fs::hard_link(tree.join("a.txt"), tree.join("b.txt")).unwrap();
    let (mut rx, addr, _lines) = receiver(&d, &["--once"]);
    let (status, out, err) = send(&addr, std::slice::from_ref(&tree), &[]);
    assert!(status.success() && rx.wait().success(), "{out}\n{err}");
    assert!(
        err.contains(
            "note: 1 files are hard links to others sent here; each goes as a separate copy"
        ),
        "{err}"
    );
    let a = fs::metadata(d.dst.join("linked/a.txt")).unwrap();
    let b = fs::metadata(d.dst.join("linked/b.txt")).unwrap();
    assert_ne!(a.ino(), b.ino());
    assert_eq!(fs::read(d.dst.join("linked/b.txt")).unwrap(), b"same bytes");
}
