//! A file a sender offers: opened once, read in chunks at offsets into
//! `Bytes` the machine can queue without copying again.
//!
//! Reads are positioned (`pread`) and never use the file position, so
//! [`Source::next_data`] and [`Source::data_end`], which move it with
//! `lseek`, can be interleaved with them freely.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::xfer::{EntryKind, FileSpec, SafeName};

/// A local file to send.
#[derive(Debug)]
pub struct Source {
    path: PathBuf,
    file: File,
    spec: FileSpec,
    /// Fewer bytes allocated than its size when it was opened.
    holes: bool,
}

impl Source {
    /// Opens `path`; it is offered under its own file name, which must be a
    /// valid [`SafeName`] of at most `max_name_len` bytes.
    pub fn open(path: impl AsRef<Path>, max_name_len: usize) -> io::Result<Source> {
        let path = path.as_ref().to_path_buf();
        let invalid = |msg: String| io::Error::new(io::ErrorKind::InvalidInput, msg);
        let base = path
            .file_name()
            .ok_or_else(|| invalid(format!("{} has no file name", path.display())))?;
        let name = SafeName::new(base.as_bytes(), max_name_len)
            .map_err(|e| invalid(format!("{}: {e}", path.display())))?;
        let named = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
        let file = open_read_only(&path, false).map_err(named)?;
        let meta = file.metadata().map_err(named)?;
        if !meta.is_file() {
            return Err(invalid(format!("{} is not a regular file", path.display())));
        }
        let mut spec = FileSpec::file(name, meta.len());
        spec.meta = super::walk::meta_of(&meta);
        Ok(Source::opened(path, file, spec, &meta))
    }

    fn opened(path: PathBuf, file: File, spec: FileSpec, meta: &std::fs::Metadata) -> Source {
        let holes = has_holes(meta);
        Source {
            path,
            file,
            spec,
            holes,
        }
    }

