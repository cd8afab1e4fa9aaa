//! The handshake: each side's hello (magic, version, SPAKE2 message), the
//! key schedule, and the key confirmations. See docs/PROTOCOL.md, "Secure
//! channel", for the same, byte by byte.

use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use rand_chacha_spake::rand_core::SeedableRng;
use rand_chacha_spake::ChaCha20Rng;
use sha2::{Digest, Sha256};
use spake2::{Ed25519Group, Identity, Password, Spake2};

use super::record::Direction;
use super::{Side, SECURE_VERSION};
use crate::error::{RefusalReason, SecureError};
use crate::wire::{MAGIC, SECURE_MAGIC};

/// Bytes of a SPAKE2 (Ed25519) message: the side byte and a point.
const SPAKE_MSG_LEN: usize = 33;
/// Bytes of a hello: magic, version, SPAKE2 message.
pub const HELLO_LEN: usize = 4 + 1 + SPAKE_MSG_LEN;
/// Bytes of a key confirmation (HMAC-SHA256).
pub const CONFIRM_LEN: usize = 32;

/// The SPAKE2 identity of the side that opened the connection (side A).
pub const CLIENT_IDENTITY: &[u8] = b"echoxfer client";
/// The SPAKE2 identity of the side that accepted it (side B).
pub const SERVER_IDENTITY: &[u8] = b"echoxfer server";

/// HKDF-Expand labels (the `info` input), one per derived key.
const LABEL_CLIENT_CONFIRM: &[u8] = b"echoxfer v1 client confirm";
const LABEL_SERVER_CONFIRM: &[u8] = b"echoxfer v1 server confirm";
const LABEL_CLIENT_TO_SERVER: &[u8] = b"echoxfer v1 client to server";
const LABEL_SERVER_TO_CLIENT: &[u8] = b"echoxfer v1 server to client";

impl Side {
    /// The first byte of this side's SPAKE2 message (spake2's own).
    fn spake_byte(self) -> u8 {
        match self {
            Side::Client => b'A',
            Side::Server => b'B',
        }
    }
}

/// A side's key exchange before the peer's hello.
pub struct Started {
    spake: Spake2<Ed25519Group>,
    /// This side's hello, as sent.
    pub hello: [u8; HELLO_LEN],
}

impl std::fmt::Debug for Started {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Started").finish_non_exhaustive()
    }
}

/// Starts the exchange for `side` with `secret`, drawing SPAKE2's scalar
/// from a ChaCha20 stream seeded with `seed`.
pub fn start(side: Side, secret: &[u8], seed: [u8; 32]) -> Started {
    let rng = ChaCha20Rng::from_seed(seed);
    let (pw, a, b) = (
        Password::new(secret),
        Identity::new(CLIENT_IDENTITY),
        Identity::new(SERVER_IDENTITY),
    );
    let (spake, msg) = match side {
        Side::Client => Spake2::<Ed25519Group>::start_a_with_rng(&pw, &a, &b, rng),
        Side::Server => Spake2::<Ed25519Group>::start_b_with_rng(&pw, &a, &b, rng),
    };
    let mut hello = [0u8; HELLO_LEN];
    hello[..4].copy_from_slice(&SECURE_MAGIC);
    hello[4] = SECURE_VERSION;
    hello[5..].copy_from_slice(&msg);
    Started { spake, hello }
}

/// Fails as soon as the first bytes show that no hello is coming: a
/// plaintext echoxfer peer, or something else entirely. On the client, a
/// server's refusal notice is let through (see [`take_refusal`]).
pub fn check_prefix(side: Side, held: &[u8]) -> Result<(), SecureError> {
    let n = held.len().min(4);
    if held[..n] == SECURE_MAGIC[..n] {
        return Ok(());
    }
    if side == Side::Client && held[..n] == REFUSAL_MAGIC[..n] {
        return Ok(());
    }
    if held[..n] == MAGIC[..n] {
        return Err(SecureError::PeerIsPlaintext);
    }
    Err(SecureError::BadHello("not an echoxfer secure hello"))
}

