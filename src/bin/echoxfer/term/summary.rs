//! What a file session's end looks like on the terminal: one line per file
//! and a total, the total alone (`--quiet`) or JSON (`--json`); the
//! `files:` line a server prints when it stops, and the rate and hash
//! formats every summary shares. Pure formatting: prints nothing itself.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use echoxfer::error::sanitize;
use echoxfer::files::{FileReport, Outcome, Totals};
use echoxfer::xfer::{EntryKind, RejectReason};

/// Throughput in decimal megabytes per second.
pub fn rate(bytes: u64, secs: f64) -> String {
    if secs <= 0.0 {
        return "n/a MB/s".into();
    }
    format!("{:.1} MB/s", bytes as f64 / secs / 1e6)
}

/// A BLAKE3 hash as lowercase hex, as the summaries print it.
pub fn hex(hash: &[u8; 32]) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

/// What the end of a session prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Summary {
    /// A line per file, then the total line.
    Lines,
    /// The total line only (`--quiet`).
    Total,
    /// One JSON object per entry, then one for the total (`--json`); see
    /// `docs/CLI.md`.
    Json,
}

impl Summary {
    /// The mode the flags ask for.
    pub fn new(quiet: bool, json: bool) -> Summary {
        match (quiet, json) {
            (_, true) => Summary::Json,
            (true, false) => Summary::Total,
            (false, false) => Summary::Lines,
        }
    }
}

/// Refused offers listed one by one; one line counts the rest (a peer
/// offering junk must not flood the terminal).
const REFUSED_SHOWN: usize = 20;

/// The lines a session's end prints (`verb`: `sent` or `received`).
/// Peer-supplied names and messages are sanitised. `skipped`: local
/// entries the sender skipped (links, special files).
pub fn summarize(
    verb: &str,
    report: &[FileReport],
    totals: &Totals,
    skipped: u64,
    elapsed: Duration,
    mode: Summary,
) -> Vec<String> {
    let mut lines = Vec::new();
    match mode {
        Summary::Lines => lines.extend(file_lines(verb, report)),
        Summary::Json => lines.extend(report.iter().map(|f| json_entry(verb, f))),
        Summary::Total => {}
    }
    let listed = report.len() as u64;
    let counted = totals.saved + totals.up_to_date + totals.dirs + totals.refused;
    let counted = counted + totals.discarded + totals.unfinished;
    let counted = counted + totals.unconfirmed + totals.unreadable;
    if mode == Summary::Lines && counted > listed {
        lines.push(format!(
            "... {} more entries not listed one by one",
            counted - listed
        ));
    }
    lines.push(match mode {
        Summary::Json => json_total(verb, totals, skipped, elapsed),
        _ => total_line(verb, totals, skipped, elapsed),
    });
    lines
}

/// The lines of the entries that were not delivered (refused, discarded,
/// unreadable, unconfirmed, incomplete), with why: what `--quiet` still
/// prints, on stderr.
pub fn problems(verb: &str, report: &[FileReport]) -> Vec<String> {
    let failed: Vec<FileReport> = report
        .iter()
        .filter(|f| {
            !matches!(
                f.outcome,
                Outcome::Saved { .. } | Outcome::UpToDate { .. } | Outcome::MetadataUpdated { .. }
            )
        })
        .cloned()
        .collect();
    file_lines(verb, &failed)
}

