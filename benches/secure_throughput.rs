//! What the secure channel costs: a file transfer of `SIZE` MiB (default
//! 1024) over loopback TCP with the blocking driver, encrypted
//! (`Secure<Sender>` / `Secure<Receiver>`) against plaintext, in the same
//! run and in alternating order, with in-memory apps (the content is a
//! shared buffer, the receiver hashes and drops it) so that only the
//! protocol and the channel are measured; and the handshake's time on
//! loopback (connect, key exchange, both confirmations, an echo `Exit`,
//! the close records); and the record cipher alone on one core, the one
//! the channel uses (snow's ring-backed AES-256-GCM) beside RustCrypto's
//! `aes-gcm`, sealing `SIZE` MiB in 64 KiB records.
//! Prints throughputs and their ratio; asserts delivery, not speed.
//!
//! `cargo bench --bench secure_throughput` (env: `SIZE` in MiB, `ROUNDS`,
//! default 3; `HANDSHAKES`, default 200).

use std::io;
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use echoxfer::codec::RejectReason;
use echoxfer::driver::{blocking, App, Ignore};
use echoxfer::echo::{Client, EchoClient, EchoServer, Server};
use echoxfer::secure::{Secure, SecureConfig};
use echoxfer::testing::MemSender;
use echoxfer::xfer::{Receiver, ReceiverEvent, ReceiverRole, Resume, SafeName, Sender};
use echoxfer::{EchoConfig, Machine, SessionLimits, StreamMachine, TransferConfig};

const MIB: u64 = 1024 * 1024;
const CODE: &[u8] = b"5-bench-code";

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Accepts the offer and hashes what arrives, keeping nothing.
#[derive(Default)]
struct Sink {
    got: u64,
}

impl<M: Machine<Event = ReceiverEvent> + std::borrow::BorrowMut<Receiver>> App<M> for Sink {
    fn on_event(&mut self, m: &mut M, _: Instant, e: ReceiverEvent) -> io::Result<()> {
        let m: &mut Receiver = m.borrow_mut();
        let r = match e {
            ReceiverEvent::Offer { request, .. } => m.accept(request, Resume::Fresh),
            ReceiverEvent::Write { data, .. } => {
                self.got += data.len() as u64;
                Ok(())
            }
            ReceiverEvent::Verified { request, .. } => m.saved(request),
            ReceiverEvent::Refused { reason, .. } => {
                return Err(io::Error::other(format!("refused: {reason:?}")))
            }
            _ => Ok(()),
        };
        r.map_err(io::Error::other)
    }
}

fn seed(n: u8) -> [u8; 32] {
    [n; 32]
}

/// One transfer of `content`; returns its wall time.
fn transfer(content: &Bytes, secure: bool) -> Duration {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let start = Instant::now();
    let server = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let now = Instant::now();
        let m = Receiver::new(
            ReceiverRole::new(TransferConfig::default()),
            SessionLimits::default(),
            now,
        );
        let mut sink = Sink::default();
        if secure {
            let mut m = Secure::server(m, CODE, SecureConfig::default(), now, seed(2));
            blocking::run_stream(&mut m, &mut stream, &mut sink).unwrap();
        } else {
            let mut m = m;
            blocking::run_stream(&mut m, &mut stream, &mut sink).unwrap();
        }
        sink.got
    });
    let name = SafeName::new(b"bench.bin", 255).unwrap();
    let mut app = MemSender::new([(name, content.clone())]);
    let now = Instant::now();
    let m = Sender::new(
        app.role(TransferConfig::default()),
        SessionLimits::default(),
        now,
    );
    let mut stream = TcpStream::connect(addr).unwrap();
    if secure {
        let mut m = Secure::client(m, CODE, SecureConfig::default(), now, seed(1));
        blocking::run_stream(&mut m, &mut stream, &mut app).unwrap();
    } else {
        let mut m = m;
        blocking::run_stream(&mut m, &mut stream, &mut app).unwrap();
    }
    assert_eq!(server.join().unwrap(), content.len() as u64);
    assert_eq!(
        app.delivered.len(),
        1,
        "not confirmed: {:?}",
        app.rejected.first().map(|r| r.1 == RejectReason::Exists)
    );
    start.elapsed()
}

/// One echo session that only opens and closes: the handshake plus one
/// round trip of `Exit`.
fn echo_session(secure: bool) -> Duration {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let now = Instant::now();
        let m = EchoServer::new(
            Server::new("hi", EchoConfig::default()),
            SessionLimits::default(),
            now,
        );
        run(m, secure, true, &mut stream);
    });
    let start = Instant::now();
    let now = Instant::now();
    let mut c = EchoClient::new(
        Client::new(EchoConfig::default()),
        SessionLimits::default(),
        now,
    );
    c.close().unwrap();
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_nodelay(true).unwrap();
    run(c, secure, false, &mut stream);
    let t = start.elapsed();
    server.join().unwrap();
    t
}

