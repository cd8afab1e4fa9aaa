//! Echo over real loopback sockets, for both drivers. Every listener binds
//! port 0, every wait is bounded, every server is stopped at the end.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use echoxfer::codec::{Frame, FrameDecoder, Protocol};
use echoxfer::driver::{blocking, App, Ignore};
use echoxfer::echo::{
    Client, ClientEvent, ClientRole, PingEvent, Server, ServerRole, UdpEchoServer, UdpPing,
};
use echoxfer::{EchoConfig, ErrorCode, SessionLimits, UdpConfig};

const BOUND: Duration = Duration::from_secs(60);

fn config() -> SessionLimits {
    SessionLimits {
        idle_timeout: BOUND,
        ..SessionLimits::default()
    }
}

#[derive(Clone, Copy, Debug)]
enum Driver {
    Blocking,
    Tokio,
}

/// A running echo server; stopping it returns its session counts.
struct RunningServer {
    addr: SocketAddr,
    stop: Box<dyn FnOnce() -> echoxfer::driver::blocking::ServeReport>,
}

fn make(now: Instant) -> (Server, Ignore) {
    (
        Server::new(
            ServerRole::new("hello", EchoConfig::default()),
            config(),
            now,
        ),
        Ignore,
    )
}

fn start_server(driver: Driver) -> RunningServer {
    match driver {
        Driver::Blocking => {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let shutdown = blocking::Shutdown::new();
            let trigger = shutdown.clone();
            let handle = thread::spawn(move || {
                blocking::serve(listener, 1024, Duration::from_secs(5), &shutdown, make).unwrap()
            });
            RunningServer {
                addr,
                stop: Box::new(move || {
                    trigger.trigger();
                    handle.join().unwrap()
                }),
            }
        }
        Driver::Tokio => {
            let rt = tokio::runtime::Runtime::new().unwrap();
            let listener = rt
                .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
                .unwrap();
            let addr = listener.local_addr().unwrap();
            let tx = echoxfer::driver::Shutdown::new();
            let rx = tx.clone();
            let handle = thread::spawn(move || {
                rt.block_on(echoxfer::driver::async_tokio::serve(
                    listener,
                    1024,
                    Duration::from_secs(5),
                    rx,
                    make,
                ))
                .unwrap()
            });
            RunningServer {
                addr,
                stop: Box::new(move || {
                    tx.trigger();
                    handle.join().unwrap()
                }),
            }
        }
    }
}

/// Sends `count` messages one after another, each after the previous reply.
struct Pinger {
    sent: usize,
    count: usize,
    replies: usize,
    greeted: bool,
}

fn msg(client: usize, i: usize) -> Bytes {
    // Every fourth message is a word the seed protocols treat as a command.
    if i % 4 == 0 {
        Bytes::from_static(b"exit")
    } else {
        Bytes::from(format!("client {client} message {i} {}", "x".repeat(40)))
    }
}

impl App<Client> for Pinger {
    fn on_event(&mut self, c: &mut Client, _: Instant, e: ClientEvent) -> std::io::Result<()> {
        match e {
            ClientEvent::Greeted(_) => self.greeted = true,
            ClientEvent::Reply(_) => self.replies += 1,
            ClientEvent::Closed => return Ok(()),
        }
        let result = if self.sent < self.count {
            self.sent += 1;
            c.send(msg(0, self.sent))
        } else if self.replies == self.count {
            c.close()
        } else {
            Ok(())
        };
        result.map_err(std::io::Error::other)
    }
}

fn run_client(addr: SocketAddr, count: usize) -> Pinger {
    let mut stream = TcpStream::connect(addr).unwrap();
    let mut client = Client::new(
        ClientRole::new(EchoConfig::default()),
        config(),
        Instant::now(),
    );
    let mut app = Pinger {
        sent: 0,
        count,
        replies: 0,
        greeted: false,
    };
    blocking::run_stream(&mut client, &mut stream, &mut app).expect("session ends cleanly");
    app
}

fn fifty_clients_each_echo_a_hundred_messages(driver: Driver) {
    let server = start_server(driver);
    let addr = server.addr;
    let clients: Vec<_> = (0..50)
        .map(|_| thread::spawn(move || run_client(addr, 100)))
        .collect();
    for c in clients {
        let app = c.join().unwrap();
        assert!(app.greeted);
        assert_eq!(app.replies, 100);
    }
    let report = (server.stop)();
    assert_eq!(report.ok, 50, "{report:?}");
}

