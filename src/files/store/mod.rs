//! A receiver's destination directory. Every file operation is relative to
//! a handle on a directory under it (`openat`, `mkdirat`, `linkat`,
//! `renameat`, `unlinkat`), reached from the store's own handle one
//! component at a time, and never follows a symbolic link: an offered path
//! can neither leave the directory nor be redirected through a link planted
//! in it (rsync CVE-2024-12086..12088, croc PR 1191). A component on the
//! way that is a link or a file is refused with
//! [`RejectReason::NotADirectory`]; a file offered where a directory is,
//! with [`RejectReason::IsADirectory`]. Data goes to a partial file under a
//! temporary name in the file's own directory; only a verified, synced
//! file (content and metadata) is moved to its final name, atomically, and
//! without `overwrite` never over an existing one.
//!
//! Other processes may share the directory (a second receiver, a user's
//! tools, an attacker with write access to it). So a partial file is
//! claimed with an exclusive advisory lock (`flock`) held for the whole
//! transfer: two receivers, in one process or in two, never write the same
//! partial file. And what reaches the final name is the very file this
//! session wrote and synced (the open descriptor is linked, not whatever
//! the partial name points to by then).
//!
//! Metadata: a file gets the offered permission bits within
//! [`MODE_BITS`] (never setuid, setgid or sticky), narrowed by the
//! receiver's umask as a newly created file would be, and the offered
//! modification time to the nanosecond. A file already present with the
//! offered size is hashed whole and offered back as
//! [`Resume::Complete`]: if it is the same, its content is left as it is
//! and only a mode or time that differ from the offer's are set.

mod commit;
mod group;
mod hashes;
pub mod platform;
mod tree;

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use commit::Partial;
pub use commit::{Committed, Incoming};
use hashes::HashCache;
use tree::{Dir, ParentCache};

use crate::codec::RejectReason;
use crate::xfer::{Meta, Mtime, Resume, SafeName, SafePath, MODE_BITS, PARTIAL_SUFFIX};

/// Why the store will not take (or could not save) a file: what the
/// receiver tells the sender in `Reject`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason:?}: {message}")]
pub struct Refusal {
    /// The reason code sent to the peer.
    pub reason: RejectReason,
    /// The explanation sent to the peer (no local paths).
    pub message: String,
}

impl Refusal {
    fn new(reason: RejectReason, message: impl Into<String>) -> Self {
        Refusal {
            reason,
            message: message.into(),
        }
    }

    fn disk(what: &str, e: &io::Error) -> Self {
        Refusal::new(RejectReason::Disk, format!("{what}: {e}"))
    }

    fn busy() -> Self {
        Refusal::new(
            RejectReason::Busy,
            "another transfer of this name is in progress; try again when it ends",
        )
    }
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    root: Dir,
    overwrite: bool,
    /// The process's umask, read once (see [`process_umask`]).
    umask: u32,
    parents: ParentCache,
    /// Directories in which a walk made a subdirectory: their entries are
    /// not durable until they are synced, by the next commit.
    unsynced: Mutex<Vec<Dir>>,
    /// Files on disk already hashed, shared by every session of the store.
    hashes: HashCache,
}

/// Entries [`Store::partials`] looks at, at most.
const PARTIALS_LOOKED_AT: usize = 100_000;

/// Files smaller than this (64 KiB) are written to an unnamed file and
/// given their name when saved: no partial file, so nothing to resume
/// after a cut (the file is sent again whole, at most 64 KiB), and none of
/// the partial name's cost (create, lock, remove), which dominates for
/// small files. Larger files keep a named, resumable partial file.
pub const UNNAMED_BELOW: u64 = 64 * 1024;

/// A destination directory, shared by every session of a server. Sessions
/// (of this process or any other) never write the same name at once: the
/// partial file's lock says who holds it.
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<Inner>,
    /// Files smaller than this are written unnamed ([`UNNAMED_BELOW`]).
    unnamed_below: u64,
}

/// What the final name of an offered file holds.
// Made once per offer and consumed at once: the size does not matter.
#[allow(clippy::large_enum_variant)]
enum Found {
    Nothing,
    /// A regular file of the offered size, hashed whole, and open (its
    /// metadata is brought in line with the offer's if it is up to date).
    Complete(blake3::Hasher, File),
    /// Anything else a file may replace: a file of another size, a link.
    Other,
}

