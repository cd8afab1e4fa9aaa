//! The apps that answer the file-transfer machines' events with the local
//! file system ([`Source`] and [`Store`]), and record progress and outcome
//! for a progress bar and a summary.

use std::borrow::BorrowMut;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::codec::RejectReason;
use crate::driver::App;
use crate::error::Error;
use crate::machine::Machine;
use crate::session::{Framed, Role};
use crate::xfer::{Receiver, ReceiverEvent, Sender, SenderEvent, SenderRole};

use super::{Incoming, Source, Store};

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
    let name = incoming.name();
    io::Error::new(e.kind(), format!("cannot {what} {name}: {e}"))
}

/// What happened to one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Not finished (the session ended first).
    Pending,
    /// Verified, durable and under its final name.
    Saved {
        /// BLAKE3 of the content.
        hash: [u8; 32],
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
    /// Stands for offers refused beyond the first
    /// [`REFUSALS_LISTED`] of a session, which are counted, not listed
    /// (the entry's `size` is their offered bytes, added up).
    Unlisted {
        /// How many.
        refused: u64,
    },
}

/// Refused offers a [`ReceiverApp`] lists one by one in its report; the
/// rest of a session's refusals share one [`Outcome::Unlisted`] entry, so a
/// peer offering junk costs a bounded amount of bookkeeping.
pub const REFUSALS_LISTED: usize = 20;

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
        }
    }
}

/// The sender's app: reads its [`Source`]s as the machine asks.
#[derive(Debug)]
pub struct SenderApp {
    sources: Vec<Source>,
    report: Vec<FileReport>,
    progress: Arc<Progress>,
}

impl SenderApp {
    /// Opens every path (each offered under its own file name).
    pub fn open(paths: &[impl AsRef<Path>], max_name_len: usize) -> io::Result<SenderApp> {
        let sources = paths
            .iter()
            .map(|p| Source::open(p, max_name_len))
            .collect::<io::Result<Vec<_>>>()?;
        Ok(SenderApp::new(sources))
    }

    /// An app over already opened sources.
    pub fn new(sources: Vec<Source>) -> SenderApp {
        let report = sources
            .iter()
            .map(|s| {
                let spec = s.spec();
                let path = Some(s.path().to_path_buf());
                FileReport::new(spec.name.to_string(), spec.size, path)
            })
            .collect();
        let progress = Arc::new(Progress::default());
        progress.expect(sources.iter().map(|s| s.spec().size).sum());
        SenderApp {
            sources,
            report,
            progress,
        }
    }

    /// The role that offers these files, in order.
    pub fn role(&self) -> SenderRole {
        SenderRole::new(self.sources.iter().map(|s| s.spec().clone()).collect())
    }

    /// A handle on the progress counters.
    pub fn progress(&self) -> Arc<Progress> {
        self.progress.clone()
    }

    /// Per-file outcome, in offer order.
    pub fn report(&self) -> &[FileReport] {
        &self.report
    }

    /// File data bytes sent in this session.
    pub fn bytes_sent(&self) -> u64 {
        self.report.iter().map(|f| f.moved).sum()
    }

    fn source(&self, file: usize) -> io::Result<&Source> {
        self.sources
            .get(file)
            .ok_or_else(|| io::Error::other("the machine named an unknown file"))
    }
}

/// Works on a [`Sender`] and on anything that wraps one, such as
/// `Secure<Sender>`.
impl<Mach: Machine<Event = SenderEvent> + BorrowMut<Sender>> App<Mach> for SenderApp {
    fn on_event(&mut self, m: &mut Mach, _: Instant, event: SenderEvent) -> io::Result<()> {
        let m: &mut Sender = m.borrow_mut();
        match event {
            SenderEvent::HashPrefix { file, len } => {
                let (hasher, n) = self.source(file)?.hash_prefix(len)?;
                let r = m.prefix_hashed(hasher, n);
                answered(m, r)
            }
            SenderEvent::Started { file, from } => {
                self.report[file].from = from;
                self.progress.add(from);
                Ok(())
            }
            SenderEvent::Read { file, offset, len } => {
                let chunk = self.source(file)?.read_at(offset, len)?;
                let n = chunk.len() as u64;
                let r = m.push_chunk(chunk);
                if r.is_ok() {
                    self.report[file].moved += n;
                    self.progress.add(n);
                }
                answered(m, r)
            }
            SenderEvent::Delivered { file, hash } => {
                self.report[file].outcome = Outcome::Saved { hash };
                Ok(())
            }
            SenderEvent::Rejected {
                file,
                reason,
                message,
            } => {
                let report = &mut self.report[file];
                // A skipped file counts as done for the progress bar.
                self.progress
                    .add(report.size.saturating_sub(report.from + report.moved));
                report.outcome = Outcome::Refused { reason, message };
                Ok(())
            }
        }
    }
}

/// The receiver's app: decides offers and stores files in a [`Store`].
#[derive(Debug)]
pub struct ReceiverApp {
    store: Store,
    current: Option<Incoming>,
    report: Vec<FileReport>,
    progress: Arc<Progress>,
    /// Refused offers listed in `report` (at most [`REFUSALS_LISTED`]).
    refusals_listed: usize,
    /// Where the [`Outcome::Unlisted`] entry is in `report`, once there is one.
    unlisted: Option<usize>,
}

