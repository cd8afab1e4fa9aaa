//! Legacy file send speed: echoxfer's legacy sender against the seed
//! sender (`seedpeer.py file-send`), each into the seed receiver
//! (`seedpeer.py file-receive`), on the same file, side by side in one run.
//! Checks both received files byte for byte; prints times and their ratio.
//!
//! `cargo bench --bench legacy_send` (env: `SIZE` in KiB, default 2048).
//! Two files: plain text lines of 20 to 120 bytes, and the same with every
//! 97th line reading `quit`, `exit` or `success` (none over 1024 bytes and
//! none last, so the seed sender can deliver them too).

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use echoxfer::driver::blocking;
use echoxfer::files::legacy::SendFromFile;
use echoxfer::legacy::LegacyFileSender;
use echoxfer::UnframedConfig;

/// The reference peer, the in-repository fixture (see `tests/fixtures/README.md`).
fn seedpeer() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/seedpeer.py");
    assert!(p.is_file(), "seed peer fixture missing at {}", p.display());
    p
}

/// `size` bytes of text lines; with `words`, every 97th line reads `quit`,
/// `exit` or `success` (each `quit` costs the safe sender a settle interval).
fn text(size: usize, words: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(size + 128);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut i = 0u64;
    while out.len() < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        i += 1;
        match (words, i % 97) {
            (true, 10) => out.extend_from_slice(b"quit\n"),
            (true, 20) => out.extend_from_slice(b"exit\n"),
            (true, 30) => out.extend_from_slice(b"success\n"),
            _ => {
                let len = 20 + (x % 100) as usize;
                // Letters without `q`, so plain text holds no `quit` by chance.
                out.extend((0..len).map(|k| b'a' + ((x >> (k % 40)) % 16) as u8));
                out.push(b'\n');
            }
        }
    }
    out.extend_from_slice(b"the end\n");
    out
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts the seed receiver writing to `out` and waits until it listens.
fn seed_receiver(port: u16, out: &Path) -> Child {
    let mut child = Command::new("python3")
        .arg(seedpeer())
        .args(["file-receive", "--port", &port.to_string(), "--out"])
        .arg(out)
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "listening");
    child
}

fn wait(mut child: Child) {
    let until = Instant::now() + Duration::from_secs(600);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < until, "peer did not finish");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn ours(src: &Path, out: &Path) -> Duration {
    let port = free_port();
    let receiver = seed_receiver(port, out);
    let start = Instant::now();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (mut app, size) = SendFromFile::open(src).unwrap();
    let mut sender = LegacyFileSender::new(size, UnframedConfig::default(), Instant::now());
    blocking::run_stream(&mut sender, &mut stream, &mut app).unwrap();
    drop(stream);
    wait(receiver);
    start.elapsed()
}

fn seeds(src: &Path, out: &Path) -> Duration {
    let port = free_port();
    let receiver = seed_receiver(port, out);
    let start = Instant::now();
    let sender = Command::new("python3")
        .arg(seedpeer())
        .args(["file-send", "--port", &port.to_string()])
        .arg(src)
        .spawn()
        .unwrap();
    wait(sender);
    wait(receiver);
    start.elapsed()
}

fn compare(label: &str, content: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("source.txt");
    std::fs::write(&src, content).unwrap();
    let seed_out = dir.path().join("seed.out");
    let our_out = dir.path().join("ours.out");
    let t_seed = seeds(&src, &seed_out);
    let t_ours = ours(&src, &our_out);
    assert!(
        std::fs::read(&seed_out).unwrap() == content,
        "seed sender's copy differs"
    );
    assert!(
        std::fs::read(&our_out).unwrap() == content,
        "echoxfer's copy differs"
    );
    let mb = content.len() as f64 / 1e6;
    println!("{label}, {mb:.1} MB into the seed receiver:");
    println!(
        "  seed sender:     {:>8.3} s  ({:.2} MB/s)",
        t_seed.as_secs_f64(),
        mb / t_seed.as_secs_f64()
    );
    println!(
        "  echoxfer legacy: {:>8.3} s  ({:.2} MB/s)",
        t_ours.as_secs_f64(),
        mb / t_ours.as_secs_f64()
    );
    println!(
        "  speed ratio echoxfer / seed: {:.2}",
        t_seed.as_secs_f64() / t_ours.as_secs_f64()
    );
}

fn main() {
    let kib: usize = std::env::var("SIZE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2048);
    compare("plain text", &text(kib * 1024, false));
    compare("text with quit/exit/success lines", &text(kib * 1024, true));
}