/// One line per file (directories are counted in the total only).
fn file_lines(verb: &str, report: &[FileReport]) -> Vec<String> {
    let mut lines = Vec::new();
    let (mut refused_shown, mut refused_rest) = (0, 0u64);
    for f in report {
        let name = sanitize(f.name.as_bytes());
        lines.push(match &f.outcome {
            Outcome::Saved { .. } if f.kind == EntryKind::Directory => continue,
            Outcome::Saved { hash } => {
                let resumed = if f.from > 0 {
                    format!(" (resumed from {})", f.from)
                } else {
                    String::new()
                };
                format!(
                    "{verb} {name}: {} bytes{resumed} blake3 {}",
                    f.size,
                    hex(hash)
                )
            }
            Outcome::UpToDate { .. } => format!("up to date {name}: {} bytes", f.size),
            Outcome::MetadataUpdated { .. } => format!(
                "metadata updated {name}: {} bytes (content up to date; mode and time set)",
                f.size
            ),
            Outcome::Unconfirmed => format!(
                "unconfirmed {name}: {} bytes sent, the session ended before the receiver confirmed it (sending again finds it up to date or resumes it)",
                f.size
            ),
            Outcome::Unreadable { message } => {
                let what = if verb == "sent" { "not sent" } else { "not received" };
                format!("{what} {name}: {}", sanitize(message.as_bytes()))
            }
            Outcome::Refused { .. } if refused_shown == REFUSED_SHOWN => {
                refused_rest += 1;
                continue;
            }
            Outcome::Refused { reason, message } => {
                refused_shown += 1;
                // The library's message names no flag: the CLI says which.
                let how = match reason {
                    RejectReason::Exists => " (the receiver replaces it when run with --overwrite)",
                    _ => "",
                };
                format!(
                    "refused {name}: {reason:?}: {}{how}",
                    sanitize(message.as_bytes())
                )
            }
            Outcome::Discarded => {
                format!("discarded {name}: content hash mismatch, nothing kept")
            }
            Outcome::Pending => format!(
                "incomplete {name}: {} of {} bytes {}",
                f.from + f.moved,
                f.size,
                match (verb, f.from + f.moved) {
                    ("sent", _) => "(run the same send again to resume)",
                    // An empty partial file is removed: nothing to resume from.
                    (_, 0) => "(nothing was written, no partial file is kept)",
                    _ => "(the partial file is kept for a resume)",
                }
            ),
        });
    }
    if refused_rest > 0 {
        lines.push(format!(
            "refused {refused_rest} more offers (not listed one by one)"
        ));
    }
    lines
}

/// `total: ...`: every count, the bytes moved, the time and the rate.
fn total_line(verb: &str, t: &Totals, skipped: u64, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64();
    let mut parts = vec![format!("{} {verb} ({} resumed)", t.saved, t.resumed)];
    parts.push(format!("{} up to date", t.up_to_date));
    if verb == "sent" {
        parts.push(format!("{skipped} skipped"));
    }
    parts.push(format!("{} refused", t.refused));
    if t.metadata_updated > 0 {
        parts.push(format!("{} metadata updated", t.metadata_updated));
    }
    if t.unreadable > 0 {
        parts.push(format!("{} unreadable", t.unreadable));
    }
    if t.unconfirmed > 0 {
        parts.push(format!("{} unconfirmed", t.unconfirmed));
    }
    if t.discarded > 0 {
        parts.push(format!("{} discarded", t.discarded));
    }
    if t.unfinished > 0 {
        parts.push(format!("{} incomplete", t.unfinished));
    }
    parts.push(format!("{} directories", t.dirs));
    format!(
        "total: {}; {} bytes moved in {secs:.2} s ({})",
        parts.join(", "),
        t.bytes_moved,
        rate(t.bytes_moved, secs)
    )
}

/// A string as a JSON string literal.
pub fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// One entry as a JSON object on one line.
fn json_entry(verb: &str, f: &FileReport) -> String {
    let kind = match f.kind {
        EntryKind::File => "file",
        EntryKind::Directory => "directory",
    };
    let (outcome, hash, reason) = match &f.outcome {
        Outcome::Saved { hash } => (verb, Some(hash), None),
        Outcome::UpToDate { hash } => ("up to date", Some(hash), None),
        Outcome::MetadataUpdated { hash } => ("metadata updated", Some(hash), None),
        Outcome::Unconfirmed => ("unconfirmed", None, None),
        Outcome::Unreadable { message } => ("unreadable", None, Some((None, message))),
        Outcome::Refused { reason, message } => ("refused", None, Some((Some(reason), message))),
        Outcome::Discarded => ("discarded", None, None),
        Outcome::Pending => ("incomplete", None, None),
    };
    let mut fields = vec![
        format!("\"path\":{}", json_str(&f.name)),
        format!("\"kind\":\"{kind}\""),
        format!("\"size\":{}", f.size),
        format!("\"outcome\":{}", json_str(outcome)),
        format!("\"from\":{}", f.from),
        format!("\"moved\":{}", f.moved),
    ];
    if let (Some(hash), EntryKind::File) = (hash, f.kind) {
        fields.push(format!("\"blake3\":\"{}\"", hex(hash)));
    }
    if let Some((reason, message)) = reason {
        if let Some(reason) = reason {
            fields.push(format!("\"reason\":{}", json_str(&format!("{reason:?}"))));
        }
        fields.push(format!("\"message\":{}", json_str(message)));
    }
    format!("{{{}}}", fields.join(","))
}

