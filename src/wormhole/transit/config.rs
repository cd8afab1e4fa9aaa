//! What one transit connection is told: its role, the transit key, whether
//! it goes through a relay, and its limits.

use std::time::Duration;

use crate::error::ConfigError;

use super::handshake::valid_relay_side;

/// Which end of the transit a side is. The file sender is the transit
/// sender (the leader, who picks the connection), the file receiver the
/// transit receiver (the follower).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The leader: checks the receiver's handshake, then the application
    /// says [`go`](super::Transit::go) or [`nevermind`](super::Transit::nevermind).
    Sender,
    /// The follower: checks the sender's handshake, then waits for `go\n`.
    Receiver,
}

/// The limits and identity of one transit connection.
#[derive(Clone, PartialEq, Eq)]
pub struct TransitConfig {
    /// This side's role.
    pub role: Role,
    /// The transit key both sides derived from the wormhole (32 bytes in
    /// magic-wormhole's file transfer).
    pub transit_key: Vec<u8>,
    /// `Some(side)` when this connection goes to a transit relay: the relay
    /// handshake naming `side` is sent first and the relay's `ok\n` awaited.
    /// The side must be 16 ASCII letters, digits or underscores (the relay
    /// accepts nothing else); use one per transit attempt, as Python does
    /// (8 random bytes in hex), so the relay never pairs two of this
    /// side's own connections.
    pub relay_side: Option<String>,
    /// The most plaintext one record may carry, in either direction. A
    /// larger length prefix from the peer fails the connection as soon as
    /// its 4 bytes arrive, and a larger record is refused by
    /// [`send_record`](super::Transit::send_record). Default 64 MiB, the
    /// value transit.md recommends (Python sends records of 16 KiB or
    /// less, so this is far beyond what honest peers need). Memory follows
    /// the bytes that actually arrive, never the prefix: a peer that
    /// announces 64 MiB and sends 10 bytes costs a 64 KiB buffer, and one
    /// that sends the 64 MiB costs at most about twice that.
    pub max_record: usize,
    /// How long the handshake may take, from the machine's creation until
    /// the peer's handshake checked out (and, for a receiver, `go\n`
    /// arrived). Through a relay this includes the wait for the peer to
    /// reach the relay. Default 60 s: Python's `transit.TIMEOUT`.
    pub handshake_timeout: Duration,
    /// How many bytes of sealed records may wait to be handed to the
    /// driver before [`send_record`](super::Transit::send_record) answers
    /// [`UsageError::WouldBlock`](crate::UsageError::WouldBlock) (a
    /// record is always taken when nothing waits). Default 1 MiB.
    pub send_buffer: usize,
    /// How long a driver may wait for the transport to take any output
    /// ([`StreamMachine::write_timeout`](crate::StreamMachine::write_timeout)).
    /// Default 60 s.
    pub write_timeout: Duration,
    /// `true`: the connection is handed over after `go\n` instead of
    /// carrying records. The machine then never reads a byte past the
    /// line it expects (so whatever follows `go\n` is left in the socket
    /// for the next protocol), and ends normally at once: the sender when
    /// [`go`](super::Transit::go) has handed out `go\n`, the receiver when
    /// `go\n` arrived (after its [`Connected`](super::TransitEvent::Connected)).
    /// The driver must then keep the connection open. Default `false`.
    pub hand_over: bool,
}

impl std::fmt::Debug for TransitConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The transit key stays out of logs.
        f.debug_struct("TransitConfig")
            .field("role", &self.role)
            .field("relay_side", &self.relay_side)
            .field("max_record", &self.max_record)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("send_buffer", &self.send_buffer)
            .field("write_timeout", &self.write_timeout)
            .field("hand_over", &self.hand_over)
            .finish_non_exhaustive()
    }
}

/// Default [`TransitConfig::max_record`]: 64 MiB.
pub const DEFAULT_MAX_RECORD: usize = 64 << 20;

impl TransitConfig {
    /// A direct connection for `role` with the transit key, and the
    /// default limits.
    pub fn new(role: Role, transit_key: &[u8]) -> Self {
        TransitConfig {
            role,
            transit_key: transit_key.to_vec(),
            relay_side: None,
            max_record: DEFAULT_MAX_RECORD,
            handshake_timeout: Duration::from_secs(60),
            send_buffer: 1 << 20,
            write_timeout: Duration::from_secs(60),
            hand_over: false,
        }
    }

    /// The same, through a transit relay, as `side`.
    pub fn via_relay(mut self, side: impl Into<String>) -> Self {
        self.relay_side = Some(side.into());
        self
    }

    /// The same, handed over after `go\n` ([`hand_over`](Self::hand_over)).
    pub fn handing_over(mut self) -> Self {
        self.hand_over = true;
        self
    }

    /// The first field that cannot work, if any.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.transit_key.is_empty() {
            return Err(ConfigError::Zero("transit_key"));
        }
        if self.max_record == 0 {
            return Err(ConfigError::Zero("max_record"));
        }
        if self.max_record > u32::MAX as usize - super::record::OVERHEAD {
            return Err(ConfigError::Inconsistent {
                field: "max_record",
                rule: "must leave room for the nonce and tag in a 4-byte length",
            });
        }
        if self.handshake_timeout.is_zero() {
            return Err(ConfigError::Zero("handshake_timeout"));
        }
        if self.send_buffer == 0 {
            return Err(ConfigError::Zero("send_buffer"));
        }
        if self.write_timeout.is_zero() {
            return Err(ConfigError::Zero("write_timeout"));
        }
        if let Some(side) = &self.relay_side {
            if !valid_relay_side(side) {
                return Err(ConfigError::Inconsistent {
                    field: "relay_side",
                    rule: "must be 16 ASCII letters, digits or underscores (the relay accepts \
                           nothing else), such as 8 random bytes in hex",
                });
            }
        }
        Ok(())
    }
}
