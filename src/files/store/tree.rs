//! Directories under the store's handle, and every call made in one. A
//! directory is opened one component at a time from its parent's
//! descriptor with `O_DIRECTORY | O_NOFOLLOW`, so no offered path and no
//! symbolic link planted in the destination leads outside it: a component
//! that is a link (or a file, or anything but a directory) is refused,
//! never followed.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::Refusal;
use crate::codec::RejectReason;
use crate::xfer::SafeName;

/// Parent directories a [`ParentCache`] keeps open: enough for the few
/// sessions that share a store to each find the directory they fill.
const CACHED_DIRS: usize = 8;

/// An open directory. Cheap to clone: clones share the descriptor.
#[derive(Debug, Clone)]
pub(super) struct Dir {
    file: Arc<File>,
    /// Device and inode: which directory it is, to sync each one once.
    id: (u64, u64),
}

impl Dir {
    /// Wraps an open directory.
    pub(super) fn new(file: File) -> io::Result<Dir> {
        let meta = file.metadata()?;
        if !meta.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                "not a directory",
            ));
        }
        Ok(Dir {
            file: Arc::new(file),
            id: (meta.dev(), meta.ino()),
        })
    }

    fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    /// Which directory this is (device, inode).
    pub(super) fn id(&self) -> (u64, u64) {
        self.id
    }

    /// The descriptor, for calls on the directory itself.
    pub(super) fn file(&self) -> &File {
        &self.file
    }

    /// Whether the directory was removed since it was opened (its
    /// descriptor still works, but nothing can be created in it).
    fn is_removed(&self) -> bool {
        self.file.metadata().map_or(true, |m| m.nlink() == 0)
    }

    /// The entry `name`, not following it if it is a link.
    pub(super) fn stat(&self, name: &str) -> io::Result<libc::stat> {
        let c = cstr(name)?;
        // SAFETY: an all-zero `stat` is a valid value to be overwritten.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: valid C string, open directory fd, `st` is writable.
        let rc =
            unsafe { libc::fstatat(self.fd(), c.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) };
        check(rc)?;
        Ok(st)
    }

    /// Opens `name` in this directory (`O_CLOEXEC` is added).
    pub(super) fn open(
        &self,
        name: &str,
        flags: libc::c_int,
        mode: libc::c_uint,
    ) -> io::Result<File> {
        let c = cstr(name)?;
        let flags = flags | libc::O_CLOEXEC;
        // SAFETY: `c` is a valid NUL-terminated string and the directory fd is open.
        let fd = unsafe { libc::openat(self.fd(), c.as_ptr(), flags, mode) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by `openat` and is owned by nobody else.
        Ok(unsafe { File::from_raw_fd(fd) })
    }

    /// Opens the subdirectory `name`, never through a link: a link, a
    /// file or anything else fails with `ELOOP` or `ENOTDIR`.
    fn open_dir(&self, name: &str) -> io::Result<Dir> {
        let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_NONBLOCK;
        Dir::new(self.open(name, flags, 0)?)
    }

    /// Creates the subdirectory `name` (the process umask applies to `mode`).
    pub(super) fn mkdir(&self, name: &str, mode: libc::mode_t) -> io::Result<()> {
        let c = cstr(name)?;
        // SAFETY: valid C string, open directory fd.
        check(unsafe { libc::mkdirat(self.fd(), c.as_ptr(), mode) })
    }

    fn unlink(&self, name: &str) -> io::Result<()> {
        let c = cstr(name)?;
        // SAFETY: valid C string, open directory fd.
        check(unsafe { libc::unlinkat(self.fd(), c.as_ptr(), 0) })
    }

    /// Whether the entry `name` is the very file `file` is open on.
    /// Whether the entry `name` is the file `meta` describes.
    pub(super) fn names_meta(&self, name: &str, meta: &std::fs::Metadata) -> bool {
        let Ok(st) = self.stat(name) else {
            return false;
        };
        // The field types differ between platforms.
        #[allow(clippy::unnecessary_cast)]
        let (dev, ino) = (st.st_dev as u64, st.st_ino as u64);
        dev == meta.dev() && ino == meta.ino()
    }

    pub(super) fn names_file(&self, name: &str, file: &File) -> bool {
        let (Ok(st), Ok(meta)) = (self.stat(name), file.metadata()) else {
            return false;
        };
        // The field types differ between platforms.
        #[allow(clippy::unnecessary_cast)]
        let (dev, ino) = (st.st_dev as u64, st.st_ino as u64);
        dev == meta.dev() && ino == meta.ino()
    }

    /// Removes the entry `name` if it still is `file` (another process may
    /// have put something else there meanwhile; that is left alone).
    pub(super) fn unlink_if_same(&self, name: &str, file: &File) -> io::Result<()> {
        if self.names_file(name, file) {
            self.unlink(name)?;
        }
        Ok(())
    }

    /// Gives the open `file` the name `to` in this directory, failing if
    /// `to` exists. The descriptor is linked, not a name, so nothing another
    /// process did to the partial name can change what `to` holds.
    pub(super) fn link_file(&self, file: &File, to: &str) -> io::Result<()> {
        let to = cstr(to)?;
        let proc = cstr(&format!("/proc/self/fd/{}", file.as_raw_fd()))?;
        // SAFETY: valid C strings, open directory fd.
        let rc = unsafe {
            libc::linkat(
                libc::AT_FDCWD,
                proc.as_ptr(),
                self.fd(),
                to.as_ptr(),
                libc::AT_SYMLINK_FOLLOW,
            )
        };
        check(rc)
    }

    /// Gives the open `file` the name `to`, replacing any file there, via a
    /// fresh temporary name of its own and an atomic `rename`.
    pub(super) fn replace_with_file(&self, file: &File, to: &str) -> io::Result<()> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let temp = format!(".echoxfer-commit-{}-{n}", std::process::id());
        self.link_file(file, &temp)?;
        let (a, b) = (cstr(&temp)?, cstr(to)?);
        let dir = self.fd();
        // SAFETY: valid C strings, open directory fd.
        let renamed = check(unsafe { libc::renameat(dir, a.as_ptr(), dir, b.as_ptr()) });
        if renamed.is_err() {
            let _ = self.unlink(&temp);
        }
        renamed
    }

    /// Makes the directory's entries durable.
    pub(super) fn sync(&self) -> io::Result<()> {
        super::platform::flush(&self.file)
    }
}