impl Store {
    /// Opens `dir` (which must exist). With `overwrite`, a verified file
    /// replaces an existing file of the same name; without, such offers are
    /// refused and the existing file is never touched.
    pub fn new(dir: impl AsRef<Path>, overwrite: bool) -> io::Result<Store> {
        let path = dir.as_ref().to_path_buf();
        let root = Dir::new(File::open(&path)?)
            .map_err(|e| io::Error::new(e.kind(), "destination is not a directory"))?;
        Ok(Store {
            inner: Arc::new(Inner {
                path,
                root,
                overwrite,
                umask: process_umask(),
                parents: ParentCache::default(),
                unsynced: Mutex::new(Vec::new()),
                hashes: HashCache::default(),
            }),
            unnamed_below: UNNAMED_BELOW,
        })
    }

    /// Writes files smaller than `bytes` to an unnamed file (default
    /// [`UNNAMED_BELOW`]); 0 gives every file a named, resumable partial
    /// file.
    pub fn unnamed_below(mut self, bytes: u64) -> Store {
        self.unnamed_below = bytes;
        self
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.inner.path
    }

    /// Whether existing files may be replaced.
    pub fn overwrite(&self) -> bool {
        self.inner.overwrite
    }

    /// The umask that narrows the permission bits of what is saved (read
    /// from `/proc/self/status` when the store was opened; 0o022 if that
    /// could not be read).
    pub fn umask(&self) -> u32 {
        self.inner.umask
    }

    /// Where `path` is on this machine (for the local user, never the peer).
    pub fn local_path(&self, path: &SafePath) -> PathBuf {
        let mut local = self.inner.path.clone();
        local.extend(path.components().iter().map(SafeName::as_str));
        local
    }

    /// The temporary name the partial file for `name` lives under, in the
    /// directory the file goes to.
    pub fn partial_name(name: &SafeName) -> String {
        let plain = format!(".{name}{PARTIAL_SUFFIX}");
        if plain.len() <= 255 {
            return plain;
        }
        let hash = blake3::hash(name.as_str().as_bytes()).to_hex();
        format!(".{}{PARTIAL_SUFFIX}", &hash[..32])
    }

