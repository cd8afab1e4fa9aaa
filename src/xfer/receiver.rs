//! The receiver role: its whole transition table and the driver's answers.
//!
//! Pure: it validates offers, hashes data and asks its driver (through
//! [`ReceiverEvent`]s) to decide, write, make durable and discard. It never
//! touches a file and never buffers file data. Many entries may be in
//! flight (up to the window it announces); one offer at a time is
//! decided, and frames wait while it is, but saves are answered whenever
//! the driver has made them durable (in batches, say).

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;

use super::entry::{show_offered_path, EntryKind, FileSpec, Meta, Mtime, SafePath, MODE_BITS};
use super::request::{OfferRequest, Requests, SaveRequest};
use crate::codec::{clip_text, Frame, FrameLimits, Protocol, RejectReason};
use crate::codec::{ACCEPT_COMPLETE, ACCEPT_REPLACE, SAVED_METADATA};
use crate::config::{SessionLimits, TransferConfig, HOLE_BYTES_PER_DATA_BYTE};
use crate::error::{ConfigError, Error, ProtocolError, UsageError};
use crate::session::{Framed, Link, Role};

/// What the receiver tells its driver. Events marked "answer" carry a
/// request, to be handed back to a method of the
/// [`Receiver`](super::Receiver) whenever the answer is ready.
#[derive(Debug, PartialEq, Eq)]
pub enum ReceiverEvent {
    /// Answer: the peer offers an entry with a valid path; call
    /// [`accept`](Framed::accept) (for a directory: once it exists) or
    /// [`reject`](Framed::reject). No frame is processed until then.
    Offer {
        /// The entry's number in the session.
        id: u32,
        /// The validated path, kind, size and metadata.
        spec: FileSpec,
        /// Goes back with the answer.
        request: OfferRequest,
    },
    /// Informational: the machine refused an offer itself (bad path, too
    /// large, too many) and has already sent `Reject`.
    Refused {
        /// The entry's number.
        id: u32,
        /// The offered path for display: its components joined with `/`
        /// when its encoding decodes, escaped (see
        /// [`show_offered_path`](super::entry::show_offered_path)).
        name: String,
        /// The offered size.
        size: u64,
        /// Why.
        reason: RejectReason,
        /// The explanation sent to the peer in the `Reject`.
        message: String,
    },
    /// Data of file `id` starts at `from`: cut its partial file to `from`
    /// bytes (0: start over) and write from there. `from` equal to the size
    /// of a complete file accepted with [`Resume::Complete`] means it is
    /// up to date: nothing will be written.
    Start {
        /// The file.
        id: u32,
        /// Where writing starts.
        from: u64,
    },
    /// Write `data` at `offset` of the file started last.
    Write {
        /// Byte offset in the file.
        offset: u64,
        /// The bytes (shared with the receive buffer, not copied).
        data: Bytes,
    },
    /// `len` zeros at `offset` of the file started last: write nothing
    /// there (a hole); the file gets its full size when saved.
    Hole {
        /// Byte offset in the file.
        offset: u64,
        /// How many zeros.
        len: u64,
    },
    /// Answer: file `id` is whole and its hash matches; make it durable
    /// under its final name (now or with others later), then call
    /// [`saved`](Framed::saved) or [`save_failed`](Framed::save_failed).
    /// Frames keep flowing meanwhile.
    Verified {
        /// The file.
        id: u32,
        /// BLAKE3 of the whole content.
        hash: [u8; 32],
        /// The existing complete file was the same: nothing was written.
        up_to_date: bool,
        /// Goes back with the answer.
        request: SaveRequest,
    },
    /// The content hash did not match: delete the partial file. The session
    /// then fails with [`Error::HashMismatch`].
    Discard {
        /// The file.
        id: u32,
    },
    /// The sender will not send file `id` (or the rest of it, when it was
    /// the file begun last): drop what was prepared for it, keeping what a
    /// named partial file already holds for a later resume.
    Skipped {
        /// The file.
        id: u32,
        /// `true`: the complete file here differs and may not be replaced,
        /// so the sender keeps its own; `false`: the sender gave up on it
        /// (its source vanished, shrank or could not be read).
        kept: bool,
    },
    /// The sender waits for confirmations: make durable what is verified.
    Flush,
    /// The sender said `Quit`: the session ended normally.
    Finished,
}

