//! The receiver's app: decides offers and stores files, every file-system
//! call off the driver's event loop.

use std::borrow::BorrowMut;
use std::io;
use std::mem;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use super::{answered, cannot, FileReport, Outcome, Progress, REFUSALS_LISTED};
use crate::driver::{App, Work};
use crate::files::{Incoming, Refusal, Store};
use crate::machine::Machine;
use crate::xfer::{
    Meta, Mtime, OfferRequest, Receiver, ReceiverEvent, Resume, SafeName, SafePath, SaveRequest,
};

/// The receiver's app: decides offers and stores files in a [`Store`].
#[derive(Debug)]
pub struct ReceiverApp {
    /// `None` while a [`Work`] uses it.
    disk: Option<Disk>,
    /// File-system calls the machine's events asked for, in order, until
    /// they are handed out as one work.
    queued: Vec<Op>,
    report: Vec<FileReport>,
    progress: Arc<Progress>,
    /// Refused offers listed in `report` (at most [`REFUSALS_LISTED`]).
    refusals_listed: usize,
    /// Where the [`Outcome::Unlisted`] entry is in `report`, once there is one.
    unlisted: Option<usize>,
}

/// The store and the file being received: what a work takes with it.
#[derive(Debug)]
struct Disk {
    store: Store,
    current: Option<Incoming>,
}

/// One file-system call, with the request it answers.
#[derive(Debug)]
enum Op {
    Prepare {
        name: SafeName,
        size: u64,
        request: OfferRequest,
    },
    Start {
        from: u64,
    },
    Write {
        offset: u64,
        data: Bytes,
    },
    Commit {
        hash: [u8; 32],
        request: SaveRequest,
    },
    Discard,
}

/// What one [`Op`] did.
// Made once per call and consumed at once: the size does not matter.
#[allow(clippy::large_enum_variant)]
enum Did {
    Prepared {
        name: SafeName,
        size: u64,
        request: OfferRequest,
        decision: Result<Resume, Refusal>,
    },
    Started {
        from: u64,
    },
    Wrote {
        len: u64,
    },
    Committed {
        hash: [u8; 32],
        request: SaveRequest,
        saved: Result<PathBuf, Refusal>,
    },
    Discarded,
}

impl Disk {
    /// Makes the calls in order (this may block), up to the first failure.
    fn run(&mut self, ops: Vec<Op>) -> (Vec<Did>, Option<io::Error>) {
        let mut did = Vec::with_capacity(ops.len());
        for op in ops {
            match self.op(op) {
                Ok(d) => did.push(d),
                Err(e) => return (did, Some(e)),
            }
        }
        (did, None)
    }

    fn op(&mut self, op: Op) -> io::Result<Did> {
        Ok(match op {
            Op::Prepare {
                name,
                size,
                request,
            } => {
                self.current = None;
                // Until offers carry metadata: today's mode, saved now.
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default();
                let mtime = Mtime {
                    secs: i64::try_from(now.as_secs()).unwrap_or(i64::MAX),
                    nanos: now.subsec_nanos(),
                };
                let meta = Meta { mode: 0o600, mtime };
                let path = SafePath::single(name.clone());
                let decision = self
                    .store
                    .prepare(&path, size, meta)
                    .map(|(incoming, resume)| {
                        self.current = Some(incoming);
                        resume
                    });
                Did::Prepared {
                    name,
                    size,
                    request,
                    decision,
                }
            }
            Op::Start { from } => {
                let incoming = self.incoming()?;
                incoming
                    .start(from)
                    .map_err(|e| cannot("start", incoming, e))?;
                Did::Started { from }
            }
            Op::Write { offset, data } => {
                let incoming = self.incoming()?;
                (incoming.write_at(offset, &data)).map_err(|e| cannot("write", incoming, e))?;
                let len = data.len() as u64;
                Did::Wrote { len }
            }
            Op::Commit { hash, request } => {
                let incoming = self
                    .current
                    .take()
                    .ok_or_else(|| io::Error::other("verified with no accepted file"))?;
                let saved = incoming.commit();
                Did::Committed {
                    hash,
                    request,
                    saved,
                }
            }
            Op::Discard => {
                if let Some(incoming) = self.current.take() {
                    incoming.discard()?;
                }
                Did::Discarded
            }
        })
    }

