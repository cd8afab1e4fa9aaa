//! The CLI secure by default, end to end over loopback on both runtimes:
//! a `--once` receiver's printed code (a wrong code ends it, a new receiver
//! with the right code gets the file), a secret-file server under a burst
//! of wrong guesses (the guesser is refused, counted; a good sender from
//! another address is served), a plaintext side meeting a secure one
//! (both ways), and the checks on secret files. Every wait is bounded;
//! every child is killed by its guard.
#![cfg(unix)]

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc::Receiver;
use std::thread;
use std::time::Instant;

use echoxfer::driver::{blocking, DriverError, Ignore};
use echoxfer::echo::{Client, ClientRole};
use echoxfer::error::SecureError;
use echoxfer::secure::{Secure, SecureConfig};
use echoxfer::testing::wire::{CONFIRM_LEN, HELLO_LEN};
use echoxfer::{EchoConfig, Error, Machine, Output, SessionLimits};
use socket2::{Domain, Socket, Type};

mod common;
use common::files::{assert_received, dirs, sources, Dirs};
use common::process::{line_containing, spawn_until, Guard, BOUND};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_echoxfer"))
}

fn drain(mut r: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut s = Vec::new();
        let _ = r.read_to_end(&mut s);
        String::from_utf8_lossy(&s).into_owned()
    })
}

/// Runs `cmd` to its end (bounded); returns its status, stdout and stderr.
fn run(mut cmd: Command) -> (ExitStatus, String, String) {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut guard = Guard {
        child: cmd.spawn().unwrap(),
    };
    let out = drain(guard.child.stdout.take().unwrap());
    let err = drain(guard.child.stderr.take().unwrap());
    let status = guard.wait();
    (status, out.join().unwrap(), err.join().unwrap())
}

/// A receiver started with `args` (on port 0, into `d.dst`), its stderr
/// collected: the guard, the code it printed (if it printed one), its
/// address, its later stdout lines and its stderr once it ends.
struct Started {
    guard: Guard,
    code: Option<String>,
    addr: String,
    lines: Receiver<String>,
    stderr: thread::JoinHandle<String>,
}

fn start_receiver(d: &Dirs, args: &[&str], prints_code: bool) -> Started {
    let mut cmd = bin();
    cmd.args(["receive", "--listen", "127.0.0.1:0", "--dir"])
        .arg(&d.dst)
        .args(args)
        .stderr(Stdio::piped());
    let (mut guard, code, addr, lines) = if prints_code {
        // The code comes once the listener is bound.
        let (guard, addr, lines) = spawn_until(cmd, "listening on");
        let code = line_containing(&lines, "code:");
        let code = code.trim_start_matches("code:").trim().to_string();
        (guard, Some(code), addr, lines)
    } else {
        let (guard, addr, lines) = spawn_until(cmd, "listening on");
        (guard, None, addr, lines)
    };
    let stderr = drain(guard.child.stderr.take().unwrap());
    Started {
        guard,
        code,
        addr,
        lines,
        stderr,
    }
}

fn send(to: &str, paths: &[PathBuf], auth: &[&str], runtime: &str) -> (ExitStatus, String, String) {
    let mut cmd = bin();
    cmd.args(["send", "--to", to, "--runtime", runtime])
        .args(auth)
        .args(paths);
    run(cmd)
}

