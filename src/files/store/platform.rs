//! The store's platform seam: the few calls where Linux has a faster way
//! than POSIX, and where another system needs a stronger one. The rest of
//! the store calls these and never asks which system it runs on.
//!
//! * **Unnamed files** for small files: Linux's `O_TMPFILE`, linked in
//!   under the final name at commit; elsewhere none (the store then uses a
//!   named partial file, as for large files).
//! * **Durability** of a group of files: on Linux their writeback is
//!   started at once (`sync_file_range`) and each is then `fsync`ed, or one
//!   `syncfs` covers a large group (`group.rs` has the measurements);
//!   elsewhere each file and directory is flushed on its own, with
//!   [`Flush::FullFsync`] on macOS, whose `fsync` leaves the data in the
//!   drive's cache (Apple's fsync(2): "F_FULLFSYNC ... asks the drive to
//!   flush all buffered data to the permanent storage device").
//!
//! [`Strategy::current`] picks Linux's way on Linux. The `portable-store`
//! feature forces the portable way there too, so that the code macOS runs
//! is tested on Linux (CI runs the store's and the CLI's tests again with
//! it). What it touches: the file descriptors it is given.

use std::fs::File;
use std::io;

use super::tree::Dir;

/// Which way the store goes where systems differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Linux's fast paths: `O_TMPFILE`, `sync_file_range`, `syncfs`.
    Linux,
    /// What every Unix has: named partial files, a flush per file
    /// ([`Flush::FullFsync`] on macOS).
    Portable,
}

impl Strategy {
    /// Linux's on Linux, unless the `portable-store` feature forces the
    /// portable strategy; the portable one everywhere else.
    pub const fn current() -> Strategy {
        if cfg!(all(target_os = "linux", not(feature = "portable-store"))) {
            Strategy::Linux
        } else {
            Strategy::Portable
        }
    }
}

/// How one file (or directory) is flushed to the storage device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flush {
    /// `fsync`: durable where the system's `fsync` reaches the device.
    Fsync,
    /// `fcntl(F_FULLFSYNC)`: macOS, where `fsync` does not.
    FullFsync,
}

/// The flush a system needs, by its `std::env::consts::OS` name.
pub fn flush_for(os: &str) -> Flush {
    match os {
        "macos" | "ios" => Flush::FullFsync,
        _ => Flush::Fsync,
    }
}

/// Flushes `file` (data and metadata) as this system needs.
pub fn flush(file: &File) -> io::Result<()> {
    match flush_for(std::env::consts::OS) {
        Flush::FullFsync => full_fsync(file),
        Flush::Fsync => file.sync_all(),
    }
}

#[cfg(any(target_os = "macos", target_os = "ios"))]
fn full_fsync(file: &File) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: an open fd; F_FULLFSYNC takes no argument and touches no memory.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_FULLFSYNC) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(not(any(target_os = "macos", target_os = "ios")))]
fn full_fsync(file: &File) -> io::Result<()> {
    file.sync_all()
}

/// An unnamed file in `dir` for a small file's data, where the strategy
/// has them (`None`: use a named partial file).
pub(super) fn unnamed_file(dir: &Dir) -> Option<File> {
    match Strategy::current() {
        #[cfg(target_os = "linux")]
        Strategy::Linux => dir.open(".", libc::O_TMPFILE | libc::O_RDWR, 0o600).ok(),
        _ => {
            let _ = dir;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linux_keeps_its_fast_paths_unless_portable_is_forced() {
        let want = if cfg!(feature = "portable-store") || !cfg!(target_os = "linux") {
            Strategy::Portable
        } else {
            Strategy::Linux
        };
        assert_eq!(Strategy::current(), want);
    }

    #[test]
    fn macos_flushes_with_full_fsync_and_other_systems_with_fsync() {
        assert_eq!(flush_for("macos"), Flush::FullFsync);
        assert_eq!(flush_for("ios"), Flush::FullFsync);
        assert_eq!(flush_for("linux"), Flush::Fsync);
        assert_eq!(flush_for("freebsd"), Flush::Fsync);
    }

    #[test]
    fn unnamed_files_exist_only_with_the_linux_strategy() {
        let dir = tempfile::tempdir().unwrap();
        let handle = Dir::new(File::open(dir.path()).unwrap()).unwrap();
        let unnamed = unnamed_file(&handle);
        match Strategy::current() {
            // tmpfs and ext4 have O_TMPFILE; a file system without it
            // would make this None, which the store also handles.
            Strategy::Linux => assert!(unnamed.is_some(), "no O_TMPFILE here"),
            Strategy::Portable => assert!(unnamed.is_none()),
        }
    }
}