#[test]
fn blocking_fifty_concurrent_clients_each_get_a_hundred_messages_back_intact() {
    fifty_clients_each_echo_a_hundred_messages(Driver::Blocking);
}

#[test]
fn tokio_fifty_concurrent_clients_each_get_a_hundred_messages_back_intact() {
    fifty_clients_each_echo_a_hundred_messages(Driver::Tokio);
}

fn two_hundred_simultaneous_clients_are_all_greeted(driver: Driver) {
    let server = start_server(driver);
    let addr = server.addr;
    let barrier = Arc::new(Barrier::new(200));
    let clients: Vec<_> = (0..200)
        .map(|_| {
            let barrier = barrier.clone();
            thread::spawn(move || {
                barrier.wait();
                run_client(addr, 0).greeted
            })
        })
        .collect();
    let greeted = clients
        .into_iter()
        .map(|c| c.join().unwrap())
        .filter(|g| *g)
        .count();
    assert_eq!(greeted, 200);
    (server.stop)();
}

#[test]
fn blocking_two_hundred_clients_connecting_at_once_are_all_greeted() {
    two_hundred_simultaneous_clients_are_all_greeted(Driver::Blocking);
}

#[test]
fn tokio_two_hundred_clients_connecting_at_once_are_all_greeted() {
    two_hundred_simultaneous_clients_are_all_greeted(Driver::Tokio);
}

/// Reads frames until the server closes, within the bound.
fn read_frames_until_eof(stream: &mut TcpStream) -> Vec<Frame> {
    stream.set_read_timeout(Some(BOUND)).unwrap();
    let mut decoder = FrameDecoder::new(Protocol::Echo, 1 << 20);
    let mut buf = BytesMut::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream
            .read(&mut chunk)
            .expect("server answers within the bound");
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let mut frames = Vec::new();
    while let Some(f) = decoder.decode(&mut buf).unwrap() {
        frames.push(f);
    }
    frames
}

fn oversized_frame_gets_a_typed_error_and_others_are_still_served(driver: Driver) {
    let server = start_server(driver);
    let mut bad = TcpStream::connect(server.addr).unwrap();
    bad.write_all(&Protocol::Echo.preamble()).unwrap();
    bad.write_all(&[0x11, 0xff, 0xff, 0xff, 0xff]).unwrap();
    let frames = read_frames_until_eof(&mut bad);
    assert!(
        matches!(frames.first(), Some(Frame::Greeting(_))),
        "{frames:?}"
    );
    match frames.last() {
        Some(Frame::Error { code, message }) => {
            assert_eq!(*code, ErrorCode::Protocol);
            assert!(
                String::from_utf8_lossy(message).contains("exceeds the limit"),
                "{message:?}"
            );
        }
        other => panic!("expected an Error frame, got {other:?}"),
    }
    let app = run_client(server.addr, 10);
    assert_eq!(app.replies, 10);
    let report = (server.stop)();
    assert_eq!((report.ok, report.failed), (1, 1));
}

#[test]
fn blocking_oversized_frame_gets_a_typed_error_and_the_server_keeps_serving() {
    oversized_frame_gets_a_typed_error_and_others_are_still_served(Driver::Blocking);
}

#[test]
fn tokio_oversized_frame_gets_a_typed_error_and_the_server_keeps_serving() {
    oversized_frame_gets_a_typed_error_and_others_are_still_served(Driver::Tokio);
}