/// How the driver accepts an offered file (for a directory, any value:
/// the directory exists).
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

/// An offer the driver is deciding on.
#[derive(Debug)]
struct Deciding {
    id: u32,
    kind: EntryKind,
    size: u64,
    offer: [u8; 32],
}

/// An accepted file waiting for its `Begin`.
#[derive(Debug)]
struct Accepted {
    id: u32,
    size: u64,
    offer: [u8; 32],
    have: u64,
    hasher: Box<blake3::Hasher>,
    /// `Some(replace)`: `have` is a complete file under the final name.
    complete: Option<bool>,
}

/// The file whose data is arriving, from its `Begin` to its `End`.
#[derive(Debug)]
struct Transfer {
    id: u32,
    size: u64,
    offer: [u8; 32],
    /// The next offset.
    at: u64,
    /// BLAKE3 state over the first `at` bytes.
    hasher: Box<blake3::Hasher>,
    /// Nothing is being rewritten: the complete file here is the sender's.
    up_to_date: bool,
}

impl Transfer {
    /// Checks that `len` more bytes fit the offered size; returns the new end.
    fn advance(&self, len: u64) -> Result<u64, Error> {
        let end = self.at.checked_add(len).filter(|&e| e <= self.size);
        end.ok_or_else(|| ProtocolError::Overrun { size: self.size }.into())
    }
}

