//! Transit records: `length (4, big-endian) | nonce (24) | tag (16) |
//! ciphertext`, where `nonce | tag | ciphertext` is a NaCl SecretBox
//! (XSalsa20-Poly1305) with the nonce in front, as
//! [`keys::seal`](crate::wormhole::keys::seal) makes it, and `length`
//! counts those bytes.
//!
//! The nonce is a per-direction record counter from 0, written as a
//! 24-byte **big-endian** number. transit.md says "incremented little
//! endian", but Python magic-wormhole (`transit.py`, `send_record`) writes
//! `unhexlify("%048x" % seqnum)` and checks incoming nonces with
//! `int(hexlify(nonce), 16)`, both big-endian; the Rust magic-wormhole
//! does the same. Interoperation is what counts, so big-endian it is.
//!
//! Sealing and opening work in place: a record is built in the buffer it
//! is sent from, and opened in the receive buffer it arrived in, so its
//! plaintext is handed out without a copy.

use bytes::{Buf, BufMut, BytesMut};
use crypto_secretbox::aead::{AeadInPlace, KeyInit};
use crypto_secretbox::{Nonce, Tag, XSalsa20Poly1305};

use super::reasons::{EXHAUSTED, NOT_AUTHENTIC, OUT_OF_ORDER, TOO_LARGE, TOO_SHORT};
use crate::wormhole::keys::{Key, NONCE_LEN, TAG_LEN};

/// Bytes of the length prefix.
pub const LEN_PREFIX: usize = 4;
/// What a record adds to its plaintext inside the length: nonce and tag.
pub const OVERHEAD: usize = NONCE_LEN + TAG_LEN;

/// The nonce of record `counter`: 16 zero bytes, then the counter
/// big-endian (Python's `"%048x" % seqnum`).
pub fn nonce(counter: u64) -> [u8; NONCE_LEN] {
    let mut n = [0u8; NONCE_LEN];
    n[NONCE_LEN - 8..].copy_from_slice(&counter.to_be_bytes());
    n
}

/// The record length announced by a 4-byte prefix, checked against
/// `max_record` (the most plaintext a record may carry) before anything is
/// held for it.
pub fn announced(prefix: [u8; LEN_PREFIX], max_record: usize) -> Result<usize, &'static str> {
    let len = u32::from_be_bytes(prefix) as usize;
    if len < OVERHEAD {
        Err(TOO_SHORT)
    } else if len - OVERHEAD > max_record {
        Err(TOO_LARGE)
    } else {
        Ok(len)
    }
}

/// One direction's key and record counter.
pub struct Direction {
    cipher: XSalsa20Poly1305,
    counter: u64,
}

impl std::fmt::Debug for Direction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Direction")
            .field("counter", &self.counter)
            .finish_non_exhaustive()
    }
}

impl Direction {
    /// A direction keyed with `key`, at record 0.
    pub fn new(key: &Key) -> Self {
        Direction {
            cipher: XSalsa20Poly1305::new(key.into()),
            counter: 0,
        }
    }

    /// Records sealed or opened so far.
    pub fn counter(&self) -> u64 {
        self.counter
    }