fn files_in(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

fn once_wrong_code_then_right_code(runtime: &str) {
    let d = dirs();
    let paths = sources(&d, &[300_001]);

    // A wrong code: the receiver's one guess is spent, and it ends.
    let mut rx = start_receiver(&d, &["--once", "--runtime", runtime], true);
    let code = rx.code.clone().unwrap();
    let wrong = format!("{code}-not");
    let (status, out, err) = send(&rx.addr, &paths, &["--code", &wrong], runtime);
    assert!(!status.success(), "{out}\n{err}");
    assert!(err.contains("wrong code"), "sender: {err}");
    assert!(
        err.contains("check the code and run receive again"),
        "{err}"
    );
    assert!(!err.contains("protocol"), "sender: {err}");
    assert_eq!(rx.guard.wait().code(), Some(1), "the receiver ends");
    let rx_err = rx.stderr.join().unwrap();
    assert!(rx_err.contains("wrong code"), "receiver: {rx_err}");
    assert!(rx_err.contains("run receive again"), "receiver: {rx_err}");
    assert!(!rx_err.contains("protocol"), "receiver: {rx_err}");
    assert!(files_in(&d.dst).is_empty(), "{:?}", files_in(&d.dst));

    // A new receiver, a new code; the right one delivers the file.
    let rx = start_receiver(&d, &["--once", "--runtime", runtime], true);
    let code = rx.code.clone().unwrap();
    let (status, out, err) = send(&rx.addr, &paths, &["--code", &code], runtime);
    assert!(status.success(), "{out}\n{err}");
    let mut guard = rx.guard;
    assert!(guard.wait().success());
    line_containing(&rx.lines, "received file-0.bin: 300001 bytes");
    assert_received(&d, &paths);
}

#[test]
fn blocking_once_a_wrong_code_ends_the_receiver_and_a_new_one_with_the_right_code_receives() {
    once_wrong_code_then_right_code("blocking");
}

#[test]
fn tokio_once_a_wrong_code_ends_the_receiver_and_a_new_one_with_the_right_code_receives() {
    once_wrong_code_then_right_code("tokio");
}

#[test]
fn a_printed_code_is_a_number_and_three_words() {
    let d = dirs();
    let rx = start_receiver(&d, &["--once"], true);
    let code = rx.code.clone().unwrap();
    let parts: Vec<&str> = code.split('-').collect();
    assert_eq!(parts.len(), 4, "{code}");
    let n: u32 = parts[0].parse().unwrap();
    assert!((1..=999).contains(&n), "{code}");
    assert!(
        parts[1..]
            .iter()
            .all(|w| !w.is_empty() && w.chars().all(|c| c.is_ascii_lowercase())),
        "{code}"
    );
    let other = start_receiver(&d, &["--once"], true);
    assert_ne!(other.code, rx.code, "each receiver gets a fresh code");
}

/// Makes a secret file with `echoxfer secret`.
fn secret_file(d: &Dirs) -> PathBuf {
    let path = d.src.join("shared.secret");
    let mut cmd = bin();
    cmd.arg("secret").arg(&path);
    let (status, out, err) = run(cmd);
    assert!(status.success(), "{out}\n{err}");
    path
}

/// One wrong guess from `source` with the library's secure client: true
/// if the server ran the handshake (a real guess), false if it refused.
fn guess_from(source: [u8; 4], addr: SocketAddr) -> bool {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::from((source, 0)).into()).unwrap();
    socket.connect_timeout(&addr.into(), BOUND).unwrap();
    let mut stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(BOUND)).unwrap();
    let now = Instant::now();
    let client = Client::new(
        ClientRole::new(EchoConfig::default()),
        SessionLimits::default(),
        now,
    );
    let secret = b"a wrong guess at the secret, 32+ bytes long";
    let mut machine = Secure::client(client, secret, SecureConfig::default(), now, [9; 32]);
    match blocking::run_stream(&mut machine, &mut stream, &mut Ignore) {
        Err(DriverError::Machine(Error::Secure(SecureError::WrongCode))) => true,
        Ok(()) => panic!("a wrong secret was accepted"),
        Err(_) => false,
    }
}

fn guesses_are_refused_and_a_good_sender_is_served(runtime: &str) {
    let d = dirs();
    let secret = secret_file(&d);
    let secret = secret.to_str().unwrap();
    let rx = start_receiver(&d, &["--runtime", runtime, "--secret-file", secret], false);
    let addr: SocketAddr = rx.addr.parse().unwrap();
    let burst = 20;
    let real_guesses = (0..burst)
        .filter(|_| guess_from([127, 0, 0, 2], addr))
        .count();
    // The first guess runs; then the source is refused for 1 s, 2 s, 4 s...
    assert!(real_guesses >= 1, "the first guess was not even tried");
    assert!(
        real_guesses <= 5,
        "{real_guesses} of {burst} guesses reached the handshake"
    );

    // A good sender from another address (127.0.0.1) is served meanwhile.
    let paths = sources(&d, &[100_003, 7]);
    let (status, out, err) = send(&rx.addr, &paths, &["--secret-file", secret], runtime);
    assert!(status.success(), "{out}\n{err}");
    assert_received(&d, &paths);

    // The server counted every refusal.
    let mut guard = rx.guard;
    // SAFETY: kill(2) on our own child's pid, which the guard has not reaped.
    assert_eq!(
        unsafe { libc::kill(guard.child.id() as libc::pid_t, libc::SIGINT) },
        0
    );
    assert!(guard.wait().success());
    let stopped = line_containing(&rx.lines, "stopped:");
    let refused: usize = stopped
        .split("; ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no refusal count in {stopped:?}"));
    assert_eq!(refused, burst - real_guesses, "{stopped}");
}

