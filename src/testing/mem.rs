//! In-memory file-transfer apps: a `HashMap`-like "disk" for the receiver
//! and in-memory sources for the sender, answering the machines' events as
//! the real file layer would. Used by the property tests and the fuzz
//! harnesses. Pure: memory only.

use std::borrow::BorrowMut;
use std::collections::BTreeMap;
use std::io;
use std::time::Instant;

use bytes::Bytes;

use crate::codec::RejectReason;
use crate::driver::App;
use crate::machine::Machine;
use crate::session::{Framed, Role};
use crate::xfer::{
    FileSpec, Receiver, ReceiverEvent, Resume, SafeName, Sender, SenderEvent, SenderRole,
};

/// A receiver's directory, in memory: final files and partial files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemDisk {
    /// Files under their final names.
    pub files: BTreeMap<String, Vec<u8>>,
    /// Partial files, by the final name they are for.
    pub partials: BTreeMap<String, Vec<u8>>,
}

/// The receiver's app over a [`MemDisk`]. It also checks what the machine
/// asks of it: every write and save is for the name it accepted.
#[derive(Debug, Default)]
pub struct MemReceiver {
    /// The directory.
    pub disk: MemDisk,
    /// Whether an existing final file may be replaced.
    pub overwrite: bool,
    /// The name accepted last, which every write must belong to.
    pub accepted: Option<SafeName>,
    /// Every offer the machine asked a decision for: name and size.
    pub offers: Vec<(String, u64)>,
    /// Offers the machine refused on its own.
    pub refused: Vec<(String, RejectReason)>,
    /// Names saved, in order.
    pub saved: Vec<String>,
    /// Names discarded after a hash mismatch.
    pub discarded: Vec<String>,
    /// File data bytes written.
    pub written: u64,
    /// Largest single write.
    pub largest_write: usize,
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

    fn partial(&mut self) -> io::Result<(&str, &mut Vec<u8>)> {
        let name = self
            .accepted
            .as_ref()
            .ok_or_else(|| io::Error::other("write with no accepted file"))?;
        let data = self.disk.partials.entry(name.to_string()).or_default();
        Ok((name.as_str(), data))
    }
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

fn same_name(accepted: &Option<SafeName>, name: &SafeName) -> io::Result<()> {
    if accepted.as_ref() == Some(name) {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "machine named {name}, but {accepted:?} was accepted"
        )))
    }
}

/// Works on a [`Receiver`] and on anything that wraps one (`Secure<Receiver>`).
impl<Mach: Machine<Event = ReceiverEvent> + BorrowMut<Receiver>> App<Mach> for MemReceiver {
    fn on_event(&mut self, m: &mut Mach, _: Instant, event: ReceiverEvent) -> io::Result<()> {
        let m: &mut Receiver = m.borrow_mut();
        match event {
            ReceiverEvent::Offer {
                name,
                size,
                request,
            } => {
                self.offers.push((name.to_string(), size));
                if self.disk.files.contains_key(name.as_str()) && !self.overwrite {
                    self.accepted = None;
                    let r = m.reject(request, RejectReason::Exists, "exists");
                    return answered(m, r);
                }
                let held = self.disk.partials.entry(name.to_string()).or_default();
                if held.len() as u64 > size {
                    held.clear();
                }
                let resume = if held.is_empty() {
                    Resume::Fresh
                } else {
                    let mut hasher = blake3::Hasher::new();
                    hasher.update(held);
                    let have = held.len() as u64;
                    Resume::From { have, hasher }
                };
                self.accepted = Some(name);
                let r = m.accept(request, resume);
                answered(m, r)
            }
            ReceiverEvent::Refused { name, reason, .. } => {
                self.refused.push((name, reason));
                Ok(())
            }
            ReceiverEvent::Start { name, from } => {
                same_name(&self.accepted, &name)?;
                let (_, data) = self.partial()?;
                if from > data.len() as u64 {
                    return Err(io::Error::other("start beyond the partial file"));
                }
                data.truncate(from as usize);
                Ok(())
            }
            ReceiverEvent::Write { offset, data } => {
                let (_, held) = self.partial()?;
                if offset != held.len() as u64 {
                    return Err(io::Error::other("write is not sequential"));
                }
                held.extend_from_slice(&data);
                self.written += data.len() as u64;
                self.largest_write = self.largest_write.max(data.len());
                Ok(())
            }
            ReceiverEvent::Verified {
                name,
                hash,
                request,
            } => {
                same_name(&self.accepted, &name)?;
                let data = self.disk.partials.remove(name.as_str()).unwrap_or_default();
                if *blake3::hash(&data).as_bytes() != hash {
                    return Err(io::Error::other("verified content differs on disk"));
                }
                self.disk.files.insert(name.to_string(), data);
                self.saved.push(name.to_string());
                self.accepted = None;
                let r = m.saved(request);
                answered(m, r)
            }
            ReceiverEvent::Discard { name } => {
                same_name(&self.accepted, &name)?;
                self.disk.partials.remove(name.as_str());
                self.discarded.push(name.to_string());
                self.accepted = None;
                Ok(())
            }
            ReceiverEvent::Finished => Ok(()),
        }
    }
}

/// The sender's app over in-memory files: it answers reads with slices of
/// the content (no copy) and records what happened to each file.
#[derive(Debug, Default)]
pub struct MemSender {
    /// The files: name and content.
    pub files: Vec<(SafeName, Bytes)>,
    /// File data bytes handed to the machine.
    pub pushed: u64,
    /// Where each started file began (0 or a resume offset), in order.
    pub started: Vec<(usize, u64)>,
    /// Files confirmed saved, with their hash.
    pub delivered: Vec<(usize, [u8; 32])>,
    /// Files refused, with the reason.
    pub rejected: Vec<(usize, RejectReason)>,
}

impl MemSender {
    /// A sender app for `files`; names must be valid (see [`SafeName`]).
    pub fn new(files: impl IntoIterator<Item = (SafeName, Bytes)>) -> Self {
        MemSender {
            files: files.into_iter().collect(),
            ..MemSender::default()
        }
    }

    /// The role that offers these files, within `config`.
    pub fn role(&self, config: crate::config::TransferConfig) -> SenderRole {
        let specs = self.files.iter().map(|(name, content)| FileSpec::file(name.clone(), content.len() as u64));
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
                self.pushed += chunk.len() as u64;
                let r = m.push_chunk(request, chunk);
                answered(m, r)
            }
            SenderEvent::Delivered { file, hash } => {
                self.delivered.push((file, hash));
                Ok(())
            }
            SenderEvent::Rejected { file, reason, .. } => {
                self.rejected.push((file, reason));
                Ok(())
            }
        }
    }
}