/// The receiver role. Use it as [`Receiver`](super::Receiver).
#[derive(Debug)]
pub struct ReceiverRole {
    config: TransferConfig,
    /// The id the next `Offer` must carry.
    next_id: u32,
    /// Entries offered and not finished (answered with `Saved` or
    /// `Reject`, or skipped): at most `window`.
    in_flight: u32,
    deciding: Option<Deciding>,
    /// Accepted files, in the order their `Begin`s must come.
    accepted: VecDeque<Accepted>,
    current: Option<Transfer>,
    /// Save requests owed, by request number: the file each is for and
    /// the hash it was verified with (echoed in its `Saved`).
    saving: BTreeMap<u64, (u32, [u8; 32])>,
    /// `Quit` arrived while saves were owed: it takes effect once they are
    /// answered (and no frame is processed meanwhile), so that when the app
    /// answers never changes the outcome.
    quit_held: bool,
    finished: bool,
    files_saved: u64,
    bytes_received: u64,
    /// Bytes of holes received in this session.
    hole_bytes: u64,
    /// Offers refused so far, by the machine or the application.
    refusals: u64,
    requests: Requests,
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
            config,
            next_id: 0,
            in_flight: 0,
            deciding: None,
            accepted: VecDeque::new(),
            current: None,
            saving: BTreeMap::new(),
            quit_held: false,
            finished: false,
            files_saved: 0,
            bytes_received: 0,
            hole_bytes: 0,
            refusals: 0,
            requests: Requests::default(),
        }
    }

    /// Offers refused in this session, by the machine itself or by the
    /// application; never more than `TransferConfig::max_refusals`.
    pub fn refusals(&self) -> u64 {
        self.refusals
    }

    /// Entries confirmed with `Saved` so far (directories included).
    pub fn files_saved(&self) -> u64 {
        self.files_saved
    }

    /// File data bytes received in this session (resumed prefixes and
    /// holes excluded).
    pub fn bytes_received(&self) -> u64 {
        self.bytes_received
    }

    /// Entries offered and not yet finished.
    pub fn in_flight(&self) -> u32 {
        self.in_flight
    }

    /// The file whose data is arriving, if any.
    pub fn current(&self) -> Option<u32> {
        self.current.as_ref().map(|t| t.id)
    }

    /// Counts one more refused offer, or fails the session once it has had
    /// `max` of them: each costs a `Reject` and the application's
    /// bookkeeping, so a session may not cost without bound.
    fn count_refusal(&mut self) -> Result<(), Error> {
        let max = self.config.max_refusals;
        if self.refusals >= max {
            return Err(ProtocolError::TooManyRefusals { max }.into());
        }
        self.refusals += 1;
        Ok(())
    }

    fn unexpected(&self, frame: &Frame) -> Error {
        ProtocolError::UnexpectedFrame {
            state: self.state_name(),
            frame: frame.name(),
        }
        .into()
    }

    fn on_offer(&mut self, link: &mut Link<ReceiverEvent>, frame: Frame) -> Result<(), Error> {
        let offer = super::offer_digest(&frame);
        let Frame::Offer {
            id,
            kind,
            mode,
            mtime_secs,
            mtime_nanos,
            size,
            path,
        } = frame
        else {
            return Err(self.unexpected(&frame));
        };
        if id != self.next_id {
            return Err(ProtocolError::OutOfOrder {
                id,
                expected: self.next_id,
            }
            .into());
        }
        if self.in_flight >= self.config.window {
            return Err(ProtocolError::WindowExceeded {
                window: self.config.window,
            }
            .into());
        }
        let kind = EntryKind::from_byte(kind).ok_or(ProtocolError::UnknownEntryKind(kind))?;
        if kind == EntryKind::Directory && size != 0 {
            return Err(ProtocolError::DirectoryWithSize { size }.into());
        }
        self.next_id = self.next_id.wrapping_add(1);
        let limits = self.config.path_limits();
        let decision = match SafePath::decode(&path, &limits) {
            Err(e) => Err((RejectReason::NameRefused, e.to_string())),
            Ok(_) if u64::from(id) >= self.config.max_files => Err((
                RejectReason::TooMany,
                format!(
                    "more than {} entries in one session; send the rest in another",
                    self.config.max_files
                ),
            )),
            Ok(_) if size > self.config.max_file_size => Err((
                RejectReason::TooLarge,
                format!(
                    "{size} bytes exceed the limit of {}",
                    self.config.max_file_size
                ),
            )),
            Ok(path) => Ok(path),
        };
        let path = match decision {
            Ok(path) => path,
            Err((reason, message)) => return self.refuse(link, id, &path, size, reason, message),
        };
        let meta = Meta {
            mode: mode & MODE_BITS,
            mtime: Mtime {
                secs: mtime_secs,
                nanos: mtime_nanos,
            },
        };
        let spec = FileSpec {
            path,
            kind,
            size,
            meta,
        };
        self.in_flight += 1;
        let request = self.requests.issue();
        link.emit(ReceiverEvent::Offer { id, spec, request });
        self.deciding = Some(Deciding {
            id,
            kind,
            size,
            offer,
        });
        Ok(())
    }

    /// The machine refuses an offer itself.
    fn refuse(
        &mut self,
        link: &mut Link<ReceiverEvent>,
        id: u32,
        raw: &[u8],
        size: u64,
        reason: RejectReason,
        message: String,
    ) -> Result<(), Error> {
        self.count_refusal()?;
        link.send(&Frame::Reject {
            id,
            reason,
            message: Bytes::from(message.clone().into_bytes()),
        });
        // Only a bounded prefix of a hostile path is ever shown.
        let name = show_offered_path(raw, self.config.max_path_len);
        link.emit(ReceiverEvent::Refused {
            id,
            name,
            size,
            reason,
            message,
        });
        Ok(())
    }

    /// `Begin { id, from }`: the next accepted file, from 0 (start over),
    /// from the partial file's end, or (a complete file that is the same)
    /// from its end.
    fn on_begin(
        &mut self,
        link: &mut Link<ReceiverEvent>,
        id: u32,
        from: u64,
    ) -> Result<(), Error> {
        let expected = match (&self.current, self.accepted.front()) {
            (None, Some(a)) => a.id,
            _ => return Err(self.unexpected(&Frame::Begin { id, from })),
        };
        if id != expected {
            return Err(ProtocolError::OutOfOrder { id, expected }.into());
        }
        let a = &self.accepted[0];
        let (up_to_date, fresh) = match (a.complete, from) {
            (Some(_), f) if f == a.size && f == a.have => (true, false),
            (Some(true), 0) | (None, 0) => (false, true),
            (None, f) if f == a.have => (false, false),
            (_, offset) => {
                let reason = "must be 0 or the accepted offset";
                return Err(ProtocolError::BadOffset { offset, reason }.into());
            }
        };
        let Some(a) = self.accepted.pop_front() else {
            return Err(self.unexpected(&Frame::Begin { id, from }));
        };
        let hasher = if fresh { Box::default() } else { a.hasher };
        self.current = Some(Transfer {
            id,
            size: a.size,
            offer: a.offer,
            at: from,
            hasher,
            up_to_date,
        });
        link.emit(ReceiverEvent::Start { id, from });
        Ok(())
    }

    fn on_data(&mut self, link: &mut Link<ReceiverEvent>, data: Bytes) -> Result<(), Error> {
        let t = self
            .current
            .as_mut()
            .ok_or(ProtocolError::NoFileBegun("Data"))?;
        let end = t.advance(data.len() as u64)?;
        if !data.is_empty() {
            t.hasher.update(&data);
            self.bytes_received += data.len() as u64;
            link.emit(ReceiverEvent::Write { offset: t.at, data });
        }
        t.at = end;
        Ok(())
    }

    fn on_hole(&mut self, link: &mut Link<ReceiverEvent>, len: u64) -> Result<(), Error> {
        let holes = self.hole_bytes.saturating_add(len);
        let allowance = self.config.hole_allowance;
        let earned = self.bytes_received.saturating_mul(HOLE_BYTES_PER_DATA_BYTE);
        let t = self
            .current
            .as_mut()
            .ok_or(ProtocolError::NoFileBegun("Hole"))?;
        let end = t.advance(len)?;
        if holes > allowance.saturating_add(earned) {
            return Err(ProtocolError::TooManyHoles { allowance }.into());
        }
        self.hole_bytes = holes;
        super::hash_zeros(&mut t.hasher, len);
        link.emit(ReceiverEvent::Hole { offset: t.at, len });
        t.at = end;
        Ok(())
    }

    fn on_end(
        &mut self,
        link: &mut Link<ReceiverEvent>,
        id: u32,
        hash: [u8; 32],
        offer: [u8; 32],
    ) -> Result<(), Error> {
        let t = self
            .current
            .as_ref()
            .ok_or(ProtocolError::NoFileBegun("End"))?;
        if t.id != id {
            return Err(ProtocolError::OutOfOrder { id, expected: t.id }.into());
        }
        if t.at != t.size {
            let (size, received) = (t.size, t.at);
            return Err(ProtocolError::ShortFile { size, received }.into());
        }
        if *t.hasher.finalize().as_bytes() != hash || offer != t.offer {
            link.emit(ReceiverEvent::Discard { id });
            return Err(Error::HashMismatch);
        }
        let up_to_date = t.up_to_date;
        self.current = None;
        let request: SaveRequest = self.requests.issue();
        self.saving.insert(request.number(), (id, hash));
        link.emit(ReceiverEvent::Verified {
            id,
            hash,
            up_to_date,
            request,
        });
        Ok(())
    }

    /// `Skip { id }`: the next accepted file will not come (before its
    /// `Begin`), or the rest of the file begun last will not (before its
    /// `End`).
    fn on_skip(&mut self, link: &mut Link<ReceiverEvent>, id: u32) -> Result<(), Error> {
        let kept = match (&self.current, self.accepted.front()) {
            (Some(t), _) if t.id == id => false,
            (None, Some(a)) if a.id == id => a.complete == Some(false),
            _ => return Err(ProtocolError::BadSkip { id }.into()),
        };
        // A file the receiver keeps counts as refused (as a `Reject`
        // would); one the sender gives up on costs no more than its offer,
        // which `max_files` bounds.
        if kept {
            self.count_refusal()?;
        }
        if self.current.is_some() {
            self.current = None;
        } else {
            self.accepted.pop_front();
        }
        self.in_flight -= 1;
        link.emit(ReceiverEvent::Skipped { id, kept });
        Ok(())
    }

    /// `Quit`: every entry offered must be finished, or verified and
    /// waiting for the app's save (then `Quit` waits for those).
    fn on_quit(&mut self, link: &mut Link<ReceiverEvent>) -> Result<(), Error> {
        let unsettled = (self.in_flight as usize).saturating_sub(self.saving.len());
        if unsettled > 0 {
            let in_flight = self.in_flight;
            return Err(ProtocolError::QuitInFlight { in_flight }.into());
        }
        self.quit_held = true;
        if !self.saving.is_empty() {
            // The sender may not have said `Flush` (PROTOCOL §4: a
            // receiver confirms what it holds, then ends): ask for it.
            link.emit(ReceiverEvent::Flush);
        }
        self.end_if_quit(link);
        Ok(())
    }

    /// Ends the session once `Quit` arrived and no save is owed.
    fn end_if_quit(&mut self, link: &mut Link<ReceiverEvent>) {
        if self.quit_held && self.saving.is_empty() {
            self.quit_held = false;
            link.emit(ReceiverEvent::Finished);
            self.finished = true;
        }
    }

    /// One entry is finished: answered with `Saved` or `Reject`.
    fn finish_one(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
    }
}