#[test]
fn blocking_a_secret_file_server_refuses_a_guesser_and_serves_a_good_sender() {
    guesses_are_refused_and_a_good_sender_is_served("blocking");
}

#[test]
fn tokio_a_secret_file_server_refuses_a_guesser_and_serves_a_good_sender() {
    guesses_are_refused_and_a_good_sender_is_served("tokio");
}

/// How many more seconds the server refuses `source` for failed guesses:
/// its refusal notice, read from a raw connection (`None` if it served the
/// connection instead, which is closed before sending anything: no guess).
fn refused_for(source: [u8; 4], addr: SocketAddr) -> Option<u32> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::from((source, 0)).into()).unwrap();
    socket.connect_timeout(&addr.into(), BOUND).unwrap();
    let mut stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(BOUND)).unwrap();
    let mut head = [0u8; 9];
    stream
        .read_exact(&mut head)
        .expect("a hello or a refusal notice");
    match &head[..5] {
        b"EXFW\x01" => Some(u32::from_be_bytes(head[5..].try_into().unwrap())),
        _ => None,
    }
}

/// A connection from `source` whose session has started: the server's
/// hello was read.
fn session_from(source: [u8; 4], addr: SocketAddr) -> TcpStream {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::from((source, 0)).into()).unwrap();
    socket.connect_timeout(&addr.into(), BOUND).unwrap();
    let mut stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(BOUND)).unwrap();
    let mut hello = [0u8; HELLO_LEN];
    stream.read_exact(&mut hello).expect("the server's hello");
    assert_eq!(&hello[..4], b"EXFS", "refused before any guess");
    stream
}

/// A guess: sends a whole hello (under a wrong secret) on `stream`, reads
/// the server's key confirmation, with which a guesser checks its guess
/// offline, and leaves.
fn hello_and_leave(stream: &mut TcpStream) {
    let now = Instant::now();
    let client = Client::new(
        ClientRole::new(EchoConfig::default()),
        SessionLimits::default(),
        now,
    );
    let secret = b"a wrong guess at the secret, 32+ bytes long";
    let mut machine = Secure::client(client, secret, SecureConfig::default(), now, [9; 32]);
    let Output::Transmit(hello) = machine.poll_output() else {
        panic!("a secure client starts with its hello");
    };
    stream.write_all(&hello).unwrap();
    let mut confirm = [0u8; CONFIRM_LEN];
    stream
        .read_exact(&mut confirm)
        .expect("the server's confirmation");
    // Leaves, and waits for the server to end the session.
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
}

/// A good sender on an address the server refuses after failed guesses
/// from it (a guesser behind the same NAT) is told so, and for how long,
/// not that the network cut the connection and that sending again resumes.
fn a_sender_refused_after_guesses_is_told_why_and_for_how_long(runtime: &str) {
    const HERE: [u8; 4] = [127, 0, 0, 1]; // where `send` connects from
    let d = dirs();
    let secret = secret_file(&d);
    let secret = secret.to_str().unwrap();
    let rx = start_receiver(&d, &["--runtime", runtime, "--secret-file", secret], false);
    let addr: SocketAddr = rx.addr.parse().unwrap();
    // Six sessions from this address at once, each of which sends a whole
    // hello and leaves with the server's confirmation: six failed guesses,
    // the refusal doubled to 32 s, long enough for `send` to start well
    // within it.
    let guessers: Vec<TcpStream> = (0..6).map(|_| session_from(HERE, addr)).collect();
    for mut g in guessers {
        hello_and_leave(&mut g);
    }
    // Each guess is counted as its session ends, just after its close.
    let deadline = Instant::now() + BOUND;
    loop {
        match refused_for(HERE, addr) {
            Some(secs) if secs > 8 => break,
            other => assert!(
                Instant::now() < deadline,
                "not refused for long after six guesses: {other:?} s"
            ),
        }
    }

    let paths = sources(&d, &[100_003]);
    let (status, out, err) = send(&rx.addr, &paths, &["--secret-file", secret], runtime);
    assert!(!status.success(), "{out}\n{err}");
    let told = format!(
        "refused: the server at {} refuses this address for ",
        rx.addr
    );
    assert!(err.contains(&told), "{err}");
    assert!(
        err.contains(" s after failed code guesses from it; wait and try again"),
        "{err}"
    );
    assert!(
        !err.contains("resumes") && !err.contains("network"),
        "{err}"
    );
    assert!(files_in(&d.dst).is_empty(), "{:?}", files_in(&d.dst));
}

