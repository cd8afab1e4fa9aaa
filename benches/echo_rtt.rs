//! Echo round trips per second: echoxfer's native echo on the blocking and
//! tokio drivers against a minimal thread-per-connection `std::net` echo,
//! side by side in one run. Prints ratios; asserts nothing about speed.
//!
//! `cargo bench --bench echo_rtt` (env: `CONNS`, default 50; `ROUNDS` per
//! connection, default 2000; message size 64 bytes).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use echoxfer::driver::{blocking, App, Ignore};
use echoxfer::echo::{Client, ClientEvent, EchoClient, EchoServer, Server};
use echoxfer::{EchoConfig, SessionLimits};

const MSG: usize = 64;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The baseline: read what comes, write it back, a thread per connection.
fn baseline_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let mut s = stream.unwrap();
            s.set_nodelay(true).unwrap();
            thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = s.read(&mut buf) {
                    if s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

fn baseline_client(addr: SocketAddr, rounds: usize) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    let msg = [7u8; MSG];
    let mut back = [0u8; MSG];
    for _ in 0..rounds {
        s.write_all(&msg).unwrap();
        s.read_exact(&mut back).unwrap();
    }
}

fn make(now: Instant) -> (EchoServer, Ignore) {
    (
        EchoServer::new(
            Server::new("bench", EchoConfig::default()),
            SessionLimits::default(),
            now,
        ),
        Ignore,
    )
}

fn blocking_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        blocking::serve(
            listener,
            4096,
            Duration::from_secs(1),
            &blocking::Shutdown::new(),
            make,
        )
    });
    addr
}

fn tokio_server() -> SocketAddr {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        rt.block_on(echoxfer::driver::tokio::serve(
            listener,
            4096,
            Duration::from_secs(1),
            echoxfer::driver::Shutdown::new(),
            make,
        ))
    });
    addr
}

/// One message in flight at a time, the next sent on each reply.
struct Lockstep {
    left: usize,
}

impl App<EchoClient> for Lockstep {
    fn on_event(&mut self, c: &mut EchoClient, _: Instant, e: ClientEvent) -> std::io::Result<()> {
        if matches!(e, ClientEvent::Closed) {
            return Ok(());
        }
        let r = if self.left > 0 {
            self.left -= 1;
            c.send(vec![7u8; MSG])
        } else if c.role().in_flight() == 0 {
            c.close()
        } else {
            Ok(())
        };
        r.map_err(std::io::Error::other)
    }
}

fn machine_client(addr: SocketAddr, rounds: usize) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    let mut client = EchoClient::new(
        Client::new(EchoConfig::default()),
        SessionLimits::default(),
        Instant::now(),
    );
    blocking::run_stream(&mut client, &mut s, &mut Lockstep { left: rounds }).unwrap();
}

/// Runs `conns` clients at once; returns round trips per second.
fn measure(conns: usize, rounds: usize, client: fn(SocketAddr, usize), addr: SocketAddr) -> f64 {
    let start = Arc::new(Barrier::new(conns + 1));
    let handles: Vec<_> = (0..conns)
        .map(|_| {
            let start = start.clone();
            thread::spawn(move || {
                start.wait();
                client(addr, rounds)
            })
        })
        .collect();
    start.wait();
    let t = Instant::now();
    for h in handles {
        h.join().unwrap();
    }
    (conns * rounds) as f64 / t.elapsed().as_secs_f64()
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is not supported here.
    let conns = env("CONNS", 50);
    let rounds = env("ROUNDS", 2000);
    println!("echo round trips, {conns} connections x {rounds} rounds of {MSG}-byte messages");
    let base = measure(conns, rounds, baseline_client, baseline_server());
    println!("baseline std::net thread-per-connection: {base:>10.0} rt/s");
    for (name, addr) in [("blocking", blocking_server()), ("tokio", tokio_server())] {
        let rate = measure(conns, rounds, machine_client, addr);
        println!(
            "echoxfer {name:<8} (machines both ends): {rate:>10.0} rt/s  ratio {:.2}",
            rate / base
        );
    }
}
