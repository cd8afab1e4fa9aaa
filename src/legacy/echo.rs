//! Legacy echo over TCP: the seed echo server and client, as machines.
//!
//! Wire: the server sends a greeting, then echoes each read (at most 1024
//! bytes) as it came; a read that is exactly `exit` is not echoed and ends
//! the session. No framing, no newlines. Pure: no I/O here.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::{piece_len, EXIT, PIECE_MAX};
use crate::config::Config;
use crate::error::{Error, ProtocolError, UsageError};
use crate::machine::{Machine, Output, StreamMachine};
use crate::unframed::Unframed;

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
#[derive(Debug)]
pub struct LegacyEchoServer {
    core: Unframed<LegacyServerEvent>,
}

impl LegacyEchoServer {
    /// A session that starts at `now` by sending `greeting` (for instance
    /// [`GREETING_BLOCKING`](super::GREETING_BLOCKING) or
    /// [`GREETING_THREADED`](super::GREETING_THREADED)).
    pub fn new(greeting: impl Into<Bytes>, config: Config, now: Instant) -> Self {
        let mut core = Unframed::new(config, now);
        core.send(greeting.into());
        LegacyEchoServer { core }
    }
}

impl Machine for LegacyEchoServer {
    type Transmit = Bytes;
    type Event = LegacyServerEvent;

    fn handle_timeout(&mut self, now: Instant) {
        self.core.tick(now);
        self.core.check_idle();
    }

    fn poll_output(&mut self) -> Output<Bytes, LegacyServerEvent> {
        let deadline = self.poll_timeout();
        self.core.poll(deadline)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.core.deadline(Some(self.core.idle_deadline))
    }
}

impl StreamMachine for LegacyEchoServer {
    fn input_buffer(&mut self, max: usize) -> &mut [u8] {
        let room = self.input_room();
        self.core.input_buffer(max, room)
    }

    fn commit_input(&mut self, now: Instant, n: usize) -> Result<(), Error> {
        if !self.core.admit(now, n)? {
            return Ok(());
        }
        self.core.touch();
        // One read, shown and echoed from the memory it was read into.
        let read = self.core.take_read();
        self.core.emit(LegacyServerEvent::Received(read.clone()));
        if read == EXIT {
            self.core.emit(LegacyServerEvent::ClientExited);
            self.core.finish();
        } else {
            self.core.send(read);
        }
        Ok(())
    }

    fn handle_eof(&mut self, now: Instant) {
        self.core.tick(now);
        // The seed server ends the session quietly when the client goes.
        self.core.finish();
    }

    fn abort(&mut self, reason: String) {
        self.core.abort(reason);
    }

    fn write_timeout(&self) -> Option<Duration> {
        Some(self.core.config.idle_timeout)
    }