    /// The whole record for `plain`, length prefix included, as the next
    /// record of this direction; fails rather than ever repeat a nonce.
    /// `plain` must fit a 4-byte length with the overhead (the caller
    /// bounds it far below).
    pub fn seal(&mut self, plain: &[u8]) -> Result<BytesMut, &'static str> {
        let next = self.counter.checked_add(1).ok_or(EXHAUSTED)?;
        let len = u32::try_from(OVERHEAD + plain.len()).map_err(|_| TOO_LARGE)?;
        let n = nonce(self.counter);
        let mut out = BytesMut::with_capacity(LEN_PREFIX + OVERHEAD + plain.len());
        out.put_u32(len);
        out.put_slice(&n);
        out.put_bytes(0, TAG_LEN);
        out.put_slice(plain);
        let body_at = LEN_PREFIX + OVERHEAD;
        let tag = self
            .cipher
            .encrypt_in_place_detached(Nonce::from_slice(&n), b"", &mut out[body_at..])
            .map_err(|_| TOO_LARGE)?;
        out[LEN_PREFIX + NONCE_LEN..body_at].copy_from_slice(&tag);
        self.counter = next;
        Ok(out)
    }

    /// Opens `record` (`nonce | tag | ciphertext`, the length prefix
    /// already taken off) in place as the next record of this direction:
    /// afterwards it holds the plaintext alone. The nonce is checked first,
    /// as Python does: a record out of order is [`OUT_OF_ORDER`], one that
    /// does not authenticate [`NOT_AUTHENTIC`].
    pub fn open(&mut self, record: &mut BytesMut) -> Result<(), &'static str> {
        if record.len() < OVERHEAD {
            return Err(TOO_SHORT);
        }
        if record[..NONCE_LEN] != nonce(self.counter) {
            return Err(OUT_OF_ORDER);
        }
        let next = self.counter.checked_add(1).ok_or(EXHAUSTED)?;
        let (head, body) = record.split_at_mut(OVERHEAD);
        let (n, tag) = head.split_at(NONCE_LEN);
        self.cipher
            .decrypt_in_place_detached(Nonce::from_slice(n), b"", body, Tag::from_slice(tag))
            .map_err(|_| NOT_AUTHENTIC)?;
        record.advance(OVERHEAD);
        self.counter = next;
        Ok(())
    }

    /// Puts the counter at `n` (tests of the exhaustion).
    #[cfg(test)]
    pub(crate) fn set_counter(&mut self, n: u64) {
        self.counter = n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wormhole::keys::{derive, open, seal};

    /// Record 1 of the sender for a transit key of 32 bytes of 0x01,
    /// plaintext `hello`, as Python magic-wormhole 0.24 frames it
    /// (`Connection.send_record` with `send_nonce == 1`).
    const PY_RECORD_1: &str = "0000002d\
        000000000000000000000000000000000000000000000001\
        acfce9b72ca4c97a8db0c29e07776ca4e22788df9e";

    #[test]
    fn records_are_framed_and_nonced_as_python_does_it() {
        let key = derive(&[1u8; 32], b"transit_record_sender_key");
        let mut tx = Direction::new(&key);
        let _first = tx.seal(b"zero").unwrap();
        let second = tx.seal(b"hello").unwrap();
        assert_eq!(hex::encode(&second), PY_RECORD_1);
        let mut rx = Direction::new(&key);
        rx.set_counter(1);
        let mut body = BytesMut::from(&second[LEN_PREFIX..]);
        rx.open(&mut body).unwrap();
        assert_eq!(&body[..], b"hello");
        assert_eq!(rx.counter(), 2);
    }

    #[test]
    fn the_nonce_counts_big_endian_in_the_last_bytes() {
        assert_eq!(nonce(0), [0; NONCE_LEN]);
        let n = nonce(0x0102);
        assert_eq!(&n[NONCE_LEN - 2..], &[1, 2]);
        assert!(n[..NONCE_LEN - 2].iter().all(|&b| b == 0));
    }

    #[test]
    fn sealing_in_place_is_keys_seal_behind_a_length() {
        let key = [5u8; 32];
        let mut tx = Direction::new(&key);
        let rec = tx.seal(b"payload").unwrap();
        assert_eq!(&rec[..LEN_PREFIX], &(OVERHEAD as u32 + 7).to_be_bytes());
        assert_eq!(&rec[LEN_PREFIX..], &seal(&key, nonce(0), b"payload")[..]);
        assert_eq!(
            open(&key, &rec[LEN_PREFIX..]).as_deref(),
            Some(&b"payload"[..])
        );
    }

    #[test]
    fn a_record_opens_once_in_order_and_not_when_altered() {
        let key = [6u8; 32];
        let mut tx = Direction::new(&key);
        let r0 = tx.seal(b"a").unwrap().split_off(LEN_PREFIX);
        let r1 = tx.seal(b"b").unwrap().split_off(LEN_PREFIX);
        let mut rx = Direction::new(&key);
        assert_eq!(rx.open(&mut r1.clone()), Err(OUT_OF_ORDER));
        let mut altered = r0.clone();
        let last = altered.len() - 1;
        altered[last] ^= 1;
        assert_eq!(rx.open(&mut altered), Err(NOT_AUTHENTIC));
        assert_eq!(rx.counter(), 0, "a failed open spends no nonce");
        let mut ok = r0.clone();
        rx.open(&mut ok).unwrap();
        assert_eq!(&ok[..], b"a");
        assert_eq!(rx.open(&mut r0.clone()), Err(OUT_OF_ORDER), "replayed");
        let mut other = Direction::new(&[7u8; 32]);
        other.set_counter(1);
        assert_eq!(other.open(&mut r1.clone()), Err(NOT_AUTHENTIC));
        assert_eq!(
            rx.open(&mut BytesMut::from(&r1[..OVERHEAD - 1])),
            Err(TOO_SHORT)
        );
    }

    #[test]
    fn lengths_are_checked_against_the_limit_and_the_overhead() {
        let prefix = |n: u32| n.to_be_bytes();
        assert_eq!(announced(prefix(40), 0), Ok(40));
        assert_eq!(announced(prefix(39), 100), Err(TOO_SHORT));
        assert_eq!(announced(prefix(140), 100), Ok(140));
        assert_eq!(announced(prefix(141), 100), Err(TOO_LARGE));
        assert_eq!(announced(prefix(u32::MAX), 64 << 20), Err(TOO_LARGE));
    }

    #[test]
    fn the_counter_never_wraps_to_a_used_nonce() {
        let mut tx = Direction::new(&[1; 32]);
        tx.set_counter(u64::MAX - 1);
        assert!(tx.seal(b"").is_ok());
        assert_eq!(tx.seal(b""), Err(EXHAUSTED));
    }
}
