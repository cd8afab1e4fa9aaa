//! Magic-wormhole file transfers over local servers (a mailbox server and
//! a transit relay started from a Python venv on loopback, never a public
//! server), interleaved in one run:
//!
//! 0. the transit relay's own ceiling, the baseline: two raw TCP clients
//!    through the relay (`please relay TOKEN for side SIDE\n` each, same
//!    token, different sides, `ok\n` back), one pumping `SIZE` bytes from
//!    memory and the other reading and discarding them until EOF: no
//!    wormhole, no encryption, no file;
//! 1. echoxfer -> echoxfer through the relay (`--no-listen` on both sides):
//!    the native protocol over transit, as two echoxfers run by default;
//! 2. echoxfer -> echoxfer direct (`--hint-addr 127.0.0.1` on the sender,
//!    `--no-listen` on the receiver, which connects to the sender's port;
//!    relays wait 2 s when direct hints exist, so direct wins);
//! 3. Python -> Python through the relay (`wormhole send --hide-progress
//!    --no-listen`, `wormhole receive --hide-progress --no-listen
//!    --accept-file -o PATH`), magic-wormhole's own pace;
//! 4. echoxfer -> Python and 5. Python -> echoxfer through the relay;
//! 6. echoxfer -> echoxfer through the relay with `--classic` on both
//!    sides (file-transfer protocol v1, SecretBox records);
//! 7. today's native transfer without the wormhole (`receive --once` and
//!    `send --to` on loopback, encrypted with a code), the yardstick of
//!    the direct target;
//! 8. echoxfer -> echoxfer of a 1-byte file: the time from the code to the
//!    end is rendezvous (mailbox, SPAKE2, offer and answer) plus transit
//!    setup (connect, relay pairing, handshake), which is what the time
//!    from a code typed to the first data byte would show, seen from
//!    outside.
//!
//! A transfer's time runs from the receiver's start (after the sender
//! printed its code) to the receiver's exit; the sender is then reaped too,
//! and both processes' CPU (wait4's rusage) is reported per GiB. Every
//! received file is checked (BLAKE3 of the whole file) and removed at
//! once. Each round runs every contender once, in rotating order, with
//! `sync` before each run (see `benches/common/rounds.rs` for the order
//! and the "disturbed" rule: the relay ceiling is the baseline). Prints
//! each run, then, for contenders 0 to 7, the summary of
//! `rounds::report` (times, CPU per GiB, disturbed rounds, per-round
//! ratios with median, min and max): each against the relay ceiling, and
//! echoxfer relayed / Python relayed, each interop direction / Python
//! relayed, direct / relayed, direct / native direct, native / classic
//! relayed. Then the 1-byte transfer's times and CPU, and the targets:
//! echoxfer relayed at least 0.8 of the relay ceiling's speed and faster
//! than Python relayed, echoxfer direct at least 0.9 of native direct. Asserts that every received
//! file is identical; asserts nothing about speed.
//!
//! `ECHOXFER_WORMHOLE_VENV=/path/to/venv cargo bench --bench wormhole`
//! (the venv holds `wormhole` and `twist`: magic-wormhole 0.24,
//! magic-wormhole-mailbox-server 0.8, magic-wormhole-transit-relay 0.5;
//! without the variable, `wormhole` and `twist` on `PATH`; without
//! either, it prints a line and skips). Env: `SIZE` in MiB, default 1024;
//! `ROUNDS`, default 3; `WARMUP` rounds, default 1; `BENCH_DIR`, default
//! the system's temporary directory (`/dev/shm` recommended: takes the
//! disk out).
//!
//! `cargo test` does not build it; `cargo test --benches` (or
//! `--all-targets`) builds it and it returns at once: it runs only when
//! given `--bench`, as `cargo bench` does.

#[path = "common/rounds.rs"]
mod rounds;

#[allow(dead_code)]
#[path = "../tests/common/wormhole_servers.rs"]
mod servers;

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use rounds::{Cost, Plan, Runs, Sample};
use servers::{code_in, WormholeServers};

const MIB: u64 = 1024 * 1024;
/// The relay ceiling's writes and reads.
const CHUNK: usize = 1 << 20;

