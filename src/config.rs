//! Every limit and timeout of every machine, one struct per concern, each
//! taken (and validated) by the constructor that uses it:
//!
//! | struct | concern | taken by |
//! |---|---|---|
//! | [`SessionLimits`] | one framed session: memory, deadlines, linger | [`Framed::new`](crate::session::Framed::new) (every framed machine) |
//! | [`EchoConfig`] | the framed echo protocol | [`echo::ServerRole::new`](crate::echo::ServerRole::new), [`echo::ClientRole::new`](crate::echo::ClientRole::new) |
//! | [`TransferConfig`] | the file-transfer protocol | [`SenderRole::new`](crate::xfer::SenderRole::new), [`ReceiverRole::new`](crate::xfer::ReceiverRole::new) |
//! | [`UnframedConfig`] | RFC 862 echo and the legacy stream protocols | [`RawEcho::new`](crate::echo::RawEcho::new), the `Legacy*::new` stream machines |
//! | [`UdpConfig`] | UDP echo, probes and the legacy UDP sender | [`UdpEchoServer::new`](crate::echo::UdpEchoServer::new), [`UdpPing::new`](crate::echo::UdpPing::new), [`LegacyUdpSender::new`](crate::legacy::LegacyUdpSender::new) |
//! | [`Limits`](crate::driver::Limits) | a server: connection caps, shared receive budget | the drivers' `serve` |
//!
//! A machine constructor never panics on a bad config: it validates what it
//! takes and fails the machine at once with
//! [`UsageError::BadConfig`](crate::UsageError::BadConfig), whose
//! [`ConfigError`] names the field. Limits that span two concerns are
//! checked where they meet: a framed role's config against the session's
//! `max_frame` in [`Framed::new`](crate::session::Framed::new) (through
//! [`Role::frame_limits`](crate::session::Role::frame_limits)), the
//! server's receive budget against a session's in
//! [`Framed::with_recv_budget`](crate::session::Framed::with_recv_budget).
//!
//! Every field has a documented default, and zero is refused: a limit of
//! zero never means "no limit" here. Pure data: nothing here touches I/O.

use std::time::Duration;

use crate::error::ConfigError;

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

/// Fails with [`ConfigError::Zero`] naming the first field that is zero.
fn refuse_zero(fields: &[(&'static str, u128)]) -> Result<(), ConfigError> {
    match fields.iter().find(|(_, value)| *value == 0) {
        Some((field, _)) => Err(ConfigError::Zero(field)),
        None => Ok(()),
    }
}

/// Fails with [`ConfigError::Inconsistent`] on `field` unless `holds`.
fn require(holds: bool, field: &'static str, rule: &'static str) -> Result<(), ConfigError> {
    if holds {
        Ok(())
    } else {
        Err(ConfigError::Inconsistent { field, rule })
    }
}

/// What bounds one framed session, whatever its role: memory, deadlines
/// and the lingering close. Taken by
/// [`Framed::new`](crate::session::Framed::new).
///
/// (The decoder's per-frame-type bounds are
/// [`codec::FrameLimits`](crate::codec::FrameLimits), made from these and
/// the role's own config.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionLimits {
    /// Largest frame payload accepted or sent, in bytes (default 1 MiB).
    /// Checked against the length prefix before anything is allocated.
    /// At most `u32::MAX` (the length prefix).
    pub max_frame: usize,
    /// Most bytes a machine holds undecoded before it stops asking for input
    /// (default `max_frame` + 64 KiB, so one whole frame always fits). At
    /// least `max_frame` + the 5-byte header.
    pub recv_buffer: usize,
    /// Most bytes a machine queues for the peer before it stops producing
    /// more (back-pressure; default 1 MiB).
    pub send_buffer: usize,
    /// A connection with no whole frame from the peer for this long (bytes
    /// alone do not count) is dropped, and so is one whose peer takes none
    /// of our output for this long (the drivers bound every write by it;
    /// see `StreamMachine::write_timeout`). Default 60 s.
    pub idle_timeout: Duration,
    /// The peer's preamble must be complete this long after the session
    /// starts, or the session fails as too slow (default 10 s).
    pub handshake_timeout: Duration,
    /// Once the first byte of a frame has arrived, the whole frame must
    /// arrive within this (default 30 s), so a peer cannot hold a session by
    /// trickling bytes. For `Data` this is a minimum rate of
    /// `chunk_size / frame_timeout` (8.7 KB/s by default); only whole
    /// frames restart the idle timer.
    pub frame_timeout: Duration,
    /// After a side has queued an `Error` frame, how long it keeps reading
    /// (and discarding) what the peer still sends, waiting for the peer's
    /// EOF, before it closes (default 2 s). Closing on unread data resets a
    /// TCP connection, which would destroy the `Error` frame before the
    /// peer reads it.
    pub linger: Duration,
    /// Bytes of frames a session holds undecoded before it draws on its
    /// server's shared receive budget (default 64 KiB, so echo sessions with
    /// the default `max_message` never do). See
    /// [`Limits::recv_budget`](crate::driver::Limits::recv_budget).
    pub recv_allowance: usize,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            max_frame: MIB,
            recv_buffer: MIB + 64 * KIB,
            send_buffer: MIB,
            idle_timeout: Duration::from_secs(60),
            handshake_timeout: Duration::from_secs(10),
            frame_timeout: Duration::from_secs(30),
            linger: Duration::from_secs(2),
            recv_allowance: 64 * KIB,
        }
    }
}

