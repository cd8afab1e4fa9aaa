//! Per-source reply limits of the UDP echo server: which sources are never
//! answered, and a token bucket per source address. Pure: time comes in as
//! a value.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::config::UdpConfig;

/// Source ports from 1024 up that the UDP echo server never answers: the
/// well-known UDP services that answer (or amplify) whatever reaches them,
/// so a datagram forged to come from one of them would start a loop or a
/// reflection: OpenVPN (1194), MS SQL browser (1434), SSDP (1900), Apple
/// Remote Desktop (3283), RDP (3389), STUN (3478), WS-Discovery (3702),
/// SIP (5060), mDNS (5353), CoAP (5683), Ubiquiti discovery (10001),
/// memcached (11211), Steam/Source (27015) and Quake 3 (27960). Every
/// source port below 1024 (echo 7, daytime 13, QOTD 17, chargen 19, time
/// 37, DNS 53, NTP 123, SNMP 161...) and port 0 are refused as well. None is
/// in the ephemeral range clients send from (32768 and up on Linux, 49152
/// and up elsewhere).
pub const REFUSED_SOURCE_PORTS: [u16; 14] = [
    1194, 1434, 1900, 3283, 3389, 3478, 3702, 5060, 5353, 5683, 10001, 11211, 27015, 27960,
];

/// Why the UDP echo server sent no reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyRefusal {
    /// The source port is 0, below 1024 or in [`REFUSED_SOURCE_PORTS`]: a
    /// service that would answer the reply.
    ServicePort,
    /// The source address cannot send: unspecified, multicast or broadcast.
    BadAddress,
    /// The source address has used its replies (`UdpConfig::udp_reply_rate`,
    /// `UdpConfig::udp_reply_burst`).
    RateLimited,
}

impl fmt::Display for ReplyRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReplyRefusal::ServicePort => "its source port is a service port",
            ReplyRefusal::BadAddress => "its source address cannot send",
            ReplyRefusal::RateLimited => "its source is over its reply rate",
        })
    }
}

/// Why a datagram from `peer` must never be answered, whatever the rate.
pub fn refused_source(peer: SocketAddr) -> Option<ReplyRefusal> {
    let port = peer.port();
    if port < 1024 || REFUSED_SOURCE_PORTS.contains(&port) {
        return Some(ReplyRefusal::ServicePort);
    }
    let ip = canonical(peer.ip());
    let broadcast = matches!(ip, IpAddr::V4(v4) if v4.is_broadcast());
    if ip.is_unspecified() || ip.is_multicast() || broadcast {
        return Some(ReplyRefusal::BadAddress);
    }
    None
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is, so one host has
/// one bucket on a dual-stack socket.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// A token bucket per source address, at most `capacity` of them.
///
/// Each bucket is kept as the instant it will be full again (the GCRA form
/// of a token bucket): a reply costs `interval` (one token), and is allowed
/// while the bucket lacks at most `burst - 1` tokens. Buckets that are full
/// again are forgotten (a new one starts full), so only sources with recent
/// replies take memory.
#[derive(Debug)]
pub struct ReplyLimiter {
    interval: Duration,
    /// How far `full_at` may lie ahead of now for one more reply.
    tolerance: Duration,
    capacity: usize,
    full_at: HashMap<IpAddr, Instant>,
    /// The same buckets, nearest to full first.
    by_fullness: BTreeSet<(Instant, IpAddr)>,
}

impl ReplyLimiter {
    /// A limiter with `config`'s rate, burst and source cap (zeros count
    /// as one, so an unvalidated config cannot disable it).
    pub fn new(config: &UdpConfig) -> Self {
        let rate = u64::from(config.udp_reply_rate.max(1));
        // Rounded up, so replies never exceed burst + rate × time.
        let interval = Duration::from_nanos(1_000_000_000_u64.div_ceil(rate));
        let spare = config.udp_reply_burst.max(1) - 1;
        ReplyLimiter {
            interval,
            tolerance: interval.checked_mul(spare).unwrap_or(Duration::MAX),
            capacity: config.udp_max_sources.max(1),
            full_at: HashMap::new(),
            by_fullness: BTreeSet::new(),
        }
    }

    /// Takes one reply from `peer`'s bucket at `now`; false if it is empty
    /// (and then nothing changes).
    pub fn allow(&mut self, now: Instant, peer: SocketAddr) -> bool {
        self.forget_full(now);
        let ip = canonical(peer.ip());
        let full_at = self.full_at.get(&ip).copied();
        let start = full_at.map_or(now, |at| at.max(now));
        if start.saturating_duration_since(now) > self.tolerance {
            return false;
        }
        match full_at {
            Some(old) => {
                self.by_fullness.remove(&(old, ip));
            }
            None if self.full_at.len() >= self.capacity => self.evict_fullest(),
            None => {}
        }
        let next = start + self.interval;
        self.full_at.insert(ip, next);
        self.by_fullness.insert((next, ip));
        true
    }

    /// Source addresses with a bucket now.
    pub fn tracked(&self) -> usize {
        self.full_at.len()
    }

    /// Drops the buckets that are full again by `now`: they say nothing a
    /// new bucket would not.
    fn forget_full(&mut self, now: Instant) {
        while let Some(&(at, ip)) = self.by_fullness.first() {
            if at > now {
                break;
            }
            self.by_fullness.pop_first();
            self.full_at.remove(&ip);
        }
    }

    /// Makes room for one bucket by dropping the one nearest to full: the
    /// source least limited, whose return with a full bucket gives it the
    /// fewest extra replies (a limited source is not freed by a spray of
    /// new ones).
    fn evict_fullest(&mut self) {
        if let Some((_, ip)) = self.by_fullness.pop_first() {
            self.full_at.remove(&ip);
        }
    }
}