#[test]
fn blocking_a_sender_refused_after_guesses_from_its_address_is_told_why_and_for_how_long() {
    a_sender_refused_after_guesses_is_told_why_and_for_how_long("blocking");
}

#[test]
fn tokio_a_sender_refused_after_guesses_from_its_address_is_told_why_and_for_how_long() {
    a_sender_refused_after_guesses_is_told_why_and_for_how_long("tokio");
}

#[test]
fn an_insecure_sender_meeting_a_secure_receiver_is_told_to_drop_insecure() {
    let d = dirs();
    let paths = sources(&d, &[1000]);
    let mut rx = start_receiver(&d, &["--once"], true);
    let (status, out, err) = send(&rx.addr, &paths, &["--insecure"], "blocking");
    assert!(!status.success(), "{out}\n{err}");
    assert!(err.contains(&rx.addr), "names the address: {err}");
    assert!(err.contains("requires an encrypted session"), "{err}");
    assert!(err.contains("drop --insecure"), "{err}");
    assert!(!err.contains("protocol"), "{err}");
    // A plaintext peer made no guess: the code is not spent.
    let code = rx.code.clone().unwrap();
    let (status, out, err) = send(&rx.addr, &paths, &["--code", &code], "blocking");
    assert!(status.success(), "{out}\n{err}");
    assert!(rx.guard.wait().success());
    assert_received(&d, &paths);
}

#[test]
fn a_secure_sender_meeting_an_insecure_receiver_is_told_about_insecure() {
    let d = dirs();
    let paths = sources(&d, &[1000]);
    let rx = start_receiver(&d, &["--once", "--insecure"], false);
    let (status, out, err) = send(&rx.addr, &paths, &["--code", "1-a-b-c"], "tokio");
    assert!(!status.success(), "{out}\n{err}");
    assert!(err.contains(&rx.addr), "names the address: {err}");
    assert!(err.contains("speaks plaintext"), "{err}");
    assert!(err.contains("--insecure"), "{err}");
    assert!(files_in(&d.dst).is_empty());
}

#[test]
fn a_client_without_a_code_is_told_to_give_one() {
    let d = dirs();
    let paths = sources(&d, &[10]);
    let mut cmd = bin();
    cmd.args(["send", "--to", "127.0.0.1:9"])
        .args(&paths)
        .env_remove("ECHOXFER_CODE");
    // stdin is not a terminal: no prompt, and the error says where a code
    // can come from.
    let (status, _, err) = run(cmd);
    assert!(!status.success());
    assert!(err.contains("--code CODE"), "{err}");
    assert!(err.contains("ECHOXFER_CODE=CODE"), "{err}");
    assert!(err.contains("type it at the prompt"), "{err}");
}

#[test]
fn insecure_on_a_non_loopback_address_prints_a_loud_warning() {
    let d = dirs();
    let mut cmd = bin();
    cmd.args(["receive", "--insecure", "--listen", "0.0.0.0:0", "--dir"])
        .arg(&d.dst)
        .stderr(Stdio::piped());
    let (mut guard, _, _) = spawn_until(cmd, "listening on");
    guard.child.kill().unwrap();
    let err = drain(guard.child.stderr.take().unwrap()).join().unwrap();
    assert!(err.contains("WARNING: --insecure on 0.0.0.0:0"), "{err}");
    // On loopback, no warning.
    let mut cmd = bin();
    cmd.args(["receive", "--insecure", "--listen", "127.0.0.1:0", "--dir"])
        .arg(&d.dst)
        .stderr(Stdio::piped());
    let (mut guard, _, _) = spawn_until(cmd, "listening on");
    guard.child.kill().unwrap();
    let err = drain(guard.child.stderr.take().unwrap()).join().unwrap();
    assert!(!err.contains("WARNING"), "{err}");
    // Nor on a name that resolves to loopback addresses only.
    let mut cmd = bin();
    cmd.args(["receive", "--insecure", "--listen", "localhost:0", "--dir"])
        .arg(&d.dst)
        .stderr(Stdio::piped());
    let (mut guard, addr, _) = spawn_until(cmd, "listening on");
    guard.child.kill().unwrap();
    let err = drain(guard.child.stderr.take().unwrap()).join().unwrap();
    assert!(!err.contains("WARNING"), "{addr}: {err}");
}

