//! RFC 862 echo over a stream: raw bytes back as they came, no greeting,
//! no framing, so `nc`, `socat` and any RFC 862 client can talk to it.

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::config::Config;
use crate::error::Error;
use crate::machine::{Machine, Output, StreamMachine};
use crate::unframed::Unframed;

/// What the raw echo machine tells its application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawEvent {
    /// This many bytes were queued to go back.
    Echoed(usize),
}

/// The RFC 862 stream echo machine. It ends when the peer closes its side
/// and every byte has gone back; output is bounded by `send_buffer`. Every
/// byte received restarts its idle timer (each is a whole unit here): the
/// framed machines' handshake and frame deadlines do not apply.
#[derive(Debug)]
pub struct RawEcho {
    core: Unframed<RawEvent>,
}

impl RawEcho {
    /// A raw echo session starting at `now`.
    pub fn new(config: Config, now: Instant) -> Self {
        RawEcho {
            core: Unframed::new(config, now),
        }
    }
}

impl Machine for RawEcho {
    type Transmit = Bytes;
    type Event = RawEvent;

    fn handle_timeout(&mut self, now: Instant) {
        self.core.tick(now);
        self.core.check_idle();
    }

    fn poll_output(&mut self) -> Output<Bytes, RawEvent> {
        let deadline = self.poll_timeout();
        self.core.poll(deadline)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.core.deadline(Some(self.core.idle_deadline))
    }
}

impl StreamMachine for RawEcho {
    fn input_buffer(&mut self, max: usize) -> &mut [u8] {
        let room = self.input_room();
        self.core.input_buffer(max, room)
    }

    fn commit_input(&mut self, now: Instant, n: usize) -> Result<(), Error> {
        if self.core.admit(now, n)? {
            self.core.touch();
            // Echoed from the memory it was read into.
            let read = self.core.take_read();
            self.core.send(read);
            self.core.emit(RawEvent::Echoed(n));
        }
        Ok(())
    }

    fn handle_eof(&mut self, now: Instant) {
        self.core.tick(now);
        self.core.finish();
    }

    fn abort(&mut self, reason: String) {
        self.core.abort(reason);
    }

    fn write_timeout(&self) -> Option<Duration> {
        Some(self.core.config.idle_timeout)
    }

    fn input_room(&self) -> usize {
        self.core
            .config
            .send_buffer
            .saturating_sub(self.core.queued())
    }
}
