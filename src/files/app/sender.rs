//! The sender's app: reads its entries as the machine asks, off the
//! driver's event loop. A file is opened when the machine first asks for
//! it and closed when it moves on, so a folder of many files needs one
//! descriptor at a time; holes of sparse files are reported as holes,
//! not read.

use std::borrow::BorrowMut;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::{answered, FileReport, Outcome, Progress, Totals};
use crate::codec::MAX_HOLE;
use crate::config::TransferConfig;
use crate::driver::{App, Work};
use crate::files::walk::{walk, Skipped, WalkEntry};
use crate::files::Source;
use crate::machine::Machine;
use crate::xfer::{
    ChunkRequest, FileSpec, PathLimits, PrefixRequest, Sender, SenderEvent, SenderRole,
};

/// The sender's app: reads its entries as the machine asks.
#[derive(Debug)]
pub struct SenderApp {
    /// `None` while a [`Work`] reads.
    reader: Option<Reader>,
    /// The read the machine asked for, until it is handed out as work.
    asked: Option<Read>,
    report: Vec<FileReport>,
    totals: Totals,
    skipped: Vec<Skipped>,
    progress: Arc<Progress>,
}

/// How far a read of a file without holes reaches past the chunk asked
/// for: the machine asks a chunk at a time (256 KiB by default), and the
/// next asks of the same file are answered from what was read ahead,
/// without a read and, on a driver that reads on another thread, without
/// a hand-off to it and back. One `pread` and one hand-off per MiB, not
/// per chunk.
const READ_AHEAD: usize = 1024 * 1024;

/// The entries, and the one file open now.
#[derive(Debug)]
struct Reader {
    entries: Arc<[WalkEntry]>,
    /// The file open now, and whether it may have holes (asked once).
    open: Option<(usize, Source, bool)>,
    /// What was read past the last chunk asked for.
    ahead: Option<Ahead>,
}

/// Bytes of `file` from `offset` on, read ahead of the machine's asks.
#[derive(Debug)]
struct Ahead {
    file: usize,
    offset: u64,
    data: Bytes,
}

impl Reader {
    /// The `len` bytes of `file` at `offset`, if they were all read ahead.
    /// An ask that does not continue what was read ahead lets it go.
    fn take_ahead(&mut self, file: usize, offset: u64, len: usize) -> Option<Bytes> {
        let ahead = self.ahead.take()?;
        if ahead.file != file || ahead.offset != offset || ahead.data.len() < len {
            return None;
        }
        let Ahead { mut data, .. } = ahead;
        let chunk = data.split_to(len);
        if !data.is_empty() {
            self.ahead = Some(Ahead {
                file,
                offset: offset + len as u64,
                data,
            });
        }
        Some(chunk)
    }

    /// Reads the chunk at `offset` of `file` (see [`read_chunk`]), and for
    /// a file without holes up to [`READ_AHEAD`] bytes more of it, kept for
    /// the next asks.
    fn read_and_ahead(&mut self, file: usize, offset: u64, len: usize) -> io::Result<Chunk> {
        self.ahead = None;
        let (source, sparse) = self.source(file)?;
        if sparse {
            return read_chunk(source, sparse, offset, len);
        }
        let listed_rest = source.spec().size.saturating_sub(offset);
        let want = usize::try_from(listed_rest).map_or(READ_AHEAD, |rest| rest.min(READ_AHEAD));
        let mut data = source.read_at(offset, len.max(want))?;
        if data.len() > len {
            let rest = data.split_off(len);
            self.ahead = Some(Ahead {
                file,
                offset: offset + len as u64,
                data: rest,
            });
        }
        Ok(Chunk::Data(data))
    }

    /// The source of entry `file`, opened if it is not the one open.
    fn source(&mut self, file: usize) -> io::Result<(&Source, bool)> {
        if self.open.as_ref().map(|(f, ..)| *f) != Some(file) {
            self.open = None;
            let entry = self
                .entries
                .get(file)
                .ok_or_else(|| io::Error::other("the machine named an unknown file"))?;
            let source = Source::open_entry(&entry.local, entry.spec.clone(), entry.dev_ino)?;
            let sparse = source.may_have_holes();
            self.open = Some((file, source, sparse));
        }
        match &self.open {
            Some((_, source, sparse)) => Ok((source, *sparse)),
            None => Err(io::Error::other("no file open")),
        }
    }
}