    /// The partial files of interrupted transfers anywhere under the
    /// directory (symbolic links are not followed; at most 100,000
    /// entries are looked at): how many, and how
    /// many bytes they hold (a later `send` of the same file resumes from
    /// them).
    pub fn partials(&self) -> io::Result<(u64, u64)> {
        let (mut count, mut bytes) = (0, 0);
        let mut dirs = vec![self.inner.path.clone()];
        let mut looked_at = 0;
        while let Some(dir) = dirs.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries {
                looked_at += 1;
                if looked_at > PARTIALS_LOOKED_AT {
                    return Ok((count, bytes));
                }
                let entry = entry?;
                let name = entry.file_name();
                let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
                let name = name.as_bytes();
                if is_dir {
                    dirs.push(entry.path());
                } else if name.starts_with(b".") && name.ends_with(PARTIAL_SUFFIX.as_bytes()) {
                    count += 1;
                    bytes += entry.metadata().map_or(0, |m| m.len());
                }
            }
        }
        Ok((count, bytes))
    }

    /// Decides on an offer of the file `path` (`size` bytes, `meta` to be
    /// applied when it is saved). Opens (making what is missing) the
    /// directories on its path, never through a link. Then:
    /// - a directory under the final name: refused, `IsADirectory`;
    /// - a regular file of exactly `size` bytes: hashed whole, and
    ///   [`Resume::Complete`] is returned (with `overwrite`, the partial
    ///   file is claimed too, empty, so a different file can be written;
    ///   without, nothing is claimed);
    /// - anything else under the final name: refused, `Exists`, unless
    ///   overwriting;
    /// - otherwise the name is claimed (its partial file, locked for as long
    ///   as the returned [`Incoming`] lives), what the partial file already
    ///   holds is hashed to resume from it, and the offer is refused up
    ///   front when the file system has less room than the rest needs.
    pub fn prepare(
        &self,
        path: &SafePath,
        size: u64,
        meta: Meta,
    ) -> Result<(Incoming, Resume), Refusal> {
        let dir = self.parent_dir(path.parents())?;
        let overwrite = self.inner.overwrite;
        match self.look_at_final(&dir, path, size)? {
            Found::Complete(hasher, file) if overwrite => {
                let mut partial = Partial::claim(&dir, path.file_name())?;
                if let Some(resume) = self.newer_partial(&mut partial, &file, size)? {
                    // Only a resume writes for sure; a file compared may be
                    // up to date, and needs no room (as without a partial).
                    self.check_room(size, partial.allocated())?;
                    let incoming = Incoming::new(self.clone(), path, dir, size, meta, partial);
                    return Ok((incoming, resume));
                }
                partial.truncate()?;
                let incoming = Incoming::existing(self.clone(), path, dir, size, meta, Some(partial))
                    .keeping(file);
                return Ok((incoming, Resume::Complete { hasher, replace: true }));
            }
            Found::Complete(hasher, file) => {
                let incoming =
                    Incoming::existing(self.clone(), path, dir, size, meta, None).keeping(file);
                let replace = false;
                return Ok((incoming, Resume::Complete { hasher, replace }));
            }
            Found::Other if !overwrite => {
                return Err(Refusal::new(
                    RejectReason::Exists,
                    format!("a file named {path} exists on the receiver, which keeps it unless told to overwrite"),
                ))
            }
            Found::Other | Found::Nothing => {}
        }
        if size < self.unnamed_below {
            if let Some(partial) = Partial::unnamed(&dir) {
                let incoming = Incoming::new(self.clone(), path, dir, size, meta, partial);
                return Ok((incoming, Resume::Fresh));
            }
        }
        let mut partial = Partial::claim(&dir, path.file_name())?;
        // Before the partial is hashed: a file that cannot fit costs nothing.
        self.check_room_for(size, &partial, &dir)?;
        let resume = partial.resume_point(size, &self.inner.hashes)?;
        let incoming = Incoming::new(self.clone(), path, dir, size, meta, partial);
        Ok((incoming, resume))
    }

    /// With `--overwrite`, a partial file next to a complete file of the
    /// offered size: if it holds bytes the complete file does not start
    /// with, it is a newer version cut short, and resuming it is worth more
    /// than comparing with the old one (`Some`); if it holds nothing, or
    /// only a prefix of the complete file, it adds nothing (`None`).
    fn newer_partial(
        &self,
        partial: &mut Partial,
        complete: &File,
        size: u64,
    ) -> Result<Option<Resume>, Refusal> {
        let held = partial.len();
        if held == 0 || held > size {
            return Ok(None);
        }
        let resume = partial.resume_point(size, &self.inner.hashes)?;
        let Resume::From { hasher, .. } = &resume else {
            return Ok(None);
        };
        let hashes = &self.inner.hashes;
        let old = hashes
            .hash_prefix(complete, held)
            .map_err(|e| Refusal::disk("cannot read the file here", &e))?;
        Ok((old.0.finalize() != hasher.finalize()).then_some(resume))
    }

    /// What the final name of `path` (in its parent `dir`) holds.
    fn look_at_final(&self, dir: &Dir, path: &SafePath, size: u64) -> Result<Found, Refusal> {
        let name = path.file_name().as_str();
        let st = match dir.stat(name) {
            Ok(st) => st,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Found::Nothing),
            Err(e) => return Err(Refusal::disk(&format!("cannot check {path}"), &e)),
        };
        #[allow(clippy::unnecessary_cast)] // the field types differ between platforms
        let (kind, len) = (st.st_mode & libc::S_IFMT, st.st_size as u64);
        match kind {
            libc::S_IFDIR => Err(Refusal::new(
                RejectReason::IsADirectory,
                format!("{path} is a directory on the receiver; a file cannot take its place"),
            )),
            libc::S_IFREG if len == size => {
                Ok(match hash_existing(&self.inner.hashes, dir, name, size) {
                    Some((hasher, file)) => Found::Complete(hasher, file),
                    None => Found::Other,
                })
            }
            _ => Ok(Found::Other),
        }
    }

    /// Makes the directory `path` and every missing one on its way, never
    /// through a link. Those on the way get mode 0777 and the last one
    /// `meta.mode` within [`MODE_BITS`], both narrowed by the umask as
    /// `mkdir` does. An existing directory is fine and left as it is (its
    /// mode is not changed). Returns once what was made is durable.
    ///
    /// Refused with `NotADirectory` when a component on the way is not a
    /// directory (a file, or a link, never followed), and with
    /// `IsADirectory` (whose meaning covers "a directory offered where the
    /// receiver has something else") when the last one exists and is not a
    /// directory.
    pub fn make_dir(&self, path: &SafePath, meta: &Meta) -> Result<PathBuf, Refusal> {
        self.mkdir(path, meta.mode & MODE_BITS)?;
        Ok(self.local_path(path))
    }

    /// Like [`make_dir`](Store::make_dir), for a directory files are about
    /// to be written into: made with the offered mode plus the owner's
    /// read, write and search bits, so that a read-only directory (0555)
    /// can be filled; [`set_dir_meta`](Store::set_dir_meta) gives it its
    /// own mode when the session ends, as rsync does. Returns whether it
    /// was made (an existing directory keeps its mode).
    pub fn make_dir_to_fill(&self, path: &SafePath, meta: &Meta) -> Result<bool, Refusal> {
        self.mkdir(path, (meta.mode & MODE_BITS) | 0o700)
    }

    /// Makes `path` (and what is missing on its way) with `mode` for the
    /// last component; whether it was made.
    fn mkdir(&self, path: &SafePath, mode: u32) -> Result<bool, Refusal> {
        let parent = self.parent_dir(path.parents())?;
        let name = path.file_name().as_str();
        // The mask keeps the value within mode_t on every platform.
        #[allow(clippy::unnecessary_cast)]
        let mode = (mode & MODE_BITS) as libc::mode_t;
        let made = match parent.mkdir(name, mode) {
            Ok(()) => {
                self.note_unsynced(vec![parent]);
                true
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let st = parent
                    .stat(name)
                    .map_err(|e| Refusal::disk(&format!("cannot check {path}"), &e))?;
                if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
                    return Err(Refusal::new(
                        RejectReason::IsADirectory,
                        format!("{path} exists on the receiver and is not a directory (a file or a symbolic link, which is never followed); remove it there or send to another path"),
                    ));
                }
                false
            }
            Err(e) => {
                return Err(Refusal::disk(
                    &format!("cannot make the directory {path}"),
                    &e,
                ))
            }
        };
        for dir in self.take_unsynced() {
            dir.sync()
                .map_err(|e| Refusal::disk(&format!("cannot sync the directory of {path}"), &e))?;
        }
        Ok(made)
    }

    /// Gives the directory `path` its modification time and, when `mode`
    /// is given, its permission bits (within [`MODE_BITS`], narrowed by the
    /// umask), reached through the same walk that never follows a link.
    pub fn set_dir_meta(
        &self,
        path: &SafePath,
        mtime: Mtime,
        mode: Option<u32>,
    ) -> Result<(), Refusal> {
        let dir = tree::walk(&self.inner.root, path.components(), false, &mut Vec::new())?;
        if let Some(mode) = mode {
            let mode = mode & MODE_BITS & !self.umask();
            // SAFETY: an open fd; fchmod has no memory effects.
            let rc = unsafe { libc::fchmod(dir.file().as_raw_fd(), mode as libc::mode_t) };
            tree::check(rc)
                .map_err(|e| Refusal::disk(&format!("cannot set the mode of {path}"), &e))?;
        }
        set_times(dir.file(), mtime)
            .map_err(|e| Refusal::disk(&format!("cannot set the time of {path}"), &e))
    }

    /// Gives the directory `path` its modification time (set once the
    /// files in it are written: writing them changes it).
    pub fn set_dir_mtime(&self, path: &SafePath, mtime: Mtime) -> Result<(), Refusal> {
        self.set_dir_meta(path, mtime, None)
    }

    /// The directory `parents` (the store's own for none), from the cache
    /// or walked to, made where missing.
    fn parent_dir(&self, parents: &[SafeName]) -> Result<Dir, Refusal> {
        if parents.is_empty() {
            return Ok(self.inner.root.clone());
        }
        if let Some(dir) = self.inner.parents.get(parents) {
            return Ok(dir);
        }
        let mut created_in = Vec::new();
        let walked = tree::walk(&self.inner.root, parents, true, &mut created_in);
        self.note_unsynced(created_in);
        let dir = walked?;
        self.inner.parents.put(parents, &dir);
        Ok(dir)
    }

    fn note_unsynced(&self, dirs: Vec<Dir>) {
        if !dirs.is_empty() {
            let mut unsynced = self
                .inner
                .unsynced
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            unsynced.extend(dirs);
        }
    }

    /// The directories whose new subdirectories still need a sync.
    fn take_unsynced(&self) -> Vec<Dir> {
        let mut unsynced = self
            .inner
            .unsynced
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        std::mem::take(&mut *unsynced)
    }

    /// [`check_room`](Self::check_room) for the file whose partial file
    /// is `partial` (in `dir`); a refused claim leaves no empty partial.
    fn check_room_for(&self, size: u64, partial: &Partial, dir: &Dir) -> Result<(), Refusal> {
        let refused = self.check_room(size, partial.allocated());
        if refused.is_err() && partial.len() == 0 {
            let _ = partial.unlink(dir);
        }
        refused
    }

    /// Refuses a file of `size` bytes that cannot fit: more than the file
    /// system has free for us beyond the `allocated` bytes of disk its
    /// partial file already has. Counted by blocks, not by the partial's length, so holes (a
    /// sparse file's, or a peer's `Hole` frames) are not taken for data
    /// already written: every byte of the offered size may need a block,
    /// however a resume began. (Best effort: others may fill the disk
    /// meanwhile; a write that fails later still ends the session with the
    /// reason.)
    fn check_room(&self, size: u64, allocated: u64) -> Result<(), Refusal> {
        let Ok(free) = self.free_space() else {
            return Ok(());
        };
        let need = size.saturating_sub(allocated);
        if need > free {
            return Err(Refusal::new(
                RejectReason::Disk,
                format!("not enough space: {need} bytes needed, {free} bytes free on the receiver"),
            ));
        }
        Ok(())
    }

    /// Bytes an unprivileged writer may still use on the directory's file system.
    pub fn free_space(&self) -> io::Result<u64> {
        // SAFETY: an all-zero `statvfs` is a valid value to be overwritten.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        let fd = self.inner.root.file().as_raw_fd();
        // SAFETY: open directory fd, `st` is writable.
        tree::check(unsafe { libc::fstatvfs(fd, &mut st) })?;
        #[allow(clippy::unnecessary_cast)] // the field types differ between platforms
        Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
    }
}

