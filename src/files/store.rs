//! A receiver's destination directory. Every file operation is relative to
//! a handle on the directory (`openat`, `linkat`, `renameat`, `unlinkat`)
//! and never follows a symbolic link, so a name can neither leave the
//! directory nor be redirected through a link planted in it (rsync
//! CVE-2024-12086..12088, croc PR 1191). Data goes to a partial file under
//! a temporary name; only a verified, synced file is moved to its final
//! name, atomically, and without `overwrite` never over an existing one.
//!
//! Other processes may share the directory (a second receiver, a user's
//! tools, an attacker with write access to it). So a partial file is
//! claimed with an exclusive advisory lock (`flock`) held for the whole
//! transfer: two receivers, in one process or in two, never write the same
//! partial file. And what reaches the final name is the very file this
//! session wrote and synced (the open descriptor is linked, not whatever
//! the partial name points to by then).

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::codec::RejectReason;
use crate::xfer::{Resume, SafeName, PARTIAL_SUFFIX};

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
    dir: File,
    overwrite: bool,
}

/// A destination directory, shared by every session of a server. Sessions
/// (of this process or any other) never write the same name at once: the
/// partial file's lock says who holds it.
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl Store {
    /// Opens `dir` (which must exist). With `overwrite`, a verified file
    /// replaces an existing file of the same name; without, such offers are
    /// refused and the existing file is never touched.
    pub fn new(dir: impl AsRef<Path>, overwrite: bool) -> io::Result<Store> {
        let path = dir.as_ref().to_path_buf();
        let dir = File::open(&path)?;
        if !dir.metadata()?.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                "destination is not a directory",
            ));
        }
        Ok(Store {
            inner: Arc::new(Inner {
                path,
                dir,
                overwrite,
            }),
        })
    }

    /// TEMPORARY shim.
    pub fn make_dir(
        &self,
        _p: &crate::xfer::SafePath,
        _m: &crate::xfer::Meta,
    ) -> Result<PathBuf, Refusal> {
        Ok(PathBuf::new())
    }
    /// TEMPORARY shim.
    pub fn set_dir_mtime(
        &self,
        _p: &crate::xfer::SafePath,
        _m: crate::xfer::Mtime,
    ) -> io::Result<()> {
        Ok(())
    }
    /// TEMPORARY shim.
    pub fn commit_all(&self, batch: Vec<Incoming>) -> Vec<Result<PathBuf, Refusal>> {
        batch.into_iter().map(Incoming::commit).collect()
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.inner.path
    }

    /// Whether existing files may be replaced.
    pub fn overwrite(&self) -> bool {
        self.inner.overwrite
    }

    /// The temporary name the partial file for `name` lives under.
    pub fn partial_name(name: &SafeName) -> String {
        let plain = format!(".{name}{PARTIAL_SUFFIX}");
        if plain.len() <= 255 {
            return plain;
        }
        let hash = blake3::hash(name.as_str().as_bytes()).to_hex();
        format!(".{}{PARTIAL_SUFFIX}", &hash[..32])
    }

    /// The partial files of interrupted transfers in the directory: how
    /// many, and how many bytes they hold (a later `send` of the same file
    /// resumes from them).
    pub fn partials(&self) -> io::Result<(u64, u64)> {
        let (mut count, mut bytes) = (0, 0);
        for entry in std::fs::read_dir(&self.inner.path)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.as_bytes();
            if name.starts_with(b".") && name.ends_with(PARTIAL_SUFFIX.as_bytes()) {
                count += 1;
                bytes += entry.metadata().map_or(0, |m| m.len());
            }
        }
        Ok((count, bytes))
    }

    /// Decides on an offer of `name` (`size` bytes): refuses an existing
    /// file unless overwriting, claims the name (its partial file, locked
    /// for as long as the returned [`Incoming`] lives), hashes what the
    /// partial file already holds to resume from it, and refuses up front
    /// when the file system has less room than the rest of the file needs.
    pub fn prepare(
        &self,
        path: &crate::xfer::SafePath,
        size: u64,
        _meta: crate::xfer::Meta,
    ) -> Result<(Incoming, Resume), Refusal> {
        let name = path.file_name();
        self.check_final_name(name)?;
        let part = Store::partial_name(name);
        let file = self.claim_partial(&part)?;
        let incoming = Incoming {
            store: self.clone(),
            name: name.clone(),
            part,
            file,
            settled: false,
        };
        let held = incoming
            .file
            .metadata()
            .map_err(|e| Refusal::disk("partial file", &e))?
            .len();
        let resume = if held == 0 || held > size {
            incoming
                .file
                .set_len(0)
                .map_err(|e| Refusal::disk("partial file", &e))?;
            Resume::Fresh
        } else {
            let (hasher, have) =
                hash_prefix(&incoming.file, held).map_err(|e| Refusal::disk("partial file", &e))?;
            Resume::From { have, hasher }
        };
        let have = match &resume {
            Resume::Fresh => 0,
            Resume::From { have, .. } => *have,
            Resume::Complete { .. } => size,
        };
        self.check_room(size.saturating_sub(have))?;
        Ok((incoming, resume))
    }

    /// Refuses a name that exists, unless it is a file (or link) that
    /// `overwrite` allows replacing.
    fn check_final_name(&self, name: &SafeName) -> Result<(), Refusal> {
        match self.entry_kind(name.as_str()) {
            Ok(libc::S_IFDIR) => Err(Refusal::new(
                RejectReason::Exists,
                "a directory has that name",
            )),
            Ok(_) if !self.inner.overwrite => Err(Refusal::new(
                RejectReason::Exists,
                "a file of that name exists on the receiver, which keeps it unless it runs with --overwrite",
            )),
            // A file, or a link that `rename` replaces without following it.
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Refusal::disk("cannot check the name", &e)),
        }
    }

    /// Refuses a file that cannot fit: `need` more bytes than the file
    /// system has free for us. (Best effort: others may fill it meanwhile;
    /// a write that fails later still ends the session with the reason.)
    fn check_room(&self, need: u64) -> Result<(), Refusal> {
        let Ok(free) = self.free_space() else {
            return Ok(());
        };
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
        // SAFETY: open directory fd, `st` is writable.
        check(unsafe { libc::fstatvfs(self.inner.dir.as_raw_fd(), &mut st) })?;
        #[allow(clippy::unnecessary_cast)] // the field types differ between platforms
        Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
    }

    /// The type bits (`S_IFMT`) of the directory entry `name`, without
    /// following it if it is a link.
    fn entry_kind(&self, name: &str) -> io::Result<libc::mode_t> {
        Ok(self.stat_entry(name)?.st_mode & libc::S_IFMT)
    }

    fn stat_entry(&self, name: &str) -> io::Result<libc::stat> {
        let c = cstr(name)?;
        // SAFETY: an all-zero `stat` is a valid value to be overwritten.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        let dir = self.inner.dir.as_raw_fd();
        // SAFETY: valid C string, open directory fd, `st` is writable.
        let rc = unsafe { libc::fstatat(dir, c.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) };
        check(rc)?;
        Ok(st)
    }

    /// Whether the entry `name` is the very file `file` is open on.
    fn names_file(&self, name: &str, file: &File) -> bool {
        let (Ok(st), Ok(meta)) = (self.stat_entry(name), file.metadata()) else {
            return false;
        };
        // The field types differ between platforms.
        #[allow(clippy::unnecessary_cast)]
        let (dev, ino) = (st.st_dev as u64, st.st_ino as u64);
        dev == meta.dev() && ino == meta.ino()
    }

    /// Opens (or creates) the partial file and locks it for this session.
    fn claim_partial(&self, part: &str) -> Result<File, Refusal> {
        // A session that held this name may publish it (linking the file
        // under its final name, then unlinking the partial name) between
        // our open and our lock: then we hold a file that is no longer the
        // partial one. Detected after locking, and opened afresh.
        for _ in 0..3 {
            let file = self.open_partial(part)?;
            // SAFETY: an open fd; flock has no memory effects.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
                let e = io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                    return Err(Refusal::busy());
                }
                return Err(Refusal::disk("cannot lock the partial file", &e));
            }
            if self.names_file(part, &file) {
                return Ok(file);
            }
        }
        Err(Refusal::busy())
    }

    fn open_partial(&self, part: &str) -> Result<File, Refusal> {
        let flags = libc::O_RDWR | libc::O_CREAT | libc::O_NOFOLLOW | libc::O_NONBLOCK;
        let file = match self.openat(part, flags, 0o600) {
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
        Ok(file)
    }

    fn openat(&self, name: &str, flags: libc::c_int, mode: libc::c_uint) -> io::Result<File> {
        let c = cstr(name)?;
        let flags = flags | libc::O_CLOEXEC;
        // SAFETY: `c` is a valid NUL-terminated string and the directory fd is open.
        let fd = unsafe { libc::openat(self.inner.dir.as_raw_fd(), c.as_ptr(), flags, mode) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by `openat` and is owned by nobody else.
        Ok(unsafe { File::from_raw_fd(fd) })
    }

    fn unlink(&self, name: &str) -> io::Result<()> {
        let c = cstr(name)?;
        // SAFETY: valid C string, open directory fd.
        check(unsafe { libc::unlinkat(self.inner.dir.as_raw_fd(), c.as_ptr(), 0) })
    }

    /// Removes the entry `name` if it still is `file` (another process may
    /// have put something else there meanwhile; that is left alone).
    fn unlink_if_same(&self, name: &str, file: &File) -> io::Result<()> {
        if self.names_file(name, file) {
            self.unlink(name)?;
        }
        Ok(())
    }

    /// Gives the open `file` the name `to` in the directory, failing if
    /// `to` exists. The descriptor is linked, not a name, so nothing another
    /// process did to the partial name can change what `to` holds.
    fn link_file(&self, file: &File, to: &str) -> io::Result<()> {
        let to = cstr(to)?;
        let dir = self.inner.dir.as_raw_fd();
        let proc = cstr(&format!("/proc/self/fd/{}", file.as_raw_fd()))?;
        // SAFETY: valid C strings, open directory fd.
        let rc = unsafe {
            libc::linkat(
                libc::AT_FDCWD,
                proc.as_ptr(),
                dir,
                to.as_ptr(),
                libc::AT_SYMLINK_FOLLOW,
            )
        };
        check(rc)
    }

    /// Gives the open `file` the name `to`, replacing any file there, via a
    /// fresh temporary name of its own and an atomic `rename`.
    fn replace_with_file(&self, file: &File, to: &str) -> io::Result<()> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let temp = format!(".echoxfer-commit-{}-{n}", std::process::id());
        self.link_file(file, &temp)?;
        let (a, b) = (cstr(&temp)?, cstr(to)?);
        let dir = self.inner.dir.as_raw_fd();
        // SAFETY: valid C strings, open directory fd.
        let renamed = check(unsafe { libc::renameat(dir, a.as_ptr(), dir, b.as_ptr()) });
        if renamed.is_err() {
            let _ = self.unlink(&temp);
        }
        renamed
    }

    fn sync_dir(&self) -> io::Result<()> {
        self.inner.dir.sync_all()
    }
}

