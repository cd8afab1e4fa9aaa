//! Embedding the tokio driver in another library's transport: file
//! transfers over QUIC (quinn), one bidirectional stream per session and
//! one session per file, all in flight at once on one connection. The
//! stream's two halves, joined with `tokio::io::join`, are the driver's
//! `AsyncRead + AsyncWrite`; the machines and the file layer neither know
//! nor care what carries their bytes. QUIC brings the encryption (TLS 1.3,
//! here with a self-signed certificate made at start and trusted by the
//! client explicitly) and the multiplexing.
//!
//! Both endpoints run in this process on 127.0.0.1: the server receives
//! with [`Receiver`] into a [`Store`], the client sends with [`Sender`]
//! from a [`SenderApp`]. At the end every file is compared byte by byte
//! with what arrived; any difference, or any file not delivered, exits
//! non-zero.
//!
//! `cargo run --example quic -- FILE... [--dir DIR]` (default: two files of
//! its own into a temporary directory).

use std::error::Error;
use std::fs::File;
use std::io::{self, Read};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use echoxfer::driver::async_tokio::run_stream;
use echoxfer::files::{FileReport, Outcome, ReceiverApp, SenderApp, Store};
use echoxfer::xfer::{Receiver, ReceiverRole, Sender};
use echoxfer::{SessionLimits, TransferConfig};
use quinn::rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};
use quinn::rustls::RootCertStore;
use quinn::{ClientConfig, Connection, ConnectionError, Endpoint, ServerConfig};
use tokio::task::JoinSet;

/// Errors that may cross task boundaries.
type BoxError = Box<dyn Error + Send + Sync>;

/// The name the certificate is made for, and the client asks for.
const SERVER_NAME: &str = "localhost";

/// How long the client waits for a receiver to end its side of a stream
/// after the sender's session is over (it normally already has).
const RECEIVER_END_WAIT: Duration = Duration::from_secs(10);

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let scratch = tempfile::tempdir()?;
    let (paths, dir) = arguments(scratch.path())?;

    let (server_config, certificate) = server_config()?;
    let server = Endpoint::server(server_config, localhost())?;
    let server_addr = server.local_addr()?;
    let receiving = tokio::spawn(receive_connection(server, dir.clone()));

    let client = Endpoint::client(localhost())?;
    let connection = client
        .connect_with(client_config(certificate)?, server_addr, SERVER_NAME)?
        .await?;
    let sent = send_each_file(&connection, &paths).await;
    // Every session has ended on both sides (see [`send_files`]): closing
    // the connection cuts nothing short, and tells the server we are done.
    connection.close(0u32.into(), b"done");
    client.wait_idle().await;
    let received = receiving.await?;

    // The client's failure first: the server's is usually its echo.
    let (sent, received) = (sent?, received?);
    check(&sent, &received)?;
    for f in &sent {
        println!(
            "{} -> {}: {} bytes, identical",
            f.name,
            dir.display(),
            f.size
        );
    }
    Ok(())
}

/// The files to send and the directory to receive into, from the command
/// line, or files of our own and a directory in `scratch`.
fn arguments(scratch: &Path) -> io::Result<(Vec<PathBuf>, PathBuf)> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let dir = match args.iter().position(|a| a == "--dir") {
        Some(i) if i + 1 < args.len() => PathBuf::from(args.drain(i..i + 2).nth(1).unwrap()),
        Some(_) => return Err(io::Error::other("--dir needs a directory")),
        None => scratch.join("received"),
    };
    std::fs::create_dir_all(&dir)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?;
    let mut paths: Vec<PathBuf> = args.into_iter().map(PathBuf::from).collect();
    if paths.is_empty() {
        for (name, size) in [("first.bin", 3 << 20), ("second.bin", 700_001)] {
            let own = scratch.join(name);
            let content: Vec<u8> = (0..size).map(|i: usize| (i * 31 % 251) as u8).collect();
            std::fs::write(&own, content)?;
            paths.push(own);
        }
    }
    Ok((paths, dir))
}

fn localhost() -> SocketAddr {
    (Ipv4Addr::LOCALHOST, 0).into()
}

/// A server configuration with a self-signed certificate for
/// [`SERVER_NAME`], made now, and that certificate for the client to trust.
fn server_config() -> Result<(ServerConfig, CertificateDer<'static>), BoxError> {
    let made = rcgen::generate_simple_self_signed(vec![SERVER_NAME.to_string()])?;
    let certificate = made.cert.der().clone();
    let key = PrivatePkcs8KeyDer::from(made.signing_key.serialize_der());
    let config = ServerConfig::with_single_cert(vec![certificate.clone()], key.into())?;
    Ok((config, certificate))
}