/// BLAKE3 of the whole regular file `name` in `dir` if it still has
/// `size` bytes; `None` if it is not (or no longer) such a file or cannot
/// be read (then it counts as a different file).
fn hash_existing(
    hashes: &HashCache,
    dir: &Dir,
    name: &str,
    size: u64,
) -> Option<(blake3::Hasher, File)> {
    let flags = libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK;
    let file = dir.open(name, flags, 0).ok()?;
    let meta = file.metadata().ok()?;
    if !meta.is_file() || meta.len() != size {
        return None;
    }
    match hashes.hash_prefix(&file, size) {
        Ok((hasher, n)) if n == size => Some((hasher, file)),
        _ => None,
    }
}

/// The process's umask, from the `Umask:` line of `/proc/self/status`
/// (`umask(2)` cannot read it without setting it, which would race other
/// threads creating files); 0o022, the usual one, if that cannot be read.
fn process_umask() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("Umask:"))
        .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        .map_or(0o022, |m| m & 0o777)
}

/// Sets the modification time of `file` to the nanosecond (the access
/// time is left as it is).
fn set_times(file: &File, mtime: Mtime) -> io::Result<()> {
    let omit = libc::timespec {
        tv_sec: 0,
        tv_nsec: libc::UTIME_OMIT,
    };
    let modified = libc::timespec {
        // `time_t`, whatever its width on this libc (musl's alias is deprecated).
        tv_sec: mtime.secs as _,
        tv_nsec: mtime.nanos.min(999_999_999) as libc::c_long,
    };
    let times = [omit, modified];
    // SAFETY: an open fd and a valid array of two timespecs.
    tree::check(unsafe { libc::futimens(file.as_raw_fd(), times.as_ptr()) })
}

/// BLAKE3 of the first `len` bytes of `file` (fewer if it is shorter):
/// the hasher and the number of bytes it hashed.
pub(crate) fn hash_prefix(file: &File, len: u64) -> io::Result<(blake3::Hasher, u64)> {
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut n = 0u64;
    while n < len {
        let want = buf
            .len()
            .min(usize::try_from(len - n).unwrap_or(usize::MAX));
        let got = match file.read_at(&mut buf[..want], n) {
            Ok(0) => break,
            Ok(got) => got,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..got]);
        n += got as u64;
    }
    Ok((hasher, n))
}
