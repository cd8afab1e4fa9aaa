//! The secure channel on loopback TCP with both real drivers: files with
//! the real file layer, echo, a wrong code failing both sides, and a
//! server refusing a guesser that resets while serving a killed sender's
//! resume at once. Every
//! wait is bounded (machine timeouts, joins under a timeout); nothing sleeps.
#![cfg(unix)]

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use echoxfer::driver::blocking::ServeReport;
use echoxfer::driver::listen::{self, Limits};
use echoxfer::driver::{blocking, DriverError, Ignore};
use echoxfer::echo::{Client, ClientEvent, EchoClient, EchoServer, Server};
use echoxfer::files::{ReceiverApp, SenderApp, Store};
use echoxfer::secure::{Secure, SecureConfig, CONFIRM_LEN, HELLO_LEN};
use echoxfer::testing::MemSender;
use echoxfer::xfer::{Receiver, ReceiverRole, Sender};
use echoxfer::{EchoConfig, Error, Machine, Output, SecureError, SessionLimits, TransferConfig};
use socket2::{Domain, SockRef, Socket, Type};

mod common;
use common::files::{assert_received, dirs, entries, sources};
use common::process::BOUND;

const CODE: &[u8] = b"3-amber-lighthouse";

fn config() -> SessionLimits {
    SessionLimits {
        idle_timeout: Duration::from_secs(10),
        ..SessionLimits::default()
    }
}

fn seed() -> [u8; 32] {
    // Tests only: a CLI draws these from the OS.
    let t = Instant::now().elapsed().subsec_nanos().to_le_bytes();
    let mut s = [9u8; 32];
    s[..4].copy_from_slice(&t);
    s
}

fn secure_receiver(store: &Store, code: &[u8]) -> (Secure<Receiver>, ReceiverApp) {
    let now = Instant::now();
    let m = Receiver::new(ReceiverRole::new(TransferConfig::default()), config(), now);
    let m = Secure::server(m, code, SecureConfig::default(), now, seed());
    (m, ReceiverApp::new(store.clone()))
}

fn secure_sender(paths: &[PathBuf], code: &[u8]) -> (Secure<Sender>, SenderApp) {
    let now = Instant::now();
    let app = SenderApp::open(paths, &TransferConfig::default().path_limits()).unwrap();
    let m = Sender::new(app.role(TransferConfig::default()), config(), now);
    (
        Secure::client(m, code, SecureConfig::default(), now, seed()),
        app,
    )
}

fn is_wrong_code(r: &Result<(), DriverError>) -> bool {
    matches!(
        r,
        Err(DriverError::Machine(Error::Secure(SecureError::WrongCode)))
    )
}

/// Receives one secure session on `listener` in a thread.
fn receive_one(
    listener: &TcpListener,
    store: &Store,
    code: &'static [u8],
) -> thread::JoinHandle<Result<(), DriverError>> {
    let listener = listener.try_clone().unwrap();
    let store = store.clone();
    thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let (mut m, mut app) = secure_receiver(&store, code);
        blocking::run_stream(&mut m, &mut stream, &mut app)
    })
}

#[test]
fn blocking_secure_files_arrive_and_a_wrong_code_fails_both_sides_with_nothing_saved() {
    let d = dirs();
    let paths = sources(&d, &[3, 0, 700_000, 65_536]);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let store = Store::new(&d.dst, false).unwrap();

    let server = receive_one(&listener, &store, b"3-amber-lighthouze");
    let mut stream = TcpStream::connect(addr).unwrap();
    let (mut m, mut app) = secure_sender(&paths, CODE);
    let sent = blocking::run_stream(&mut m, &mut stream, &mut app);
    let received = server.join().unwrap();
    assert!(is_wrong_code(&sent), "{sent:?}");
    assert!(is_wrong_code(&received), "{received:?}");
    assert!(entries(&d.dst).is_empty(), "{:?}", entries(&d.dst));

    let server = receive_one(&listener, &store, CODE);
    let mut stream = TcpStream::connect(addr).unwrap();
    let (mut m, mut app) = secure_sender(&paths, CODE);
    blocking::run_stream(&mut m, &mut stream, &mut app).unwrap();
    server.join().unwrap().unwrap();
    assert_received(&d, &paths);
}

