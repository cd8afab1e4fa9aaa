//! Folders: many small files, echoxfer against `tar c | socat | tar x`
//! followed by `sync`, side by side in one run; and the same folder over a
//! slow link (a 20 ms round trip through a delaying relay in this process:
//! this kernel has no netem). Prints each run's time and the ratios of medians.
//! Asserts that every received tree is identical to its source (paths,
//! content, permission bits and modification times); asserts nothing about
//! speed.
//!
//! Received trees are kept until the end: removing 10,000 files makes
//! the file system slow to create files for a while after, which would
//! weigh on whichever ran next.
//!
//! `cargo bench --bench folder` (env: `FILES`, default 10000, in 20
//! directories, 4 KiB each; `ROUNDS`, default 3, alternating which goes
//! first; `SLOW_FILES`, default 500, for the slow link). echoxfer runs with
//! `--insecure` here (the baseline encrypts nothing either) and with its
//! defaults otherwise: BLAKE3 on every file, each made durable before it
//! gets its name (group commit). The baseline makes nothing durable until
//! its final `sync`. If `socat` is missing, a TCP relay in this process
//! stands in for it (the same bytes through the same loopback socket).
//! rsync (daemon over loopback, `-rW --fsync`) is timed too when installed.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Writes `files` files of 4 KiB in 20 directories under `root/tree`, with
/// a few modes and distinct times, so that metadata is checked too.
fn make_tree(root: &Path, files: u64) -> PathBuf {
    let tree = root.join("tree");
    let mut xof = blake3::Hasher::new().update(b"folder bench").finalize_xof();
    let mut buf = [0u8; 4096];
    for i in 0..files {
        let dir = tree.join(format!("d{:02}", i % 20));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("f{i:05}.bin"));
        xof.fill(&mut buf);
        fs::write(&path, buf).unwrap();
        let mode = [0o644, 0o600, 0o755][(i % 3) as usize];
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        let t = std::time::UNIX_EPOCH + Duration::new(1_700_000_000 + i, (i * 7919) as u32);
        fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(t)
            .unwrap();
    }
    tree
}

/// Every file under `root` by relative path: content hash, mode, mtime.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, (blake3::Hash, u32, i64, i64)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                stack.push(path);
                continue;
            }
            let hash = blake3::hash(&fs::read(&path).unwrap());
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            let stamp = (meta.mode() & 0o777, meta.mtime(), meta.mtime_nsec());
            out.insert(rel, (hash, stamp.0, stamp.1, stamp.2));
        }
    }
    out
}

fn sync() {
    // SAFETY: sync has no arguments and no memory effects.
    unsafe { libc::sync() };
}

/// Reads a child's stdout until a line holding `listening on ADDR`.
fn listening(child: &mut Child) -> String {
    let out = child.stdout.take().unwrap();
    let mut lines = BufReader::new(out).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(addr) = line.split("listening on ").nth(1) {
            // Keep draining so the child never blocks on a full pipe.
            thread::spawn(move || for _ in lines {});
            return addr.trim().to_string();
        }
    }
    panic!("no 'listening on' line");
}

/// echoxfer `receive --once` and `send`, the sender to `via(addr)`.
fn echoxfer(
    tree: &Path,
    dst: &Path,
    via: impl FnOnce(&str) -> (String, Option<Child>),
) -> Duration {
    let bin = env!("CARGO_BIN_EXE_echoxfer");
    let mut rx = Command::new(bin)
        .args([
            "receive",
            "--once",
            "--insecure",
            "--quiet",
            "--listen",
            "127.0.0.1:0",
        ])
        .arg("--dir")
        .arg(dst)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr = listening(&mut rx);
    let (to, proxy) = via(&addr);
    let start = Instant::now();
    let status = Command::new(bin)
        .args(["send", "--insecure", "--quiet", "--to", &to])
        .arg(tree)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "send failed");
    assert!(rx.wait().unwrap().success(), "receive failed");
    let took = start.elapsed();
    if let Some(mut p) = proxy {
        let _ = p.kill();
        let _ = p.wait();
    }
    took
}

