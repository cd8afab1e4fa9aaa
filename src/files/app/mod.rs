//! The apps that answer the file-transfer machines' events with the local
//! file system ([`Source`](super::Source) and [`Store`](super::Store)), and
//! record progress and outcome for a progress bar and a summary.
//!
//! Every file-system call is made in a [`Work`](crate::driver::Work): the
//! app keeps the request it answers, queues what the call needs, and hands
//! the call (with the files it needs, moved into it) to its driver, which
//! runs it off its event loop; the result comes back as the answer. So
//! the same apps serve the blocking driver (in place) and the tokio driver
//! (on its blocking pool) alike.

mod receiver;
mod sender;

pub use receiver::ReceiverApp;
pub use sender::SenderApp;

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::codec::RejectReason;
use crate::error::Error;
use crate::session::{Framed, Role};
use crate::xfer::EntryKind;

use super::Incoming;

/// Progress of a session, readable from another thread (a progress bar).
#[derive(Debug, Default)]
pub struct Progress {
    done: AtomicU64,
    total: AtomicU64,
}

impl Progress {
    /// Bytes of file content accounted for: sent or written, plus resumed
    /// prefixes and skipped files.
    pub fn done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    /// Bytes expected in all (the sender knows it at once; the receiver
    /// learns it offer by offer).
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    fn add(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
    }

    fn expect(&self, n: u64) {
        self.total.fetch_add(n, Ordering::Relaxed);
    }
}

/// Passes a machine command's result on: a command refused on a live
/// session is this app's bug; one refused because the session has failed
/// is not, since the machine's own error ends the session.
fn answered<R: Role>(m: &Framed<R>, result: Result<(), Error>) -> io::Result<()> {
    match result {
        Err(e) if !m.is_closed() => Err(io::Error::other(e)),
        _ => Ok(()),
    }
}

/// A receiver's file-system failure, naming the file (the text also goes
/// to the sender, so it names no local path).
fn cannot(what: &str, incoming: &Incoming, e: io::Error) -> io::Error {
    let path = incoming.path();
    let text = crate::error::io_text(&e);
    let hint = match e.raw_os_error() {
        Some(libc::ENOSPC) | Some(libc::EDQUOT) => {
            "; free some space on the receiver and send again (files already saved are found up to date)"
        }
        _ => "",
    };
    io::Error::new(e.kind(), format!("cannot {what} {path}: {text}{hint}"))
}

/// What happened to one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Not finished (the session ended first).
    Pending,
    /// Verified, durable and under its final name (a directory: made).
    Saved {
        /// BLAKE3 of the content.
        hash: [u8; 32],
    },
    /// Already there, identical (size and BLAKE3): nothing moved.
    UpToDate {
        /// BLAKE3 of the content.
        hash: [u8; 32],
    },
    /// Already there, identical, with another permission or modification
    /// time: those were brought in line with the sender's; no data moved.
    MetadataUpdated {
        /// BLAKE3 of the content.
        hash: [u8; 32],
    },
    /// Every byte went out with its `End`, but the session ended before
    /// the receiver confirmed it: it may have been saved (sending again
    /// finds it up to date) or not (sending again resumes it).
    Unconfirmed,
    /// The sender could not read it (it vanished, shrank, or its
    /// permissions bar it) and skipped it; the rest of the session went on.
    Unreadable {
        /// Why (local to the sender; on the receiver, what it was told).
        message: String,
    },
    /// Refused by the receiver (or by the receiver's machine).
    Refused {
        /// Why.
        reason: RejectReason,
        /// The explanation (sanitised when it came from the peer).
        message: String,
    },
    /// The content did not match its hash; nothing was kept.
    Discarded,
}

/// One file of a session, for a summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileReport {
    /// The name it was offered under (sanitised when peer-supplied).
    pub name: String,
    /// Its size.
    pub size: u64,
    /// Where this session's data started (more than 0: resumed).
    pub from: u64,
    /// File data bytes this session moved for it.
    pub moved: u64,
    /// What happened.
    pub outcome: Outcome,
    /// Where it is, once saved (receiver) or where it came from (sender).
    pub path: Option<PathBuf>,
    /// A file or a directory.
    pub kind: EntryKind,
}

impl FileReport {
    fn new(name: String, size: u64, path: Option<PathBuf>) -> Self {
        FileReport {
            name,
            size,
            from: 0,
            moved: 0,
            outcome: Outcome::Pending,
            path,
            kind: EntryKind::File,
        }
    }
}

/// A session's entries counted by outcome: exact however many there were
/// (a report lists only some).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Totals {
    /// Files saved with data moved (resumed ones included).
    pub saved: u64,
    /// Of those, resumed from a partial file.
    pub resumed: u64,
    /// Files already there and identical (those whose metadata was
    /// updated included).
    pub up_to_date: u64,
    /// Of those, files whose permission bits or time were updated.
    pub metadata_updated: u64,
    /// Files sent whole whose confirmation never came (the session ended).
    pub unconfirmed: u64,
    /// Files the sender could not read and skipped.
    pub unreadable: u64,
    /// Directories made (or already there).
    pub dirs: u64,
    /// Entries refused (by the receiver, or skipped as different).
    pub refused: u64,
    /// Files whose content did not verify.
    pub discarded: u64,
    /// Entries not finished when the session ended (unconfirmed ones
    /// are counted apart).
    pub unfinished: u64,
    /// File data bytes moved in this session.
    pub bytes_moved: u64,
}

impl Totals {
    /// Entries given and not delivered: refused, discarded, unreadable,
    /// unconfirmed or unfinished (a run that leaves any is a partial
    /// transfer).
    pub fn left_behind(&self) -> u64 {
        self.refused + self.discarded + self.unreadable + self.unconfirmed + self.unfinished
    }

    /// Counts one finished entry.
    pub fn count(&mut self, f: &FileReport) {
        match (&f.outcome, f.kind) {
            (Outcome::Saved { .. }, EntryKind::Directory) => self.dirs += 1,
            (Outcome::Saved { .. }, EntryKind::File) => {
                self.saved += 1;
                self.resumed += u64::from(f.from > 0);
            }
            (Outcome::UpToDate { .. }, _) => self.up_to_date += 1,
            (Outcome::MetadataUpdated { .. }, _) => {
                self.up_to_date += 1;
                self.metadata_updated += 1;
            }
            (Outcome::Unconfirmed, _) => self.unconfirmed += 1,
            (Outcome::Unreadable { .. }, _) => self.unreadable += 1,
            (Outcome::Refused { .. }, _) => self.refused += 1,
            (Outcome::Discarded, _) => self.discarded += 1,
            (Outcome::Pending, _) => self.unfinished += 1,
        }
    }
}
