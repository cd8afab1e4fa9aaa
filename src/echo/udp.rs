//! RFC 862 datagram echo: a server that answers each datagram to its
//! sender, and a ping client that measures loss and round-trip time.
//!
//! The server never answers a well-known service port and limits its
//! replies per source address (see `reply_limit.rs`): a reply goes to
//! whatever address the datagram claims, so without limits one forged
//! datagram between two echo servers bounces forever, and a forged flood is
//! reflected at its victim.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};

use super::reply_limit::{refused_source, ReplyLimiter, ReplyRefusal};
use crate::config::UdpConfig;
use crate::machine::{Datagram, DatagramMachine, Machine, Output};

/// What the UDP echo server tells its application. At most
/// `UdpConfig::datagram_queue` events wait at once; beyond that they are
/// dropped (the counts in [`UdpEchoServer::stats`] stay exact).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UdpEvent {
    /// A datagram of `len` bytes is queued back to `peer`.
    Echoed {
        /// Who sent it.
        peer: SocketAddr,
        /// Its size.
        len: usize,
    },
    /// The reply queue was full (or the datagram too large): dropped, as UDP may.
    Dropped {
        /// Who sent it.
        peer: SocketAddr,
        /// Its size.
        len: usize,
    },
    /// No reply, on purpose: the source is a service port or cannot send,
    /// or it has used its replies for now.
    Refused {
        /// Who it claims to come from.
        peer: SocketAddr,
        /// Its size.
        len: usize,
        /// Why.
        reason: ReplyRefusal,
    },
}

/// What the UDP echo server did with every datagram so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UdpServerStats {
    /// Datagrams answered.
    pub echoed: u64,
    /// Datagrams dropped for a full queue or their size.
    pub dropped: u64,
    /// Datagrams from a service port ([`ReplyRefusal::ServicePort`]).
    pub refused_port: u64,
    /// Datagrams from an address that cannot send ([`ReplyRefusal::BadAddress`]).
    pub refused_address: u64,
    /// Datagrams over their source's reply rate ([`ReplyRefusal::RateLimited`]).
    pub rate_limited: u64,
    /// Events left out because `UdpConfig::datagram_queue` were waiting.
    pub events_dropped: u64,
}

/// The UDP echo server: each datagram goes back to its sender unchanged,
/// never larger than it came, unless its source is refused or over its
/// reply rate (`UdpConfig::udp_reply_rate`, `udp_reply_burst`,
/// `udp_max_sources`). It never ends by itself.
#[derive(Debug)]
pub struct UdpEchoServer {
    config: UdpConfig,
    limiter: ReplyLimiter,
    queue: VecDeque<Datagram>,
    events: VecDeque<UdpEvent>,
    stats: UdpServerStats,
}

impl UdpEchoServer {
    /// A server with the given limits.
    pub fn new(config: UdpConfig) -> Self {
        UdpEchoServer {
            limiter: ReplyLimiter::new(&config),
            config,
            queue: VecDeque::new(),
            events: VecDeque::new(),
            stats: UdpServerStats::default(),
        }
    }

    /// What the server did with every datagram so far.
    pub fn stats(&self) -> UdpServerStats {
        self.stats
    }

    /// Source addresses whose reply rate is tracked now (at most
    /// `UdpConfig::udp_max_sources`).
    pub fn tracked_sources(&self) -> usize {
        self.limiter.tracked()
    }

    fn emit(&mut self, event: UdpEvent) {
        if self.events.len() >= self.config.datagram_queue {
            self.stats.events_dropped += 1;
            return;
        }
        self.events.push_back(event);
    }

    fn refuse(&mut self, peer: SocketAddr, len: usize, reason: ReplyRefusal) {
        let count = match reason {
            ReplyRefusal::ServicePort => &mut self.stats.refused_port,
            ReplyRefusal::BadAddress => &mut self.stats.refused_address,
            ReplyRefusal::RateLimited => &mut self.stats.rate_limited,
        };
        *count += 1;
        self.emit(UdpEvent::Refused { peer, len, reason });
    }
}

impl Machine for UdpEchoServer {
    type Transmit = Datagram;
    type Event = UdpEvent;

    fn handle_timeout(&mut self, _now: Instant) {}

    fn poll_output(&mut self) -> Output<Datagram, UdpEvent> {
        if let Some(d) = self.queue.pop_front() {
            return Output::Transmit(d);
        }
        match self.events.pop_front() {
            Some(e) => Output::Event(e),
            None => Output::Wait(None),
        }
    }

    /// The server has no timers.
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
}

impl DatagramMachine for UdpEchoServer {
    fn handle_datagram(&mut self, now: Instant, peer: SocketAddr, data: &[u8]) {
        let len = data.len();
        if let Some(reason) = refused_source(peer) {
            return self.refuse(peer, len, reason);
        }
        if len > self.config.max_datagram || self.queue.len() >= self.config.datagram_queue {
            self.stats.dropped += 1;
            return self.emit(UdpEvent::Dropped { peer, len });
        }
        if !self.limiter.allow(now, peer) {
            return self.refuse(peer, len, ReplyRefusal::RateLimited);
        }
        let payload = Bytes::copy_from_slice(data);
        self.queue.push_back(Datagram { peer, payload });
        self.stats.echoed += 1;
        self.emit(UdpEvent::Echoed { peer, len });
    }
}

/// Loss and round-trip figures of a finished ping.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PingStats {
    /// Probes sent (not counting retries).
    pub probes: u32,
    /// Probes answered.
    pub received: u32,
    /// Datagrams sent, retries included.
    pub transmitted: u32,
    /// Fastest answer.
    pub rtt_min: Option<Duration>,
    /// Slowest answer.
    pub rtt_max: Option<Duration>,
    /// Sum of all answers' round trips.
    pub rtt_total: Duration,
}

