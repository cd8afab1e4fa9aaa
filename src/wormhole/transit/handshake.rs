//! The transit handshakes and key derivations: the exact lines each side
//! writes before records flow, all derived from the transit key with
//! [`derive`](crate::wormhole::keys::derive()) (HKDF-SHA256, no salt), byte for byte as Python
//! magic-wormhole's `transit.py` builds them (`build_sender_handshake`,
//! `build_receiver_handshake`, `build_sided_relay_handshake`,
//! `Common._sender_record_key`), and the matcher that checks the peer's
//! lines one byte at a time.

use crate::wormhole::keys::{derive, Key};

/// What the sender writes after its handshake once it picked this
/// connection; the receiver waits for exactly this.
pub const GO: &[u8] = b"go\n";
/// What the sender writes instead of [`GO`] when another connection won.
pub const NEVERMIND: &[u8] = b"nevermind\n";
/// What a transit relay answers once the peer with the same token came.
pub const RELAY_OK: &[u8] = b"ok\n";
/// Characters of the side a relay handshake names: the relay only
/// accepts `\w{16}` (Python sends 8 random bytes in hex).
pub const RELAY_SIDE_LEN: usize = 16;

/// `transit sender {hex(derive(tk, "transit_sender"))} ready\n\n`: what the
/// sender (the transit leader) writes first on every connection.
pub fn sender_handshake(transit_key: &[u8]) -> Vec<u8> {
    let id = hex::encode(derive(transit_key, b"transit_sender"));
    format!("transit sender {id} ready\n\n").into_bytes()
}

/// `transit receiver {hex(derive(tk, "transit_receiver"))} ready\n\n`: what
/// the receiver (the transit follower) writes first on every connection.
pub fn receiver_handshake(transit_key: &[u8]) -> Vec<u8> {
    let id = hex::encode(derive(transit_key, b"transit_receiver"));
    format!("transit receiver {id} ready\n\n").into_bytes()
}

/// `please relay {hex(derive(tk, "transit_relay_token"))} for side {side}\n`:
/// what a side writes first to a transit relay, before its transit
/// handshake. `side` must be [`RELAY_SIDE_LEN`] word characters
/// ([`valid_relay_side`]) for the relay to accept it.
pub fn relay_handshake(transit_key: &[u8], side: &str) -> Vec<u8> {
    let token = hex::encode(derive(transit_key, b"transit_relay_token"));
    format!("please relay {token} for side {side}\n").into_bytes()
}

/// Whether `side` is one a transit relay accepts: exactly
/// [`RELAY_SIDE_LEN`] ASCII letters, digits or underscores (the relay's
/// `\w{16}`). Python sends 16 lowercase hex digits.
pub fn valid_relay_side(side: &str) -> bool {
    side.len() == RELAY_SIDE_LEN && side.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The key that seals the records the sender writes:
/// `derive(tk, "transit_record_sender_key")`.
pub fn sender_record_key(transit_key: &[u8]) -> Key {
    derive(transit_key, b"transit_record_sender_key")
}

/// The key that seals the records the receiver writes:
/// `derive(tk, "transit_record_receiver_key")`.
pub fn receiver_record_key(transit_key: &[u8]) -> Key {
    derive(transit_key, b"transit_record_receiver_key")
}

/// An exact line expected from the peer, checked as its bytes arrive (as
/// Python's `_check_and_remove` does): the first byte that differs fails
/// at once, so a peer that sends anything else costs no buffer at all.
#[derive(Debug, Clone)]
pub struct Expect {
    want: Vec<u8>,
    matched: usize,
}

/// What [`Expect::feed`] made of the bytes it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Matched {
    /// All of them matched and more is expected.
    More,
    /// The line is complete; this many of the bytes given belong to it
    /// (the rest come after it).
    Complete(usize),
    /// A byte differs from the expected line (at this index of the whole
    /// line).
    Wrong(usize),
}

impl Expect {
    /// Expects exactly `want`.
    pub fn new(want: impl Into<Vec<u8>>) -> Self {
        Expect {
            want: want.into(),
            matched: 0,
        }
    }

    /// Bytes of the line still to come.
    pub fn remaining(&self) -> usize {
        self.want.len() - self.matched
    }