    /// Opens the file at `path` that a [`walk`](super::walk) listed as
    /// `spec` with `dev_ino`, without following a symbolic link, and
    /// checks that it is still that file: a regular file with the same
    /// device and inode. If it was replaced in between (by another file, a
    /// link, a directory or a fifo), the error names the path and says to
    /// run send again. The file is offered as `spec`.
    pub fn open_entry(path: &Path, spec: FileSpec, dev_ino: (u64, u64)) -> io::Result<Source> {
        let changed = |what: &str| {
            io::Error::other(format!("{}: {what} since it was listed", path.display()))
        };
        if spec.kind != EntryKind::File {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: is a directory, not a file to read", path.display()),
            ));
        }
        let file = match open_read_only(path, true) {
            Ok(file) => file,
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                return Err(changed("became a symbolic link"))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(changed("vanished")),
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("{}: {e}; check its permissions", path.display()),
                ))
            }
        };
        let meta = file
            .metadata()
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        if !meta.is_file() {
            return Err(changed("stopped being a regular file"));
        }
        if (meta.dev(), meta.ino()) != dev_ino {
            return Err(changed("was replaced by another file"));
        }
        Ok(Source::opened(path.to_path_buf(), file, spec, &meta))
    }

    /// Its name and size as offered.
    pub fn spec(&self) -> &FileSpec {
        &self.spec
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads `len` bytes at `offset`, or fewer if the file has shrunk (the
    /// machine then refuses the chunk: the file changed). Positioned reads
    /// (`pread`): no seek, and one system call per chunk as a rule.
    pub fn read_at(&self, offset: u64, len: usize) -> io::Result<Bytes> {
        let mut buf = vec![0u8; len];
        let mut got = 0;
        while got < len {
            match self.file.read_at(&mut buf[got..], offset + got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        buf.truncate(got);
        Ok(Bytes::from(buf))
    }

    /// BLAKE3 over the first `len` bytes (fewer if the file is shorter):
    /// the hasher and the number of bytes hashed.
    pub fn hash_prefix(&self, len: u64) -> io::Result<(blake3::Hasher, u64)> {
        super::store::hash_prefix(&self.file, len)
    }

    /// The offset of the next byte of data at or after `offset`, skipping
    /// a hole (`lseek` with `SEEK_DATA`). Past the last data, the file's
    /// size (or `offset`, if that is larger). On a file system that cannot
    /// tell, `offset`: everything counts as data.
    ///
    /// Moves the file position, which reads do not use (see the module docs).
    pub fn next_data(&self, offset: u64) -> io::Result<u64> {
        match self.seek(offset, libc::SEEK_DATA)? {
            Seek::At(at) => Ok(at),
            Seek::PastData => Ok(self.size()?.max(offset)),
            Seek::Unsupported => Ok(offset),
        }
    }

    /// Where the run of data starting at `offset` ends: the start of the
    /// next hole, or the file's size (`lseek` with `SEEK_HOLE`; the end of
    /// a file counts as a hole). `offset` itself if it is in a hole or at
    /// or past the end. On a file system that cannot tell, the file's size.
    ///
    /// Moves the file position, which reads do not use (see the module docs).
    pub fn data_end(&self, offset: u64) -> io::Result<u64> {
        match self.seek(offset, libc::SEEK_HOLE)? {
            Seek::At(at) => Ok(at),
            Seek::PastData => Ok(offset),
            Seek::Unsupported => Ok(self.size()?.max(offset)),
        }
    }

    /// Whether the file may have holes: fewer bytes allocated than its
    /// size (a file without is read straight, without looking for holes).
    pub fn may_have_holes(&self) -> bool {
        self.holes
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn seek(&self, offset: u64, whence: libc::c_int) -> io::Result<Seek> {
        let Ok(at) = libc::off_t::try_from(offset) else {
            return Ok(Seek::PastData);
        };
        // SAFETY: lseek on a descriptor this Source owns and keeps open;
        // it touches no memory.
        let got = unsafe { libc::lseek(self.file.as_raw_fd(), at, whence) };
        if got >= 0 {
            return Ok(Seek::At(got as u64));
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ENXIO) => Ok(Seek::PastData),
            Some(libc::EINVAL) | Some(libc::EOPNOTSUPP) => Ok(Seek::Unsupported),
            _ => Err(io::Error::new(
                e.kind(),
                format!("{}: {e}", self.path.display()),
            )),
        }
    }
}

/// What `lseek` with `SEEK_DATA` or `SEEK_HOLE` answered.
enum Seek {
    /// The offset found.
    At(u64),
    /// `ENXIO`: no data at or after the offset (it is at or past the end,
    /// or only a hole follows it).
    PastData,
    /// The file system does not support the query.
    Unsupported,
}

/// Opens `path` for reading. `O_NONBLOCK` so that a fifo put where a file
/// was cannot block the open (waiting for a writer); cleared again, as it
/// means nothing for a regular file. With `no_follow`, a symbolic link as
/// the last component fails with `ELOOP`. Close-on-exec, as std always sets.
/// Fewer bytes allocated (`st_blocks`, 512-byte units) than the size.
fn has_holes(meta: &std::fs::Metadata) -> bool {
    meta.blocks().saturating_mul(512) < meta.len()
}

fn open_read_only(path: &Path, no_follow: bool) -> io::Result<File> {
    let mut flags = libc::O_NONBLOCK;
    if no_follow {
        flags |= libc::O_NOFOLLOW;
    }
    // O_NONBLOCK so that a fifo put where a file was cannot hang the open;
    // it changes nothing for the regular files that are then read (the
    // caller checks that it is one), so it stays set.
    OpenOptions::new()
        .read(true)
        .custom_flags(flags | libc::O_CLOEXEC)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::walk;
    use crate::xfer::PathLimits;
    use std::os::unix::fs::symlink;

    fn limits() -> PathLimits {
        PathLimits {
            max_name_len: 255,
            max_depth: 16,
            max_path_len: 4096,
        }
    }

    /// Walks `dir` and returns the entry for `dir/name`.
    fn listed(dir: &Path, name: &str) -> crate::files::WalkEntry {
        let walk = walk(&[dir.to_path_buf()], &limits()).unwrap();
        let local = dir.join(name);
        walk.entries.into_iter().find(|e| e.local == local).unwrap()
    }

    fn open(e: &crate::files::WalkEntry) -> io::Result<Source> {
        Source::open_entry(&e.local, e.spec.clone(), e.dev_ino)
    }

    #[test]
    fn open_entry_reads_the_file_the_walk_listed() {
        let tmp = tempfile::tempdir().unwrap();
        fs_write(&tmp.path().join("f"), b"hello");
        let entry = listed(tmp.path(), "f");
        let source = open(&entry).unwrap();
        assert_eq!(source.spec(), &entry.spec);
        assert_eq!(&source.read_at(1, 3).unwrap()[..], b"ell");
        let (hasher, n) = source.hash_prefix(5).unwrap();
        assert_eq!((hasher.finalize(), n), (blake3::hash(b"hello"), 5));
    }

    #[test]
    fn open_entry_refuses_a_file_replaced_after_the_walk() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("f");
        fs_write(&f, b"old");
        let entry = listed(tmp.path(), "f");
        // A new file under the same name: another inode (the old one is
        // kept alive so the inode number cannot be reused).
        let _keep = File::open(&f).unwrap();
        let new = tmp.path().join("new");
        fs_write(&new, b"new");
        std::fs::rename(&new, &f).unwrap();
        let err = open(&entry).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{}: was replaced by another file since it was listed",
                f.display()
            )
        );
    }

    #[test]
    fn open_entry_refuses_a_symlink_put_where_the_file_was() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("f");
        fs_write(&f, b"data");
        let entry = listed(tmp.path(), "f");
        // The link points at the very file listed: only O_NOFOLLOW stops it.
        let moved = tmp.path().join("moved");
        std::fs::rename(&f, &moved).unwrap();
        symlink(&moved, &f).unwrap();
        let err = open(&entry).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with(&format!("{}: ", f.display())), "{text}");
        assert!(text.contains("symbolic link"), "{text}");
        assert!(text.contains("since it was listed"), "{text}");
    }

    #[test]
    fn open_entry_refuses_a_fifo_put_where_the_file_was_without_blocking() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("f");
        fs_write(&f, b"data");
        let entry = listed(tmp.path(), "f");
        std::fs::remove_file(&f).unwrap();
        let c = std::ffi::CString::new(f.as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        let (tx, rx) = std::sync::mpsc::channel();
        let opener = std::thread::spawn(move || {
            // The receiver is gone only if the test already failed.
            let _ = tx.send(open(&entry).map(drop));
        });
        let answer = rx.recv_timeout(std::time::Duration::from_secs(60));
        if answer.is_err() {
            // The open is stuck waiting for a writer: be one, so that the
            // thread ends, then fail.
            let _writer = OpenOptions::new().write(true).open(&f).unwrap();
            opener.join().unwrap();
            panic!("opening a fifo blocked");
        }
        let err = answer.unwrap().unwrap_err();
        assert!(
            err.to_string().contains("stopped being a regular file"),
            "{err}"
        );
        opener.join().unwrap();
    }

    fn fs_write(path: &Path, content: &[u8]) {
        std::fs::write(path, content).unwrap();
    }

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn next_data_and_data_end_report_the_data_run_of_a_sparse_file() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("sparse");
        let file = File::create(&path).unwrap();
        file.set_len(3 * MIB).unwrap();
        file.write_all_at(&[0xab; 64 * 1024], MIB).unwrap();
        file.sync_all().unwrap();
        drop(file);
        let blocks = std::fs::metadata(&path).unwrap().blocks();
        if blocks * 512 >= 3 * MIB {
            eprintln!("this file system keeps no holes; nothing to check");
            return;
        }
        let source = Source::open(&path, 255).unwrap();
        assert_eq!(source.next_data(0).unwrap(), MIB);
        assert_eq!(source.next_data(MIB + 5).unwrap(), MIB + 5);
        assert_eq!(source.data_end(MIB).unwrap(), MIB + 64 * 1024);
        assert_eq!(source.data_end(0).unwrap(), 0, "0 is in a hole");
        // Only a hole after the data: none left, the file's size.
        assert_eq!(source.next_data(MIB + 64 * 1024).unwrap(), 3 * MIB);
        assert_eq!(source.next_data(5 * MIB).unwrap(), 5 * MIB);
        // The file position moved; positioned reads do not care.
        assert_eq!(&source.read_at(MIB - 1, 2).unwrap()[..], &[0, 0xab]);
    }

    #[test]
    fn a_file_without_holes_is_one_data_run() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("dense");
        fs_write(&path, &[1; 10_000]);
        let source = Source::open(&path, 255).unwrap();
        assert_eq!(source.next_data(0).unwrap(), 0);
        assert_eq!(source.data_end(0).unwrap(), 10_000);
        assert_eq!(source.next_data(10_000).unwrap(), 10_000);
    }
}
