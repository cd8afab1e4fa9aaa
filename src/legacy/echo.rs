//! Legacy echo over TCP: the seed echo server and client, as machines.
//!
//! Wire: the server sends a greeting, then echoes each read (at most 1024
//! bytes) as it came; a read that is exactly `exit` is not echoed and ends
//! the session. No framing, no newlines. Pure: no I/O here.

use std::collections::VecDeque;
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use super::{piece_len, EXIT, PIECE_MAX};
use crate::config::UnframedConfig;
use crate::error::{Error, ProtocolError, UsageError};
use crate::unframed::{sealed, Unframed, UnframedLink, UnframedRole};

/// What the legacy echo server tells its application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LegacyServerEvent {
    /// One read from the client (the seed server prints each). It is queued
    /// back unchanged unless it is exactly `exit`.
    Received(Bytes),
    /// The client's read was exactly `exit`: nothing is echoed, the session ends.
    ClientExited,
}

/// The legacy echo server machine: greets, echoes each read, stops at a
/// read that is exactly `exit` or when the client closes.
///
/// `input_room()` is at most [`PIECE_MAX`], so each `handle_input` is one
/// `recv(1024)` of the seed server. A client that sends nothing for
/// `idle_timeout` is dropped (the seed server waits forever). Serving one
/// client at a time, as the blocking seed server does, is the driver's
/// business (`max_connections` = 1).
pub type LegacyEchoServer = Unframed<LegacyServerRole>;

/// The legacy echo server role. Use it as [`LegacyEchoServer`].
#[derive(Debug)]
pub struct LegacyServerRole {
    greeting: Bytes,
}

impl LegacyEchoServer {
    /// A session that starts at `now` by sending `greeting` (for instance
    /// [`GREETING_BLOCKING`](super::GREETING_BLOCKING) or
    /// [`GREETING_THREADED`](super::GREETING_THREADED)).
    pub fn new(greeting: impl Into<Bytes>, config: UnframedConfig, now: Instant) -> Self {
        let greeting = greeting.into();
        Unframed::with_role(LegacyServerRole { greeting }, config, now)
    }
}

impl sealed::Sealed for LegacyServerRole {}

/// The transition table: greet; echo each read, or end at `exit`; the
/// client's EOF ends the session quietly, as with the seed server.
impl UnframedRole for LegacyServerRole {
    type Event = LegacyServerEvent;

    fn start(&mut self, link: &mut UnframedLink<LegacyServerEvent>) {
        link.send(std::mem::take(&mut self.greeting));
    }

    fn on_read(&mut self, link: &mut UnframedLink<LegacyServerEvent>) -> Result<(), Error> {
        link.touch();
        // One read, shown and echoed from the memory it was read into.
        let read = link.take_read();
        link.emit(LegacyServerEvent::Received(read.clone()));
        if read == EXIT {
            link.emit(LegacyServerEvent::ClientExited);
            link.finish();
        } else {
            link.send(read);
        }
        Ok(())
    }

    fn on_eof(&mut self, _link: &mut UnframedLink<LegacyServerEvent>) -> Result<(), Error> {
        Ok(())
    }

    fn input_room(&self, link: &UnframedLink<LegacyServerEvent>) -> usize {
        PIECE_MAX.min(link.config.send_buffer.saturating_sub(link.queued()))
    }
}

/// What the legacy echo client tells its application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LegacyClientEvent {
    /// What the server sent before the client's first line.
    Greeting(Bytes),
    /// A line came back whole (and equal to what was sent).
    Reply(Bytes),
}

/// The line being sent and echoed.
#[derive(Debug)]
struct Current {
    line: Bytes,
    /// Bytes of `line` handed out as pieces.
    sent: usize,
    /// What came back so far.
    echoed: BytesMut,
}

/// The legacy echo client machine.
///
/// It waits for the greeting (every byte that arrives until the server has
/// been quiet for `UnframedConfig::legacy_ack_delay`, so a greeting split over
/// several reads is still one greeting), then sends queued lines one at a time, without a
/// newline. A line goes in pieces of at most [`PIECE_MAX`] bytes, none
/// containing `exit`, each sent after the previous piece has come back whole
/// (replies may arrive split or glued), so the server's `recv(1024)` sees
/// each piece as one read and can never mistake the tail of a long line for
/// `exit`. A line that is exactly `exit` is sent and ends the session (the
/// server does not answer it). An echo that differs from the line is
/// [`ProtocolError::EchoMismatch`].
pub type LegacyEchoClient = Unframed<LegacyClientRole>;

/// The legacy echo client role. Use it as [`LegacyEchoClient`].
#[derive(Debug, Default)]
pub struct LegacyClientRole {
    greeted: bool,
    /// When the greeting counts as complete: `legacy_ack_delay` after the
    /// last of its bytes.
    greeting_deadline: Option<Instant>,
    lines: VecDeque<Bytes>,
    queued_bytes: usize,
    current: Option<Current>,
    /// `exit` was queued or [`close`](LegacyEchoClient::close) called: no more lines.
    closing: bool,
}

