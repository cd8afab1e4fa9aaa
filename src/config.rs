//! Every limit and timeout of every machine, in one place.
//!
//! Pure data: nothing here touches I/O. Machines copy what they need at
//! construction; drivers read the connection cap and buffer sizes.

use std::time::Duration;

use crate::error::ConfigError;

/// Limits and timeouts shared by all machines and drivers.
///
/// Every field has a documented default, and [`Config::validate`] refuses
/// zero values: a limit of zero never means "no limit" here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Largest frame payload accepted or sent, in bytes (default 1 MiB).
    /// Checked against the length prefix before anything is allocated.
    pub max_frame: usize,
    /// Largest echo message, in bytes (default 64 KiB). At most `max_frame`.
    pub max_message: usize,
    /// Most bytes a machine holds undecoded before it stops asking for input
    /// (default `max_frame` + 64 KiB, so one whole frame always fits).
    pub recv_buffer: usize,
    /// Most bytes a machine queues for the peer before it stops producing
    /// more (back-pressure; default 1 MiB).
    pub send_buffer: usize,
    /// File data per `Data` frame, in bytes (default 256 KiB).
    pub chunk_size: usize,
    /// Longest file name accepted, in bytes (default 255, the usual
    /// file-system limit for one path component).
    pub max_name_len: usize,
    /// Largest file a receiver accepts, in bytes (default 1 TiB).
    pub max_file_size: u64,
    /// Bytes of echo messages (each with its 5-byte frame header) a client
    /// may have awaiting their reply (default 64 KiB); one message of any
    /// allowed size may always be in flight alone. Keep it below what the
    /// transport buffers each way: a driver that does not read while it
    /// writes (the blocking one) could otherwise wait on a server that waits
    /// on it.
    pub echo_window: usize,
    /// A connection with no input for this long (framed protocols: no whole
    /// frame; bytes alone do not count) is dropped, and so is one
    /// whose peer takes none of our output for this long (the drivers bound
    /// every write by it; see `StreamMachine::write_timeout`). Default 60 s.
    pub idle_timeout: Duration,
    /// Largest UDP datagram echoed or sent (default 65 507, the IPv4 maximum).
    pub max_datagram: usize,
    /// Datagrams the UDP server queues before it drops new ones (default 1024).
    pub datagram_queue: usize,
    /// Replies per second the UDP echo server sends to one source address
    /// (an IP address, any port), refilling a token bucket of
    /// `udp_reply_burst` replies (default 100, at most 10^9). Datagrams
    /// beyond it get no reply, so a datagram bounced between two servers
    /// dies out and a flood with a forged source is capped at
    /// `udp_reply_burst + udp_reply_rate × seconds`.
    pub udp_reply_rate: u32,
    /// Replies the UDP echo server sends one source address back to back
    /// before `udp_reply_rate` applies: the token bucket's size (default 50).
    pub udp_reply_burst: u32,
    /// Source addresses whose token buckets the UDP echo server keeps at
    /// once (default 4096, about 50 bytes each); a new source beyond it
    /// evicts the bucket nearest to full.
    pub udp_max_sources: usize,
    /// How long a UDP probe waits for its reply before a retry (default 1 s).
    pub probe_timeout: Duration,
    /// Retries of one UDP probe before it counts as lost (default 2).
    pub probe_retries: u32,
    /// Connections a server drives at once; more wait in the backlog
    /// (default 1024).
    pub max_connections: usize,
    /// Connections a server drives at once from one source address (an IPv4
    /// address, or an IPv6 /64); one more is closed at once (default 64).
    /// Far more than one honest host needs (a `send` is one connection), and
    /// small enough that one address holds at most a sixteenth of the default
    /// `max_connections`. Raise it for many clients behind one NAT; above
    /// `max_connections` it has no effect.
    pub max_per_source: usize,
    /// Legacy file receiver: how long it holds back the `success` for a read
    /// that does not end a line, so one sender piece split over several reads
    /// gets one ack, not several a naive sender could see glued; and how
    /// long the legacy echo client waits for more of the greeting after its
    /// last byte (default 10 ms). See [`crate::legacy`].
    pub legacy_ack_delay: Duration,
    /// Legacy file sender: how long it waits, after the last piece is acked,
    /// with no further ack before it sends `quit`, so `quit` is never read
    /// together with data; also before the piece after one that had to tear
    /// the word `quit` (default 40 ms: four times `legacy_ack_delay`, and far
    /// above the gap between two reads of one piece on any live receiver).
    pub legacy_quit_settle: Duration,
    /// Framed protocols: the peer's preamble must be complete this long
    /// after the session starts, or the session fails as too slow
    /// (default 10 s).
    pub handshake_timeout: Duration,
    /// Framed protocols: once the first byte of a frame has arrived, the
    /// whole frame must arrive within this (default 30 s), so a peer cannot
    /// hold a session by trickling bytes. For `Data` this is a minimum rate
    /// of `chunk_size / frame_timeout` (8.7 KB/s by default); only whole
    /// frames restart the idle timer.
    pub frame_timeout: Duration,
    /// Framed protocols: after a side has queued an `Error` frame, how long
    /// it keeps reading (and discarding) what the peer still sends, waiting
    /// for the peer's EOF, before it closes (default 2 s). Closing on unread
    /// data resets a TCP connection, which would destroy the `Error` frame
    /// before the peer reads it.
    pub linger: Duration,
    /// File receiver: offers one session may have refused (by the machine
    /// or by the application) before the session fails (default 1000).
    pub max_refusals: u64,
    /// Bytes of frames a session holds undecoded before it draws on its
    /// server's shared receive budget (default 64 KiB, so echo sessions with
    /// the default `max_message` never do).
    pub recv_allowance: usize,
    /// The shared receive budget of a server: bytes all its sessions
    /// together may hold undecoded beyond their `recv_allowance` (default
    /// 64 MiB). A session that needs more while it is spent fails as busy.
    /// See [`RecvBudget`](crate::session::RecvBudget).
    pub recv_budget: usize,
}

