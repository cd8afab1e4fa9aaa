//! Local magic-wormhole servers and the Python `wormhole` CLI, for interop
//! tests: a mailbox server (`twist wormhole-mailbox`) and a transit relay
//! (`twist transitrelay`) from a Python venv, on loopback, on ports the
//! kernel picks, killed (their whole process group) when dropped.
//!
//! ```ignore
//! let Some(servers) = WormholeServers::start("my_test") else { return };
//! let mut send = servers.spawn_wormhole(&["send", "--text", "hi"]);
//! let code = send.code();
//! let receive = servers.spawn_wormhole(&["receive", "--no-listen", &code]);
//! assert_eq!(receive.finish().success_stdout(), "hi\n");
//! ```
//!
//! Where the tools come from ([`Tools::find`]): `$ECHOXFER_WORMHOLE_VENV/bin`
//! when that variable is set (a venv without them fails the test), else
//! `wormhole` and `twist` on `PATH`. When they are absent, the test is
//! skipped with one line on stderr saying how to run it ([`SETUP`]),
//! unless `CI=true` or `ECHOXFER_REQUIRE_WORMHOLE=1`: then it fails, so a
//! CI run that silently skipped every interop test cannot pass.
//!
//! Every wait is bounded (no fixed sleeps: readiness is a TCP connect that
//! succeeds); every process started here is killed with its process group.
#![cfg(unix)]

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// The versions the interop tests run against, as `.ci/run` installs them.
pub const PINNED: &str = "magic-wormhole==0.24.0 magic-wormhole-mailbox-server==0.8.0 \
                          magic-wormhole-transit-relay==0.5.0";

/// How to get the tools, printed when a test is skipped.
pub const SETUP: &str =
    "python3 -m venv /tmp/echoxfer-wvenv && /tmp/echoxfer-wvenv/bin/pip install \
     magic-wormhole==0.24.0 magic-wormhole-mailbox-server==0.8.0 \
     magic-wormhole-transit-relay==0.5.0 && ECHOXFER_WORMHOLE_VENV=/tmp/echoxfer-wvenv cargo test";

/// How long a server may take to accept connections.
pub const START_WITHIN: Duration = Duration::from_secs(30);

/// How long a Python `wormhole` run may take by default
/// ([`PyWormhole::finish`]), and to print its code ([`PyWormhole::code`]).
pub const RUN_WITHIN: Duration = Duration::from_secs(60);

/// The Python executables the harness runs.
#[derive(Debug, Clone)]
pub struct Tools {
    /// The `wormhole` CLI (magic-wormhole).
    pub wormhole: PathBuf,
    /// Twisted's `twist`, with the mailbox server's and transit relay's
    /// plugins.
    pub twist: PathBuf,
}

impl Tools {
    /// The tools: `$ECHOXFER_WORMHOLE_VENV/bin/{wormhole,twist}` when the
    /// variable is set (panics if they are not there: a wrong setting is
    /// not a reason to skip), else `wormhole` and `twist` on `PATH`.
    ///
    /// `None` when they are absent and absence is allowed; panics when
    /// absent and `CI=true` or `ECHOXFER_REQUIRE_WORMHOLE=1`.
    pub fn find() -> Option<Tools> {
        if let Some(venv) = std::env::var_os("ECHOXFER_WORMHOLE_VENV") {
            let bin = Path::new(&venv).join("bin");
            let tools = Tools {
                wormhole: bin.join("wormhole"),
                twist: bin.join("twist"),
            };
            for tool in [&tools.wormhole, &tools.twist] {
                assert!(
                    tool.is_file(),
                    "ECHOXFER_WORMHOLE_VENV={} has no {}; install there: pip install {PINNED}",
                    Path::new(&venv).display(),
                    tool.display()
                );
            }
            return Some(tools);
        }
        match (on_path("wormhole"), on_path("twist")) {
            (Some(wormhole), Some(twist)) => Some(Tools { wormhole, twist }),
            _ if required() => panic!(
                "wormhole interop tools missing: .ci/run installs them \
                 (set ECHOXFER_WORMHOLE_VENV to a venv with {PINNED}, or put \
                 wormhole and twist on PATH)"
            ),
            _ => None,
        }
    }
}

/// Whether a missing tool fails the test instead of skipping it.
fn required() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
        || std::env::var("ECHOXFER_REQUIRE_WORMHOLE").is_ok_and(|v| v == "1")
}

/// `name`'s path on `PATH`, if it is there.
fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// Writes one line to the real stderr, past the test harness's capture,
/// so a skip is seen in `cargo test`'s output.
pub fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// A running mailbox server and transit relay, on 127.0.0.1; both are
/// killed, and their databases and logs deleted, on drop.
pub struct WormholeServers {
    tools: Tools,
    mailbox: Server,
    relay: Server,
    // Declared last: removed after the servers are killed (Drop of the
    // fields above runs first).
    dir: tempfile::TempDir,
}

