//! `echoxfer send`: offers files and directories to a receiver over TCP or
//! stdin/stdout, with a progress meter and a summary (a line per file and
//! a total, the total alone, or JSON); fails unless every entry was saved
//! or already there. `--legacy` is the seed protocol, in [`legacy`].

mod legacy;

use std::fs::File;
use std::io;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Instant;

use echoxfer::error::sanitize;
use echoxfer::files::SenderApp;
use echoxfer::xfer::{EntryKind, Sender};
use echoxfer::{SessionLimits, TransferConfig};

use crate::args::SendArgs;
use crate::auth::{self, Auth};
use crate::net::{self, CmdResult, Peer};
use crate::term::{self, Out, Summary, Tracked, Ui};
use echoxfer::secure::Handshake;

/// `echoxfer send`.
pub fn send(a: SendArgs) -> CmdResult {
    if a.legacy {
        return legacy::send(a);
    }
    if a.dry_run {
        return dry_run(&a.files, Summary::new(a.quiet, a.json));
    }
    let auth = auth::for_client(&a.auth, "send", !a.stdio)?;
    let to = match &a.to {
        Some(to) => to.clone(),
        None => crate::addr::HostPort::parse(crate::args::DEFAULT_TO)?,
    };
    session(&a, auth, Peer::chosen(a.stdio, &to, "`echoxfer receive`"))
}

/// Sends `a.files` over `stream`, a transit connection the wormhole
/// handed over, keyed by `auth` (the secret both sides derived).
pub fn through(a: &SendArgs, auth: Auth, stream: &TcpStream) -> CmdResult {
    session(a, auth, Peer::Connected(stream))
}

/// One sending session with `peer`, and its summary.
fn session(a: &SendArgs, auth: Auth, peer: Peer) -> CmdResult {
    let ui = Ui::new(a.quiet || a.json);
    let out = Out::for_summary(a.stdio);
    let transfer = TransferConfig::default();
    let app = list(&a.files, &transfer)?;
    let links = app.hard_links();
    if links > 0 {
        let note = format!("note: {links} files are hard links to others sent here; each goes as a separate copy (hard links are not kept)");
        term::line(Out::Stderr, &note);
    }
    let now = Instant::now();
    let sender = Sender::new(app.role(transfer), SessionLimits::default(), now);
    let mut machine = auth.client_channel(sender, now);
    let mut session =
        Tracked::new(app, "sent", ui, out, "send".into()).summary(Summary::new(a.quiet, a.json));
    let result = net::run_client(&mut machine, &mut session, peer, a.runtime);
    // A session that never reached the receiver (nothing listens there, a
    // wrong code) offered nothing: no summary of files "incomplete".
    let reached = match &result {
        Ok(()) => true,
        Err(e) => {
            e.downcast_ref::<net::NotConnected>().is_none()
                && machine
                    .handshake()
                    .is_none_or(|h| h == Handshake::Confirmed)
        }
    };
    let result = result.map_err(|e| auth::explain(e, &peer.name(), auth::Session::Send));
    if reached {
        session.finish();
    } else {
        session.discard();
    }
    result?;
    let totals = session.app.totals();
    // Links and special files are left out by design (and said so);
    // names that cannot be offered and unreadable entries were not delivered.
    let skipped = session.app.skipped();
    let failed = skipped.iter().filter(|s| s.why.is_failure()).count() as u64;
    let missing = totals.left_behind() + failed;
    if missing > 0 {
        let given = session.app.report().len() as u64 + failed;
        let why = term::left_behind(&totals, failed);
        return Err(Box::new(term::PartialTransfer(format!(
            "partial transfer: {missing} of {given} entries not delivered ({why}); see the lines above for each"
        ))));
    }
    Ok(())
}

/// Lists what `paths` hold, with a warning for each entry skipped.
fn list(paths: &[PathBuf], transfer: &TransferConfig) -> CmdResult<SenderApp> {
    check_readable(paths)?;
    // The walk's errors name local paths: escaped like the rest.
    let app = SenderApp::open(paths, &transfer.path_limits())
        .map_err(|e| sanitize(e.to_string().as_bytes()))?;
    // Warnings even with --quiet: a file the user named does not go.
    for s in app.skipped() {
        let why = sanitize(s.why.to_string().as_bytes());
        let line = format!("warning: skipped {}: {why}", shown(&s.path));
        term::line(Out::Stderr, &line);
    }
    Ok(app)
}

