//! Folders through the wormhole: the file-transfer protocol carries a
//! directory as one deflated zip. [`pack`] writes a walked folder into a
//! zip (names relative to the folder, permission bits kept); [`unpack`]
//! lays a received zip out in the [`Store`] entry by entry, under the same
//! rules as a native transfer: every name a [`SafeName`] (no `..`, no
//! absolute path, no separator or control character), nothing through a
//! link, links and special files left out, no name twice, each file saved
//! only whole and durable, never over a file unless asked; and a zip that
//! claims or inflates to more than the [`UnpackLimits`] allow is refused
//! before it fills the disk. Touches `std::fs` and the store only.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::path::Path;

use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipArchive, ZipWriter};

use super::store::Store;
use super::walk::Walk;
use crate::xfer::{EntryKind, Meta, Mtime, PathLimits, Resume, SafeName, SafePath, MODE_BITS};

/// What [`pack`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packed {
    /// Bytes of the zip.
    pub zipsize: u64,
    /// Content bytes of the files in it.
    pub numbytes: u64,
    /// Files and directories in it.
    pub numfiles: u64,
}

/// Writes the folder `walk` found (one root directory) into `out` as a
/// deflated zip, names relative to the root, and rewinds `out`.
pub fn pack<W: Write + Read + Seek>(walk: &Walk, out: W) -> io::Result<(W, Packed)> {
    let mut zip = ZipWriter::new(out);
    let (mut numbytes, mut numfiles) = (0, 0);
    for entry in &walk.entries {
        let [_root, inside @ ..] = entry.spec.path.components() else {
            continue;
        };
        if inside.is_empty() {
            continue;
        }
        let name: Vec<&str> = inside.iter().map(SafeName::as_str).collect();
        let name = name.join("/");
        let options = SimpleFileOptions::default()
            .compression_method(CompressionMethod::Deflated)
            .unix_permissions(entry.spec.meta.mode & MODE_BITS)
            .large_file(entry.spec.size >= u32::MAX as u64);
        numfiles += 1;
        if entry.spec.kind == EntryKind::Directory {
            zip.add_directory(name, options).map_err(io::Error::other)?;
            continue;
        }
        zip.start_file(name, options).map_err(io::Error::other)?;
        let mut file = File::open(&entry.local).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot read {}: {e}", entry.local.display()),
            )
        })?;
        numbytes += io::copy(&mut file, &mut zip)?;
    }
    let mut out = zip.finish().map_err(io::Error::other)?;
    let zipsize = out.stream_position()?;
    out.rewind()?;
    Ok((
        out,
        Packed {
            zipsize,
            numbytes,
            numfiles,
        },
    ))
}

/// How much a received zip may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnpackLimits {
    /// Most entries. Default 1,000,000.
    pub max_entries: usize,
    /// Most content bytes once unpacked (the sum the entries declare, and
    /// what actually inflates). Default: what the sender announced
    /// (`numbytes`), capped by the free space when unpacking starts.
    pub max_bytes: u64,
}

/// What [`unpack`] laid out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Unpacked {
    /// Files saved.
    pub files: u64,
    /// Directories made.
    pub dirs: u64,
    /// Content bytes saved.
    pub bytes: u64,
    /// Entries left out (links, special files), by name.
    pub skipped: Vec<String>,
}