impl WormholeServers {
    /// Starts both servers and waits (at most [`START_WITHIN`] each) until
    /// each accepts TCP connections. `None`, after one line on stderr
    /// naming `test` and saying how to run it, when the tools are absent
    /// (see [`Tools::find`] for when absence fails instead). Panics, with
    /// the servers' logs, if a server does not start.
    pub fn start(test: &str) -> Option<WormholeServers> {
        let Some(tools) = Tools::find() else {
            say(&format!(
                "{test}: skipped, wormhole interop tools (wormhole, twist) not found; \
                 to run it: {SETUP}"
            ));
            return None;
        };
        Some(WormholeServers::start_with(tools))
    }

    /// [`WormholeServers::start`] with the tools given.
    pub fn start_with(tools: Tools) -> WormholeServers {
        let dir = tempfile::Builder::new()
            .prefix("echoxfer-wormhole-")
            .tempdir()
            .expect("a temporary directory for the servers");
        let channel_db = dir.path().join("mailbox-channel.sqlite");
        let mailbox = Server::start(
            "mailbox",
            &tools.twist,
            &[
                "wormhole-mailbox".to_string(),
                "--port=tcp:0:interface=127.0.0.1".to_string(),
                format!("--channel-db={}", channel_db.display()),
            ],
            dir.path(),
        );
        let relay = Server::start(
            "relay",
            &tools.twist,
            &[
                "transitrelay".to_string(),
                "--port=tcp:0:interface=127.0.0.1".to_string(),
            ],
            dir.path(),
        );
        WormholeServers {
            tools,
            mailbox,
            relay,
            dir,
        }
    }

    /// The mailbox server's URL: `ws://127.0.0.1:PORT/v1`.
    pub fn mailbox_url(&self) -> String {
        format!("ws://127.0.0.1:{}/v1", self.mailbox.port)
    }

    /// The transit relay as a wormhole hint: `tcp:127.0.0.1:PORT`.
    pub fn relay_hint(&self) -> String {
        format!("tcp:127.0.0.1:{}", self.relay.port)
    }

    /// The transit relay's address.
    pub fn relay_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.relay.port))
    }

    /// The mailbox server's address.
    pub fn mailbox_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.mailbox.port))
    }

    /// The tools these servers run.
    pub fn tools(&self) -> &Tools {
        &self.tools
    }

    /// A scratch directory that lives as long as the servers (the
    /// servers' own files are in it too: use a subdirectory).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The Python CLI's command: `wormhole --relay-url MAILBOX
    /// --transit-helper RELAY ARGS...`, in its own process group, with
    /// `PYTHONUNBUFFERED=1` and the `WORMHOLE_*` variables removed. Put
    /// `--no-listen` (a `send`/`receive` option) in `args` where wanted.
    pub fn wormhole_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.tools.wormhole);
        cmd.arg("--relay-url")
            .arg(self.mailbox_url())
            .arg("--transit-helper")
            .arg(self.relay_hint())
            .args(args)
            .env("PYTHONUNBUFFERED", "1")
            .env_remove("WORMHOLE_RELAY_URL")
            .env_remove("WORMHOLE_TRANSIT_HELPER")
            .process_group(0);
        cmd
    }

    /// Starts `wormhole ARGS...` ([`WormholeServers::wormhole_command`])
    /// with stdin, stdout and stderr piped; the working directory is
    /// `cwd` when given (where `receive` saves files).
    pub fn spawn_wormhole_in(&self, cwd: Option<&Path>, args: &[&str]) -> PyWormhole {
        let mut cmd = self.wormhole_command(args);
        if let Some(cwd) = cwd {
            cmd.current_dir(cwd);
        }
        PyWormhole::spawn(cmd, args)
    }

    /// [`WormholeServers::spawn_wormhole_in`] in this process's directory
    /// (fine for text; give a directory when files are received).
    pub fn spawn_wormhole(&self, args: &[&str]) -> PyWormhole {
        self.spawn_wormhole_in(None, args)
    }
}

/// One `twist` server in its own process group, logging to a file.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    /// Starts `twist --log-file=DIR/NAME.log --log-format=text ARGS` and
    /// waits for the port it reports ("... starting on PORT") to accept a
    /// connection. Panics with its logs if it does not within
    /// [`START_WITHIN`].
    fn start(name: &'static str, twist: &Path, args: &[String], dir: &Path) -> Server {
        let log = dir.join(format!("{name}.log"));
        let out = dir.join(format!("{name}.out"));
        let out_file = fs::File::create(&out).expect("the server's output file");
        let child = Command::new(twist)
            .arg(format!("--log-file={}", log.display()))
            .arg("--log-format=text")
            .args(args)
            .current_dir(dir)
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(out_file.try_clone().expect("dup"))
            .stderr(out_file)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", twist.display()));
        let mut server = Server { child, port: 0 };
        let until = Instant::now() + START_WITHIN;
        let failed = |server: &mut Server, why: String| {
            kill_group(&mut server.child);
            format!(
                "the {name} server did not start ({why}): twist --log-file={} --log-format=text {}\n\
                 --- {} ---\n{}\n--- {} ---\n{}",
                log.display(),
                args.join(" "),
                log.display(),
                fs::read_to_string(&log).unwrap_or_default(),
                out.display(),
                fs::read_to_string(&out).unwrap_or_default(),
            )
        };
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("{}", failed(&mut server, format!("it exited: {status}")));
            }
            if server.port == 0 {
                server.port = fs::read_to_string(&log)
                    .ok()
                    .and_then(|text| reported_port(&text))
                    .unwrap_or(0);
            }
            if server.port != 0 {
                let addr = SocketAddr::from(([127, 0, 0, 1], server.port));
                if TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok() {
                    return server;
                }
            }
            if Instant::now() >= until {
                let why = format!("no connection accepted within {START_WITHIN:?}");
                panic!("{}", failed(&mut server, why));
            }
            thread::sleep(Duration::from_millis(25));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        kill_group(&mut self.child);
    }
}

