//! Echo round trips per second: echoxfer's native echo on the blocking and
//! tokio drivers against a minimal thread-per-connection `std::net` echo,
//! each driven by the same plain `std::net` client loop (for echoxfer it
//! speaks the framed protocol: preamble, greeting, then a `Message` frame
//! out and its echo back per round trip), interleaved in one run; and once
//! more with echoxfer's own client machine against the blocking server,
//! which shows what the client machine costs; and a minimal tokio
//! read/write loop (a task per connection, the std client), which shows
//! how much of the tokio server's cost is tokio's own. Not criterion: a run is
//! `CONNS` connections at once, each sending a 64-byte message and waiting
//! for it back `TRIPS` times, timed from a barrier that starts them all
//! until the last finishes; the servers are started once and kept.
//!
//! Each round runs the five once, in rotating order (`sync` before each
//! run, as the other benches do). The ratio of a server to the std one is
//! its round trips per second over the std server's (the std server's time
//! over its time) in the same round; the report gives the median of the
//! per-round ratios with min and max, the median over undisturbed rounds
//! and the per-round list, for each against std, and for tokio / blocking,
//! echoxfer tokio / the tokio loop and the client machine's pair. See `benches/common/rounds.rs` for the order and the
//! "disturbed" rule. Each client waits for every reply before it sends
//! the next (and echoxfer's closes only with none in flight); a failed
//! session panics. Asserts nothing about speed.
//!
//! `cargo bench --bench echo_rtt` (env: `CONNS`, default 50; `TRIPS` per
//! connection, default 2000; `ROUNDS`, default 5; `WARMUP` rounds,
//! default 1; `ONLY=<index>` runs one contender alone `ROUNDS` times, for
//! a profiler).
//!
//! `cargo test` does not build it; `cargo test --benches` (or
//! `--all-targets`) builds it and it returns at once: it runs only when
//! given `--bench`, as `cargo bench` does.

#[path = "common/rounds.rs"]
mod rounds;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use echoxfer::codec::{Frame, Protocol, HEADER_LEN, PREAMBLE_LEN};
use echoxfer::driver::{blocking, App, Ignore};
use echoxfer::echo::{Client, ClientEvent, ClientRole, Server, ServerRole};
use echoxfer::{EchoConfig, SessionLimits};
use rounds::{contender, env, Plan, Sample};

const MSG: usize = 64;

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

fn baseline_client(addr: SocketAddr, trips: u64) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    let msg = [7u8; MSG];
    let mut back = [0u8; MSG];
    for _ in 0..trips {
        s.write_all(&msg).unwrap();
        s.read_exact(&mut back).unwrap();
    }
}

/// The same plain `std::net` loop as [`baseline_client`], speaking the
/// framed protocol: the echoxfer servers then face the very load generator
/// the std server does, so their ratios measure the servers alone.
fn framed_client(addr: SocketAddr, trips: u64) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    s.write_all(&Protocol::Echo.preamble()).unwrap();
    // The server's preamble, then its greeting frame.
    let mut head = [0u8; PREAMBLE_LEN + HEADER_LEN];
    s.read_exact(&mut head).unwrap();
    let len = u32::from_be_bytes(head[PREAMBLE_LEN + 1..].try_into().unwrap());
    let mut greeting = vec![0u8; len as usize];
    s.read_exact(&mut greeting).unwrap();
    let msg = Frame::Message(vec![7u8; MSG].into()).encode_to_vec();
    let mut back = vec![0u8; msg.len()];
    for _ in 0..trips {
        s.write_all(&msg).unwrap();
        s.read_exact(&mut back).unwrap();
    }
    assert_eq!(back, msg, "the reply echoes the message");
    s.write_all(&Frame::Exit.encode_to_vec()).unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    assert_eq!(rest, Frame::Bye.encode_to_vec(), "a clean end");
}

