//! The receiver's app: decides offers and stores files, every file-system
//! call off the driver's event loop. Verified files are made durable in
//! groups (group commit): when the sender says it waits (`Flush`, acted on
//! once the frames already read after it are taken in: see
//! [`ReceiverApp`]'s `poll_work`), when a group reaches 128 files or
//! 64 MiB, and when the session ends.

use std::borrow::BorrowMut;
use std::collections::BTreeMap;
use std::io;
use std::mem;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::{answered, FileReport, Outcome, Progress, Totals};
use crate::codec::RejectReason;
use crate::driver::{App, DriverError, Work};
use crate::files::{Committed, Incoming, Refusal, Store};
use crate::machine::Machine;
use crate::xfer::{
    EntryKind, FileSpec, Meta, OfferRequest, Receiver, ReceiverEvent, Resume, SafePath, SaveRequest,
};

/// Verified files held for one group commit, at most.
pub(crate) const COMMIT_FILES: usize = 128;
/// Bytes of verified files held for one group commit, at most (64 MiB).
pub(crate) const COMMIT_BYTES: u64 = 64 << 20;
/// Finished entries a [`ReceiverApp`] lists in its report by default;
/// later ones are only counted in its [`Totals`].
pub(crate) const REPORT_LISTED: usize = 1000;
/// Directories whose modification time is set when the session ends, at
/// most (creating files in a directory changes its time, so it is set last).
const DIR_TIMES_KEPT: usize = 10_000;

/// The receiver's app: decides offers and stores files in a [`Store`].
#[derive(Debug)]
pub struct ReceiverApp {
    /// `None` while a [`Work`] uses it.
    disk: Option<Disk>,
    /// File-system calls the machine's events asked for, in order, until
    /// they are handed out as one work.
    queued: Vec<Op>,
    /// Reports of entries in flight (at most the window).
    open: BTreeMap<u32, FileReport>,
    /// Reports of finished entries, the first `listed` of them.
    report: Vec<FileReport>,
    listed: usize,
    totals: Totals,
    progress: Arc<Progress>,
    /// Verified files in the group not yet committed, and their bytes.
    group: (usize, u64),
    /// The sender said `Flush`; the group commit is not queued yet.
    flush: bool,
    /// The session has ended: writes are no longer gathered.
    ended: bool,
}

/// The store and the files being received: what a work takes with it.
#[derive(Debug)]
struct Disk {
    store: Store,
    /// Accepted files waiting for their data, by id.
    prepared: BTreeMap<u32, Incoming>,
    /// The file whose data is arriving.
    current: Option<(u32, Incoming)>,
    /// Verified files waiting for the group commit.
    group: Vec<Verified>,
    /// Directories offered, their metadata, and whether this session made
    /// them: their times (and, for those made, modes) are set at the end.
    dir_times: Vec<(SafePath, Meta, bool)>,
}

#[derive(Debug)]
struct Verified {
    id: u32,
    request: SaveRequest,
    hash: [u8; 32],
    incoming: Incoming,
}

/// Writes are handed to the disk a MiB at a time, or sooner with anything
/// else queued (an offer, a file's end, a flush, the session's end): on a
/// driver that runs work on another thread, each work costs a hand-off
/// there and back, and a fast disk otherwise gets one per chunk. Held
/// writes are the last bytes received, never acknowledged: what a cut
/// connection leaves is still a prefix of the file, and `on_end` hands
/// them out too.
const WRITE_GROUP: usize = 1024 * 1024;

/// One file-system call, with the request it answers.
#[derive(Debug)]
enum Op {
    Prepare {
        id: u32,
        spec: FileSpec,
        request: OfferRequest,
    },
    Start {
        id: u32,
        from: u64,
    },
    Write {
        offset: u64,
        data: Bytes,
    },
    Verified {
        id: u32,
        hash: [u8; 32],
        up_to_date: bool,
        request: SaveRequest,
    },
    Commit,
    Discard {
        id: u32,
    },
    Skipped {
        id: u32,
        kept: bool,
    },
    Finish,
    /// The session is over: let go of the files not verified.
    Release,
}

/// What one [`Op`] did.
// Made once per call and consumed at once: the size does not matter.
#[allow(clippy::large_enum_variant)]
enum Did {
    Prepared {
        id: u32,
        request: OfferRequest,
        decision: Result<Resume, Refusal>,
    },
    Started {
        id: u32,
        from: u64,
    },
    Wrote {
        id: u32,
        len: u64,
    },
    Committed {
        id: u32,
        hash: [u8; 32],
        request: SaveRequest,
        saved: Result<Committed, Refusal>,
    },
    Discarded {
        id: u32,
    },
    Skipped {
        id: u32,
        kept: bool,
    },
    Nothing,
}

