//! The small `std::fs` application for the legacy file machines: it answers
//! [`LegacyFileSender`]'s reads from a file, and writes
//! [`LegacyFileReceiver`]'s data to a temporary file that gets its final
//! name only when the sender said `quit`. The only module of
//! [`legacy`](super) that touches the file system (and it opens no sockets).
//!
//! Receiving: the temporary file is created in the target directory with
//! `create_new` (never reusing or following an existing path); at
//! [`ReceiverEvent::Complete`] it is `sync_all`ed and moved into place,
//! without overwrite by `hard_link(tmp, final)` + removing `tmp` (which
//! fails if the final name exists, atomically), with overwrite by
//! `rename`. An incomplete session (error, cut connection) removes the
//! temporary file when the app is dropped, so no truncated file is ever
//! left under the final name.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use bytes::Bytes;

use super::file::{LegacyFileReceiver, LegacyFileSender, ReceiverEvent, SenderEvent};
use crate::driver::App;

/// The name the seed receiver writes to.
pub const DEFAULT_NAME: &str = "file";

/// What a completed receive produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completed {
    /// The final file.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// BLAKE3 of its content.
    pub blake3: [u8; 32],
}

impl Completed {
    /// The BLAKE3 as lowercase hex, for a person to compare.
    pub fn blake3_hex(&self) -> String {
        self.blake3.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Writes a [`LegacyFileReceiver`]'s data into `dir`, under its final
/// name only once the transfer completed.
#[derive(Debug)]
pub struct ReceiveToDir {
    dir: PathBuf,
    final_path: PathBuf,
    tmp_path: PathBuf,
    file: Option<File>,
    overwrite: bool,
    written: u64,
    completed: Option<Completed>,
}

impl ReceiveToDir {
    /// Prepares to receive into `dir/name` (`name` one plain path
    /// component, e.g. [`DEFAULT_NAME`]). Refuses if the final file exists
    /// and `overwrite` is off; creates the temporary file now.
    pub fn create(dir: &Path, name: &str, overwrite: bool) -> io::Result<Self> {
        if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\\', '\0']) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{name:?} is not a plain file name"),
            ));
        }
        let final_path = dir.join(name);
        if !overwrite && fs::symlink_metadata(&final_path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists; refusing to overwrite it", final_path.display()),
            ));
        }
        let (tmp_path, file) = create_temp(dir, name)?;
        Ok(ReceiveToDir {
            dir: dir.to_path_buf(),
            final_path,
            tmp_path,
            file: Some(file),
            overwrite,
            written: 0,
            completed: None,
        })
    }

    /// Where the file goes once complete.
    pub fn final_path(&self) -> &Path {
        &self.final_path
    }

    /// Where the data goes until then.
    pub fn temp_path(&self) -> &Path {
        &self.tmp_path
    }

    /// The finished file, once the transfer completed and it is in place.
    pub fn completed(&self) -> Option<&Completed> {
        self.completed.as_ref()
    }

    fn finish(&mut self, size: u64, blake3: [u8; 32]) -> io::Result<()> {
        let file = self
            .file
            .take()
            .ok_or_else(|| io::Error::other("transfer already finished"))?;
        if size != self.written {
            return Err(io::Error::other("size differs from the bytes written"));
        }
        file.sync_all()?;
        drop(file);
        if self.overwrite {
            fs::rename(&self.tmp_path, &self.final_path)?;
        } else {
            // Fails with AlreadyExists if the final name appeared meanwhile.
            fs::hard_link(&self.tmp_path, &self.final_path)?;
            fs::remove_file(&self.tmp_path)?;
        }
        // Make the new name durable too (best effort: not every platform
        // can open a directory).
        if let Ok(d) = File::open(&self.dir) {
            let _ = d.sync_all();
        }
        self.completed = Some(Completed {
            path: self.final_path.clone(),
            size,
            blake3,
        });
        Ok(())
    }
}

/// Creates a fresh temporary file next to the final one, never reusing a path.
fn create_temp(dir: &Path, name: &str) -> io::Result<(PathBuf, File)> {
    let pid = std::process::id();
    let mut last = None;
    for n in 0..100u32 {
        let path = dir.join(format!(".{name}.{pid}.{n}.echoxfer-partial"));
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(f) => return Ok((path, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no temporary name free")))
}

impl Drop for ReceiveToDir {
    fn drop(&mut self) {
        if self.completed.is_none() {
            self.file = None;
            let _ = fs::remove_file(&self.tmp_path);
        }
    }
}

impl App<LegacyFileReceiver> for ReceiveToDir {
    fn on_event(
        &mut self,
        _: &mut LegacyFileReceiver,
        _: Instant,
        event: ReceiverEvent,
    ) -> io::Result<()> {
        match event {
            ReceiverEvent::Write { offset, data } => {
                if offset != self.written {
                    return Err(io::Error::other("write out of order"));
                }
                let file = self
                    .file
                    .as_mut()
                    .ok_or_else(|| io::Error::other("transfer already finished"))?;
                file.write_all(&data)?;
                self.written += data.len() as u64;
                Ok(())
            }
            ReceiverEvent::Complete { size, blake3 } => self.finish(size, blake3),
        }
    }
}

/// Answers a [`LegacyFileSender`]'s reads from a file.
#[derive(Debug)]
pub struct SendFromFile {
    file: File,
    acked: u64,
}

impl SendFromFile {
    /// Opens `path`; returns the app and the file's size, for
    /// [`LegacyFileSender::new`].
    pub fn open(path: &Path) -> io::Result<(Self, u64)> {
        let file = File::open(path)?;
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a regular file", path.display()),
            ));
        }
        Ok((SendFromFile { file, acked: 0 }, meta.len()))
    }

    /// Bytes the receiver acknowledged so far.
    pub fn acked(&self) -> u64 {
        self.acked
    }
}

impl App<LegacyFileSender> for SendFromFile {
    fn on_event(
        &mut self,
        machine: &mut LegacyFileSender,
        _: Instant,
        event: SenderEvent,
    ) -> io::Result<()> {
        match event {
            SenderEvent::Read { offset, len } => {
                let mut buf = vec![0u8; len];
                self.file.seek(SeekFrom::Start(offset))?;
                self.file.read_exact(&mut buf).map_err(|e| {
                    if e.kind() == io::ErrorKind::UnexpectedEof {
                        io::Error::other("the file shrank while being sent")
                    } else {
                        e
                    }
                })?;
                machine
                    .provide(offset, Bytes::from(buf))
                    .map_err(io::Error::other)
            }
            SenderEvent::Progress { acked, .. } => {
                self.acked = acked;
                Ok(())
            }
        }
    }
}
