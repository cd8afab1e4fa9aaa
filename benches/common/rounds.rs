//! Interleaved rounds, shared by the benches (included with `#[path]`).
//!
//! Each round runs every contender once, in an order that rotates from
//! round to round (and runs backwards every other cycle, so that each
//! contender also follows each of its neighbours). Before every timed run,
//! `sync` runs (timed apart, printed as "settle"), so that no run pays for
//! the write-back, or the deletion, of the one before. A contender's run
//! removes its own output once it has checked it, on every file system:
//! nothing accumulates from run to run.
//!
//! The figures to quote are ratios computed within a round, where the
//! contenders ran minutes apart at most: per round, the speed of each
//! contender against the baseline (contender 0) and of the pairs a bench
//! names. The report gives, per ratio, the median of the per-round ratios
//! with their min and max, and the per-round list. Ratios are of speed:
//! `A / B` is B's time over A's time, above 1 when A is faster.
//!
//! A round is *disturbed* when the baseline's time in it is more than 1.5x
//! the baseline's median time: the baseline is the simplest contender and
//! the most repeatable, so a slow baseline says the machine (the shared
//! disk, the CPU) was slow then, whatever the other contenders did. The
//! report names those rounds and also gives each ratio's median over the
//! undisturbed ones. Runs of other contenders more than 1.5x their own
//! median in an undisturbed round are listed too, as slow runs, but do not
//! mark the round: that rule would drop a contender's own bad runs and
//! flatter it.
//!
//! A bench runs only when given `--bench` (as `cargo bench` does): see
//! `not_benching`.
//!
//! Untimed warm-up rounds (`WARMUP`, default 1) come first, so that no
//! contender pays for cold caches (the binary, the source file's pages).

#![allow(dead_code)]

use std::fmt::Write as _;
use std::process::Child;
use std::time::{Duration, Instant};

/// Bytes in a GiB, for CPU seconds per GiB.
pub const GIB: f64 = (1u64 << 30) as f64;

/// How far over the baseline's median a round's baseline time marks the
/// round disturbed (and any run is listed as slow).
pub const DISTURBED: f64 = 1.5;

/// True unless the bench was started by `cargo bench`, which passes
/// `--bench`: `cargo test --benches` (or `--all-targets`) builds a
/// `harness = false` bench and runs its `main` with no arguments, and a
/// bench must not run there; it says so and the caller returns.
pub fn not_benching() -> bool {
    if std::env::args().skip(1).any(|a| a == "--bench") {
        return false;
    }
    let arg0 = std::env::args().next().unwrap_or_default();
    let name = std::path::Path::new(&arg0)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or(arg0);
    println!("{name}: a bench, not run without --bench (`cargo bench` passes it)");
    true
}

/// An environment variable parsed as a number, or `default`.
pub fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `sync(2)`: every dirty page of every file system to its disk.
pub fn sync() {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
}

/// `sync -f PATH`: syncfs(2) on the file system holding `path` (Linux;
/// elsewhere `sync(2)`, which syncs every file system).
pub fn syncfs(path: &std::path::Path) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let f = std::fs::File::open(path).unwrap();
        // SAFETY: the descriptor is open for the duration of the call.
        let r = unsafe { libc::syncfs(f.as_raw_fd()) };
        assert_eq!(r, 0, "syncfs failed: {}", std::io::Error::last_os_error());
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = path;
        sync();
    }
}

/// What one process cost: peak resident set size (KiB) and CPU seconds
/// (user, system).
#[derive(Debug, Clone, Copy, Default)]
pub struct Cost {
    pub rss_kib: u64,
    pub user: f64,
    pub sys: f64,
}

impl Cost {
    pub fn cpu(&self) -> f64 {
        self.user + self.sys
    }
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

/// Waits for a child (wait4) and returns what it cost; panics unless it
/// exited with status 0.
pub fn wait_cost(child: Child) -> Cost {
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

/// One timed run.
pub struct Sample {
    pub time: Duration,
    /// The sending and the receiving process, when the run was two processes.
    pub sides: Option<(Cost, Cost)>,
}

impl Sample {
    pub fn time(time: Duration) -> Self {
        Sample { time, sides: None }
    }
}

/// A named way of doing the work. `run` prepares (untimed), does the work
/// (timed, the time it returns), checks the output and removes it.
pub struct Contender<'a> {
    pub name: String,
    run: Box<dyn FnMut() -> Sample + 'a>,
}

pub fn contender<'a>(name: impl Into<String>, run: impl FnMut() -> Sample + 'a) -> Contender<'a> {
    Contender {
        name: name.into(),
        run: Box::new(run),
    }
}

/// What a run does, to print rates and CPU per GiB.
pub struct Plan {
    /// Timed rounds (`ROUNDS`).
    pub rounds: usize,
    /// Untimed rounds first (`WARMUP`).
    pub warmup: usize,
    /// Bytes one run moves (for CPU seconds per GiB), if it moves bytes.
    pub bytes: Option<u64>,
    /// A run's rate, for its line and the summary, e.g. "812.3 MB/s".
    pub rate: Box<dyn Fn(Duration) -> String>,
}

