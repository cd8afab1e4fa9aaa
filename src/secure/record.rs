//! Records: `kind (1) | length (3, big-endian) | ciphertext (length) | tag (16)`,
//! sealed with AES-256-GCM under one key per direction, the header as
//! associated data, and a 96-bit nonce made of four zero bytes and a
//! 64-bit big-endian record counter (one per direction, from 0, never
//! reused).
//!
//! The cipher is snow's ring-backed AES-256-GCM (`snow::resolvers::RingResolver`),
//! whose nonce layout is exactly the one above. It encrypts from the
//! plaintext into the record (and decrypts from the record into where the
//! plaintext is wanted): one pass writes the output, with no copy before
//! or after it in this layer.

use snow::params::CipherChoice;
use snow::resolvers::{CryptoResolver, RingResolver};
use snow::types::Cipher;

use crate::error::SecureError;

/// Bytes of a record header: kind and length.
pub const RECORD_HEADER: usize = 4;
/// Bytes of the AEAD tag after the ciphertext.
pub const TAG_LEN: usize = 16;
/// The most plaintext bytes a record may carry: what every peer accepts.
pub const RECORD_LIMIT: usize = 64 * 1024;
/// The most bytes one record takes on the wire.
pub const RECORD_WIRE_LIMIT: usize = RECORD_HEADER + RECORD_LIMIT + TAG_LEN;

/// Record kind: application bytes (the wrapped machine's stream).
pub const KIND_DATA: u8 = 1;
/// Record kind: the sender's stream ends here (empty plaintext). Without
/// it, the end of the connection is a truncation.
pub const KIND_CLOSE: u8 = 2;

/// What a record that does not open says (one text for every cause: the
/// tag cannot tell them apart).
const NOT_AUTHENTIC: &str =
    "a record does not authenticate (altered, dropped, repeated or reordered)";

/// A record header for `kind` and `len` plaintext bytes.
pub fn header(kind: u8, len: usize) -> [u8; RECORD_HEADER] {
    debug_assert!(len <= RECORD_LIMIT);
    let [_, a, b, c] = (len as u32).to_be_bytes();
    [kind, a, b, c]
}

/// Kind and plaintext length of a header, checked before anything is
/// reserved for the record.
pub fn parse_header(h: &[u8]) -> Result<(u8, usize), SecureError> {
    let len = u32::from_be_bytes([0, h[1], h[2], h[3]]) as usize;
    match h[0] {
        KIND_DATA if len <= RECORD_LIMIT => Ok((KIND_DATA, len)),
        KIND_DATA => Err(SecureError::Integrity("a record is longer than 64 KiB")),
        KIND_CLOSE if len == 0 => Ok((KIND_CLOSE, 0)),
        KIND_CLOSE => Err(SecureError::Integrity("a close record carries data")),
        _ => Err(SecureError::Integrity("a record of unknown kind")),
    }
}

/// One direction's AEAD key and record counter.
pub struct Direction {
    aead: Box<dyn Cipher>,
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
    pub fn new(key: &[u8; 32]) -> Self {
        let mut aead = RingResolver
            .resolve_cipher(&CipherChoice::AESGCM)
            .expect("snow's ring resolver provides AES-GCM");
        aead.set(key);
        Direction { aead, counter: 0 }
    }

    /// The next nonce's counter; fails rather than ever repeat one.
    fn next_nonce(&mut self) -> Result<u64, SecureError> {
        let n = self.counter;
        self.counter = n.checked_add(1).ok_or(SecureError::NonceExhausted)?;
        Ok(n)
    }

    /// Encrypts `plain` into `out` (at least `TAG_LEN` bytes longer),
    /// authenticating `header`: the ciphertext, then the tag. Returns the
    /// bytes written.
    pub fn seal_into(
        &mut self,
        header: &[u8],
        plain: &[u8],
        out: &mut [u8],
    ) -> Result<usize, SecureError> {
        if out.len() < plain.len() + TAG_LEN {
            return Err(SecureError::Integrity(
                "a record does not fit where it goes",
            ));
        }
        // `next_nonce` hands each counter out once, and fails rather than wrap.
        let nonce = self.next_nonce()?;
        Ok(self.aead.encrypt(nonce, header, plain, out))
    }

