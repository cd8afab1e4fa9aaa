//! The small `std::fs` application for the legacy file machines
//! ([`crate::legacy`]): it answers [`LegacyFileSender`]'s reads from a
//! file, and writes [`LegacyFileReceiver`]'s data to a temporary file that
//! gets its final name only when the sender said `quit`. It opens no
//! sockets. It lives here, with the other apps, rather than in `legacy`:
//! the machines do not depend on the drivers whose [`App`] contract it
//! implements.
//!
//! Receiving: the temporary file is created in the target directory with
//! `create_new` (never reusing or following an existing path); at
//! [`LegacyReceiverEvent::Complete`] it is `sync_all`ed and moved into place,
//! without overwrite by `hard_link(tmp, final)` + removing `tmp` (which
//! fails if the final name exists, atomically), with overwrite by
//! `rename`. An incomplete session (error, cut connection) removes the
//! temporary file when it is dropped, so no truncated file is ever left
//! under the final name.
//!
//! Every file-system call after opening runs in a [`Work`], off the
//! driver's event loop (see [`crate::driver::work`]).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::mem;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use bytes::Bytes;

use crate::driver::{App, Work};
use crate::legacy::{LegacyFileReceiver, LegacyFileSender, LegacyReceiverEvent, LegacySenderEvent};

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
    final_path: PathBuf,
    tmp_path: PathBuf,
    /// `None` while a [`Work`] writes to it.
    temp: Option<TempFile>,
    /// What the machine's events asked for, until handed out as one work.
    queued: Vec<Op>,
    completed: Option<Completed>,
}

/// The temporary file and what moving it into place needs. Removed when
/// dropped unless it was moved into place.
#[derive(Debug)]
struct TempFile {
    dir: PathBuf,
    final_path: PathBuf,
    tmp_path: PathBuf,
    file: Option<File>,
    overwrite: bool,
    written: u64,
    placed: bool,
}

/// One call for the temporary file.
#[derive(Debug)]
enum Op {
    Write { offset: u64, data: Bytes },
    Complete { size: u64, blake3: [u8; 32] },
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
        let temp = TempFile {
            dir: dir.to_path_buf(),
            final_path: final_path.clone(),
            tmp_path: tmp_path.clone(),
            file: Some(file),
            overwrite,
            written: 0,
            placed: false,
        };
        Ok(ReceiveToDir {
            final_path,
            tmp_path,
            temp: Some(temp),
            queued: Vec::new(),
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
}

impl TempFile {
    /// Makes the calls in order (this may block), up to the first failure;
    /// returns the finished file if one was completed.
    fn run(&mut self, ops: Vec<Op>) -> io::Result<Option<Completed>> {
        let mut completed = None;
        for op in ops {
            match op {
                Op::Write { offset, data } => self.write(offset, &data)?,
                Op::Complete { size, blake3 } => completed = Some(self.finish(size, blake3)?),
            }
        }
        Ok(completed)
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        if offset != self.written {
            return Err(io::Error::other("write out of order"));
        }
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("transfer already finished"))?;
        file.write_all(data)?;
        self.written += data.len() as u64;
        Ok(())
    }

    fn finish(&mut self, size: u64, blake3: [u8; 32]) -> io::Result<Completed> {
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
        self.placed = true;
        // Make the new name durable too (best effort: not every platform
        // can open a directory).
        if let Ok(d) = File::open(&self.dir) {
            let _ = d.sync_all();
        }
        Ok(Completed {
            path: self.final_path.clone(),
            size,
            blake3,
        })
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

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.placed {
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
        event: LegacyReceiverEvent,
    ) -> io::Result<()> {
        self.queued.push(match event {
            LegacyReceiverEvent::Write { offset, data } => Op::Write { offset, data },
            LegacyReceiverEvent::Complete { size, blake3 } => Op::Complete { size, blake3 },
        });
        Ok(())
    }

    fn poll_work(&mut self) -> Option<Work<Self, LegacyFileReceiver>> {
        if self.queued.is_empty() {
            return None;
        }
        // One work at a time, so the file is here.
        let mut temp = self.temp.take()?;
        let ops = mem::take(&mut self.queued);
        Some(Work::new(move || {
            let done = temp.run(ops);
            move |app: &mut ReceiveToDir, _: &mut LegacyFileReceiver, _| {
                app.temp = Some(temp);
                if let Some(completed) = done? {
                    app.completed = Some(completed);
                }
                Ok(())
            }
        }))
    }
}

/// Answers a [`LegacyFileSender`]'s reads from a file.
#[derive(Debug)]
pub struct SendFromFile {
    /// `None` while a [`Work`] reads it.
    file: Option<File>,
    /// The read the machine asked for, until handed out as work.
    asked: Option<(u64, usize)>,
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
        let app = SendFromFile {
            file: Some(file),
            asked: None,
            acked: 0,
        };
        Ok((app, meta.len()))
    }

    /// Bytes the receiver acknowledged so far.
    pub fn acked(&self) -> u64 {
        self.acked
    }
}

/// Reads exactly `len` bytes at `offset` (this may block).
fn read_exactly(file: &File, offset: u64, len: usize) -> io::Result<Bytes> {
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, offset).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            io::Error::other("the file shrank while being sent")
        } else {
            e
        }
    })?;
    Ok(Bytes::from(buf))
}

impl App<LegacyFileSender> for SendFromFile {
    fn on_event(
        &mut self,
        _: &mut LegacyFileSender,
        _: Instant,
        event: LegacySenderEvent,
    ) -> io::Result<()> {
        match event {
            LegacySenderEvent::Read { offset, len } => self.asked = Some((offset, len)),
            LegacySenderEvent::Progress { acked, .. } => self.acked = acked,
        }
        Ok(())
    }

    fn poll_work(&mut self) -> Option<Work<Self, LegacyFileSender>> {
        let (offset, len) = self.asked?;
        let file = self.file.take()?;
        self.asked = None;
        Some(Work::new(move || {
            let read = read_exactly(&file, offset, len);
            move |app: &mut SendFromFile, m: &mut LegacyFileSender, _| {
                app.file = Some(file);
                m.provide(offset, read?).map_err(io::Error::other)
            }
        }))
    }
}
