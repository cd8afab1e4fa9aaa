//! The mailbox's WebSocket, client side, over buffers: tungstenite's
//! handshake and framing run on an in-memory [`Pipe`] the machine fills
//! with what the transport read and drains into what it sends, so the
//! framing is tungstenite's and the I/O stays the driver's. It may touch
//! nothing but its own buffers.

use std::io::{self, Read, Write};

use bytes::Bytes;
use tungstenite::client::IntoClientRequest;
use tungstenite::error::ProtocolError;
use tungstenite::handshake::client::ClientHandshake;
use tungstenite::handshake::{HandshakeError, MidHandshake};
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{Message, WebSocket};

use crate::error::WormholeError;

/// The largest WebSocket message (and frame) taken from the server. The
/// mailbox's messages are small JSON objects; a text message sent through
/// the wormhole travels in one, hex-encoded, so this bounds it too.
pub const MAX_MESSAGE: usize = 1 << 20;
/// The most bytes the server's HTTP upgrade answer may take.
const MAX_UPGRADE: usize = 64 << 10;

/// Bytes in, bytes out: what tungstenite reads from and writes to.
#[derive(Debug, Default)]
pub(crate) struct Pipe {
    input: Vec<u8>,
    read_at: usize,
    eof: bool,
    output: Vec<u8>,
}

impl Pipe {
    /// The other end's next bytes, for tungstenite to read.
    pub(crate) fn push_input(&mut self, data: &[u8]) {
        self.input.extend_from_slice(data);
    }

    /// What tungstenite wrote, if anything.
    pub(crate) fn take_output(&mut self) -> Option<Bytes> {
        match self.output.is_empty() {
            true => None,
            false => Some(Bytes::from(std::mem::take(&mut self.output))),
        }
    }
}

impl Read for Pipe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let unread = &self.input[self.read_at..];
        if unread.is_empty() {
            self.input.clear();
            self.read_at = 0;
            return match self.eof {
                true => Ok(0),
                false => Err(io::ErrorKind::WouldBlock.into()),
            };
        }
        let n = unread.len().min(buf.len());
        buf[..n].copy_from_slice(&unread[..n]);
        self.read_at += n;
        Ok(n)
    }
}

impl Write for Pipe {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.output.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

enum Stage {
    Upgrading(Box<MidHandshake<ClientHandshake<Pipe>>>),
    Open(Box<WebSocket<Pipe>>),
    /// Between stages (never seen from outside a call), or after a failure.
    Gone,
}

/// A WebSocket client session over a [`Pipe`].
pub struct Ws {
    stage: Stage,
    /// Messages asked for before the upgrade completed.
    queued: Vec<String>,
    upgrade_bytes: usize,
    /// The server's close frame arrived, or its end of the stream.
    closed: bool,
}

impl std::fmt::Debug for Ws {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let stage = match self.stage {
            Stage::Upgrading(_) => "upgrading",
            Stage::Open(_) => "open",
            Stage::Gone => "gone",
        };
        f.debug_struct("Ws")
            .field("stage", &stage)
            .finish_non_exhaustive()
    }
}

fn ws_error(e: tungstenite::Error) -> WormholeError {
    WormholeError::WebSocket(e.to_string())
}