impl Disk {
    /// Makes the calls in order (this may block), up to the first failure.
    fn run(&mut self, ops: Vec<Op>) -> (Vec<Did>, Option<io::Error>) {
        let mut did = Vec::with_capacity(ops.len());
        for op in ops {
            if let Err(e) = self.op(op, &mut did) {
                // The session ends on this failure: the files already
                // verified are still made durable and saved, so that
                // nothing verified is lost (a full disk, say, fails a
                // write, yet has room for their names).
                let _ = self.commit(&mut did);
                return (did, Some(e));
            }
        }
        (did, None)
    }

    fn op(&mut self, op: Op, did: &mut Vec<Did>) -> io::Result<()> {
        let done = match op {
            Op::Prepare { id, spec, request } => Did::Prepared {
                id,
                request,
                decision: self.prepare(id, spec),
            },
            Op::Start { id, from } => {
                let mut incoming = self
                    .prepared
                    .remove(&id)
                    .ok_or_else(|| io::Error::other("data for a file that was not accepted"))?;
                incoming
                    .start(from)
                    .map_err(|e| super::cannot("start", &incoming, e))?;
                self.current = Some((id, incoming));
                Did::Started { id, from }
            }
            Op::Write { offset, data } => {
                let (id, incoming) = self.current.as_mut().ok_or_else(no_file)?;
                (incoming.write_at(offset, &data))
                    .map_err(|e| super::cannot("write", incoming, e))?;
                Did::Wrote {
                    id: *id,
                    len: data.len() as u64,
                }
            }
            Op::Verified {
                id,
                hash,
                up_to_date,
                request,
            } => {
                let (_, incoming) = self.current.take().ok_or_else(no_file)?;
                // An up-to-date file goes through the commit too: its
                // content stays, its metadata may need updating.
                debug_assert!(!up_to_date || incoming.is_up_to_date());
                self.group.push(Verified {
                    id,
                    request,
                    hash,
                    incoming,
                });
                Did::Nothing
            }
            Op::Commit => return self.commit(did),
            Op::Discard { id } => {
                if let Some((_, incoming)) = self.current.take() {
                    incoming.discard()?;
                }
                Did::Discarded { id }
            }
            Op::Skipped { id, kept } => {
                self.prepared.remove(&id);
                // The file begun last, given up by the sender: dropped
                // (a named partial file keeps what it holds, to resume).
                if self.current.as_ref().is_some_and(|(c, _)| *c == id) {
                    self.current = None;
                }
                Did::Skipped { id, kept }
            }
            Op::Release => {
                // An unnamed file vanishes; a named partial keeps its bytes
                // for a resume, and its lock goes with its descriptor, so
                // the next session (in this process too) may take it.
                self.prepared.clear();
                self.current = None;
                Did::Nothing
            }
            Op::Finish => {
                self.commit(did)?;
                // Deepest first (they were offered parents first), so a
                // parent made read-only does not bar the way to its children.
                for (path, meta, made) in mem::take(&mut self.dir_times).into_iter().rev() {
                    // Best effort: a directory's metadata is not worth failing for.
                    let mode = made.then_some(meta.mode);
                    let _ = self.store.set_dir_meta(&path, meta.mtime, mode);
                }
                Did::Nothing
            }
        };
        did.push(done);
        Ok(())
    }

    fn prepare(&mut self, id: u32, spec: FileSpec) -> Result<Resume, Refusal> {
        if spec.kind == EntryKind::Directory {
            let made = self.store.make_dir_to_fill(&spec.path, &spec.meta)?;
            if self.dir_times.len() < DIR_TIMES_KEPT {
                self.dir_times.push((spec.path, spec.meta, made));
            }
            return Ok(Resume::Fresh);
        }
        let (incoming, resume) = self.store.prepare(&spec.path, spec.size, spec.meta)?;
        self.prepared.insert(id, incoming);
        Ok(resume)
    }

    /// Makes the group durable together and gives each file its final name.
    fn commit(&mut self, did: &mut Vec<Did>) -> io::Result<()> {
        let group = mem::take(&mut self.group);
        let mut ids = Vec::with_capacity(group.len());
        let mut incomings = Vec::with_capacity(group.len());
        for v in group {
            ids.push((v.id, v.request, v.hash));
            incomings.push(v.incoming);
        }
        let results = Store::commit_reported(incomings);
        for ((id, request, hash), saved) in ids.into_iter().zip(results) {
            did.push(Did::Committed {
                id,
                hash,
                request,
                saved,
            });
        }
        Ok(())
    }
}

