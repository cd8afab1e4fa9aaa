//! `echoxfer send|receive`: wires the file-transfer machines and the file
//! apps to a driver (TCP on either runtime, or stdin/stdout), and shows
//! progress and a summary. `--legacy` is handed to [`crate::legacy`].

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use echoxfer::driver::{blocking, listen, App, Limits};
use echoxfer::error::sanitize;
use echoxfer::files::{FileReport, Outcome, Progress, ReceiverApp, SenderApp, Store};
use echoxfer::xfer::{Receiver, ReceiverEvent, ReceiverRole, Sender, SenderEvent};
use echoxfer::{Config, StreamMachine};

use crate::args::{ReceiveArgs, Runtime, SendArgs};
use crate::ui::{self, Meter, Out, Ui};
use crate::CmdResult;

pub fn send(a: SendArgs) -> CmdResult {
    if a.legacy {
        return crate::legacy::send_file(a);
    }
    let ui = Ui::new(a.quiet);
    let out = if a.stdio { Out::Stderr } else { Out::Stdout };
    let config = Config::default();
    let app = SenderApp::open(&a.files, config.max_name_len)?;
    let mut machine = Sender::new(app.role(), config, Instant::now());
    let mut session = Tracked::new(app, "sent", ui, out, "send".into());
    let to = (!a.stdio).then_some(a.to.as_str());
    let result = run_client(&mut machine, &mut session, to, a.runtime);
    session.finish();
    result?;
    let report = session.app.report();
    let missing = report
        .iter()
        .filter(|f| !matches!(f.outcome, Outcome::Saved { .. }))
        .count();
    if missing > 0 {
        return Err(format!("{missing} of {} files not delivered", report.len()).into());
    }
    Ok(())
}

pub fn receive(a: ReceiveArgs) -> CmdResult {
    if a.legacy {
        return crate::legacy::receive_file(a);
    }
    let ui = Ui::new(a.quiet);
    let config = Config {
        max_connections: a.max_connections,
        max_per_source: a.max_per_source,
        ..Config::default()
    };
    config.validate()?;
    let store = Store::new(&a.dir, a.overwrite)
        .map_err(|e| format!("cannot use {} as the destination: {e}", a.dir.display()))?;
    note_partials(&store, ui);
    if a.stdio {
        let (mut machine, mut session) = once_session(&store, &config, ui, Out::Stderr);
        let result = run_client(&mut machine, &mut session, None, a.runtime);
        return settle_once(result, session);
    }
    if a.once {
        return receive_once(a.listen, a.runtime, &store, &config, ui);
    }
    let sessions = Arc::new(AtomicU64::new(0));
    let files = Arc::new(FileTally::default());
    let tally = files.clone();
    // One budget for the half-received frames of all sessions.
    let budget = echoxfer::session::RecvBudget::new(config.recv_budget);
    crate::echo::serve_sessions(a.listen, a.runtime, Limits::from(&config), move |now| {
        let n = sessions.fetch_add(1, Ordering::Relaxed) + 1;
        let machine = Receiver::new(ReceiverRole::new(), config.clone(), now)
            .with_recv_budget(budget.clone());
        let app = ReceiverApp::new(store.clone());
        let label = format!("session {n}");
        let tracked = Tracked::new(app, "received", ui, Out::Stdout, label);
        (machine, tracked.tallied(tally.clone()))
    })?;
    println!("{}", files.line());
    Ok(())
}

/// Says what interrupted transfers left in the directory: partial files are
/// kept so that the same `send` resumes them, and nothing else removes them.
fn note_partials(store: &Store, ui: Ui) {
    if let Ok((count @ 1.., bytes)) = store.partials() {
        ui::note(
            ui,
            &format!(
                "{count} partial files ({bytes} bytes) from interrupted transfers are in {}: \
                 sending the same files again resumes them; delete the .*.echoxfer-part files to drop them",
                store.dir().display()
            ),
        );
    }
}

/// The machine and app of a single receiving session.
fn once_session(
    store: &Store,
    config: &Config,
    ui: Ui,
    out: Out,
) -> (Receiver, Tracked<ReceiverApp>) {
    let machine = Receiver::new(ReceiverRole::new(), config.clone(), Instant::now());
    let app = ReceiverApp::new(store.clone());
    (
        machine,
        Tracked::new(app, "received", ui, out, "receive".into()),
    )
}

