//! The receiver role: its whole transition table and the driver's answers.
//!
//! Pure: it validates offers, hashes data and asks its driver (through
//! [`ReceiverEvent`]s) to decide, write, make durable and discard. It never
//! touches a file and never buffers file data.

use bytes::Bytes;

use super::names::SafeName;
use super::request::{OfferRequest, Requests, SaveRequest};
use crate::codec::{clip_text, Frame, FrameLimits, Protocol, RejectReason};
use crate::config::{SessionLimits, TransferConfig};
use crate::error::{sanitize, ConfigError, Error, ProtocolError, UsageError};
use crate::session::{Framed, Link, Role};

/// What the receiver tells its driver. Events marked "answer" carry a
/// request, to be handed back to a method of the
/// [`Receiver`](super::Receiver) whenever the answer is ready; no frame is
/// processed until then.
#[derive(Debug, PartialEq, Eq)]
pub enum ReceiverEvent {
    /// Answer: the peer offers a file with a valid name; call
    /// [`accept`](Framed::accept) or [`reject`](Framed::reject).
    Offer {
        /// The validated name.
        name: SafeName,
        /// Its announced size.
        size: u64,
        /// Goes back with the answer.
        request: OfferRequest,
    },
    /// Informational: the machine refused an offer itself (bad name, too
    /// large) and has already sent `Reject`.
    Refused {
        /// The offered name, sanitised for display.
        name: String,
        /// The offered size.
        size: u64,
        /// Why.
        reason: RejectReason,
    },
    /// Data starts at `from`: cut the partial file to `from` bytes
    /// (0: start over) and write from there.
    Start {
        /// The file.
        name: SafeName,
        /// Where writing starts.
        from: u64,
    },
    /// Write `data` at `offset` of the partial file.
    Write {
        /// Byte offset in the file.
        offset: u64,
        /// The bytes (shared with the receive buffer, not copied).
        data: Bytes,
    },
    /// Answer: all bytes arrived and the hash matches; make the file
    /// durable, move it to its final name, then call
    /// [`saved`](Framed::saved) or [`save_failed`](Framed::save_failed).
    Verified {
        /// The file.
        name: SafeName,
        /// BLAKE3 of the whole content.
        hash: [u8; 32],
        /// Goes back with the answer.
        request: SaveRequest,
    },
    /// The content hash did not match: delete the partial file. The session
    /// then fails with [`Error::HashMismatch`].
    Discard {
        /// The file.
        name: SafeName,
    },
    /// The sender said `Quit`: the session ended normally.
    Finished,
}

/// How the driver accepts an offer.
// Built once per file and moved straight into the machine: its size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Resume {
    /// Nothing held: start from byte 0.
    Fresh,
    /// A partial file holds the first `have` bytes; `hasher` has hashed exactly them.
    From {
        /// Bytes held.
        have: u64,
        /// BLAKE3 state over those bytes.
        hasher: blake3::Hasher,
    },
    /// A complete file of the offered size is already under the final
    /// name; `hasher` has hashed all of it. If the sender's is the same,
    /// the file is up to date and nothing moves; if not, the sender sends
    /// it whole when `replace` allows, and skips it otherwise.
    Complete {
        /// BLAKE3 state over the whole existing file.
        hasher: blake3::Hasher,
        /// Whether a different file may replace it (`--overwrite`).
        replace: bool,
    },
}

#[derive(Debug)]
enum State {
    /// Waiting for `Offer` or `Quit`.
    Idle,
    /// `Offer` event emitted; waiting for the driver's decision.
    Deciding { name: SafeName, size: u64 },
    /// `Accept` sent: waiting for `Begin`, then taking `Data` until `End`.
    Transfer(Transfer),
    /// `Verified` event emitted; waiting for the driver to save.
    Saving { name: SafeName },
    /// `Quit` received.
    Done,
}

