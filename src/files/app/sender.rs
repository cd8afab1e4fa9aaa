//! The sender's app: reads its sources as the machine asks, off the
//! driver's event loop.

use std::borrow::BorrowMut;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::{answered, FileReport, Outcome, Progress};
use crate::config::TransferConfig;
use crate::driver::{App, Work};
use crate::files::Source;
use crate::machine::Machine;
use crate::xfer::{ChunkRequest, PrefixRequest, Sender, SenderEvent, SenderRole};

/// The sender's app: reads its [`Source`]s as the machine asks.
#[derive(Debug)]
pub struct SenderApp {
    /// `None` while a [`Work`] reads them.
    sources: Option<Vec<Source>>,
    /// The read the machine asked for, until it is handed out as work.
    asked: Option<Read>,
    report: Vec<FileReport>,
    progress: Arc<Progress>,
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

/// What a [`Read`] gave.
// Made once per read and consumed at once: the size does not matter.
#[allow(clippy::large_enum_variant)]
enum Got {
    Prefix {
        request: PrefixRequest,
        hashed: io::Result<(blake3::Hasher, u64)>,
    },
    Chunk {
        file: usize,
        request: ChunkRequest,
        chunk: io::Result<Bytes>,
    },
}

impl Read {
    /// Reads (this may block).
    fn run(self, sources: &[Source]) -> Got {
        let source = |file: usize| {
            sources
                .get(file)
                .ok_or_else(|| io::Error::other("the machine named an unknown file"))
        };
        match self {
            Read::Prefix { file, len, request } => Got::Prefix {
                request,
                hashed: source(file).and_then(|s| s.hash_prefix(len)),
            },
            Read::Chunk {
                file,
                offset,
                len,
                request,
            } => Got::Chunk {
                file,
                request,
                chunk: source(file).and_then(|s| s.read_at(offset, len)),
            },
        }
    }
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
                FileReport::new(spec.path.to_string(), spec.size, path)
            })
            .collect();
        let progress = Arc::new(Progress::default());
        progress.expect(sources.iter().map(|s| s.spec().size).sum());
        SenderApp {
            sources: Some(sources),
            asked: None,
            report,
            progress,
        }
    }

    /// The role that offers these files, in order, within `config`.
    pub fn role(&self, config: TransferConfig) -> SenderRole {
        let sources = self.sources.as_deref().unwrap_or_default();
        SenderRole::new(sources.iter().map(|s| s.spec().clone()).collect(), config)
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

    /// Answers the machine with what a read gave.
    fn answer(&mut self, m: &mut Sender, got: Got) -> io::Result<()> {
        match got {
            Got::Prefix { request, hashed } => {
                let (hasher, n) = hashed?;
                let r = m.prefix_hashed(request, hasher, n);
                answered(m, r)
            }
            Got::Chunk {
                file,
                request,
                chunk,
            } => {
                let chunk = chunk?;
                let n = chunk.len() as u64;
                let r = m.push_chunk(request, chunk);
                if r.is_ok() {
                    self.report[file].moved += n;
                    self.progress.add(n);
                }
                answered(m, r)
            }
        }
    }
}

impl<M> App<M> for SenderApp
where
    M: Machine<Event = SenderEvent> + BorrowMut<Sender> + 'static,
{
    fn on_event(&mut self, _: &mut M, _: Instant, event: SenderEvent) -> io::Result<()> {
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
            SenderEvent::Delivered { file, hash } => {
                self.report[file].outcome = Outcome::Saved { hash };
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
            }
        }
        Ok(())
    }

    fn poll_work(&mut self) -> Option<Work<Self, M>> {
        // The machine asks one read at a time, so the sources are here.
        let sources = self.sources.take()?;
        let Some(read) = self.asked.take() else {
            self.sources = Some(sources);
            return None;
        };
        Some(Work::new(move || {
            let got = read.run(&sources);
            move |app: &mut SenderApp, m: &mut M, _| {
                app.sources = Some(sources);
                app.answer(m.borrow_mut(), got)
            }
        }))
    }
}