/// A read the machine asked for, with the request it answers.
#[derive(Debug)]
enum Read {
    Prefix {
        file: usize,
        len: u64,
        request: PrefixRequest,
    },
    Chunk {
        file: usize,
        offset: u64,
        len: usize,
        request: ChunkRequest,
    },
}

/// What a chunk read found at its offset.
enum Chunk {
    Data(Bytes),
    Hole(u64),
}

/// What a [`Read`] gave.
// Made once per read and consumed at once: the size does not matter.
#[allow(clippy::large_enum_variant)]
enum Got {
    Prefix {
        file: usize,
        request: PrefixRequest,
        hashed: io::Result<(blake3::Hasher, u64)>,
    },
    Chunk {
        file: usize,
        request: ChunkRequest,
        chunk: io::Result<Chunk>,
    },
}

impl Read {
    /// Reads (this may block).
    fn run(self, reader: &mut Reader) -> Got {
        match self {
            Read::Prefix { file, len, request } => Got::Prefix {
                file,
                request,
                hashed: reader.source(file).and_then(|(s, _)| s.hash_prefix(len)),
            },
            Read::Chunk {
                file,
                offset,
                len,
                request,
            } => Got::Chunk {
                file,
                request,
                chunk: reader.read_and_ahead(file, offset, len),
            },
        }
    }
}

/// Reads the data at `offset`, at most `len` bytes and no further than the
/// data run it is in; or, at a hole, how long the hole is.
fn read_chunk(source: &Source, sparse: bool, offset: u64, len: usize) -> io::Result<Chunk> {
    if !sparse {
        return source.read_at(offset, len).map(Chunk::Data);
    }
    let data = source.next_data(offset)?;
    if data > offset {
        return Ok(Chunk::Hole((data - offset).min(MAX_HOLE)));
    }
    let end = source.data_end(offset)?;
    let run = usize::try_from(end.saturating_sub(offset)).unwrap_or(usize::MAX);
    source.read_at(offset, len.min(run.max(1))).map(Chunk::Data)
}

impl SenderApp {
    /// Lists every path (a directory with everything under it, each root
    /// offered under its own name) within `limits`. Symbolic links and
    /// special files are skipped, never followed; see
    /// [`skipped`](Self::skipped).
    pub fn open(paths: &[impl AsRef<Path>], limits: &PathLimits) -> io::Result<SenderApp> {
        let roots: Vec<PathBuf> = paths.iter().map(|p| p.as_ref().to_path_buf()).collect();
        let listed = walk(&roots, limits)?;
        let mut app = SenderApp::with_entries(listed.entries);
        app.skipped = listed.skipped;
        Ok(app)
    }

    /// An app over already listed entries.
    pub fn with_entries(entries: Vec<WalkEntry>) -> SenderApp {
        let report = entries
            .iter()
            .map(|e| {
                let mut r =
                    FileReport::new(e.spec.path.to_string(), e.spec.size, Some(e.local.clone()));
                r.kind = e.spec.kind;
                r
            })
            .collect();
        let progress = Arc::new(Progress::default());
        progress.expect(entries.iter().map(|e| e.spec.size).sum());
        SenderApp {
            reader: Some(Reader {
                entries: entries.into(),
                open: None,
                ahead: None,
            }),
            asked: None,
            report,
            totals: Totals::default(),
            skipped: Vec::new(),
            progress,
        }
    }

    /// The role that offers these entries, in order, within `config`.
    pub fn role(&self, config: TransferConfig) -> SenderRole {
        SenderRole::new(self.specs(), config)
    }

    /// The entries as offered.
    pub fn specs(&self) -> Vec<FileSpec> {
        let entries = self
            .reader
            .as_ref()
            .map(|r| &r.entries[..])
            .unwrap_or_default();
        entries.iter().map(|e| e.spec.clone()).collect()
    }

    /// Files listed that are hard links to a file listed before them
    /// (same device and inode): each is sent as a separate copy, and
    /// arrives as one (hard links are not kept).
    pub fn hard_links(&self) -> usize {
        let Some(reader) = &self.reader else { return 0 };
        let mut seen = std::collections::HashSet::new();
        reader
            .entries
            .iter()
            .filter(|e| e.spec.kind == crate::xfer::EntryKind::File)
            .filter(|e| !seen.insert(e.dev_ino))
            .count()
    }

