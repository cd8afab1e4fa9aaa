//! In-memory file-transfer apps: a `HashMap`-like "disk" for the receiver
//! and in-memory sources for the sender, answering the machines' events as
//! the real file layer would. Used by the property tests and the fuzz
//! harnesses. Pure: memory only.

use std::borrow::BorrowMut;
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::time::Instant;

use bytes::Bytes;

use crate::codec::RejectReason;
use crate::driver::App;
use crate::machine::Machine;
use crate::session::{Framed, Role};
use crate::xfer::{
    EntryKind, FileSpec, Meta, Receiver, ReceiverEvent, Resume, SafeName, SaveRequest, Sender,
    SenderEvent, SenderRole,
};

/// A receiver's directory, in memory: final files and partial files, by
/// path (components joined with `/`), and directories made.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemDisk {
    /// Files under their final names.
    pub files: BTreeMap<String, Vec<u8>>,
    /// Partial files, by the final name they are for.
    pub partials: BTreeMap<String, Vec<u8>>,
    /// Directories made.
    pub dirs: BTreeSet<String>,
    /// Each saved file's permission bits and modification time.
    pub meta: BTreeMap<String, Meta>,
}

/// The receiver's app over a [`MemDisk`]. It also checks what the machine
/// asks of it: every write and save is for a file it accepted, in order.
#[derive(Debug, Default)]
pub struct MemReceiver {
    /// The directory.
    pub disk: MemDisk,
    /// Whether an existing final file may be replaced.
    pub overwrite: bool,
    /// Holds save requests until the sender's `Flush` (or the end), as a
    /// group commit would, instead of answering each at once.
    pub defer_saves: bool,
    /// Accepted files by id, until saved or dropped.
    pub accepted: BTreeMap<u32, MemAccepted>,
    /// The file whose data is arriving.
    pub current: Option<u32>,
    /// Every offer the machine asked a decision for: path and size.
    pub offers: Vec<(String, u64)>,
    /// Offers the machine refused on its own.
    pub refused: Vec<(String, RejectReason)>,
    /// Paths saved, in order.
    pub saved: Vec<String>,
    /// Paths found up to date.
    pub up_to_date: Vec<String>,
    /// Paths the sender skipped (different, not replaceable).
    pub skipped: Vec<String>,
    /// Paths discarded after a hash mismatch.
    pub discarded: Vec<String>,
    /// File data bytes written.
    pub written: u64,
    /// Largest single write.
    pub largest_write: usize,
    /// Most save requests held at once.
    pub most_deferred: usize,
    deferred: Vec<SaveRequest>,
}

impl MemReceiver {
    /// An app over `disk`.
    pub fn new(disk: MemDisk, overwrite: bool) -> Self {
        MemReceiver {
            disk,
            overwrite,
            ..MemReceiver::default()
        }
    }

    fn current_path(&self) -> io::Result<String> {
        let id = self
            .current
            .ok_or_else(|| io::Error::other("data with no file begun"))?;
        let accepted = self
            .accepted
            .get(&id)
            .ok_or_else(|| io::Error::other("data for a file not accepted"))?;
        Ok(accepted.path.clone())
    }

    fn partial(&mut self) -> io::Result<&mut Vec<u8>> {
        let path = self.current_path()?;
        Ok(self.disk.partials.entry(path).or_default())
    }

    /// The decision on a file offer, as the real store makes it.
    fn decide(&mut self, path: &str, size: u64) -> Result<(Resume, bool), RejectReason> {
        if self.disk.dirs.contains(path) {
            return Err(RejectReason::IsADirectory);
        }
        if let Some(existing) = self.disk.files.get(path) {
            if existing.len() as u64 == size {
                let mut hasher = blake3::Hasher::new();
                hasher.update(existing);
                let replace = self.overwrite;
                return Ok((Resume::Complete { hasher, replace }, true));
            }
            if !self.overwrite {
                return Err(RejectReason::Exists);
            }
        }
        let held = self.disk.partials.entry(path.to_string()).or_default();
        if held.len() as u64 > size {
            held.clear();
        }
        if held.is_empty() {
            return Ok((Resume::Fresh, false));
        }
        let mut hasher = blake3::Hasher::new();
        hasher.update(held);
        let have = held.len() as u64;
        Ok((Resume::From { have, hasher }, false))
    }

    fn on_offer(
        &mut self,
        m: &mut Receiver,
        id: u32,
        spec: FileSpec,
        request: crate::xfer::OfferRequest,
    ) -> io::Result<()> {
        let path = spec.path.to_string();
        self.offers.push((path.clone(), spec.size));
        if spec.kind == EntryKind::Directory {
            if self.disk.files.contains_key(&path) {
                let r = m.reject(request, RejectReason::NotADirectory, "a file has that name");
                return answered(m, r);
            }
            self.disk.dirs.insert(path);
            let r = m.accept(request, Resume::Fresh);
            return answered(m, r);
        }
        if self.accepted.values().any(|a| a.path == path) {
            // As the real store's lock does: one transfer of a name at a time.
            let r = m.reject(request, RejectReason::Busy, "in transfer");
            return answered(m, r);
        }
        match self.decide(&path, spec.size) {
            Ok((resume, complete)) => {
                let accepted = MemAccepted {
                    path,
                    size: spec.size,
                    meta: spec.meta,
                    complete,
                };
                self.accepted.insert(id, accepted);
                let r = m.accept(request, resume);
                answered(m, r)
            }
            Err(reason) => {
                let r = m.reject(request, reason, "refused");
                answered(m, r)
            }
        }
    }