fn ping_stats(driver: Driver) -> echoxfer::echo::PingStats {
    let stop = blocking::Shutdown::new();
    let (server_addr, handle): (SocketAddr, thread::JoinHandle<()>) = match driver {
        Driver::Blocking => {
            let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
            let addr = socket.local_addr().unwrap();
            let stop = stop.clone();
            (
                addr,
                thread::spawn(move || {
                    let mut server = UdpEchoServer::new(UdpConfig::default());
                    blocking::run_datagram(&mut server, &socket, &mut Ignore, &stop).unwrap();
                }),
            )
        }
        Driver::Tokio => {
            let rt = tokio::runtime::Runtime::new().unwrap();
            let socket = rt
                .block_on(tokio::net::UdpSocket::bind("127.0.0.1:0"))
                .unwrap();
            let addr = socket.local_addr().unwrap();
            let stop = stop.clone();
            (
                addr,
                thread::spawn(move || {
                    let mut server = UdpEchoServer::new(UdpConfig::default());
                    let stopped = async move {
                        while !stop.is_triggered() {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    };
                    rt.block_on(echoxfer::driver::async_tokio::run_datagram(
                        &mut server,
                        &socket,
                        &mut Ignore,
                        stopped,
                    ))
                    .unwrap();
                }),
            )
        }
    };
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let cfg = UdpConfig {
        // Generous per-attempt wait: a loaded machine must not look lossy.
        probe_timeout: Duration::from_secs(5),
        probe_retries: 3,
        ..UdpConfig::default()
    };
    let mut ping = UdpPing::new(cfg, Instant::now(), server_addr, 20, 64);
    let mut stats = None;
    let mut app = |_: &mut UdpPing, _: Instant, e: PingEvent| {
        if let PingEvent::Finished(s) = e {
            stats = Some(s);
        }
        Ok(())
    };
    blocking::run_datagram(&mut ping, &socket, &mut app, &blocking::Shutdown::new()).unwrap();
    stop.trigger();
    handle.join().unwrap();
    stats.expect("ping finishes")
}

#[test]
fn blocking_udp_ping_against_the_udp_server_reports_zero_loss() {
    let stats = ping_stats(Driver::Blocking);
    assert_eq!((stats.probes, stats.received, stats.lost()), (20, 20, 0));
    assert!(stats.rtt_min <= stats.rtt_avg() && stats.rtt_avg() <= stats.rtt_max);
}

#[test]
fn tokio_udp_ping_against_the_udp_server_reports_zero_loss() {
    let stats = ping_stats(Driver::Tokio);
    assert_eq!((stats.probes, stats.received, stats.lost()), (20, 20, 0));
}

#[test]
fn a_failing_server_app_aborts_the_session_and_the_client_is_told_why() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut machine = Server::new(
            ServerRole::new("hello", EchoConfig::default()),
            config(),
            Instant::now(),
        );
        let mut app =
            |_: &mut Server, _: Instant, _: echoxfer::echo::ServerEvent| -> std::io::Result<()> {
                Err(std::io::Error::other("disk on fire"))
            };
        blocking::run_stream(&mut machine, &mut stream, &mut app)
    });
    let mut stream = TcpStream::connect(addr).unwrap();
    let mut client = Client::new(
        ClientRole::new(EchoConfig::default()),
        config(),
        Instant::now(),
    );
    client.send(&b"hi"[..]).unwrap();
    let err = blocking::run_stream(&mut client, &mut stream, &mut Ignore).unwrap_err();
    match err {
        echoxfer::driver::DriverError::Machine(echoxfer::Error::PeerFailed { code, message }) => {
            assert_eq!(code, ErrorCode::Internal);
            assert!(message.contains("disk on fire"), "{message}");
        }
        other => panic!("expected the peer's reason, got {other}"),
    }
    let server_err = server.join().unwrap().unwrap_err();
    assert!(
        server_err.to_string().contains("disk on fire"),
        "{server_err}"
    );
}

/// A client that floods echo messages and never reads a reply. It keeps the
/// connection open (a closed one would fail the server's writes at once)
/// until the returned sender is dropped.
fn flood_without_reading(addr: SocketAddr) -> std::sync::mpsc::Sender<()> {
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let mut stream = TcpStream::connect(addr).unwrap();
    thread::spawn(move || {
        stream
            .set_write_timeout(Some(Duration::from_secs(1)))
            .unwrap();
        let message = Frame::Message(Bytes::from(vec![b'x'; 60_000])).encode_to_vec();
        let mut wire = Protocol::Echo.preamble().to_vec();
        // Write until the server stops reading: its own writes are stuck.
        while stream.write_all(&wire).is_ok() {
            wire.clone_from(&message);
        }
        let _ = stopped.recv_timeout(BOUND);
    });
    stop
}

/// The idle timeout of [`serve_one`]'s sessions, which also bounds how long
/// a write may make no progress: long enough that the time the kernel
/// still takes bytes after the peer stopped reading (while its buffers
/// fill) is a small part of it.
const STALL: Duration = Duration::from_secs(2);

