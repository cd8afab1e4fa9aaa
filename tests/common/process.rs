//! Child processes for end-to-end tests: killed on drop, and waited on with
//! bounds, never with sleeps.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, ExitStatus};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// Every wait in these tests is bounded by this.
pub const BOUND: Duration = Duration::from_secs(60);

/// A child process that is killed when dropped.
pub struct Guard {
    pub child: Child,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Guard {
    /// Waits for the process to exit, at most `BOUND`.
    pub fn wait(&mut self) -> ExitStatus {
        let until = Instant::now() + BOUND;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < until,
                "process did not exit within {BOUND:?}"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Spawns `cmd` with piped stdout and waits (bounded) for a stdout line
/// starting with `prefix`; returns the rest of that line and a receiver of
/// the following lines.
pub fn spawn_until(mut cmd: Command, prefix: &str) -> (Guard, String, mpsc::Receiver<String>) {
    cmd.stdout(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    let stdout: ChildStdout = child.stdout.take().unwrap();
    let guard = Guard { child };
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let until = Instant::now() + BOUND;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no line starting with {prefix:?} within {BOUND:?}"));
        if let Some(rest) = line.strip_prefix(prefix) {
            return (guard, rest.trim().to_string(), rx);
        }
    }
}

/// The legacy reference peer, the in-repository fixture
/// `tests/fixtures/seedpeer.py` (nothing outside the repository is used);
/// a missing python3 or fixture FAILS the test.
pub fn seedpeer() -> std::path::PathBuf {
    use std::process::Stdio;
    let python = Command::new("python3")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    assert!(
        matches!(python, Ok(s) if s.success()),
        "python3 is required for the seed-peer tests and was not found"
    );
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/seedpeer.py");
    assert!(
        fixture.is_file(),
        "seed peer fixture missing at {}: restore it from git",
        fixture.display()
    );
    fixture
}

/// Waits (bounded) for a line from `lines` that contains `needle`.
pub fn line_containing(lines: &mpsc::Receiver<String>, needle: &str) -> String {
    let until = Instant::now() + BOUND;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no line containing {needle:?} within {BOUND:?}"));
        if line.contains(needle) {
            return line;
        }
    }
}
