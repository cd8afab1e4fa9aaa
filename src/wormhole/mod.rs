//! A magic-wormhole client (feature `wormhole`): a short code connects two
//! machines anywhere, through a mailbox server that pairs them and a
//! transit relay that carries the bytes when no direct path exists. The
//! protocols are magic-wormhole's own (server, client, transit and
//! file-transfer protocols), so any wormhole client is a peer.
//!
//! Sans-IO like every machine of this crate: the WebSocket framing runs
//! over the machine's own buffers, JSON and cryptography are pure
//! functions, and time comes in as a value. Nothing here opens a socket;
//! the drivers and the CLI do.
//!
//! * [`keys`]: the key schedule and SecretBox sealing both layers share.

pub mod keys;
