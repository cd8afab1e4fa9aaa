//! Legacy UDP: each line is one datagram; the server prints datagrams and
//! never replies. Pure machines: no sockets here.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;

use super::PIECE_MAX;
use crate::config::UdpConfig;
use crate::error::UsageError;
use crate::machine::{Datagram, DatagramMachine, Machine, Output};

/// What the legacy UDP sink tells its application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkEvent {
    /// One datagram arrived (the seed server prints it).
    Datagram {
        /// Who sent it.
        peer: SocketAddr,
        /// Its bytes, whole (the seed server would cut it at 1024).
        payload: Bytes,
    },
}

/// The legacy UDP server: records every datagram as an event and never
/// replies. It never ends by itself; the driver's shutdown stops it.
#[derive(Debug, Default)]
pub struct LegacyUdpSink {
    events: VecDeque<SinkEvent>,
}

impl LegacyUdpSink {
    /// A sink with nothing received yet.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Machine for LegacyUdpSink {
    type Transmit = Datagram;
    type Event = SinkEvent;

    fn handle_timeout(&mut self, _now: Instant) {}

    fn poll_output(&mut self) -> Output<Datagram, SinkEvent> {
        match self.events.pop_front() {
            Some(e) => Output::Event(e),
            None => Output::Wait(None),
        }
    }

    /// The sink has no timers.
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
}

impl DatagramMachine for LegacyUdpSink {
    fn handle_datagram(&mut self, _now: Instant, peer: SocketAddr, data: &[u8]) {
        self.events.push_back(SinkEvent::Datagram {
            peer,
            payload: Bytes::copy_from_slice(data),
        });
    }
}

/// What the legacy UDP sender tells its application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SenderDatagramEvent {
    /// A line of this many bytes was handed to the driver as one datagram.
    Sent(usize),
}

/// The legacy UDP client: each line one datagram to `target`, no newline,
/// no reply expected. Lines longer than [`PIECE_MAX`] are refused, because
/// the seed server reads with `recv(1024)` and would silently cut them.
/// Empty lines go as empty datagrams, as the seed client sends them.
#[derive(Debug)]
pub struct LegacyUdpSender {
    config: UdpConfig,
    target: SocketAddr,
    queue: VecDeque<Bytes>,
    events: VecDeque<SenderDatagramEvent>,
    closing: bool,
}

impl LegacyUdpSender {
    /// A sender to `target` with nothing queued.
    pub fn new(config: UdpConfig, target: SocketAddr) -> Self {
        LegacyUdpSender {
            config,
            target,
            queue: VecDeque::new(),
            events: VecDeque::new(),
            closing: false,
        }
    }

    /// Queues one line as one datagram.
    pub fn send_line(&mut self, line: impl Into<Bytes>) -> Result<(), UsageError> {
        let line = line.into();
        if self.closing {
            return Err(UsageError::Closed);
        }
        let max = PIECE_MAX.min(self.config.max_datagram);
        if line.len() > max {
            return Err(UsageError::MessageTooLarge {
                len: line.len(),
                max,
            });
        }
        if self.queue.len() >= self.config.datagram_queue {
            return Err(UsageError::WouldBlock);
        }
        self.queue.push_back(line);
        Ok(())
    }

    /// No more lines: the machine is done once the queued ones are out.
    pub fn close(&mut self) {
        self.closing = true;
    }
}

impl Machine for LegacyUdpSender {
    type Transmit = Datagram;
    type Event = SenderDatagramEvent;

    fn handle_timeout(&mut self, _now: Instant) {}

    fn poll_output(&mut self) -> Output<Datagram, SenderDatagramEvent> {
        if let Some(payload) = self.queue.pop_front() {
            self.events
                .push_back(SenderDatagramEvent::Sent(payload.len()));
            return Output::Transmit(Datagram {
                peer: self.target,
                payload,
            });
        }
        if let Some(e) = self.events.pop_front() {
            return Output::Event(e);
        }
        if self.closing {
            Output::Done(Ok(()))
        } else {
            Output::Wait(None)
        }
    }

    /// The sender has no timers.
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
}

impl DatagramMachine for LegacyUdpSender {
    /// Nothing is expected back; stray datagrams are ignored.
    fn handle_datagram(&mut self, _now: Instant, _from: SocketAddr, _data: &[u8]) {}
}
