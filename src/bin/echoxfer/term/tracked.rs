//! A file app wrapped with what the terminal shows of its session: a
//! progress meter from the first file on, and the summary at the end (or
//! when a server's session is dropped). The wrapped app makes every
//! decision; this only watches its events.

use std::borrow::BorrowMut;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use echoxfer::driver::{App, DriverError, Work};
use echoxfer::error::sanitize;
use echoxfer::files::{FileReport, Progress, ReceiverApp, SenderApp, Totals};
use echoxfer::xfer::{Receiver, ReceiverEvent, Sender, SenderEvent};
use echoxfer::Machine;

use super::meter::{Counter, Meter};
use super::out::{line, Out, Ui};
use super::summary::{problems, summarize, FileTally, Summary};

/// The file apps' common face, for [`Tracked`].
pub trait Reported {
    /// Entries listed one by one.
    fn report(&self) -> Vec<FileReport>;
    fn totals(&self) -> Totals;
    /// Local entries skipped before the session (links, special files).
    fn skipped(&self) -> u64;
    fn progress(&self) -> Arc<Progress>;
}

impl Reported for SenderApp {
    fn report(&self) -> Vec<FileReport> {
        SenderApp::report(self).to_vec()
    }
    fn totals(&self) -> Totals {
        SenderApp::totals(self)
    }
    fn skipped(&self) -> u64 {
        SenderApp::skipped(self).len() as u64
    }
    fn progress(&self) -> Arc<Progress> {
        SenderApp::progress(self)
    }
}

impl Reported for ReceiverApp {
    fn report(&self) -> Vec<FileReport> {
        ReceiverApp::report(self)
    }
    fn totals(&self) -> Totals {
        ReceiverApp::totals(self)
    }
    fn skipped(&self) -> u64 {
        0
    }
    fn progress(&self) -> Arc<Progress> {
        ReceiverApp::progress(self)
    }
}

/// A file app plus what the terminal needs: a progress meter and the
/// summary (printed by [`finish`](Self::finish), or when dropped, as a
/// server's sessions are).
pub struct Tracked<A: Reported> {
    pub app: A,
    verb: &'static str,
    out: Out,
    summary: Summary,
    /// The session's first event.
    started: Option<Instant>,
    meter: Option<Meter>,
    summarized: bool,
    /// Where a server totals its sessions' files.
    tally: Option<Arc<FileTally>>,
    /// Bytes accounted for without moving (resumed prefixes, files found
    /// up to date): left out of the rate.
    unmoved: Arc<AtomicU64>,
}

impl<A: Reported> Tracked<A> {
    pub fn new(app: A, verb: &'static str, ui: Ui, out: Out, label: String) -> Self {
        let progress = app.progress();
        let unmoved = Arc::new(AtomicU64::new(0));
        let skipped = unmoved.clone();
        let counter: Counter = Arc::new(move || {
            let done = progress.done();
            let moved = done.saturating_sub(skipped.load(Ordering::Relaxed));
            (done, progress.total(), moved)
        });
        Tracked {
            app,
            verb,
            out,
            summary: Summary::Lines,
            started: None,
            meter: Some(Meter::pending(ui, label, counter)),
            summarized: false,
            tally: None,
            unmoved,
        }
    }

    /// Totals this session's files into `tally` when it finishes.
    pub fn tallied(mut self, tally: Arc<FileTally>) -> Self {
        self.tally = Some(tally);
        self
    }

    /// Prints `summary` at the end instead of a line per file.
    pub fn summary(mut self, summary: Summary) -> Self {
        self.summary = summary;
        self
    }

    fn record(&mut self) {
        self.started.get_or_insert_with(Instant::now);
    }

    /// Stops the meter and prints nothing: the session never reached the
    /// peer (no connection, a wrong code), so no entry was offered and a
    /// summary would only list every file as incomplete.
    pub fn discard(&mut self) {
        if let Some(meter) = self.meter.take() {
            meter.finish();
        }
        self.summarized = true;
    }

    /// Stops the meter and prints the summary (once). With `--quiet`, the
    /// entries not delivered are still named, with why, on stderr.
    pub fn finish(&mut self) {
        if let Some(meter) = self.meter.take() {
            meter.finish();
        }
        if self.summarized {
            return;
        }
        self.summarized = true;
        let totals = self.app.totals();
        if let Some(tally) = &self.tally {
            tally.add(&totals);
        }
        let elapsed = self.started.map_or(Duration::ZERO, |s| s.elapsed());
        let report = self.app.report();
        let skipped = self.app.skipped();
        if self.summary == Summary::Total {
            for l in problems(self.verb, &report) {
                line(Out::Stderr, &l);
            }
        }
        for l in summarize(self.verb, &report, &totals, skipped, elapsed, self.summary) {
            line(self.out, &l);
        }
    }

    /// A file starts: the meter shows its name (a bar redraws it; a plain
    /// meter prints a line every few seconds, never one per file).
    fn starting(&self, verb: &str, name: &str, from: u64) {
        self.unmoved.fetch_add(from, Ordering::Relaxed);
        let name = sanitize(name.as_bytes());
        if let Some(meter) = &self.meter {
            meter.relabel(format!("{verb} {name}"));
        }
    }
}

impl<A: Reported> Drop for Tracked<A> {
    fn drop(&mut self) {
        self.finish();
    }
}

impl<M> App<M> for Tracked<SenderApp>
where
    M: Machine<Event = SenderEvent> + BorrowMut<Sender> + 'static,
{
    fn on_event(&mut self, m: &mut M, now: Instant, event: SenderEvent) -> io::Result<()> {
        let started = match &event {
            SenderEvent::Started { file, from } => Some((*file, *from)),
            _ => None,
        };
        self.app.on_event(m, now, event)?;
        if let Some((file, from)) = started {
            if let Some(f) = SenderApp::report(&self.app).get(file) {
                let name = f.name.clone();
                self.starting("sending", &name, from);
            }
        }
        self.record();
        Ok(())
    }

    fn poll_work(&mut self) -> Option<Work<Self, M>> {
        let work = App::<M>::poll_work(&mut self.app)?;
        Some(work.within(|t: &mut Self| &mut t.app).and_then(recorded))
    }

    fn on_end(&mut self, result: &Result<(), DriverError>) {
        App::<M>::on_end(&mut self.app, result);
    }
}

impl<M> App<M> for Tracked<ReceiverApp>
where
    M: Machine<Event = ReceiverEvent> + BorrowMut<Receiver> + 'static,
{
    fn on_event(&mut self, m: &mut M, now: Instant, event: ReceiverEvent) -> io::Result<()> {
        let started = match &event {
            ReceiverEvent::Start { id, from } => Some((*id, *from)),
            _ => None,
        };
        self.app.on_event(m, now, event)?;
        if let Some((id, from)) = started {
            // Accepted already (the offer's work is done), so it is open.
            if let Some(f) = self.app.in_flight(id) {
                let name = f.name.clone();
                self.starting("receiving", &name, from);
            }
        }
        self.record();
        Ok(())
    }

    fn poll_work(&mut self) -> Option<Work<Self, M>> {
        let work = App::<M>::poll_work(&mut self.app)?;
        Some(work.within(|t: &mut Self| &mut t.app).and_then(recorded))
    }

    fn on_end(&mut self, result: &Result<(), DriverError>) {
        App::<M>::on_end(&mut self.app, result);
    }
}

/// Notes the files a work has settled.
fn recorded<A: Reported, M>(t: &mut Tracked<A>, _: &mut M, _: Instant) -> io::Result<()> {
    t.record();
    Ok(())
}