fn direct(addr: &str) -> (String, Option<Child>) {
    (addr.to_string(), None)
}

/// `tar c -C src tree | <loopback TCP> | tar x -C dst`, then `sync`.
fn tar_pipe(src: &Path, dst: &Path, socat: bool) -> Duration {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let start = Instant::now();
    let mut untar = if socat {
        drop(listener);
        Command::new("socat")
            .args([
                "-u",
                &format!("TCP-LISTEN:{port},reuseaddr"),
                &format!("EXEC:tar x -C {}", dst.display()),
            ])
            .spawn()
            .unwrap()
    } else {
        let mut untar = Command::new("tar")
            .arg("x")
            .arg("-C")
            .arg(dst)
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = untar.stdin.take().unwrap();
        thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            std::io::copy(&mut s, &mut stdin).unwrap();
        });
        untar
    };
    let mut tar = Command::new("tar")
        .arg("c")
        .arg("-C")
        .arg(src)
        .arg("tree")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = tar.stdout.take().unwrap();
    let mut sock = loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => break s,
            Err(_) if start.elapsed() < Duration::from_secs(10) => {
                thread::sleep(Duration::from_millis(5))
            }
            Err(e) => panic!("cannot reach the untar side: {e}"),
        }
    };
    let mut buf = vec![0u8; 128 * 1024];
    loop {
        let n = out.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        sock.write_all(&buf[..n]).unwrap();
    }
    drop(sock);
    assert!(tar.wait().unwrap().success());
    assert!(untar.wait().unwrap().success());
    sync();
    start.elapsed()
}

/// rsync daemon over loopback, `-rW --fsync` (whole files, each synced).
fn rsync(src: &Path, dst: &Path, work: &Path) -> Option<Duration> {
    Command::new("rsync").arg("--version").output().ok()?;
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let conf = work.join("rsyncd.conf");
    // SAFETY: getuid and getgid cannot fail and touch no memory.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let module = format!(
        "[dst]\npath = {}\nread only = false\nuse chroot = false\nuid = {uid}\ngid = {gid}\n",
        dst.display()
    );
    fs::write(
        &conf,
        format!("port = {port}\naddress = 127.0.0.1\n{module}"),
    )
    .unwrap();
    let mut daemon = Command::new("rsync")
        .args(["--daemon", "--no-detach", "--config"])
        .arg(&conf)
        .spawn()
        .ok()?;
    thread::sleep(Duration::from_millis(300));
    let start = Instant::now();
    let ok = Command::new("rsync")
        .args(["-rWtp", "--fsync"])
        .arg(src.join("tree"))
        .arg(format!("rsync://127.0.0.1:{port}/dst/"))
        .status()
        .map(|s| s.success());
    let took = start.elapsed();
    let _ = daemon.kill();
    let _ = daemon.wait();
    ok.ok()?.then_some(took)
}

/// A TCP relay on loopback that delays every byte by `one_way`, both ways
/// (this kernel has no netem): listens on a free port, forwards to `to`.
/// Returns the address to connect to; its threads end with the connection.
fn delay_relay(to: &str, one_way: Duration) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let at = listener.local_addr().unwrap().to_string();
    let to = to.to_string();
    thread::spawn(move || {
        let (client, _) = listener.accept().unwrap();
        let server = TcpStream::connect(&to).unwrap();
        let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
        let a = thread::spawn(move || delayed_copy(client, server, one_way));
        delayed_copy(s2, c2, one_way);
        let _ = a.join();
    });
    at
}

/// Copies `from` to `to`, each piece sent `delay` after it was read.
fn delayed_copy(mut from: TcpStream, mut to: TcpStream, delay: Duration) {
    let (tx, rx) = std::sync::mpsc::channel::<(Instant, Vec<u8>)>();
    let writer = thread::spawn(move || {
        for (due, piece) in rx {
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                thread::sleep(wait);
            }
            if piece.is_empty() || to.write_all(&piece).is_err() {
                let _ = to.shutdown(std::net::Shutdown::Write);
                return;
            }
        }
    });
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = from.read(&mut buf).unwrap_or(0);
        let _ = tx.send((Instant::now() + delay, buf[..n].to_vec()));
        if n == 0 {
            break;
        }
    }
    drop(tx);
    let _ = writer.join();
}