impl Plan {
    /// `ROUNDS` (default `rounds`, at least 1) and `WARMUP` (default 1).
    pub fn from_env(
        rounds: u64,
        bytes: Option<u64>,
        rate: impl Fn(Duration) -> String + 'static,
    ) -> Self {
        Plan {
            rounds: env("ROUNDS", rounds).max(1) as usize,
            warmup: env("WARMUP", 1) as usize,
            bytes,
            rate: Box::new(rate),
        }
    }
}

/// A rate in MB/s (10^6 bytes) for `bytes` moved in `t`.
pub fn mb_per_s(bytes: u64, t: Duration) -> String {
    format!("{:.1} MB/s", bytes as f64 / 1e6 / t.as_secs_f64())
}

/// The order of the contenders in `round`: rotated by the round, backwards
/// every other cycle of `n` rounds.
pub fn order(round: usize, n: usize) -> Vec<usize> {
    let mut v: Vec<usize> = (0..n).map(|i| (round + i) % n).collect();
    if (round / n) % 2 == 1 {
        v.reverse();
    }
    v
}

/// Every timed run, by contender then round.
pub struct Runs {
    pub names: Vec<String>,
    pub times: Vec<Vec<Duration>>,
    pub sides: Vec<Vec<Option<(Cost, Cost)>>>,
}

/// For a profiler: with `ONLY=<index>` set, runs that contender alone,
/// `plan.rounds` times, printing each time, and returns true (the bench
/// then returns, with no report). `perf record` or `perf stat` around such
/// a run sees one contender's costs and nothing else's.
pub fn only(plan: &Plan, contenders: &mut [Contender]) -> bool {
    let Some(i) = std::env::var("ONLY")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    else {
        return false;
    };
    let c = &mut contenders[i];
    for round in 0..plan.rounds {
        let s = (c.run)();
        println!(
            "only {i}, round {round}: {} {:.3} s  {}",
            c.name,
            s.time.as_secs_f64(),
            (plan.rate)(s.time)
        );
    }
    true
}

/// Runs the warm-up and the timed rounds, printing a line per run.
/// Contender 0 is the baseline.
pub fn run(plan: &Plan, contenders: &mut [Contender]) -> Runs {
    let n = contenders.len();
    let width = contenders.iter().map(|c| c.name.len()).max().unwrap_or(0);
    let mut runs = Runs {
        names: contenders.iter().map(|c| c.name.clone()).collect(),
        times: vec![Vec::new(); n],
        sides: vec![Vec::new(); n],
    };
    for w in 0..plan.warmup {
        for (i, c) in contenders.iter_mut().enumerate() {
            sync();
            let s = (c.run)();
            println!(
                "warm-up {w}, {}/{n}: {:<width$} {:>7.3} s  {:>12}  (not counted)",
                i + 1,
                c.name,
                s.time.as_secs_f64(),
                (plan.rate)(s.time)
            );
        }
    }
    for round in 0..plan.rounds {
        for (pos, i) in order(round, n).into_iter().enumerate() {
            let c = &mut contenders[i];
            let t = Instant::now();
            sync();
            let settle = t.elapsed();
            let s = (c.run)();
            let mut line = format!(
                "round {round}, {}/{n}: {:<width$} {:>7.3} s  {:>12}  (settle {:.2} s)",
                pos + 1,
                c.name,
                s.time.as_secs_f64(),
                (plan.rate)(s.time),
                settle.as_secs_f64()
            );
            if let Some((tx, rx)) = s.sides {
                let _ = write!(line, "\n    sender {tx}; receiver {rx}");
            }
            println!("{line}");
            runs.times[i].push(s.time);
            runs.sides[i].push(s.sides);
        }
    }
    runs
}

/// The median (the mean of the middle two of an even count).
pub fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

fn min_max(v: &[f64]) -> (f64, f64) {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (lo, hi)
}

fn secs(v: &[Duration]) -> Vec<f64> {
    v.iter().map(Duration::as_secs_f64).collect()
}

/// The per-round speed ratio `a / b` (b's time over a's), by round.
pub fn ratios(runs: &Runs, a: usize, b: usize) -> Vec<f64> {
    (runs.times[a].iter().zip(&runs.times[b]))
        .map(|(ta, tb)| tb.as_secs_f64() / ta.as_secs_f64())
        .collect()
}

/// Which rounds are disturbed: the baseline's time over `DISTURBED` times
/// its median.
pub fn disturbed(runs: &Runs) -> Vec<bool> {
    let base = secs(&runs.times[0]);
    let m = median(&base);
    base.iter().map(|t| *t > DISTURBED * m).collect()
}

