//! A transit relay for the simulator: [`SimRelay`] is the relay's end of
//! one side's connection, with the far side (another machine, connected
//! to the relay by a perfect in-memory link) inside it. So the simulator's
//! two-ended links carry a relayed transit: side A's connection, with
//! latency, fragments, stalls, corruption and cuts, reaches the relay,
//! which pairs it with the far side's and then forwards bytes both ways.
//!
//! It behaves as `magic-wormhole-transit-relay` does for TCP: each side's
//! first line must be `please relay TOKEN for side SIDE\n` (64 hex digits,
//! 16 characters; at most [`MAX_LINE`] bytes), two lines with the same
//! token and different sides are paired and each gets `ok\n`, and then
//! every byte goes across unchanged. A malformed line is refused
//! (`bad handshake\n`, then the connection ends); two tokens that differ
//! are never paired: both wait, as at the real relay, until their own
//! handshake timeout. Pure: memory and the time it is given.

use std::collections::VecDeque;
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use crate::error::{Error, WormholeError};
use crate::machine::{Machine, Output, StreamMachine};

/// The longest first line the relay reads before it refuses.
pub const MAX_LINE: usize = 256;

/// Where the pairing is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pairing {
    /// Reading both first lines.
    Waiting,
    /// Paired: bytes go across.
    Paired,
    /// A line was refused.
    Refused,
}

/// The relay's end of side A's connection, with the far side `M` inside
/// (see the [module docs](self)). Its events are `M`'s; reach `M` with
/// [`far_mut`](Self::far_mut) (an app of `M` runs as a closure that does).
#[derive(Debug)]
pub struct SimRelay<M> {
    far: M,
    pairing: Pairing,
    /// A's first line so far, then what A sent before the pairing.
    from_a: BytesMut,
    /// The far side's first line so far.
    from_far: Vec<u8>,
    /// Where A's input is read before the pairing.
    scratch: Vec<u8>,
    to_a: VecDeque<Bytes>,
    /// The far side ended: after what is queued for A, so does this end
    /// (before the pairing, once A hung up: the far side's end is not
    /// A's connection's).
    far_done: Option<Result<(), Error>>,
    /// A hung up.
    a_gone: bool,
    /// The latest time given, for what the relay hands the far side
    /// while it is drained.
    now: Instant,
}

/// The token and side of a first line, if it is one.
fn parse_line(line: &[u8]) -> Option<(&str, &str)> {
    let line = std::str::from_utf8(line).ok()?.strip_suffix('\n')?;
    let rest = line.strip_prefix("please relay ")?;
    let (token, side) = rest.split_once(" for side ")?;
    let hex = token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit());
    (hex && side.len() == 16).then_some((token, side))
}

impl<M: StreamMachine> SimRelay<M> {
    /// The relay at `now`, with `far` connected to it.
    pub fn new(far: M, now: Instant) -> Self {
        SimRelay {
            far,
            pairing: Pairing::Waiting,
            from_a: BytesMut::new(),
            from_far: Vec::new(),
            scratch: Vec::new(),
            to_a: VecDeque::new(),
            far_done: None,
            a_gone: false,
            now,
        }
    }

    /// The far side.
    pub fn far(&self) -> &M {
        &self.far
    }

    /// The far side, to call its commands (from its app).
    pub fn far_mut(&mut self) -> &mut M {
        &mut self.far
    }

    /// Whether the relay paired the two sides.
    pub fn paired(&self) -> bool {
        self.pairing == Pairing::Paired
    }

    /// The end of A's first line in what A sent, if it came.
    fn a_line_end(&self) -> Option<usize> {
        self.from_a.iter().position(|&b| b == b'\n').map(|i| i + 1)
    }

    /// Pairs the sides once both lines are in and agree.
    fn try_pairing(&mut self, now: Instant) {
        if self.pairing != Pairing::Waiting {
            return;
        }
        let a_end = self.a_line_end();
        let far_end = self.from_far.iter().position(|&b| b == b'\n');
        if a_end.is_none() && self.from_a.len() > MAX_LINE
            || far_end.is_none() && self.from_far.len() > MAX_LINE
        {
            return self.refuse();
        }
        let (Some(a_end), Some(far_line_end)) = (a_end, far_end) else {
            return;
        };
        let (Some((token_a, side_a)), Some((token_far, side_far))) = (
            parse_line(&self.from_a[..a_end]),
            parse_line(&self.from_far[..=far_line_end]),
        ) else {
            return self.refuse();
        };
        if token_a != token_far || side_a == side_far {
            return; // never paired: both wait for their own timeouts
        }
        self.pairing = Pairing::Paired;
        let _ = self.from_a.split_to(a_end);
        self.to_a.push_back(Bytes::from_static(b"ok\n"));
        let far_rest = self.from_far.split_off(far_line_end + 1);
        if !far_rest.is_empty() {
            self.to_a.push_back(Bytes::from(far_rest));
        }
        let _ = self.far.handle_input(now, b"ok\n");
        self.forward_held(now);
    }