/// The first bytes of a refusal notice, which a server sends instead of its
/// hello to a connection it refuses (docs/PROTOCOL.md, section 6).
pub const REFUSAL_MAGIC: [u8; 4] = *b"EXFW";
/// Bytes of a refusal notice: magic, reason, seconds (u32).
pub const REFUSAL_LEN: usize = 4 + 1 + 4;
/// A refusal notice's reason: failed guesses at the code from the
/// connection's source address.
pub const REFUSED_AFTER_GUESSES: u8 = 1;
/// A refusal notice's reason: the connection's source address already runs
/// as many sessions as the server allows from one address (its
/// `max_per_source`); the seconds are a hint (1): a session may end soon.
pub const REFUSED_AT_SOURCE_CAP: u8 = 2;

/// A refusal reason's byte on the wire.
fn reason_byte(reason: RefusalReason) -> u8 {
    match reason {
        RefusalReason::FailedGuesses => REFUSED_AFTER_GUESSES,
        RefusalReason::SourceCap => REFUSED_AT_SOURCE_CAP,
        RefusalReason::Unknown(byte) => byte,
    }
}

/// The reason a refusal notice's byte stands for.
fn reason_of(byte: u8) -> RefusalReason {
    match byte {
        REFUSED_AFTER_GUESSES => RefusalReason::FailedGuesses,
        REFUSED_AT_SOURCE_CAP => RefusalReason::SourceCap,
        other => RefusalReason::Unknown(other),
    }
}

/// The refusal notice for `reason`, saying the refusal lasts `left` more
/// (rounded up to a whole second, at least 1).
pub fn refusal_notice(reason: RefusalReason, left: std::time::Duration) -> [u8; REFUSAL_LEN] {
    let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
    let secs = u32::try_from(secs.max(1)).unwrap_or(u32::MAX);
    let mut notice = [0u8; REFUSAL_LEN];
    notice[..4].copy_from_slice(&REFUSAL_MAGIC);
    notice[4] = reason_byte(reason);
    notice[5..].copy_from_slice(&secs.to_be_bytes());
    notice
}

/// On the client, what the server sent instead of a hello: `None` if
/// `held` is not (yet) a whole refusal notice, else the refusal.
pub fn take_refusal(held: &[u8]) -> Option<SecureError> {
    if held.len() < REFUSAL_LEN || held[..4] != REFUSAL_MAGIC {
        return None;
    }
    let secs = u32::from_be_bytes(held[5..REFUSAL_LEN].try_into().expect("4 bytes"));
    Some(SecureError::Refused {
        reason: reason_of(held[4]),
        retry_after: std::time::Duration::from_secs(secs.into()),
    })
}

/// What the key schedule gives a side once it has the peer's hello.
pub struct Keys {
    /// This side's confirmation, to send.
    pub confirm: [u8; CONFIRM_LEN],
    /// Checks the peer's confirmation.
    peer_confirm: Hmac<Sha256>,
    /// Seals what this side sends.
    pub send: Direction,
    /// Opens what the peer sends.
    pub recv: Direction,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys").finish_non_exhaustive()
    }
}

impl Keys {
    /// Checks the peer's confirmation in constant time.
    pub fn check_confirm(&self, peer: &[u8]) -> Result<(), SecureError> {
        self.peer_confirm
            .clone()
            .verify_slice(peer)
            .map_err(|_| SecureError::WrongCode)
    }
}

