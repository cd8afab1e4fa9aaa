//! The echoxfer CLI in wormhole mode, for interop tests against the local
//! servers of [`WormholeServers`]: every command gets `--relay-url` and
//! `--transit-helper` (never the public servers, whatever the environment
//! says), runs in its own process group with stdin closed, has its stdout
//! and stderr collected as they come, and is killed (with its group) if
//! dropped before it exits.
//!
//! ```ignore
//! let Some(servers) = WormholeServers::start("my_test") else { return };
//! let mut send = EchoWormhole::spawn(echoxfer(&servers, "send", &["--text", "hi"]));
//! let code = send.code();
//! let receive = EchoWormhole::spawn(echoxfer(&servers, "receive", &[&code])).finish();
//! assert_eq!(receive.success_stdout(), "hi\n");
//! ```
#![cfg(unix)]

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::wormhole_servers::{code_in, Finished, WormholeServers, RUN_WITHIN};

/// `echoxfer SUBCOMMAND --relay-url MAILBOX --transit-helper RELAY ARGS...`
/// with the local servers' addresses.
pub fn echoxfer(servers: &WormholeServers, subcommand: &str, args: &[&str]) -> Command {
    echoxfer_with(
        &servers.mailbox_url(),
        &servers.relay_hint(),
        subcommand,
        args,
    )
}

/// `echoxfer SUBCOMMAND --relay-url RELAY_URL --transit-helper
/// TRANSIT_HELPER ARGS...`, with the `WORMHOLE_*` variables removed.
pub fn echoxfer_with(
    relay_url: &str,
    transit_helper: &str,
    subcommand: &str,
    args: &[&str],
) -> Command {
    // option_env!: every test file compiles this module, and the binary
    // exists only with the `cli` feature (the default).
    let Some(bin) = option_env!("CARGO_BIN_EXE_echoxfer") else {
        panic!("no echoxfer binary: it needs the `cli` feature (on by default)");
    };
    let mut cmd = Command::new(bin);
    cmd.arg(subcommand)
        .arg("--relay-url")
        .arg(relay_url)
        .arg("--transit-helper")
        .arg(transit_helper)
        .args(args)
        .env_remove("WORMHOLE_RELAY_URL")
        .env_remove("WORMHOLE_TRANSIT_HELPER")
        .process_group(0);
    cmd
}

/// A running echoxfer command (see the module's documentation).
pub struct EchoWormhole {
    child: Child,
    what: String,
    stderr_lines: mpsc::Receiver<String>,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<thread::JoinHandle<()>>,
}

impl EchoWormhole {
    /// Spawns `cmd` (made by [`echoxfer`]) with stdin closed and stdout
    /// and stderr piped.
    pub fn spawn(mut cmd: Command) -> EchoWormhole {
        let what = format!("{cmd:?}");
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        let mut out = child.stdout.take().expect("piped stdout");
        let err = child.stderr.take().expect("piped stderr");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, stderr_lines) = mpsc::channel();
        let out_reader = {
            let stdout = Arc::clone(&stdout);
            thread::spawn(move || {
                let mut chunk = [0u8; 8192];
                while let Ok(n @ 1..) = out.read(&mut chunk) {
                    stdout.lock().unwrap().extend_from_slice(&chunk[..n]);
                }
            })
        };
        let err_reader = {
            let stderr = Arc::clone(&stderr);
            thread::spawn(move || {
                for line in BufReader::new(err).lines() {
                    let Ok(line) = line else { break };
                    let mut all = stderr.lock().unwrap();
                    all.push_str(&line);
                    all.push('\n');
                    drop(all);
                    let _ = tx.send(line);
                }
            })
        };
        EchoWormhole {
            child,
            what,
            stderr_lines,
            stdout,
            stderr,
            readers: vec![out_reader, err_reader],
        }
    }

    /// The code a running `echoxfer send` prints on stderr ("Wormhole code
    /// is: CODE"), waiting at most [`RUN_WITHIN`]. Panics, with its output
    /// so far, if it exits or the time runs out first. Call it once.
    pub fn code(&mut self) -> String {
        let until = Instant::now() + RUN_WITHIN;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.stderr_lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(code) = code_in(&line) {
                        return code;
                    }
                }
                Err(why) => {
                    kill_group(&mut self.child);
                    panic!(
                        "{} printed no code ({why:?}, within {RUN_WITHIN:?}); stderr so far:\n{}",
                        self.what,
                        self.stderr.lock().unwrap()
                    )
                }
            }
        }
    }

    /// Its stderr so far.
    pub fn stderr_so_far(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits at most [`RUN_WITHIN`] for it to exit; see
    /// [`EchoWormhole::finish_within`].
    pub fn finish(self) -> Finished {
        self.finish_within(RUN_WITHIN)
    }

    /// Waits at most `bound` for it to exit and returns how it ended with
    /// all its output. Panics, with its output, when it is still running
    /// after `bound` (after killing it).
    pub fn finish_within(mut self, bound: Duration) -> Finished {
        let until = Instant::now() + bound;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for echoxfer") {
                break status;
            }
            if Instant::now() >= until {
                kill_group(&mut self.child);
                self.join_readers();
                panic!(
                    "{} did not exit within {bound:?} (killed)\n--- stdout ---\n{}\n\
                     --- stderr ---\n{}",
                    self.what,
                    String::from_utf8_lossy(&self.stdout.lock().unwrap()),
                    self.stderr.lock().unwrap()
                );
            }
            thread::sleep(Duration::from_millis(20));
        };
        // echoxfer starts no processes: its pipes closed when it exited.
        self.join_readers();
        let stdout = String::from_utf8_lossy(&self.stdout.lock().unwrap()).into_owned();
        let stderr = self.stderr.lock().unwrap().clone();
        Finished {
            status,
            stdout,
            stderr,
        }
    }

    fn join_readers(&mut self) {
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
    }
}

impl Drop for EchoWormhole {
    fn drop(&mut self) {
        kill_group(&mut self.child);
    }
}

/// SIGKILLs `child`'s process group (it was started as its leader) and
/// reaps it, unless it was reaped already (its pid could then be
/// another's: an unreaped child keeps its pid and group id).
fn kill_group(child: &mut Child) {
    if !matches!(child.try_wait(), Ok(None)) {
        return;
    }
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: kill(2) with a negative pid signals that process group;
        // it touches no memory of ours.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}