fn no_file() -> io::Error {
    io::Error::other("file data with no file begun")
}

impl ReceiverApp {
    /// An app storing into `store`.
    pub fn new(store: Store) -> ReceiverApp {
        ReceiverApp {
            disk: Some(Disk {
                store,
                prepared: BTreeMap::new(),
                current: None,
                group: Vec::new(),
                dir_times: Vec::new(),
            }),
            queued: Vec::new(),
            open: BTreeMap::new(),
            report: Vec::new(),
            listed: REPORT_LISTED,
            totals: Totals::default(),
            progress: Arc::new(Progress::default()),
            group: (0, 0),
            flush: false,
            ended: false,
        }
    }

    /// Lists up to `n` finished entries in [`report`](Self::report)
    /// (default 1000); the rest are only counted.
    pub fn list_up_to(mut self, n: usize) -> Self {
        self.listed = n;
        self
    }

    /// A handle on the progress counters.
    pub fn progress(&self) -> Arc<Progress> {
        self.progress.clone()
    }

    /// Finished entries, in the order they finished (the first
    /// [`list_up_to`](Self::list_up_to) of them), then those still in
    /// flight (all of them once a session was cut: [`Outcome::Pending`]).
    pub fn report(&self) -> Vec<FileReport> {
        let mut report = self.report.clone();
        report.extend(self.open.values().cloned());
        report
    }

    /// Every entry of the session counted by outcome, those still in
    /// flight as unfinished.
    pub fn totals(&self) -> Totals {
        let mut totals = self.totals.clone();
        for f in self.open.values() {
            totals.count(f);
        }
        totals
    }

    /// The report of entry `id`, while it is in flight.
    pub fn in_flight(&self, id: u32) -> Option<&FileReport> {
        self.open.get(&id)
    }

    /// File data bytes written in this session.
    pub fn bytes_written(&self) -> u64 {
        self.totals.bytes_moved
    }

    /// An entry finished: counted, and listed while there is room.
    fn finish(&mut self, id: u32, outcome: Outcome) {
        let Some(mut report) = self.open.remove(&id) else {
            return;
        };
        report.outcome = outcome;
        self.record(report);
    }

    fn record(&mut self, report: FileReport) {
        self.totals.count(&report);
        if self.report.len() < self.listed {
            self.report.push(report);
        }
    }

    fn entry(&mut self, id: u32) -> io::Result<&mut FileReport> {
        self.open
            .get_mut(&id)
            .ok_or_else(|| io::Error::other("no such entry in flight"))
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
                id,
                request,
                decision,
            } => match decision {
                Ok(resume) => {
                    let size = self.entry(id)?.size;
                    self.progress.expect(size);
                    if self.entry(id)?.kind == EntryKind::Directory {
                        self.finish(id, Outcome::Saved { hash: [0; 32] });
                    }
                    let r = m.accept(request, resume);
                    answered(m, r)
                }
                Err(refusal) => {
                    let message = refusal.message.clone().into_bytes();
                    let r = m.reject(request, refusal.reason, message);
                    let (reason, message) = (refusal.reason, refusal.message);
                    self.finish(id, Outcome::Refused { reason, message });
                    answered(m, r)
                }
            },
            Did::Started { id, from } => {
                self.entry(id)?.from = from;
                self.progress.add(from);
                Ok(())
            }
            Did::Wrote { id, len } => {
                if let Ok(e) = self.entry(id) {
                    e.moved += len;
                }
                self.totals.bytes_moved += len;
                self.progress.add(len);
                Ok(())
            }
            Did::Committed {
                id,
                hash,
                request,
                saved,
            } => {
                let (r, outcome, path) = match saved {
                    Ok(Committed::UpToDate(path)) => {
                        (m.saved(request), Outcome::UpToDate { hash }, path)
                    }
                    Ok(Committed::MetadataUpdated(path)) => (
                        m.metadata_updated(request),
                        Outcome::MetadataUpdated { hash },
                        path,
                    ),
                    Ok(Committed::Saved(path)) => (m.saved(request), Outcome::Saved { hash }, path),
                    Err(refusal) => {
                        let r = m.save_failed(request, refusal.reason, refusal.message.clone());
                        let (reason, message) = (refusal.reason, refusal.message);
                        (r, Outcome::Refused { reason, message }, Default::default())
                    }
                };
                if let Ok(e) = self.entry(id) {
                    e.path = (!path.as_os_str().is_empty()).then_some(path);
                }
                self.finish(id, outcome);
                answered(m, r)
            }
            Did::Discarded { id } => {
                self.finish(id, Outcome::Discarded);
                Ok(())
            }
            Did::Skipped { id, kept: true } => {
                let reason = RejectReason::Exists;
                let message =
                    "differs from the file here, which is kept (overwriting is off)".into();
                self.finish(id, Outcome::Refused { reason, message });
                Ok(())
            }
            Did::Skipped { id, kept: false } => {
                let message = "the sender could not read it (it vanished, shrank or is unreadable there) and skipped it".into();
                self.finish(id, Outcome::Unreadable { message });
                Ok(())
            }
            Did::Nothing => Ok(()),
        }
    }

    /// Queues a group commit when the group is full.
    fn note_verified(&mut self, size: u64) {
        self.group.0 += 1;
        self.group.1 += size;
        if self.group.0 >= COMMIT_FILES || self.group.1 >= COMMIT_BYTES {
            self.queue_commit();
        }
    }

    /// Whether all that is queued is writes of less than [`WRITE_GROUP`]
    /// bytes, held back to go to the disk together with what follows.
    fn gathers_writes(&self) -> bool {
        if self.ended {
            return false;
        }
        let mut bytes = 0;
        for op in &self.queued {
            match op {
                Op::Write { data, .. } => bytes += data.len(),
                _ => return false,
            }
        }
        bytes < WRITE_GROUP
    }

    fn queue_commit(&mut self) {
        if self.group.0 > 0 {
            self.queued.push(Op::Commit);
            self.group = (0, 0);
        }
    }
}

