//! The sender role: its whole transition table and the driver's answers.
//!
//! Pure: it offers entries ahead of what is confirmed (up to the window the
//! receiver announced), checks resume points, hashes every chunk and queues
//! it, asking its driver (through [`SenderEvent`]s) to hash a prefix or
//! read the next chunk only when its output has room. It never touches a
//! file; it holds at most one prefix and one chunk request outstanding.
//! Files are sent one after another in offer order, without waiting for
//! earlier confirmations; confirmations come back whenever the receiver
//! has made files durable.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;

use super::entry::{EntryKind, FileSpec};
use super::request::{ChunkRequest, PrefixRequest, Requests};
use crate::codec::{Frame, FrameLimits, Protocol, RejectReason};
use crate::codec::{ACCEPT_COMPLETE, ACCEPT_REPLACE, MAX_HOLE, SAVED_METADATA};
use crate::config::{SessionLimits, TransferConfig};
use crate::error::{sanitize, ConfigError, Error, ProtocolError, UsageError};
use crate::session::{Framed, Link, Role};

/// What the sender tells its driver. Events marked "answer" carry a
/// request, to be handed back to a method of the [`Sender`](super::Sender)
/// whenever the answer is ready.
#[derive(Debug, PartialEq, Eq)]
pub enum SenderEvent {
    /// Answer: the receiver holds `len` bytes of `file`; hash the first
    /// `len` bytes of the local file and call
    /// [`prefix_hashed`](Framed::prefix_hashed).
    HashPrefix {
        /// Index of the entry in the list given to [`SenderRole::new`].
        file: usize,
        /// Bytes to hash.
        len: u64,
        /// Goes back with the answer.
        request: PrefixRequest,
    },
    /// Data of `file` starts at `from` (0: from the start; more: resumed;
    /// its size: it is up to date, nothing will be read).
    Started {
        /// The file.
        file: usize,
        /// First byte sent.
        from: u64,
    },
    /// Answer: read up to `len` bytes of `file` at `offset` and call
    /// [`push_chunk`](Framed::push_chunk), or report a hole there with
    /// [`push_hole`](Framed::push_hole).
    Read {
        /// The file.
        file: usize,
        /// Byte offset.
        offset: u64,
        /// Bytes wanted (at most `chunk_size`).
        len: usize,
        /// Goes back with the answer.
        request: ChunkRequest,
    },
    /// The receiver has `file` (verified, durable, under its final name; a
    /// directory: it exists).
    Delivered {
        /// The entry.
        file: usize,
        /// BLAKE3 of its content (of nothing for a directory).
        hash: [u8; 32],
        /// It was already there, identical: no data moved.
        up_to_date: bool,
        /// Up to date, and the receiver brought its permission bits or
        /// modification time in line with the offer's.
        metadata_updated: bool,
    },
    /// Every byte of `file` went out, with its `End`: its confirmation
    /// ([`Delivered`](Self::Delivered) or [`Rejected`](Self::Rejected))
    /// follows. A session that ends before it leaves the file sent but
    /// unconfirmed (the receiver may still have saved it).
    Ended {
        /// The file.
        file: usize,
    },
    /// The receiver refused `file` (or could not save it), or it differs
    /// from a file the receiver keeps.
    Rejected {
        /// The entry.
        file: usize,
        /// Why.
        reason: RejectReason,
        /// The receiver's explanation, sanitised for display.
        message: String,
    },
}

/// A file the receiver accepted, waiting its turn to be sent.
#[derive(Debug)]
struct Accepted {
    file: usize,
    have: u64,
    prefix: [u8; 32],
    flags: u8,
}

/// The file being sent.
#[derive(Debug)]
struct Sending {
    file: usize,
    at: u64,
    /// The outstanding `Read`: its length.
    pending: Option<usize>,
    hasher: Box<blake3::Hasher>,
    up_to_date: bool,
}

/// A file whose `End` went out, waiting for `Saved` or `Reject`.
#[derive(Debug)]
struct Ended {
    hash: [u8; 32],
    up_to_date: bool,
}