/// Writes `size` pseudo-random bytes (BLAKE3 in XOF mode: fast, repeatable).
fn make_source(path: &Path, size: u64) {
    let mut xof = blake3::Hasher::new()
        .update(b"echoxfer bench")
        .finalize_xof();
    let mut f = File::create(path).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        xof.fill(&mut buf[..n]);
        f.write_all(&buf[..n]).unwrap();
        left -= n as u64;
    }
    f.sync_all().unwrap();
}

fn hash_file(path: &Path) -> blake3::Hash {
    let mut h = blake3::Hasher::new();
    h.update_reader(File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .unwrap();
    h.finalize()
}

/// `bytes` fresh random-looking bytes as hex (a relay token or side):
/// BLAKE3 of the clock and a counter; they only have to differ per run.
fn fresh_hex(bytes: usize) -> String {
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let mut h = blake3::Hasher::new();
    h.update(&now.as_nanos().to_le_bytes());
    h.update(&COUNT.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    h.update(&std::process::id().to_le_bytes());
    let mut out = vec![0u8; bytes];
    h.finalize_xof().fill(&mut out);
    hex::encode(out)
}

/// Connects to the relay and asks it to pair this connection with the
/// other side's (`please relay TOKEN for side SIDE\n`); returns once the
/// relay said `ok\n` (it says so when both sides are there).
fn relay_handshake(relay: SocketAddr, token: &str, side: &str) -> TcpStream {
    let mut s = TcpStream::connect(relay).unwrap();
    s.set_nodelay(true).unwrap();
    s.write_all(format!("please relay {token} for side {side}\n").as_bytes())
        .unwrap();
    let mut ok = [0u8; 3];
    s.read_exact(&mut ok).unwrap();
    assert_eq!(&ok, b"ok\n", "the relay's answer");
    s
}

/// The relay's ceiling: `size` bytes from memory through the relay, from
/// both connects to the reader's EOF.
fn relay_ceiling(relay: SocketAddr, size: u64) -> Duration {
    let token = fresh_hex(32);
    let (a, b) = (fresh_hex(8), fresh_hex(8));
    let start = Instant::now();
    let reader = {
        let token = token.clone();
        thread::spawn(move || {
            let mut s = relay_handshake(relay, &token, &b);
            let mut buf = vec![0u8; CHUNK];
            let mut got = 0u64;
            loop {
                let n = s.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                got += n as u64;
            }
            got
        })
    };
    let mut s = relay_handshake(relay, &token, &a);
    let buf = vec![0x5au8; CHUNK];
    let mut left = size;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        s.write_all(&buf[..n]).unwrap();
        left -= n as u64;
    }
    s.shutdown(Shutdown::Write).unwrap();
    let got = reader.join().unwrap();
    let t = start.elapsed();
    assert_eq!(got, size, "the relay delivered a different count");
    t
}

/// A process of a transfer, in its own process group, with its stdout
/// and stderr collected as they come; killed (with its group) if dropped
/// before it was reaped.
struct Proc {
    child: Child,
    reaped: bool,
    what: String,
    output: Arc<Mutex<String>>,
    lines: mpsc::Receiver<String>,
    readers: Vec<thread::JoinHandle<()>>,
}

impl Proc {
    fn spawn(mut cmd: Command, what: String) -> Proc {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        let output = Arc::new(Mutex::new(String::new()));
        let (tx, lines) = mpsc::channel();
        let out: Box<dyn Read + Send> = Box::new(child.stdout.take().unwrap());
        let err: Box<dyn Read + Send> = Box::new(child.stderr.take().unwrap());
        let readers = [out, err]
            .into_iter()
            .map(|stream| {
                let output = Arc::clone(&output);
                let tx = tx.clone();
                thread::spawn(move || {
                    let mut stream = BufReader::new(stream);
                    let mut line = Vec::new();
                    while let Ok(1..) = stream.read_until(b'\n', &mut line) {
                        let text = String::from_utf8_lossy(&line).into_owned();
                        output.lock().unwrap().push_str(&text);
                        let _ = tx.send(text);
                        line.clear();
                    }
                })
            })
            .collect();
        Proc {
            child,
            reaped: false,
            what,
            output,
            lines,
            readers,
        }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The code it prints ("Wormhole code is: CODE"), within `within`.
    fn code(&mut self, within: Duration) -> String {
        let until = Instant::now() + within;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(code) = code_in(&line) {
                        return code;
                    }
                }
                Err(why) => panic!(
                    "{} printed no code within {within:?} ({why:?}); output:\n{}",
                    self.what,
                    self.output.lock().unwrap()
                ),
            }
        }
    }

    /// The rest of the first line it prints that starts with `prefix`,
    /// within `within`.
    fn line_after(&mut self, prefix: &str, within: Duration) -> String {
        let until = Instant::now() + within;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix(prefix) {
                        return rest.trim().to_string();
                    }
                }
                Err(why) => panic!(
                    "{} printed no {prefix:?} line within {within:?} ({why:?}); output:\n{}",
                    self.what,
                    self.output.lock().unwrap()
                ),
            }
        }
    }

    /// Waits for it (wait4) and returns what it cost; panics, with its
    /// output, unless it exited with status 0.
    fn reap(&mut self) -> Cost {
        let mut status = 0;
        // SAFETY: an all-zero rusage is a valid value for wait4 to fill.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: waiting on our own child; the pointers are valid for the call.
        let pid = unsafe { libc::wait4(self.pid(), &mut status, 0, &mut usage) };
        assert!(pid > 0, "wait4 failed");
        self.reaped = true;
        // Anything left in its group goes, so the pipes close.
        // SAFETY: kill(2) on our child's process group touches no memory.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "{} failed (wait status {status}); output:\n{}",
            self.what,
            self.output.lock().unwrap()
        );
        let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        Cost {
            rss_kib: usage.ru_maxrss as u64,
            user: secs(usage.ru_utime),
            sys: secs(usage.ru_stime),
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if !self.reaped {
            // SAFETY: kill(2) on our child's process group touches no memory.
            unsafe { libc::kill(-self.pid(), libc::SIGKILL) };
            let _ = self.child.wait();
        }
    }
}

