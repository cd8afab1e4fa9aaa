//! File-transfer throughput and memory: echoxfer (`send` / `receive` as
//! two processes, BLAKE3 verification and fsync on) against a tuned raw
//! socket copy of the same bytes to disk (128 KiB reads and writes, fsync
//! at the end, as `socat -b 131072` plus `sync`), side by side in one run.
//! Prints throughputs, their ratio, and each echoxfer process's peak RSS.
//! echoxfer runs twice per round: encrypted (the default: a code, SPAKE2,
//! AES-256-GCM records) and plaintext (`--insecure`), and the ratio of the
//! two is printed too.
//! Asserts that the received file is identical; asserts nothing about speed.
//!
//! `cargo bench --bench xfer_throughput` (env: `SIZE` in MiB, default 1024;
//! `ROUNDS`, default 5, alternating which goes first; `BENCH_DIR=/dev/shm`
//! to take the disk out, in which case each output is removed once
//! checked, so that the runs do not fill memory). Prints the median and
//! the range of each, their ratios, and encrypted / plaintext per round
//! (the two run next to each other) with its median.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

const BLOCK: usize = 128 * 1024;
const MIB: u64 = 1024 * 1024;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

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

/// What one process cost: peak resident set size (KiB) and CPU seconds
/// (user, system).
struct Cost {
    rss_kib: u64,
    user: f64,
    sys: f64,
}

impl std::fmt::Display for Cost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "peak RSS {} KiB, CPU {:.2} s user + {:.2} s sys",
            self.rss_kib, self.user, self.sys
        )
    }
}

fn seconds(t: libc::timeval) -> f64 {
    t.tv_sec as f64 + t.tv_usec as f64 / 1e6
}

/// Waits for a child and returns what it cost.
fn wait_cost(child: std::process::Child) -> Cost {
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waiting on our own child; the pointers are valid for the call.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert!(pid > 0, "wait4 failed");
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "child failed: {status}"
    );
    Cost {
        rss_kib: usage.ru_maxrss as u64,
        user: seconds(usage.ru_utime),
        sys: seconds(usage.ru_stime),
    }
}

/// How an echoxfer run authenticates: the flags both sides get.
#[derive(Debug, Clone, Copy)]
enum Mode {
    Encrypted,
    Plaintext,
}

impl Mode {
    fn flags(self) -> &'static [&'static str] {
        match self {
            Mode::Encrypted => &["--code", "1-bench-acorn-bell"],
            Mode::Plaintext => &["--insecure"],
        }
    }

    fn name(self) -> &'static str {
        match self {
            Mode::Encrypted => "encrypted",
            Mode::Plaintext => "plaintext",
        }
    }
}

/// echoxfer `receive --once` and `send` as two processes.
fn echoxfer(src: &Path, dir: &Path, mode: Mode) -> (Duration, Cost, Cost) {
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
        .spawn()
        .unwrap();
    let send = wait_cost(sender);
    let recv = wait_cost(receiver);
    (start.elapsed(), send, recv)
}

/// Starts each timed run with no dirty pages left by the previous one, so
/// neither side pays for the other's write-back. Outputs are kept until the
/// end of the run: deleting a freshly written GiB on a `discard` mount
/// makes the next run pay for the trim.
fn settle() {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
}