impl Role for ReceiverRole {
    type Event = ReceiverEvent;
    const PROTOCOL: Protocol = Protocol::File;

    fn start(&mut self, link: &mut Link<ReceiverEvent>) -> Result<(), Error> {
        link.send(&Frame::Window {
            files: self.config.window,
        });
        Ok(())
    }

    /// Every transition is made once nothing can fail any more: an `Err`
    /// leaves the state the frame arrived in (and fails the session).
    fn on_frame(&mut self, link: &mut Link<ReceiverEvent>, frame: Frame) -> Result<(), Error> {
        if self.finished {
            return Err(self.unexpected(&frame));
        }
        match frame {
            Frame::Offer { .. } => self.on_offer(link, frame),
            Frame::Begin { id, from } => self.on_begin(link, id, from),
            Frame::Data(data) => self.on_data(link, data),
            Frame::Hole { len } => self.on_hole(link, len),
            Frame::End { id, hash, offer } => self.on_end(link, id, hash, offer),
            Frame::Skip { id } => self.on_skip(link, id),
            Frame::Flush => {
                link.emit(ReceiverEvent::Flush);
                Ok(())
            }
            Frame::Quit => self.on_quit(link),
            frame => Err(self.unexpected(&frame)),
        }
    }

    fn awaits_app(&self) -> bool {
        self.deciding.is_some() || self.quit_held
    }