    fn on_verified(
        &mut self,
        m: &mut Receiver,
        id: u32,
        hash: [u8; 32],
        up_to_date: bool,
        request: SaveRequest,
    ) -> io::Result<()> {
        if self.current != Some(id) {
            return Err(io::Error::other("verified a file that was not begun"));
        }
        self.current = None;
        let MemAccepted { path, meta, .. } = self
            .accepted
            .remove(&id)
            .ok_or_else(|| io::Error::other("verified a file not accepted"))?;
        if up_to_date {
            let same = self
                .disk
                .files
                .get(&path)
                .is_some_and(|d| *blake3::hash(d).as_bytes() == hash);
            if !same {
                return Err(io::Error::other("up to date, but the file here differs"));
            }
            self.up_to_date.push(path);
        } else {
            let data = self.disk.partials.remove(&path).unwrap_or_default();
            if *blake3::hash(&data).as_bytes() != hash {
                return Err(io::Error::other("verified content differs on disk"));
            }
            self.disk.files.insert(path.clone(), data);
            self.disk.meta.insert(path.clone(), meta);
            self.saved.push(path);
        }
        if self.defer_saves {
            self.deferred.push(request);
            self.most_deferred = self.most_deferred.max(self.deferred.len());
            return Ok(());
        }
        let r = m.saved(request);
        answered(m, r)
    }

    fn answer_deferred(&mut self, m: &mut Receiver) -> io::Result<()> {
        for request in std::mem::take(&mut self.deferred) {
            let r = m.saved(request);
            answered(m, r)?;
        }
        Ok(())
    }
}

/// A file a [`MemReceiver`] accepted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemAccepted {
    /// Where it goes.
    pub path: String,
    /// Its offered size.
    pub size: u64,
    /// Its offered metadata.
    pub meta: Meta,
    /// A complete file under the final name was offered as the resume point.
    pub complete: bool,
}

/// An answer to the machine went wrong. If the session itself has failed
/// (the peer broke the protocol after the event was emitted), the machine's
/// sticky error will end the session: nothing to add. A refused command on
/// a live session is the app's bug.
fn other(e: crate::Error) -> io::Error {
    io::Error::other(e)
}

fn answered<R: Role>(m: &Framed<R>, result: Result<(), crate::Error>) -> io::Result<()> {
    match result {
        Err(e) if !m.is_closed() => Err(other(e)),
        _ => Ok(()),
    }
}

/// Works on a [`Receiver`] and on anything that wraps one (`Secure<Receiver>`).
impl<Mach: Machine<Event = ReceiverEvent> + BorrowMut<Receiver>> App<Mach> for MemReceiver {
    fn on_event(&mut self, m: &mut Mach, _: Instant, event: ReceiverEvent) -> io::Result<()> {
        let m: &mut Receiver = m.borrow_mut();
        match event {
            ReceiverEvent::Offer { id, spec, request } => self.on_offer(m, id, spec, request),
            ReceiverEvent::Refused { name, reason, .. } => {
                self.refused.push((name, reason));
                Ok(())
            }
            ReceiverEvent::Start { id, from } => {
                if self.current.is_some() {
                    return Err(io::Error::other("a file begun before the last one ended"));
                }
                self.current = Some(id);
                let MemAccepted { path, complete, .. } = self
                    .accepted
                    .get(&id)
                    .ok_or_else(|| io::Error::other("start of a file not accepted"))?
                    .clone();
                let size = self.disk.files.get(&path).map(Vec::len);
                if complete && Some(from as usize) == size {
                    return Ok(());
                }
                let data = self.partial()?;
                if from > data.len() as u64 {
                    return Err(io::Error::other("start beyond the partial file"));
                }
                data.truncate(from as usize);
                Ok(())
            }
            ReceiverEvent::Write { offset, data } => {
                let held = self.partial()?;
                if offset != held.len() as u64 {
                    return Err(io::Error::other("write is not sequential"));
                }
                held.extend_from_slice(&data);
                self.written += data.len() as u64;
                self.largest_write = self.largest_write.max(data.len());
                Ok(())
            }
            ReceiverEvent::Hole { offset, len } => {
                let held = self.partial()?;
                if offset != held.len() as u64 {
                    return Err(io::Error::other("hole is not sequential"));
                }
                held.resize(held.len() + len as usize, 0);
                Ok(())
            }
            ReceiverEvent::Verified {
                id,
                hash,
                up_to_date,
                request,
            } => self.on_verified(m, id, hash, up_to_date, request),
            ReceiverEvent::Discard { id } => {
                self.current = None;
                let path = self.accepted.remove(&id).unwrap_or_default().path;
                self.disk.partials.remove(&path);
                self.discarded.push(path);
                Ok(())
            }
            ReceiverEvent::Skipped { id, .. } => {
                let path = self.accepted.remove(&id).unwrap_or_default().path;
                self.skipped.push(path);
                Ok(())
            }
            ReceiverEvent::Flush | ReceiverEvent::Finished => self.answer_deferred(m),
        }
    }
}