/// Kills the process groups it is given if it is not dropped within
/// `after` (a hung transfer fails the bench instead of hanging it).
struct Watchdog {
    stop: Option<mpsc::Sender<()>>,
    fired: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Watchdog {
    fn arm(pids: Vec<i32>, after: Duration) -> Watchdog {
        let (stop, wait) = mpsc::channel::<()>();
        let fired = Arc::new(AtomicBool::new(false));
        let thread = {
            let fired = Arc::clone(&fired);
            thread::spawn(move || {
                if let Err(mpsc::RecvTimeoutError::Timeout) = wait.recv_timeout(after) {
                    fired.store(true, Ordering::SeqCst);
                    eprintln!("watchdog: a transfer ran over {after:?}; killing it");
                    for pid in pids {
                        // SAFETY: kill(2) on our child's process group.
                        unsafe { libc::kill(-pid, libc::SIGKILL) };
                    }
                }
            })
        };
        Watchdog {
            stop: Some(stop),
            fired,
            thread: Some(thread),
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.stop = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if self.fired.load(Ordering::SeqCst) && !thread::panicking() {
            panic!("a transfer timed out");
        }
    }
}

/// Which program runs a side.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Impl {
    /// echoxfer as it runs by default: the native protocol over transit
    /// when the other side is echoxfer too.
    Echoxfer,
    /// echoxfer with `--classic` (file-transfer protocol v1, SecretBox records).
    Classic,
    Python,
}

impl Impl {
    /// echoxfer's flags for this side, if it is echoxfer.
    fn echoxfer_flags(self) -> Option<&'static [&'static str]> {
        match self {
            Impl::Echoxfer => Some(&[]),
            Impl::Classic => Some(&["--classic"]),
            Impl::Python => None,
        }
    }
}

/// One wormhole transfer: who sends, who receives, and whether the
/// sender offers a direct connection.
#[derive(Debug, Clone, Copy)]
struct Way {
    sender: Impl,
    receiver: Impl,
    direct: bool,
}

/// `echoxfer SUBCOMMAND --relay-url MAILBOX --transit-helper RELAY ARGS`
/// (the release binary cargo built in this target directory), in its own
/// process group, the `WORMHOLE_*` variables removed.
fn echoxfer(servers: &WormholeServers, subcommand: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_echoxfer"));
    cmd.arg(subcommand)
        .arg("--relay-url")
        .arg(servers.mailbox_url())
        .arg("--transit-helper")
        .arg(servers.relay_hint())
        .args(args)
        .env_remove("WORMHOLE_RELAY_URL")
        .env_remove("WORMHOLE_TRANSIT_HELPER")
        .process_group(0);
    cmd
}