impl SessionLimits {
    /// Checks that no limit is zero and that one whole frame fits.
    pub fn validate(&self) -> Result<(), ConfigError> {
        refuse_zero(&[
            ("max_frame", self.max_frame as u128),
            ("recv_buffer", self.recv_buffer as u128),
            ("send_buffer", self.send_buffer as u128),
            ("idle_timeout", self.idle_timeout.as_nanos()),
            ("handshake_timeout", self.handshake_timeout.as_nanos()),
            ("frame_timeout", self.frame_timeout.as_nanos()),
            ("linger", self.linger.as_nanos()),
            ("recv_allowance", self.recv_allowance as u128),
        ])?;
        require(
            self.max_frame <= u32::MAX as usize,
            "max_frame",
            "must fit the u32 length prefix",
        )?;
        require(
            self.recv_buffer >= self.max_frame.saturating_add(crate::codec::HEADER_LEN),
            "recv_buffer",
            "must hold one whole frame (max_frame + 5-byte header)",
        )
    }
}

/// The framed echo protocol's own limits. Taken by
/// [`echo::ServerRole::new`](crate::echo::ServerRole::new) and
/// [`echo::ClientRole::new`](crate::echo::ClientRole::new).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EchoConfig {
    /// Largest echo message (and greeting), in bytes (default 64 KiB). At
    /// most the session's `max_frame`.
    pub max_message: usize,
    /// Bytes of echo messages (each with its 5-byte frame header) a client
    /// may have awaiting their reply (default 64 KiB); one message of any
    /// allowed size may always be in flight alone. Keep it below what the
    /// transport buffers each way: a driver that does not read while it
    /// writes (the blocking one) could otherwise wait on a server that waits
    /// on it.
    pub echo_window: usize,
}

impl Default for EchoConfig {
    fn default() -> Self {
        EchoConfig {
            max_message: 64 * KIB,
            echo_window: 64 * KIB,
        }
    }
}

impl EchoConfig {
    /// Checks that no limit is zero and that a message fits one frame of
    /// `session`.
    pub fn validate(&self, session: &SessionLimits) -> Result<(), ConfigError> {
        refuse_zero(&[
            ("max_message", self.max_message as u128),
            ("echo_window", self.echo_window as u128),
        ])?;
        require(
            self.max_message <= session.max_frame,
            "max_message",
            "must not exceed the session's max_frame",
        )
    }
}

