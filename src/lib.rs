//! # echoxfer
//!
//! Two small network protocols, echo and file transfer, written as sans-IO
//! state machines: bytes and events in, bytes and events out, time passed
//! in as a value. Thin drivers put them on sockets: [`driver::blocking`]
//! (`std::net`, a thread per connection) and, with the `tokio` feature,
//! `driver::async_tokio`.
//!
//! Every machine keeps the same contract ([`Machine`], [`StreamMachine`],
//! [`DatagramMachine`]): feed input with `handle_input(now, bytes)` (or
//! read straight into the machine's own buffer with
//! [`StreamMachine::input_buffer`] and [`StreamMachine::commit_input`]),
//! fire timers with `handle_timeout(now)` (when [`Machine::poll_timeout`]
//! says), then drain [`Machine::poll_output`] until it says
//! [`Output::Wait`] or [`Output::Done`].
//!
//! ```
//! use std::time::Instant;
//! use bytes::Bytes;
//! use echoxfer::echo::{Client, ClientEvent, ClientRole, Server, ServerRole};
//! use echoxfer::{EchoConfig, Machine, Output, SessionLimits, StreamMachine};
//!
//! /// Moves all that `from` wants to send into `to`; returns `from`'s events.
//! /// (Your transport goes here: this one moves bytes in memory.)
//! fn shuttle<A: StreamMachine, B: StreamMachine>(from: &mut A, to: &mut B, now: Instant) -> Vec<A::Event> {
//!     let mut events = Vec::new();
//!     loop {
//!         match from.poll_output() {
//!             // Small transmits: each fits `to` at once (`handle_input`
//!             // says how much it took; see the README for a loop that
//!             // feeds the rest later).
//!             Output::Transmit(bytes) => assert_eq!(to.handle_input(now, &bytes), Ok(bytes.len())),
//!             Output::Event(e) => events.push(e),
//!             Output::Wait(_) | Output::Done(_) => return events,
//!         }
//!     }
//! }
//!
//! let now = Instant::now();
//! let mut server = Server::new(ServerRole::new("hello", EchoConfig::default()), SessionLimits::default(), now);
//! let mut client = Client::new(ClientRole::new(EchoConfig::default()), SessionLimits::default(), now);
//! client.send(&b"exit"[..]).unwrap(); // any bytes, even the word `exit`
//! client.close().unwrap();
//!
//! let mut seen = Vec::new();
//! for _ in 0..3 {
//!     seen.extend(shuttle(&mut client, &mut server, now));
//!     shuttle(&mut server, &mut client, now);
//! }
//! assert_eq!(seen, [
//!     ClientEvent::Greeted(Bytes::from_static(b"hello")),
//!     ClientEvent::Reply(Bytes::from_static(b"exit")),
//!     ClientEvent::Closed,
//! ]);
//! assert_eq!(client.poll_output(), Output::Done(Ok(())));
//! ```
//!
//! # What is stable
//!
//! The API this crate keeps across versions (breaking it is a major
//! version):
//!
//! * the machine contract: [`Machine`], [`StreamMachine`],
//!   [`DatagramMachine`], [`Output`], [`Datagram`];
//! * the machines, their commands, events and typed requests:
//!   [`echo`] (native TCP echo, RFC 862 UDP echo and ping), [`xfer`]
//!   (file sender and receiver), [`legacy`] (the teaching scripts' sentinel
//!   protocol), and [`secure`] ([`Secure`](secure::Secure),
//!   [`Channel`](secure::Channel), [`SecureConfig`](secure::SecureConfig),
//!   [`Handshake`](secure::Handshake), [`normalize_code`](secure::normalize_code));
//! * the configs (one per concern, each with documented defaults) and the
//!   errors ([`Error`], [`error`], [`driver::DriverError`]);
//! * the drivers and what they run: [`driver::App`], [`driver::Work`],
//!   [`driver::Abort`], [`driver::blocking`], the tokio driver, and the
//!   sans-IO loops a shell of one's own drives ([`driver::stream::StreamCore`],
//!   [`driver::datagram::DatagramCore`]);
//! * the file layer ([`files`]): the store, the walk and the apps the CLI
//!   runs on.
//!
//! Not stable: [`codec`] (the frames, for peers and harnesses; the wire
//! itself is versioned and specified in docs/PROTOCOL.md, which is what an
//! implementation in another language follows), [`session`] and
//! [`unframed`] (the framing under the machines), `testing` (feature
//! `testing`: the pair, the simulator and the fuzz harnesses), and, for
//! now, `wormhole` (feature `wormhole`, on by default: the magic-wormhole
//! client, its machines and the file-transfer messages, new in this
//! version; the protocols it speaks are magic-wormhole's and fixed, its
//! Rust API may still change). Tuning constants and the wire's sizes are
//! the crate's own.
#![deny(missing_docs)]

pub mod codec;
pub mod config;
pub mod driver;
pub mod echo;
pub mod error;
#[cfg(unix)]
pub mod files;
pub mod legacy;
mod link;
mod machine;
mod recv_buf;
pub mod secure;
pub mod session;
pub mod unframed;
mod wire;
#[cfg(feature = "wormhole")]
pub mod wormhole;
pub mod xfer;

#[cfg(feature = "testing")]
pub mod testing;

pub use config::{EchoConfig, SessionLimits, TransferConfig, UdpConfig, UnframedConfig};
pub use error::{Error, ErrorCode, ProtocolError, SecureError, UsageError, WormholeError};
pub use machine::{Datagram, DatagramMachine, Machine, Output, StreamMachine};

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
