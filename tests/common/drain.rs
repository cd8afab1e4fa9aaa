//! Draining a stream machine's output, and decoding the frames it sent.

use bytes::BytesMut;
use echoxfer::codec::{Frame, FrameDecoder, Protocol};
use echoxfer::{Error, Output, StreamMachine};

/// What a machine output until it waited or ended.
pub struct Polled<E> {
    /// The bytes it transmitted.
    pub bytes: Vec<u8>,
    /// The events it emitted.
    pub events: Vec<E>,
    /// How it ended (`None` while it only waits).
    pub done: Option<Result<(), Error>>,
}

/// Polls `m` until it waits or ends.
pub fn poll_all<M: StreamMachine>(m: &mut M) -> Polled<M::Event> {
    let mut bytes = Vec::new();
    let mut events = Vec::new();
    let done = loop {
        match m.poll_output() {
            Output::Transmit(b) => bytes.extend_from_slice(&b),
            Output::Event(e) => events.push(e),
            Output::Wait(_) => break None,
            Output::Done(r) => break Some(r),
        }
    };
    Polled {
        bytes,
        events,
        done,
    }
}

/// The peer's view of one machine for a whole session: decodes what the
/// machine sends, however its output is split across drains.
pub struct Wire {
    decoder: FrameDecoder,
    buf: BytesMut,
    /// How the machine ended, once it has.
    pub done: Option<Result<(), Error>>,
}

impl Wire {
    /// A wire that expects `protocol`'s preamble first.
    pub fn new(protocol: Protocol) -> Self {
        Wire {
            decoder: FrameDecoder::new(protocol, 1 << 20),
            buf: BytesMut::new(),
            done: None,
        }
    }

    /// Drains `m` (see [`poll_all`]): the whole frames it sent so far and
    /// its events; records its end in `done`. Panics on malformed output.
    pub fn drain<M: StreamMachine>(&mut self, m: &mut M) -> (Vec<Frame>, Vec<M::Event>) {
        let Polled {
            bytes,
            events,
            done,
        } = poll_all(m);
        self.buf.extend_from_slice(&bytes);
        if done.is_some() {
            self.done = done;
        }
        let mut frames = Vec::new();
        while let Some(f) = self
            .decoder
            .decode(&mut self.buf)
            .expect("well-formed output")
        {
            frames.push(f);
        }
        (frames, events)
    }
}

/// The request of the (last) `Offer` among `events`.
#[allow(dead_code)]
pub fn offer_request(
    events: impl IntoIterator<Item = echoxfer::xfer::ReceiverEvent>,
) -> echoxfer::xfer::OfferRequest {
    events
        .into_iter()
        .filter_map(|e| match e {
            echoxfer::xfer::ReceiverEvent::Offer { request, .. } => Some(request),
            _ => None,
        })
        .last()
        .expect("an Offer among the events")
}

/// The request of the (last) `Verified` among `events`.
#[allow(dead_code)]
pub fn save_request(
    events: impl IntoIterator<Item = echoxfer::xfer::ReceiverEvent>,
) -> echoxfer::xfer::SaveRequest {
    events
        .into_iter()
        .filter_map(|e| match e {
            echoxfer::xfer::ReceiverEvent::Verified { request, .. } => Some(request),
            _ => None,
        })
        .last()
        .expect("a Verified among the events")
}