#[test]
fn blocking_secure_echo_round_trips() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let now = Instant::now();
        let m = EchoServer::new(Server::new("hi", EchoConfig::default()), config(), now);
        let mut m = Secure::server(m, CODE, SecureConfig::default(), now, seed());
        blocking::run_stream(&mut m, &mut stream, &mut Ignore)
    });
    let now = Instant::now();
    let mut client = EchoClient::new(Client::new(EchoConfig::default()), config(), now);
    client.send(&b"secret words"[..]).unwrap();
    client.close().unwrap();
    let mut m = Secure::client(client, CODE, SecureConfig::default(), now, seed());
    let mut seen = Vec::new();
    let mut app = |_: &mut Secure<EchoClient>, _: Instant, e: ClientEvent| {
        seen.push(e);
        Ok(())
    };
    let mut stream = TcpStream::connect(addr).unwrap();
    blocking::run_stream(&mut m, &mut stream, &mut app).unwrap();
    server.join().unwrap().unwrap();
    assert_eq!(
        seen,
        [
            ClientEvent::Greeted(Bytes::from_static(b"hi")),
            ClientEvent::Reply(Bytes::from_static(b"secret words")),
            ClientEvent::Closed,
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_secure_files_arrive_and_a_wrong_code_fails_both_sides_with_nothing_saved() {
    let d = dirs();
    let paths = sources(&d, &[3, 0, 700_000, 65_536]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let store = Store::new(&d.dst, false).unwrap();
    for (code, good) in [(&b"3-amber-lighthousf"[..], false), (CODE, true)] {
        let server = async {
            let (mut stream, _) = listener.accept().await.unwrap();
            let (mut m, mut app) = secure_receiver(&store, code);
            echoxfer::driver::tokio::run_stream(&mut m, &mut stream, &mut app).await
        };
        let client = async {
            let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            let (mut m, mut app) = secure_sender(&paths, CODE);
            echoxfer::driver::tokio::run_stream(&mut m, &mut stream, &mut app).await
        };
        let both = async { tokio::join!(server, client) };
        let (received, sent) = tokio::time::timeout(Duration::from_secs(60), both)
            .await
            .expect("bounded");
        if good {
            received.unwrap();
            sent.unwrap();
            assert_received(&d, &paths);
        } else {
            assert!(is_wrong_code(&received), "{received:?}");
            assert!(is_wrong_code(&sent), "{sent:?}");
            assert!(entries(&d.dst).is_empty(), "{:?}", entries(&d.dst));
        }
    }
}

// ------------------------------------------------ guessers that reset

/// Sources other than 127.0.0.1 need Linux's loopback, which routes all of
/// 127.0.0.0/8.
#[cfg(target_os = "linux")]
mod guessers {
    use super::*;

    #[derive(Clone, Copy, Debug)]
    enum Driver {
        Blocking,
        Tokio,
    }

    /// A long-running secure receiver on loopback: one session at a time, so
    /// a connection is accepted only once the previous session's end was
    /// counted (no race between a reset and the next attempt), and a failed
    /// guess refuses its source for a minute. Stopping it returns its report.
    fn serve_secure(driver: Driver, store: Store) -> (SocketAddr, impl FnOnce() -> ServeReport) {
        let listener = listen::bind("127.0.0.1:0".parse().unwrap(), 16).unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = Limits {
            max_connections: 1,
            guess_delay: Duration::from_secs(60),
            max_guess_delay: Duration::from_secs(60),
            ..Limits::default()
        };
        let make = move |_: Instant| secure_receiver(&store, CODE);
        let grace = Duration::from_secs(5);
        let shutdown = blocking::Shutdown::new();
        let trigger = shutdown.clone();
        let server = thread::spawn(move || match driver {
            Driver::Blocking => blocking::serve(listener, limits, grace, &shutdown, make).unwrap(),
            Driver::Tokio => {
                let rt = tokio::runtime::Runtime::new().unwrap();
                rt.block_on(async {
                    listener.set_nonblocking(true).unwrap();
                    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                    echoxfer::driver::tokio::serve(listener, limits, grace, shutdown, make).await
                })
                .unwrap()
            }
        });
        let stop = move || {
            trigger.trigger();
            server.join().unwrap()
        };
        (addr, stop)
    }

    /// Connects from the loopback address `source` (Linux routes all of
    /// 127.0.0.0/8 to loopback: each is a source of its own).
    fn connect_from(source: [u8; 4], addr: SocketAddr) -> TcpStream {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        socket.bind(&SocketAddr::from((source, 0)).into()).unwrap();
        socket.connect_timeout(&addr.into(), BOUND).unwrap();
        let stream: TcpStream = socket.into();
        stream.set_read_timeout(Some(BOUND)).unwrap();
        stream
    }

    /// Closes `stream` with a reset (RST), as a killed or hostile peer may.
    fn reset(stream: TcpStream) {
        SockRef::from(&stream)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(stream);
    }

    /// A guesser: sends a hello under a wrong code, reads the server's hello
    /// and key confirmation (with which it could check its guess offline),
    /// and resets instead of answering.
    fn guess_and_reset(source: [u8; 4], addr: SocketAddr) {
        let mut stream = connect_from(source, addr);
        let now = Instant::now();
        let tx = MemSender::new([]);
        let inner = Sender::new(tx.role(TransferConfig::default()), config(), now);
        let mut guess = Secure::client(
            inner,
            b"9-wrong-guess",
            SecureConfig::default(),
            now,
            seed(),
        );
        let Output::Transmit(hello) = guess.poll_output() else {
            panic!("a secure client starts with its hello");
        };
        stream.write_all(&hello).unwrap();
        let mut answer = [0u8; HELLO_LEN + CONFIRM_LEN];
        stream
            .read_exact(&mut answer)
            .expect("the server's hello and confirmation");
        reset(stream);
    }

    /// Whether the server closed a connection from `source` without a byte
    /// (refused); if it was served instead (its hello came), resets it before
    /// sending anything, which spends no guess.
    fn refused(source: [u8; 4], addr: SocketAddr) -> bool {
        let mut stream = connect_from(source, addr);
        let mut byte = [0u8; 1];
        let refused = match stream.read(&mut byte) {
            Ok(0) => true,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => true,
            Ok(_) => false,
            Err(e) => panic!("no answer within the bound: {e}"),
        };
        reset(stream);
        refused
    }

    /// A TCP stream that dies (resets) once `left` more bytes were written:
    /// a sender killed mid-transfer.
    struct KilledAfter {
        stream: Option<TcpStream>,
        left: usize,
    }

    impl KilledAfter {
        fn live(&mut self) -> io::Result<&mut TcpStream> {
            self.stream
                .as_mut()
                .ok_or_else(|| io::Error::from(ErrorKind::ConnectionReset))
        }
    }

    impl Read for KilledAfter {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.live()?.read(buf)
        }
    }

    impl Write for KilledAfter {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.left == 0 {
                if let Some(stream) = self.stream.take() {
                    reset(stream);
                }
            }
            let n = buf.len().min(self.left);
            let n = self.live()?.write(&buf[..n])?;
            self.left -= n;
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            self.live()?.flush()
        }
    }

    impl blocking::Transport for KilledAfter {
        fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
            self.live()?.set_read_timeout(timeout)
        }
    }

    fn a_guesser_that_resets_is_refused_and_a_killed_sender_resumes_at_once(driver: Driver) {
        const GUESSER: [u8; 4] = [127, 0, 0, 2];
        const SENDER: [u8; 4] = [127, 0, 0, 3];
        let d = dirs();
        let paths = sources(&d, &[3_000_000]);
        let store = Store::new(&d.dst, false).unwrap();
        let (addr, stop) = serve_secure(driver, store);

        guess_and_reset(GUESSER, addr);
        assert!(
            refused(GUESSER, addr),
            "a guesser that reset after the server's confirmation was served again at once"
        );

        let mut killed = KilledAfter {
            stream: Some(connect_from(SENDER, addr)),
            left: 1_000_000,
        };
        let (mut m, mut app) = secure_sender(&paths, CODE);
        let cut = blocking::run_stream(&mut m, &mut killed, &mut app);
        assert!(cut.is_err(), "the sender was not killed: {cut:?}");
        // At once, from the same source: served, and the file arrives.
        let mut stream = connect_from(SENDER, addr);
        let (mut m, mut app) = secure_sender(&paths, CODE);
        blocking::run_stream(&mut m, &mut stream, &mut app).expect("the killed sender resumes");
        assert_received(&d, &paths);

        let report = stop();
        assert_eq!(report.refused, 1, "{report:?}");
    }

    #[test]
    fn blocking_a_guesser_that_resets_is_refused_and_a_killed_sender_resumes_at_once() {
        a_guesser_that_resets_is_refused_and_a_killed_sender_resumes_at_once(Driver::Blocking);
    }

    #[test]
    fn tokio_a_guesser_that_resets_is_refused_and_a_killed_sender_resumes_at_once() {
        a_guesser_that_resets_is_refused_and_a_killed_sender_resumes_at_once(Driver::Tokio);
    }
}
