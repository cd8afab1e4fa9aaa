//! Folders: many small files, echoxfer against `tar c | socat | tar x`
//! followed by `sync -f` (syncfs on the receiving file system), interleaved
//! in one run; and the same kind of folder over a slow link (a 20 ms round
//! trip through a delaying relay in this process: this kernel has no
//! netem). echoxfer runs twice per round, as two processes from the
//! receiver's start to both exits: secure (the default: a code, SPAKE2,
//! AES-256-GCM records) and plaintext (`--insecure`; the baseline encrypts
//! nothing). Both verify every file (BLAKE3) and make each durable before
//! it gets its name (group commit); the baseline makes nothing durable
//! until its final `sync -f`. If `socat` is missing, in-process copies
//! stand in for it (the same bytes through the same loopback socket).
//! rsync (daemon over loopback, `-rWtp --fsync`) is a contender too when
//! installed.
//!
//! Each round runs every contender once, in rotating order, with `sync`
//! before each run; every received tree is checked and removed at once.
//! Prints each run, then per ratio the median of the per-round ratios
//! with min and max, the median over undisturbed rounds and the per-round
//! list (each contender against the baseline, secure / plaintext), and
//! each echoxfer side's CPU seconds (per GiB and per run). See
//! `benches/common/rounds.rs` for the order and the "disturbed" rule.
//! Asserts that every received tree is identical to its source (paths,
//! content, permission bits and modification times; tar and rsync to the
//! second); asserts nothing about speed.
//!
//! `cargo bench --bench folder` (env: `FILES`, default 10000, in 20
//! directories, 4 KiB each; `ROUNDS`, default 5; `WARMUP` rounds, default
//! 1; `SLOW_FILES`, default 500, for the slow link, one plaintext run;
//! `BENCH_DIR`, default the system's temporary directory).
//!
//! `cargo test` does not build it; `cargo test --benches` (or
//! `--all-targets`) builds it and it returns at once: it runs only when
//! given `--bench`, as `cargo bench` does.

#[path = "common/rounds.rs"]
mod rounds;

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use rounds::{contender, env, sync, syncfs, wait_cost, Cost, Plan, Sample};

/// The code both sides get for a secure run.
const CODE: &str = "1-bench-acorn-bell";

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

/// echoxfer `receive --once` and `send`, both with `flags`, the sender
/// to `via(addr)`. Timed from the receiver's start until both have exited.
fn echoxfer(
    tree: &Path,
    dst: &Path,
    flags: &[&str],
    via: impl FnOnce(&str) -> (String, Option<Child>),
) -> (Duration, Cost, Cost) {
    let bin = env!("CARGO_BIN_EXE_echoxfer");
    let start = Instant::now();
    let mut rx = Command::new(bin)
        .args(["receive", "--once", "--quiet", "--listen", "127.0.0.1:0"])
        .args(flags)
        .arg("--dir")
        .arg(dst)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr = listening(&mut rx);
    let (to, proxy) = via(&addr);
    let tx = Command::new(bin)
        .args(["send", "--quiet", "--to", &to])
        .args(flags)
        .arg(tree)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let send = wait_cost(tx);
    let recv = wait_cost(rx);
    let took = start.elapsed();
    if let Some(mut p) = proxy {
        let _ = p.kill();
        let _ = p.wait();
    }
    (took, send, recv)
}

fn direct(addr: &str) -> (String, Option<Child>) {
    (addr.to_string(), None)
}

