//! What the store has already hashed of files on disk (complete files under
//! their final names, partial files to resume), remembered so that offering
//! the same path again, in the same session or another one of the same
//! store, does not make the receiver read and hash it again: a peer's
//! 42-byte `Offer` must not buy seconds of hashing each time it is sent.
//!
//! A file is known by device, inode, length, modification and change time.
//! Every write, truncation or `chmod` moves the change time (the kernel
//! sets it; no user call can set it back), so a remembered hash never
//! outlives the content it covers. A file changed within the last
//! [`RACY`] seconds is not remembered: on a file system with coarse
//! timestamps a later write in the same tick would keep them equal (the
//! rule git uses for its index).

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use super::hash_prefix;

/// Hashes remembered, at most (each about 2 KiB).
const REMEMBERED: usize = 256;
/// A file whose change time is this recent (seconds) is not remembered.
const RACY: i64 = 2;

/// Which file, as it was when it was hashed, and how much of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Key {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    /// The prefix hashed.
    hashed: u64,
}

impl Key {
    fn of(meta: &std::fs::Metadata, hashed: u64) -> Key {
        Key {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
            hashed,
        }
    }

    /// Changed so recently that a coarse clock could hide the next change.
    fn is_racy(&self) -> bool {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        now.saturating_sub(self.ctime.0) < RACY
    }
}

/// The last [`REMEMBERED`] hashes the store made of files on disk.
#[derive(Debug, Default)]
pub(super) struct HashCache {
    known: Mutex<VecDeque<(Key, blake3::Hasher)>>,
}

impl HashCache {
    /// BLAKE3 of the first `len` bytes of `file` (fewer if it is shorter),
    /// as [`hash_prefix`] gives it, from memory when this very content was
    /// hashed before.
    pub(super) fn hash_prefix(&self, file: &File, len: u64) -> io::Result<(blake3::Hasher, u64)> {
        let key = Key::of(&file.metadata()?, len);
        if let Some(hasher) = self.find(&key) {
            return Ok((hasher, len));
        }
        let (hasher, hashed) = hash_prefix(file, len)?;
        let after = Key::of(&file.metadata()?, len);
        if hashed == len && after == key && !key.is_racy() {
            self.remember(key, &hasher);
        }
        Ok((hasher, hashed))
    }

    fn find(&self, key: &Key) -> Option<blake3::Hasher> {
        let known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        known.iter().find(|(k, _)| k == key).map(|(_, h)| h.clone())
    }

    fn remember(&self, key: Key, hasher: &blake3::Hasher) {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        if known.len() >= REMEMBERED {
            known.pop_front();
        }
        known.push_back((key, hasher.clone()));
    }

    /// How many hashes are remembered.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.known.lock().map_or(0, |k| k.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn old_file(content: &[u8]) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::File::create(&path)
            .unwrap()
            .write_all(content)
            .unwrap();
        (dir, path)
    }

    #[test]
    fn a_file_hashed_once_is_answered_from_memory_until_it_changes() {
        let (_dir, path) = old_file(b"hello world");
        let file = File::options().read(true).write(true).open(&path).unwrap();
        let cache = HashCache::default();
        // Just written: racy, so not remembered.
        let (h, n) = cache.hash_prefix(&file, 11).unwrap();
        assert_eq!((n, h.finalize()), (11, blake3::hash(b"hello world")));
        assert_eq!(cache.len(), 0, "a file changed just now is not remembered");
        // Pretend it was hashed long ago: remembered under its key.
        let key = Key::of(&file.metadata().unwrap(), 11);
        let planted = blake3::Hasher::new();
        cache.remember(key, &planted);
        let (h, _) = cache.hash_prefix(&file, 11).unwrap();
        assert_eq!(h.finalize(), planted.finalize(), "answered from memory");
        // Any write moves the change time: hashed afresh.
        std::thread::sleep(std::time::Duration::from_millis(20));
        file.set_len(11).unwrap();
        use std::os::unix::fs::FileExt;
        file.write_all_at(b"j", 0).unwrap();
        let (h, _) = cache.hash_prefix(&file, 11).unwrap();
        assert_eq!(h.finalize(), blake3::hash(b"jello world"));
    }

    #[test]
    fn remembers_at_most_its_bound() {
        let cache = HashCache::default();
        let (_dir, path) = old_file(b"x");
        let meta = std::fs::metadata(&path).unwrap();
        for hashed in 0..(REMEMBERED as u64 + 10) {
            cache.remember(Key::of(&meta, hashed), &blake3::Hasher::new());
        }
        assert_eq!(cache.len(), REMEMBERED);
    }
}