    fn is_finished(&self) -> bool {
        self.finished
    }

    fn state_name(&self) -> &'static str {
        if self.finished {
            "finished"
        } else if self.deciding.is_some() {
            "deciding on an offer"
        } else if self.quit_held {
            "saving the last files"
        } else if self.current.is_some() {
            "receiving file data"
        } else if !self.accepted.is_empty() {
            "waiting for Begin"
        } else {
            "waiting for an offer"
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
    /// Accepts the entry `request` offered: a file, fresh or resuming a
    /// partial file or checking a complete one; a directory, which now
    /// exists (confirmed with `Saved` at once). Refused, changing nothing
    /// but spending the request, if `request` is not the one owed
    /// ([`UsageError::StaleRequest`]) or if `resume` does not fit the
    /// offered size ([`UsageError::BadResume`], which fails the session).
    pub fn accept(&mut self, request: OfferRequest, resume: Resume) -> Result<(), Error> {
        self.command(|role, link| {
            role.requests.answer(request)?;
            let Some(d) = role.deciding.take() else {
                return Err(wrong_state("accept", role));
            };
            if d.kind == EntryKind::Directory {
                let hash = *blake3::Hasher::new().finalize().as_bytes();
                link.send(&Frame::Saved {
                    id: d.id,
                    flags: 0,
                    hash,
                });
                role.files_saved += 1;
                role.finish_one();
                return Ok(());
            }
            let size = d.size;
            let (have, hasher, complete) = match resume {
                Resume::Fresh => (0, blake3::Hasher::new(), None),
                Resume::From { have, hasher } if have <= size && hasher.count() == have => {
                    (have, hasher, None)
                }
                Resume::Complete { hasher, replace } if hasher.count() == size => {
                    (size, hasher, Some(replace))
                }
                Resume::From { hasher, .. } | Resume::Complete { hasher, .. } => {
                    let have = hasher.count();
                    return Err(UsageError::BadResume { have, size }.into());
                }
            };
            let prefix = *hasher.finalize().as_bytes();
            let flags = match complete {
                None => 0,
                Some(false) => ACCEPT_COMPLETE,
                Some(true) => ACCEPT_COMPLETE | ACCEPT_REPLACE,
            };
            link.send(&Frame::Accept {
                id: d.id,
                have,
                prefix,
                flags,
            });
            role.accepted.push_back(Accepted {
                id: d.id,
                size,
                offer: d.offer,
                have,
                hasher: Box::new(hasher),
                complete,
            });
            Ok(())
        })
    }

    /// Refuses the entry `request` offered; the sender moves on. The
    /// refusal after `TransferConfig::max_refusals` of them fails the
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
            let Some(d) = role.deciding.take() else {
                return Err(wrong_state("reject", role));
            };
            role.count_refusal()?;
            link.send(&Frame::Reject {
                id: d.id,
                reason,
                message,
            });
            role.finish_one();
            Ok(())
        })
    }

    /// The verified file `request` was about is durable under its final
    /// name (or was up to date): confirms with `Saved`.
    pub fn saved(&mut self, request: SaveRequest) -> Result<(), Error> {
        self.confirm(request, 0, "saved")
    }

    /// The verified file `request` was about was up to date, and its
    /// permission bits or modification time have been brought in line with
    /// the offer's (durably): confirms with `Saved` flagged
    /// [`SAVED_METADATA`].
    pub fn metadata_updated(&mut self, request: SaveRequest) -> Result<(), Error> {
        self.confirm(request, SAVED_METADATA, "metadata_updated")
    }

    fn confirm(
        &mut self,
        request: SaveRequest,
        flags: u8,
        call: &'static str,
    ) -> Result<(), Error> {
        self.command(|role, link| {
            let number = role.requests.answer_numbered(request)?;
            let Some((id, hash)) = role.saving.remove(&number) else {
                return Err(wrong_state(call, role));
            };
            link.send(&Frame::Saved { id, flags, hash });
            role.files_saved += 1;
            role.finish_one();
            role.end_if_quit(link);
            Ok(())
        })
    }

    /// The verified file could not be saved: tells the sender with a
    /// `Reject` (the file is not delivered).
    pub fn save_failed(
        &mut self,
        request: SaveRequest,
        reason: RejectReason,
        message: impl Into<Bytes>,
    ) -> Result<(), Error> {
        let message = clip_text(message.into());
        self.command(|role, link| {
            let number = role.requests.answer_numbered(request)?;
            let Some((id, _)) = role.saving.remove(&number) else {
                return Err(wrong_state("save_failed", role));
            };
            link.send(&Frame::Reject {
                id,
                reason,
                message,
            });
            role.finish_one();
            role.end_if_quit(link);
            Ok(())
        })
    }
}