    /// Decrypts `sealed` (ciphertext then tag) into `out` if it
    /// authenticates, with `header`, as the next record of this direction;
    /// `out` needs room for all of `sealed`, and its first
    /// `sealed.len() - TAG_LEN` bytes then hold the plaintext (the rest is
    /// unspecified, as is all of `out` on failure).
    pub fn open_into(
        &mut self,
        header: &[u8],
        sealed: &[u8],
        out: &mut [u8],
    ) -> Result<(), SecureError> {
        if sealed.len() < TAG_LEN || out.len() < sealed.len() {
            // ring's wrapper would copy into a fresh allocation otherwise.
            return Err(SecureError::Integrity(
                "a record does not fit where it goes",
            ));
        }
        let nonce = self.next_nonce()?;
        self.aead
            .decrypt(nonce, header, sealed, out)
            .map(drop)
            .map_err(|_| SecureError::Integrity(NOT_AUTHENTIC))
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

    fn seal(tx: &mut Direction, h: &[u8], plain: &[u8]) -> Vec<u8> {
        let mut out = vec![0; plain.len() + TAG_LEN];
        assert_eq!(tx.seal_into(h, plain, &mut out), Ok(out.len()));
        out
    }

    #[test]
    fn a_sealed_record_opens_once_in_order_and_not_when_altered() {
        let mut tx = Direction::new(&[7; 32]);
        let mut rx = Direction::new(&[7; 32]);
        let h = header(KIND_DATA, 5);
        let sealed = seal(&mut tx, &h, b"hello");
        assert_ne!(&sealed[..5], b"hello");
        let mut out = [0u8; 5 + TAG_LEN];
        let mut altered = sealed.clone();
        altered[0] ^= 1;
        assert!(Direction::new(&[7; 32])
            .open_into(&h, &altered, &mut out)
            .is_err());
        let mut other_header = h;
        other_header[3] ^= 1;
        assert!(Direction::new(&[7; 32])
            .open_into(&other_header, &sealed, &mut out)
            .is_err());
        rx.open_into(&h, &sealed, &mut out).unwrap();
        assert_eq!(&out[..5], b"hello");
        // The same record again is record 1 to the receiver: refused.
        assert!(rx.open_into(&h, &sealed, &mut out).is_err());
    }

    #[test]
    fn records_use_the_documented_nonce_so_another_aes_gcm_opens_them() {
        // The record layout of docs/PROTOCOL.md, checked against RustCrypto's
        // AES-256-GCM: nonce = 4 zero bytes, then the counter big-endian.
        use aes_gcm::aead::{Aead, KeyInit, Payload};
        let mut tx = Direction::new(&[9; 32]);
        let h = header(KIND_DATA, 3);
        let _first = seal(&mut tx, &h, b"one");
        let second = seal(&mut tx, &h, b"two");
        let other = aes_gcm::Aes256Gcm::new(&[9u8; 32].into());
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&1u64.to_be_bytes());
        let plain = other
            .decrypt(
                &nonce.into(),
                Payload {
                    msg: &second,
                    aad: &h,
                },
            )
            .expect("record 1 opens with the documented nonce");
        assert_eq!(plain, b"two");
    }

    #[test]
    fn the_counter_never_wraps_to_a_used_nonce() {
        let mut tx = Direction::new(&[1; 32]);
        tx.set_counter(u64::MAX - 1);
        let mut out = [0u8; TAG_LEN];
        assert!(tx.seal_into(&header(KIND_DATA, 0), &[], &mut out).is_ok());
        assert_eq!(
            tx.seal_into(&header(KIND_DATA, 0), &[], &mut out),
            Err(SecureError::NonceExhausted)
        );
    }

    #[test]
    fn headers_beyond_the_limit_or_of_unknown_kind_are_refused() {
        assert_eq!(
            parse_header(&header(KIND_DATA, RECORD_LIMIT)),
            Ok((KIND_DATA, RECORD_LIMIT))
        );
        assert!(parse_header(&[KIND_DATA, 0x01, 0x00, 0x01]).is_err());
        assert!(parse_header(&[KIND_CLOSE, 0, 0, 1]).is_err());
        assert!(parse_header(&[9, 0, 0, 0]).is_err());
    }

