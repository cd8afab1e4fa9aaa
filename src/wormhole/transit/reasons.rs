//! The texts a transit connection fails with, inside
//! [`WormholeError::Transit`](crate::WormholeError::Transit): one constant
//! per cause, so a caller can tell them apart (a candidate connection that
//! failed its handshake is dropped for the next one; a record that fails
//! after `Connected` ends the transfer) without matching on prose.

/// The peer's handshake line is not the one expected.
pub const BAD_HANDSHAKE: &str = "the peer's transit handshake is not the expected one (it \
     derived another transit key, or is not a wormhole client); try the other connection hints";
/// The relay answered something other than `ok\n`.
pub const RELAY_REFUSED: &str = "the transit relay did not answer ok (it refused the relay \
     handshake, or is not a transit relay); check the relay address or try another relay";
/// The relay closed the connection before pairing it.
pub const RELAY_CLOSED: &str = "the transit relay closed the connection before the peer came \
     (the peer never reached this relay); try another relay or connection hint";
/// The receiver saw neither `go\n` nor `nevermind\n` after the handshakes.
pub const BAD_GO: &str = "the transit sender sent neither go nor nevermind after the \
     handshakes; it does not speak the transit protocol";
/// The sender picked another connection.
pub const NEVERMIND: &str =
    "the transit sender chose another connection (nevermind); use the one it picked";
/// The connection ended before the handshakes were done.
pub const CLOSED_IN_HANDSHAKE: &str =
    "the connection closed during the transit handshake; try the other connection hints";
/// The handshakes took longer than `handshake_timeout`.
pub const HANDSHAKE_TIMEOUT: &str = "the transit handshake did not complete within \
     TransitConfig::handshake_timeout; try the other connection hints, or a relay";
/// The connection ended in the middle of a record.
pub const TRUNCATED: &str = "the connection closed in the middle of a record (truncated): the \
     peer stopped or the network cut it; try again";
/// What a record that does not open says.
pub const NOT_AUTHENTIC: &str = "a record does not authenticate (altered on the way, or sealed \
     with another key); the connection was tampered with or broken, try again";
/// What a record with another nonce than the next one says.
pub const OUT_OF_ORDER: &str = "a record arrived out of order (replayed, dropped or reordered: \
     its nonce is not the next one); the connection was tampered with or broken, try again";
/// What a length prefix too short for a nonce and a tag says.
pub const TOO_SHORT: &str =
    "a record is shorter than its nonce and tag; the peer does not speak transit records";
/// What a length prefix beyond the limit says.
pub const TOO_LARGE: &str = "a record is larger than max_record allows; raise \
     TransitConfig::max_record if the peer legitimately sends records this large";
/// What a direction whose counter ran out says.
pub const EXHAUSTED: &str = "the record counter is exhausted (2^64 records); start a new transfer";
