//! `echoxfer send|receive`: wires the file-transfer machines and the file
//! apps to a driver (TCP on either runtime, or stdin/stdout), and shows
//! progress and a summary. `--legacy` is handed to [`crate::legacy`].

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use echoxfer::driver::{blocking, listen, App, Limits};
use echoxfer::files::{FileReport, Outcome, ReceiverApp, SenderApp, Store};
use echoxfer::xfer::{Receiver, ReceiverRole, Sender};
use echoxfer::{Config, StreamMachine};

use crate::args::{ReceiveArgs, Runtime, SendArgs};
use crate::term::{self, FileTally, Out, Tracked, Ui};
use crate::CmdResult;

pub fn send(a: SendArgs) -> CmdResult {
    if a.legacy {
        return crate::legacy::send_file(a);
    }
    let ui = Ui::new(a.quiet);
    let out = Out::for_summary(a.stdio);
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
        term::note(
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
    term::announce(listener.local_addr()?);
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
                term::note(
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
    if !term::all_saved(report) {
        let offered: u64 = report.iter().map(term::files_in).sum();
        let missing: u64 = report
            .iter()
            .filter(|f| !is_saved(f))
            .map(term::files_in)
            .sum();
        return Err(format!("{missing} of {offered} offered files not saved").into());
    }
    Ok(())
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
            term::announce(listener.local_addr()?);
            let (mut stream, _) = listener.accept()?;
            drop(listener);
            stream.set_nodelay(true)?;
            blocking::run_stream(machine, &mut stream, app)?;
        }
        Runtime::Tokio => {
            let rt = tokio::runtime::Runtime::new()?;
            let result: CmdResult = rt.block_on(async {
                let listener = echoxfer::driver::tokio::bind(addr, listen::DEFAULT_BACKLOG)?;
                term::announce(listener.local_addr()?);
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
