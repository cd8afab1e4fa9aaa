//! `echoxfer receive`: takes files into a directory, from many senders at
//! once until Ctrl-C, from one sender (`--once`), or over stdin/stdout;
//! progress, summaries, and the `files:` line a server prints when it
//! stops. `--legacy` is the seed protocol, in [`legacy`].

mod legacy;

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use echoxfer::driver::Limits;
use echoxfer::error::sanitize;
use echoxfer::files::{ReceiverApp, Store, Totals};
use echoxfer::xfer::{Receiver, ReceiverRole};
use echoxfer::{SessionLimits, TransferConfig};

use crate::addr::HostPort;
use crate::args::{ReceiveArgs, Runtime, SecureArgs};
use crate::auth::{self, Auth, Channel, Lifetime};
use crate::net::{self, CmdResult, Peer};
use crate::term::{self, FileTally, Out, Summary, Tracked, Ui};

/// Entries a single session's summary lists one by one (`--once`, `--stdio`).
const ONCE_LISTED: usize = 100_000;

/// `echoxfer receive`.
pub fn receive(a: ReceiveArgs) -> CmdResult {
    if a.legacy {
        return legacy::receive(a);
    }
    if a.json {
        term::reserve_stdout_for_json();
    }
    let ui = Ui::new(a.quiet || a.json);
    let summary = Summary::new(a.quiet, a.json);
    let limits = Limits {
        max_connections: a.max_connections,
        max_per_source: a.max_per_source,
        ..Limits::default()
    };
    limits.validate()?;
    let config = SessionLimits::default();
    prepare_dir(&a.dir)?;
    let store = Store::new(&a.dir, a.overwrite).map_err(|e| {
        format!(
            "cannot use {} as the destination: {e} (create it, or pick another with --dir)",
            a.dir.display()
        )
    })?;
    note_partials(&store, ui);
    if a.stdio {
        let auth = stdio_auth(&a.auth)?;
        let (mut machine, session) = once_session(&store, &config, &auth, ui, Out::Stderr);
        let mut session = session.summary(summary);
        let result = net::run_client(&mut machine, &mut session, Peer::Stdio, a.runtime)
            .map_err(|e| auth::explain(e, &Peer::Stdio.name(), auth::Session::Receive));
        return settle_once(result, session);
    }
    let lifetime = if a.once {
        Lifetime::Once
    } else {
        Lifetime::UntilStopped {
            command: "a receive without --once",
            once: Some("use `receive --once`, which prints a one-time code"),
        }
    };
    let peer = "echoxfer send --to ADDRESS PATH...";
    let auth = auth::for_server(&a.auth, &a.listen, peer, lifetime)?;
    if a.once {
        return receive_once(&a.listen, a.runtime, &store, &config, &auth, (ui, summary));
    }
    let sessions = Arc::new(AtomicU64::new(0));
    let files = Arc::new(FileTally::default());
    let tally = files.clone();
    // One budget for the half-received frames of all sessions.
    let budget = limits.new_recv_budget();
    let limits = auth.server_limits(limits);
    net::serve_sessions(&a.listen, a.runtime, limits, move |now| {
        let n = sessions.fetch_add(1, Ordering::Relaxed) + 1;
        let machine = Receiver::new(
            ReceiverRole::new(TransferConfig::default()),
            config.clone(),
            now,
        )
        .with_recv_budget(budget.clone());
        let machine = auth.server_channel(machine, now);
        let app = ReceiverApp::new(store.clone());
        let label = format!("session {n}");
        let tracked = Tracked::new(app, "received", ui, Out::Stdout, label).summary(summary);
        (machine, tracked.tallied(tally.clone()))
    })?;
    term::info(&files.line());
    Ok(())
}

/// Receives one native session over `stream`, a transit connection the
/// wormhole handed over, keyed by `auth` (the secret both sides derived),
/// into `store`.
pub fn through(a: &ReceiveArgs, store: &Store, auth: Auth, stream: &TcpStream) -> CmdResult {
    let ui = Ui::new(a.quiet || a.json);
    if a.json {
        term::reserve_stdout_for_json();
    }
    note_partials(store, ui);
    let config = SessionLimits::default();
    let (mut machine, session) = once_session(store, &config, &auth, ui, Out::Stdout);
    let mut session = session.summary(Summary::new(a.quiet, a.json));
    let peer = Peer::Connected(stream);
    let result = net::run_client(&mut machine, &mut session, peer, a.runtime)
        .map_err(|e| auth::explain(e, &peer.name(), auth::Session::Receive));
    settle_once(result, session)
}

/// Makes sure `--dir` can take files before anything listens: a missing
/// last component is created (as rsync does), missing parents are not
/// (say how); a file in its place, or a directory this user cannot write
/// into, is refused with what to do.
fn prepare_dir(dir: &Path) -> CmdResult {
    let shown = sanitize(dir.as_os_str().as_encoded_bytes());
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Err(format!(
                "cannot receive into {shown}: it is not a directory (give --dir a directory, \
                 or a new name to create)"
            )
            .into())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => match std::fs::create_dir(dir) {
            Ok(()) => term::line(Out::Stderr, &format!("created the directory {shown}")),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(format!(
                    "cannot create {shown}: its parent directory does not exist (receive creates \
                     only the last component of --dir: run `mkdir -p {shown}` first, or pick \
                     another --dir)"
                )
                .into())
            }
            Err(e) => return Err(unusable_dir(&shown, &e).into()),
        },
        Err(e) => return Err(unusable_dir(&shown, &e).into()),
    }
    let c_path = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
        .map_err(|_| format!("cannot use {shown}: the path holds a NUL byte"))?;
    // SAFETY: a valid NUL-terminated path.
    if unsafe { libc::access(c_path.as_ptr(), libc::W_OK | libc::X_OK) } != 0 {
        return Err(unusable_dir(&shown, &io::Error::last_os_error()).into());
    }
    Ok(())
}

