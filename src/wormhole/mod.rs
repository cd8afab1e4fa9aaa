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
//! * [`code`]: wormhole codes (`7-guitarist-revenge`): parsing, and generating from the PGP word list.
//! * [`keys`]: the key schedule and SecretBox sealing both layers share.
//! * [`Wormhole`] (`client`): the client protocol, one machine: mailbox
//!   session, SPAKE2 over the code, versions, numbered phases. Under it,
//!   `mailbox` (the server protocol's commands and answers) and `ws` (the
//!   WebSocket over the machine's buffers), both crate-private.
//! * [`transfer`]: the file-transfer protocol's messages (offer, answer).
//! * [`offer`]: the wormhole phase of a transfer (offer, accept or
//!   decline), as two apps of the machine.
//! * [`transit`]: the transit layer, one candidate connection as a machine: relay and transit handshakes, then SecretBox records; and the `transit` hints message.

mod client;
pub mod code;
pub mod keys;
mod mailbox;
pub mod offer;
pub mod transfer;
pub mod transit;
pub(crate) mod ws;

pub use client::{Wormhole, WormholeEvent};

use std::time::Duration;

use serde_json::Value;

/// An app's error for a wormhole failure (or a machine's refusal), so
/// the driver ends the session with it as `DriverError::App`.
pub(crate) fn app_error(error: impl Into<crate::Error>) -> std::io::Error {
    std::io::Error::other(error.into())
}

/// The public mailbox server magic-wormhole's clients use by default.
pub const PUBLIC_MAILBOX: &str = "ws://relay.magic-wormhole.io:4000/v1";
/// The public transit relay magic-wormhole's clients use by default.
pub const PUBLIC_TRANSIT_RELAY: &str = "tcp:transit.magic-wormhole.io:4001";
/// The application id of `wormhole send`/`receive` (file-transfer protocol):
/// both sides must use the same one to meet.
pub const FILE_TRANSFER_APPID: &str = "lothar.com/wormhole/text-or-file-xfer";
/// The purpose the file-transfer protocol derives its transit key for,
/// whatever the app id ([`Wormhole::derive_key`]): Python's client fixed
/// it to the file-transfer app id's (its bug 339), and every client follows.
pub const TRANSIT_KEY_PURPOSE: &str = "lothar.com/wormhole/text-or-file-xfer/transit-key";

/// The purpose two echoxfer sides derive the native protocol's secret
/// for ([`Wormhole::derive_key`]): its 32 bytes, as 64 lowercase hex
/// digits, are the secure channel's password over the transit connection.
pub const NATIVE_SECRET_PURPOSE: &str = "echoxfer/native-over-transit/v1/secret";

/// How a [`Wormhole`] reaches its mailbox and what it says there.
#[derive(Debug, Clone, PartialEq)]
pub struct WormholeConfig {
    /// The mailbox server's WebSocket URL. Default: [`PUBLIC_MAILBOX`].
    pub mailbox_url: String,
    /// The application id both sides share. Default:
    /// [`FILE_TRANSFER_APPID`], so that `wormhole send` finds us.
    pub appid: String,
    /// What this side tells the peer in its version phase's
    /// `app_versions`. Default: `{}`.
    pub app_versions: Value,
    /// Words in an allocated code after the nameplate. Default: 2
    /// (wormhole's default: 16 bits, one guess per code).
    pub code_words: usize,
    /// How long the mailbox server may take to answer a command (welcome,
    /// allocate, claim, release, close) before the session fails.
    /// Default: 30 s. Waiting for the other person has no limit.
    pub answer_within: Duration,
    /// How often to ping the server while waiting, so NAT bindings stay
    /// open. Default: 60 s; `None` never pings.
    pub keep_alive: Option<Duration>,
}

impl Default for WormholeConfig {
    fn default() -> Self {
        WormholeConfig {
            mailbox_url: PUBLIC_MAILBOX.to_owned(),
            appid: FILE_TRANSFER_APPID.to_owned(),
            app_versions: Value::Object(Default::default()),
            code_words: 2,
            answer_within: Duration::from_secs(30),
            keep_alive: Some(Duration::from_secs(60)),
        }
    }
}