impl ReceiverApp {
    /// An app storing into `store`.
    pub fn new(store: Store) -> ReceiverApp {
        ReceiverApp {
            store,
            current: None,
            report: Vec::new(),
            progress: Arc::new(Progress::default()),
            refusals_listed: 0,
            unlisted: None,
        }
    }

    /// Records a refused offer: listed in full while fewer than
    /// [`REFUSALS_LISTED`] are, else counted in the one `Unlisted` entry.
    fn note_refusal(&mut self, report: FileReport) {
        if self.refusals_listed < REFUSALS_LISTED {
            self.refusals_listed += 1;
            self.report.push(report);
            return;
        }
        let i = *self.unlisted.get_or_insert_with(|| {
            let mut entry = FileReport::new(String::new(), 0, None);
            entry.outcome = Outcome::Unlisted { refused: 0 };
            self.report.push(entry);
            self.report.len() - 1
        });
        let entry = &mut self.report[i];
        entry.size = entry.size.saturating_add(report.size);
        if let Outcome::Unlisted { refused } = &mut entry.outcome {
            *refused += 1;
        }
    }

    /// A handle on the progress counters.
    pub fn progress(&self) -> Arc<Progress> {
        self.progress.clone()
    }

    /// Per-file outcome, in offer order; refused offers beyond the first
    /// [`REFUSALS_LISTED`] are counted in one [`Outcome::Unlisted`] entry.
    pub fn report(&self) -> &[FileReport] {
        &self.report
    }

    /// File data bytes written in this session.
    pub fn bytes_written(&self) -> u64 {
        self.report.iter().map(|f| f.moved).sum()
    }

    fn incoming(&mut self) -> io::Result<&mut Incoming> {
        self.current
            .as_mut()
            .ok_or_else(|| io::Error::other("file data with no accepted file"))
    }

    fn last(&mut self) -> io::Result<&mut FileReport> {
        self.report
            .last_mut()
            .ok_or_else(|| io::Error::other("no file in progress"))
    }
}

/// Works on a [`Receiver`] and on anything that wraps one, such as
/// `Secure<Receiver>`.
impl<Mach: Machine<Event = ReceiverEvent> + BorrowMut<Receiver>> App<Mach> for ReceiverApp {
    fn on_event(&mut self, m: &mut Mach, _: Instant, event: ReceiverEvent) -> io::Result<()> {
        let m: &mut Receiver = m.borrow_mut();
        match event {
            ReceiverEvent::Offer { name, size } => {
                let mut report = FileReport::new(name.to_string(), size, None);
                self.current = None;
                match self.store.prepare(&name, size) {
                    Ok((incoming, resume)) => {
                        self.report.push(report);
                        self.current = Some(incoming);
                        self.progress.expect(size);
                        let r = m.accept(resume);
                        answered(m, r)
                    }
                    Err(refusal) => {
                        let r = m.reject(refusal.reason, refusal.message.clone().into_bytes());
                        report.outcome = Outcome::Refused {
                            reason: refusal.reason,
                            message: refusal.message,
                        };
                        self.note_refusal(report);
                        answered(m, r)
                    }
                }
            }
            ReceiverEvent::Refused { name, size, reason } => {
                let mut report = FileReport::new(name, size, None);
                let message = "refused by the protocol machine".to_string();
                report.outcome = Outcome::Refused { reason, message };
                self.note_refusal(report);
                Ok(())
            }
            ReceiverEvent::Start { from, .. } => {
                let incoming = self.incoming()?;
                incoming
                    .start(from)
                    .map_err(|e| cannot("start", incoming, e))?;
                self.last()?.from = from;
                self.progress.add(from);
                Ok(())
            }
            ReceiverEvent::Write { offset, data } => {
                let incoming = self.incoming()?;
                (incoming.write_at(offset, &data)).map_err(|e| cannot("write", incoming, e))?;
                self.last()?.moved += data.len() as u64;
                self.progress.add(data.len() as u64);
                Ok(())
            }
            ReceiverEvent::Verified { hash, .. } => {
                let incoming = self
                    .current
                    .take()
                    .ok_or_else(|| io::Error::other("verified with no accepted file"))?;
                let (r, outcome, path) = match incoming.commit() {
                    Ok(path) => (m.saved(), Outcome::Saved { hash }, Some(path)),
                    Err(refusal) => {
                        let r = m.save_failed(refusal.reason, refusal.message.clone());
                        let outcome = Outcome::Refused {
                            reason: refusal.reason,
                            message: refusal.message,
                        };
                        (r, outcome, None)
                    }
                };
                let last = self.last()?;
                last.outcome = outcome;
                last.path = path;
                answered(m, r)
            }
            ReceiverEvent::Discard { .. } => {
                if let Some(incoming) = self.current.take() {
                    incoming.discard()?;
                }
                self.last()?.outcome = Outcome::Discarded;
                Ok(())
            }
            ReceiverEvent::Finished => Ok(()),
        }
    }
}