/// The total as one JSON object: `{"total": {...}}`.
fn json_total(verb: &str, t: &Totals, skipped: u64, elapsed: Duration) -> String {
    format!(
        "{{\"total\":{{\"{verb}\":{},\"resumed\":{},\"up_to_date\":{},\"metadata_updated\":{},\"skipped\":{skipped},\"refused\":{},\"unreadable\":{},\"unconfirmed\":{},\"discarded\":{},\"incomplete\":{},\"left_behind\":{},\"directories\":{},\"bytes_moved\":{},\"seconds\":{:.3}}}}}",
        t.saved,
        t.resumed,
        t.up_to_date,
        t.metadata_updated,
        t.refused,
        t.unreadable,
        t.unconfirmed,
        t.discarded,
        t.unfinished,
        t.left_behind() + skipped,
        t.dirs,
        t.bytes_moved,
        elapsed.as_secs_f64()
    )
}

/// The exit status of a run that ended cleanly but did not deliver
/// everything it was given (rsync's "partial transfer").
pub const PARTIAL_EXIT: u8 = 23;

/// A run that did not deliver everything it was given: exits with
/// [`PARTIAL_EXIT`], not the failure status.
#[derive(Debug)]
pub struct PartialTransfer(pub String);

impl std::fmt::Display for PartialTransfer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PartialTransfer {}

/// What was left behind and why, for a partial transfer's message:
/// `skipped` entries the listing could not offer or read, then every
/// outcome that is not a delivery.
pub fn left_behind(t: &Totals, skipped: u64) -> String {
    let mut why = Vec::new();
    for (n, what) in [
        (skipped, "could not be offered or read when listed"),
        (t.unreadable, "unreadable"),
        (t.refused, "refused"),
        (t.discarded, "discarded (hash mismatch)"),
        (t.unconfirmed, "unconfirmed"),
        (t.unfinished, "incomplete"),
    ] {
        if n > 0 {
            why.push(format!("{n} {what}"));
        }
    }
    why.join(", ")
}

/// Whether every entry of the session was saved or up to date.
pub fn all_delivered(t: &Totals) -> bool {
    t.left_behind() == 0
}

/// File outcomes totalled over a server's sessions, for the line it
/// prints when it stops.
#[derive(Debug, Default)]
pub struct FileTally {
    saved: AtomicU64,
    up_to_date: AtomicU64,
    refused: AtomicU64,
    discarded: AtomicU64,
    incomplete: AtomicU64,
}

impl FileTally {
    /// Counts one session's entries.
    pub fn add(&self, t: &Totals) {
        self.saved.fetch_add(t.saved, Ordering::Relaxed);
        self.up_to_date.fetch_add(t.up_to_date, Ordering::Relaxed);
        self.refused.fetch_add(t.refused, Ordering::Relaxed);
        self.discarded.fetch_add(t.discarded, Ordering::Relaxed);
        self.incomplete.fetch_add(t.unfinished, Ordering::Relaxed);
    }

    /// One line: how many files were saved, up to date, refused,
    /// discarded, left incomplete.
    pub fn line(&self) -> String {
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        format!(
            "files: {} saved, {} up to date, {} refused, {} discarded (hash mismatch), {} incomplete (sending again resumes them)",
            n(&self.saved),
            n(&self.up_to_date),
            n(&self.refused),
            n(&self.discarded),
            n(&self.incomplete)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_escape_quotes_backslashes_and_control_characters() {
        assert_eq!(
            json_str("a\"b\\c\n\u{1b}é"),
            "\"a\\\"b\\\\c\\u000a\\u001bé\""
        );
    }

    #[test]
    fn the_total_line_counts_every_outcome() {
        let t = Totals {
            saved: 3,
            resumed: 1,
            up_to_date: 2,
            dirs: 4,
            refused: 1,
            discarded: 0,
            unfinished: 0,
            bytes_moved: 2_000_000,
            ..Totals::default()
        };
        let line = total_line("sent", &t, 5, Duration::from_secs(2));
        assert_eq!(
            line,
            "total: 3 sent (1 resumed), 2 up to date, 5 skipped, 1 refused, 4 directories; 2000000 bytes moved in 2.00 s (1.0 MB/s)"
        );
    }
}