/// `receive --once`: serves connections one at a time until one sender's
/// session is done, and succeeds only if every file it offered was saved.
/// A connection that fails before offering anything (a port scanner,
/// garbage, a client of another protocol) does not use the session up.
fn receive_once(
    addr: std::net::SocketAddr,
    runtime: Runtime,
    store: &Store,
    config: &Config,
    ui: Ui,
) -> CmdResult {
    let listener = listen::bind(addr, listen::DEFAULT_BACKLOG)?;
    crate::echo::announce(listener.local_addr()?);
    let rt = match runtime {
        Runtime::Tokio => Some(tokio::runtime::Runtime::new()?),
        Runtime::Blocking => None,
    };
    loop {
        let (mut stream, peer) = listener.accept()?;
        stream.set_nodelay(true)?;
        let (mut machine, mut session) = once_session(store, config, ui, Out::Stdout);
        let result: CmdResult = match &rt {
            None => {
                blocking::run_stream(&mut machine, &mut stream, &mut session).map_err(Into::into)
            }
            Some(rt) => rt.block_on(async {
                stream.set_nonblocking(true)?;
                let mut stream = tokio::net::TcpStream::from_std(stream)?;
                let driven =
                    echoxfer::driver::tokio::run_stream(&mut machine, &mut stream, &mut session);
                Ok(driven.await?)
            }),
        };
        if let Err(e) = &result {
            if session.app.report().is_empty() {
                ui::note(
                    ui,
                    &format!(
                        "ignored {peer}: {e} (it offered no file); still waiting for a sender"
                    ),
                );
                continue;
            }
        }
        return settle_once(result, session);
    }
}

/// The outcome of a single receiving session: every offered file saved.
fn settle_once(
    result: Result<(), impl Into<Box<dyn std::error::Error + Send + Sync>>>,
    mut session: Tracked<ReceiverApp>,
) -> CmdResult {
    session.finish();
    result.map_err(Into::into)?;
    let report = session.app.report();
    if !ui::all_saved(report) {
        let offered: u64 = report.iter().map(files_in).sum();
        let missing: u64 = report.iter().filter(|f| !is_saved(f)).map(files_in).sum();
        return Err(format!("{missing} of {offered} offered files not saved").into());
    }
    Ok(())
}

/// How many offered files a report entry stands for.
fn files_in(f: &FileReport) -> u64 {
    match f.outcome {
        Outcome::Unlisted { refused } => refused,
        _ => 1,
    }
}

fn is_saved(f: &FileReport) -> bool {
    matches!(f.outcome, Outcome::Saved { .. })
}

/// Runs one session as a client: over TCP to `to`, or over stdin/stdout
/// when `to` is `None`.
pub fn run_client<M, A>(
    machine: &mut M,
    app: &mut A,
    to: Option<&str>,
    runtime: Runtime,
) -> CmdResult
where
    M: StreamMachine,
    A: App<M>,
{
    match (runtime, to) {
        (Runtime::Blocking, Some(to)) => {
            let mut stream = std::net::TcpStream::connect(to)
                .map_err(|e| format!("cannot connect to {to}: {e}"))?;
            stream.set_nodelay(true)?;
            blocking::run_stream(machine, &mut stream, app)?;
        }
        (Runtime::Blocking, None) => {
            let mut io = stdio()?;
            blocking::run_stream(machine, &mut io, app)?;
        }
        (Runtime::Tokio, to) => {
            let rt = tokio::runtime::Runtime::new()?;
            let result: CmdResult = rt.block_on(async {
                match to {
                    Some(to) => {
                        let mut stream = tokio::net::TcpStream::connect(to)
                            .await
                            .map_err(|e| format!("cannot connect to {to}: {e}"))?;
                        stream.set_nodelay(true)?;
                        echoxfer::driver::tokio::run_stream(machine, &mut stream, app).await?;
                    }
                    None => {
                        let mut io = tokio::io::join(tokio::io::stdin(), tokio::io::stdout());
                        echoxfer::driver::tokio::run_stream(machine, &mut io, app).await?;
                    }
                }
                Ok(())
            });
            // A blocked stdin read must not hold the process open.
            rt.shutdown_background();
            result?;
        }
    }
    Ok(())
}