    #[test]
    fn a_record_carries_up_to_64_kib_and_the_wire_limit_is_the_largest_sealed_record() {
        // 64 KiB exactly, by its bytes on the wire: 0x01_00_00.
        assert_eq!(
            parse_header(&[KIND_DATA, 0x01, 0x00, 0x00]),
            Ok((KIND_DATA, 64 * 1024))
        );
        assert_eq!(RECORD_LIMIT, 64 * 1024);
        let mut tx = Direction::new(&[3; 32]);
        let h = header(KIND_DATA, RECORD_LIMIT);
        let sealed = seal(&mut tx, &h, &vec![0x5a; RECORD_LIMIT]);
        assert_eq!(h.len() + sealed.len(), RECORD_WIRE_LIMIT);
    }

    #[test]
    fn sealing_needs_room_for_the_tag_spends_no_nonce_when_short_and_takes_a_larger_buffer() {
        let mut tx = Direction::new(&[4; 32]);
        let mut rx = Direction::new(&[4; 32]);
        let h = header(KIND_DATA, 3);
        let mut short = [0u8; 3 + TAG_LEN - 1];
        assert_eq!(
            tx.seal_into(&h, b"abc", &mut short),
            Err(SecureError::Integrity(
                "a record does not fit where it goes"
            ))
        );
        let mut roomy = [0u8; 3 + TAG_LEN + 10];
        assert_eq!(tx.seal_into(&h, b"abc", &mut roomy), Ok(3 + TAG_LEN));
        // Record 0 still: the refused seal used no nonce.
        let mut out = [0u8; 3 + TAG_LEN];
        rx.open_into(&h, &roomy[..3 + TAG_LEN], &mut out).unwrap();
        assert_eq!(&out[..3], b"abc");
    }

    #[test]
    fn a_record_shorter_than_a_tag_or_larger_than_the_buffer_is_refused_before_a_nonce_is_spent() {
        const DOES_NOT_FIT: SecureError =
            SecureError::Integrity("a record does not fit where it goes");
        let mut tx = Direction::new(&[6; 32]);
        let mut rx = Direction::new(&[6; 32]);
        let h = header(KIND_DATA, 3);
        let sealed = seal(&mut tx, &h, b"abc");
        let mut out = [0u8; 64];
        assert_eq!(
            rx.open_into(&h, &sealed[..TAG_LEN - 1], &mut out),
            Err(DOES_NOT_FIT)
        );
        assert_eq!(
            rx.open_into(&h, &sealed, &mut out[..sealed.len() - 1]),
            Err(DOES_NOT_FIT)
        );
        // Still record 0, and a larger buffer is fine.
        assert_eq!(rx.open_into(&h, &sealed, &mut out), Ok(()));
        assert_eq!(&out[..3], b"abc");
        // A record of no plaintext (a close record) is a tag alone.
        let close = header(KIND_CLOSE, 0);
        let empty = seal(&mut tx, &close, b"");
        assert_eq!(empty.len(), TAG_LEN);
        assert_eq!(rx.open_into(&close, &empty, &mut out[..TAG_LEN]), Ok(()));
    }

    #[test]
    fn a_direction_debugs_as_its_record_counter_and_never_shows_its_key() {
        let mut tx = Direction::new(&[5; 32]);
        assert_eq!(format!("{tx:?}"), "Direction { counter: 0, .. }");
        seal(&mut tx, &header(KIND_DATA, 1), b"x");
        assert_eq!(format!("{tx:?}"), "Direction { counter: 1, .. }");
    }

    #[test]
    fn a_refused_header_says_why_a_long_record_a_close_with_data_an_unknown_kind() {
        assert_eq!(
            parse_header(&[KIND_DATA, 0x01, 0x00, 0x01]),
            Err(SecureError::Integrity("a record is longer than 64 KiB"))
        );
        assert_eq!(
            parse_header(&[KIND_CLOSE, 0, 0, 1]),
            Err(SecureError::Integrity("a close record carries data"))
        );
        assert_eq!(parse_header(&header(KIND_CLOSE, 0)), Ok((KIND_CLOSE, 0)));
        assert_eq!(
            parse_header(&[9, 0, 0, 0]),
            Err(SecureError::Integrity("a record of unknown kind"))
        );
    }
}