#[test]
fn secret_makes_an_owner_only_file_and_never_replaces_one() {
    use std::os::unix::fs::PermissionsExt;
    let d = dirs();
    let path = secret_file(&d);
    let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let text = fs::read_to_string(&path).unwrap();
    assert_eq!(text.trim_end().len(), 64, "32 bytes as hex: {text}");
    let mut cmd = bin();
    cmd.arg("secret").arg(&path);
    let (status, _, err) = run(cmd);
    assert!(!status.success(), "an existing secret file was replaced");
    assert_eq!(fs::read_to_string(&path).unwrap(), text);
    assert!(err.contains("shared.secret"), "{err}");
}

#[test]
fn a_secret_file_readable_by_others_or_too_short_is_refused_naming_it() {
    use std::os::unix::fs::PermissionsExt;
    let d = dirs();
    let open = d.src.join("open.secret");
    fs::write(&open, "0123456789abcdef0123456789abcdef\n").unwrap();
    fs::set_permissions(&open, fs::Permissions::from_mode(0o644)).unwrap();
    let short = d.src.join("short.secret");
    fs::write(&short, "tooshort\n").unwrap();
    fs::set_permissions(&short, fs::Permissions::from_mode(0o600)).unwrap();
    let paths = sources(&d, &[10]);
    for (file, says) in [(&open, "chmod 600"), (&short, "echoxfer secret")] {
        let file = file.to_str().unwrap();
        let (status, _, err) = send("127.0.0.1:9", &paths, &["--secret-file", file], "blocking");
        assert!(!status.success());
        assert!(err.contains(file), "names the file: {err}");
        assert!(err.contains(says), "says what to do: {err}");
        let mut cmd = bin();
        cmd.args(["receive", "--listen", "127.0.0.1:0", "--secret-file", file]);
        let (status, _, err) = run(cmd);
        assert!(!status.success());
        assert!(err.contains(file), "{err}");
    }
}

/// A long-running receiver is not left on a short printed code: without
/// `--once` it wants a secret file (or a code or `--insecure` chosen on
/// purpose), and says how to make one.
#[test]
fn a_long_running_receive_without_a_secret_is_refused_with_what_to_do() {
    let d = dirs();
    let out = Command::new(env!("CARGO_BIN_EXE_echoxfer"))
        .args(["receive", "--listen", "127.0.0.1:0", "--dir"])
        .arg(&d.dst)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--secret-file") && err.contains("echoxfer secret") && err.contains("--once"),
        "{err}"
    );
}

/// A `--once` receiver tells the other side to type the code (or set the
/// variable), never to put it on its command line; a sender takes the
/// code from `ECHOXFER_CODE` and receives nothing of it in its arguments.
#[test]
fn a_sender_takes_the_code_from_the_environment_and_the_hint_says_so() {
    let d = dirs();
    let paths = sources(&d, &[1234]);
    let mut rx = start_receiver(&d, &["--once"], true);
    let code = rx.code.clone().unwrap();
    let mut cmd = bin();
    cmd.args(["send", "--to", &rx.addr])
        .args(&paths)
        // Upper case and blanks: the one normalisation applies here too.
        .env("ECHOXFER_CODE", format!("  {}\n", code.to_uppercase()));
    let (status, out, err) = run(cmd);
    assert!(status.success(), "{out}\n{err}");
    assert!(rx.guard.wait().success());
    assert_received(&d, &paths);
    let hint = rx.stderr.join().unwrap();
    assert!(
        hint.contains("type the code when it asks") && hint.contains("ECHOXFER_CODE"),
        "{hint}"
    );
    assert!(
        !hint.contains("--code "),
        "the hint puts the code on a command line: {hint}"
    );
    assert!(!hint.contains(&code), "the hint repeats the code: {hint}");
}