/// The sender's app over in-memory files: it answers reads with slices of
/// the content (no copy) and records what happened to each file.
#[derive(Debug, Default)]
pub struct MemSender {
    /// The entries: what is offered, and the content.
    pub files: Vec<(FileSpec, Bytes)>,
    /// File data bytes handed to the machine.
    pub pushed: u64,
    /// Where each started file began (0 or a resume offset), in order.
    pub started: Vec<(usize, u64)>,
    /// Files confirmed saved (or up to date), with their hash.
    pub delivered: Vec<(usize, [u8; 32])>,
    /// Files confirmed up to date (also in `delivered`).
    pub up_to_date: Vec<usize>,
    /// Reports runs of zeros of at least this many bytes as holes.
    pub holes_from: Option<usize>,
    /// Files refused, with the reason.
    pub rejected: Vec<(usize, RejectReason)>,
}

impl MemSender {
    /// A sender app for `files`, each offered at the top of the
    /// receiver's directory; names must be valid (see [`SafeName`]).
    pub fn new(files: impl IntoIterator<Item = (SafeName, Bytes)>) -> Self {
        let files = files.into_iter();
        Self::entries(files.map(|(name, c)| (FileSpec::file(name, c.len() as u64), c)))
    }

    /// A sender app for any entries (a directory's content is ignored).
    pub fn entries(entries: impl IntoIterator<Item = (FileSpec, Bytes)>) -> Self {
        MemSender {
            files: entries.into_iter().collect(),
            ..MemSender::default()
        }
    }

    /// The role that offers these files, within `config`.
    pub fn role(&self, config: crate::config::TransferConfig) -> SenderRole {
        let specs = self.files.iter().map(|(spec, _)| spec.clone());
        SenderRole::new(specs.collect(), config)
    }

    fn content(&self, file: usize) -> io::Result<&Bytes> {
        self.files
            .get(file)
            .map(|(_, c)| c)
            .ok_or_else(|| io::Error::other("no such file"))
    }
}

/// Works on a [`Sender`] and on anything that wraps one (`Secure<Sender>`).
impl<Mach: Machine<Event = SenderEvent> + BorrowMut<Sender>> App<Mach> for MemSender {
    fn on_event(&mut self, m: &mut Mach, _: Instant, event: SenderEvent) -> io::Result<()> {
        let m: &mut Sender = m.borrow_mut();
        match event {
            SenderEvent::HashPrefix { file, len, request } => {
                let content = self.content(file)?;
                let n = content
                    .len()
                    .min(usize::try_from(len).unwrap_or(usize::MAX));
                let mut hasher = blake3::Hasher::new();
                hasher.update(&content[..n]);
                let r = m.prefix_hashed(request, hasher, n as u64);
                answered(m, r)
            }
            SenderEvent::Started { file, from } => {
                self.started.push((file, from));
                Ok(())
            }
            SenderEvent::Read {
                file,
                offset,
                len,
                request,
            } => {
                let content = self.content(file)?;
                let start = usize::try_from(offset)
                    .unwrap_or(usize::MAX)
                    .min(content.len());
                let end = start.saturating_add(len).min(content.len());
                let chunk = content.slice(start..end);
                if let Some(hole) = self.holes_from.and_then(|min| zeros_at(&chunk, min)) {
                    let r = m.push_hole(request, hole as u64);
                    return answered(m, r);
                }
                self.pushed += chunk.len() as u64;
                let r = m.push_chunk(request, chunk);
                answered(m, r)
            }
            SenderEvent::Delivered {
                file,
                hash,
                up_to_date,
                ..
            } => {
                self.delivered.push((file, hash));
                if up_to_date {
                    self.up_to_date.push(file);
                }
                Ok(())
            }
            SenderEvent::Rejected { file, reason, .. } => {
                self.rejected.push((file, reason));
                Ok(())
            }
            SenderEvent::Ended { .. } => Ok(()),
        }
    }
}

/// The length of the run of zeros `chunk` starts with, if it is at least `min`.
fn zeros_at(chunk: &[u8], min: usize) -> Option<usize> {
    let run = chunk.iter().take_while(|&&b| b == 0).count();
    (run >= min.max(1)).then_some(run)
}

/// The `Offer` of entry `id`: a file named `name` (raw bytes, unchecked:
/// a hostile one is the receiver's to refuse) of `size` bytes at the top
/// of the receiver's directory, mode 0644, modification time 0. For tests
/// that write a peer's frames by hand.
pub fn file_offer(id: u32, name: &[u8], size: u64) -> crate::codec::Frame {
    crate::codec::Frame::Offer {
        id,
        kind: EntryKind::File.to_byte(),
        mode: 0o644,
        mtime_secs: 0,
        mtime_nanos: 0,
        size,
        path: crate::xfer::encode_raw_path(&[name]),
    }
}