    /// What the listing skipped (symbolic links, special files, names
    /// that cannot be offered), each with its reason.
    pub fn skipped(&self) -> &[Skipped] {
        &self.skipped
    }

    /// A handle on the progress counters.
    pub fn progress(&self) -> Arc<Progress> {
        self.progress.clone()
    }

    /// Per-entry outcome, in offer order.
    pub fn report(&self) -> &[FileReport] {
        &self.report
    }

    /// Every entry counted by outcome (entries not finished included).
    pub fn totals(&self) -> Totals {
        let mut totals = Totals::default();
        for f in &self.report {
            totals.count(f);
        }
        totals.bytes_moved = self.totals.bytes_moved;
        totals
    }

    /// File data bytes sent in this session.
    pub fn bytes_sent(&self) -> u64 {
        self.totals.bytes_moved
    }

    /// Answers the machine with what a read gave. A file that cannot be
    /// read (gone, shrunk, unreadable) is skipped with its reason, and the
    /// session goes on with the next one.
    fn answer(&mut self, m: &mut Sender, got: Got) -> io::Result<()> {
        match got {
            Got::Prefix {
                file,
                request,
                hashed,
            } => match hashed {
                Ok((hasher, n)) => {
                    let r = m.prefix_hashed(request, hasher, n);
                    answered(m, r)
                }
                Err(e) => {
                    self.unreadable(file, &e);
                    let r = m.prefix_unreadable(request);
                    answered(m, r)
                }
            },
            Got::Chunk {
                file,
                request,
                chunk,
            } => {
                let chunk = chunk.and_then(|c| match c {
                    Chunk::Data(d) if d.is_empty() => Err(self.shrunk(file)),
                    c => Ok(c),
                });
                let chunk = match chunk {
                    Ok(chunk) => chunk,
                    Err(e) => {
                        self.unreadable(file, &e);
                        let r = m.unreadable(request);
                        return answered(m, r);
                    }
                };
                let (r, moved, done) = match chunk {
                    Chunk::Data(chunk) => {
                        let n = chunk.len() as u64;
                        (m.push_chunk(request, chunk), n, n)
                    }
                    Chunk::Hole(len) => (m.push_hole(request, len), 0, len),
                };
                if r.is_ok() {
                    self.report[file].moved += moved;
                    self.totals.bytes_moved += moved;
                    self.progress.add(done);
                }
                answered(m, r)
            }
        }
    }

    /// Records that `file` could not be read, and why.
    fn unreadable(&mut self, file: usize, e: &io::Error) {
        let message = crate::error::io_text(e);
        self.give_up(file, Outcome::Unreadable { message });
    }

    /// `file` will not be delivered: its `outcome`, and the rest of it
    /// counts as done for the progress bar.
    fn give_up(&mut self, file: usize, outcome: Outcome) {
        if let Some(report) = self.report.get_mut(file) {
            let left = report.size.saturating_sub(report.from + report.moved);
            self.progress.add(left);
            report.outcome = outcome;
        }
    }

    /// The error for `file`, which ended before its listed size.
    fn shrunk(&self, file: usize) -> io::Error {
        let (name, size) = self
            .report
            .get(file)
            .map_or((String::new(), 0), |r| (r.name.clone(), r.size));
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("{name}: shrank below the {size} bytes it had when it was listed"),
        )
    }
}

