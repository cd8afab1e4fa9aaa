//! `echoxfer send`: offers files to a receiver over TCP or stdin/stdout,
//! with a progress meter and one summary line per file; fails unless every
//! file was saved. `--legacy` is the seed protocol, in [`legacy`].

mod legacy;

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Instant;

use echoxfer::files::{Outcome, SenderApp};
use echoxfer::xfer::Sender;
use echoxfer::{SessionLimits, TransferConfig};

use crate::args::SendArgs;
use crate::auth::{self, Channel};
use crate::net::{self, CmdResult, Peer};
use crate::term::{Out, Tracked, Ui};

/// `echoxfer send`.
pub fn send(a: SendArgs) -> CmdResult {
    if a.legacy {
        return legacy::send(a);
    }
    if a.dry_run {
        return dry_run(&a.files);
    }
    let auth = auth::for_client(&a.auth, "send")?;
    let ui = Ui::new(a.quiet);
    let out = Out::for_summary(a.stdio);
    let transfer = TransferConfig::default();
    check_readable(&a.files)?;
    let app = SenderApp::open(&a.files, transfer.max_name_len)?;
    let now = Instant::now();
    let sender = Sender::new(app.role(transfer), SessionLimits::default(), now);
    let mut machine = Channel::client(sender, &auth, now);
    let mut session = Tracked::new(app, "sent", ui, out, "send".into());
    let peer = Peer::chosen(a.stdio, &a.to, "`echoxfer receive`");
    let result = net::run_client(&mut machine, &mut session, peer, a.runtime)
        .map_err(|e| auth::explain(e, &peer.name(), "run receive again"));
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

/// `send --dry-run`: what would be offered, checked as a real run checks
/// it (readable, a valid name), then a total; nothing is sent.
fn dry_run(paths: &[PathBuf]) -> CmdResult {
    check_readable(paths)?;
    let app = SenderApp::open(paths, TransferConfig::default().max_name_len)?;
    let report = app.report();
    for f in report {
        let path = f.path.as_deref().unwrap_or(Path::new("?"));
        println!(
            "would send {} ({} bytes) from {}",
            f.name,
            f.size,
            path.display()
        );
    }
    let bytes: u64 = report.iter().map(|f| f.size).sum();
    println!(
        "total: {} files, {bytes} bytes (dry run: nothing sent)",
        report.len()
    );
    Ok(())
}

/// Opens every path once before the session, so that one that cannot be
/// read is named, with what to do, before anything is sent.
fn check_readable(paths: &[PathBuf]) -> CmdResult {
    for path in paths {
        File::open(path).map_err(|e| cannot_open(path, &e))?;
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
        path.display(),
        without_os_code(e)
    )
}

/// An I/O error's text without std's ` (os error N)` suffix.
fn without_os_code(e: &io::Error) -> String {
    let text = e.to_string();
    match text.rfind(" (os error ") {
        Some(i) if text.ends_with(')') => text[..i].to_string(),
        _ => text,
    }
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