/// Prints the summary: each contender's times and CPU, the disturbed
/// rounds, then per ratio (each contender against the baseline, then
/// `pairs`, as (a, b) for a / b) the median of per-round ratios, min, max,
/// the median over undisturbed rounds and the per-round list. Returns the
/// per-ratio medians, in that order, for a bench's own remarks.
pub fn report(plan: &Plan, runs: &Runs, pairs: &[(usize, usize)]) -> Vec<f64> {
    let n = runs.names.len();
    let rounds = runs.times[0].len();
    let width = runs.names.iter().map(String::len).max().unwrap_or(0);
    println!();
    println!(
        "summary of {rounds} rounds (contenders interleaved, order rotating, sync before each run)"
    );
    for i in 0..n {
        let t = secs(&runs.times[i]);
        let m = median(&t);
        let (lo, hi) = min_max(&t);
        println!(
            "  {:<width$}  median {m:.3} s ({})  min {lo:.3} s  max {hi:.3} s",
            runs.names[i],
            (plan.rate)(Duration::from_secs_f64(m)),
        );
    }
    if let Some(bytes) = plan.bytes {
        let gib = bytes as f64 / GIB;
        for i in 0..n {
            let sides: Vec<(Cost, Cost)> = runs.sides[i].iter().flatten().copied().collect();
            if sides.is_empty() {
                continue;
            }
            let per = |f: fn(&(Cost, Cost)) -> f64| {
                median(&sides.iter().map(f).collect::<Vec<_>>()) / gib
            };
            let rss = |f: fn(&(Cost, Cost)) -> u64| sides.iter().map(f).max().unwrap_or(0);
            println!(
                "  CPU s per GiB, {:<width$}  sender {:.2} (user {:.2} + sys {:.2}), receiver {:.2} (user {:.2} + sys {:.2}); peak RSS sender {} KiB, receiver {} KiB (medians; RSS the max)",
                runs.names[i],
                per(|s| s.0.cpu()),
                per(|s| s.0.user),
                per(|s| s.0.sys),
                per(|s| s.1.cpu()),
                per(|s| s.1.user),
                per(|s| s.1.sys),
                rss(|s| s.0.rss_kib),
                rss(|s| s.1.rss_kib),
            );
        }
    }
    let bad = disturbed(runs);
    let base = secs(&runs.times[0]);
    let base_median = median(&base);
    let listed: Vec<String> = (0..rounds)
        .filter(|r| bad[*r])
        .map(|r| {
            format!(
                "round {r} (baseline {:.3} s, {:.1}x its median {base_median:.3} s)",
                base[r],
                base[r] / base_median
            )
        })
        .collect();
    if listed.is_empty() {
        println!("disturbed rounds (baseline over {DISTURBED}x its median): none");
    } else {
        println!(
            "disturbed rounds (baseline over {DISTURBED}x its median): {}",
            listed.join(", ")
        );
    }
    let mut slow = Vec::new();
    for i in 1..n {
        let t = secs(&runs.times[i]);
        let m = median(&t);
        for (r, x) in t.iter().enumerate() {
            if *x > DISTURBED * m && !bad[r] {
                slow.push(format!(
                    "{} in round {r} ({:.1}x its median)",
                    runs.names[i],
                    x / m
                ));
            }
        }
    }
    if !slow.is_empty() {
        println!(
            "slow runs in undisturbed rounds (over {DISTURBED}x the contender's own median; they mark no round): {}",
            slow.join(", ")
        );
    }
    let all: Vec<(usize, usize)> = (1..n)
        .map(|i| (i, 0))
        .chain(pairs.iter().copied())
        .collect();
    let label = |(a, b): (usize, usize)| format!("{} / {}", runs.names[a], runs.names[b]);
    let lw = all.iter().map(|p| label(*p).len()).max().unwrap_or(0);
    println!(
        "ratios of speed (A / B = B's time / A's time; above 1: A faster), per round; median [min, max]; * = disturbed round:"
    );
    let mut medians = Vec::new();
    for p in all {
        let r = ratios(runs, p.0, p.1);
        let m = median(&r);
        let (lo, hi) = min_max(&r);
        let calm: Vec<f64> = (0..rounds).filter(|i| !bad[*i]).map(|i| r[i]).collect();
        let calm = if calm.len() == rounds {
            "undisturbed: all rounds".to_string()
        } else if calm.is_empty() {
            "undisturbed: none".to_string()
        } else {
            format!(
                "undisturbed median {:.3} ({} rounds)",
                median(&calm),
                calm.len()
            )
        };
        let each: Vec<String> = (0..rounds)
            .map(|i| format!("{:.3}{}", r[i], if bad[i] { "*" } else { "" }))
            .collect();
        println!(
            "  {:<lw$}  median {m:.3} [{lo:.3}, {hi:.3}]  {calm}  rounds: {}",
            label(p),
            each.join(" ")
        );
        medians.push(m);
    }
    medians
}