/// `components[..=last]` joined with `/`: a path relative to the store,
/// fit for a message to the peer.
pub(super) fn relative(components: &[SafeName], last: usize) -> String {
    let shown = &components[..=last.min(components.len().saturating_sub(1))];
    let parts: Vec<&str> = shown.iter().map(SafeName::as_str).collect();
    parts.join("/")
}

/// The refusal for a component that exists but is not a directory.
fn not_a_directory(components: &[SafeName], at: usize) -> Refusal {
    let rel = relative(components, at);
    Refusal::new(
        RejectReason::NotADirectory,
        format!(
            "{rel} is not a directory on the receiver (a file or a symbolic link, which is never followed); remove it there or send to another path"
        ),
    )
}

/// Opens the directory `components` below `root`, one component at a
/// time, never following a link. With `create`, missing components are
/// made (`mkdirat` mode 0777, which the umask narrows as `mkdir -p` does)
/// and each directory an entry was made in is added to `created_in` (its
/// entries need a sync before they are durable).
pub(super) fn walk(
    root: &Dir,
    components: &[SafeName],
    create: bool,
    created_in: &mut Vec<Dir>,
) -> Result<Dir, Refusal> {
    let mut dir = root.clone();
    for (i, c) in components.iter().enumerate() {
        dir = step(&dir, c.as_str(), create, created_in).map_err(|e| match e {
            Step::NotADirectory => not_a_directory(components, i),
            Step::Io(e) => Refusal::disk(
                &format!("cannot open the directory {}", relative(components, i)),
                &e,
            ),
        })?;
    }
    Ok(dir)
}

enum Step {
    NotADirectory,
    Io(io::Error),
}

/// Opens (with `create`, makes first if missing) the subdirectory `name`.
fn step(dir: &Dir, name: &str, create: bool, created_in: &mut Vec<Dir>) -> Result<Dir, Step> {
    // Another process may make or remove the same name meanwhile: a few
    // tries, then its last error stands.
    for _ in 0..3 {
        match dir.open_dir(name) {
            Ok(sub) => return Ok(sub),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)) => {
                return Err(Step::NotADirectory)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound && create => match dir.mkdir(name, 0o777)
            {
                Ok(()) => created_in.push(dir.clone()),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(Step::Io(e)),
            },
            Err(e) => return Err(Step::Io(e)),
        }
    }
    Err(Step::Io(io::Error::from_raw_os_error(libc::ENOENT)))
}

/// The last few parent directories opened, by their components, so that
/// files offered one after another in one directory do not walk its path
/// again each time.
#[derive(Debug, Default)]
pub(super) struct ParentCache {
    /// Most recently used last.
    dirs: Mutex<Vec<(Vec<SafeName>, Dir)>>,
}

impl ParentCache {
    /// The cached directory `components`, unless it was removed meanwhile.
    pub(super) fn get(&self, components: &[SafeName]) -> Option<Dir> {
        let mut dirs = self.dirs.lock().unwrap_or_else(|p| p.into_inner());
        let at = dirs.iter().position(|(k, _)| k == components)?;
        let entry = dirs.remove(at);
        if entry.1.is_removed() {
            return None;
        }
        let dir = entry.1.clone();
        dirs.push(entry);
        Some(dir)
    }

    /// Remembers `dir` as the directory `components`.
    pub(super) fn put(&self, components: &[SafeName], dir: &Dir) {
        let mut dirs = self.dirs.lock().unwrap_or_else(|p| p.into_inner());
        dirs.retain(|(k, _)| k != components);
        if dirs.len() == CACHED_DIRS {
            dirs.remove(0);
        }
        dirs.push((components.to_vec(), dir.clone()));
    }
}

pub(super) fn cstr(name: &str) -> io::Result<CString> {
    CString::new(Path::new(name).as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a name"))
}

pub(super) fn check(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}
