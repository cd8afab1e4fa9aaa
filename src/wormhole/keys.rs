//! The wormhole's key schedule and sealing, shared by the client protocol
//! and transit: HKDF-SHA256 subkeys of the SPAKE2 key, and NaCl SecretBox
//! (XSalsa20-Poly1305) with the nonce sent in front of the ciphertext. Pure
//! functions over bytes; the randomness comes from the caller.

use crypto_secretbox::aead::{Aead, KeyInit};
use crypto_secretbox::{Nonce, XSalsa20Poly1305};
use hkdf::Hkdf;
use sha2::{Digest, Sha256};

/// Bytes of a SecretBox key (and of every subkey derived here).
pub const KEY_LEN: usize = 32;
/// Bytes of a SecretBox nonce, sent in front of each sealed box.
pub const NONCE_LEN: usize = 24;
/// Bytes of the Poly1305 tag a sealed box adds.
pub const TAG_LEN: usize = 16;

/// A 32-byte key: the SPAKE2 key, or one derived from it.
pub type Key = [u8; KEY_LEN];

/// The subkey of `key` for `purpose`: HKDF-SHA256 with no salt and
/// `purpose` as the info string, as every wormhole client derives them.
pub fn derive(key: &[u8], purpose: &[u8]) -> Key {
    let mut out = [0u8; KEY_LEN];
    Hkdf::<Sha256>::new(None, key)
        .expand(purpose, &mut out)
        .expect("32 bytes is a valid HKDF-SHA256 length");
    out
}

/// The key that seals `side`'s message in `phase`:
/// `derive(key, "wormhole:phase:" + sha256(side) + sha256(phase))`.
pub fn phase_key(key: &[u8], side: &str, phase: &str) -> Key {
    let mut purpose = b"wormhole:phase:".to_vec();
    purpose.extend_from_slice(&Sha256::digest(side.as_bytes()));
    purpose.extend_from_slice(&Sha256::digest(phase.as_bytes()));
    derive(key, &purpose)
}

/// The verifier both sides can show their users to compare.
pub fn verifier(key: &[u8]) -> Key {
    derive(key, b"wormhole:verifier")
}

/// `nonce || secretbox(key, nonce, plaintext)`.
pub fn seal(key: &Key, nonce: [u8; NONCE_LEN], plaintext: &[u8]) -> Vec<u8> {
    let sealed = XSalsa20Poly1305::new(key.into())
        .encrypt(Nonce::from_slice(&nonce), plaintext)
        .expect("SecretBox seals any length that fits in memory");
    let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    out
}

/// The plaintext of `nonce || box`, or `None` when it does not
/// authenticate under `key` (or is too short to hold a nonce and a tag).
pub fn open(key: &Key, sealed: &[u8]) -> Option<Vec<u8>> {
    if sealed.len() < NONCE_LEN + TAG_LEN {
        return None;
    }
    let (nonce, body) = sealed.split_at(NONCE_LEN);
    XSalsa20Poly1305::new(key.into())
        .decrypt(Nonce::from_slice(nonce), body)
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_box_opens_with_its_key_only() {
        let key = derive(b"k", b"p");
        let other = derive(b"k", b"q");
        let sealed = seal(&key, [7; NONCE_LEN], b"hello");
        assert_eq!(sealed.len(), NONCE_LEN + 5 + TAG_LEN);
        assert_eq!(&sealed[..NONCE_LEN], &[7; NONCE_LEN]);
        assert_eq!(open(&key, &sealed).as_deref(), Some(&b"hello"[..]));
        assert_eq!(open(&other, &sealed), None);
        assert_eq!(open(&key, &sealed[..NONCE_LEN + TAG_LEN - 1]), None);
    }

    #[test]
    fn phase_keys_differ_by_side_and_phase() {
        let key = [1u8; 32];
        let a = phase_key(&key, "aa", "version");
        assert_ne!(a, phase_key(&key, "bb", "version"));
        assert_ne!(a, phase_key(&key, "aa", "0"));
        assert_eq!(a, phase_key(&key, "aa", "version"));
    }
}