/// An echo server whose writes give up after `write_timeout` without
/// progress while its idle timer (input) runs far longer, so only the
/// driver's write bound can end a session whose peer stopped reading.
struct WriteBound {
    inner: Server,
    write_timeout: Duration,
}

impl echoxfer::Machine for WriteBound {
    type Transmit = Bytes;
    type Event = echoxfer::echo::ServerEvent;

    fn handle_timeout(&mut self, now: Instant) {
        self.inner.handle_timeout(now)
    }

    fn poll_output(&mut self) -> echoxfer::Output<Bytes, Self::Event> {
        self.inner.poll_output()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.inner.poll_timeout()
    }
}

impl echoxfer::StreamMachine for WriteBound {
    fn input_buffer(&mut self, max: usize) -> &mut [u8] {
        self.inner.input_buffer(max)
    }

    fn commit_input(&mut self, now: Instant, n: usize) -> Result<(), echoxfer::Error> {
        self.inner.commit_input(now, n)
    }

    fn handle_eof(&mut self, now: Instant) {
        self.inner.handle_eof(now)
    }

    fn abort(&mut self, reason: String) {
        self.inner.abort(reason)
    }

    fn input_room(&self) -> usize {
        self.inner.input_room()
    }

    fn write_timeout(&self) -> Option<Duration> {
        Some(self.write_timeout)
    }
}

/// Runs one echo server session with a short idle timeout on the first
/// connection to `listener`, and returns how it ended.
fn serve_one(driver: Driver, listener: TcpListener) -> Result<(), echoxfer::driver::DriverError> {
    let config = SessionLimits {
        idle_timeout: STALL,
        ..SessionLimits::default()
    };
    let stream = listener.accept().unwrap().0;
    let server = Server::new(
        ServerRole::new("hello", EchoConfig::default()),
        config,
        Instant::now(),
    );
    run_one(driver, stream, server)
}

fn run_one<M: echoxfer::StreamMachine + 'static>(
    driver: Driver,
    stream: TcpStream,
    mut server: M,
) -> Result<(), echoxfer::driver::DriverError> {
    match driver {
        Driver::Blocking => blocking::run_stream(&mut server, &mut { stream }, &mut Ignore),
        Driver::Tokio => {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async {
                stream.set_nonblocking(true).unwrap();
                let mut stream = tokio::net::TcpStream::from_std(stream).unwrap();
                echoxfer::driver::async_tokio::run_stream(&mut server, &mut stream, &mut Ignore)
                    .await
            })
        }
    }
}

/// A session whose peer stops reading must end about one write timeout
/// after the peer took its last byte, not two or three: a write that took
/// some bytes and then waited out the socket's timeout returns a partial
/// count, and the next write must not wait a whole timeout again. The bound
/// leaves a generous margin for a loaded machine, below twice the timeout.
fn assert_dropped_within_about_one_timeout(started: Instant, timeout: Duration) {
    let took = started.elapsed();
    assert!(
        took < timeout * 8 / 5,
        "the stalled client was dropped after {took:?}; the timeout is {timeout:?}"
    );
}

fn a_client_that_never_reads_is_dropped_after_the_idle_timeout(driver: Driver) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let stop_flood = flood_without_reading(listener.local_addr().unwrap());
    let (done, ended) = std::sync::mpsc::channel();
    let started = Instant::now();
    thread::spawn(move || done.send(serve_one(driver, listener)));
    let result = ended
        .recv_timeout(BOUND)
        .expect("the server gave up on the stalled client within the bound");
    assert_dropped_within_about_one_timeout(started, STALL);
    drop(stop_flood);
    // Either the write itself timed out, or it crawled on past the idle
    // deadline and the machine's timer ended the session: both are timeouts.
    use echoxfer::driver::DriverError;
    match result {
        Err(DriverError::StalledPeer { waited }) => assert!(waited >= STALL, "{waited:?}"),
        Err(DriverError::Machine(echoxfer::Error::TimedOut(_))) => {}
        other => panic!("expected a timeout, got {other:?}"),
    }
}

#[test]
fn blocking_a_client_that_never_reads_is_dropped_after_the_idle_timeout() {
    a_client_that_never_reads_is_dropped_after_the_idle_timeout(Driver::Blocking);
}

