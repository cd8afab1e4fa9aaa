//! The secure channel on loopback TCP with both real drivers: files with
//! the real file layer, echo, a wrong code failing both sides, and a
//! server refusing a guesser that resets while serving a killed sender's
//! resume at once. Every
//! wait is bounded (machine timeouts, joins under a timeout); nothing sleeps.
#![cfg(unix)]
// The guessers (Linux only: they need all of 127.0.0.0/8) use most imports.
#![cfg_attr(not(target_os = "linux"), allow(unused_imports))]

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use echoxfer::driver::blocking::ServeReport;
use echoxfer::driver::listen::{self, Limits};
use echoxfer::driver::{blocking, DriverError, Ignore};
use echoxfer::echo::{self, ClientEvent, ClientRole, ServerRole};
use echoxfer::error::RefusalReason;
use echoxfer::files::{ReceiverApp, SenderApp, Store};
use echoxfer::secure::{Secure, SecureConfig};
use echoxfer::testing::wire::{CONFIRM_LEN, HELLO_LEN, REFUSAL_LEN, REFUSED_AFTER_GUESSES};
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
        let m = echo::Server::new(ServerRole::new("hi", EchoConfig::default()), config(), now);
        let mut m = Secure::server(m, CODE, SecureConfig::default(), now, seed());
        blocking::run_stream(&mut m, &mut stream, &mut Ignore)
    });
    let now = Instant::now();
    let mut client = echo::Client::new(ClientRole::new(EchoConfig::default()), config(), now);
    client.send(&b"secret words"[..]).unwrap();
    client.close().unwrap();
    let mut m = Secure::client(client, CODE, SecureConfig::default(), now, seed());
    let mut seen = Vec::new();
    let mut app = |_: &mut Secure<echo::Client>, _: Instant, e: ClientEvent| {
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
            echoxfer::driver::async_tokio::run_stream(&mut m, &mut stream, &mut app).await
        };
        let client = async {
            let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            let (mut m, mut app) = secure_sender(&paths, CODE);
            echoxfer::driver::async_tokio::run_stream(&mut m, &mut stream, &mut app).await
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
        serve_secure_with(driver, store, SecureConfig::default())
    }

    /// [`serve_secure`] with the sessions' channel configured by `secure`.
    fn serve_secure_with(
        driver: Driver,
        store: Store,
        secure: SecureConfig,
    ) -> (SocketAddr, impl FnOnce() -> ServeReport) {
        let listener = listen::bind("127.0.0.1:0".parse().unwrap(), 16).unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = Limits {
            max_connections: 1,
            guess_delay: Duration::from_secs(60),
            max_guess_delay: Duration::from_secs(60),
            ..Limits::default()
        };
        let make = move |now: Instant| {
            let m = Receiver::new(ReceiverRole::new(TransferConfig::default()), config(), now);
            let m = Secure::server(m, CODE, secure.clone(), now, seed());
            (m, ReceiverApp::new(store.clone()))
        };
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
                    echoxfer::driver::async_tokio::serve(listener, limits, grace, shutdown, make)
                        .await
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

    /// Whether the server refused a connection from `source` for failed
    /// guesses: it sent a refusal notice (`EXFW`, reason 1) instead of its
    /// hello, then closed. If it was served instead (its hello came),
    /// resets it before sending anything, which spends no guess.
    fn refused(source: [u8; 4], addr: SocketAddr) -> bool {
        let mut stream = connect_from(source, addr);
        let mut head = [0u8; REFUSAL_LEN];
        stream
            .read_exact(&mut head)
            .expect("a hello or a refusal notice within the bound");
        let refused = match &head[..4] {
            b"EXFW" => true,
            b"EXFS" => false,
            other => panic!("neither a hello nor a refusal notice: {other:?}"),
        };
        if refused {
            assert_eq!(head[4], REFUSED_AFTER_GUESSES, "{head:?}");
            let mut rest = Vec::new();
            let end = stream.read_to_end(&mut rest);
            assert!(
                matches!(&end, Ok(0)) || end.is_err(),
                "nothing after the notice: {end:?} {rest:?}"
            );
        }
        reset(stream);
        refused
    }

    /// Connects from `source`, reads the server's hello, and leaves: a
    /// health check, a port scanner that speaks first to nobody.
    fn read_hello_and_close(source: [u8; 4], addr: SocketAddr) {
        let mut stream = connect_from(source, addr);
        let mut hello = [0u8; HELLO_LEN];
        stream
            .read_exact(&mut hello[..4])
            .expect("the server's hello");
        assert_eq!(
            &hello[..4],
            b"EXFS",
            "refused: an earlier connection that sent no hello was counted as a guess"
        );
        stream
            .read_exact(&mut hello[4..])
            .expect("the server's hello");
    }

    /// Connects from `source`, sends `sent` (nothing, or part of a hello),
    /// and stays silent until the server gives up on the handshake and
    /// closes (the end of stream, or a reset), within the bound.
    fn stay_silent_until_the_deadline(source: [u8; 4], addr: SocketAddr, sent: &[u8]) {
        let mut stream = connect_from(source, addr);
        stream.write_all(sent).unwrap();
        let mut all = Vec::new();
        match stream.read_to_end(&mut all) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
            Err(e) => panic!("the server did not end the handshake within the bound: {e}"),
        }
        assert_eq!(&all[..4], b"EXFS", "its hello, and no confirmation");
        assert_eq!(all.len(), HELLO_LEN, "its hello, and no confirmation");
    }

    /// A guesser's whole hello (under a wrong code), sent from `source`;
    /// returns the connection once the server's hello and confirmation came.
    fn hello_from(source: [u8; 4], addr: SocketAddr) -> TcpStream {
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
        stream
    }

    fn only_a_whole_hello_spends_a_guess(driver: Driver) {
        const SCANNER: [u8; 4] = [127, 0, 0, 4];
        const LEAVER: [u8; 4] = [127, 0, 0, 5];
        const WRONG: [u8; 4] = [127, 0, 0, 6];
        let d = dirs();
        let store = Store::new(&d.dst, false).unwrap();
        let secure = SecureConfig {
            handshake_timeout: Duration::from_millis(300),
            ..SecureConfig::default()
        };
        let (addr, stop) = serve_secure_with(driver, store, secure);

        // None of these sent a whole hello: none is a guess, however many.
        for _ in 0..3 {
            read_hello_and_close(SCANNER, addr);
            drop(connect_from(SCANNER, addr));
        }
        stay_silent_until_the_deadline(SCANNER, addr, &[]);
        stay_silent_until_the_deadline(SCANNER, addr, b"EXFS\x01A");
        assert!(
            !refused(SCANNER, addr),
            "connections that sent no whole hello were counted as failed guesses"
        );

        // A whole hello, then the connection closed: a guess.
        drop(hello_from(LEAVER, addr));
        assert!(refused(LEAVER, addr), "a hello and a close was not a guess");

        // A whole hello, then a wrong confirmation: a guess.
        let mut wrong = hello_from(WRONG, addr);
        wrong.write_all(&[0x5a; CONFIRM_LEN]).unwrap();
        let mut rest = Vec::new();
        let _ = wrong.read_to_end(&mut rest); // the server fails, and closes
        assert!(refused(WRONG, addr), "a wrong confirmation was not a guess");

        let report = stop();
        assert_eq!(report.refused, 2, "{report:?}");
    }

    #[test]
    fn blocking_only_a_whole_hello_spends_a_guess_not_a_scanner_or_a_silent_peer() {
        only_a_whole_hello_spends_a_guess(Driver::Blocking);
    }

    #[test]
    fn tokio_only_a_whole_hello_spends_a_guess_not_a_scanner_or_a_silent_peer() {
        only_a_whole_hello_spends_a_guess(Driver::Tokio);
    }

    /// A good sender on a guesser's address: every try is told, by the
    /// server's refusal notice, that its address is refused and for how
    /// long; none sees a reset instead (the refused client sends its hello
    /// at once, which a careless close would answer with a reset).
    fn a_refused_sender_is_told_why_and_for_how_long(driver: Driver) {
        const SHARED: [u8; 4] = [127, 0, 0, 7];
        let d = dirs();
        let paths = sources(&d, &[10]);
        let store = Store::new(&d.dst, false).unwrap();
        let (addr, stop) = serve_secure(driver, store);
        drop(hello_from(SHARED, addr));
        let tries = 40;
        for _ in 0..tries {
            let mut stream = connect_from(SHARED, addr);
            let (mut m, mut app) = secure_sender(&paths, CODE);
            match blocking::run_stream(&mut m, &mut stream, &mut app) {
                Err(DriverError::Machine(Error::Secure(SecureError::Refused {
                    reason,
                    retry_after,
                }))) => {
                    assert_eq!(reason, RefusalReason::FailedGuesses);
                    assert!(
                        (Duration::from_secs(1)..=Duration::from_secs(60)).contains(&retry_after),
                        "{retry_after:?}"
                    );
                }
                other => panic!("not told it was refused: {other:?}"),
            }
        }
        assert!(entries(&d.dst).is_empty());
        let report = stop();
        assert_eq!(report.refused, tries, "{report:?}");
    }

    #[test]
    fn blocking_a_refused_sender_is_told_why_and_for_how_long() {
        a_refused_sender_is_told_why_and_for_how_long(Driver::Blocking);
    }

    #[test]
    fn tokio_a_refused_sender_is_told_why_and_for_how_long() {
        a_refused_sender_is_told_why_and_for_how_long(Driver::Tokio);
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