/// Accepts one connection on `addr` (announcing the bound address) and
/// runs one session on it.
pub fn accept_one<M, A>(
    machine: &mut M,
    app: &mut A,
    addr: std::net::SocketAddr,
    runtime: Runtime,
) -> CmdResult
where
    M: StreamMachine,
    A: App<M>,
{
    match runtime {
        Runtime::Blocking => {
            let listener = listen::bind(addr, listen::DEFAULT_BACKLOG)?;
            crate::echo::announce(listener.local_addr()?);
            let (mut stream, _) = listener.accept()?;
            drop(listener);
            stream.set_nodelay(true)?;
            blocking::run_stream(machine, &mut stream, app)?;
        }
        Runtime::Tokio => {
            let rt = tokio::runtime::Runtime::new()?;
            let result: CmdResult = rt.block_on(async {
                let listener = echoxfer::driver::tokio::bind(addr, listen::DEFAULT_BACKLOG)?;
                crate::echo::announce(listener.local_addr()?);
                let (mut stream, _) = listener.accept().await?;
                drop(listener);
                stream.set_nodelay(true)?;
                echoxfer::driver::tokio::run_stream(machine, &mut stream, app).await?;
                Ok(())
            });
            result?;
        }
    }
    Ok(())
}

/// Stdin and stdout as one blocking transport, unbuffered (the driver
/// batches its writes and flushes after each batch).
pub fn stdio() -> io::Result<blocking::Duplex<File, File>> {
    Ok(blocking::Duplex {
        reader: File::from(io::stdin().as_fd().try_clone_to_owned()?),
        writer: File::from(io::stdout().as_fd().try_clone_to_owned()?),
    })
}

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

/// File outcomes totalled over a server's sessions, for the line it
/// prints when it stops.
#[derive(Debug, Default)]
pub struct FileTally {
    saved: AtomicU64,
    refused: AtomicU64,
    discarded: AtomicU64,
    incomplete: AtomicU64,
}

impl FileTally {
    fn add(&self, report: &[FileReport]) {
        for f in report {
            let counter = match f.outcome {
                Outcome::Saved { .. } => &self.saved,
                Outcome::Refused { .. } | Outcome::Unlisted { .. } => &self.refused,
                Outcome::Discarded => &self.discarded,
                Outcome::Pending => &self.incomplete,
            };
            counter.fetch_add(files_in(f), Ordering::Relaxed);
        }
    }

    /// One line: how many files were saved, refused, discarded, left incomplete.
    pub fn line(&self) -> String {
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        format!(
            "files: {} saved, {} refused, {} discarded (hash mismatch), {} incomplete (partial files kept for a resume)",
            n(&self.saved),
            n(&self.refused),
            n(&self.discarded),
            n(&self.incomplete)
        )
    }
}

impl<A: Reported> Tracked<A> {
    pub fn new(app: A, verb: &'static str, ui: Ui, out: Out, label: String) -> Self {
        let progress = app.progress();
        let counter: ui::Counter = Arc::new(move || (progress.done(), progress.total()));
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
        for l in ui::summarize(self.verb, self.app.report(), &times) {
            ui::line(self.out, &l);
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
        ui::note(self.ui, &format!("{verb} {name} ({size} bytes{resume})"));
    }
}

impl<A: Reported> Drop for Tracked<A> {
    fn drop(&mut self) {
        self.finish();
    }
}

impl App<Sender> for Tracked<SenderApp> {
    fn on_event(&mut self, m: &mut Sender, now: Instant, event: SenderEvent) -> io::Result<()> {
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
}

impl App<Receiver> for Tracked<ReceiverApp> {
    fn on_event(&mut self, m: &mut Receiver, now: Instant, event: ReceiverEvent) -> io::Result<()> {
        let started = matches!(event, ReceiverEvent::Start { .. });
        self.app.on_event(m, now, event)?;
        if started {
            if let Some(f) = self.app.report().last() {
                self.starting("receiving", &f.name, f.size, f.from);
            }
        }
        self.record();
        Ok(())
    }
}