impl LegacyEchoClient {
    /// A session starting at `now`, waiting for the server's greeting.
    pub fn new(config: UnframedConfig, now: Instant) -> Self {
        Unframed::with_role(LegacyClientRole::default(), config, now)
    }

    /// Queues one line (no newline is added; the seed client strips it).
    /// A line that is exactly `exit` ends the session once sent. An empty
    /// line is skipped: the seed client would send nothing and wait forever.
    pub fn send_line(&mut self, line: impl Into<Bytes>) -> Result<(), UsageError> {
        let line = line.into();
        let (role, link) = self.parts();
        if role.closing || link.is_over() {
            return Err(UsageError::Closed);
        }
        if line.len() > link.config.max_message {
            return Err(UsageError::MessageTooLarge {
                len: line.len(),
                max: link.config.max_message,
            });
        }
        if role.queued_bytes + line.len() > link.config.send_buffer {
            return Err(UsageError::WouldBlock);
        }
        if line.is_empty() {
            return Ok(());
        }
        if line == EXIT {
            role.closing = true;
        }
        role.queued_bytes += line.len();
        role.lines.push_back(line);
        role.step(link);
        Ok(())
    }

    /// Ends the session after the lines already queued, without `exit`
    /// (the seed client does this at the end of its input).
    pub fn close(&mut self) {
        let (role, link) = self.parts();
        role.closing = true;
        role.step(link);
    }
}

type ClientLink = UnframedLink<LegacyClientEvent>;

impl LegacyClientRole {
    /// Everything received before the first line is the greeting.
    fn greeting_complete(&mut self, link: &mut ClientLink) {
        self.greeting_deadline = None;
        self.greeted = true;
        let greeting = link.rx.data().split().freeze();
        link.emit(LegacyClientEvent::Greeting(greeting));
        self.step(link);
    }

    /// Moves as far as the bytes received allow.
    fn step(&mut self, link: &mut ClientLink) {
        while !link.is_over() {
            if !self.greeted {
                return;
            }
            let Some(cur) = &mut self.current else {
                let Some(line) = self.lines.pop_front() else {
                    if self.closing {
                        link.finish();
                    }
                    return;
                };
                self.queued_bytes -= line.len();
                if line == EXIT {
                    link.send(line);
                    link.finish();
                    return;
                }
                self.current = Some(Current {
                    line,
                    sent: 0,
                    echoed: BytesMut::new(),
                });
                continue;
            };
            let want = cur.sent - cur.echoed.len();
            if want > 0 {
                if link.rx.is_empty() {
                    return;
                }
                let take = want.min(link.rx.len());
                cur.echoed.extend_from_slice(&link.rx.data().split_to(take));
                continue;
            }
            if cur.sent < cur.line.len() {
                let end = cur.line.len().min(cur.sent + PIECE_MAX);
                let window = &cur.line[cur.sent..end];
                let n = piece_len(window, end < cur.line.len(), EXIT);
                link.send(cur.line.slice(cur.sent..cur.sent + n));
                cur.sent += n;
                link.touch();
                continue;
            }
            let cur = self.current.take().expect("matched above");
            if cur.echoed[..] != cur.line[..] {
                link.fail(ProtocolError::EchoMismatch.into());
                return;
            }
            link.emit(LegacyClientEvent::Reply(cur.line));
        }
    }
}

impl sealed::Sealed for LegacyClientRole {}

/// The transition table: wait for the greeting (until the server has been
/// quiet), then send each line in pieces and check each echo.
impl UnframedRole for LegacyClientRole {
    type Event = LegacyClientEvent;

    fn on_read(&mut self, link: &mut ClientLink) -> Result<(), Error> {
        link.touch();
        if !self.greeted {
            self.greeting_deadline = Some(link.now() + link.config.legacy_ack_delay);
        }
        self.step(link);
        Ok(())
    }

    fn on_eof(&mut self, link: &mut ClientLink) -> Result<(), Error> {
        if !self.greeted && !link.rx.is_empty() {
            self.greeting_complete(link);
        }
        if self.awaits_peer() || !self.lines.is_empty() {
            let state = if self.greeted {
                "waiting for an echo"
            } else {
                "waiting for the greeting"
            };
            return Err(ProtocolError::UnexpectedEof { state }.into());
        }
        // The seed client stops quietly when the server goes.
        Ok(())
    }

    fn on_timeout(&mut self, link: &mut ClientLink) {
        if self.greeting_deadline.is_some_and(|d| link.now() >= d) {
            // The server has been quiet since its first bytes: that was the greeting.
            self.greeting_complete(link);
        }
    }

    /// Waiting for the greeting or an echo; not for the user's next line.
    fn awaits_peer(&self) -> bool {
        !self.greeted || self.current.is_some()
    }

    fn deadline(&self) -> Option<Instant> {
        self.greeting_deadline
    }

    fn input_room(&self, link: &ClientLink) -> usize {
        link.config.recv_buffer.saturating_sub(link.rx.len())
    }
}
