//! Files being received: the partial file claimed for each (locked, in
//! the directory the file goes to), what is written to it, and how one
//! file reaches its final name (its metadata, then a link that never
//! replaces what another sender put there meanwhile). The batch that makes
//! many durable at once is in `group`.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::hashes::HashCache;
use super::tree::Dir;
use super::{hash_existing, hash_prefix, set_times, Refusal, Store};
use crate::codec::RejectReason;
use crate::xfer::{Meta, Resume, SafeName, SafePath, MODE_BITS};

/// A partial file, open and locked by this session.
#[derive(Debug)]
pub(super) struct Partial {
    /// Its name in the file's directory; empty for an unnamed one
    /// ([`Partial::unnamed`]).
    name: String,
    pub(super) file: File,
    /// Its length as this session last set or extended it (locked, so
    /// nobody else changes it): calls that would not change it are skipped.
    len: u64,
}

impl Partial {
    /// Opens (or creates) the partial file for `name` in `dir` and locks it
    /// for this session.
    pub(super) fn claim(dir: &Dir, name: &SafeName) -> Result<Partial, Refusal> {
        let part = Store::partial_name(name);
        // A session that held this name may publish it (linking the file
        // under its final name, then unlinking the partial name) between
        // our open and our lock: then we hold a file that is no longer the
        // partial one. Detected after locking, and opened afresh.
        for _ in 0..3 {
            let (file, meta) = open_partial(dir, &part)?;
            // SAFETY: an open fd; flock has no memory effects.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
                let e = io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                    return Err(Refusal::busy());
                }
                return Err(Refusal::disk("cannot lock the partial file", &e));
            }
            if dir.names_meta(&part, &meta) {
                let len = meta.len();
                return Ok(Partial {
                    name: part,
                    file,
                    len,
                });
            }
        }
        Err(Refusal::busy())
    }

    /// Empties it (nothing it holds is of use).
    /// A small file's data goes to an unnamed file in `dir` (`O_TMPFILE`):
    /// no partial name to make, lock and remove, which is most of a small
    /// file's cost. Nothing of it survives a cut; a small file is simply
    /// sent again. `None` where the file system or the platform has no
    /// unnamed files (`platform::unnamed_file`).
    pub(super) fn unnamed(dir: &Dir) -> Option<Partial> {
        let file = super::platform::unnamed_file(dir)?;
        Some(Partial {
            name: String::new(),
            file,
            len: 0,
        })
    }

    /// Removes its name, if it has one and still is this file.
    pub(super) fn unlink(&self, dir: &Dir) -> io::Result<()> {
        if self.name.is_empty() {
            return Ok(());
        }
        dir.unlink_if_same(&self.name, &self.file)
    }

    pub(super) fn truncate(&mut self) -> Result<(), Refusal> {
        self.set_len(0)
            .map_err(|e| Refusal::disk("partial file", &e))
    }

    /// Cuts or extends the file to `len` (nothing to do if it is that long).
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        if self.len != len {
            self.file.set_len(len)?;
            self.len = len;
        }
        Ok(())
    }

    /// Its length.
    pub(super) fn len(&self) -> u64 {
        self.len
    }

    /// Bytes of disk it occupies (blocks, so holes count for nothing).
    pub(super) fn allocated(&self) -> u64 {
        self.file
            .metadata()
            .map_or(0, |m| m.blocks().saturating_mul(512).min(self.len))
    }

    /// Where a transfer of `size` bytes resumes: from what it holds if that
    /// is not more than `size` (hashed, or remembered in `hashes`), else
    /// from nothing (emptied).
    pub(super) fn resume_point(
        &mut self,
        size: u64,
        hashes: &HashCache,
    ) -> Result<Resume, Refusal> {
        let held = self.len;
        if held == 0 || held > size {
            self.truncate()?;
            return Ok(Resume::Fresh);
        }
        let (hasher, have) = hashes
            .hash_prefix(&self.file, held)
            .map_err(|e| Refusal::disk("partial file", &e))?;
        Ok(Resume::From { have, hasher })
    }
}

fn open_partial(dir: &Dir, part: &str) -> Result<(File, std::fs::Metadata), Refusal> {
    let flags = libc::O_RDWR | libc::O_CREAT | libc::O_NOFOLLOW | libc::O_NONBLOCK;
    let file = match dir.open(part, flags, 0o600) {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(Refusal::new(
                RejectReason::Disk,
                "the partial file's name is a symbolic link",
            ))
        }
        Err(e) => return Err(Refusal::disk("cannot open the partial file", &e)),
    };
    let meta = file
        .metadata()
        .map_err(|e| Refusal::disk("partial file", &e))?;
    // A hard link could make the partial name an alias of a file elsewhere.
    if !meta.is_file() || meta.nlink() != 1 {
        return Err(Refusal::new(
            RejectReason::Disk,
            "the partial file is not a plain file",
        ));
    }
    Ok((file, meta))
}