/// The sender role. Use it as [`Sender`](super::Sender).
#[derive(Debug)]
pub struct SenderRole {
    files: Vec<FileSpec>,
    config: TransferConfig,
    /// The receiver's window once its `Window` arrived (no offer before).
    window: Option<u32>,
    /// The next entry to offer.
    next_offer: usize,
    /// Entries offered and not finished.
    in_flight: u32,
    /// Offered entries waiting for the receiver's decision, in order.
    offered: VecDeque<usize>,
    accepted: VecDeque<Accepted>,
    /// A resume prefix being hashed by the driver.
    checking: Option<Accepted>,
    sending: Option<Sending>,
    ended: BTreeMap<usize, Ended>,
    /// `Flush` sent since the last `End`.
    flushed: bool,
    done: bool,
    bytes_sent: u64,
    requests: Requests,
}

impl SenderRole {
    /// A sender that offers `files` in order, then ends the session,
    /// within `config` (validated by [`Framed::new`]).
    pub fn new(files: Vec<FileSpec>, config: TransferConfig) -> Self {
        SenderRole {
            files,
            config,
            window: None,
            next_offer: 0,
            in_flight: 0,
            offered: VecDeque::new(),
            accepted: VecDeque::new(),
            checking: None,
            sending: None,
            ended: BTreeMap::new(),
            flushed: false,
            done: false,
            bytes_sent: 0,
            requests: Requests::default(),
        }
    }

    /// The entries this sender offers.
    pub fn files(&self) -> &[FileSpec] {
        &self.files
    }

    /// File data bytes queued for the peer in this session.
    pub fn bytes_sent(&self) -> u64 {
        self.bytes_sent
    }

    /// The file being sent, if any.
    pub fn current(&self) -> Option<usize> {
        self.sending.as_ref().map(|s| s.file)
    }

    /// Entries offered and not yet finished.
    pub fn in_flight(&self) -> u32 {
        self.in_flight
    }

    fn size(&self, file: usize) -> u64 {
        self.files.get(file).map_or(0, |f| f.size)
    }

    /// Offers what the window allows.
    fn offer_more(&mut self, link: &mut Link<SenderEvent>) {
        let Some(window) = self.window else { return };
        let window = window.min(self.config.window);
        while self.in_flight < window && self.next_offer < self.files.len() && link.has_room() {
            let file = self.next_offer;
            link.send(&offer_frame(file, &self.files[file]));
            self.offered.push_back(file);
            self.next_offer += 1;
            self.in_flight += 1;
        }
    }

    /// Starts the next accepted file, if nothing is being sent or checked.
    fn next_file(&mut self, link: &mut Link<SenderEvent>) {
        if self.sending.is_some() || self.checking.is_some() {
            return;
        }
        let Some(a) = self.accepted.pop_front() else {
            return;
        };
        if a.have == 0 && a.flags & ACCEPT_COMPLETE == 0 {
            self.begin(link, a.file, 0, blake3::Hasher::new(), false);
            return;
        }
        let request = self.requests.issue();
        link.emit(SenderEvent::HashPrefix {
            file: a.file,
            len: a.have,
            request,
        });
        self.checking = Some(a);
    }

    fn begin(
        &mut self,
        link: &mut Link<SenderEvent>,
        file: usize,
        from: u64,
        hasher: blake3::Hasher,
        up_to_date: bool,
    ) {
        link.send(&Frame::Begin {
            id: id_of(file),
            from,
        });
        link.emit(SenderEvent::Started { file, from });
        self.sending = Some(Sending {
            file,
            at: from,
            pending: None,
            hasher: Box::new(hasher),
            up_to_date,
        });
    }

