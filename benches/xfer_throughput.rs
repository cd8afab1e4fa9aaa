//! File-transfer throughput, CPU and memory: echoxfer (`send` / `receive`
//! as two processes, BLAKE3 verification and fsync on) against a tuned raw
//! socket copy of the same bytes to disk (the baseline: 128 KiB reads and
//! writes over loopback, fsync at the end, as `socat -b 131072` plus
//! `sync`), interleaved in one run. echoxfer runs three ways: encrypted on
//! the blocking driver (the default: a code, SPAKE2, AES-256-GCM records),
//! plaintext (`--insecure`), and encrypted on the tokio driver
//! (`--runtime tokio` on both sides). When `socat` is installed, the real
//! `socat -u -b 131072` (then an fsync of the output) runs as one more
//! contender.
//!
//! Each round runs every contender once, in rotating order, with `sync`
//! before each run; every output is checked (BLAKE3 of the whole file) and
//! removed at once, on every file system. Prints each run (time, rate,
//! each echoxfer process's CPU and peak RSS), then per ratio the median of
//! the per-round ratios with min and max, the median over undisturbed
//! rounds and the per-round list: each contender against the baseline,
//! encrypted / plaintext, tokio / blocking, and encrypted / socat. CPU
//! seconds per GiB, per side, for the process runs. See
//! `benches/common/rounds.rs` for the order and the "disturbed" rule.
//! Asserts that every received file is identical; asserts nothing about
//! speed.
//!
//! `cargo bench --bench xfer_throughput` (env: `SIZE` in MiB, default 1024;
//! `ROUNDS`, default 5; `WARMUP` rounds, default 1; `BENCH_DIR=/dev/shm`
//! to take the disk out).
//!
//! `cargo test` does not build it; `cargo test --benches` (or
//! `--all-targets`) builds it and it returns at once: it runs only when
//! given `--bench`, as `cargo bench` does.

#[path = "common/rounds.rs"]
mod rounds;

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use rounds::{contender, env, wait_cost, Plan, Sample};

const BLOCK: usize = 128 * 1024;
const MIB: u64 = 1024 * 1024;

/// Writes `size` pseudo-random bytes (BLAKE3 in XOF mode: fast, repeatable).
fn make_source(path: &Path, size: u64) {
    let mut xof = blake3::Hasher::new()
        .update(b"echoxfer bench")
        .finalize_xof();
    let mut f = File::create(path).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        xof.fill(&mut buf[..n]);
        f.write_all(&buf[..n]).unwrap();
        left -= n as u64;
    }
    f.sync_all().unwrap();
}

fn hash_file(path: &Path) -> blake3::Hash {
    let mut h = blake3::Hasher::new();
    h.update_reader(File::open(path).unwrap()).unwrap();
    h.finalize()
}

/// The baseline: a raw copy over loopback into a file, fsynced at the end.
fn baseline(src: &Path, dst: &Path) -> Duration {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let dst = dst.to_path_buf();
    let start = Instant::now();
    let receiver = thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut out = File::create(dst).unwrap();
        let mut buf = vec![0u8; BLOCK];
        loop {
            let n = s.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n]).unwrap();
        }
        out.sync_all().unwrap();
    });
    let mut s = TcpStream::connect(addr).unwrap();
    let mut f = File::open(src).unwrap();
    let mut buf = vec![0u8; BLOCK];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        s.write_all(&buf[..n]).unwrap();
    }
    drop(s);
    receiver.join().unwrap();
    start.elapsed()
}

fn have_socat() -> bool {
    Command::new("socat")
        .arg("-V")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `socat -u -b 131072` both ends (listener to a file, file to a
/// connection), then an fsync of the file, as the baseline does.
fn socat(src: &Path, dst: &Path) -> (Duration, rounds::Cost, rounds::Cost) {
    // A free port: socat cannot say which one it bound.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let start = Instant::now();
    let receiver = Command::new("socat")
        .args(["-u", "-b", "131072"])
        .arg(format!("TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr"))
        .arg(format!("CREATE:{}", dst.display()))
        .spawn()
        .unwrap();
    let sender = Command::new("socat")
        .args(["-u", "-b", "131072"])
        .arg(format!("OPEN:{},rdonly", src.display()))
        .arg(format!("TCP:127.0.0.1:{port},retry=1000,interval=0.002"))
        .spawn()
        .unwrap();
    let send = wait_cost(sender);
    let recv = wait_cost(receiver);
    File::open(dst).unwrap().sync_all().unwrap();
    (start.elapsed(), send, recv)
}

/// How an echoxfer run goes: the flags both sides get.
#[derive(Debug, Clone, Copy)]
enum Mode {
    Encrypted,
    Plaintext,
    EncryptedTokio,
}

impl Mode {
    fn flags(self) -> &'static [&'static str] {
        match self {
            Mode::Encrypted => &["--code", "1-bench-acorn-bell"],
            Mode::Plaintext => &["--insecure"],
            Mode::EncryptedTokio => &["--code", "1-bench-acorn-bell", "--runtime", "tokio"],
        }
    }

    fn name(self) -> &'static str {
        match self {
            Mode::Encrypted => "encrypted",
            Mode::Plaintext => "plaintext",
            Mode::EncryptedTokio => "encrypted-tokio",
        }
    }
}