/// The port in twist's "<Factory> starting on PORT" log line.
pub fn reported_port(log: &str) -> Option<u16> {
    log.lines().find_map(|line| {
        let (_, rest) = line.split_once(" starting on ")?;
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok().filter(|&port| port != 0)
    })
}

/// SIGKILLs `child`'s process group (it was started as its leader) and
/// reaps it.
fn kill_group(child: &mut Child) {
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

/// A running Python `wormhole` command: its stdout and stderr are
/// collected as they come; it is killed (with its process group) if
/// dropped before it exits.
pub struct PyWormhole {
    child: Child,
    args: String,
    stdin: Option<ChildStdin>,
    stderr_lines: mpsc::Receiver<String>,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<thread::JoinHandle<()>>,
}

/// How a Python `wormhole` run ended.
#[derive(Debug)]
pub struct Finished {
    /// Its exit status.
    pub status: ExitStatus,
    /// Everything it wrote on stdout.
    pub stdout: String,
    /// Everything it wrote on stderr.
    pub stderr: String,
}

impl Finished {
    /// Its stdout, after asserting it exited with success (the panic
    /// shows both outputs).
    pub fn success_stdout(&self) -> &str {
        assert!(
            self.status.success(),
            "wormhole failed: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
        &self.stdout
    }
}

impl PyWormhole {
    /// Spawns `cmd` (made by [`WormholeServers::wormhole_command`]) with
    /// its three streams piped; `args` is for messages.
    fn spawn(mut cmd: Command, args: &[&str]) -> PyWormhole {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start wormhole {}: {e}", args.join(" ")));
        let stdin = child.stdin.take();
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
        PyWormhole {
            child,
            args: args.join(" "),
            stdin,
            stderr_lines,
            stdout,
            stderr,
            readers: vec![out_reader, err_reader],
        }
    }

    /// The code a running `wormhole send` prints on stderr ("Wormhole code
    /// is: CODE", or the "wormhole receive CODE" it suggests), waiting at
    /// most [`RUN_WITHIN`]. Panics, with its output so far, if it exits or
    /// the time runs out first. Call it once.
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
                        "wormhole {} printed no code ({why:?}, within {RUN_WITHIN:?}); \
                         stderr so far:\n{}",
                        self.args,
                        self.stderr.lock().unwrap()
                    )
                }
            }
        }
    }

    /// Its stdin, to answer a prompt; [`PyWormhole::close_stdin`] ends it.
    pub fn stdin(&mut self) -> &mut ChildStdin {
        self.stdin.as_mut().expect("stdin already closed")
    }

    /// Closes its stdin (a prompt then reads end of file).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Its stderr so far.
    pub fn stderr_so_far(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits at most [`RUN_WITHIN`] for it to exit; see
    /// [`PyWormhole::finish_within`].
    pub fn finish(self) -> Finished {
        self.finish_within(RUN_WITHIN)
    }

    /// Closes its stdin, waits at most `bound` for it to exit and returns
    /// how it ended with all its output. Panics, with its output, when it
    /// is still running after `bound` (after killing it).
    pub fn finish_within(mut self, bound: Duration) -> Finished {
        self.stdin = None;
        let until = Instant::now() + bound;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for wormhole") {
                break status;
            }
            if Instant::now() >= until {
                kill_group(&mut self.child);
                self.join_readers();
                panic!(
                    "wormhole {} did not exit within {bound:?} (killed)\n--- stdout ---\n{}\n\
                     --- stderr ---\n{}",
                    self.args,
                    String::from_utf8_lossy(&self.stdout.lock().unwrap()),
                    self.stderr.lock().unwrap()
                );
            }
            thread::sleep(Duration::from_millis(20));
        };
        // Anything left in its group (nothing, normally) goes too, so the
        // pipes close and the readers end.
        kill_group(&mut self.child);
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

impl Drop for PyWormhole {
    fn drop(&mut self) {
        kill_group(&mut self.child);
    }
}

/// The code in one of `wormhole send`'s stderr lines, if it holds one.
pub fn code_in(line: &str) -> Option<String> {
    let line = line.trim();
    if let Some(code) = line.strip_prefix("Wormhole code is:") {
        return Some(code.trim().to_string()).filter(|c| !c.is_empty());
    }
    if line.starts_with("wormhole receive ") {
        return line.split_whitespace().last().map(str::to_string);
    }
    None
}
