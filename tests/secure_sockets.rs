//! The secure channel on loopback TCP with both real drivers: files with
//! the real file layer, echo, and a wrong code failing both sides. Every
//! wait is bounded (machine timeouts, joins under a timeout); nothing sleeps.
#![cfg(unix)]

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use echoxfer::driver::{blocking, DriverError, Ignore};
use echoxfer::echo::{Client, ClientEvent, EchoClient, EchoServer, Server};
use echoxfer::files::{ReceiverApp, SenderApp, Store};
use echoxfer::secure::{Secure, SecureConfig};
use echoxfer::xfer::{Receiver, ReceiverRole, Sender};
use echoxfer::{EchoConfig, Error, SecureError, SessionLimits, TransferConfig};

mod common;
use common::files::{assert_received, dirs, entries, sources};

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
    let app = SenderApp::open(paths, 255).unwrap();
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