impl<M> App<M> for SenderApp
where
    M: Machine<Event = SenderEvent> + BorrowMut<Sender> + 'static,
{
    fn on_event(&mut self, m: &mut M, _: Instant, event: SenderEvent) -> io::Result<()> {
        match event {
            SenderEvent::HashPrefix { file, len, request } => {
                self.asked = Some(Read::Prefix { file, len, request });
            }
            SenderEvent::Read {
                file,
                offset,
                len,
                request,
            } => {
                let ahead = self.reader.as_mut();
                if let Some(data) = ahead.and_then(|r| r.take_ahead(file, offset, len)) {
                    // Read already: answered now, with no work.
                    let chunk = Ok(Chunk::Data(data));
                    let got = Got::Chunk {
                        file,
                        request,
                        chunk,
                    };
                    return self.answer(m.borrow_mut(), got);
                }
                self.asked = Some(Read::Chunk {
                    file,
                    offset,
                    len,
                    request,
                });
            }
            SenderEvent::Started { file, from } => {
                self.report[file].from = from;
                self.progress.add(from);
            }
            SenderEvent::Delivered {
                file,
                hash,
                up_to_date,
                metadata_updated,
            } => {
                self.report[file].outcome = match (up_to_date, metadata_updated) {
                    (true, true) => Outcome::MetadataUpdated { hash },
                    (true, false) => Outcome::UpToDate { hash },
                    (false, _) => Outcome::Saved { hash },
                };
            }
            SenderEvent::Ended { file } => self.report[file].outcome = Outcome::Unconfirmed,
            SenderEvent::Rejected {
                file,
                reason,
                message,
            } => {
                self.give_up(file, Outcome::Refused { reason, message });
            }
        }
        Ok(())
    }

    fn poll_work(&mut self) -> Option<Work<Self, M>> {
        // The machine asks one read at a time, so the reader is here.
        let mut reader = self.reader.take()?;
        let Some(read) = self.asked.take() else {
            self.reader = Some(reader);
            return None;
        };
        Some(Work::new(move || {
            let got = read.run(&mut reader);
            move |app: &mut SenderApp, m: &mut M, _| {
                app.reader = Some(reader);
                app.answer(m.borrow_mut(), got)
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::walk::walk;

    const KIB: usize = 1024;

    /// A reader over one file of `len` patterned bytes, and the bytes.
    fn reader_over(dir: &Path, len: usize) -> (Reader, Vec<u8>) {
        let bytes: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(dir.join("f"), &bytes).unwrap();
        let listed = walk(&[dir.join("f")], &TransferConfig::default().path_limits()).unwrap();
        let reader = Reader {
            entries: listed.entries.into(),
            open: None,
            ahead: None,
        };
        (reader, bytes)
    }

    #[test]
    fn the_chunks_after_a_read_come_from_what_it_read_ahead_and_match_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut reader, bytes) = reader_over(tmp.path(), 3 * READ_AHEAD + 100);
        let chunk = 256 * KIB;
        let Ok(Chunk::Data(first)) = reader.read_and_ahead(0, 0, chunk) else {
            panic!("a file without holes reads as data");
        };
        assert_eq!(&first[..], &bytes[..chunk]);
        // A MiB was read: the next three chunks are there, the fourth is not.
        for k in 1..4 {
            let at = k * chunk;
            let got = reader.take_ahead(0, at as u64, chunk).expect("read ahead");
            assert_eq!(&got[..], &bytes[at..at + chunk], "chunk {k}");
        }
        assert!(reader.take_ahead(0, READ_AHEAD as u64, chunk).is_none());
        // Near the end, no read reaches past the listed size.
        let tail = 3 * READ_AHEAD - chunk;
        let Ok(Chunk::Data(got)) = reader.read_and_ahead(0, tail as u64, chunk) else {
            panic!("data");
        };
        assert_eq!(&got[..], &bytes[tail..tail + chunk]);
        let last = reader.ahead.as_ref().map(|a| a.data.len());
        assert_eq!(last, Some(100), "read ahead up to the listed size only");
    }

    #[test]
    fn an_ask_that_does_not_continue_what_was_read_ahead_lets_it_go() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut reader, _) = reader_over(tmp.path(), 2 * READ_AHEAD);
        let chunk = 256 * KIB;
        reader.read_and_ahead(0, 0, chunk).unwrap();
        // A resumed or repeated ask elsewhere in the file: a read, afresh.
        assert!(reader.take_ahead(0, 0, chunk).is_none());
        assert!(reader.ahead.is_none(), "what was read ahead is dropped");
        reader.read_and_ahead(0, 0, chunk).unwrap();
        // A longer chunk than what is left ahead is not answered in part.
        assert!(reader.take_ahead(0, chunk as u64, READ_AHEAD).is_none());
        reader.read_and_ahead(0, 0, chunk).unwrap();
        assert!(
            reader.take_ahead(1, chunk as u64, chunk).is_none(),
            "another file"
        );
    }
}
