//! Progress meters: a bar on a terminal, a sparse plain line otherwise,
//! nothing with `--quiet`. Progress is read from counters the apps keep
//! (one ticker thread per process polls them); nothing here is on the
//! protocol path. Touches stderr (through [`super::out`]) and its one thread.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use super::out::{bars, line, Out, Ui};
use super::summary::rate;

/// Done, total and moved bytes, read from some app's counters: `done`
/// counts resumed prefixes and files found up to date, `moved` only the
/// bytes this session moved (what a rate is made of).
pub type Counter = Arc<dyn Fn() -> (u64, u64, u64) + Send + Sync>;

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
            let done = me.done.load(Ordering::Relaxed);
            (done, me.total.load(Ordering::Relaxed), done)
        })
    }
}

/// Plain mode prints at most one progress line per this interval.
const PLAIN_EVERY: Duration = Duration::from_secs(5);
/// The bar is redrawn this often.
const BAR_EVERY: Duration = Duration::from_millis(100);

/// One session's progress, drawn by the process's one ticker thread (see
/// [`Ticker`]) from when it is shown until [`Meter::finish`]. A session
/// that never moves a file never shows one, so an idle connection costs no
/// thread and no bar.
pub struct Meter {
    shown: Arc<Shown>,
    /// Whether the ticker has it (set once, by the session's own thread).
    registered: AtomicBool,
}

impl Meter {
    /// A meter shown at once.
    pub fn start(ui: Ui, label: String, counter: Counter) -> Meter {
        let meter = Meter::pending(ui, label, counter);
        meter.show();
        meter
    }

    /// A meter shown from its first [`relabel`](Self::relabel) (a file starts).
    pub fn pending(ui: Ui, label: String, counter: Counter) -> Meter {
        let shown = Arc::new(Shown {
            ui,
            label: Mutex::new(label),
            counter,
            state: Mutex::new(State::default()),
        });
        Meter {
            shown,
            registered: AtomicBool::new(false),
        }
    }

    /// Changes what the progress is labelled with (the current file, say),
    /// and shows the meter if it was not yet.
    pub fn relabel(&self, text: String) {
        *lock(&self.shown.label) = text;
        self.show();
    }

    fn show(&self) {
        if self.shown.ui == Ui::Quiet || self.registered.swap(true, Ordering::Relaxed) {
            return;
        }
        let mut state = lock(&self.shown.state);
        state.started = Some(Instant::now());
        if self.shown.ui == Ui::Bar {
            let bar = bars().add(ProgressBar::new(0));
            bar.set_style(style(false));
            state.bar = Some(bar);
        }
        drop(state);
        Ticker::get().add(self.shown.clone());
    }

