//! What the file commands show a person: a progress bar on a terminal,
//! sparse plain lines otherwise, nothing with `--quiet`; and the summary
//! lines. Progress is read from counters the apps keep (a ticker thread
//! polls them); nothing here is on the protocol path.

use std::io::{self, IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use echoxfer::error::sanitize;
use echoxfer::files::{FileReport, Outcome};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ui {
    /// Nothing (`--quiet`).
    Quiet,
    /// An `indicatif` bar on stderr (stderr is a terminal).
    Bar,
    /// A plain line now and then on stderr (stderr is a pipe or a file).
    Plain,
}

impl Ui {
    pub fn new(quiet: bool) -> Ui {
        if quiet {
            Ui::Quiet
        } else if io::stderr().is_terminal() {
            Ui::Bar
        } else {
            Ui::Plain
        }
    }
}

/// Where summary lines go: stdout, or stderr when stdout carries the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Out {
    Stdout,
    Stderr,
}

/// All bars of this process, so several sessions' bars share the terminal.
fn bars() -> &'static MultiProgress {
    static MULTI: OnceLock<MultiProgress> = OnceLock::new();
    MULTI.get_or_init(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
}

/// Prints one line to `out` without tearing any progress bar.
pub fn line(out: Out, text: &str) {
    bars().suspend(|| match out {
        Out::Stdout => {
            let mut o = io::stdout().lock();
            let _ = writeln!(o, "{text}");
            let _ = o.flush();
        }
        Out::Stderr => {
            let _ = writeln!(io::stderr().lock(), "{text}");
        }
    });
}

/// A progress line for the terminal (stderr), unless quiet.
pub fn note(ui: Ui, text: &str) {
    if ui != Ui::Quiet {
        line(Out::Stderr, text);
    }
}

/// Done and total bytes, read from some app's counters.
pub type Counter = Arc<dyn Fn() -> (u64, u64) + Send + Sync>;

/// Simple counters for apps that keep none shareable (legacy mode).
#[derive(Debug, Default)]
pub struct Bytes {
    pub done: AtomicU64,
    pub total: AtomicU64,
}

impl Bytes {
    pub fn counter(self: &Arc<Self>) -> Counter {
        let me = self.clone();
        Arc::new(move || {
            (
                me.done.load(Ordering::Relaxed),
                me.total.load(Ordering::Relaxed),
            )
        })
    }
}

/// Plain mode prints at most one progress line per this interval.
const PLAIN_EVERY: Duration = Duration::from_secs(5);
/// The bar is redrawn this often.
const BAR_EVERY: Duration = Duration::from_millis(100);