/// A local path as this side shows it: a file name may hold escape
/// sequences and newlines, which never reach the terminal as they are
/// (control and invisible characters escaped as `\u{...}`, as the
/// receiver shows a peer's names).
fn shown(path: &Path) -> String {
    sanitize(path.as_os_str().as_encoded_bytes())
}

/// `send --dry-run`: what would be offered, checked as a real run checks
/// it (readable, a valid name), then a total; nothing is sent. `--quiet`
/// prints the total alone, `--json` an object per entry and one for the
/// total (docs/CLI.md).
fn dry_run(paths: &[PathBuf], mode: Summary) -> CmdResult {
    let app = list(paths, &TransferConfig::default())?;
    let report = app.report();
    let mut unreadable = 0;
    for f in report {
        let path = f.path.as_deref().unwrap_or(Path::new("?"));
        let what = match f.kind {
            EntryKind::Directory => "directory".to_string(),
            EntryKind::File => format!("{} bytes", f.size),
        };
        // As a real run would: a file that cannot be opened is skipped.
        if f.kind == EntryKind::File {
            if let Err(e) = File::open(path) {
                unreadable += 1;
                let why = echoxfer::error::io_text(&e);
                // A warning, as a real run gives: stdout stays the listing.
                let line = format!("warning: would skip {}: {why}", shown(path));
                term::line(Out::Stderr, &line);
                continue;
            }
        }
        match mode {
            Summary::Total => {}
            Summary::Lines => println!("would send {} ({what}) from {}", f.name, shown(path)),
            Summary::Json => println!("{}", dry_json(&f.name, f.kind, f.size, &shown(path))),
        }
    }
    let bytes: u64 = report.iter().map(|f| f.size).sum();
    let dirs = report
        .iter()
        .filter(|f| f.kind == EntryKind::Directory)
        .count();
    let (files, skipped) = (
        report.len() - dirs - unreadable,
        app.skipped().len() + unreadable,
    );
    println!("{}", dry_total(mode, files, dirs, bytes, skipped));
    Ok(())
}

/// One entry of `send --dry-run --json`.
fn dry_json(name: &str, kind: EntryKind, size: u64, local: &str) -> String {
    let kind = match kind {
        EntryKind::Directory => "directory",
        EntryKind::File => "file",
    };
    format!(
        "{{\"path\":{},\"kind\":\"{kind}\",\"size\":{size},\"outcome\":\"would send\",\"local\":{}}}",
        term::json_str(name),
        term::json_str(local)
    )
}

/// The total of `send --dry-run`, as a line or as JSON.
fn dry_total(mode: Summary, files: usize, dirs: usize, bytes: u64, skipped: usize) -> String {
    if mode == Summary::Json {
        format!(
            "{{\"total\":{{\"dry_run\":true,\"files\":{files},\"directories\":{dirs},\"bytes\":{bytes},\"skipped\":{skipped}}}}}"
        )
    } else {
        format!(
            "total: {files} files, {dirs} directories, {bytes} bytes, {skipped} skipped (dry run: nothing sent)"
        )
    }
}

/// Opens every path once before the session, so that one that cannot be
/// read is named, with what to do, before anything is sent.
fn check_readable(paths: &[PathBuf]) -> CmdResult {
    for path in paths {
        std::fs::symlink_metadata(path).map_err(|e| cannot_open(path, &e))?;
        if path.is_file() {
            File::open(path).map_err(|e| cannot_open(path, &e))?;
        }
    }
    Ok(())
}

/// `cannot open PATH: REASON (WHAT TO DO)`.
pub fn cannot_open(path: &Path, e: &io::Error) -> String {
    let hint = match e.kind() {
        io::ErrorKind::NotFound => "check the path",
        io::ErrorKind::PermissionDenied => {
            "check its permissions, or run as a user who can read it"
        }
        _ => "check that it is a readable file",
    };
    format!(
        "cannot open {}: {} ({hint})",
        shown(path),
        echoxfer::error::io_text(e)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_is_named_with_the_reason_and_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.txt");
        let e = check_readable(std::slice::from_ref(&missing))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            format!(
                "cannot open {}: No such file or directory (check the path)",
                missing.display()
            )
        );
    }
}