    /// One entry is finished (saved, refused or skipped).
    fn finish_one(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    /// The receiver's decision on the oldest offer it has not decided.
    fn decided(&mut self, id: u32) -> Result<usize, Error> {
        match self.offered.front() {
            Some(&file) if id_of(file) == id => {
                self.offered.pop_front();
                Ok(file)
            }
            Some(&file) => Err(ProtocolError::OutOfOrder {
                id,
                expected: id_of(file),
            }
            .into()),
            None => Err(ProtocolError::UnknownEntry { id }.into()),
        }
    }

    fn on_accept(&mut self, id: u32, have: u64, prefix: [u8; 32], flags: u8) -> Result<(), Error> {
        let next = self.offered.front().copied();
        if next.is_some_and(|f| self.files[f].kind == EntryKind::Directory) {
            return Err(ProtocolError::UnexpectedFrame {
                state: "waiting for a directory's Saved",
                frame: "Accept",
            }
            .into());
        }
        let size = next.map_or(0, |f| self.size(f));
        let complete = flags & ACCEPT_COMPLETE != 0;
        if have > size || (complete && have != size) {
            let reason = "more than the offered size, or a complete file of another size";
            return Err(ProtocolError::BadOffset {
                offset: have,
                reason,
            }
            .into());
        }
        let file = self.decided(id)?;
        self.accepted.push_back(Accepted {
            file,
            have,
            prefix,
            flags,
        });
        Ok(())
    }

    fn on_reject(
        &mut self,
        link: &mut Link<SenderEvent>,
        id: u32,
        reason: RejectReason,
        message: &[u8],
    ) -> Result<(), Error> {
        let file = match self.ended.remove(&(id as usize)) {
            Some(_) => id as usize,
            None => self.decided(id)?,
        };
        let message = sanitize(&message[..message.len().min(1024)]);
        link.emit(SenderEvent::Rejected {
            file,
            reason,
            message,
        });
        self.finish_one();
        Ok(())
    }

    /// `Saved`: checked against what this side certified (the `End`'s
    /// hash; for a directory, the hash of nothing), so a receiver cannot
    /// confirm a file before it read the file's `End`.
    fn on_saved(
        &mut self,
        link: &mut Link<SenderEvent>,
        id: u32,
        flags: u8,
        saved: [u8; 32],
    ) -> Result<(), Error> {
        let file = id as usize;
        let is_dir = |f: usize| self.files[f].kind == EntryKind::Directory;
        let (hash, up_to_date) = match self.ended.get(&file) {
            Some(e) => (e.hash, e.up_to_date),
            None if self.offered.front() == Some(&file) && is_dir(file) => {
                (*blake3::Hasher::new().finalize().as_bytes(), false)
            }
            None => return Err(ProtocolError::UnknownEntry { id }.into()),
        };
        if saved != hash {
            return Err(ProtocolError::SavedMismatch { id }.into());
        }
        if self.ended.remove(&file).is_none() {
            self.offered.pop_front();
        }
        let metadata_updated = up_to_date && flags & SAVED_METADATA != 0;
        link.emit(SenderEvent::Delivered {
            file,
            hash,
            up_to_date,
            metadata_updated,
        });
        self.finish_one();
        Ok(())
    }

    /// Sends `End` for the file whose bytes all went out.
    fn end(&mut self, link: &mut Link<SenderEvent>) {
        let Some(s) = self.sending.take() else { return };
        let hash = *s.hasher.finalize().as_bytes();
        let offer = super::offer_digest(&offer_frame(s.file, &self.files[s.file]));
        link.send(&Frame::End {
            id: id_of(s.file),
            hash,
            offer,
        });
        let up_to_date = s.up_to_date;
        self.ended.insert(s.file, Ended { hash, up_to_date });
        link.emit(SenderEvent::Ended { file: s.file });
        self.flushed = false;
    }

    /// Asks for the next chunk of the file being sent, or ends it.
    fn pump(&mut self, link: &mut Link<SenderEvent>) {
        let chunk = self.config.chunk_size as u64;
        let Some(s) = self.sending.as_mut() else {
            return;
        };
        if s.pending.is_some() {
            return;
        }
        let size = self.files.get(s.file).map_or(0, |f| f.size);
        if s.at < size {
            let len = chunk.min(size - s.at) as usize;
            s.pending = Some(len);
            let request = self.requests.issue();
            link.emit(SenderEvent::Read {
                file: s.file,
                offset: s.at,
                len,
                request,
            });
        } else {
            self.end(link);
        }
    }

    /// Nothing more can go out until the receiver confirms: ask it to
    /// make durable what it holds (once per wait), or end the session
    /// when every entry is finished.
    fn settle(&mut self, link: &mut Link<SenderEvent>) {
        let idle = self.sending.is_none() && self.checking.is_none() && self.accepted.is_empty();
        if !idle || self.window.is_none() {
            return;
        }
        if self.next_offer == self.files.len() && self.in_flight == 0 {
            link.send(&Frame::Quit);
            self.done = true;
            return;
        }
        // Blocked on confirmations alone: every entry offered is decided
        // (an Accept to come would give work), and no more may be offered.
        let window = self.window.unwrap_or(1).min(self.config.window);
        let full = self.next_offer == self.files.len() || self.in_flight >= window;
        let blocked = full && self.offered.is_empty();
        if blocked && !self.ended.is_empty() && !self.flushed {
            link.send(&Frame::Flush);
            self.flushed = true;
        }
    }

    /// Everything that may happen after any input: offer, start, read,
    /// flush, quit.
    fn advance(&mut self, link: &mut Link<SenderEvent>) {
        if self.done {
            return;
        }
        loop {
            let before = (self.sending.is_some(), self.checking.is_some());
            self.offer_more(link);
            self.next_file(link);
            if link.has_room() {
                self.pump(link);
            }
            if before == (self.sending.is_some(), self.checking.is_some()) {
                break;
            }
        }
        self.settle(link);
    }
}

/// An entry's id on the wire: its index in the list.
fn id_of(file: usize) -> u32 {
    u32::try_from(file).unwrap_or(u32::MAX)
}

/// The `Offer` of entry number `file`.
pub(crate) fn offer_frame(file: usize, spec: &FileSpec) -> Frame {
    let mut path = bytes::BytesMut::with_capacity(spec.path.encoded_len());
    spec.path.encode(&mut path);
    Frame::Offer {
        id: id_of(file),
        kind: spec.kind.to_byte(),
        mode: spec.meta.mode,
        mtime_secs: spec.meta.mtime.secs,
        mtime_nanos: spec.meta.mtime.nanos,
        size: spec.size,
        path: path.freeze(),
    }
}

impl Role for SenderRole {
    type Event = SenderEvent;
    const PROTOCOL: Protocol = Protocol::File;