/// The file-transfer protocol's own limits. Taken by
/// [`SenderRole::new`](crate::xfer::SenderRole::new) and
/// [`ReceiverRole::new`](crate::xfer::ReceiverRole::new).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferConfig {
    /// File data per `Data` frame, in bytes (default 256 KiB). At most the
    /// session's `max_frame`.
    pub chunk_size: usize,
    /// Longest file name accepted, in bytes (default 255, the usual
    /// file-system limit for one path component).
    pub max_name_len: usize,
    /// Largest file a receiver accepts, in bytes (default 1 TiB).
    pub max_file_size: u64,
    /// File receiver: offers one session may have refused (by the machine
    /// or by the application) before the session fails (default 1000).
    pub max_refusals: u64,
    /// Most entries offered and not yet finished (saved, refused or
    /// skipped) at once (default 256): the receiver announces its own in
    /// `Window`, and the sender uses the smaller of the two. What each side
    /// holds per entry in flight is bounded by this, whatever the number of
    /// files.
    pub window: u32,
    /// Most components in an offered path (default 64).
    pub max_depth: usize,
    /// Longest offered path, in bytes, components joined with `/`
    /// (default 4096, the usual `PATH_MAX`).
    pub max_path_len: usize,
    /// File receiver: most entries one session may offer (default 2^20);
    /// each further offer is refused with `TooMany`.
    pub max_files: u64,
    /// File receiver: bytes of holes (`Hole` frames) one session may send
    /// beyond [`HOLE_BYTES_PER_DATA_BYTE`] times the file data it sent
    /// (default 64 GiB). The receiver hashes every zero a hole stands for,
    /// so this bounds the work a peer buys with bytes it did not send
    /// (13 KB of `Hole` frames would otherwise cost minutes of hashing); a
    /// real sparse file, whose holes come with data, passes. Beyond it the
    /// session fails with `TooManyHoles`.
    pub hole_allowance: u64,
}

/// Bytes of holes a session may send per byte of file data it sent, on
/// top of [`TransferConfig::hole_allowance`].
pub const HOLE_BYTES_PER_DATA_BYTE: u64 = 1024;

impl Default for TransferConfig {
    fn default() -> Self {
        TransferConfig {
            chunk_size: 256 * KIB,
            max_name_len: 255,
            max_file_size: 1 << 40,
            max_refusals: 1000,
            window: 256,
            max_depth: 64,
            max_path_len: 4096,
            max_files: 1 << 20,
            hole_allowance: 64 << 30,
        }
    }
}

/// How deep and how long an offered path may be: what a
/// [`SafePath`](crate::xfer::SafePath) is checked against (from
/// [`TransferConfig::path_limits`]). Also at
/// [`xfer::PathLimits`](crate::xfer::PathLimits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathLimits {
    /// Longest component, in bytes.
    pub max_name_len: usize,
    /// Most components.
    pub max_depth: usize,
    /// Longest path, in bytes, components joined with `/`.
    pub max_path_len: usize,
}

impl TransferConfig {
    /// The limits offered paths are checked against.
    pub fn path_limits(&self) -> PathLimits {
        PathLimits {
            max_name_len: self.max_name_len,
            max_depth: self.max_depth,
            max_path_len: self.max_path_len,
        }
    }

    /// Most bytes of an encoded path within these limits: each component
    /// costs its length and 2, and the `/`s between them are not sent.
    pub fn path_wire_len(&self) -> usize {
        self.max_path_len
            .saturating_add(self.max_depth)
            .saturating_add(1)
    }

    /// Checks that no limit is zero and that a chunk fits one frame of
    /// `session`.
    pub fn validate(&self, session: &SessionLimits) -> Result<(), ConfigError> {
        refuse_zero(&[
            ("chunk_size", self.chunk_size as u128),
            ("max_name_len", self.max_name_len as u128),
            ("max_file_size", u128::from(self.max_file_size)),
            ("max_refusals", u128::from(self.max_refusals)),
            ("window", u128::from(self.window)),
            ("max_depth", self.max_depth as u128),
            ("max_path_len", self.max_path_len as u128),
            ("max_files", u128::from(self.max_files)),
            ("hole_allowance", u128::from(self.hole_allowance)),
        ])?;
        require(
            self.max_name_len <= self.max_path_len && self.max_name_len <= usize::from(u16::MAX),
            "max_name_len",
            "must not exceed max_path_len nor 65535",
        )?;
        require(
            self.path_wire_len().saturating_add(crate::codec::OFFER_FIXED) <= session.max_frame,
            "max_path_len",
            "an Offer of the longest path (max_path_len + max_depth + 1 + 29 bytes) must fit the session's max_frame",
        )?;
        require(
            self.chunk_size <= session.max_frame,
            "chunk_size",
            "must not exceed the session's max_frame",
        )
    }
}

