//! The part of a stream machine's link that is the same for framed and
//! unframed roles: the output queue (with its byte count, for
//! back-pressure), the events for the application, and the clock, which
//! only moves forward. [`Link`](crate::session::Link) (framed) and
//! [`UnframedLink`](crate::unframed::UnframedLink) each wrap one and add
//! their own limits and rules. Pure: no I/O.

use std::collections::VecDeque;
use std::time::Instant;

use bytes::Bytes;

/// Queued output and events, and the latest time the driver reported.
#[derive(Debug)]
pub(crate) struct LinkCore<E> {
    now: Instant,
    tx: VecDeque<Bytes>,
    tx_bytes: usize,
    events: VecDeque<E>,
}

impl<E> LinkCore<E> {
    /// Nothing queued; the clock at `now`.
    pub(crate) fn new(now: Instant) -> Self {
        LinkCore {
            now,
            tx: VecDeque::new(),
            tx_bytes: 0,
            events: VecDeque::new(),
        }
    }

    /// The latest time the driver reported.
    pub(crate) fn now(&self) -> Instant {
        self.now
    }

    /// Moves the clock forward (never back).
    pub(crate) fn tick(&mut self, now: Instant) {
        self.now = self.now.max(now);
    }

    /// Queues bytes for the peer.
    pub(crate) fn push(&mut self, bytes: Bytes) {
        self.tx_bytes += bytes.len();
        self.tx.push_back(bytes);
    }

    /// Queues an event for the application.
    pub(crate) fn emit(&mut self, event: E) {
        self.events.push_back(event);
    }

    /// Bytes queued for the peer and not yet handed out.
    pub(crate) fn queued(&self) -> usize {
        self.tx_bytes
    }

    /// The next bytes for the peer, in order.
    pub(crate) fn pop_transmit(&mut self) -> Option<Bytes> {
        let bytes = self.tx.pop_front()?;
        self.tx_bytes -= bytes.len();
        Some(bytes)
    }

    /// The next event for the application, in order.
    pub(crate) fn pop_event(&mut self) -> Option<E> {
        self.events.pop_front()
    }

    /// Whether anything waits to be handed out.
    pub(crate) fn has_output(&self) -> bool {
        !self.tx.is_empty() || !self.events.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn output_goes_out_in_order_and_the_count_follows_it() {
        let t0 = Instant::now();
        let mut core = LinkCore::new(t0);
        assert!(!core.has_output());
        core.push(Bytes::from_static(b"abc"));
        core.push(Bytes::from_static(b"de"));
        core.emit(1);
        core.emit(2);
        assert_eq!(core.queued(), 5);
        assert!(core.has_output());
        assert_eq!(core.pop_transmit().as_deref(), Some(&b"abc"[..]));
        assert_eq!(core.queued(), 2);
        assert_eq!(core.pop_transmit().as_deref(), Some(&b"de"[..]));
        assert_eq!((core.queued(), core.pop_transmit()), (0, None));
        assert!(core.has_output(), "the events are still there");
        assert_eq!((core.pop_event(), core.pop_event()), (Some(1), Some(2)));
        assert!(!core.has_output());
    }

    #[test]
    fn the_clock_never_goes_back() {
        let t0 = Instant::now();
        let mut core = LinkCore::<()>::new(t0);
        core.tick(t0 + Duration::from_secs(2));
        core.tick(t0 + Duration::from_secs(1));
        assert_eq!(core.now(), t0 + Duration::from_secs(2));
    }
}