    fn start(&mut self, _link: &mut Link<SenderEvent>) -> Result<(), Error> {
        if u32::try_from(self.files.len()).is_err() {
            return Err(UsageError::WrongState {
                call: "SenderRole::new",
                state: "more than 2^32 entries",
            }
            .into());
        }
        Ok(())
    }

    fn on_frame(&mut self, link: &mut Link<SenderEvent>, frame: Frame) -> Result<(), Error> {
        match frame {
            Frame::Window { files } if self.window.is_none() => self.window = Some(files),
            _ if self.window.is_none() || self.done => {
                return Err(ProtocolError::UnexpectedFrame {
                    state: self.state_name(),
                    frame: frame.name(),
                }
                .into())
            }
            Frame::Accept {
                id,
                have,
                prefix,
                flags,
            } => self.on_accept(id, have, prefix, flags)?,
            Frame::Reject {
                id,
                reason,
                message,
            } => self.on_reject(link, id, reason, &message)?,
            Frame::Saved { id, flags, hash } => self.on_saved(link, id, flags, hash)?,
            frame => {
                return Err(ProtocolError::UnexpectedFrame {
                    state: self.state_name(),
                    frame: frame.name(),
                }
                .into())
            }
        }
        self.advance(link);
        Ok(())
    }

    fn on_writable(&mut self, link: &mut Link<SenderEvent>) {
        self.advance(link);
    }

    fn awaits_app(&self) -> bool {
        self.checking.is_some()
    }

    fn is_finished(&self) -> bool {
        self.done
    }

    fn state_name(&self) -> &'static str {
        if self.done {
            "finished"
        } else if self.window.is_none() {
            "waiting for the receiver's Window"
        } else if self.checking.is_some() {
            "checking a resume prefix"
        } else if self.sending.is_some() {
            "sending file data"
        } else {
            "waiting for confirmations"
        }
    }

    fn frame_limits(&self, session: &SessionLimits) -> Result<FrameLimits, ConfigError> {
        super::frame_limits(&self.config, session)
    }
}

fn wrong_state(call: &'static str, role: &SenderRole) -> Error {
    UsageError::WrongState {
        call,
        state: role.state_name(),
    }
    .into()
}

impl Framed<SenderRole> {
    /// Answers [`SenderEvent::HashPrefix`]: `hasher` has hashed the first
    /// `bytes_hashed` bytes of the local file. If they are the bytes the
    /// receiver holds, sending resumes after them (or, for a complete file
    /// there, nothing is sent: it is up to date); otherwise the file is
    /// sent from 0, or skipped if the receiver may not replace its own.
    pub fn prefix_hashed(
        &mut self,
        request: PrefixRequest,
        hasher: blake3::Hasher,
        bytes_hashed: u64,
    ) -> Result<(), Error> {
        self.command(|role, link| {
            role.requests.answer(request)?;
            let Some(a) = role.checking.take() else {
                return Err(wrong_state("prefix_hashed", role));
            };
            let same = bytes_hashed == a.have
                && hasher.count() == a.have
                && *hasher.finalize().as_bytes() == a.prefix;
            let complete = a.flags & ACCEPT_COMPLETE != 0;
            let replace = a.flags & ACCEPT_REPLACE != 0;
            match (same, complete) {
                (true, _) => role.begin(link, a.file, a.have, hasher, complete),
                (false, true) if !replace => {
                    link.send(&Frame::Skip { id: id_of(a.file) });
                    link.emit(SenderEvent::Rejected {
                        file: a.file,
                        reason: RejectReason::Exists,
                        message: "a different file of that name exists on the receiver, which keeps it unless told to overwrite".into(),
                    });
                    role.finish_one();
                }
                (false, _) => role.begin(link, a.file, 0, blake3::Hasher::new(), false),
            }
            role.advance(link);
            Ok(())
        })
    }

