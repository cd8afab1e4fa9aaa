//! Records: `kind (1) | length (3, big-endian) | ciphertext (length) | tag (16)`,
//! sealed with AES-256-GCM (RustCrypto's `aes-gcm`, in place) under one key per
//! direction, the header as associated data, and a 96-bit nonce made of
//! four zero bytes and a 64-bit big-endian record counter (one per
//! direction, from 0, never reused).

use aes_gcm::aead::inout::InOutBuf;
use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};

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

/// The nonce of record number `counter`.
fn nonce(counter: u64) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&counter.to_be_bytes());
    n
}

/// One direction's AEAD key and record counter.
pub struct Direction {
    aead: Aes256Gcm,
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
        Direction {
            aead: Aes256Gcm::new(key.into()),
            counter: 0,
        }
    }

    /// The next nonce; fails rather than ever repeat one.
    fn next_nonce(&mut self) -> Result<[u8; 12], SecureError> {
        let n = self.counter;
        self.counter = n.checked_add(1).ok_or(SecureError::NonceExhausted)?;
        Ok(nonce(n))
    }

    /// Encrypts `body` in place, authenticating `header`; returns the tag.
    pub fn seal(&mut self, header: &[u8], body: &mut [u8]) -> Result<[u8; TAG_LEN], SecureError> {
        // The nonce is the counter's: `next_nonce` hands each out once,
        // and fails rather than wrap.
        let nonce = Nonce::from(self.next_nonce()?);
        let tag = self
            .aead
            .encrypt_inout_detached(&nonce, header, body.into())
            .map_err(|_| SecureError::Integrity("a record too long to seal"))?;
        Ok(tag.into())
    }

    /// Decrypts `body` in place if `tag` authenticates it and `header` as
    /// the next record of this direction.
    pub fn open(&mut self, header: &[u8], body: &mut [u8], tag: &[u8]) -> Result<(), SecureError> {
        let nonce = Nonce::from(self.next_nonce()?);
        let tag = Tag::try_from(tag)
            .map_err(|_| SecureError::Integrity("a record's tag is not 16 bytes"))?;
        self.aead
            .decrypt_inout_detached(&nonce, header, body.into(), &tag)
            .map_err(|_| {
                SecureError::Integrity(
                    "a record does not authenticate (altered, dropped, repeated or reordered)",
                )
            })
    }

    /// Decrypts `body` into `out` (as long) if `tag` authenticates it and
    /// `header` as the next record of this direction: the one pass over
    /// the bytes, where they are wanted. `out` is unspecified on failure.
    pub fn open_into(
        &mut self,
        header: &[u8],
        body: &[u8],
        tag: &[u8],
        out: &mut [u8],
    ) -> Result<(), SecureError> {
        let nonce = Nonce::from(self.next_nonce()?);
        let tag = Tag::try_from(tag)
            .map_err(|_| SecureError::Integrity("a record's tag is not 16 bytes"))?;
        let buf = InOutBuf::new(body, out)
            .map_err(|_| SecureError::Integrity("a record does not fit where it goes"))?;
        self.aead
            .decrypt_inout_detached(&nonce, header, buf, &tag)
            .map_err(|_| {
                SecureError::Integrity(
                    "a record does not authenticate (altered, dropped, repeated or reordered)",
                )
            })
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

    #[test]
    fn a_sealed_record_opens_once_in_order_and_not_when_altered() {
        let mut tx = Direction::new(&[7; 32]);
        let mut rx = Direction::new(&[7; 32]);
        let h = header(KIND_DATA, 5);
        let mut body = *b"hello";
        let tag = tx.seal(&h, &mut body).unwrap();
        assert_ne!(&body, b"hello");
        let mut altered = body;
        altered[0] ^= 1;
        assert!(Direction::new(&[7; 32])
            .open(&h, &mut altered, &tag)
            .is_err());
        rx.open(&h, &mut body, &tag).unwrap();
        assert_eq!(&body, b"hello");
        // The same record again is record 1 to the receiver: refused.
        let mut again = body;
        assert!(rx.open(&h, &mut again, &tag).is_err());
    }

    #[test]
    fn the_counter_never_wraps_to_a_used_nonce() {
        let mut tx = Direction::new(&[1; 32]);
        tx.set_counter(u64::MAX - 1);
        assert!(tx.seal(&header(KIND_DATA, 0), &mut []).is_ok());
        assert_eq!(
            tx.seal(&header(KIND_DATA, 0), &mut []),
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
}
