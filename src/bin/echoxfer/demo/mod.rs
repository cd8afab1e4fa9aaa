//! `echoxfer demo`: runs real sessions over loopback on built-in defaults
//! and checks every byte, so a fresh clone proves itself in one command.
//! Every session runs secure, as the commands do by default: a code made up for the
//! demo authenticates both ends, and every byte is encrypted.

use std::borrow::BorrowMut;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use echoxfer::driver::{blocking, Ignore};
use echoxfer::echo::{self, ClientEvent, ClientRole, ServerRole};
use echoxfer::files::{FileReport, Outcome, ReceiverApp, SenderApp, Store};
use echoxfer::xfer::{Receiver, ReceiverRole, Sender};
use echoxfer::{EchoConfig, SessionLimits, TransferConfig};

mod folder;

use crate::args::DemoArgs;
use crate::auth::{self, Auth, Channel};
use crate::net::{self, CmdResult};
use crate::term;

/// `echoxfer demo`: an echo session, then (unless `--size-mib 0`) a file
/// transfer, then a folder sent twice (the second run a no-op).
pub fn run(a: DemoArgs) -> CmdResult {
    let code = auth::new_code()?;
    println!(
        "secure: every session authenticated with the code {code} (SPAKE2) and encrypted \
         (AES-256-GCM), as every native session is unless --insecure is given"
    );
    let auth = Auth::Secret(code.into_bytes());
    echo_demo(a.messages, &auth)?;
    if a.size > 0 {
        file_demo(a.size, &auth)?;
    }
    folder::folder_demo(&auth)
}

/// A demo message: numbered, and every tenth is a word the seed protocols
/// would have taken as a command.
fn message(i: usize) -> Bytes {
    match i % 10 {
        3 => Bytes::from_static(b"exit"),
        6 => Bytes::from_static(b"quit"),
        9 => Bytes::from_static(b"success"),
        _ => Bytes::from(format!("message {i}")),
    }
}

/// Who should be listening where the demo connects (for the error message).
const SERVER_THREAD: &str = "the demo's own server thread";

fn echo_demo(messages: usize, auth: &Auth) -> CmdResult {
    let listener = net::bind(([127, 0, 0, 1], 0).into())?;
    let addr = listener.local_addr()?;
    let shutdown = blocking::Shutdown::new();
    let server = {
        let shutdown = shutdown.clone();
        let auth = auth.clone();
        thread::spawn(move || {
            blocking::serve(listener, 4, Duration::from_secs(1), &shutdown, move |now| {
                let server = echo::Server::new(
                    ServerRole::new("echoxfer demo", EchoConfig::default()),
                    SessionLimits::default(),
                    now,
                );
                (auth.server_channel(server, now), Ignore)
            })
        })
    };
    let mut stream = net::connect(&addr.into(), SERVER_THREAD)?;
    let now = Instant::now();
    let client = echo::Client::new(
        ClientRole::new(EchoConfig::default()),
        SessionLimits::default(),
        now,
    );
    let mut client = auth.client_channel(client, now);
    let inner: &mut echo::Client = client.borrow_mut();
    inner.send(message(0))?;
    let mut next = 1;
    let mut replies = 0;
    let started = Instant::now();
    let mut app =
        |c: &mut Channel<echo::Client>, _: Instant, e: ClientEvent| -> std::io::Result<()> {
            let c: &mut echo::Client = c.borrow_mut();
            if let ClientEvent::Reply(r) = e {
                if r != message(replies) {
                    return Err(std::io::Error::other(format!("reply {replies} differs")));
                }
                replies += 1;
                let r = if next < messages {
                    next += 1;
                    c.send(message(next - 1))
                } else {
                    c.close()
                };
                r.map_err(std::io::Error::other)?;
            }
            Ok(())
        };
    blocking::run_stream(&mut client, &mut stream, &mut app)?;
    let elapsed = started.elapsed();
    shutdown.trigger();
    server.join().map_err(|_| "server thread panicked")??;
    if replies != messages {
        return Err(format!("echo: {replies} of {messages} replies").into());
    }
    println!(
        "echo: {messages} messages echoed intact over {addr} in {:.3} s ({:.0} round trips/s)",
        elapsed.as_secs_f64(),
        messages as f64 / elapsed.as_secs_f64()
    );
    Ok(())
}

/// The words the seed protocols take as commands, as whole lines.
const TRAPS: &[u8] = b"quit\nexit\nsuccess\n";

/// Writes `size` bytes to `path`: the trap lines at the start, in the
/// middle and as the last lines, random bytes (BLAKE3 in XOF mode, fast and
/// reproducible) in between. Returns the content's BLAKE3.
fn generate(path: &Path, size: u64) -> io::Result<[u8; 32]> {
    let mut out = Hashed {
        file: BufWriter::with_capacity(1 << 20, File::create(path)?),
        hasher: blake3::Hasher::new(),
    };
    let middle = [b"\n".as_slice(), TRAPS].concat();
    let random = size.saturating_sub((TRAPS.len() + middle.len()) as u64);
    let mut xof = blake3::Hasher::new_derive_key("echoxfer demo file").finalize_xof();
    let mut buf = vec![0u8; 1 << 20];
    let mut fill = |out: &mut Hashed, mut n: u64| -> io::Result<()> {
        while n > 0 {
            let k = n.min(buf.len() as u64) as usize;
            xof.fill(&mut buf[..k]);
            out.put(&buf[..k])?;
            n -= k as u64;
        }
        Ok(())
    };
    out.put(TRAPS)?;
    fill(&mut out, random / 2)?;
    out.put(&middle)?;
    fill(&mut out, random - random / 2)?;
    out.put(&middle)?;
    out.file
        .into_inner()
        .map_err(|e| e.into_error())?
        .sync_all()?;
    Ok(*out.hasher.finalize().as_bytes())
}