/// The unframed stream machines: RFC 862 echo
/// ([`RawEcho::new`](crate::echo::RawEcho::new)) and the legacy protocols
/// (`LegacyEchoServer`, `LegacyEchoClient`, `LegacyFileSender`,
/// `LegacyFileReceiver`). With no frames, there is no handshake, frame
/// deadline or linger; each machine uses the fields its protocol needs
/// (see [`crate::legacy`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnframedConfig {
    /// A connection whose peer sends nothing the protocol counts for this
    /// long is dropped, and so is one whose peer takes none of our output
    /// for this long (default 60 s).
    pub idle_timeout: Duration,
    /// Most bytes a machine queues for the peer before it stops reading
    /// more (back-pressure; default 1 MiB).
    pub send_buffer: usize,
    /// Legacy echo client: most bytes of replies it holds (default
    /// 1 MiB + 64 KiB).
    pub recv_buffer: usize,
    /// Legacy echo server: longest line it echoes, in bytes (default 64 KiB).
    pub max_message: usize,
    /// Legacy file receiver: largest file it accepts, in bytes (default 1 TiB).
    pub max_file_size: u64,
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
    /// More than `legacy_ack_delay`.
    pub legacy_quit_settle: Duration,
}

impl Default for UnframedConfig {
    fn default() -> Self {
        UnframedConfig {
            idle_timeout: Duration::from_secs(60),
            send_buffer: MIB,
            recv_buffer: MIB + 64 * KIB,
            max_message: 64 * KIB,
            max_file_size: 1 << 40,
            legacy_ack_delay: Duration::from_millis(10),
            legacy_quit_settle: Duration::from_millis(40),
        }
    }
}

impl UnframedConfig {
    /// Checks that no limit is zero and that `quit` settles after acks.
    pub fn validate(&self) -> Result<(), ConfigError> {
        refuse_zero(&[
            ("idle_timeout", self.idle_timeout.as_nanos()),
            ("send_buffer", self.send_buffer as u128),
            ("recv_buffer", self.recv_buffer as u128),
            ("max_message", self.max_message as u128),
            ("max_file_size", u128::from(self.max_file_size)),
            ("legacy_ack_delay", self.legacy_ack_delay.as_nanos()),
            ("legacy_quit_settle", self.legacy_quit_settle.as_nanos()),
        ])?;
        require(
            self.legacy_quit_settle > self.legacy_ack_delay,
            "legacy_quit_settle",
            "must exceed legacy_ack_delay",
        )
    }
}

/// UDP echo, probes and the legacy UDP sender. Taken by
/// [`UdpEchoServer::new`](crate::echo::UdpEchoServer::new),
/// [`UdpPing::new`](crate::echo::UdpPing::new) and
/// [`LegacyUdpSender::new`](crate::legacy::LegacyUdpSender::new).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpConfig {
    /// Largest UDP datagram echoed or sent (default 65 507, the IPv4 maximum).
    pub max_datagram: usize,
    /// Datagrams a machine queues before it drops new ones (default 1024).
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
    /// Retries of one UDP probe before it counts as lost (default 2; zero
    /// means one try and no retry).
    pub probe_retries: u32,
}

impl Default for UdpConfig {
    fn default() -> Self {
        UdpConfig {
            max_datagram: 65_507,
            datagram_queue: 1024,
            udp_reply_rate: 100,
            udp_reply_burst: 50,
            udp_max_sources: 4096,
            probe_timeout: Duration::from_secs(1),
            probe_retries: 2,
        }
    }
}