/// A sender on a terminal without a code asks for it (driven through a
/// pseudo-terminal: the sender's stdin is its slave side).
#[test]
fn a_sender_on_a_terminal_asks_for_the_code_and_uses_what_is_typed() {
    use std::io::Write;
    use std::os::fd::{FromRawFd, OwnedFd};
    let d = dirs();
    let paths = sources(&d, &[4321]);
    let mut rx = start_receiver(&d, &["--once"], true);
    let code = rx.code.clone().unwrap();
    let (mut master, mut slave) = (-1, -1);
    // SAFETY: openpty fills two fresh descriptors, owned from here on.
    let ok = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            // `*mut` on macOS, `*const` on Linux: a null of either fits.
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    };
    assert_eq!(ok, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both are open and owned by nothing else.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    let mut cmd = bin();
    cmd.args(["send", "--to", &rx.addr])
        .args(&paths)
        .env_remove("ECHOXFER_CODE")
        .stdin(Stdio::from(slave))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut guard = Guard {
        child: cmd.spawn().unwrap(),
    };
    // The terminal holds the line until the sender reads it.
    let mut terminal = fs::File::from(master);
    terminal.write_all(format!("{code}\n").as_bytes()).unwrap();
    let out = drain(guard.child.stdout.take().unwrap());
    let err = drain(guard.child.stderr.take().unwrap());
    let status = guard.wait();
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    assert!(status.success(), "{out}\n{err}");
    assert!(
        err.contains("code (the one the other side printed)"),
        "no prompt: {err}"
    );
    assert!(rx.guard.wait().success());
    assert_received(&d, &paths);
}

/// A server that runs until stopped takes a secret file or a code at
/// least as strong as a printed one, `receive` and `echo serve` alike:
/// a weak code (from `--code` or the environment), `-`, or none (where
/// `echo serve` used to print a short code) is refused, saying what to do.
#[test]
fn long_running_servers_refuse_weak_or_missing_codes_saying_what_to_do() {
    let d = dirs();
    let dst = d.dst.to_str().unwrap();
    let receive = ["receive", "--listen", "127.0.0.1:0", "--dir", dst];
    let serve = ["echo", "serve", "--addr", "127.0.0.1:0"];
    for server in [&receive[..], &serve[..]] {
        for (auth, env) in [
            (&["--code", "1"][..], None),
            (&["--code", "-"][..], None),
            (&["--code", "7-acorn-bell"][..], None),
            (&[][..], Some("hunter2")),
            (&[][..], None),
        ] {
            let mut cmd = bin();
            cmd.args(server).args(auth).env_remove("ECHOXFER_CODE");
            if let Some(code) = env {
                cmd.env("ECHOXFER_CODE", code);
            }
            let (status, out, err) = run(cmd);
            let what = format!("{server:?} {auth:?} {env:?}");
            assert_eq!(status.code(), Some(1), "{what}: {out}\n{err}");
            assert!(!out.contains("code:"), "{what} printed a code: {out}");
            assert!(!out.contains("listening"), "{what} started: {out}");
            assert!(
                err.contains("runs until stopped")
                    && err.contains("--secret-file FILE")
                    && err.contains("echoxfer secret FILE")
                    && err.contains("ECHOXFER_CODE"),
                "{what}: {err}"
            );
            let said = if auth.is_empty() && env.is_none() {
                "no secret was given"
            } else {
                "weaker than a printed one"
            };
            assert!(err.contains(said), "{what}: {err}");
        }
    }
    // A code of a printed code's form and strength starts either server,
    // given on the command line or in the environment.
    for server in [&receive[..], &serve[..]] {
        let mut cmd = bin();
        cmd.args(server).args(["--code", "12-acorn-bell-echo"]);
        let (mut guard, _, _) = spawn_until(cmd, "listening on");
        guard.child.kill().unwrap();
        let mut cmd = bin();
        cmd.args(server)
            .env("ECHOXFER_CODE", "0123456789abcdef0123456789abcdef");
        let (mut guard, _, _) = spawn_until(cmd, "listening on");
        guard.child.kill().unwrap();
    }
}