    /// Answers [`SenderEvent::Read`] with the bytes read: at least one and
    /// at most the length asked for (fewer: the data run ends there, a
    /// hole follows). Empty or longer is refused with
    /// [`Error::SourceChanged`] (the file changed under the sender: the
    /// application's failure, not a misuse), and `request` is spent: the
    /// application gives up on the session.
    pub fn push_chunk(&mut self, request: ChunkRequest, chunk: Bytes) -> Result<(), Error> {
        self.command(|role, link| {
            role.requests.answer(request)?;
            let s = role.pending_read("push_chunk")?;
            if chunk.is_empty() || chunk.len() > s.pending.unwrap_or(0) {
                return Err(Error::SourceChanged("chunk length differs"));
            }
            s.hasher.update(&chunk);
            s.at += chunk.len() as u64;
            s.pending = None;
            role.bytes_sent += chunk.len() as u64;
            link.send(&Frame::Data(chunk));
            role.advance(link);
            Ok(())
        })
    }

    /// Answers [`SenderEvent::Read`] with a hole: the next `len` bytes are
    /// zeros the receiver need not write (a sparse file's hole; `len` may
    /// exceed the length asked for, up to the file's end and
    /// [`MAX_HOLE`]). Out of those bounds is refused with
    /// [`Error::SourceChanged`].
    pub fn push_hole(&mut self, request: ChunkRequest, len: u64) -> Result<(), Error> {
        self.command(|role, link| {
            role.requests.answer(request)?;
            let size = role.current().map_or(0, |f| role.size(f));
            let s = role.pending_read("push_hole")?;
            if len == 0 || len > MAX_HOLE || len > size - s.at {
                return Err(Error::SourceChanged("hole past the file's end"));
            }
            super::hash_zeros(&mut s.hasher, len);
            s.at += len;
            s.pending = None;
            link.send(&Frame::Hole { len });
            role.advance(link);
            Ok(())
        })
    }

    /// Gives up on the file whose prefix `request` asked for: it cannot be
    /// read here (it vanished, or its permissions bar it). The receiver is
    /// told with `Skip` and the session goes on with the next file.
    pub fn prefix_unreadable(&mut self, request: PrefixRequest) -> Result<(), Error> {
        self.command(|role, link| {
            role.requests.answer(request)?;
            let Some(a) = role.checking.take() else {
                return Err(wrong_state("prefix_unreadable", role));
            };
            role.skip(link, a.file);
            Ok(())
        })
    }

    /// Gives up on the file whose chunk `request` asked for: it vanished,
    /// shrank or failed to read. The receiver is told with `Skip` (it keeps
    /// what it has for a later resume) and the session goes on with the
    /// next file.
    pub fn unreadable(&mut self, request: ChunkRequest) -> Result<(), Error> {
        self.command(|role, link| {
            role.requests.answer(request)?;
            role.pending_read("unreadable")?;
            let Some(s) = role.sending.take() else {
                return Err(wrong_state("unreadable", role));
            };
            role.skip(link, s.file);
            Ok(())
        })
    }
}

impl SenderRole {
    /// Tells the receiver `file` will not come (or not the rest of it).
    fn skip(&mut self, link: &mut Link<SenderEvent>, file: usize) {
        link.send(&Frame::Skip { id: id_of(file) });
        self.finish_one();
        self.advance(link);
    }

    /// The file being sent, which must have a read outstanding.
    fn pending_read(&mut self, call: &'static str) -> Result<&mut Sending, Error> {
        let refused = wrong_state(call, self);
        match self.sending.as_mut() {
            Some(s) if s.pending.is_some() => Ok(s),
            _ => Err(refused),
        }
    }
}