impl UdpConfig {
    /// Checks that no limit is zero (retries aside: zero retries is one
    /// try) and that the reply rate is at most one per nanosecond.
    pub fn validate(&self) -> Result<(), ConfigError> {
        refuse_zero(&[
            ("max_datagram", self.max_datagram as u128),
            ("datagram_queue", self.datagram_queue as u128),
            ("udp_reply_rate", u128::from(self.udp_reply_rate)),
            ("udp_reply_burst", u128::from(self.udp_reply_burst)),
            ("udp_max_sources", self.udp_max_sources as u128),
            ("probe_timeout", self.probe_timeout.as_nanos()),
        ])?;
        require(
            self.udp_reply_rate <= 1_000_000_000,
            "udp_reply_rate",
            "must be at most 1000000000 replies per second",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_valid() {
        let session = SessionLimits::default();
        assert_eq!(session.validate(), Ok(()));
        assert_eq!(EchoConfig::default().validate(&session), Ok(()));
        assert_eq!(TransferConfig::default().validate(&session), Ok(()));
        assert_eq!(UnframedConfig::default().validate(), Ok(()));
        assert_eq!(UdpConfig::default().validate(), Ok(()));
    }

    #[test]
    fn zero_limit_is_refused_not_treated_as_unlimited() {
        let cfg = SessionLimits {
            max_frame: 0,
            ..SessionLimits::default()
        };
        assert_eq!(cfg.validate(), Err(ConfigError::Zero("max_frame")));
    }

    #[test]
    fn legacy_settle_must_exceed_the_ack_delay() {
        let cfg = UnframedConfig {
            legacy_quit_settle: Duration::from_millis(5),
            ..UnframedConfig::default()
        };
        assert_eq!(
            cfg.validate().map_err(|e| e.field()),
            Err("legacy_quit_settle")
        );
    }

    #[test]
    fn zero_udp_reply_limits_are_refused_not_unlimited() {
        let zeroed = [
            UdpConfig {
                udp_reply_rate: 0,
                ..UdpConfig::default()
            },
            UdpConfig {
                udp_reply_burst: 0,
                ..UdpConfig::default()
            },
            UdpConfig {
                udp_max_sources: 0,
                ..UdpConfig::default()
            },
        ];
        let names = ["udp_reply_rate", "udp_reply_burst", "udp_max_sources"];
        for (cfg, name) in zeroed.iter().zip(names) {
            assert_eq!(cfg.validate(), Err(ConfigError::Zero(name)));
        }
        let too_fast = UdpConfig {
            udp_reply_rate: 1_000_000_001,
            ..UdpConfig::default()
        };
        assert!(matches!(
            too_fast.validate(),
            Err(ConfigError::Inconsistent {
                field: "udp_reply_rate",
                ..
            })
        ));
    }

    #[test]
    fn zero_session_bounds_are_refused_not_treated_as_unlimited() {
        let base = SessionLimits::default;
        let zeroed = [
            (
                "handshake_timeout",
                SessionLimits {
                    handshake_timeout: Duration::ZERO,
                    ..base()
                },
            ),
            (
                "frame_timeout",
                SessionLimits {
                    frame_timeout: Duration::ZERO,
                    ..base()
                },
            ),
            (
                "linger",
                SessionLimits {
                    linger: Duration::ZERO,
                    ..base()
                },
            ),
            (
                "recv_allowance",
                SessionLimits {
                    recv_allowance: 0,
                    ..base()
                },
            ),
        ];
        for (name, cfg) in zeroed {
            assert_eq!(cfg.validate(), Err(ConfigError::Zero(name)));
        }
        let no_refusals = TransferConfig {
            max_refusals: 0,
            ..TransferConfig::default()
        };
        assert_eq!(
            no_refusals.validate(&base()),
            Err(ConfigError::Zero("max_refusals"))
        );
    }

    #[test]
    fn recv_buffer_smaller_than_a_frame_is_refused() {
        let cfg = SessionLimits {
            recv_buffer: 10,
            ..SessionLimits::default()
        };
        assert_eq!(cfg.validate().map_err(|e| e.field()), Err("recv_buffer"));
    }

    /// Every field each struct refuses at zero, named in the error.
    fn assert_zero_refused<C>(
        name: &str,
        cases: Vec<(&'static str, C)>,
        check: impl Fn(&C) -> Result<(), ConfigError>,
    ) {
        for (field, cfg) in cases {
            assert_eq!(check(&cfg), Err(ConfigError::Zero(field)), "{name}.{field}");
        }
    }

    #[test]
    fn session_limits_refuse_each_zero_field_by_name() {
        let base = SessionLimits::default;
        let cases = vec![
            (
                "max_frame",
                SessionLimits {
                    max_frame: 0,
                    ..base()
                },
            ),
            (
                "recv_buffer",
                SessionLimits {
                    recv_buffer: 0,
                    ..base()
                },
            ),
            (
                "send_buffer",
                SessionLimits {
                    send_buffer: 0,
                    ..base()
                },
            ),
            (
                "idle_timeout",
                SessionLimits {
                    idle_timeout: Duration::ZERO,
                    ..base()
                },
            ),
        ];
        assert_zero_refused("SessionLimits", cases, SessionLimits::validate);
        let huge = SessionLimits {
            max_frame: u32::MAX as usize + 1,
            recv_buffer: usize::MAX,
            ..base()
        };
        assert_eq!(huge.validate().map_err(|e| e.field()), Err("max_frame"));
    }

    #[test]
    fn echo_config_refuses_zero_fields_and_messages_beyond_max_frame() {
        let session = SessionLimits::default();
        let base = EchoConfig::default;
        let cases = vec![
            (
                "max_message",
                EchoConfig {
                    max_message: 0,
                    ..base()
                },
            ),
            (
                "echo_window",
                EchoConfig {
                    echo_window: 0,
                    ..base()
                },
            ),
        ];
        assert_zero_refused("EchoConfig", cases, |c| c.validate(&session));
        let too_big = EchoConfig {
            max_message: session.max_frame + 1,
            ..base()
        };
        assert_eq!(
            too_big.validate(&session).map_err(|e| e.field()),
            Err("max_message")
        );
    }

    #[test]
    fn transfer_config_refuses_zero_fields_and_chunks_beyond_max_frame() {
        let session = SessionLimits::default();
        let base = TransferConfig::default;
        let cases = vec![
            (
                "chunk_size",
                TransferConfig {
                    chunk_size: 0,
                    ..base()
                },
            ),
            (
                "max_name_len",
                TransferConfig {
                    max_name_len: 0,
                    ..base()
                },
            ),
            (
                "max_file_size",
                TransferConfig {
                    max_file_size: 0,
                    ..base()
                },
            ),
            (
                "max_refusals",
                TransferConfig {
                    max_refusals: 0,
                    ..base()
                },
            ),
        ];
        assert_zero_refused("TransferConfig", cases, |c| c.validate(&session));
        let too_big = TransferConfig {
            chunk_size: session.max_frame + 1,
            ..base()
        };
        assert_eq!(
            too_big.validate(&session).map_err(|e| e.field()),
            Err("chunk_size")
        );
    }

    #[test]
    fn unframed_config_refuses_each_zero_field_by_name() {
        let base = UnframedConfig::default;
        let cases = vec![
            (
                "idle_timeout",
                UnframedConfig {
                    idle_timeout: Duration::ZERO,
                    ..base()
                },
            ),
            (
                "send_buffer",
                UnframedConfig {
                    send_buffer: 0,
                    ..base()
                },
            ),
            (
                "recv_buffer",
                UnframedConfig {
                    recv_buffer: 0,
                    ..base()
                },
            ),
            (
                "max_message",
                UnframedConfig {
                    max_message: 0,
                    ..base()
                },
            ),
            (
                "max_file_size",
                UnframedConfig {
                    max_file_size: 0,
                    ..base()
                },
            ),
            (
                "legacy_ack_delay",
                UnframedConfig {
                    legacy_ack_delay: Duration::ZERO,
                    ..base()
                },
            ),
            (
                "legacy_quit_settle",
                UnframedConfig {
                    legacy_quit_settle: Duration::ZERO,
                    ..base()
                },
            ),
        ];
        assert_zero_refused("UnframedConfig", cases, UnframedConfig::validate);
    }

    #[test]
    fn udp_config_refuses_each_zero_field_by_name_but_allows_zero_retries() {
        let base = UdpConfig::default;
        let cases = vec![
            (
                "max_datagram",
                UdpConfig {
                    max_datagram: 0,
                    ..base()
                },
            ),
            (
                "datagram_queue",
                UdpConfig {
                    datagram_queue: 0,
                    ..base()
                },
            ),
            (
                "probe_timeout",
                UdpConfig {
                    probe_timeout: Duration::ZERO,
                    ..base()
                },
            ),
        ];
        assert_zero_refused("UdpConfig", cases, UdpConfig::validate);
        let one_try = UdpConfig {
            probe_retries: 0,
            ..base()
        };
        assert_eq!(one_try.validate(), Ok(()));
    }

    #[test]
    fn config_errors_name_their_field_in_the_message() {
        let zero = ConfigError::Zero("chunk_size");
        assert!(zero.to_string().contains("chunk_size"), "{zero}");
        let bad = ConfigError::Inconsistent {
            field: "recv_buffer",
            rule: "must hold one whole frame",
        };
        assert!(bad.to_string().contains("recv_buffer"), "{bad}");
        assert_eq!(bad.field(), "recv_buffer");
    }
}