impl Ws {
    /// Starts the upgrade to `url` (`ws://host:port/path`): the request is
    /// in [`take_output`](Self::take_output) at once.
    pub fn connect(url: &str) -> Result<Ws, WormholeError> {
        let request = url.into_client_request().map_err(ws_error)?;
        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX_MESSAGE))
            .max_frame_size(Some(MAX_MESSAGE));
        let stage =
            match tungstenite::client::client_with_config(request, Pipe::default(), Some(config)) {
                Err(HandshakeError::Interrupted(mid)) => Stage::Upgrading(Box::new(mid)),
                Err(HandshakeError::Failure(e)) => return Err(ws_error(e)),
                Ok((ws, _)) => Stage::Open(Box::new(ws)),
            };
        Ok(Ws {
            stage,
            queued: Vec::new(),
            upgrade_bytes: 0,
            closed: false,
        })
    }

    fn pipe(&mut self) -> Option<&mut Pipe> {
        match &mut self.stage {
            Stage::Upgrading(mid) => Some(mid.get_mut().get_mut()),
            Stage::Open(ws) => Some(ws.get_mut()),
            Stage::Gone => None,
        }
    }

    /// Whether the server closed the WebSocket (its close frame, or the end
    /// of its stream).
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// The server's next bytes; then [`poll_message`](Self::poll_message)
    /// until `None`.
    pub fn feed(&mut self, data: &[u8]) -> Result<(), WormholeError> {
        if let Stage::Upgrading(_) = self.stage {
            self.upgrade_bytes += data.len();
            if self.upgrade_bytes > MAX_UPGRADE {
                self.stage = Stage::Gone;
                return Err(WormholeError::BadServer(
                    "its WebSocket upgrade answer is over 64 KiB",
                ));
            }
        }
        if let Some(pipe) = self.pipe() {
            pipe.push_input(data);
        }
        self.advance_upgrade()
    }

    /// The server's end of the stream.
    pub fn feed_eof(&mut self) {
        if let Some(pipe) = self.pipe() {
            pipe.eof = true;
        }
    }

    fn advance_upgrade(&mut self) -> Result<(), WormholeError> {
        let Stage::Upgrading(_) = self.stage else {
            return Ok(());
        };
        let Stage::Upgrading(mid) = std::mem::replace(&mut self.stage, Stage::Gone) else {
            unreachable!("checked just above")
        };
        match (*mid).handshake() {
            Err(HandshakeError::Interrupted(mid)) => self.stage = Stage::Upgrading(Box::new(mid)),
            Err(HandshakeError::Failure(e)) => return Err(ws_error(e)),
            Ok((ws, _)) => {
                self.stage = Stage::Open(Box::new(ws));
                for text in std::mem::take(&mut self.queued) {
                    self.send(text)?;
                }
            }
        }
        Ok(())
    }

    /// The next whole message from the server (text or binary payload), if
    /// one has arrived; pings are answered and skipped.
    pub fn poll_message(&mut self) -> Result<Option<Bytes>, WormholeError> {
        let Stage::Open(ws) = &mut self.stage else {
            if let Some(pipe) = self.pipe() {
                if pipe.eof {
                    self.closed = true;
                }
            }
            return Ok(None);
        };
        loop {
            match ws.read() {
                Ok(Message::Text(text)) => return Ok(Some(Bytes::from(text))),
                Ok(Message::Binary(bytes)) => return Ok(Some(bytes)),
                Ok(Message::Close(_)) => self.closed = true,
                Ok(_) => {}
                Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                    // Pongs (and the close reply) wait in tungstenite until a flush.
                    let _ = ws.flush();
                    return Ok(None);
                }
                Err(
                    tungstenite::Error::ConnectionClosed
                    | tungstenite::Error::AlreadyClosed
                    | tungstenite::Error::Protocol(ProtocolError::ResetWithoutClosingHandshake),
                ) => {
                    self.closed = true;
                    return Ok(None);
                }
                Err(e) => return Err(ws_error(e)),
            }
        }
    }

    /// Sends `text` as one text message (what the Python client sends), or
    /// queues it until the upgrade is done.
    pub fn send(&mut self, text: String) -> Result<(), WormholeError> {
        match &mut self.stage {
            Stage::Open(ws) => ws.send(Message::text(text)).map_err(ws_error),
            Stage::Upgrading(_) => {
                self.queued.push(text);
                Ok(())
            }
            Stage::Gone => Ok(()),
        }
    }

    /// Sends a ping (a keep-alive that holds NAT bindings open).
    pub fn ping(&mut self) -> Result<(), WormholeError> {
        match &mut self.stage {
            Stage::Open(ws) => ws.send(Message::Ping(Bytes::new())).map_err(ws_error),
            _ => Ok(()),
        }
    }

    /// Starts the closing handshake (a close frame to the server).
    pub fn close(&mut self) {
        if let Stage::Open(ws) = &mut self.stage {
            let _ = ws.close(None);
            let _ = ws.flush();
        }
    }

    /// What to send to the server, if anything.
    pub fn take_output(&mut self) -> Option<Bytes> {
        self.pipe()?.take_output()
    }
}