    /// Stops showing progress and clears the bar (the summary follows).
    pub fn finish(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        if !self.registered.swap(false, Ordering::Relaxed) {
            return;
        }
        Ticker::get().remove(&self.shown);
        let mut state = lock(&self.shown.state);
        // The ticker may hold a copy a moment longer: it skips a finished one.
        state.finished = true;
        if let Some(bar) = state.bar.take() {
            bar.finish_and_clear();
            bars().remove(&bar);
        }
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        self.stop_now();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What the ticker needs of one shown meter.
struct Shown {
    ui: Ui,
    label: Mutex<String>,
    counter: Counter,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    bar: Option<ProgressBar>,
    /// When the meter was shown (rates are counted from there).
    started: Option<Instant>,
    /// The next time it is due for drawing.
    next: Option<Instant>,
    /// Done and total bytes last drawn.
    drawn: (u64, u64),
    finished: bool,
}

impl Shown {
    fn every(&self) -> Duration {
        match self.ui {
            Ui::Bar => BAR_EVERY,
            Ui::Quiet | Ui::Plain => PLAIN_EVERY,
        }
    }

    /// Draws the meter if it is due at `now`; returns when it is due next.
    fn tick(&self, now: Instant) -> Instant {
        let mut state = lock(&self.state);
        let next = *state.next.get_or_insert(now + self.every());
        if state.finished || now < next {
            return next;
        }
        state.next = Some(now + self.every());
        let (done, total, moved) = (self.counter)();
        let label = lock(&self.label).clone();
        let secs = state.started.map_or(0.0, |s| s.elapsed().as_secs_f64());
        match &state.bar {
            Some(bar) => {
                bar.set_message(label);
                bar.set_prefix(rate_and_eta(done, total, moved, secs));
                if (total > 0) != (state.drawn.1 > 0) {
                    bar.set_style(style(total > 0));
                }
                bar.set_length(total);
                bar.set_position(done);
            }
            None if (done, total) != state.drawn => {
                line(Out::Stderr, &plain_line(&label, done, total, moved, secs));
            }
            None => {}
        }
        state.drawn = (done, total);
        now + self.every()
    }
}

/// The one thread per process that draws every shown meter, started with
/// the first one; it sleeps until the next meter is due, or until a meter
/// is added when none is shown.
struct Ticker {
    meters: Mutex<Vec<Arc<Shown>>>,
    added: Condvar,
}

impl Ticker {
    fn get() -> &'static Ticker {
        static TICKER: OnceLock<&'static Ticker> = OnceLock::new();
        TICKER.get_or_init(|| {
            let ticker: &'static Ticker = Box::leak(Box::new(Ticker {
                meters: Mutex::new(Vec::new()),
                added: Condvar::new(),
            }));
            // Without the thread meters show nothing; the transfers go on.
            let _ = thread::Builder::new()
                .name("echoxfer-ticker".into())
                .spawn(move || ticker.run());
            ticker
        })
    }

    fn add(&self, meter: Arc<Shown>) {
        lock(&self.meters).push(meter);
        self.added.notify_all();
    }

    fn remove(&self, meter: &Arc<Shown>) {
        lock(&self.meters).retain(|m| !Arc::ptr_eq(m, meter));
    }

    fn run(&self) {
        let mut meters = lock(&self.meters);
        loop {
            if meters.is_empty() {
                meters = self.added.wait(meters).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            let due: Vec<_> = meters.clone();
            drop(meters);
            // Drawn without the list locked: a slow terminal holds up no session's start or end.
            let now = Instant::now();
            let next = due.iter().map(|m| m.tick(now)).min();
            meters = lock(&self.meters);
            let wait = next.map_or(BAR_EVERY, |n| n.saturating_duration_since(Instant::now()));
            meters = self
                .added
                .wait_timeout(meters, wait.max(Duration::from_millis(10)))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

/// A plain progress line: how far, and the rate of the bytes this session
/// moved (a resumed prefix or a file found up to date moved nothing, and
/// does not inflate it).
fn plain_line(label: &str, done: u64, total: u64, moved: u64, secs: f64) -> String {
    let rate = rate(moved, secs);
    if total > 0 {
        let pct = 100.0 * done as f64 / total as f64;
        format!("{label}: {done} of {total} bytes ({pct:.0}%), {rate}")
    } else {
        format!("{label}: {done} bytes, {rate}")
    }
}

/// The bar's rate (of the bytes moved, as [`plain_line`]) and, with a
/// known total, the time left at that rate.
fn rate_and_eta(done: u64, total: u64, moved: u64, secs: f64) -> String {
    let shown = rate(moved, secs);
    let per_sec = if secs > 0.0 { moved as f64 / secs } else { 0.0 };
    if total == 0 || per_sec <= 0.0 {
        return shown;
    }
    let left = total.saturating_sub(done) as f64 / per_sec;
    format!("{shown} ETA {}s", left.ceil() as u64)
}

/// The bar's look: with a known total, a bar; without, a count. The rate
/// (and ETA) is ours, in the prefix: indicatif's own would count a resumed
/// prefix as moved.
fn style(known_total: bool) -> ProgressStyle {
    let template = if known_total {
        "{msg} [{bar:30}] {bytes}/{total_bytes} {prefix}"
    } else {
        "{msg} {spinner} {bytes} {prefix}"
    };
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

#[cfg(test)]
mod meter_tests {
    use super::*;
    use std::sync::mpsc;

    /// A counter that reports each time the ticker reads it.
    fn probe() -> (Counter, mpsc::Receiver<()>) {
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        (
            Arc::new(move || {
                let _ = lock(&tx).send(());
                (1, 2, 1)
            }),
            rx,
        )
    }

    fn progress_threads() -> usize {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|t| std::fs::read_to_string(t.unwrap().path().join("comm")).ok())
            .filter(|name| name.trim() == "echoxfer-ticker")
            .count()
    }

    #[test]
    fn the_rate_of_a_resumed_transfer_counts_only_the_bytes_moved() {
        // 1 GB resumed, then 2 MB moved in 2 s: 1 MB/s, not 501.
        let text = plain_line("sending a", 1_002_000_000, 2_000_000_000, 2_000_000, 2.0);
        assert_eq!(
            text,
            "sending a: 1002000000 of 2000000000 bytes (50%), 1.0 MB/s"
        );
        assert_eq!(
            rate_and_eta(1_002_000_000, 2_000_000_000, 2_000_000, 2.0),
            "1.0 MB/s ETA 998s"
        );
    }

    #[test]
    fn meters_are_drawn_from_when_a_file_starts_by_one_thread_for_the_whole_process() {
        let bound = Duration::from_secs(60);
        let idle: Vec<_> = (0..8)
            .map(|i| Meter::pending(Ui::Bar, format!("idle {i}"), probe().0))
            .collect();
        let (counter, polled) = probe();
        let busy = Meter::pending(Ui::Bar, "busy".into(), counter);
        busy.relabel("receiving a.bin".into());
        let also = Meter::start(Ui::Bar, "also".into(), probe().0);
        polled.recv_timeout(bound).expect("a shown meter is drawn");
        assert_eq!(progress_threads(), 1, "one ticker for all meters");
        assert_eq!(
            lock(&Ticker::get().meters).len(),
            2,
            "idle meters are not shown"
        );
        busy.finish();
        also.finish();
        drop(idle);
        assert!(lock(&Ticker::get().meters).is_empty());
    }
}
