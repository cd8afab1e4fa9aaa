//! Legacy file transfer: the seed sender and receiver, made safe, as
//! machines. File data comes and goes only through events the application
//! answers; nothing here touches a file or a socket.
//!
//! Wire: the sender writes the file in pieces and waits for `success`
//! after each; the receiver acks reads with `success` and stops at a read
//! that is exactly `quit`. No names, sizes or checksums.
//!
//! # What is made safe, and what is not
//!
//! * Pieces are at most 1024 bytes (the seed receiver's `recv(1024)`), are
//!   cut after a newline when the window has one, and never contain `quit`
//!   (a piece is cut inside the word), so any content gets through, a last
//!   line `quit` included, and no read of one piece can be exactly `quit`.
//!   A piece that ends inside the word (`...qui`) is followed by the next
//!   only after the settle interval below, so no read can join the two
//!   into `quit` (a cost of one settle interval per `quit` in the content).
//! * Acks are parsed as a byte stream: `suc`+`cess` and `successsuccess`
//!   both count. Acks beyond the pieces sent (one piece read in two reads
//!   gets two acks) are dropped rather than credited to later pieces.
//! * A piece goes only after the previous one is acked, and `quit` goes
//!   only once the last piece is acked *and* no further ack has come for
//!   `UnframedConfig::legacy_quit_settle`: a receiver still reading a piece it got
//!   in several reads acks each of them, and we wait until it is quiet.
//! * The receiver acks a read at once when it ends a line, else after
//!   `UnframedConfig::legacy_ack_delay` without more data, so a seed sender's line
//!   that arrives in several reads gets exactly one `success` (several
//!   would reach it glued as `successsuccess`, which it takes for failure
//!   and answers with `quit`, truncating the file).
//!
//! **Residual risk** (this is a protocol without framing): acks cannot be
//! tied to pieces, so "the receiver has read everything" is inferred from
//! the acks having been quiet for `legacy_quit_settle`. A receiver that
//! stalls for longer than that with unread data (after the network split a
//! piece, so its earlier acks looked complete) would read `quit` glued to
//! that data, or `...qui` + `t...` as one read; it then keeps the word as
//! data and never stops, or stops early. The receiver cannot tell a data
//! read that is exactly `quit` from the end. Neither side can check the
//! content: compare the BLAKE3 [`LegacyReceiverEvent::Complete`] reports with the
//! source by hand, or use the native protocol.

use std::collections::VecDeque;
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use super::{piece_len, tears_word, PIECE_MAX, QUIT, SUCCESS};
use crate::config::UnframedConfig;
use crate::error::{Error, ProtocolError, UsageError};
use crate::unframed::{sealed, Unframed, UnframedLink, UnframedRole};

/// What the legacy file sender asks of, and tells, its application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LegacySenderEvent {
    /// Read `len` bytes of the file at `offset` and hand them to
    /// [`LegacyFileSender::provide`].
    Read {
        /// Where in the file.
        offset: u64,
        /// How many bytes (all of them must come).
        len: usize,
    },
    /// The receiver has acknowledged the file up to `acked` of `size` bytes.
    Progress {
        /// Bytes acknowledged.
        acked: u64,
        /// The file's size.
        size: u64,
    },
}

/// The legacy file sender machine (see the module docs for its safety
/// rules). It ends `Ok` once `quit` is handed out; a receiver that closes
/// first is [`ProtocolError::UnexpectedEof`], bytes other than `success`
/// are [`ProtocolError::InvalidField`].
pub type LegacyFileSender = Unframed<LegacySenderRole>;

/// The legacy file sender role. Use it as [`LegacyFileSender`].
#[derive(Debug)]
pub struct LegacySenderRole {
    size: u64,
    /// Offset of the next piece.
    next: u64,
    /// Data read ahead, starting at `next`.
    buf: BytesMut,
    /// The read asked of the application and not yet answered.
    read_pending: Option<(u64, usize)>,
    pieces: u64,
    /// Acks credited, never more than `pieces`.
    acks: u64,
    /// End offsets of the pieces not yet acked.
    piece_ends: VecDeque<u64>,
    /// End offset of the last acked piece.
    acked_end: u64,
    /// How much of `success` the ack stream has matched so far.
    ack_match: usize,
    /// The last piece tore `quit` (ends `q`, `qu` or `qui` with more to come).
    guard: bool,
    settle_deadline: Option<Instant>,
}

impl LegacyFileSender {
    /// A sender of a file of `size` bytes, starting at `now`.
    pub fn new(size: u64, config: UnframedConfig, now: Instant) -> Self {
        let role = LegacySenderRole {
            size,
            next: 0,
            buf: BytesMut::new(),
            read_pending: None,
            pieces: 0,
            acks: 0,
            piece_ends: VecDeque::new(),
            acked_end: 0,
            ack_match: 0,
            guard: false,
            settle_deadline: None,
        };
        Unframed::with_role(role, config, now)
    }

