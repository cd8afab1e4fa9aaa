//! The echo protocols: framed echo over a stream, RFC 862 raw echo, and
//! RFC 862 datagram echo with a ping client. Machines only; no I/O.

mod client;
mod raw;
mod reply_limit;
mod server;
mod udp;

pub use client::{ClientEvent, ClientRole};
pub use raw::{RawEcho, RawEvent, RawRole};
pub use reply_limit::{refused_source, ReplyRefusal, REFUSED_SOURCE_PORTS};
pub use server::{ServerEvent, ServerRole};
pub use udp::{
    PingEvent, PingStats, UdpEchoServer, UdpEvent, UdpPing, UdpServerStats, MIN_PROBE_SIZE,
};

use crate::session::Framed;

/// The framed echo server machine: greets, echoes every message, ends on `Exit`.
pub type Server = Framed<ServerRole>;
/// The framed echo client machine: sends messages, checks every reply.
pub type Client = Framed<ClientRole>;

/// The greeting a native echo server sends unless told otherwise: it
/// names what `echoxfer echo connect` ends a session on (a line `exit`,
/// or the end of its input).
pub const DEFAULT_GREETING: &str =
    "echoxfer echo: each line you type comes back; a line `exit` (or Ctrl-D) ends the session";