fn refused(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

/// The path an entry named `raw` gets under `dirname`, or why it gets none.
fn entry_path(dirname: &SafeName, raw: &[u8], limits: &PathLimits) -> io::Result<SafePath> {
    let shown = crate::error::sanitize(raw);
    let bad = |why: &str| {
        refused(format!(
            "the zip's entry {shown:?} {why}; nothing more was unpacked"
        ))
    };
    if raw.contains(&b'\\') {
        return Err(bad("holds a backslash (a path separator elsewhere)"));
    }
    let trimmed = raw.strip_suffix(b"/").unwrap_or(raw);
    let mut components = vec![dirname.clone()];
    for part in trimmed.split(|&b| b == b'/') {
        let name = SafeName::new(part, limits.max_name_len)
            .map_err(|e| bad(&format!("has an unsafe name ({e})")))?;
        components.push(name);
    }
    SafePath::new(components, limits).map_err(|e| bad(&format!("is refused ({e})")))
}

/// Lays the zip in `spool` out under `dirname` in `store`, within
/// `limits`; `mtime` is what every entry gets (zips keep local times of
/// two-second resolution and no zone, so the arrival time is honest).
pub fn unpack(
    spool: File,
    store: &Store,
    dirname: &SafeName,
    limits: UnpackLimits,
    paths: &PathLimits,
    mtime: Mtime,
) -> io::Result<Unpacked> {
    let mut zip = ZipArchive::new(spool)
        .map_err(|e| refused(format!("the folder's zip is not a valid zip: {e}")))?;
    if zip.len() > limits.max_entries {
        return Err(refused(format!(
            "the folder's zip has {} entries, over the limit of {}",
            zip.len(),
            limits.max_entries
        )));
    }
    let mut declared = 0u64;
    for i in 0..zip.len() {
        let entry = zip
            .by_index_raw(i)
            .map_err(|e| refused(format!("the folder's zip is damaged: {e}")))?;
        declared = declared.saturating_add(entry.size());
    }
    if declared > limits.max_bytes {
        return Err(refused(format!(
            "the folder's zip would unpack to {declared} bytes, more than the {} allowed (announced, or free here)",
            limits.max_bytes
        )));
    }
    let mut done = Unpacked::default();
    store
        .make_dir(
            &SafePath::single(dirname.clone()),
            &Meta { mode: 0o755, mtime },
        )
        .map_err(|r| refused(r.message))?;
    let mut seen = HashSet::new();
    let mut buf = vec![0u8; 256 * 1024];
    for i in 0..zip.len() {
        let mut entry = zip
            .by_index(i)
            .map_err(|e| refused(format!("the folder's zip is damaged: {e}")))?;
        let path = entry_path(dirname, entry.name_raw(), paths)?;
        if !seen.insert(path.clone()) {
            return Err(refused(format!(
                "the zip names {path} twice; nothing more was unpacked"
            )));
        }
        let mode = entry.unix_mode().unwrap_or(0);
        let kind = mode & ZIP_IFMT;
        if entry.is_symlink() || (kind != 0 && kind != ZIP_IFREG && kind != ZIP_IFDIR) {
            done.skipped.push(path.to_string());
            continue;
        }
        if entry.is_dir() {
            let meta = Meta {
                mode: perm(mode, 0o755),
                mtime,
            };
            store
                .make_dir(&path, &meta)
                .map_err(|r| refused(r.message))?;
            done.dirs += 1;
            continue;
        }
        let size = entry.size();
        let room = limits.max_bytes - done.bytes;
        let meta = Meta {
            mode: perm(mode, 0o644),
            mtime,
        };
        let (mut incoming, resume) = store
            .prepare(&path, size, meta)
            .map_err(|r| refused(r.message))?;
        if matches!(resume, Resume::Complete { .. }) && !store.overwrite() {
            return Err(refused(format!(
                "a file named {path} exists on the receiver, which keeps it unless told to overwrite"
            )));
        }
        incoming.start(0)?;
        let written = copy_entry(&mut entry, &mut incoming, size.min(room), &path, &mut buf)?;
        if written != size {
            return Err(refused(format!(
                "the zip's entry {path} inflates to more or less than the {size} bytes it declares"
            )));
        }
        incoming.commit().map_err(|r| refused(r.message))?;
        done.bytes += written;
        done.files += 1;
    }
    Ok(done)
}

/// The file-type bits of a zip entry's Unix mode (the zip format's
/// convention, Unix's `st_mode`, whatever the platform unpacking it).
const ZIP_IFMT: u32 = 0o170_000;
/// A regular file.
const ZIP_IFREG: u32 = 0o100_000;
/// A directory.
const ZIP_IFDIR: u32 = 0o040_000;

/// Permission bits from a zip's Unix mode, or `default` when it has none.
fn perm(mode: u32, default: u32) -> u32 {
    match mode & MODE_BITS {
        0 => default,
        bits => bits,
    }
}

/// Copies at most `bound` bytes of `entry` (and reads one more, to tell
/// an entry that inflates past its declared size).
fn copy_entry(
    entry: &mut impl Read,
    incoming: &mut super::Incoming,
    bound: u64,
    path: &SafePath,
    buf: &mut [u8],
) -> io::Result<u64> {
    let mut at = 0u64;
    let mut limited = entry.take(bound + 1);
    loop {
        let n = limited
            .read(buf)
            .map_err(|e| refused(format!("the zip's entry {path} does not inflate: {e}")))?;
        if n == 0 {
            return Ok(at);
        }
        incoming.write_at(at, &buf[..n])?;
        at += n as u64;
        if at > bound {
            return Ok(at);
        }
    }
}

/// Whether `path` is a folder a wormhole send packs as a zip.
pub fn is_folder(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir())
}