/// echoxfer `receive --once` and `send` as two processes.
fn echoxfer(src: &Path, dir: &Path, mode: Mode) -> (Duration, rounds::Cost, rounds::Cost) {
    let bin = env!("CARGO_BIN_EXE_echoxfer");
    let start = Instant::now();
    let mut receiver = Command::new(bin)
        .args([
            "receive",
            "--listen",
            "127.0.0.1:0",
            "--once",
            "--quiet",
            "--dir",
        ])
        .arg(dir)
        .args(mode.flags())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(receiver.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("receiver prints its address").unwrap();
        if let Some(a) = line.strip_prefix("listening on ") {
            break a.trim().to_string();
        }
    };
    let sender = Command::new(bin)
        .args(["send", "--quiet", "--to", &addr])
        .args(mode.flags())
        .arg(src)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let send = wait_cost(sender);
    let recv = wait_cost(receiver);
    (start.elapsed(), send, recv)
}

fn main() {
    if rounds::not_benching() {
        return;
    }
    let size = env("SIZE", 1024) * MIB;
    let plan = Plan::from_env(5, Some(size), move |t| rounds::mb_per_s(size, t));
    // BENCH_DIR=/dev/shm takes the disk out and leaves the protocol's CPU cost.
    let work = match std::env::var_os("BENCH_DIR") {
        Some(dir) => tempfile::tempdir_in(dir).unwrap(),
        None => tempfile::tempdir().unwrap(),
    };
    let src: PathBuf = work.path().join("source.bin");
    make_source(&src, size);
    let want = hash_file(&src);
    let socat_here = have_socat();
    println!(
        "file transfer of {} MiB over loopback into {}, {} rounds after {} warm-up; socat {}",
        size / MIB,
        work.path().display(),
        plan.rounds,
        plan.warmup,
        if socat_here {
            "installed: timed too"
        } else {
            "not installed: not timed"
        }
    );
    let w = work.path();
    let (src, want) = (&src, want);
    let run_ours = |mode: Mode| {
        move || {
            let dir = w.join(format!("echoxfer-{}", mode.name()));
            std::fs::create_dir(&dir).unwrap();
            let (time, send, recv) = echoxfer(src, &dir, mode);
            let got = dir.join("source.bin");
            assert_eq!(
                hash_file(&got),
                want,
                "echoxfer {}: file differs",
                mode.name()
            );
            std::fs::remove_dir_all(&dir).unwrap();
            Sample {
                time,
                sides: Some((send, recv)),
            }
        }
    };
    let mut contenders = vec![
        contender("raw copy + fsync", || {
            let dst = w.join("baseline.bin");
            let t = baseline(src, &dst);
            assert_eq!(hash_file(&dst), want, "baseline copy differs");
            std::fs::remove_file(&dst).unwrap();
            Sample::time(t)
        }),
        contender("encrypted (blocking)", run_ours(Mode::Encrypted)),
        contender("plaintext (blocking)", run_ours(Mode::Plaintext)),
        contender("encrypted (tokio)", run_ours(Mode::EncryptedTokio)),
    ];
    if socat_here {
        contenders.push(contender("socat + fsync", || {
            let dst = w.join("socat.bin");
            let (time, send, recv) = socat(src, &dst);
            assert_eq!(hash_file(&dst), want, "socat copy differs");
            std::fs::remove_file(&dst).unwrap();
            Sample {
                time,
                sides: Some((send, recv)),
            }
        }));
    }
    let runs = rounds::run(&plan, &mut contenders);
    // Encrypted / plaintext, tokio / blocking (both encrypted), and
    // encrypted against the real socat.
    let mut pairs = vec![(1, 2), (3, 1)];
    if socat_here {
        pairs.push((1, 4));
        pairs.push((3, 4));
    }
    rounds::report(&plan, &runs, &pairs);
}
