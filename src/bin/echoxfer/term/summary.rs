//! What a file session's end looks like on the terminal: one line per file,
//! a total, the `files:` line a server prints when it stops, and the rate
//! and hash formats every summary shares. Pure formatting: prints nothing
//! itself.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use echoxfer::error::sanitize;
use echoxfer::files::{FileReport, Outcome};

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

/// How many offered files a report entry stands for.
pub fn files_in(f: &FileReport) -> u64 {
    match f.outcome {
        Outcome::Unlisted { refused } => refused,
        _ => 1,
    }
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
    /// Counts one session's files.
    pub fn add(&self, report: &[FileReport]) {
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