/// A file from its `Accept` to its `End`. One state, changed in place, so
/// that a frame refused half-way leaves the receiver where it was.
#[derive(Debug)]
struct Transfer {
    name: SafeName,
    size: u64,
    /// Bytes held: the resumed prefix before `Begin`, then the next offset.
    at: u64,
    /// BLAKE3 state over the first `at` bytes.
    hasher: Box<blake3::Hasher>,
    /// `Begin` has arrived: `Data` and `End` may follow.
    begun: bool,
}

impl Transfer {
    /// `Begin { from }`: from 0 (start over) or from the accepted offset.
    fn begin(&mut self, link: &mut Link<ReceiverEvent>, from: u64) -> Result<(), Error> {
        match from {
            0 => *self.hasher = blake3::Hasher::new(),
            f if f == self.at => {}
            offset => {
                let reason = "must be 0 or the accepted offset";
                return Err(ProtocolError::BadOffset { offset, reason }.into());
            }
        }
        self.at = from;
        self.begun = true;
        let name = self.name.clone();
        link.emit(ReceiverEvent::Start { name, from });
        Ok(())
    }

    /// One `Data` frame; returns how many bytes it carried.
    fn data(&mut self, link: &mut Link<ReceiverEvent>, data: Bytes) -> Result<u64, Error> {
        let len = data.len() as u64;
        let end = self.at.checked_add(len).filter(|&e| e <= self.size);
        let Some(end) = end else {
            let size = self.size;
            return Err(ProtocolError::Overrun { size }.into());
        };
        if !data.is_empty() {
            self.hasher.update(&data);
            link.emit(ReceiverEvent::Write {
                offset: self.at,
                data,
            });
        }
        self.at = end;
        Ok(len)
    }

    /// `End`: every byte arrived and hashes to `hash`, and `offer` (the
    /// sender's digest of its offer) is the one received.
    fn end(
        &self,
        link: &mut Link<ReceiverEvent>,
        requests: &mut Requests,
        hash: [u8; 32],
        offer_ok: bool,
    ) -> Result<(), Error> {
        if self.at != self.size {
            let (size, received) = (self.size, self.at);
            return Err(ProtocolError::ShortFile { size, received }.into());
        }
        if *self.hasher.finalize().as_bytes() != hash || !offer_ok {
            let name = self.name.clone();
            link.emit(ReceiverEvent::Discard { name });
            return Err(Error::HashMismatch);
        }
        let name = self.name.clone();
        let request = requests.issue();
        link.emit(ReceiverEvent::Verified {
            name,
            hash,
            request,
        });
        Ok(())
    }
}

/// The receiver role. Use it as [`Receiver`](super::Receiver).
#[derive(Debug)]
pub struct ReceiverRole {
    state: State,
    /// [`offer_digest`](super::offer_digest) of the offer being handled, as
    /// received: `End` must carry the same, or the name or size was corrupted.
    offer: [u8; 32],
    files_saved: u64,
    bytes_received: u64,
    /// Offers refused so far, by the machine or the application.
    refusals: u64,
    /// The decision owed by the application, if any.
    requests: Requests,
    config: TransferConfig,
}

impl Default for ReceiverRole {
    fn default() -> Self {
        Self::new(TransferConfig::default())
    }
}

impl ReceiverRole {
    /// A receiver waiting for the first offer, within `config` (validated
    /// by [`Framed::new`]).
    pub fn new(config: TransferConfig) -> Self {
        ReceiverRole {
            state: State::Idle,
            offer: [0; 32],
            files_saved: 0,
            bytes_received: 0,
            refusals: 0,
            requests: Requests::default(),
            config,
        }
    }

    /// Offers refused in this session, by the machine itself or by the
    /// application; never more than `TransferConfig::max_refusals`.
    pub fn refusals(&self) -> u64 {
        self.refusals
    }

    /// Counts one more refused offer, or fails the session once it has had
    /// `max` of them: each costs a `Reject` and the application's
    /// bookkeeping, so a session may not cost without bound.
    fn count_refusal(&mut self, max: u64) -> Result<(), Error> {
        if self.refusals >= max {
            return Err(ProtocolError::TooManyRefusals { max }.into());
        }
        self.refusals += 1;
        Ok(())
    }