fn slow_link(addr: &str) -> (String, Option<Child>) {
    (delay_relay(addr, Duration::from_millis(10)), None)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let files = env("FILES", 10_000);
    let rounds = env("ROUNDS", 3).max(1);
    let work = tempfile::tempdir().unwrap();
    let tree = make_tree(work.path(), files);
    let want = snapshot(&tree);
    let socat = Command::new("socat").arg("-V").output().is_ok();
    println!(
        "{files} files of 4 KiB in 20 directories, {rounds} rounds; baseline: tar c | {} | tar x, then sync",
        if socat { "socat" } else { "TCP relay (no socat here)" }
    );
    let (mut ours, mut base, mut rs) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let run_ours = || {
            let dst = work.path().join(format!("ours-{round}"));
            fs::create_dir(&dst).unwrap();
            sync();
            let t = echoxfer(&tree, &dst, direct);
            assert!(
                snapshot(&dst.join("tree")) == want,
                "echoxfer's tree differs"
            );
            t
        };
        let run_base = || {
            let dst = work.path().join(format!("tar-{round}"));
            fs::create_dir(&dst).unwrap();
            sync();
            let t = tar_pipe(work.path(), &dst, socat);
            // tar keeps times to the second only.
            let seconds = |m: &BTreeMap<PathBuf, (blake3::Hash, u32, i64, i64)>| {
                m.iter()
                    .map(|(p, v)| (p.clone(), (v.0, v.1, v.2)))
                    .collect::<Vec<_>>()
            };
            assert!(
                seconds(&snapshot(&dst.join("tree"))) == seconds(&want),
                "tar's tree differs"
            );
            t
        };
        let (a, b) = if round % 2 == 0 {
            let a = run_ours();
            (a, run_base())
        } else {
            let b = run_base();
            (run_ours(), b)
        };
        println!(
            "round {round}: echoxfer {:>6.2} s   tar|socat|tar+sync {:>6.2} s   ratio {:.2}",
            a.as_secs_f64(),
            b.as_secs_f64(),
            a.as_secs_f64() / b.as_secs_f64()
        );
        ours.push(a.as_secs_f64());
        base.push(b.as_secs_f64());
        let dst = work.path().join(format!("rsync-{round}"));
        fs::create_dir(&dst).unwrap();
        sync();
        if let Some(t) = rsync(work.path(), &dst, work.path()) {
            println!(
                "round {round}: rsync -rW --fsync (daemon) {:>6.2} s",
                t.as_secs_f64()
            );
            rs.push(t.as_secs_f64());
        }
    }
    let (o, b) = (median(ours), median(base));
    println!(
        "median: echoxfer {o:.2} s, tar|socat|tar+sync {b:.2} s: ratio {:.2} (target <= 2.0)",
        o / b
    );
    if rs.is_empty() {
        println!("rsync: not installed here, not timed");
    } else {
        let r = median(rs);
        println!("median: rsync {r:.2} s: echoxfer / rsync {:.2}", o / r);
    }
    slow(work.path());
}

/// The same kind of folder, smaller, over a 20 ms round trip.
fn slow(work: &Path) {
    let files = env("SLOW_FILES", 500);
    let root = work.join("slow");
    fs::create_dir(&root).unwrap();
    let tree = make_tree(&root, files);
    let want = snapshot(&tree);
    let dst = root.join("dst");
    fs::create_dir(&dst).unwrap();
    let t = echoxfer(&tree, &dst, slow_link);
    assert!(
        snapshot(&dst.join("tree")) == want,
        "the slow link's tree differs"
    );
    println!(
        "slow link (20 ms round trip): {files} files of 4 KiB in {:.2} s (target <= 1 s; {:.1} round trips' worth)",
        t.as_secs_f64(),
        t.as_secs_f64() / 0.020
    );
}