fn run<M: StreamMachine>(m: M, secure: bool, server: bool, stream: &mut TcpStream) {
    let now = Instant::now();
    if !secure {
        let mut m = m;
        return blocking::run_stream(&mut m, stream, &mut Ignore).unwrap();
    }
    let mut m = match server {
        true => Secure::server(m, CODE, SecureConfig::default(), now, seed(3)),
        false => Secure::client(m, CODE, SecureConfig::default(), now, seed(4)),
    };
    blocking::run_stream(&mut m, stream, &mut Ignore).unwrap();
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let size = env("SIZE", 1024) * MIB;
    let rounds = env("ROUNDS", 3);
    let content = Bytes::from(
        (0..size)
            .map(|i| (i.wrapping_mul(0x9e37_79b9) >> 13) as u8)
            .collect::<Vec<u8>>(),
    );
    println!(
        "file transfer of {} MiB over loopback, in memory, {rounds} rounds",
        size / MIB
    );
    let (mut plain, mut enc) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let order = if round % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for secure in order {
            let t = transfer(&content, secure);
            let mbs = size as f64 / 1e6 / t.as_secs_f64();
            let what = if secure { "encrypted" } else { "plaintext" };
            println!("round {round}: {what:9} {mbs:>8.1} MB/s");
            if secure {
                enc.push(t)
            } else {
                plain.push(t)
            }
        }
    }
    let (p, e) = (median(plain), median(enc));
    println!(
        "median: plaintext {:.1} MB/s, encrypted {:.1} MB/s, ratio encrypted / plaintext {:.2}",
        size as f64 / 1e6 / p.as_secs_f64(),
        size as f64 / 1e6 / e.as_secs_f64(),
        p.as_secs_f64() / e.as_secs_f64()
    );
    let n = env("HANDSHAKES", 200);
    let plain: Vec<_> = (0..n).map(|_| echo_session(false)).collect();
    let enc: Vec<_> = (0..n).map(|_| echo_session(true)).collect();
    let (p, e) = (median(plain), median(enc));
    println!(
        "open-and-close echo session on loopback (median of {n}): plaintext {p:?}, encrypted {e:?}, handshake cost {:?}",
        e.saturating_sub(p)
    );
    ciphers(size as usize);
}

/// Seals `size` bytes in 64 KiB records with each AES-256-GCM, one core,
/// counter nonces as the channel makes them; prints GB/s. Each cipher's
/// output is checked to open with the other (the same construction).
fn ciphers(size: usize) {
    use aes_gcm::aead::{AeadInOut, KeyInit};
    use snow::params::CipherChoice;
    use snow::resolvers::{CryptoResolver, RingResolver};
    const RECORD: usize = 64 * 1024;
    let key = [5u8; 32];
    let records = size / RECORD;
    let mut plain = vec![7u8; RECORD];
    let mut out = vec![0u8; RECORD + 16];
    let mut ring = RingResolver
        .resolve_cipher(&CipherChoice::AESGCM)
        .expect("AES-GCM");
    ring.set(&key);
    let nonce = |n: u64| {
        let mut b = [0u8; 12];
        b[4..].copy_from_slice(&n.to_be_bytes());
        b
    };
    let t = Instant::now();
    for n in 0..records as u64 {
        ring.encrypt(n, b"head", &plain, &mut out);
    }
    let ring_t = t.elapsed();
    let rust = aes_gcm::Aes256Gcm::new(&key.into());
    let t = Instant::now();
    for n in 0..records as u64 {
        let tag = rust.encrypt_inout_detached(&nonce(n).into(), b"head", (&mut plain[..]).into());
        std::hint::black_box(tag.expect("sealed"));
    }
    let rust_t = t.elapsed();
    // The last record both ways: the same ciphertext and tag.
    ring.encrypt(records as u64 - 1, b"head", &vec![7u8; RECORD], &mut out);
    let mut again = vec![7u8; RECORD];
    let last = rust
        .encrypt_inout_detached(
            &nonce(records as u64 - 1).into(),
            b"head",
            (&mut again[..]).into(),
        )
        .expect("sealed");
    assert_eq!((&out[..RECORD], &out[RECORD..]), (&again[..], &last[..]));
    let gbs = |t: Duration| (records * RECORD) as f64 / 1e9 / t.as_secs_f64();
    println!(
        "sealing {} MiB in 64 KiB records, one core: snow's ring AES-256-GCM {:.2} GB/s, RustCrypto aes-gcm {:.2} GB/s",
        records * RECORD / MIB as usize,
        gbs(ring_t),
        gbs(rust_t)
    );
}