    /// Files confirmed with `Saved` so far.
    pub fn files_saved(&self) -> u64 {
        self.files_saved
    }

    /// File data bytes received in this session (resumed prefixes excluded).
    pub fn bytes_received(&self) -> u64 {
        self.bytes_received
    }

    /// The file being decided on, received or saved, if any.
    pub fn current(&self) -> Option<&SafeName> {
        match &self.state {
            State::Deciding { name, .. }
            | State::Transfer(Transfer { name, .. })
            | State::Saving { name } => Some(name),
            State::Idle | State::Done => None,
        }
    }

    fn unexpected(&self, frame: &Frame) -> Error {
        ProtocolError::UnexpectedFrame {
            state: self.state_name(),
            frame: frame.name(),
        }
        .into()
    }

    fn on_offer(
        &mut self,
        link: &mut Link<ReceiverEvent>,
        size: u64,
        raw: &Bytes,
    ) -> Result<(), Error> {
        let max = self.config.max_file_size;
        let decision = match SafeName::new(raw, self.config.max_name_len) {
            Err(e) => Err((RejectReason::NameRefused, e.to_string())),
            Ok(_) if size > max => Err((
                RejectReason::TooLarge,
                format!("{size} bytes exceed the limit of {max}"),
            )),
            Ok(name) => Ok(name),
        };
        match decision {
            Ok(name) => {
                self.offer = super::offer_digest(size, raw);
                let request = self.requests.issue();
                link.emit(ReceiverEvent::Offer {
                    name: name.clone(),
                    size,
                    request,
                });
                self.state = State::Deciding { name, size };
            }
            Err((reason, message)) => {
                self.count_refusal(self.config.max_refusals)?;
                let message = Bytes::from(message.into_bytes());
                link.send(&Frame::Reject { reason, message });
                // Only a bounded prefix of a hostile name is ever shown.
                let shown = &raw[..raw.len().min(self.config.max_name_len)];
                link.emit(ReceiverEvent::Refused {
                    name: sanitize(shown),
                    size,
                    reason,
                });
            }
        }
        Ok(())
    }
}

impl Role for ReceiverRole {
    type Event = ReceiverEvent;
    const PROTOCOL: Protocol = Protocol::File;

    fn start(&mut self, _link: &mut Link<ReceiverEvent>) -> Result<(), Error> {
        Ok(())
    }

    /// Every transition is made in place once nothing can fail any more:
    /// an `Err` leaves the state the frame arrived in (and fails the session).
    fn on_frame(&mut self, link: &mut Link<ReceiverEvent>, frame: Frame) -> Result<(), Error> {
        match (&mut self.state, frame) {
            (State::Idle, Frame::Offer { size, name }) => self.on_offer(link, size, &name),
            (State::Idle, Frame::Quit) => {
                link.emit(ReceiverEvent::Finished);
                self.state = State::Done;
                Ok(())
            }
            (State::Transfer(t), Frame::Begin { from }) if !t.begun => t.begin(link, from),
            (State::Transfer(t), Frame::Data(data)) if t.begun => {
                self.bytes_received += t.data(link, data)?;
                Ok(())
            }
            (State::Transfer(t), Frame::End { hash, offer }) if t.begun => {
                t.end(link, &mut self.requests, hash, offer == self.offer)?;
                let name = t.name.clone();
                self.state = State::Saving { name };
                Ok(())
            }
            (_, frame) => Err(self.unexpected(&frame)),
        }
    }

    fn awaits_app(&self) -> bool {
        matches!(self.state, State::Deciding { .. } | State::Saving { .. })
    }

    fn is_finished(&self) -> bool {
        matches!(self.state, State::Done)
    }