impl PingStats {
    /// Probes never answered.
    pub fn lost(&self) -> u32 {
        self.probes - self.received
    }

    /// Mean round trip of the answered probes.
    pub fn rtt_avg(&self) -> Option<Duration> {
        (self.received > 0).then(|| self.rtt_total / self.received)
    }

    fn record(&mut self, rtt: Duration) {
        self.received += 1;
        self.rtt_total += rtt;
        self.rtt_min = Some(self.rtt_min.map_or(rtt, |m| m.min(rtt)));
        self.rtt_max = Some(self.rtt_max.map_or(rtt, |m| m.max(rtt)));
    }
}

/// What the ping client tells its application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PingEvent {
    /// Probe `seq` was answered after `rtt`.
    Reply {
        /// The probe's number.
        seq: u32,
        /// Its round trip.
        rtt: Duration,
    },
    /// Probe `seq` got no answer after all retries.
    Lost {
        /// The probe's number.
        seq: u32,
    },
    /// Every probe is answered or lost.
    Finished(PingStats),
}

const PROBE_MAGIC: &[u8; 4] = b"EXPG";
const PROBE_HEADER: usize = 12;

/// The smallest probe [`UdpPing`] sends: its header (magic, sequence number,
/// attempt), in bytes.
pub const MIN_PROBE_SIZE: usize = PROBE_HEADER;

/// The UDP ping client: sends `count` probes one after another, each retried
/// on the machine's timer, and reports loss and RTT min/avg/max.
#[derive(Debug)]
pub struct UdpPing {
    config: UdpConfig,
    target: SocketAddr,
    count: u32,
    size: usize,
    seq: u32,
    /// When each attempt of the current probe was sent.
    sent_at: Vec<Instant>,
    deadline: Option<Instant>,
    stats: PingStats,
    queue: VecDeque<Datagram>,
    events: VecDeque<PingEvent>,
    finished: bool,
}

impl UdpPing {
    /// A ping of `count` probes of `size` bytes to `target`, starting at
    /// `now`. A size outside [`MIN_PROBE_SIZE`] ..= `config.max_datagram` is
    /// clamped into it; check it first if your user must be told.
    pub fn new(
        config: UdpConfig,
        now: Instant,
        target: SocketAddr,
        count: u32,
        size: usize,
    ) -> Self {
        let size = size.clamp(PROBE_HEADER, config.max_datagram.max(PROBE_HEADER));
        let mut ping = UdpPing {
            config,
            target,
            count,
            size,
            seq: 0,
            sent_at: Vec::new(),
            deadline: None,
            stats: PingStats::default(),
            queue: VecDeque::new(),
            events: VecDeque::new(),
            finished: false,
        };
        ping.next_probe(now);
        ping
    }

    fn probe(&self, seq: u32, attempt: u32) -> Bytes {
        let mut b = BytesMut::with_capacity(self.size);
        b.put_slice(PROBE_MAGIC);
        b.put_u32(seq);
        b.put_u32(attempt);
        b.resize(self.size, 0);
        b.freeze()
    }

    fn transmit(&mut self, now: Instant) {
        let attempt = self.sent_at.len() as u32;
        let payload = self.probe(self.seq, attempt);
        self.queue.push_back(Datagram {
            peer: self.target,
            payload,
        });
        self.sent_at.push(now);
        self.stats.transmitted += 1;
        self.deadline = Some(now + self.config.probe_timeout);
    }

    fn next_probe(&mut self, now: Instant) {
        if self.stats.probes == self.count {
            self.finished = true;
            self.deadline = None;
            self.events
                .push_back(PingEvent::Finished(self.stats.clone()));
            return;
        }
        self.seq = self.stats.probes;
        self.stats.probes += 1;
        self.sent_at.clear();
        self.transmit(now);
    }

    /// Which attempt of the current probe `data` answers, if any.
    fn matching_attempt(&self, data: &[u8]) -> Option<usize> {
        (0..self.sent_at.len()).find(|&a| self.probe(self.seq, a as u32) == data)
    }
}

impl Machine for UdpPing {
    type Transmit = Datagram;
    type Event = PingEvent;

    fn handle_timeout(&mut self, now: Instant) {
        let Some(deadline) = self.deadline else {
            return;
        };
        if now < deadline {
            return;
        }
        if self.sent_at.len() as u32 <= self.config.probe_retries {
            self.transmit(now);
        } else {
            self.events.push_back(PingEvent::Lost { seq: self.seq });
            self.next_probe(now);
        }
    }

    fn poll_output(&mut self) -> Output<Datagram, PingEvent> {
        if let Some(d) = self.queue.pop_front() {
            return Output::Transmit(d);
        }
        if let Some(e) = self.events.pop_front() {
            return Output::Event(e);
        }
        if self.finished {
            Output::Done(Ok(()))
        } else {
            Output::Wait(self.deadline)
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.deadline.filter(|_| !self.finished)
    }
}

impl DatagramMachine for UdpPing {
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        if self.finished || from != self.target {
            return;
        }
        // Anything but an exact copy of an attempt of the current probe
        // (late replies to earlier probes, strangers) is ignored.
        let Some(attempt) = self.matching_attempt(data) else {
            return;
        };
        let rtt = now.saturating_duration_since(self.sent_at[attempt]);
        self.stats.record(rtt);
        self.events
            .push_back(PingEvent::Reply { seq: self.seq, rtt });
        self.next_probe(now);
    }
}
