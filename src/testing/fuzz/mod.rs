//! Fuzz harnesses, shared by `bolero::check!` under `cargo test` and the
//! one-line targets in `fuzz/fuzz_targets`. Each takes arbitrary bytes and
//! panics only when an invariant of the protocol breaks: every harness
//! checks what the machine did against what it must do (not just that it
//! did not panic). Pure: memory and a virtual clock only.
//!
//! * [`codec`]: the frame decoder, fed whole and cut, and encode/decode round trips.
//! * [`echo`]: the framed echo server fed hostile bytes, and a client/server pair.
//! * [`receiver`], [`filexfer`]: the file-transfer machines.
//! * `legacy_*`: one harness per legacy machine.
//! * [`secure`]: the secure channel, fed hostile bytes raw or after an
//!   honest handshake, and whole sessions altered after the handshake.
//! * `transit` (feature `wormhole`): a wormhole transit connection fed
//!   hostile bytes in record mode or from its first byte, and an honest
//!   sender's records altered on the way.

use std::time::{Duration, Instant};

use crate::config::{EchoConfig, SessionLimits, TransferConfig, UnframedConfig};

mod codec;
pub(crate) mod echo;
mod legacy;
mod secure;
mod seeds;
#[cfg(feature = "wormhole")]
mod transit;
mod xfer;

pub use codec::codec;
pub use echo::echo;
pub use legacy::{
    legacy_echo_client, legacy_echo_server, legacy_file_receiver, legacy_file_sender, legacy_udp,
};
pub use secure::secure;
pub use seeds::{run, seed_corpora, TARGETS};
#[cfg(feature = "wormhole")]
pub use transit::{transit, transit_seeds};
pub use xfer::{filexfer, receiver};

/// Small session limits so that fuzz cases stay quick: 4 KiB frames.
pub fn small_limits() -> SessionLimits {
    SessionLimits {
        max_frame: 4096,
        recv_buffer: 4096 + 64,
        send_buffer: 8192,
        ..SessionLimits::default()
    }
}

/// Echo limits to go with [`small_limits`]: 1 KiB messages.
pub fn small_echo() -> EchoConfig {
    EchoConfig {
        max_message: 1024,
        ..EchoConfig::default()
    }
}

/// Transfer limits to go with [`small_limits`]: 1 KiB chunks, 64-byte
/// names, paths of at most 8 components and 256 bytes, 1 MiB files, a
/// window of 8 entries.
pub fn small_transfer() -> TransferConfig {
    TransferConfig {
        chunk_size: 1024,
        max_name_len: 64,
        max_depth: 8,
        max_path_len: 256,
        max_file_size: 1 << 20,
        window: 8,
        ..TransferConfig::default()
    }
}

/// The unframed machines' limits on the same small scale.
pub fn small_unframed() -> UnframedConfig {
    UnframedConfig {
        max_message: 1024,
        recv_buffer: 4096 + 64,
        send_buffer: 8192,
        max_file_size: 1 << 20,
        ..UnframedConfig::default()
    }
}

/// Polls allowed in one drain before the machine counts as livelocked.
const MAX_POLLS: usize = 100_000;

/// Reads fields off the fuzz input, with zeros once it runs out.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn byte(&mut self) -> u8 {
        let Some((&b, rest)) = self.0.split_first() else {
            return 0;
        };
        self.0 = rest;
        b
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.byte(), self.byte(), self.byte(), self.byte()])
    }

    /// Up to `n` bytes off the front (fewer once the input runs out).
    fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, tail) = self.0.split_at(n.min(self.0.len()));
        self.0 = tail;
        head
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A clock jump picked by one input byte: mostly short, sometimes past
/// every timer of [`small_config`] (the idle timeout is 60 s).
fn jump(b: u8) -> Duration {
    match b % 8 {
        0..=3 => Duration::from_millis(u64::from(b)),
        4 | 5 => Duration::from_millis(200 + 10 * u64::from(b)),
        6 => Duration::from_secs(u64::from(b % 64) + 1),
        _ => Duration::from_secs(61),
    }
}

/// The virtual start of every harness run.
fn start() -> Instant {
    Instant::now()
}

/// What one drain of a machine produced.
struct Drained<T, E> {
    transmits: Vec<T>,
    events: Vec<E>,
    /// `Some` once the machine said `Done`.
    done: Option<Result<(), crate::Error>>,
    /// The deadline of the final `Wait`.
    wait: Option<Instant>,
}

/// Drains `m` until it waits or is done, in a bounded number of polls.
fn drain<M: crate::Machine>(m: &mut M) -> Drained<M::Transmit, M::Event> {
    use crate::Output;
    let mut d = Drained {
        transmits: Vec::new(),
        events: Vec::new(),
        done: None,
        wait: None,
    };
    for _ in 0..MAX_POLLS {
        match m.poll_output() {
            Output::Transmit(t) => d.transmits.push(t),
            Output::Event(e) => d.events.push(e),
            Output::Wait(t) => {
                d.wait = t;
                return d;
            }
            Output::Done(r) => {
                d.done = Some(r);
                return d;
            }
        }
    }
    panic!("machine did not settle within {MAX_POLLS} polls");
}