impl<M> App<M> for ReceiverApp
where
    M: Machine<Event = ReceiverEvent> + BorrowMut<Receiver> + 'static,
{
    fn on_event(&mut self, _: &mut M, _: Instant, event: ReceiverEvent) -> io::Result<()> {
        let op = match event {
            ReceiverEvent::Offer { id, spec, request } => {
                let report = FileReport::new(spec.path.to_string(), spec.size, None);
                let report = FileReport {
                    kind: spec.kind,
                    ..report
                };
                self.open.insert(id, report);
                Op::Prepare { id, spec, request }
            }
            ReceiverEvent::Refused {
                name,
                size,
                reason,
                message,
                ..
            } => {
                let mut report = FileReport::new(name, size, None);
                report.outcome = Outcome::Refused { reason, message };
                self.record(report);
                return Ok(());
            }
            ReceiverEvent::Start { id, from } => Op::Start { id, from },
            ReceiverEvent::Write { offset, data } => Op::Write { offset, data },
            ReceiverEvent::Hole { len, .. } => {
                self.progress.add(len);
                return Ok(());
            }
            ReceiverEvent::Verified {
                id,
                hash,
                up_to_date,
                request,
            } => {
                let size = self.open.get(&id).map_or(0, |r| r.size);
                self.queued.push(Op::Verified {
                    id,
                    hash,
                    up_to_date,
                    request,
                });
                self.note_verified(size);
                return Ok(());
            }
            ReceiverEvent::Discard { id } => Op::Discard { id },
            ReceiverEvent::Skipped { id, kept } => Op::Skipped { id, kept },
            ReceiverEvent::Flush => {
                // Queued by `poll_work`, after what follows it in this read.
                self.flush = true;
                return Ok(());
            }
            ReceiverEvent::Finished => {
                self.group = (0, 0);
                Op::Finish
            }
        };
        self.queued.push(op);
        Ok(())
    }

    /// The files verified and not yet committed are committed now, even
    /// when the connection was cut or the session failed: their content
    /// checked out, so they are saved (the sender, not told, finds them up
    /// to date next time) rather than lost with the connection.
    fn on_end(&mut self, _result: &Result<(), DriverError>) {
        self.ended = true;
        self.queue_commit();
        self.queued.push(Op::Release);
    }

    /// A `Flush` queues the group commit here, at the end of the calls
    /// asked for so far, unless the last of them decides an offer: then the
    /// machine stopped at an `Offer` that came after the `Flush`, with the
    /// rest of what was read still to take in, so the sender was not
    /// waiting yet; the commit waits for the next call, after the decision,
    /// when the machine has taken in what it holds or stopped at another
    /// offer. So a sender that says `Flush` after every file costs one
    /// group commit per read of its bytes, not one `fsync` per file; no
    /// file is confirmed before its group is durable, and a `Flush` is
    /// acted on before the receiver waits for the peer (the drivers ask
    /// for work after every drain, and an offer decision never waits for
    /// the peer).
    fn poll_work(&mut self) -> Option<Work<Self, M>> {
        if self.flush && !matches!(self.queued.last(), Some(Op::Prepare { .. })) {
            self.flush = false;
            self.queue_commit();
        }
        if self.queued.is_empty() || self.gathers_writes() {
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