    fn refuse(&mut self) {
        self.pairing = Pairing::Refused;
        self.to_a.push_back(Bytes::from_static(b"bad handshake\n"));
        self.from_a.clear();
    }

    /// Hands the far side what A sent before the pairing, as it has room.
    fn forward_held(&mut self, now: Instant) {
        while self.pairing == Pairing::Paired
            && !self.from_a.is_empty()
            && self.far.input_room() > 0
        {
            match self.far.handle_input(now, &self.from_a) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let _ = self.from_a.split_to(n);
                }
            }
        }
    }
}

impl<M: StreamMachine> Machine for SimRelay<M> {
    type Transmit = Bytes;
    type Event = M::Event;

    fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        self.far.handle_timeout(now);
    }

    fn poll_output(&mut self) -> Output<Bytes, M::Event> {
        if self.pairing == Pairing::Paired {
            self.forward_held(self.now);
        }
        loop {
            if let Some(bytes) = self.to_a.pop_front() {
                return Output::Transmit(bytes);
            }
            if self.pairing == Pairing::Refused {
                return Output::Done(Err(Error::Wormhole(WormholeError::Transit(
                    "the relay refused a handshake line",
                ))));
            }
            if let Some(result) = &self.far_done {
                if self.pairing == Pairing::Waiting && !self.a_gone {
                    return Output::Wait(None);
                }
                return Output::Done(result.clone());
            }
            match self.far.poll_output() {
                Output::Transmit(bytes) if self.pairing == Pairing::Paired => {
                    return Output::Transmit(bytes)
                }
                Output::Transmit(bytes) => {
                    // The far side's first line (and anything after it)
                    // stays at the relay until the pairing.
                    self.from_far.extend_from_slice(&bytes);
                    self.try_pairing(self.now);
                }
                Output::Event(event) => return Output::Event(event),
                Output::Done(result) => self.far_done = Some(result),
                Output::Wait(t) => return Output::Wait(t),
            }
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.far.poll_timeout()
    }
}

impl<M: StreamMachine> StreamMachine for SimRelay<M> {
    fn input_buffer(&mut self, max: usize) -> &mut [u8] {
        if self.pairing == Pairing::Paired && self.from_a.is_empty() {
            return self.far.input_buffer(max);
        }
        let n = max.min(self.input_room());
        self.scratch.resize(n, 0);
        &mut self.scratch
    }

    fn commit_input(&mut self, now: Instant, n: usize) -> Result<(), Error> {
        self.now = now;
        if self.pairing == Pairing::Paired && self.from_a.is_empty() {
            return self.far.commit_input(now, n);
        }
        if self.pairing == Pairing::Refused {
            return Ok(());
        }
        self.from_a.extend_from_slice(&self.scratch[..n]);
        self.try_pairing(now);
        self.forward_held(now);
        Ok(())
    }

    fn handle_eof(&mut self, now: Instant) {
        self.now = now;
        self.a_gone = true;
        // The relay passes A's end on to the far side.
        self.far.handle_eof(now);
    }

    fn abort(&mut self, reason: String) {
        self.far.abort(reason);
    }

    fn input_room(&self) -> usize {
        match self.pairing {
            Pairing::Paired if self.from_a.is_empty() => self.far.input_room(),
            Pairing::Paired => 0,
            // Before the pairing, a line and a little: what the real relay
            // buffers is bounded too.
            _ => (MAX_LINE + 1).saturating_sub(self.from_a.len()),
        }
    }

    fn write_timeout(&self) -> Option<std::time::Duration> {
        self.far.write_timeout()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wormhole::transit::{Role, Transit, TransitConfig};

    #[test]
    fn a_malformed_first_line_is_refused_and_the_relay_end_closes() {
        let now = Instant::now();
        let config = TransitConfig::new(Role::Receiver, &[1; 32]).via_relay("bbbbbbbbbbbbbbbb");
        let mut relay = SimRelay::new(Transit::new(config, now), now);
        assert!(matches!(relay.poll_output(), Output::Wait(_)));
        assert_eq!(relay.handle_input(now, b"please relay me\n"), Ok(16));
        assert_eq!(
            relay.poll_output(),
            Output::Transmit(Bytes::from_static(b"bad handshake\n"))
        );
        assert!(matches!(relay.poll_output(), Output::Done(Err(_))));
        assert!(!relay.paired());
    }
}