/// Finishes the exchange with the peer's whole hello and derives the keys.
pub fn finish(side: Side, started: Started, peer: &[u8]) -> Result<Keys, SecureError> {
    if peer[..4] != SECURE_MAGIC {
        check_prefix(Side::Server, &peer[..4])?;
        return Err(SecureError::BadHello("not an echoxfer secure hello"));
    }
    if peer[4] != SECURE_VERSION {
        return Err(SecureError::BadHello("unsupported secure version"));
    }
    if peer[5] != side.peer().spake_byte() {
        return Err(SecureError::BadHello(
            "the peer has the same role (both sides opened, or both accepted, the connection)",
        ));
    }
    let shared = started
        .spake
        .finish(&peer[5..HELLO_LEN])
        .map_err(|_| SecureError::BadHello("the peer's key-exchange message is invalid"))?;
    let (client_hello, server_hello) = match side {
        Side::Client => (&started.hello[..], peer),
        Side::Server => (peer, &started.hello[..]),
    };
    let transcript: [u8; 32] = Sha256::new()
        .chain_update(client_hello)
        .chain_update(server_hello)
        .finalize()
        .into();
    let hk = Hkdf::<Sha256>::new(Some(&transcript), &shared);
    let expand = |label: &[u8]| {
        let mut okm = [0u8; 32];
        hk.expand(label, &mut okm)
            .expect("32 bytes is a valid HKDF-SHA256 length");
        okm
    };
    let mac = |key: [u8; 32]| {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&key).expect("HMAC takes any key");
        m.update(&transcript);
        m
    };
    let client_confirm = mac(expand(LABEL_CLIENT_CONFIRM));
    let server_confirm = mac(expand(LABEL_SERVER_CONFIRM));
    let c2s = Direction::new(&expand(LABEL_CLIENT_TO_SERVER));
    let s2c = Direction::new(&expand(LABEL_SERVER_TO_CLIENT));
    let (own, peer_confirm, send, recv) = match side {
        Side::Client => (client_confirm, server_confirm, c2s, s2c),
        Side::Server => (server_confirm, client_confirm, s2c, c2s),
    };
    Ok(Keys {
        confirm: own.finalize().into_bytes().into(),
        peer_confirm,
        send,
        recv,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn keys(a_secret: &[u8], b_secret: &[u8]) -> (Keys, Keys) {
        let a = start(Side::Client, a_secret, [1; 32]);
        let b = start(Side::Server, b_secret, [2; 32]);
        let (ah, bh) = (a.hello, b.hello);
        (
            finish(Side::Client, a, &bh).unwrap(),
            finish(Side::Server, b, &ah).unwrap(),
        )
    }

    #[test]
    fn the_same_secret_confirms_both_ways_and_another_fails_both_ways() {
        let (a, b) = keys(b"7-crossover-clockwork", b"7-crossover-clockwork");
        assert_eq!(a.check_confirm(&b.confirm), Ok(()));
        assert_eq!(b.check_confirm(&a.confirm), Ok(()));
        let (a, b) = keys(b"7-crossover-clockwork", b"7-crossover-clockwerk");
        assert_eq!(a.check_confirm(&b.confirm), Err(SecureError::WrongCode));
        assert_eq!(b.check_confirm(&a.confirm), Err(SecureError::WrongCode));
    }

    #[test]
    fn a_reflected_hello_and_a_plaintext_preamble_are_refused() {
        let a = start(Side::Client, b"x", [1; 32]);
        let own = a.hello;
        assert!(matches!(
            finish(Side::Client, a, &own),
            Err(SecureError::BadHello(_))
        ));
        assert_eq!(
            check_prefix(Side::Server, b"EXFR\x02F"),
            Err(SecureError::PeerIsPlaintext)
        );
        assert_eq!(check_prefix(Side::Server, b"EXF"), Ok(()));
        assert!(matches!(
            check_prefix(Side::Server, b"GET "),
            Err(SecureError::BadHello(_))
        ));
    }

    #[test]
    fn a_refusal_notice_is_taken_by_a_client_only_and_rounds_its_time_up() {
        let notice = refusal_notice(RefusalReason::FailedGuesses, Duration::from_millis(7_001));
        assert_eq!(&notice[..], b"EXFW\x01\x00\x00\x00\x08");
        assert_eq!(
            refusal_notice(RefusalReason::FailedGuesses, Duration::ZERO)[5..],
            1u32.to_be_bytes(),
            "at least a second"
        );
        assert_eq!(check_prefix(Side::Client, &notice[..6]), Ok(()));
        assert_eq!(take_refusal(&notice[..8]), None, "not whole yet");
        assert_eq!(
            take_refusal(&notice),
            Some(SecureError::Refused {
                reason: RefusalReason::FailedGuesses,
                retry_after: Duration::from_secs(8)
            })
        );
        assert!(matches!(
            check_prefix(Side::Server, &notice),
            Err(SecureError::BadHello(_))
        ));
    }

    #[test]
    fn the_key_exchange_debugs_as_its_state_name_and_never_shows_its_secrets() {
        let a = start(Side::Client, b"x", [1; 32]);
        let b = start(Side::Server, b"x", [2; 32]);
        assert_eq!(format!("{a:?}"), "Started { .. }");
        let bh = b.hello;
        let keys = finish(Side::Client, a, &bh).unwrap();
        assert_eq!(format!("{keys:?}"), "Keys { .. }");
    }
}
