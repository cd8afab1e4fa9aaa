//! # echoxfer
//!
//! Two small network protocols, echo and file transfer, written as sans-IO
//! state machines: bytes and events in, bytes and events out, time passed
//! in as a value. Thin drivers put them on sockets: [`driver::blocking`]
//! (`std::net`, a thread per connection) and, with the `tokio` feature,
//! `driver::tokio`.
//!
//! Every machine keeps the same contract ([`Machine`], [`StreamMachine`],
//! [`DatagramMachine`]): feed input with `handle_input(now, bytes)`, fire
//! timers with `handle_timeout(now)`, then drain [`Machine::poll_output`]
//! until it says [`Output::Wait`] or [`Output::Done`].
//!
//! ```
//! use std::time::Instant;
//! use echoxfer::echo::{ClientEvent, EchoClient, EchoServer, Client, Server};
//! use echoxfer::{Config, Machine, Output, StreamMachine};
//!
//! let now = Instant::now();
//! let mut server = EchoServer::new(Server::new("hello"), Config::default(), now);
//! let mut client = EchoClient::new(Client::new(), Config::default(), now);
//! client.send(&b"exit"[..]).unwrap(); // any bytes, even the word `exit`
//! client.close().unwrap();
//!
//! // Your transport goes here: this one just moves bytes in memory.
//! let mut replies = Vec::new();
//! for _ in 0..4 {
//!     while let Output::Transmit(bytes) = client.poll_output() {
//!         server.handle_input(now, &bytes).unwrap();
//!     }
//!     loop {
//!         match server.poll_output() {
//!             Output::Transmit(bytes) => client.handle_input(now, &bytes).unwrap(),
//!             Output::Event(_) => {}
//!             Output::Wait(_) | Output::Done(_) => break,
//!         }
//!     }
//! }
//! while let Output::Event(e) = client.poll_output() {
//!     replies.push(e);
//! }
//! assert_eq!(replies[1], ClientEvent::Reply(bytes::Bytes::from_static(b"exit")));
//! assert_eq!(client.poll_output(), Output::Done(Ok(())));
//! ```
#![deny(missing_docs)]

pub mod codec;
pub mod config;
pub mod driver;
pub mod echo;
pub mod error;
#[cfg(unix)]
pub mod files;
mod machine;
pub mod session;
pub mod xfer;

#[cfg(feature = "testing")]
pub mod testing;

pub use config::Config;
pub use error::{Error, ProtocolError, UsageError};
pub use machine::{Datagram, DatagramMachine, Machine, Output, StreamMachine};