fn cstr(name: &str) -> io::Result<CString> {
    CString::new(Path::new(name).as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a name"))
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
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

/// A file being received: its partial file, open and locked. Dropping it
/// (an interrupted transfer) keeps the partial file for a later resume,
/// unless it holds nothing (then it is removed: an empty partial file
/// resumes nothing).
#[derive(Debug)]
pub struct Incoming {
    store: Store,
    name: SafeName,
    part: String,
    file: File,
    /// Committed or discarded: nothing left to clean up.
    settled: bool,
}

impl Incoming {
    /// The final name.
    pub fn name(&self) -> &SafeName {
        &self.name
    }

    /// Data starts at `from`: cuts the partial file to that length.
    pub fn start(&mut self, from: u64) -> io::Result<()> {
        self.file.set_len(from)
    }

    /// Writes `data` at `offset` of the partial file.
    pub fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.file.write_all_at(data, offset)
    }

    /// The content is verified: makes it durable (`fsync`), gives this very
    /// file its final name atomically (never over an existing file unless
    /// overwriting), removes the partial name, and makes that durable
    /// (`fsync` of the directory). Returns the final path.
    pub fn commit(mut self) -> Result<PathBuf, Refusal> {
        self.settled = true;
        self.file
            .sync_all()
            .map_err(|e| Refusal::disk("cannot sync the file", &e))?;
        let store = &self.store;
        let name = self.name.as_str();
        let published = if store.overwrite() {
            store.replace_with_file(&self.file, name)
        } else {
            store.link_file(&self.file, name)
        };
        match published {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(Refusal::new(
                    RejectReason::Exists,
                    "a file of that name appeared meanwhile on the receiver, which keeps it unless it runs with --overwrite",
                ));
            }
            Err(e) => return Err(Refusal::disk("cannot move the file into place", &e)),
        }
        store
            .unlink_if_same(&self.part, &self.file)
            .map_err(|e| Refusal::disk("cannot remove the partial file", &e))?;
        store
            .sync_dir()
            .map_err(|e| Refusal::disk("cannot sync the directory", &e))?;
        Ok(store.dir().join(name))
    }

    /// The content did not verify: deletes the partial file.
    pub fn discard(mut self) -> io::Result<()> {
        self.settled = true;
        self.store.unlink_if_same(&self.part, &self.file)
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        // Still locked here: nobody else can be using the partial file.
        let empty = self.file.metadata().is_ok_and(|m| m.len() == 0);
        if !self.settled && empty {
            let _ = self.store.unlink_if_same(&self.part, &self.file);
        }
    }
}