/// A client configuration that trusts `certificate`, and nothing else.
fn client_config(certificate: CertificateDer<'static>) -> Result<ClientConfig, BoxError> {
    let mut roots = RootCertStore::empty();
    roots.add(certificate)?;
    Ok(ClientConfig::with_root_certificates(Arc::new(roots))?)
}

/// The server: accepts one connection, runs a receiving session on every
/// stream the client opens until the client closes the connection, and
/// returns what the sessions report.
async fn receive_connection(endpoint: Endpoint, dir: PathBuf) -> Result<Vec<FileReport>, BoxError> {
    let incoming = endpoint
        .accept()
        .await
        .ok_or("the server endpoint closed")?;
    let connection = incoming.await?;
    let mut sessions = JoinSet::new();
    loop {
        match connection.accept_bi().await {
            Ok((send, recv)) => {
                let stream = tokio::io::join(recv, send);
                sessions.spawn(receive_session(stream, dir.clone()));
            }
            Err(ConnectionError::ApplicationClosed(_)) => break,
            Err(e) => return Err(e.into()),
        }
    }
    let mut reports = Vec::new();
    while let Some(session) = sessions.join_next().await {
        reports.extend(session??);
    }
    Ok(reports)
}

/// One receiving session over one QUIC stream, into `dir`.
async fn receive_session(
    mut stream: tokio::io::Join<quinn::RecvStream, quinn::SendStream>,
    dir: PathBuf,
) -> Result<Vec<FileReport>, BoxError> {
    let mut app = ReceiverApp::new(Store::new(&dir, false)?);
    let mut machine = Receiver::new(
        ReceiverRole::new(TransferConfig::default()),
        SessionLimits::default(),
        Instant::now(),
    );
    run_stream(&mut machine, &mut stream, &mut app).await?;
    Ok(app.report().to_vec())
}

/// The client: one sending session per file, each on a stream of its own,
/// all at once. Returns what the sessions report.
async fn send_each_file(
    connection: &Connection,
    paths: &[PathBuf],
) -> Result<Vec<FileReport>, BoxError> {
    let mut sessions = JoinSet::new();
    for path in paths {
        sessions.spawn(send_files(connection.clone(), vec![path.clone()]));
    }
    let mut reports = Vec::new();
    while let Some(session) = sessions.join_next().await {
        reports.extend(session??);
    }
    Ok(reports)
}

/// One sending session over a new stream of `connection`, carrying `paths`.
async fn send_files(
    connection: Connection,
    paths: Vec<PathBuf>,
) -> Result<Vec<FileReport>, BoxError> {
    let (send, recv) = connection.open_bi().await?;
    let mut stream = tokio::io::join(recv, send);
    let mut app = SenderApp::open(&paths, &TransferConfig::default().path_limits())?;
    let mut machine = Sender::new(
        app.role(TransferConfig::default()),
        SessionLimits::default(),
        Instant::now(),
    );
    run_stream(&mut machine, &mut stream, &mut app).await?;
    // The sender's session ends once it has sent `Quit`; the receiver's
    // ends when it has read it, and it then finishes its side of the
    // stream. Wait for that, so that closing the connection afterwards
    // cannot cut a receiving session short.
    let (mut recv, _send) = stream.into_inner();
    tokio::time::timeout(RECEIVER_END_WAIT, recv.read_to_end(0))
        .await
        .map_err(|_| "the receiver did not end its session")??;
    Ok(app.report().to_vec())
}

/// Every file was saved, and what the receiver holds is byte for byte what
/// was sent.
fn check(sent: &[FileReport], received: &[FileReport]) -> Result<(), BoxError> {
    for f in sent {
        if !matches!(f.outcome, Outcome::Saved { .. }) {
            return Err(format!("{} not delivered: {:?}", f.name, f.outcome).into());
        }
        let source = f.path.as_deref().ok_or("a sent file has no source path")?;
        let arrived = received
            .iter()
            .find(|r| r.name == f.name && matches!(r.outcome, Outcome::Saved { .. }))
            .and_then(|r| r.path.as_deref())
            .ok_or_else(|| format!("the receiver reports no saved {}", f.name))?;
        if !same_content(source, arrived)? {
            return Err(format!("{} differs from {}", arrived.display(), source.display()).into());
        }
    }
    Ok(())
}

/// Whether the files at `a` and `b` hold the same bytes (compared piece by
/// piece, so a large file is never read whole into memory).
fn same_content(a: &Path, b: &Path) -> io::Result<bool> {
    let open = |p: &Path| {
        File::open(p).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", p.display())))
    };
    let (mut a, mut b) = (open(a)?, open(b)?);
    let (mut piece_a, mut piece_b) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    loop {
        let n = read_full(&mut a, &mut piece_a)?;
        if n != read_full(&mut b, &mut piece_b)? || piece_a[..n] != piece_b[..n] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

/// Reads until `buf` is full or the file ends; returns how much it read.
fn read_full(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}
