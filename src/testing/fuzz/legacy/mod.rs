//! One harness per legacy machine: hostile bytes and timing from the
//! input, every output checked against what the seed wire protocol allows.
//! Each harness is in a file of its own under `legacy/`; the helpers they share are here.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{drain, jump, small_unframed, start, Input};
use crate::config::{UdpConfig, UnframedConfig};
use crate::error::{Error, ProtocolError, UsageError};
use crate::legacy::{
    LegacyClientEvent, LegacyEchoClient, LegacyEchoServer, LegacyFileReceiver, LegacyFileSender,
    LegacyReceiverEvent, LegacySenderEvent, LegacyServerEvent, LegacyUdpSender, LegacyUdpSink,
    SenderDatagramEvent, SinkEvent, EXIT, GREETING_BLOCKING, GREETING_THREADED, PIECE_MAX, QUIT,
    SUCCESS,
};
use crate::machine::{Datagram, DatagramMachine, Machine, Output, StreamMachine};
use crate::testing::{Cutter, Pair};

mod echo_client;
mod echo_server;
mod file_receiver;
mod file_sender;
mod udp;

pub use echo_client::legacy_echo_client;
pub use echo_server::legacy_echo_server;
pub use file_receiver::legacy_file_receiver;
pub use file_sender::legacy_file_sender;
pub use udp::legacy_udp;

/// Whether `hay` contains `needle` anywhere.
fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Content with the seed protocols' in-band words mixed in: `quit`,
/// `exit`, `success`, torn words and newlines, between random bytes.
fn wordy(input: &mut Input<'_>, max: usize) -> Vec<u8> {
    const WORDS: [&[u8]; 10] = [
        b"quit", b"quit\n", b"exit", b"exit\n", b"success", b"qu", b"qui", b"q", b"\n", b"ex",
    ];
    let mut out = Vec::new();
    while !input.is_empty() && out.len() < max {
        let op = input.byte();
        if op < 64 {
            out.extend_from_slice(WORDS[usize::from(op) % WORDS.len()]);
        } else if op < 80 {
            // A long run, to cross the 1024-byte piece limit.
            let b = input.byte();
            out.extend(std::iter::repeat_n(b, usize::from(op) * 20));
        } else {
            out.extend_from_slice(input.take(usize::from(op - 80)));
        }
    }
    out.truncate(max);
    out
}

/// Input after the end (the rule of `crate::machine`): discarded, and
/// answered `Ok` after a normal end, the sticky error after a failure.
fn after_end(r: &Result<usize, Error>, end: &Result<(), Error>) {
    let r = r.as_ref().map(|_| ()).map_err(Clone::clone);
    assert_eq!(&r, end, "input after the end answered differently");
}
