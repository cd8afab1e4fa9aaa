//! A file a sender offers: opened once, read in chunks at offsets into
//! `Bytes` the machine can queue without copying again.

use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::xfer::{FileSpec, SafeName};

/// A local file to send.
#[derive(Debug)]
pub struct Source {
    path: PathBuf,
    file: File,
    spec: FileSpec,
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
        let file = File::open(&path).map_err(named)?;
        let meta = file.metadata().map_err(named)?;
        if !meta.is_file() {
            return Err(invalid(format!("{} is not a regular file", path.display())));
        }
        let spec = FileSpec::file(name, meta.len());
        Ok(Source { path, file, spec })
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

    /// TEMPORARY shim.
    pub fn open_entry(path: &Path, _spec: FileSpec, _dev_ino: (u64, u64)) -> io::Result<Source> {
        Source::open(path, 255)
    }
    /// TEMPORARY shim.
    pub fn may_have_holes(&self) -> bool {
        false
    }
    /// TEMPORARY shim.
    pub fn next_data(&self, offset: u64) -> io::Result<u64> {
        Ok(offset)
    }
    /// TEMPORARY shim.
    pub fn data_end(&self, _offset: u64) -> io::Result<u64> {
        Ok(self.spec.size)
    }
}
