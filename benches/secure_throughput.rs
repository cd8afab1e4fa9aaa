//! What the secure channel costs: a file transfer of `SIZE` MiB (default
//! 1024) over loopback TCP with the blocking driver, encrypted
//! (`Secure<Sender>` / `Secure<Receiver>`) against plaintext, with
//! in-memory apps (the content is a shared buffer, the receiver counts and
//! drops it) so that only the protocol and the channel are measured; the
//! handshake's time on loopback (connect, key exchange, both
//! confirmations, an echo `Exit`, the close records); and the record
//! cipher alone on one core, the one the channel uses (snow's ring-backed
//! AES-256-GCM) beside RustCrypto's `aes-gcm`, sealing `SIZE` MiB in 64 KiB
//! records.
//!
//! The transfers and the ciphers run in interleaved rounds (rotating
//! order, `sync` before each run; see `benches/common/rounds.rs`, which
//! also says when a round is "disturbed"), and the report gives, per
//! ratio, the median of the per-round ratios with min and max and the
//! per-round list: encrypted / plaintext, ring / aes-gcm. The handshakes
//! alternate plaintext and encrypted sessions, and the handshake's cost is
//! the median of the differences of neighbouring pairs. Asserts delivery
//! (every byte counted, the file confirmed) and that both ciphers seal to
//! the same record; asserts nothing about speed.
//!
//! `cargo bench --bench secure_throughput` (env: `SIZE` in MiB; `ROUNDS`,
//! default 5; `WARMUP` rounds, default 1; `HANDSHAKES`, default 200 of
//! each).
//!
//! `cargo test` does not build it; `cargo test --benches` (or
//! `--all-targets`) builds it and it returns at once: it runs only when
//! given `--bench`, as `cargo bench` does.

#[path = "common/rounds.rs"]
mod rounds;

use std::io;
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use echoxfer::codec::RejectReason;
use echoxfer::driver::{blocking, App, Ignore};
use echoxfer::echo::{self, ClientRole, ServerRole};
use echoxfer::secure::{Secure, SecureConfig};
use echoxfer::testing::MemSender;
use echoxfer::xfer::{Receiver, ReceiverEvent, ReceiverRole, Resume, SafeName, Sender};
use echoxfer::{EchoConfig, Machine, SessionLimits, StreamMachine, TransferConfig};
use rounds::{contender, env, Plan, Sample};

const MIB: u64 = 1024 * 1024;
const CODE: &[u8] = b"5-bench-code";

/// Accepts the offer and counts what arrives, keeping nothing.
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
        let m = echo::Server::new(
            ServerRole::new("hi", EchoConfig::default()),
            SessionLimits::default(),
            now,
        );
        run(m, secure, true, &mut stream);
    });
    let start = Instant::now();
    let now = Instant::now();
    let mut c = echo::Client::new(
        ClientRole::new(EchoConfig::default()),
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

fn median(v: &[Duration]) -> Duration {
    Duration::from_secs_f64(rounds::median(
        &v.iter().map(Duration::as_secs_f64).collect::<Vec<_>>(),
    ))
}

fn main() {
    if rounds::not_benching() {
        return;
    }
    let size = env("SIZE", 1024) * MIB;
    let plan = Plan::from_env(5, None, move |t| rounds::mb_per_s(size, t));
    let content = Bytes::from(
        (0..size)
            .map(|i| (i.wrapping_mul(0x9e37_79b9) >> 13) as u8)
            .collect::<Vec<u8>>(),
    );
    println!(
        "file transfer of {} MiB over loopback, in memory, {} rounds after {} warm-up",
        size / MIB,
        plan.rounds,
        plan.warmup
    );
    let content = &content;
    let mut contenders = vec![
        contender("plaintext", || Sample::time(transfer(content, false))),
        contender("encrypted", || Sample::time(transfer(content, true))),
    ];
    let runs = rounds::run(&plan, &mut contenders);
    rounds::report(&plan, &runs, &[]);
    println!();
    let n = env("HANDSHAKES", 200);
    let (mut plain, mut enc) = (Vec::new(), Vec::new());
    for i in 0..n {
        // Alternating which goes first.
        if i % 2 == 0 {
            plain.push(echo_session(false));
            enc.push(echo_session(true));
        } else {
            enc.push(echo_session(true));
            plain.push(echo_session(false));
        }
    }
    let diffs: Vec<f64> = (plain.iter().zip(&enc))
        .map(|(p, e)| e.as_secs_f64() - p.as_secs_f64())
        .collect();
    let (p, e) = (median(&plain), median(&enc));
    println!(
        "open-and-close echo session on loopback ({n} of each, alternating): median plaintext {p:?}, encrypted {e:?}; handshake cost (median of pairwise differences) {:?}",
        Duration::from_secs_f64(rounds::median(&diffs).max(0.0))
    );
    println!();
    ciphers(size as usize);
}

/// Seals `size` bytes in 64 KiB records with each AES-256-GCM, one core,
/// counter nonces as the channel makes them, in interleaved rounds; prints
/// GB/s. The last record is checked to seal the same with both (the same
/// construction).
fn ciphers(size: usize) {
    use aes_gcm::aead::{AeadInOut, KeyInit};
    use snow::params::CipherChoice;
    use snow::resolvers::{CryptoResolver, RingResolver};
    const RECORD: usize = 64 * 1024;
    let key = [5u8; 32];
    let records = size / RECORD;
    let sealed = (records * RECORD) as u64;
    let plan = Plan::from_env(5, None, move |t| {
        format!("{:.2} GB/s", sealed as f64 / 1e9 / t.as_secs_f64())
    });
    println!(
        "sealing {} MiB in 64 KiB records, one core, {} rounds after {} warm-up",
        sealed / MIB,
        plan.rounds,
        plan.warmup
    );
    let mut ring = RingResolver
        .resolve_cipher(&CipherChoice::AESGCM)
        .expect("AES-GCM");
    ring.set(&key);
    let rust = aes_gcm::Aes256Gcm::new(&key.into());
    let nonce = |n: u64| {
        let mut b = [0u8; 12];
        b[4..].copy_from_slice(&n.to_be_bytes());
        b
    };
    let mut contenders = vec![
        contender("RustCrypto aes-gcm", || {
            let mut plain = vec![7u8; RECORD];
            let t = Instant::now();
            for n in 0..records as u64 {
                let tag =
                    rust.encrypt_inout_detached(&nonce(n).into(), b"head", (&mut plain[..]).into());
                std::hint::black_box(tag.expect("sealed"));
            }
            Sample::time(t.elapsed())
        }),
        contender("snow ring", || {
            let plain = vec![7u8; RECORD];
            let mut out = vec![0u8; RECORD + 16];
            let t = Instant::now();
            for n in 0..records as u64 {
                ring.encrypt(n, b"head", &plain, &mut out);
            }
            std::hint::black_box(&out);
            Sample::time(t.elapsed())
        }),
    ];
    let runs = rounds::run(&plan, &mut contenders);
    rounds::report(&plan, &runs, &[]);
    drop(contenders);
    // The last record both ways: the same ciphertext and tag.
    let mut out = vec![0u8; RECORD + 16];
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
}
