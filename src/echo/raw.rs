//! RFC 862 echo over a stream: raw bytes back as they came, no greeting,
//! no framing, so `nc`, `socat` and any RFC 862 client can talk to it.

use std::collections::VecDeque;
use std::time::Instant;

use bytes::Bytes;

use crate::config::Config;
use crate::error::{Error, UsageError};
use crate::machine::{Machine, Output, StreamMachine};

/// What the raw echo machine tells its application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawEvent {
    /// This many bytes were queued to go back.
    Echoed(usize),
}

/// The RFC 862 stream echo machine. It ends when the peer closes its side
/// and every byte has gone back; output is bounded by `send_buffer`.
#[derive(Debug)]
pub struct RawEcho {
    config: Config,
    now: Instant,
    idle_deadline: Instant,
    tx: VecDeque<Bytes>,
    tx_bytes: usize,
    events: VecDeque<RawEvent>,
    eof: bool,
    failure: Option<Error>,
}

impl RawEcho {
    /// A raw echo session starting at `now`.
    pub fn new(config: Config, now: Instant) -> Self {
        RawEcho {
            idle_deadline: now + config.idle_timeout,
            config,
            now,
            tx: VecDeque::new(),
            tx_bytes: 0,
            events: VecDeque::new(),
            eof: false,
            failure: None,
        }
    }
}

impl Machine for RawEcho {
    type Transmit = Bytes;
    type Event = RawEvent;

    fn handle_timeout(&mut self, now: Instant) {
        self.now = self.now.max(now);
        if !self.eof && self.failure.is_none() && self.now >= self.idle_deadline {
            self.failure = Some(Error::TimedOut(self.config.idle_timeout));
        }
    }

    fn poll_output(&mut self) -> Output<Bytes, RawEvent> {
        if let Some(bytes) = self.tx.pop_front() {
            self.tx_bytes -= bytes.len();
            self.idle_deadline = self.now + self.config.idle_timeout;
            return Output::Transmit(bytes);
        }
        if let Some(event) = self.events.pop_front() {
            return Output::Event(event);
        }
        match &self.failure {
            Some(e) => Output::Done(Err(e.clone())),
            None if self.eof => Output::Done(Ok(())),
            None => Output::Wait(Some(self.idle_deadline)),
        }
    }
}

impl StreamMachine for RawEcho {
    fn handle_input(&mut self, now: Instant, data: &[u8]) -> Result<(), Error> {
        self.now = self.now.max(now);
        if let Some(e) = &self.failure {
            return Err(e.clone());
        }
        let room = self.input_room();
        if data.len() > room {
            let e = Error::from(UsageError::InputOverflow {
                len: data.len(),
                room,
            });
            self.failure = Some(e.clone());
            return Err(e);
        }
        if !data.is_empty() && !self.eof {
            self.idle_deadline = self.now + self.config.idle_timeout;
            self.tx_bytes += data.len();
            self.tx.push_back(Bytes::copy_from_slice(data));
            self.events.push_back(RawEvent::Echoed(data.len()));
        }
        Ok(())
    }

    fn handle_eof(&mut self, now: Instant) {
        self.now = self.now.max(now);
        self.eof = true;
    }

    fn input_room(&self) -> usize {
        self.config.send_buffer.saturating_sub(self.tx_bytes)
    }
}