/// Why `--dir` cannot take files, and what to do.
fn unusable_dir(shown: &str, e: &io::Error) -> String {
    let hint = match e.raw_os_error() {
        Some(libc::ENOTDIR) => {
            "a part of the path is a file, not a directory: pick another --dir".to_string()
        }
        Some(libc::EACCES | libc::EPERM) => format!(
            "make it writable (e.g. `chmod u+wx {shown}`), run as a user who can write there, or \
             pick another --dir"
        ),
        Some(libc::EROFS) => "it is on a read-only file system: pick another --dir".to_string(),
        _ => "pick another --dir".to_string(),
    };
    format!(
        "cannot receive into {shown}: {} ({hint})",
        echoxfer::error::io_text(e)
    )
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

/// `receive --stdio` must be told how to authenticate (a code, from
/// `--code` or the environment, a secret file or `--insecure`): the sender
/// at the pipes' other end cannot see a code printed here in time, and
/// stdin carries the protocol, not a typed code.
fn stdio_auth(a: &SecureArgs) -> CmdResult<Auth> {
    auth::for_client(a, "receive --stdio", false)
}

/// The machine and app of a single receiving session.
fn once_session(
    store: &Store,
    config: &SessionLimits,
    auth: &Auth,
    ui: Ui,
    out: Out,
) -> (Channel<Receiver>, Tracked<ReceiverApp>) {
    let now = Instant::now();
    let machine = Receiver::new(
        ReceiverRole::new(TransferConfig::default()),
        config.clone(),
        now,
    );
    let machine = auth.server_channel(machine, now);
    // One session of the command line's own: entries are listed up to a
    // bound that keeps a hostile sender's million tiny files from costing
    // more than a few MiB (the rest are counted).
    let app = ReceiverApp::new(store.clone()).list_up_to(ONCE_LISTED);
    (
        machine,
        Tracked::new(app, "received", ui, out, "receive".into()),
    )
}

/// `receive --once`: serves connections one at a time until one sender's
/// session is done, and succeeds only if every file it offered was saved.
/// A connection that fails before offering anything (a port scanner,
/// garbage, a client of another protocol) does not use the session up;
/// one that tried a code and did not prove it does: one guess per code.
fn receive_once(
    addr: &HostPort,
    runtime: Runtime,
    store: &Store,
    config: &SessionLimits,
    auth: &Auth,
    (ui, summary): (Ui, Summary),
) -> CmdResult {
    let listener = net::bind_announced(addr)?;
    let driver = net::Driver::new(runtime)?;
    loop {
        let (stream, peer) = listener.accept()?;
        let (mut machine, session) = once_session(store, config, auth, ui, Out::Stdout);
        let mut session = session.summary(summary);
        let result = driver.run_tcp(&mut machine, stream, &mut session);
        let Err(e) = result else {
            return settle_once(Ok(()), session);
        };
        if machine.handshake().is_some_and(|h| h.spent_guess()) {
            session.finish();
            return Err(spent_code(&*e, peer));
        }
        let e = auth::explain(e, &peer.to_string(), auth::Session::Receive);
        if session.app.totals() == Totals::default() && !net::stopped_by_user() {
            term::note(
                ui,
                &format!("ignored {peer}: {e} (it offered no file); still waiting for a sender"),
            );
            continue;
        }
        return settle_once(Err(e), session);
    }
}

/// Why a `--once` receiver ends after `peer` tried a code and did not
/// prove it: that was the code's one guess.
fn spent_code(
    e: &(dyn std::error::Error + 'static),
    peer: SocketAddr,
) -> Box<dyn std::error::Error + Send + Sync> {
    let what = if auth::is_wrong_code(e) {
        format!("wrong code from {peer}: the sender used a different code")
    } else {
        format!("{peer} tried a code and left without proving it (possibly a wrong code: {e})")
    };
    format!(
        "{what}; this code is now used up (one guess per code, so that nobody can try many): \
         check the code and run receive again"
    )
    .into()
}

/// The outcome of a single receiving session: every offered entry saved
/// or already there.
fn settle_once(result: CmdResult, mut session: Tracked<ReceiverApp>) -> CmdResult {
    session.finish();
    result?;
    let totals = session.app.totals();
    if !term::all_delivered(&totals) {
        let missing = totals.left_behind();
        let offered = missing + totals.saved + totals.up_to_date + totals.dirs;
        let why = term::left_behind(&totals, 0);
        return Err(Box::new(term::PartialTransfer(format!(
            "partial transfer: {missing} of {offered} offered entries not saved ({why})"
        ))));
    }
    Ok(())
}