impl Default for Config {
    fn default() -> Self {
        const MIB: usize = 1024 * 1024;
        Config {
            max_frame: MIB,
            max_message: 64 * 1024,
            recv_buffer: MIB + 64 * 1024,
            send_buffer: MIB,
            chunk_size: 256 * 1024,
            max_name_len: 255,
            max_file_size: 1 << 40,
            echo_window: 64 * 1024,
            idle_timeout: Duration::from_secs(60),
            max_datagram: 65_507,
            datagram_queue: 1024,
            udp_reply_rate: 100,
            udp_reply_burst: 50,
            udp_max_sources: 4096,
            probe_timeout: Duration::from_secs(1),
            probe_retries: 2,
            max_connections: 1024,
            max_per_source: 64,
            legacy_ack_delay: Duration::from_millis(10),
            legacy_quit_settle: Duration::from_millis(40),
            handshake_timeout: Duration::from_secs(10),
            frame_timeout: Duration::from_secs(30),
            linger: Duration::from_secs(2),
            max_refusals: 1000,
            recv_allowance: 64 * 1024,
            recv_budget: 64 * MIB,
        }
    }
}

impl Config {
    /// Checks that no limit is zero and that the limits fit together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let nonzero: [(&'static str, u128); 14] = [
            ("max_frame", self.max_frame as u128),
            ("max_message", self.max_message as u128),
            ("recv_buffer", self.recv_buffer as u128),
            ("send_buffer", self.send_buffer as u128),
            ("chunk_size", self.chunk_size as u128),
            ("max_name_len", self.max_name_len as u128),
            ("max_file_size", self.max_file_size as u128),
            ("echo_window", self.echo_window as u128),
            ("idle_timeout", self.idle_timeout.as_nanos()),
            ("max_datagram", self.max_datagram as u128),
            ("probe_timeout", self.probe_timeout.as_nanos()),
            ("max_connections", self.max_connections as u128),
            ("legacy_ack_delay", self.legacy_ack_delay.as_nanos()),
            ("legacy_quit_settle", self.legacy_quit_settle.as_nanos()),
        ];
        if let Some((name, _)) = nonzero.iter().find(|(_, v)| *v == 0) {
            return Err(ConfigError::Zero(name));
        }
        if self.max_frame > u32::MAX as usize {
            return Err(ConfigError::Inconsistent(
                "max_frame must fit the u32 length prefix",
            ));
        }
        if self.max_message > self.max_frame || self.chunk_size > self.max_frame {
            return Err(ConfigError::Inconsistent(
                "max_message and chunk_size must not exceed max_frame",
            ));
        }
        if self.recv_buffer < self.max_frame + crate::codec::HEADER_LEN {
            return Err(ConfigError::Inconsistent(
                "recv_buffer must hold one whole frame (max_frame + header)",
            ));
        }
        if self.legacy_quit_settle <= self.legacy_ack_delay {
            return Err(ConfigError::Inconsistent(
                "legacy_quit_settle must exceed legacy_ack_delay",
            ));
        }
        if self.datagram_queue == 0 {
            return Err(ConfigError::Zero("datagram_queue"));
        }
        if self.max_per_source == 0 {
            return Err(ConfigError::Zero("max_per_source"));
        }
        self.validate_udp_limits()?;
        self.validate_session_bounds()
    }

    /// The UDP echo server's reply limits: none zero, the rate at most one
    /// reply per nanosecond.
    fn validate_udp_limits(&self) -> Result<(), ConfigError> {
        let nonzero = [
            ("udp_reply_rate", self.udp_reply_rate as usize),
            ("udp_reply_burst", self.udp_reply_burst as usize),
            ("udp_max_sources", self.udp_max_sources),
        ];
        if let Some((name, _)) = nonzero.iter().find(|(_, v)| *v == 0) {
            return Err(ConfigError::Zero(name));
        }
        if self.udp_reply_rate > 1_000_000_000 {
            return Err(ConfigError::Inconsistent(
                "udp_reply_rate must be at most 1000000000 replies per second",
            ));
        }
        Ok(())
    }

    /// The deadlines and costs that bound one framed session.
    fn validate_session_bounds(&self) -> Result<(), ConfigError> {
        let nonzero: [(&'static str, u128); 6] = [
            ("handshake_timeout", self.handshake_timeout.as_nanos()),
            ("frame_timeout", self.frame_timeout.as_nanos()),
            ("linger", self.linger.as_nanos()),
            ("max_refusals", u128::from(self.max_refusals)),
            ("recv_allowance", self.recv_allowance as u128),
            ("recv_budget", self.recv_budget as u128),
        ];
        if let Some((name, _)) = nonzero.iter().find(|(_, v)| *v == 0) {
            return Err(ConfigError::Zero(name));
        }
        if self.recv_allowance.saturating_add(self.recv_budget) < self.recv_buffer {
            return Err(ConfigError::Inconsistent(
                "recv_allowance + recv_budget must cover recv_buffer, so one session alone is never refused",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_valid() {
        assert_eq!(Config::default().validate(), Ok(()));
    }

    #[test]
    fn zero_limit_is_refused_not_treated_as_unlimited() {
        let cfg = Config {
            max_frame: 0,
            ..Config::default()
        };
        assert_eq!(cfg.validate(), Err(ConfigError::Zero("max_frame")));
    }

    #[test]
    fn a_zero_per_source_cap_is_refused() {
        let cfg = Config {
            max_per_source: 0,
            ..Config::default()
        };
        assert_eq!(cfg.validate(), Err(ConfigError::Zero("max_per_source")));
    }

    #[test]
    fn legacy_settle_must_exceed_the_ack_delay() {
        let cfg = Config {
            legacy_quit_settle: Duration::from_millis(5),
            ..Config::default()
        };
        assert!(matches!(cfg.validate(), Err(ConfigError::Inconsistent(_))));
    }

    #[test]
    fn zero_udp_reply_limits_are_refused_not_unlimited() {
        let zeroed = [
            Config {
                udp_reply_rate: 0,
                ..Config::default()
            },
            Config {
                udp_reply_burst: 0,
                ..Config::default()
            },
            Config {
                udp_max_sources: 0,
                ..Config::default()
            },
        ];
        let names = ["udp_reply_rate", "udp_reply_burst", "udp_max_sources"];
        for (cfg, name) in zeroed.iter().zip(names) {
            assert_eq!(cfg.validate(), Err(ConfigError::Zero(name)));
        }
        let too_fast = Config {
            udp_reply_rate: 1_000_000_001,
            ..Config::default()
        };
        assert!(matches!(
            too_fast.validate(),
            Err(ConfigError::Inconsistent(_))
        ));
    }

    #[test]
    fn zero_session_bounds_are_refused_not_treated_as_unlimited() {
        let zeroed = [
            (
                "handshake_timeout",
                Config {
                    handshake_timeout: Duration::ZERO,
                    ..Config::default()
                },
            ),
            (
                "frame_timeout",
                Config {
                    frame_timeout: Duration::ZERO,
                    ..Config::default()
                },
            ),
            (
                "linger",
                Config {
                    linger: Duration::ZERO,
                    ..Config::default()
                },
            ),
            (
                "max_refusals",
                Config {
                    max_refusals: 0,
                    ..Config::default()
                },
            ),
            (
                "recv_allowance",
                Config {
                    recv_allowance: 0,
                    ..Config::default()
                },
            ),
            (
                "recv_budget",
                Config {
                    recv_budget: 0,
                    ..Config::default()
                },
            ),
        ];
        for (name, cfg) in zeroed {
            assert_eq!(cfg.validate(), Err(ConfigError::Zero(name)));
        }
    }

    #[test]
    fn a_budget_too_small_for_one_session_is_refused() {
        let cfg = Config {
            recv_allowance: 1024,
            recv_budget: 1024,
            ..Config::default()
        };
        assert!(matches!(cfg.validate(), Err(ConfigError::Inconsistent(_))));
    }

    #[test]
    fn recv_buffer_smaller_than_a_frame_is_refused() {
        let cfg = Config {
            recv_buffer: 10,
            ..Config::default()
        };
        assert!(matches!(cfg.validate(), Err(ConfigError::Inconsistent(_))));
    }
}
