//! The limits of a secure channel, apart from the wrapped machine's own
//! [`Config`](crate::Config).

use std::time::Duration;

use super::record::RECORD_LIMIT;
use crate::error::ConfigError;

/// Limits of a [`Secure`](super::Secure) channel. Every field has a
/// documented default; [`validate`](SecureConfig::validate) (called by the
/// constructors) refuses zero and what the wire cannot carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecureConfig {
    /// The most plaintext bytes this side puts in one record (default
    /// 64 KiB, also the most, since it is the most a peer accepts). Smaller
    /// records cost more tags and headers; larger ones are refused.
    pub max_record: usize,
    /// How long the key exchange and both key confirmations may take,
    /// from construction (default 10 s): a peer that sends nothing, or
    /// trickles its hello, costs at most this.
    pub handshake_timeout: Duration,
    /// How long a side whose session ended waits, after sending its close
    /// record, for the peer's (default 2 s): the peer's last records are
    /// then read rather than met with a reset. The session's result does
    /// not depend on it; a peer that never closes costs at most this.
    pub close_timeout: Duration,
}

impl Default for SecureConfig {
    fn default() -> Self {
        SecureConfig {
            max_record: RECORD_LIMIT,
            handshake_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(2),
        }
    }
}

impl SecureConfig {
    /// Checks that every limit can work: none is zero (zero never means
    /// "unlimited"), and a record fits what every peer accepts.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_record == 0 {
            return Err(ConfigError::Zero("max_record"));
        }
        if self.handshake_timeout.is_zero() {
            return Err(ConfigError::Zero("handshake_timeout"));
        }
        if self.close_timeout.is_zero() {
            return Err(ConfigError::Zero("close_timeout"));
        }
        if self.max_record > RECORD_LIMIT {
            return Err(ConfigError::Inconsistent {
                field: "max_record",
                rule: "must be at most 65536 bytes (the record limit every peer accepts)",
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_valid_and_zero_or_oversized_limits_are_refused() {
        assert_eq!(SecureConfig::default().validate(), Ok(()));
        let zero_record = SecureConfig {
            max_record: 0,
            ..SecureConfig::default()
        };
        assert_eq!(zero_record.validate(), Err(ConfigError::Zero("max_record")));
        let zero_time = SecureConfig {
            handshake_timeout: Duration::ZERO,
            ..SecureConfig::default()
        };
        assert_eq!(
            zero_time.validate(),
            Err(ConfigError::Zero("handshake_timeout"))
        );
        let zero_close = SecureConfig {
            close_timeout: Duration::ZERO,
            ..SecureConfig::default()
        };
        assert_eq!(
            zero_close.validate(),
            Err(ConfigError::Zero("close_timeout"))
        );
        let huge = SecureConfig {
            max_record: RECORD_LIMIT + 1,
            ..SecureConfig::default()
        };
        assert!(matches!(
            huge.validate(),
            Err(ConfigError::Inconsistent {
                field: "max_record",
                ..
            })
        ));
    }
}