/// A file being written and the hash of what was written.
struct Hashed {
    file: BufWriter<File>,
    hasher: blake3::Hasher,
}

impl Hashed {
    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.hasher.update(bytes);
        self.file.write_all(bytes)
    }
}

/// Reads the received file back once: whether it holds the same bytes as
/// the sent one (compared chunk by chunk), and its BLAKE3.
fn read_back(sent: &Path, got: &Path) -> io::Result<(bool, [u8; 32])> {
    let (mut sent, mut got) = (File::open(sent)?, File::open(got)?);
    let mut same = sent.metadata()?.len() == got.metadata()?.len();
    let mut hasher = blake3::Hasher::new();
    let (mut x, mut y) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = got.read(&mut y)?;
        if n == 0 {
            return Ok((same, *hasher.finalize().as_bytes()));
        }
        hasher.update(&y[..n]);
        // Equal lengths were checked: a short read of the sent file means it changed.
        same = same && sent.read_exact(&mut x[..n]).is_ok() && x[..n] == y[..n];
    }
}

/// One session of the demo: `path` (a file or a folder) sent over loopback
/// to a receiver in a thread saving into `dst` (blocking driver, secure).
fn transfer(path: &Path, dst: &Path, auth: &Auth) -> CmdResult<Session> {
    let listener = net::bind(([127, 0, 0, 1], 0).into())?;
    let addr = listener.local_addr()?;
    let store = Store::new(dst, false)?;
    let server_auth = auth.clone();
    let receiver = thread::spawn(move || -> io::Result<(Result<(), String>, ReceiverApp)> {
        let (mut stream, _) = listener.accept()?;
        stream.set_nodelay(true)?;
        let now = Instant::now();
        let machine = Receiver::new(
            ReceiverRole::new(TransferConfig::default()),
            SessionLimits::default(),
            now,
        );
        let mut machine = server_auth.server_channel(machine, now);
        let mut app = ReceiverApp::new(store);
        let r = blocking::run_stream(&mut machine, &mut stream, &mut app);
        Ok((r.map_err(|e| e.to_string()), app))
    });
    let started = Instant::now();
    let sent = (|| -> CmdResult<SenderApp> {
        let mut stream = net::connect(&addr.into(), SERVER_THREAD)?;
        let mut app = SenderApp::open(&[path], &TransferConfig::default().path_limits())?;
        let now = Instant::now();
        let config = TransferConfig::default();
        let machine = Sender::new(app.role(config), SessionLimits::default(), now);
        let mut machine = auth.client_channel(machine, now);
        blocking::run_stream(&mut machine, &mut stream, &mut app)?;
        Ok(app)
    })();
    let elapsed = started.elapsed();
    let (received, app) = receiver.join().map_err(|_| "receiver thread panicked")??;
    let sent = sent?;
    received.map_err(|e| format!("receiver failed: {e}"))?;
    Ok(Session {
        sent,
        received: app,
        addr,
        elapsed,
    })
}

/// A demo session that ended: both apps, where, and how long it took.
struct Session {
    sent: SenderApp,
    received: ReceiverApp,
    addr: std::net::SocketAddr,
    elapsed: Duration,
}

/// Sends a generated file to a receiver in a thread over loopback
/// (blocking driver) and checks what arrived, by hash and byte for byte.
fn file_demo(size_mib: u64, auth: &Auth) -> CmdResult {
    let size = size_mib << 20;
    let tmp = tempfile::Builder::new().prefix("echoxfer-demo").tempdir()?;
    let (src, dst) = (tmp.path().join("send"), tmp.path().join("receive"));
    std::fs::create_dir(&src)?;
    std::fs::create_dir(&dst)?;
    let path = src.join("demo.bin");
    let hash = generate(&path, size)?;

    let Session {
        sent,
        received,
        addr,
        elapsed,
    } = transfer(&path, &dst, auth)?;
    if !term::all_delivered(&sent.totals()) {
        return Err(format!("file: not delivered: {:?}", sent.report()).into());
    }
    let report = received.report();
    match report.as_slice() {
        [FileReport {
            outcome: Outcome::Saved { hash: h },
            ..
        }] if *h == hash => {}
        other => return Err(format!("file: unexpected receiver report: {other:?}").into()),
    }
    let got = dst.join("demo.bin");
    let (same, got_hash) = read_back(&path, &got)?;
    if got_hash != hash {
        return Err(format!(
            "file: BLAKE3 differs: sent {}, received {}",
            term::hex(&hash),
            term::hex(&got_hash)
        )
        .into());
    }
    if !same {
        return Err("file: the received bytes differ from the sent ones".into());
    }
    let secs = elapsed.as_secs_f64();
    println!(
        "file: {size_mib} MiB ({size} bytes, with quit/exit/success lines) sent and received intact \
         over {addr} in {secs:.3} s ({}); blake3 {} on both sides, byte-for-byte identical",
        term::rate(size, secs),
        term::hex(&hash)
    );
    Ok(())
}