fn mb_per_s(size: u64, t: Duration) -> f64 {
    size as f64 / 1e6 / t.as_secs_f64()
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// Timed runs of both methods, in alternating order so that neither always
/// follows the other.
struct Runs {
    baseline: Vec<Duration>,
    ours: Vec<Duration>,
    plaintext: Vec<Duration>,
}

fn run_baseline(work: &Path, src: &Path, round: u64, want: blake3::Hash, remove: bool) -> Duration {
    let dst = work.join(format!("baseline-{round}.bin"));
    settle();
    let t = baseline(src, &dst);
    assert_eq!(hash_file(&dst), want, "baseline copy differs");
    if remove {
        std::fs::remove_file(&dst).unwrap();
    }
    println!(
        "round {round}: baseline raw copy + fsync: {:>8.1} MB/s",
        mb_per_s(file_len(src), t)
    );
    t
}

fn run_ours(
    work: &Path,
    src: &Path,
    round: u64,
    want: blake3::Hash,
    mode: Mode,
    remove: bool,
) -> Duration {
    let dir = work.join(format!("echoxfer-{}-{round}", mode.name()));
    std::fs::create_dir(&dir).unwrap();
    settle();
    let (t, send, recv) = echoxfer(src, &dir, mode);
    assert_eq!(
        hash_file(&dir.join("source.bin")),
        want,
        "received file differs"
    );
    if remove {
        std::fs::remove_dir_all(&dir).unwrap();
    }
    println!(
        "round {round}: echoxfer {:<9} (BLAKE3 + fsync): {:>8.1} MB/s  sender {send}; receiver {recv}",
        mode.name(),
        mb_per_s(file_len(src), t)
    );
    t
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

fn main() {
    let size = env("SIZE", 1024) * MIB;
    let rounds = env("ROUNDS", 5);
    // BENCH_DIR=/dev/shm takes the disk out and leaves the protocol's CPU cost.
    // Outputs in memory are removed once checked, so the runs do not fill it.
    let remove_outputs = std::env::var_os("BENCH_DIR").is_some();
    let work = match std::env::var_os("BENCH_DIR") {
        Some(dir) => tempfile::tempdir_in(dir).unwrap(),
        None => tempfile::tempdir().unwrap(),
    };
    let src: PathBuf = work.path().join("source.bin");
    make_source(&src, size);
    let want = hash_file(&src);
    println!(
        "file transfer of {} MiB over loopback to disk, {rounds} rounds",
        size / MIB
    );
    let mut runs = Runs {
        baseline: Vec::new(),
        ours: Vec::new(),
        plaintext: Vec::new(),
    };
    let w = work.path();
    for round in 0..rounds {
        // Each of the three goes first in turn.
        for step in 0..3 {
            match (round + step) % 3 {
                0 => runs
                    .baseline
                    .push(run_baseline(w, &src, round, want, remove_outputs)),
                1 => runs.ours.push(run_ours(
                    w,
                    &src,
                    round,
                    want,
                    Mode::Encrypted,
                    remove_outputs,
                )),
                _ => runs.plaintext.push(run_ours(
                    w,
                    &src,
                    round,
                    want,
                    Mode::Plaintext,
                    remove_outputs,
                )),
            }
        }
    }
    report(size, &mut runs);
}

/// The ratio of medians is the figure to quote: a shared virtual disk
/// bursts and throttles, and the median of alternating runs rides over it.
fn report(size: u64, runs: &mut Runs) {
    // Per round, before the sorting below: the two echoxfer runs of a
    // round run next to each other, so their ratio rides over slower spells.
    let mut per_round: Vec<f64> = (runs.plaintext.iter().zip(&runs.ours))
        .map(|(p, o)| p.as_secs_f64() / o.as_secs_f64())
        .collect();
    let listed: Vec<String> = per_round.iter().map(|r| format!("{r:.2}")).collect();
    per_round.sort_by(f64::total_cmp);
    let (base, ours) = (median(&mut runs.baseline), median(&mut runs.ours));
    let plain = median(&mut runs.plaintext);
    for (name, times, med) in [
        ("baseline", &runs.baseline, base),
        ("echoxfer encrypted", &runs.ours, ours),
        ("echoxfer plaintext (--insecure)", &runs.plaintext, plain),
    ] {
        // Sorted by `median`: slowest last.
        println!(
            "{name}: median {:.1} MB/s (range {:.1}-{:.1})",
            mb_per_s(size, med),
            mb_per_s(size, times[times.len() - 1]),
            mb_per_s(size, times[0])
        );
    }
    println!(
        "ratio echoxfer encrypted / baseline (medians of {} rounds): {:.2}",
        runs.ours.len(),
        base.as_secs_f64() / ours.as_secs_f64()
    );
    println!(
        "ratio echoxfer plaintext / baseline: {:.2}",
        base.as_secs_f64() / plain.as_secs_f64()
    );
    println!(
        "ratio echoxfer encrypted / plaintext (same run): {:.2}",
        plain.as_secs_f64() / ours.as_secs_f64()
    );
    println!(
        "ratio echoxfer encrypted / plaintext per round: {}; median {:.2}",
        listed.join(", "),
        per_round[per_round.len() / 2]
    );
}