    /// Answers [`LegacySenderEvent::Read`]: `data` must be exactly the bytes asked
    /// for. Refused, changing nothing, with [`UsageError::Closed`] once the
    /// session is over, [`UsageError::WrongState`] if no read was asked
    /// for, and [`Error::SourceChanged`] if the data is not the range asked
    /// for (the file changed: the application's failure).
    pub fn provide(&mut self, offset: u64, data: Bytes) -> Result<(), Error> {
        let (role, link) = self.parts();
        if link.is_over() {
            return Err(UsageError::Closed.into());
        }
        match role.read_pending {
            Some((o, len)) if o == offset && len == data.len() => {}
            Some(_) => return Err(Error::SourceChanged("not the range asked for")),
            None => {
                let (call, state) = ("provide", "no read was asked for");
                return Err(UsageError::WrongState { call, state }.into());
            }
        }
        role.read_pending = None;
        role.buf.extend_from_slice(&data);
        role.step(link);
        Ok(())
    }

    /// Bytes the receiver has acknowledged.
    pub fn acked(&self) -> u64 {
        self.role().acked_end
    }
}

type SenderLink = UnframedLink<LegacySenderEvent>;

impl LegacySenderRole {
    /// One whole `success` arrived: it acks the oldest unacked piece, if any
    /// (a piece read in several reads earns several acks; the spare ones are dropped).
    fn credit_ack(&mut self, link: &mut SenderLink) {
        if self.acks < self.pieces {
            self.acks += 1;
            let end = self
                .piece_ends
                .pop_front()
                .expect("one end per unacked piece");
            self.acked_end = end;
            let size = self.size;
            link.emit(LegacySenderEvent::Progress { acked: end, size });
        }
    }

    fn awaiting_ack(&self) -> bool {
        self.acks < self.pieces
    }

    fn send_quit(&mut self, link: &mut SenderLink) {
        link.send(Bytes::from_static(QUIT));
        link.finish();
        self.settle_deadline = None;
    }

    /// Moves as far as acks, data and time allow.
    fn step(&mut self, link: &mut SenderLink) {
        if link.is_over() || self.awaiting_ack() {
            return;
        }
        if self.next >= self.size && self.pieces == 0 {
            // Nothing was sent, so nothing can be glued to `quit`.
            self.send_quit(link);
            return;
        }
        let need = usize::try_from(self.size - self.next)
            .unwrap_or(usize::MAX)
            .min(PIECE_MAX);
        if self.buf.len() < need {
            if self.read_pending.is_none() {
                let offset = self.next + self.buf.len() as u64;
                let len = (PIECE_MAX - self.buf.len())
                    .min(usize::try_from(self.size - offset).unwrap_or(PIECE_MAX));
                self.read_pending = Some((offset, len));
                link.emit(LegacySenderEvent::Read { offset, len });
            }
            return;
        }
        // `quit`, and a piece after one that tore the word `quit`, go only
        // once the receiver has been quiet for the settle interval.
        if self.next >= self.size || self.guard {
            match self.settle_deadline {
                None => {
                    self.settle_deadline = Some(link.now() + link.config.legacy_quit_settle);
                    return;
                }
                Some(d) if link.now() >= d => {
                    self.settle_deadline = None;
                    self.guard = false;
                }
                Some(_) => return,
            }
        }
        if self.next >= self.size {
            self.send_quit(link);
            return;
        }
        let more = (need as u64) < self.size - self.next;
        let n = piece_len(&self.buf[..need], more, QUIT);
        let piece = self.buf.split_to(n).freeze();
        self.next += n as u64;
        self.guard = tears_word(&piece, self.next < self.size, QUIT);
        self.pieces += 1;
        self.piece_ends.push_back(self.next);
        link.send(piece);
        link.touch();
    }
}

impl sealed::Sealed for LegacySenderRole {}

/// The transition table: send a piece, wait for its `success`, and `quit`
/// once the acks have settled; the receiver's EOF before that is an error.
impl UnframedRole for LegacySenderRole {
    type Event = LegacySenderEvent;

    fn start(&mut self, link: &mut SenderLink) {
        self.step(link);
    }

    fn on_read(&mut self, link: &mut SenderLink) -> Result<(), Error> {
        let data = link.take_read();
        let mut acked = false;
        for &b in &data[..] {
            if b != SUCCESS[self.ack_match] {
                let e = ProtocolError::InvalidField {
                    field: "legacy ack",
                    reason: "expected the bytes `success`",
                };
                return Err(e.into());
            }
            self.ack_match += 1;
            if self.ack_match == SUCCESS.len() {
                self.ack_match = 0;
                acked = true;
                self.credit_ack(link);
            }
        }
        if acked {
            link.touch();
            if self.settle_deadline.is_some() {
                // The receiver is still reading: start the quiet period over.
                self.settle_deadline = Some(link.now() + link.config.legacy_quit_settle);
            }
        }
        Ok(())
    }