/// Sends `src` the `way` says into `dir` (which exists and is empty);
/// returns the time from the receiver's start to its exit and the
/// sender's and receiver's costs. The file is `dir/<src's name>`.
fn transfer(
    servers: &WormholeServers,
    src: &Path,
    dir: &Path,
    way: Way,
    limit: Duration,
) -> (Duration, Cost, Cost) {
    let src_s = src.to_str().expect("a UTF-8 path");
    let mut sender = match way.sender.echoxfer_flags() {
        Some(flags) => {
            let listen: &[&str] = if way.direct {
                &["--hint-addr", "127.0.0.1"]
            } else {
                &["--no-listen"]
            };
            let mut args = listen.to_vec();
            args.extend_from_slice(flags);
            args.push(src_s);
            Proc::spawn(echoxfer(servers, "send", &args), "echoxfer send".into())
        }
        None => {
            assert!(!way.direct, "Python's sender runs relayed only here");
            let args = ["send", "--hide-progress", "--no-listen", src_s];
            Proc::spawn(servers.wormhole_command(&args), "wormhole send".into())
        }
    };
    let code = sender.code(Duration::from_secs(60));
    let out = dir.join(src.file_name().unwrap());
    let out_s = out.to_str().expect("a UTF-8 path");
    let dir_s = dir.to_str().expect("a UTF-8 path");
    let start = Instant::now();
    let mut receiver = match way.receiver.echoxfer_flags() {
        Some(flags) => {
            let mut args = vec![code.as_str(), "--no-listen", "--dir", dir_s];
            args.extend_from_slice(flags);
            Proc::spawn(
                echoxfer(servers, "receive", &args),
                "echoxfer receive".into(),
            )
        }
        None => {
            let args = [
                "receive",
                "--hide-progress",
                "--no-listen",
                "--accept-file",
                "-o",
                out_s,
                &code,
            ];
            Proc::spawn(servers.wormhole_command(&args), "wormhole receive".into())
        }
    };
    let watchdog = Watchdog::arm(vec![sender.pid(), receiver.pid()], limit);
    let recv = receiver.reap();
    let time = start.elapsed();
    let send = sender.reap();
    drop(watchdog);
    (time, send, recv)
}

/// Today's native transfer without the wormhole, encrypted as by
/// default: `receive --once --listen 127.0.0.1:0` and `send --to` with a
/// code given to both; timed like [`transfer`], from the receiver's start.
fn native_direct(src: &Path, dir: &Path, limit: Duration) -> (Duration, Cost, Cost) {
    let bin = env!("CARGO_BIN_EXE_echoxfer");
    let code = ["--code", "1-bench-acorn-bell", "--quiet"];
    let start = Instant::now();
    let mut cmd = Command::new(bin);
    cmd.args(["receive", "--once", "--listen", "127.0.0.1:0", "--dir"])
        .arg(dir)
        .args(code)
        .process_group(0);
    let mut receiver = Proc::spawn(cmd, "echoxfer receive --once".into());
    let addr = receiver.line_after("listening on ", Duration::from_secs(60));
    let mut cmd = Command::new(bin);
    cmd.args(["send", "--to", &addr])
        .args(code)
        .arg(src)
        .process_group(0);
    let mut sender = Proc::spawn(cmd, "echoxfer send --to".into());
    let watchdog = Watchdog::arm(vec![sender.pid(), receiver.pid()], limit);
    let recv = receiver.reap();
    let time = start.elapsed();
    let send = sender.reap();
    drop(watchdog);
    (time, send, recv)
}

/// A contender: its name, the bytes a run moves, and the run.
struct Entry<'a> {
    name: &'static str,
    bytes: u64,
    run: Box<dyn FnMut() -> Sample + 'a>,
}

fn rate(bytes: u64, t: Duration) -> String {
    if bytes >= MIB {
        rounds::mb_per_s(bytes, t)
    } else {
        format!("{bytes} byte")
    }
}

fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn main() {
    if rounds::not_benching() {
        return;
    }
    let Some(servers) = WormholeServers::start("wormhole bench") else {
        println!(
            "wormhole bench: skipped, no wormhole and twist (set ECHOXFER_WORMHOLE_VENV to a venv with {})",
            servers::PINNED
        );
        return;
    };
    let size = rounds::env("SIZE", 1024) * MIB;
    let plan = Plan::from_env(3, Some(size), move |t| rounds::mb_per_s(size, t));
    let work = match std::env::var_os("BENCH_DIR") {
        Some(dir) => tempfile::tempdir_in(dir).unwrap(),
        None => tempfile::tempdir().unwrap(),
    };
    let w = work.path();
    let src: PathBuf = w.join("source.bin");
    make_source(&src, size);
    let want = hash_file(&src);
    let tiny: PathBuf = w.join("tiny.bin");
    make_source(&tiny, 1);
    let tiny_want = hash_file(&tiny);
    // A hang guard, far above any real run: 2 minutes plus 2 MB/s.
    let limit = Duration::from_secs(120) + Duration::from_secs_f64(size as f64 / 2e6);
    println!(
        "wormhole transfers of {} MiB over local servers (mailbox {}, relay {}) into {}, {} rounds after {} warm-up; {} CPUs; load average at start {}",
        size / MIB,
        servers.mailbox_url(),
        servers.relay_hint(),
        w.display(),
        plan.rounds,
        plan.warmup,
        thread::available_parallelism().map_or(0, |n| n.get()),
        loadavg(),
    );

    let servers = &servers;
    let relay = servers.relay_addr();
    let run_way = |way: Way, file: &Path, want: blake3::Hash| {
        let file = file.to_path_buf();
        let mut n = 0;
        move || {
            n += 1;
            let dir = w.join(format!("out-{n}"));
            fs::create_dir(&dir).unwrap();
            let (time, send, recv) = transfer(servers, &file, &dir, way, limit);
            let got = dir.join(file.file_name().unwrap());
            assert_eq!(hash_file(&got), want, "{way:?}: the received file differs");
            fs::remove_dir_all(&dir).unwrap();
            Sample {
                time,
                sides: Some((send, recv)),
            }
        }
    };
    let (ex, py) = (Impl::Echoxfer, Impl::Python);
    let relayed = |sender, receiver| Way {
        sender,
        receiver,
        direct: false,
    };
    let mut entries: Vec<Entry> = vec![
        Entry {
            name: "relay ceiling (raw TCP)",
            bytes: size,
            run: Box::new(move || Sample::time(relay_ceiling(relay, size))),
        },
        Entry {
            name: "echoxfer->echoxfer relayed",
            bytes: size,
            run: Box::new(run_way(relayed(ex, ex), &src, want)),
        },
        Entry {
            name: "echoxfer->echoxfer direct",
            bytes: size,
            run: Box::new(run_way(
                Way {
                    sender: ex,
                    receiver: ex,
                    direct: true,
                },
                &src,
                want,
            )),
        },
        Entry {
            name: "python->python relayed",
            bytes: size,
            run: Box::new(run_way(relayed(py, py), &src, want)),
        },
        Entry {
            name: "echoxfer->python relayed",
            bytes: size,
            run: Box::new(run_way(relayed(ex, py), &src, want)),
        },
        Entry {
            name: "python->echoxfer relayed",
            bytes: size,
            run: Box::new(run_way(relayed(py, ex), &src, want)),
        },
        Entry {
            name: "echoxfer->echoxfer classic relayed",
            bytes: size,
            run: Box::new(run_way(relayed(Impl::Classic, Impl::Classic), &src, want)),
        },
        Entry {
            name: "native direct (send --to)",
            bytes: size,
            run: Box::new({
                let mut n = 0;
                move || {
                    n += 1;
                    let dir = w.join(format!("native-{n}"));
                    fs::create_dir(&dir).unwrap();
                    let (time, send, recv) = native_direct(&src, &dir, limit);
                    let got = dir.join(src.file_name().unwrap());
                    assert_eq!(
                        hash_file(&got),
                        want,
                        "native direct: the received file differs"
                    );
                    fs::remove_dir_all(&dir).unwrap();
                    Sample {
                        time,
                        sides: Some((send, recv)),
                    }
                }
            }),
        },
        Entry {
            name: "echoxfer->echoxfer 1 byte",
            bytes: 1,
            run: Box::new(run_way(relayed(ex, ex), &tiny, tiny_want)),
        },
    ];

    // The rounds (as rounds::run, with each contender's own byte count).
    let n = entries.len();
    let width = entries.iter().map(|e| e.name.len()).max().unwrap_or(0);
    for warm in 0..plan.warmup {
        for (i, e) in entries.iter_mut().enumerate() {
            rounds::sync();
            let s = (e.run)();
            println!(
                "warm-up {warm}, {}/{n}: {:<width$} {:>8.3} s  {:>12}  (not counted)",
                i + 1,
                e.name,
                s.time.as_secs_f64(),
                rate(e.bytes, s.time)
            );
        }
    }
    let mut times = vec![Vec::new(); n];
    let mut sides = vec![Vec::new(); n];
    for round in 0..plan.rounds {
        for (pos, i) in rounds::order(round, n).into_iter().enumerate() {
            let e = &mut entries[i];
            let t = Instant::now();
            rounds::sync();
            let settle = t.elapsed();
            let s = (e.run)();
            println!(
                "round {round}, {}/{n}: {:<width$} {:>8.3} s  {:>12}  (settle {:.2} s)",
                pos + 1,
                e.name,
                s.time.as_secs_f64(),
                rate(e.bytes, s.time),
                settle.as_secs_f64()
            );
            if let Some((tx, rx)) = s.sides {
                println!("    sender {tx}; receiver {rx}");
            }
            times[i].push(s.time);
            sides[i].push(s.sides);
        }
        println!("    load average after round {round}: {}", loadavg());
    }

    // Contenders 0 to 7 move SIZE bytes: rounds::report's summary.
    let big = n - 1;
    let runs = Runs {
        names: entries[..big].iter().map(|e| e.name.to_string()).collect(),
        times: times[..big].to_vec(),
        sides: sides[..big].to_vec(),
    };
    // echoxfer relayed / Python relayed, each interop direction / Python
    // relayed, direct / relayed, wormhole direct / native direct, native
    // relayed / classic relayed.
    let pairs = [(1, 3), (4, 3), (5, 3), (2, 1), (2, 7), (1, 6)];
    let medians = rounds::report(&plan, &runs, &pairs);

    // The 1-byte transfer: rendezvous plus transit setup.
    let t: Vec<f64> = times[big].iter().map(Duration::as_secs_f64).collect();
    let lo = t.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = t.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let cost = |f: fn(&(Cost, Cost)) -> f64| {
        rounds::median(&sides[big].iter().flatten().map(f).collect::<Vec<f64>>())
    };
    println!(
        "  {} (code to exit: rendezvous + transit setup): median {:.3} s  min {lo:.3} s  max {hi:.3} s  rounds: {}; CPU s per run (median) sender {:.3}, receiver {:.3}",
        entries[big].name,
        rounds::median(&t),
        t.iter()
            .map(|x| format!("{x:.3}"))
            .collect::<Vec<_>>()
            .join(" "),
        cost(|s| s.0.cpu()),
        cost(|s| s.1.cpu()),
    );

    // medians: each of 1..big against the baseline (big - 1 of them),
    // then the pairs in order.
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    let ceiling = medians[0];
    let pair = |k: usize| medians[big - 1 + k];
    let vs_python = pair(0);
    println!("targets (medians of per-round speed ratios):");
    println!(
        "  echoxfer relayed / relay ceiling   {ceiling:.3}  (target >= 0.8: {})",
        verdict(ceiling >= 0.8)
    );
    println!(
        "  echoxfer relayed / python relayed  {vs_python:.3}  (target > 1, faster: {})",
        verdict(vs_python > 1.0)
    );
    println!(
        "  echoxfer->python / python relayed  {:.3}; python->echoxfer / python relayed  {:.3}  (interop each way against Python's own pace)",
        pair(1),
        pair(2)
    );
    println!(
        "  echoxfer direct / native direct    {:.3}  (target >= 0.9: {})",
        pair(4),
        verdict(pair(4) >= 0.9)
    );
    println!(
        "  native relayed / classic relayed   {:.3}  (what the native protocol gains through the relay)",
        pair(5)
    );
    println!("load average at the end: {}", loadavg());
}
