//! The magics that open a connection, for every layer that must tell one
//! kind of peer from another: the plaintext codec recognises a secure
//! hello (and says the peer expects encryption), the secure channel
//! recognises a plaintext preamble (and says the peer is plaintext). Kept
//! here, below both, so neither layer reads the other; the public paths
//! are [`codec::MAGIC`](crate::codec::MAGIC) and
//! [`secure::SECURE_MAGIC`](crate::secure::SECURE_MAGIC).

/// The four bytes that open every native connection.
pub const MAGIC: [u8; 4] = *b"EXFR";

/// The first bytes of a secure hello (a plaintext session starts `EXFR`).
pub const SECURE_MAGIC: [u8; 4] = *b"EXFS";