/// `tar c -C src tree | socat | tar x -C dst`, then `sync -f dst`. With
/// `socat`, the real one at both ends (`socat -u - TCP:...` and `socat -u
/// TCP-LISTEN:... EXEC:tar x`); without, copies in this process between
/// the tar processes and one loopback connection.
fn tar_pipe(src: &Path, dst: &Path, socat: bool) -> Duration {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let start = Instant::now();
    let mut untar = if socat {
        drop(listener);
        Command::new("socat")
            .args([
                "-u",
                &format!("TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr"),
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
    let out = tar.stdout.take().unwrap();
    if socat {
        let status = Command::new("socat")
            .args(["-u", "-"])
            .arg(format!("TCP:127.0.0.1:{port},retry=1000,interval=0.002"))
            .stdin(out)
            .status()
            .unwrap();
        assert!(status.success(), "socat (sending) failed");
    } else {
        relay_out(out, port, start);
    }
    assert!(tar.wait().unwrap().success());
    assert!(untar.wait().unwrap().success());
    syncfs(dst);
    start.elapsed()
}

/// Copies `out` into a connection to `port` (128 KiB at a time), retrying
/// the connect until the other side listens.
fn relay_out(mut out: impl Read, port: u16, start: Instant) {
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

type Snapshot = BTreeMap<PathBuf, (blake3::Hash, u32, i64, i64)>;

/// A snapshot with times to the second (tar and rsync keep no more here).
fn to_seconds(m: &Snapshot) -> Vec<(PathBuf, (blake3::Hash, u32, i64))> {
    m.iter()
        .map(|(p, v)| (p.clone(), (v.0, v.1, v.2)))
        .collect()
}

fn main() {
    if rounds::not_benching() {
        return;
    }
    let files = env("FILES", 10_000);
    let bytes = files * 4096;
    let plan = Plan::from_env(5, Some(bytes), move |t| {
        format!("{:.0} files/s", files as f64 / t.as_secs_f64())
    });
    let work = match std::env::var_os("BENCH_DIR") {
        Some(dir) => tempfile::tempdir_in(dir).unwrap(),
        None => tempfile::tempdir().unwrap(),
    };
    let w = work.path();
    let tree = make_tree(w, files);
    let want = snapshot(&tree);
    sync();
    let socat = Command::new("socat").arg("-V").output().is_ok();
    let have_rsync = Command::new("rsync").arg("--version").output().is_ok();
    println!(
        "{files} files of 4 KiB in 20 directories under {}, {} rounds after {} warm-up; baseline: tar c | {} | tar x, then sync -f; rsync {}",
        w.display(),
        plan.rounds,
        plan.warmup,
        if socat {
            "socat"
        } else {
            "TCP relay in this process (no socat here)"
        },
        if have_rsync { "timed too" } else { "not installed, not timed" }
    );
    let (tree, want) = (&tree, &want);
    let ours = |name: &'static str, flags: &'static [&'static str]| {
        move || {
            let dst = w.join(format!("echoxfer-{name}"));
            fs::create_dir(&dst).unwrap();
            let (time, send, recv) = echoxfer(tree, &dst, flags, direct);
            assert!(
                snapshot(&dst.join("tree")) == *want,
                "echoxfer {name}: tree differs"
            );
            fs::remove_dir_all(&dst).unwrap();
            Sample {
                time,
                sides: Some((send, recv)),
            }
        }
    };
    let mut contenders = vec![
        contender(
            if socat {
                "tar|socat|tar + sync -f"
            } else {
                "tar|relay|tar + sync -f"
            },
            || {
                let dst = w.join("tar");
                fs::create_dir(&dst).unwrap();
                let t = tar_pipe(w, &dst, socat);
                assert!(
                    to_seconds(&snapshot(&dst.join("tree"))) == to_seconds(want),
                    "tar's tree differs"
                );
                fs::remove_dir_all(&dst).unwrap();
                Sample::time(t)
            },
        ),
        contender("echoxfer secure", ours("secure", &["--code", CODE])),
        contender("echoxfer plaintext", ours("plaintext", &["--insecure"])),
    ];
    if have_rsync {
        contenders.push(contender("rsync -rWtp --fsync", || {
            let dst = w.join("rsync");
            fs::create_dir(&dst).unwrap();
            let t = rsync(w, &dst, w).expect("rsync ran");
            assert!(
                to_seconds(&snapshot(&dst.join("tree"))) == to_seconds(want),
                "rsync's tree differs"
            );
            fs::remove_dir_all(&dst).unwrap();
            Sample::time(t)
        }));
    }
    let runs = rounds::run(&plan, &mut contenders);
    let mut pairs = vec![(1, 2)];
    if have_rsync {
        pairs.push((1, 3));
    }
    rounds::report(&plan, &runs, &pairs);
    for i in [1, 2] {
        let per_run = |f: fn(&(Cost, Cost)) -> f64| {
            let v: Vec<f64> = runs.sides[i].iter().flatten().map(f).collect();
            rounds::median(&v)
        };
        let (tx, rx) = (per_run(|s| s.0.cpu()), per_run(|s| s.1.cpu()));
        println!(
            "  CPU s per run, {}: sender {tx:.2}, receiver {rx:.2} (medians; {:.1} MiB a run)",
            runs.names[i],
            bytes as f64 / (1 << 20) as f64
        );
    }
    println!(
        "target: echoxfer at most twice the baseline's time, i.e. a speed ratio against it of at least 0.50"
    );
    slow(w);
}

/// The same kind of folder, smaller, over a 20 ms round trip (plaintext,
/// one run).
fn slow(work: &Path) {
    let files = env("SLOW_FILES", 500);
    let root = work.join("slow");
    fs::create_dir(&root).unwrap();
    let tree = make_tree(&root, files);
    let want = snapshot(&tree);
    let dst = root.join("dst");
    fs::create_dir(&dst).unwrap();
    sync();
    let (t, _, _) = echoxfer(&tree, &dst, &["--insecure"], slow_link);
    assert!(
        snapshot(&dst.join("tree")) == want,
        "the slow link's tree differs"
    );
    fs::remove_dir_all(&root).unwrap();
    println!(
        "slow link (20 ms round trip): {files} files of 4 KiB in {:.2} s (target <= 1 s; {:.1} round trips' worth)",
        t.as_secs_f64(),
        t.as_secs_f64() / 0.020
    );
}