    /// Checks the next bytes from the peer against the rest of the line.
    pub fn feed(&mut self, bytes: &[u8]) -> Matched {
        let rest = &self.want[self.matched..];
        let n = rest.len().min(bytes.len());
        if let Some(i) = (0..n).find(|&i| rest[i] != bytes[i]) {
            return Matched::Wrong(self.matched + i);
        }
        self.matched += n;
        if self.matched == self.want.len() {
            Matched::Complete(n)
        } else {
            Matched::More
        }
    }

    /// Whether none of the line has arrived yet.
    pub fn untouched(&self) -> bool {
        self.matched == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The strings Python magic-wormhole 0.24 builds for a transit key of
    /// 32 bytes of 0x01 (computed with `wormhole.transit.build_*`).
    #[test]
    fn handshakes_are_the_lines_python_builds() {
        let tk = [1u8; 32];
        let sender = sender_handshake(&tk);
        let receiver = receiver_handshake(&tk);
        let relay = relay_handshake(&tk, "0123456789abcdef");
        assert!(sender.starts_with(b"transit sender "));
        assert!(sender.ends_with(b" ready\n\n"));
        assert_eq!(
            sender.len(),
            "transit sender ".len() + 64 + " ready\n\n".len()
        );
        assert!(receiver.starts_with(b"transit receiver "));
        assert!(relay.starts_with(b"please relay "));
        assert!(relay.ends_with(b" for side 0123456789abcdef\n"));
        assert_eq!(std::str::from_utf8(&sender).unwrap(), PY_SENDER);
        assert_eq!(std::str::from_utf8(&receiver).unwrap(), PY_RECEIVER);
        assert_eq!(std::str::from_utf8(&relay).unwrap(), PY_RELAY);
    }

    /// `build_sender_handshake(b"\x01" * 32)` in Python magic-wormhole 0.24.
    const PY_SENDER: &str = "transit sender \
        6fdf4a12411976520951aa8edc03fbdf5b3f085cef4b7cdcb9011ef800e85855 ready\n\n";
    /// `build_receiver_handshake(b"\x01" * 32)` in Python magic-wormhole 0.24.
    const PY_RECEIVER: &str = "transit receiver \
        f0a9577e4d7b8acb4dcfe70cbf3babb17ecfae8b8239e3cb538066cc2a338230 ready\n\n";
    /// `build_sided_relay_handshake(b"\x01" * 32, "0123456789abcdef")`.
    const PY_RELAY: &str = "please relay 08fac6c35839dceb97f69f8fdf01d8e00262d3e50fa85d75b3be0b94208456fe for side 0123456789abcdef\n";

    #[test]
    fn the_two_directions_and_roles_have_distinct_keys_and_lines() {
        let tk = [2u8; 32];
        assert_ne!(sender_record_key(&tk), receiver_record_key(&tk));
        assert_ne!(sender_handshake(&tk), receiver_handshake(&tk));
        assert_ne!(sender_handshake(&tk), sender_handshake(&[3u8; 32]));
    }

    #[test]
    fn relay_sides_are_sixteen_word_characters() {
        assert!(valid_relay_side("0123456789abcdef"));
        assert!(valid_relay_side("ABCDEFGHIJ_klmno"));
        assert!(!valid_relay_side("0123456789abcde"));
        assert!(!valid_relay_side("0123456789abcdef0"));
        assert!(!valid_relay_side("0123456789abcde\n"));
        assert!(!valid_relay_side("0123456789abcd é"));
    }

    #[test]
    fn a_line_matches_in_pieces_and_fails_at_the_first_wrong_byte() {
        let mut e = Expect::new(&b"go\n"[..]);
        assert!(e.untouched());
        assert_eq!(e.feed(b"g"), Matched::More);
        assert!(!e.untouched());
        assert_eq!(e.feed(b""), Matched::More);
        assert_eq!(e.feed(b"o\nrest"), Matched::Complete(2));
        let mut e = Expect::new(&b"go\n"[..]);
        assert_eq!(e.feed(b"gx\n"), Matched::Wrong(1));
        let mut e = Expect::new(&b"go\n"[..]);
        assert_eq!(e.feed(b"g"), Matched::More);
        assert_eq!(e.feed(b"O"), Matched::Wrong(1));
    }
}