/// A file being received: its partial file, open and locked, in the
/// directory it goes to. Dropping it (an interrupted transfer) keeps the
/// partial file for a later resume, unless it holds nothing (then it is
/// removed: an empty partial file resumes nothing).
///
/// When [`Store::prepare`] found a complete file of the offered size under
/// the final name ([`is_existing`](Incoming::is_existing)), its content is
/// kept as it is unless [`start`](Incoming::start)`(0)` begins rewriting
/// it, which only an overwriting store allows; if it is up to date, only
/// its permission bits and modification time are brought in line with the
/// offer's when they differ (as `rsync -a` does).
#[derive(Debug)]
pub struct Incoming {
    pub(super) store: Store,
    pub(super) path: SafePath,
    /// The directory it goes to.
    pub(super) dir: Dir,
    size: u64,
    meta: Meta,
    /// `None` only for an existing file that may not be replaced.
    pub(super) partial: Option<Partial>,
    /// The final name holds a complete file of `size` bytes.
    existing: bool,
    /// Data goes to the partial file, and commit publishes it.
    rewriting: bool,
    /// Committed or discarded: nothing left to clean up.
    pub(super) settled: bool,
    /// The complete file under the final name, open, while it may be up to date.
    pub(super) kept: Option<File>,
}

/// How a verified file reached its final name ([`Store::commit_reported`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Committed {
    /// Its data was written and published under the final name.
    Saved(PathBuf),
    /// The file there was already the same, and is left as it was (or an
    /// identical one took the name meanwhile: this copy was dropped).
    UpToDate(PathBuf),
    /// The file there was already the same; its permission bits or
    /// modification time were brought in line with the offer's, durably.
    MetadataUpdated(PathBuf),
}

impl Committed {
    /// Where the file is.
    pub fn path(&self) -> &Path {
        match self {
            Committed::Saved(p) | Committed::UpToDate(p) | Committed::MetadataUpdated(p) => p,
        }
    }

    /// Where the file is, taken.
    pub fn into_path(self) -> PathBuf {
        match self {
            Committed::Saved(p) | Committed::UpToDate(p) | Committed::MetadataUpdated(p) => p,
        }
    }
}

impl Incoming {
    pub(super) fn new(
        store: Store,
        path: &SafePath,
        dir: Dir,
        size: u64,
        meta: Meta,
        partial: Partial,
    ) -> Incoming {
        let mut incoming = Incoming::existing(store, path, dir, size, meta, Some(partial));
        incoming.existing = false;
        incoming.rewriting = true;
        incoming
    }

    pub(super) fn existing(
        store: Store,
        path: &SafePath,
        dir: Dir,
        size: u64,
        meta: Meta,
        partial: Option<Partial>,
    ) -> Incoming {
        Incoming {
            store,
            path: path.clone(),
            dir,
            size,
            meta,
            partial,
            existing: true,
            rewriting: false,
            settled: false,
            kept: None,
        }
    }

    /// Keeps `file`, the complete one under the final name, to bring its
    /// metadata in line if it turns out up to date.
    pub(super) fn keeping(mut self, file: File) -> Incoming {
        self.kept = Some(file);
        self
    }

    /// The file's own name (the last component of its path).
    pub fn name(&self) -> &SafeName {
        self.path.file_name()
    }

    /// Its path, relative to the store's directory.
    pub fn path(&self) -> &SafePath {
        &self.path
    }

    /// Whether the final name already held a complete file of the offered
    /// size ([`Resume::Complete`]).
    pub fn is_existing(&self) -> bool {
        self.existing
    }

    /// Whether committing keeps the existing file as it is: it existed and
    /// nothing began rewriting it.
    pub fn is_up_to_date(&self) -> bool {
        self.existing && !self.rewriting
    }