    fn input_room(&self) -> usize {
        PIECE_MAX.min(
            self.core
                .config
                .send_buffer
                .saturating_sub(self.core.queued()),
        )
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
/// been quiet for `Config::legacy_ack_delay`, so a greeting split over
/// several reads is still one greeting), then sends queued lines one at a time, without a
/// newline. A line goes in pieces of at most [`PIECE_MAX`] bytes, none
/// containing `exit`, each sent after the previous piece has come back whole
/// (replies may arrive split or glued), so the server's `recv(1024)` sees
/// each piece as one read and can never mistake the tail of a long line for
/// `exit`. A line that is exactly `exit` is sent and ends the session (the
/// server does not answer it). An echo that differs from the line is
/// [`ProtocolError::EchoMismatch`].
#[derive(Debug)]
pub struct LegacyEchoClient {
    core: Unframed<LegacyClientEvent>,
    greeted: bool,
    /// When the greeting counts as complete: `legacy_ack_delay` after the
    /// last of its bytes.
    greeting_deadline: Option<Instant>,
    lines: VecDeque<Bytes>,
    queued_bytes: usize,
    current: Option<Current>,
    /// `exit` was queued or [`close`](Self::close) called: no more lines.
    closing: bool,
}

impl LegacyEchoClient {
    /// A session starting at `now`, waiting for the server's greeting.
    pub fn new(config: Config, now: Instant) -> Self {
        LegacyEchoClient {
            core: Unframed::new(config, now),
            greeted: false,
            greeting_deadline: None,
            lines: VecDeque::new(),
            queued_bytes: 0,
            current: None,
            closing: false,
        }
    }

    /// Queues one line (no newline is added; the seed client strips it).
    /// A line that is exactly `exit` ends the session once sent. An empty
    /// line is skipped: the seed client would send nothing and wait forever.
    pub fn send_line(&mut self, line: impl Into<Bytes>) -> Result<(), UsageError> {
        let line = line.into();
        if self.closing || self.core.is_over() {
            return Err(UsageError::Closed);
        }
        if line.len() > self.core.config.max_message {
            return Err(UsageError::MessageTooLarge {
                len: line.len(),
                max: self.core.config.max_message,
            });
        }
        if self.queued_bytes + line.len() > self.core.config.send_buffer {
            return Err(UsageError::WouldBlock);
        }
        if line.is_empty() {
            return Ok(());
        }
        if line == EXIT {
            self.closing = true;
        }
        self.queued_bytes += line.len();
        self.lines.push_back(line);
        self.step();
        Ok(())
    }

    /// Ends the session after the lines already queued, without `exit`
    /// (the seed client does this at the end of its input).
    pub fn close(&mut self) {
        self.closing = true;
        self.step();
    }

    /// Everything received before the first line is the greeting.
    fn greeting_complete(&mut self) {
        self.greeting_deadline = None;
        self.greeted = true;
        let greeting = self.core.rx.data().split().freeze();
        self.core.emit(LegacyClientEvent::Greeting(greeting));
        self.step();
    }

    /// Whether the machine waits for the server (greeting or echo).
    fn waiting_for_peer(&self) -> bool {
        !self.greeted || self.current.is_some()
    }

    /// Moves as far as the bytes received allow.
    fn step(&mut self) {
        while !self.core.is_over() {
            if !self.greeted {
                return;
            }
            let Some(cur) = &mut self.current else {
                let Some(line) = self.lines.pop_front() else {
                    if self.closing {
                        self.core.finish();
                    }
                    return;
                };
                self.queued_bytes -= line.len();
                if line == EXIT {
                    self.core.send(line);
                    self.core.finish();
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
                if self.core.rx.is_empty() {
                    return;
                }
                let take = want.min(self.core.rx.len());
                cur.echoed
                    .extend_from_slice(&self.core.rx.data().split_to(take));
                continue;
            }
            if cur.sent < cur.line.len() {
                let end = cur.line.len().min(cur.sent + PIECE_MAX);
                let window = &cur.line[cur.sent..end];
                let n = piece_len(window, end < cur.line.len(), EXIT);
                self.core.send(cur.line.slice(cur.sent..cur.sent + n));
                cur.sent += n;
                self.core.idle_deadline = self.core.now + self.core.config.idle_timeout;
                continue;
            }
            let cur = self.current.take().expect("matched above");
            if cur.echoed[..] != cur.line[..] {
                self.core.fail(ProtocolError::EchoMismatch.into());
                return;
            }
            self.core.emit(LegacyClientEvent::Reply(cur.line));
        }
    }
}

impl Machine for LegacyEchoClient {
    type Transmit = Bytes;
    type Event = LegacyClientEvent;

    fn handle_timeout(&mut self, now: Instant) {
        self.core.tick(now);
        if self.core.is_over() {
            return;
        }
        if self.greeting_deadline.is_some_and(|d| self.core.now >= d) {
            // The server has been quiet since its first bytes: that was the greeting.
            self.greeting_complete();
            return;
        }
        if self.waiting_for_peer() {
            self.core.check_idle();
        }
    }

    fn poll_output(&mut self) -> Output<Bytes, LegacyClientEvent> {
        let deadline = self.poll_timeout();
        self.core.poll(deadline)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let idle = self.core.idle_deadline;
        let deadline = match self.greeting_deadline {
            _ if !self.waiting_for_peer() => None, // waiting for the user's next line
            Some(d) => Some(d.min(idle)),
            None => Some(idle),
        };
        self.core.deadline(deadline)
    }
}

impl StreamMachine for LegacyEchoClient {
    fn input_buffer(&mut self, max: usize) -> &mut [u8] {
        let room = self.input_room();
        self.core.input_buffer(max, room)
    }

    fn commit_input(&mut self, now: Instant, n: usize) -> Result<(), Error> {
        if !self.core.admit(now, n)? {
            return Ok(());
        }
        self.core.touch();
        if !self.greeted {
            self.greeting_deadline = Some(self.core.now + self.core.config.legacy_ack_delay);
        }
        self.step();
        self.core.status()
    }

    fn handle_eof(&mut self, now: Instant) {
        self.core.tick(now);
        if self.core.is_over() {
            return;
        }
        if !self.greeted && !self.core.rx.is_empty() {
            self.greeting_complete();
        }
        if self.waiting_for_peer() || !self.lines.is_empty() {
            let state = if self.greeted {
                "waiting for an echo"
            } else {
                "waiting for the greeting"
            };
            self.core
                .fail(ProtocolError::UnexpectedEof { state }.into());
        } else {
            // The seed client stops quietly when the server goes.
            self.core.finish();
        }
    }

    fn abort(&mut self, reason: String) {
        self.core.abort(reason);
    }

    fn write_timeout(&self) -> Option<Duration> {
        Some(self.core.config.idle_timeout)
    }

    fn input_room(&self) -> usize {
        self.core
            .config
            .recv_buffer
            .saturating_sub(self.core.rx.len())
    }
}