/// A ticker thread showing one session's progress until [`Meter::finish`].
pub struct Meter {
    label: Arc<Mutex<String>>,
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Meter {
    pub fn start(ui: Ui, label: String, counter: Counter) -> Meter {
        let label = Arc::new(Mutex::new(label));
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let thread = match ui {
            Ui::Quiet => None,
            Ui::Bar | Ui::Plain => {
                let (label, stop) = (label.clone(), stop.clone());
                thread::Builder::new()
                    .name("echoxfer-progress".into())
                    .spawn(move || tick(ui, &label, &*counter, &stop))
                    .ok()
            }
        };
        Meter {
            label,
            stop,
            thread,
        }
    }

    /// Changes what the progress is labelled with (the current file, say).
    pub fn relabel(&self, text: String) {
        *self.label.lock().unwrap_or_else(|p| p.into_inner()) = text;
    }

    /// Stops the ticker and clears its bar (the summary follows).
    pub fn finish(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        let (flag, cv) = &*self.stop;
        *flag.lock().unwrap_or_else(|p| p.into_inner()) = true;
        cv.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        self.stop_now();
    }
}

fn tick(
    ui: Ui,
    label: &Mutex<String>,
    counter: &dyn Fn() -> (u64, u64),
    stop: &(Mutex<bool>, Condvar),
) {
    let started = Instant::now();
    let bar = (ui == Ui::Bar).then(|| {
        let bar = bars().add(ProgressBar::new(0));
        bar.set_style(style(false));
        bar
    });
    let every = if bar.is_some() {
        BAR_EVERY
    } else {
        PLAIN_EVERY
    };
    let mut shown = (0, 0);
    let (flag, cv) = stop;
    let mut stopped = flag.lock().unwrap_or_else(|p| p.into_inner());
    while !*stopped {
        stopped = cv
            .wait_timeout(stopped, every)
            .unwrap_or_else(|p| p.into_inner())
            .0;
        if *stopped {
            break;
        }
        let (done, total) = counter();
        let label = label.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match &bar {
            Some(bar) => {
                bar.set_message(label);
                if (total > 0) != (shown.1 > 0) {
                    bar.set_style(style(total > 0));
                }
                bar.set_length(total);
                bar.set_position(done);
            }
            None if (done, total) != shown => {
                let rate = rate(done, started.elapsed().as_secs_f64());
                let text = if total > 0 {
                    let pct = 100.0 * done as f64 / total as f64;
                    format!("{label}: {done} of {total} bytes ({pct:.0}%), {rate}")
                } else {
                    format!("{label}: {done} bytes, {rate}")
                };
                line(Out::Stderr, &text);
            }
            None => {}
        }
        shown = (done, total);
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
        bars().remove(&bar);
    }
}

/// The bar's look: with a known total, a bar and an ETA; without, a count.
fn style(known_total: bool) -> ProgressStyle {
    let template = if known_total {
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}"
    } else {
        "{msg} {spinner} {bytes} {bytes_per_sec}"
    };
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

/// Throughput in decimal megabytes per second.
pub fn rate(bytes: u64, secs: f64) -> String {
    if secs <= 0.0 {
        return "n/a MB/s".into();
    }
    format!("{:.1} MB/s", bytes as f64 / secs / 1e6)
}

pub fn hex(hash: &[u8; 32]) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

/// One summary line per file (`verb`: `sent` or `received`), then a total
/// when there are several. Peer-supplied names and messages are sanitised.
/// At most [`REFUSED_SHOWN`] refused offers get a line each; one line
/// counts the rest (a peer offering junk must not flood the terminal).
pub fn summarize(verb: &str, report: &[FileReport], times: &[Duration]) -> Vec<String> {
    /// Refused offers listed one by one.
    const REFUSED_SHOWN: usize = 20;
    let mut lines = Vec::new();
    let mut total_moved = 0;
    let mut total_time = Duration::ZERO;
    let mut saved = 0;
    let mut files = 0u64;
    let (mut refused_shown, mut refused_rest) = (0, 0u64);
    for (i, f) in report.iter().enumerate() {
        let name = sanitize(f.name.as_bytes());
        let time = times.get(i).copied().unwrap_or_default();
        total_moved += f.moved;
        total_time += time;
        files += 1;
        let secs = time.as_secs_f64();
        lines.push(match &f.outcome {
            Outcome::Saved { hash } => {
                saved += 1;
                let resumed = if f.from > 0 {
                    format!(" (resumed from {})", f.from)
                } else {
                    String::new()
                };
                format!(
                    "{verb} {name}: {} bytes{resumed} in {secs:.2} s ({}) blake3 {}",
                    f.size,
                    rate(f.moved, secs),
                    hex(hash)
                )
            }
            Outcome::Refused { .. } if refused_shown == REFUSED_SHOWN => {
                refused_rest += 1;
                continue;
            }
            Outcome::Refused { reason, message } => {
                refused_shown += 1;
                format!(
                    "refused {name}: {reason:?}: {}",
                    sanitize(message.as_bytes())
                )
            }
            Outcome::Unlisted { refused } => {
                // Offers the app counted without keeping them.
                files = files - 1 + refused;
                refused_rest += refused;
                continue;
            }
            Outcome::Discarded => {
                format!("discarded {name}: content hash mismatch, nothing kept")
            }
            Outcome::Pending => format!(
                "incomplete {name}: {} of {} bytes (the partial file is kept for a resume)",
                f.from + f.moved,
                f.size
            ),
        });
    }
    if refused_rest > 0 {
        lines.push(format!(
            "refused {refused_rest} more offers (not listed one by one)"
        ));
    }
    if files > 1 {
        lines.push(format!(
            "total: {saved} of {files} files {verb}, {total_moved} bytes moved in {:.2} s ({})",
            total_time.as_secs_f64(),
            rate(total_moved, total_time.as_secs_f64())
        ));
    }
    lines
}

/// Whether every file in the report was saved.
pub fn all_saved(report: &[FileReport]) -> bool {
    report
        .iter()
        .all(|f| matches!(f.outcome, Outcome::Saved { .. }))
}
