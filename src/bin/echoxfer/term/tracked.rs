//! A file app wrapped with what the terminal shows of its session: a
//! progress meter from the first file on, the time each file took, and the
//! summary lines at the end (or when a server's session is dropped). The
//! wrapped app makes every decision; this only watches its events.

use std::borrow::BorrowMut;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use echoxfer::driver::{App, Work};
use echoxfer::error::sanitize;
use echoxfer::files::{FileReport, Outcome, Progress, ReceiverApp, SenderApp};
use echoxfer::xfer::{Receiver, ReceiverEvent, Sender, SenderEvent};
use echoxfer::Machine;

use super::meter::{Counter, Meter};
use super::out::{line, note, Out, Ui};
use super::summary::{summarize, FileTally};

/// The file apps' common face, for [`Tracked`].
pub trait Reported {
    fn report(&self) -> &[FileReport];
    fn progress(&self) -> Arc<Progress>;
}

impl Reported for SenderApp {
    fn report(&self) -> &[FileReport] {
        SenderApp::report(self)
    }
    fn progress(&self) -> Arc<Progress> {
        SenderApp::progress(self)
    }
}

impl Reported for ReceiverApp {
    fn report(&self) -> &[FileReport] {
        ReceiverApp::report(self)
    }
    fn progress(&self) -> Arc<Progress> {
        ReceiverApp::progress(self)
    }
}

/// A file app plus what the terminal needs: a progress meter, the time
/// each file took, and the summary (printed by [`finish`](Self::finish),
/// or when dropped, as a server's sessions are).
pub struct Tracked<A: Reported> {
    pub app: A,
    verb: &'static str,
    ui: Ui,
    out: Out,
    /// When the current file's time started (the session's first event, then each outcome).
    mark: Option<Instant>,
    times: Vec<Duration>,
    meter: Option<Meter>,
    summarized: bool,
    /// Where a server totals its sessions' files.
    tally: Option<Arc<FileTally>>,
}

impl<A: Reported> Tracked<A> {
    pub fn new(app: A, verb: &'static str, ui: Ui, out: Out, label: String) -> Self {
        let progress = app.progress();
        let counter: Counter = Arc::new(move || (progress.done(), progress.total()));
        Tracked {
            app,
            verb,
            ui,
            out,
            mark: None,
            times: Vec::new(),
            meter: Some(Meter::pending(ui, label, counter)),
            summarized: false,
            tally: None,
        }
    }

    /// Totals this session's files into `tally` when it finishes.
    pub fn tallied(mut self, tally: Arc<FileTally>) -> Self {
        self.tally = Some(tally);
        self
    }

    /// Notes the time of every file that has just reached its outcome.
    fn record(&mut self) {
        let report = self.app.report();
        let mark = self.mark.get_or_insert_with(Instant::now);
        while let Some(f) = report.get(self.times.len()) {
            if f.outcome == Outcome::Pending {
                break;
            }
            let now = Instant::now();
            self.times.push(now - *mark);
            *mark = now;
        }
    }

    /// Stops the meter and prints the summary (once).
    pub fn finish(&mut self) {
        if let Some(meter) = self.meter.take() {
            meter.finish();
        }
        if self.summarized {
            return;
        }
        self.summarized = true;
        if let Some(tally) = &self.tally {
            tally.add(self.app.report());
        }
        let mut times = self.times.clone();
        // A file the session ended on (cut, failed) took the rest of the time.
        if times.len() < self.app.report().len() {
            times.push(self.mark.map_or(Duration::ZERO, |m| m.elapsed()));
        }
        for l in summarize(self.verb, self.app.report(), &times) {
            line(self.out, &l);
        }
    }

    fn starting(&self, verb: &str, name: &str, size: u64, from: u64) {
        let name = sanitize(name.as_bytes());
        if let Some(meter) = &self.meter {
            meter.relabel(format!("{verb} {name}"));
        }
        if self.ui != Ui::Plain {
            return;
        }
        let resume = if from > 0 {
            format!(", resuming from {from}")
        } else {
            String::new()
        };
        note(self.ui, &format!("{verb} {name} ({size} bytes{resume})"));
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
            if let Some(f) = self.app.report().get(file) {
                self.starting("sending", &f.name, f.size, from);
            }
        }
        self.record();
        Ok(())
    }

    fn poll_work(&mut self) -> Option<Work<Self, M>> {
        let work = App::<M>::poll_work(&mut self.app)?;
        Some(work.within(|t: &mut Self| &mut t.app).and_then(recorded))
    }
}

impl<M> App<M> for Tracked<ReceiverApp>
where
    M: Machine<Event = ReceiverEvent> + BorrowMut<Receiver> + 'static,
{
    fn on_event(&mut self, m: &mut M, now: Instant, event: ReceiverEvent) -> io::Result<()> {
        let started = match &event {
            ReceiverEvent::Start { from, .. } => Some(*from),
            _ => None,
        };
        self.app.on_event(m, now, event)?;
        if let Some(from) = started {
            // Accepted already (the offer's work is done), so it is listed.
            if let Some(f) = self.app.report().last() {
                self.starting("receiving", &f.name, f.size, from);
            }
        }
        self.record();
        Ok(())
    }

    fn poll_work(&mut self) -> Option<Work<Self, M>> {
        let work = App::<M>::poll_work(&mut self.app)?;
        Some(work.within(|t: &mut Self| &mut t.app).and_then(recorded))
    }
}

/// Notes the files a work has settled.
fn recorded<A: Reported, M>(t: &mut Tracked<A>, _: &mut M, _: Instant) -> io::Result<()> {
    t.record();
    Ok(())
}