#[test]
fn tokio_a_client_that_never_reads_is_dropped_after_the_idle_timeout() {
    a_client_that_never_reads_is_dropped_after_the_idle_timeout(Driver::Tokio);
}

/// As above, with the idle timer out of the way: only the driver's bound on
/// writes without progress can end the session.
fn a_client_that_never_reads_is_dropped_after_one_write_timeout(driver: Driver) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let stop_flood = flood_without_reading(listener.local_addr().unwrap());
    let (done, ended) = std::sync::mpsc::channel();
    let started = Instant::now();
    thread::spawn(move || {
        let stream = listener.accept().unwrap().0;
        let config = SessionLimits {
            idle_timeout: BOUND,
            ..SessionLimits::default()
        };
        let inner = Server::new(
            ServerRole::new("hello", EchoConfig::default()),
            config,
            Instant::now(),
        );
        let server = WriteBound {
            inner,
            write_timeout: STALL,
        };
        done.send(run_one(driver, stream, server))
    });
    let result = ended
        .recv_timeout(BOUND)
        .expect("the server gave up on the stalled client within the bound");
    assert_dropped_within_about_one_timeout(started, STALL);
    drop(stop_flood);
    match result {
        Err(echoxfer::driver::DriverError::StalledPeer { waited }) => {
            assert!(waited >= STALL, "{waited:?}")
        }
        other => panic!("expected the write to time out, got {other:?}"),
    }
}

#[test]
fn blocking_a_client_that_never_reads_is_dropped_after_one_write_timeout_not_two() {
    a_client_that_never_reads_is_dropped_after_one_write_timeout(Driver::Blocking);
}

#[test]
fn tokio_a_client_that_never_reads_is_dropped_after_one_write_timeout_not_two() {
    a_client_that_never_reads_is_dropped_after_one_write_timeout(Driver::Tokio);
}

/// An echo client that keeps as many large messages in flight as its
/// machine allows, and checks every reply.
struct Pipeliner {
    sent: usize,
    replies: usize,
    count: usize,
}

impl Pipeliner {
    fn message(i: usize) -> Bytes {
        Bytes::from(vec![(i % 251) as u8; 60_000])
    }

    fn fill(&mut self, c: &mut Client) -> std::io::Result<()> {
        while self.sent < self.count {
            match c.send(Self::message(self.sent)) {
                Ok(()) => self.sent += 1,
                Err(echoxfer::Error::Local(echoxfer::UsageError::WouldBlock)) => return Ok(()),
                Err(e) => return Err(std::io::Error::other(e)),
            }
        }
        if self.replies == self.count {
            c.close().map_err(std::io::Error::other)?;
        }
        Ok(())
    }
}

impl App<Client> for Pipeliner {
    fn on_event(&mut self, c: &mut Client, _: Instant, e: ClientEvent) -> std::io::Result<()> {
        match e {
            ClientEvent::Reply(r) => {
                assert_eq!(r, Self::message(self.replies), "reply {}", self.replies);
                self.replies += 1;
            }
            ClientEvent::Closed => return Ok(()),
            ClientEvent::Greeted(_) => {}
        }
        self.fill(c)
    }
}

/// Both ends blocking and half-duplex: a client pipelining far more than
/// the socket buffers hold would wait on a server that waits on it, but the
/// echo window keeps what is in flight below what the buffers take.
fn pipelined_large_messages_all_come_back(driver: Driver) {
    let server = start_server(driver);
    let mut stream = TcpStream::connect(server.addr).unwrap();
    let mut client = Client::new(
        ClientRole::new(EchoConfig::default()),
        config(),
        Instant::now(),
    );
    let mut app = Pipeliner {
        sent: 0,
        replies: 0,
        count: 300,
    };
    app.fill(&mut client).unwrap();
    blocking::run_stream(&mut client, &mut stream, &mut app).expect("session ends cleanly");
    assert_eq!(app.replies, 300);
    let report = (server.stop)();
    assert_eq!((report.ok, report.failed), (1, 0));
}

#[test]
fn blocking_pipelined_large_messages_all_come_back_without_deadlock() {
    pipelined_large_messages_all_come_back(Driver::Blocking);
}

#[test]
fn tokio_pipelined_large_messages_all_come_back_without_deadlock() {
    pipelined_large_messages_all_come_back(Driver::Tokio);
}