    /// Data starts at `from`: cuts the partial file to that length. For an
    /// [existing](Incoming::is_existing) file, `from` is either its size
    /// (it is up to date: nothing is touched) or 0 (it is rewritten whole,
    /// which needs an overwriting store).
    pub fn start(&mut self, from: u64) -> io::Result<()> {
        if self.existing {
            if from == self.size {
                self.rewriting = false;
                return Ok(());
            }
            if from != 0 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "an existing file is either kept or rewritten from byte 0",
                ));
            }
        }
        let partial = self.partial.as_mut().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::PermissionDenied,
                "the receiver keeps the existing file: it is not told to overwrite",
            )
        })?;
        partial.set_len(from)?;
        self.rewriting = true;
        Ok(())
    }

    /// Writes `data` at `offset` of the partial file. Ranges never written
    /// (a sender's holes, sent as "skip N bytes") stay holes: the file
    /// gets its full length at commit without a byte written there.
    pub fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        match &mut self.partial {
            Some(partial) if self.rewriting => {
                partial.file.write_all_at(data, offset)?;
                partial.len = partial.len.max(offset + data.len() as u64);
                Ok(())
            }
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "data for a file being kept as it is",
            )),
        }
    }

    /// The content is verified: saves it as [`Store::commit_all`] does for
    /// a batch of one.
    pub fn commit(self) -> Result<PathBuf, Refusal> {
        Store::commit_all(vec![self])
            .into_iter()
            .next()
            .unwrap_or_else(|| Err(Refusal::new(RejectReason::Disk, "nothing was committed")))
    }

    /// The content did not verify: deletes the partial file.
    pub fn discard(mut self) -> io::Result<()> {
        self.settled = true;
        match &self.partial {
            Some(p) => p.unlink(&self.dir),
            None => Ok(()),
        }
    }

    /// Gives up the claim on the partial name if this session left it
    /// empty (the file was kept, or nothing was written).
    pub(super) fn release_if_empty(&self) {
        if let Some(p) = &self.partial {
            if p.len == 0 {
                let _ = p.unlink(&self.dir);
            }
        }
    }

    /// Full length (a tail that is a hole included), permission bits
    /// within [`MODE_BITS`] narrowed by the umask, then the modification
    /// time (last: the other calls would change it).
    pub(super) fn apply_meta(&self, partial: &mut Partial) -> io::Result<()> {
        partial.set_len(self.size)?;
        let file = &partial.file;
        let mode = self.meta.mode & MODE_BITS & !self.store.umask();
        // SAFETY: an open fd; fchmod has no memory effects.
        super::tree::check(unsafe { libc::fchmod(file.as_raw_fd(), mode as libc::mode_t) })?;
        set_times(file, self.meta.mtime)
    }

    /// For an up-to-date file: gives the file under the final name the
    /// offered permission bits (within [`MODE_BITS`], narrowed by the
    /// umask, as when it was first saved) and modification time, where they
    /// differ. Whether anything changed (then it still needs a sync).
    /// Times are compared to the second when the file system keeps no
    /// fraction of one.
    pub(super) fn refresh_meta(&self) -> io::Result<bool> {
        let Some(file) = &self.kept else {
            return Ok(false);
        };
        let st = file.metadata()?;
        let mode = self.meta.mode & MODE_BITS & !self.store.umask();
        let mut changed = false;
        if st.mode() & MODE_BITS != mode {
            // SAFETY: an open fd; fchmod has no memory effects.
            super::tree::check(unsafe { libc::fchmod(file.as_raw_fd(), mode as libc::mode_t) })?;
            changed = true;
        }
        let want = self.meta.mtime;
        let nanos = i64::from(want.nanos);
        let same_time =
            st.mtime() == want.secs && (st.mtime_nsec() == nanos || st.mtime_nsec() == 0);
        if !same_time {
            set_times(file, want)?;
            changed = true;
        }
        Ok(changed)
    }

    /// Gives the written file its final name (replacing what is there only
    /// when overwriting). If another file took the name meanwhile (a
    /// concurrent sender, another process), this copy is resolved rather
    /// than left as a stray partial file: dropped either way, and the file
    /// counts as up to date when the one there is the same.
    pub(super) fn publish(&self, partial: &Partial) -> Result<Committed, Refusal> {
        let name = self.path.file_name().as_str();
        let published = if self.store.overwrite() {
            self.dir.replace_with_file(&partial.file, name)
        } else {
            self.dir.link_file(&partial.file, name)
        };
        match published {
            Ok(()) => Ok(Committed::Saved(self.local_path())),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => self.settle_taken(partial),
            Err(e) => Err(Refusal::disk(
                &format!("cannot move {} into place", self.path),
                &e,
            )),
        }
    }

    /// The final name was taken while this file was received: compares the
    /// two, then drops this copy (the receiver keeps its own file).
    fn settle_taken(&self, partial: &Partial) -> Result<Committed, Refusal> {
        let name = self.path.file_name().as_str();
        let ours = hash_prefix(&partial.file, self.size).map(|(h, _)| h.finalize());
        let theirs = hash_existing(&self.store.inner.hashes, &self.dir, name, self.size);
        let same = matches!((&ours, &theirs), (Ok(o), Some((t, _))) if *o == t.finalize());
        let _ = partial.unlink(&self.dir);
        if same {
            return Ok(Committed::UpToDate(self.local_path()));
        }
        Err(Refusal::new(
            RejectReason::Exists,
            format!("a different file named {} appeared meanwhile on the receiver, which keeps it unless told to overwrite", self.path),
        ))
    }

    pub(super) fn local_path(&self) -> PathBuf {
        self.store.local_path(&self.path)
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        // Still locked here: nobody else can be using the partial file.
        if !self.settled {
            self.release_if_empty();
        }
    }
}