fn make(now: Instant) -> (Server, Ignore) {
    (
        Server::new(
            ServerRole::new("bench", EchoConfig::default()),
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

/// Starts a multi-threaded tokio runtime on a thread of its own, running
/// `serve` on a listener bound to loopback; returns the listener's address.
fn on_tokio<F, Fut>(serve: F) -> SocketAddr
where
    F: FnOnce(tokio::net::TcpListener) -> Fut + Send + 'static,
    Fut: std::future::Future,
{
    let rt = tokio::runtime::Runtime::new().unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        rt.block_on(serve(listener));
    });
    addr
}

fn tokio_server() -> SocketAddr {
    on_tokio(|listener| {
        echoxfer::driver::async_tokio::serve(
            listener,
            4096,
            Duration::from_secs(1),
            echoxfer::driver::Shutdown::new(),
            make,
        )
    })
}

/// tokio's own floor: read what comes, write it back, a task per
/// connection on the same multi-threaded runtime the echoxfer tokio server
/// runs on. What echoxfer's tokio server costs beyond tokio shows against
/// this one.
fn tokio_minimal_server() -> SocketAddr {
    on_tokio(|listener| async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            s.set_nodelay(true).unwrap();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = s.read(&mut buf).await {
                    if s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    })
}

/// One message in flight at a time, the next sent on each reply.
struct Lockstep {
    left: u64,
}

impl App<Client> for Lockstep {
    fn on_event(&mut self, c: &mut Client, _: Instant, e: ClientEvent) -> std::io::Result<()> {
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

fn machine_client(addr: SocketAddr, trips: u64) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    let mut client = Client::new(
        ClientRole::new(EchoConfig::default()),
        SessionLimits::default(),
        Instant::now(),
    );
    blocking::run_stream(&mut client, &mut s, &mut Lockstep { left: trips }).unwrap();
}

/// Runs `conns` clients at once, `trips` round trips each; returns the
/// time from their common start until the last is done.
fn measure(conns: u64, trips: u64, client: fn(SocketAddr, u64), addr: SocketAddr) -> Duration {
    let start = Arc::new(Barrier::new(conns as usize + 1));
    let handles: Vec<_> = (0..conns)
        .map(|_| {
            let start = start.clone();
            thread::spawn(move || {
                start.wait();
                client(addr, trips)
            })
        })
        .collect();
    start.wait();
    let t = Instant::now();
    for h in handles {
        h.join().unwrap();
    }
    t.elapsed()
}

fn main() {
    if rounds::not_benching() {
        return;
    }
    // `cargo bench` passes `--bench`; a filter argument is not supported here.
    let conns = env("CONNS", 50);
    let trips = env("TRIPS", 2000);
    let total = (conns * trips) as f64;
    let plan = Plan::from_env(5, None, move |t| {
        format!("{:.0} rt/s", total / t.as_secs_f64())
    });
    println!(
        "echo round trips, {conns} connections x {trips} round trips of {MSG}-byte messages, {} rounds after {} warm-up",
        plan.rounds, plan.warmup
    );
    let (base, block, tokio) = (baseline_server(), blocking_server(), tokio_server());
    let tokio_floor = tokio_minimal_server();
    let mut contenders = vec![
        contender("std::net thread-per-connection", || {
            Sample::time(measure(conns, trips, baseline_client, base))
        }),
        contender("echoxfer blocking", || {
            Sample::time(measure(conns, trips, framed_client, block))
        }),
        contender("echoxfer tokio", || {
            Sample::time(measure(conns, trips, framed_client, tokio))
        }),
        // echoxfer at both ends: the client machine's own cost shows here.
        contender("echoxfer client + blocking", || {
            Sample::time(measure(conns, trips, machine_client, block))
        }),
        contender("tokio read/write loop", || {
            Sample::time(measure(conns, trips, baseline_client, tokio_floor))
        }),
    ];
    if rounds::only(&plan, &mut contenders) {
        return;
    }
    let runs = rounds::run(&plan, &mut contenders);
    rounds::report(&plan, &runs, &[(2, 1), (2, 4), (3, 1)]);
}
