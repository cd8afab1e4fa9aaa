//! A receiver's destination directory. Every file operation is relative to
//! a handle on the directory (`openat`, `linkat`, `renameat`, `unlinkat`)
//! and never follows a symbolic link, so a name can neither leave the
//! directory nor be redirected through a link planted in it (rsync
//! CVE-2024-12086..12088, croc PR 1191). Data goes to a partial file under
//! a temporary name; only a verified, synced file is moved to its final
//! name, atomically, and without `overwrite` never over an existing one.

use std::collections::HashSet;
use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

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
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    dir: File,
    overwrite: bool,
    busy: Mutex<HashSet<String>>,
}

/// A destination directory, shared by every session of a server (clones
/// share the set of names being received, so two sessions never write the
/// same name at once).
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
                busy: Mutex::new(HashSet::new()),
            }),
        })
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

    /// Decides on an offer of `name` (`size` bytes): claims the name for
    /// this session, refuses an existing file unless overwriting, and opens
    /// (or creates) the partial file, hashing what it already holds to
    /// resume from it.
    pub fn prepare(&self, name: &SafeName, size: u64) -> Result<(Incoming, Resume), Refusal> {
        let claim = Claim::take(&self.inner, name)?;
        match self.entry_kind(name.as_str()) {
            Ok(_) if !self.inner.overwrite => {
                return Err(Refusal::new(RejectReason::Exists, "file exists"));
            }
            Ok(libc::S_IFDIR) => {
                return Err(Refusal::new(
                    RejectReason::Exists,
                    "a directory has that name",
                ));
            }
            // A file, or a link that `rename` replaces without following it.
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Refusal::disk("cannot check the name", &e)),
        }
        let part = Store::partial_name(name);
        let file = self.open_partial(&part)?;
        let held = file
            .metadata()
            .map_err(|e| Refusal::disk("partial file", &e))?
            .len();
        let resume = if held == 0 || held > size {
            file.set_len(0)
                .map_err(|e| Refusal::disk("partial file", &e))?;
            Resume::Fresh
        } else {
            let (hasher, have) =
                hash_prefix(&file, held).map_err(|e| Refusal::disk("partial file", &e))?;
            Resume::From { have, hasher }
        };
        let incoming = Incoming {
            store: self.clone(),
            name: name.clone(),
            part,
            file,
            _claim: claim,
        };
        Ok((incoming, resume))
    }

    /// The type bits (`S_IFMT`) of the directory entry `name`, without
    /// following it if it is a link.
    fn entry_kind(&self, name: &str) -> io::Result<libc::mode_t> {
        let c = cstr(name)?;
        // SAFETY: an all-zero `stat` is a valid value to be overwritten.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        let dir = self.inner.dir.as_raw_fd();
        // SAFETY: valid C string, open directory fd, `st` is writable.
        let rc = unsafe { libc::fstatat(dir, c.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) };
        check(rc)?;
        Ok(st.st_mode & libc::S_IFMT)
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

    /// Moves `from` to `to` within the directory: `rename` when replacing is
    /// allowed, else `link` (which fails if `to` exists) and `unlink`.
    fn publish(&self, from: &str, to: &str) -> io::Result<()> {
        let (a, b) = (cstr(from)?, cstr(to)?);
        let dir = self.inner.dir.as_raw_fd();
        if self.inner.overwrite {
            // SAFETY: valid C strings, open directory fd.
            return check(unsafe { libc::renameat(dir, a.as_ptr(), dir, b.as_ptr()) });
        }
        // SAFETY: valid C strings, open directory fd; flags 0: never follow `from`.
        check(unsafe { libc::linkat(dir, a.as_ptr(), dir, b.as_ptr(), 0) })?;
        self.unlink(from)
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

/// A name being received by one session; released when dropped.
#[derive(Debug)]
struct Claim {
    inner: Arc<Inner>,
    name: String,
}

impl Claim {
    fn take(inner: &Arc<Inner>, name: &SafeName) -> Result<Claim, Refusal> {
        let mut busy = inner.busy.lock().unwrap_or_else(|p| p.into_inner());
        if !busy.insert(name.to_string()) {
            return Err(Refusal::new(
                RejectReason::Busy,
                "another transfer of this name is in progress",
            ));
        }
        Ok(Claim {
            inner: inner.clone(),
            name: name.to_string(),
        })
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut busy = self.inner.busy.lock().unwrap_or_else(|p| p.into_inner());
        busy.remove(&self.name);
    }
}

/// A file being received: its partial file, open. Dropping it (an
/// interrupted transfer) keeps the partial file for a later resume.
#[derive(Debug)]
pub struct Incoming {
    store: Store,
    name: SafeName,
    part: String,
    file: File,
    _claim: Claim,
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

    /// The content is verified: makes it durable (`fsync`), moves it to its
    /// final name atomically, and makes the move durable (`fsync` of the
    /// directory). Returns the final path.
    pub fn commit(self) -> Result<PathBuf, Refusal> {
        self.file
            .sync_all()
            .map_err(|e| Refusal::disk("cannot sync the file", &e))?;
        match self.store.publish(&self.part, self.name.as_str()) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(Refusal::new(RejectReason::Exists, "file exists"));
            }
            Err(e) => return Err(Refusal::disk("cannot move the file into place", &e)),
        }
        self.store
            .sync_dir()
            .map_err(|e| Refusal::disk("cannot sync the directory", &e))?;
        Ok(self.store.dir().join(self.name.as_str()))
    }

    /// The content did not verify: deletes the partial file.
    pub fn discard(self) -> io::Result<()> {
        self.store.unlink(&self.part)
    }
}