    fn on_eof(&mut self, _link: &mut SenderLink) -> Result<(), Error> {
        let state = "sending (the receiver closed before `quit`)";
        Err(ProtocolError::UnexpectedEof { state }.into())
    }

    fn advance(&mut self, link: &mut SenderLink) {
        self.step(link);
    }

    /// Only an unacked piece waits for the receiver; the rest is the
    /// application's (a read) or the settle interval.
    fn awaits_peer(&self) -> bool {
        self.awaiting_ack()
    }

    fn deadline(&self) -> Option<Instant> {
        self.settle_deadline
    }

    fn input_room(&self, _link: &SenderLink) -> usize {
        PIECE_MAX
    }
}

/// What the legacy file receiver tells its application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LegacyReceiverEvent {
    /// Write `data` at `offset` (reads come in order: `offset` is the sum
    /// of all earlier writes).
    Write {
        /// Where in the file.
        offset: u64,
        /// One read's bytes.
        data: Bytes,
    },
    /// The sender sent `quit`: the file is whole as far as legacy mode can
    /// tell. Only now may the application give it its final name.
    Complete {
        /// Bytes received.
        size: u64,
        /// BLAKE3 of the bytes received, for a person to compare by hand.
        blake3: [u8; 32],
    },
}

/// The legacy file receiver machine.
///
/// `input_room()` is at most [`PIECE_MAX`], so each `handle_input` is one
/// `recv(1024)`. A read that is exactly `quit` ends the session `Ok` with
/// [`LegacyReceiverEvent::Complete`]; any other read becomes a
/// [`LegacyReceiverEvent::Write`] and is acked with `success` (at once when it
/// ends a line, else after `legacy_ack_delay` of quiet, one ack for the
/// burst; see the module docs). An end of stream before `quit` is
/// [`ProtocolError::UnexpectedEof`]: the transfer is incomplete.
pub type LegacyFileReceiver = Unframed<LegacyReceiverRole>;

/// The legacy file receiver role. Use it as [`LegacyFileReceiver`].
#[derive(Debug, Default)]
pub struct LegacyReceiverRole {
    received: u64,
    hasher: blake3::Hasher,
    ack_deadline: Option<Instant>,
}

impl LegacyFileReceiver {
    /// A receiver starting at `now`.
    pub fn new(config: UnframedConfig, now: Instant) -> Self {
        Unframed::with_role(LegacyReceiverRole::default(), config, now)
    }

    /// Bytes received so far.
    pub fn received(&self) -> u64 {
        self.role().received
    }
}

type ReceiverLink = UnframedLink<LegacyReceiverEvent>;

impl LegacyReceiverRole {
    fn ack(&mut self, link: &mut ReceiverLink) {
        self.ack_deadline = None;
        link.send(Bytes::from_static(SUCCESS));
    }
}

impl sealed::Sealed for LegacyReceiverRole {}

/// The transition table: write and ack each read, end at `quit`; an EOF
/// before `quit` is an incomplete transfer.
impl UnframedRole for LegacyReceiverRole {
    type Event = LegacyReceiverEvent;

    fn on_read(&mut self, link: &mut ReceiverLink) -> Result<(), Error> {
        // One read, written from the memory it was read into.
        let data = link.take_read();
        link.touch();
        if data == QUIT {
            // An ack still held back is for a read the sender did not wait
            // for; the seed receiver does not ack `quit` either.
            self.ack_deadline = None;
            link.emit(LegacyReceiverEvent::Complete {
                size: self.received,
                blake3: *self.hasher.finalize().as_bytes(),
            });
            link.finish();
            return Ok(());
        }
        let offset = self.received;
        self.received += data.len() as u64;
        let max = link.config.max_file_size;
        if self.received > max {
            let len = usize::try_from(self.received).unwrap_or(usize::MAX);
            let max = usize::try_from(max).unwrap_or(usize::MAX);
            return Err(ProtocolError::MessageTooLarge { len, max }.into());
        }
        self.hasher.update(&data);
        let ends_line = data.ends_with(b"\n");
        link.emit(LegacyReceiverEvent::Write { offset, data });
        if ends_line {
            self.ack(link);
        } else {
            self.ack_deadline = Some(link.now() + link.config.legacy_ack_delay);
        }
        Ok(())
    }

    fn on_eof(&mut self, _link: &mut ReceiverLink) -> Result<(), Error> {
        let state = "receiving a legacy file (no `quit`: incomplete)";
        Err(ProtocolError::UnexpectedEof { state }.into())
    }

    fn on_timeout(&mut self, link: &mut ReceiverLink) {
        if self.ack_deadline.is_some_and(|d| link.now() >= d) {
            self.ack(link);
        }
    }

    fn deadline(&self) -> Option<Instant> {
        self.ack_deadline
    }

    fn input_room(&self, _link: &ReceiverLink) -> usize {
        PIECE_MAX
    }
}
