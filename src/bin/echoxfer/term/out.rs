//! Where the commands' text goes: the progress mode ([`Ui`]), stdout or
//! stderr ([`Out`]), whole lines that never tear a progress bar, and the
//! fixed lines every server or client prints (the bound address, `stopped:`,
//! the legacy warning, a peer's text made safe). Touches stdout and stderr
//! only.

use std::io::{self, IsTerminal, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

use echoxfer::driver::ServeReport;
use echoxfer::echo::UdpServerStats;
use echoxfer::error::sanitize;
use echoxfer::legacy::NO_INTEGRITY_WARNING;
use indicatif::{MultiProgress, ProgressDrawTarget};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ui {
    /// Nothing (`--quiet`).
    Quiet,
    /// An `indicatif` bar on stderr (stderr is a terminal).
    Bar,
    /// A plain line now and then on stderr (stderr is a pipe or a file).
    Plain,
}

impl Ui {
    pub fn new(quiet: bool) -> Ui {
        if quiet {
            Ui::Quiet
        } else if io::stderr().is_terminal() {
            Ui::Bar
        } else {
            Ui::Plain
        }
    }
}

/// Where summary lines go: stdout, or stderr when stdout carries the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Out {
    Stdout,
    Stderr,
}

impl Out {
    /// Stderr when stdout carries the protocol (`--stdio`), else stdout.
    pub fn for_summary(stdio: bool) -> Out {
        if stdio {
            Out::Stderr
        } else {
            Out::Stdout
        }
    }
}

/// All bars of this process, so several sessions' bars share the terminal.
pub fn bars() -> &'static MultiProgress {
    static MULTI: OnceLock<MultiProgress> = OnceLock::new();
    MULTI.get_or_init(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
}

/// Prints one line to `out` without tearing any progress bar.
pub fn line(out: Out, text: &str) {
    bars().suspend(|| match out {
        Out::Stdout => {
            let mut o = io::stdout().lock();
            let _ = writeln!(o, "{text}");
            let _ = o.flush();
        }
        Out::Stderr => {
            let _ = writeln!(io::stderr().lock(), "{text}");
        }
    });
}

/// A progress line for the terminal (stderr), unless quiet.
pub fn note(ui: Ui, text: &str) {
    if ui != Ui::Quiet {
        line(Out::Stderr, text);
    }
}

/// Prints a peer's bytes as one line on stdout, sanitised (no control
/// characters reach the terminal); a closed stdout is an error, which ends
/// a client's session.
pub fn peer_line(text: &[u8]) -> io::Result<()> {
    let mut out = io::stdout().lock();
    writeln!(out, "{}", sanitize(text))?;
    out.flush()
}

/// Prints a peer's bytes as one line on stdout, sanitised, for a server:
/// a closed stdout costs the line, not the session.
pub fn peer_line_lossy(text: &[u8]) {
    line(Out::Stdout, &sanitize(text));
}

/// Whether stdout holds the JSON summaries alone (`--json`).
static JSON_ONLY: AtomicBool = AtomicBool::new(false);

/// Keeps stdout for `--json`'s objects alone: from now on the lines a
/// command prints for people (`listening on`, `code:`, `stopped:`,
/// `files:`) go to stderr.
pub fn reserve_stdout_for_json() {
    JSON_ONLY.store(true, Ordering::Relaxed);
}

/// Where a line for people goes: stdout, unless `--json` keeps it for
/// JSON alone (then stderr).
pub fn info_out() -> Out {
    if JSON_ONLY.load(Ordering::Relaxed) {
        Out::Stderr
    } else {
        Out::Stdout
    }
}

/// Prints a line for people (see [`info_out`]).
pub fn info(text: &str) {
    line(info_out(), text);
}

/// Lines printed right after `listening on`: a code is printed only once
/// its listener is bound (a port in use prints no code).
static AFTER_LISTENING: Mutex<Vec<(Out, String)>> = Mutex::new(Vec::new());

/// Prints `text` to `out` once the listener is bound (see [`announce`]).
pub fn after_listening(out: Out, text: String) {
    AFTER_LISTENING
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push((out, text));
}

/// Prints the bound address, so scripts and tests that asked for port 0
/// learn the real one, then what waited for it (the code, and what the
/// other side runs).
pub fn announce(addr: SocketAddr) {
    info(&format!("listening on {addr}"));
    let queued = std::mem::take(&mut *AFTER_LISTENING.lock().unwrap_or_else(|p| p.into_inner()));
    for (out, text) in queued {
        line(out, &text);
    }
}

/// Every `--legacy` command says this once, on stderr, before it starts.
pub fn legacy_warning() {
    line(Out::Stderr, NO_INTEGRITY_WARNING);
}

/// The line a stream server prints when it has stopped: every session counted once.
pub fn stopped(r: &ServeReport) -> String {
    let total = r.ok + r.failed + r.aborted + r.unfinished;
    let mut line = format!(
        "stopped: {total} sessions: {} ended cleanly, {} failed, {} aborted by the shutdown",
        r.ok, r.failed, r.aborted
    );
    if r.unfinished > 0 {
        line += &format!(", {} cut unfinished", r.unfinished);
    }
    if r.refused > 0 {
        line += &format!(
            "; {} connections refused (their source was at --max-per-source, or had failed \
             guesses at the code: each doubles how long it is refused)",
            r.refused
        );
    }
    line
}

/// The line the UDP echo server prints when it has stopped.
pub fn udp_stopped(s: &UdpServerStats) -> String {
    format!(
        "stopped: {} datagrams echoed, {} dropped, refused {} from service ports, {} from bad addresses, {} over the reply rate",
        s.echoed, s.dropped, s.refused_port, s.refused_address, s.rate_limited
    )
}
