//! RFC 862 echo over a stream: raw bytes back as they came, no greeting,
//! no framing, so `nc`, `socat` and any RFC 862 client can talk to it.

use std::time::Instant;

use crate::config::UnframedConfig;
use crate::error::Error;
use crate::unframed::{sealed, Unframed, UnframedLink, UnframedRole};

/// What the raw echo machine tells its application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawEvent {
    /// This many bytes were queued to go back.
    Echoed(usize),
}

/// The RFC 862 stream echo role: every read goes back as it came. Use it
/// as [`RawEcho`].
#[derive(Debug, Default)]
pub struct RawRole;

/// The RFC 862 stream echo machine. It ends when the peer closes its side
/// and every byte has gone back; output is bounded by `send_buffer`. Every
/// byte received restarts its idle timer (each is a whole unit here): the
/// framed machines' handshake and frame deadlines do not apply.
pub type RawEcho = Unframed<RawRole>;

impl RawEcho {
    /// A raw echo session starting at `now`.
    pub fn new(config: UnframedConfig, now: Instant) -> Self {
        Unframed::with_role(RawRole, config, now)
    }
}

impl sealed::Sealed for RawRole {}

/// The transition table: a read is echoed, the peer's EOF ends the session.
impl UnframedRole for RawRole {
    type Event = RawEvent;

    fn on_read(&mut self, link: &mut UnframedLink<RawEvent>) -> Result<(), Error> {
        link.touch();
        // Echoed from the memory it was read into.
        let read = link.take_read();
        let n = read.len();
        link.send(read);
        link.emit(RawEvent::Echoed(n));
        Ok(())
    }

    fn on_eof(&mut self, _link: &mut UnframedLink<RawEvent>) -> Result<(), Error> {
        Ok(())
    }

    fn input_room(&self, link: &UnframedLink<RawEvent>) -> usize {
        link.config.send_buffer.saturating_sub(link.queued())
    }
}