    fn incoming(&mut self) -> io::Result<&mut Incoming> {
        self.current
            .as_mut()
            .ok_or_else(|| io::Error::other("file data with no accepted file"))
    }
}

impl ReceiverApp {
    /// An app storing into `store`.
    pub fn new(store: Store) -> ReceiverApp {
        ReceiverApp {
            disk: Some(Disk {
                store,
                current: None,
            }),
            queued: Vec::new(),
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

    fn last(&mut self) -> io::Result<&mut FileReport> {
        self.report
            .last_mut()
            .ok_or_else(|| io::Error::other("no file in progress"))
    }

    /// Takes in what the calls did (answering the machine), in order, then
    /// the failure that stopped them, if one did.
    fn settle(
        &mut self,
        m: &mut Receiver,
        did: Vec<Did>,
        failed: Option<io::Error>,
    ) -> io::Result<()> {
        for d in did {
            self.settle_one(m, d)?;
        }
        failed.map_or(Ok(()), Err)
    }

    fn settle_one(&mut self, m: &mut Receiver, did: Did) -> io::Result<()> {
        match did {
            Did::Prepared {
                name,
                size,
                request,
                decision,
            } => {
                let mut report = FileReport::new(name.to_string(), size, None);
                match decision {
                    Ok(resume) => {
                        self.report.push(report);
                        self.progress.expect(size);
                        let r = m.accept(request, resume);
                        answered(m, r)
                    }
                    Err(refusal) => {
                        let message = refusal.message.clone().into_bytes();
                        let r = m.reject(request, refusal.reason, message);
                        report.outcome = Outcome::Refused {
                            reason: refusal.reason,
                            message: refusal.message,
                        };
                        self.note_refusal(report);
                        answered(m, r)
                    }
                }
            }
            Did::Started { from } => {
                self.last()?.from = from;
                self.progress.add(from);
                Ok(())
            }
            Did::Wrote { len } => {
                self.last()?.moved += len;
                self.progress.add(len);
                Ok(())
            }
            Did::Committed {
                hash,
                request,
                saved,
            } => {
                let (r, outcome, path) = match saved {
                    Ok(path) => (m.saved(request), Outcome::Saved { hash }, Some(path)),
                    Err(refusal) => {
                        let r = m.save_failed(request, refusal.reason, refusal.message.clone());
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
            Did::Discarded => {
                self.last()?.outcome = Outcome::Discarded;
                Ok(())
            }
        }
    }
}

impl<M> App<M> for ReceiverApp
where
    M: Machine<Event = ReceiverEvent> + BorrowMut<Receiver> + 'static,
{
    fn on_event(&mut self, _: &mut M, _: Instant, event: ReceiverEvent) -> io::Result<()> {
        let op = match event {
            ReceiverEvent::Offer {
                name,
                size,
                request,
            } => Op::Prepare {
                name,
                size,
                request,
            },
            ReceiverEvent::Refused { name, size, reason } => {
                let mut report = FileReport::new(name, size, None);
                let message = "refused by the protocol machine".to_string();
                report.outcome = Outcome::Refused { reason, message };
                self.note_refusal(report);
                return Ok(());
            }
            ReceiverEvent::Start { from, .. } => Op::Start { from },
            ReceiverEvent::Write { offset, data } => Op::Write { offset, data },
            ReceiverEvent::Verified { hash, request, .. } => Op::Commit { hash, request },
            ReceiverEvent::Discard { .. } => Op::Discard,
            ReceiverEvent::Finished => return Ok(()),
        };
        self.queued.push(op);
        Ok(())
    }

    fn poll_work(&mut self) -> Option<Work<Self, M>> {
        if self.queued.is_empty() {
            return None;
        }
        // Calls are handed out one batch at a time, so the disk is here.
        let mut disk = self.disk.take()?;
        let ops = mem::take(&mut self.queued);
        Some(Work::new(move || {
            let (did, failed) = disk.run(ops);
            move |app: &mut ReceiverApp, m: &mut M, _| {
                app.disk = Some(disk);
                app.settle(m.borrow_mut(), did, failed)
            }
        }))
    }
}