    fn state_name(&self) -> &'static str {
        match self.state {
            State::Idle => "waiting for an offer",
            State::Deciding { .. } => "deciding on an offer",
            State::Transfer(Transfer { begun: false, .. }) => "waiting for Begin",
            State::Transfer(Transfer { begun: true, .. }) => "receiving file data",
            State::Saving { .. } => "saving a file",
            State::Done => "finished",
        }
    }

    fn frame_limits(&self, session: &SessionLimits) -> Result<FrameLimits, ConfigError> {
        super::frame_limits(&self.config, session)
    }
}

fn wrong_state(call: &'static str, role: &ReceiverRole) -> Error {
    UsageError::WrongState {
        call,
        state: role.state_name(),
    }
    .into()
}

impl Framed<ReceiverRole> {
    /// Accepts the file `request` offered, fresh or resuming a partial
    /// file. Refused, changing nothing but spending the request, if
    /// `request` is not the one owed ([`UsageError::StaleRequest`]) or if
    /// `have` exceeds the offered size.
    pub fn accept(&mut self, request: OfferRequest, resume: Resume) -> Result<(), Error> {
        self.command(|role, link| {
            role.requests.answer(request)?;
            let State::Deciding { name, size } = &role.state else {
                return Err(wrong_state("accept", role));
            };
            let (name, size) = (name.clone(), *size);
            let (have, hasher) = match resume {
                Resume::Fresh => (0, blake3::Hasher::new()),
                Resume::From { have, hasher } if have <= size && hasher.count() == have => {
                    (have, hasher)
                }
                Resume::Complete { hasher, .. } if hasher.count() == size => (size, hasher),
                Resume::From { have, .. } => {
                    return Err(UsageError::BadResume { have, size }.into());
                }
                Resume::Complete { hasher, .. } => {
                    let have = hasher.count();
                    return Err(UsageError::BadResume { have, size }.into());
                }
            };
            let prefix = *hasher.finalize().as_bytes();
            link.send(&Frame::Accept { have, prefix });
            role.state = State::Transfer(Transfer {
                name,
                size,
                at: have,
                hasher: Box::new(hasher),
                begun: false,
            });
            Ok(())
        })
    }

    /// Refuses the file `request` offered; the sender moves on to its next
    /// file. The refusal after `TransferConfig::max_refusals` of them fails the
    /// session instead ([`ProtocolError::TooManyRefusals`]), telling the
    /// sender why.
    pub fn reject(
        &mut self,
        request: OfferRequest,
        reason: RejectReason,
        message: impl Into<Bytes>,
    ) -> Result<(), Error> {
        let message = clip_text(message.into());
        self.command(|role, link| {
            role.requests.answer(request)?;
            if !matches!(role.state, State::Deciding { .. }) {
                return Err(wrong_state("reject", role));
            }
            role.count_refusal(role.config.max_refusals)?;
            link.send(&Frame::Reject { reason, message });
            role.state = State::Idle;
            Ok(())
        })
    }

    /// The verified file is durable under its final name: confirms with `Saved`.
    pub fn saved(&mut self, request: SaveRequest) -> Result<(), Error> {
        self.command(|role, link| {
            role.requests.answer(request)?;
            if !matches!(role.state, State::Saving { .. }) {
                return Err(wrong_state("saved", role));
            }
            link.send(&Frame::Saved);
            role.files_saved += 1;
            role.state = State::Idle;
            Ok(())
        })
    }

    /// The verified file could not be saved: tells the sender with a
    /// `Reject` (the file is not delivered) and waits for the next offer.
    pub fn save_failed(
        &mut self,
        request: SaveRequest,
        reason: RejectReason,
        message: impl Into<Bytes>,
    ) -> Result<(), Error> {
        let message = clip_text(message.into());
        self.command(|role, link| {
            role.requests.answer(request)?;
            if !matches!(role.state, State::Saving { .. }) {
                return Err(wrong_state("save_failed", role));
            }
            link.send(&Frame::Reject { reason, message });
            role.state = State::Idle;
            Ok(())
        })
    }
}
