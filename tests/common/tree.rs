//! Random trees for folder tests: nested directories (empty ones too),
//! files of any size (empty ones too) with unicode names, permission bits
//! and modification times to the nanosecond; as the sender offers them and
//! written to a real directory.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use echoxfer::xfer::{EntryKind, FileSpec, Meta, Mtime, SafeName, SafePath};
use echoxfer::TransferConfig;
use proptest::prelude::*;

/// One entry of a tree: its components, and its content (`None`: a directory).
#[derive(Debug, Clone)]
pub struct Node {
    pub path: Vec<String>,
    pub content: Option<Bytes>,
    pub mode: u32,
    pub mtime: Mtime,
}

const DIRS: [&str; 5] = ["d", "é", "日本", "sp ace", "a.b"];
const FILES: [&str; 7] = ["a.txt", "b", "🎉.bin", "x", "file..txt", "z\u{200d}w", "Ω"];

fn mtime() -> impl Strategy<Value = Mtime> {
    (-1_000_000_000i64..4_000_000_000, 0u32..1_000_000_000)
        .prop_map(|(secs, nanos)| Mtime { secs, nanos })
}

fn bytes() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        3 => Just(Bytes::new()),
        6 => prop::collection::vec(any::<u8>(), 1..3000).prop_map(Bytes::from),
        1 => prop::collection::vec(any::<u8>(), 70_000..80_000).prop_map(Bytes::from),
    ]
}

/// A random tree: up to 6 directories (1 to 3 deep) and 12 files, each
/// file in one of the directories or at the top; parents listed before
/// their contents, as the sender offers them.
pub fn tree() -> impl Strategy<Value = Vec<Node>> {
    let dir = (
        prop::collection::vec(0..DIRS.len(), 1..=3),
        0o500u32..0o1000,
        mtime(),
    );
    let file = (
        0..FILES.len(),
        0..7usize,
        bytes(),
        0o600u32..0o1000,
        mtime(),
    );
    (
        prop::collection::vec(dir, 0..6),
        prop::collection::vec(file, 0..12),
    )
        .prop_map(|(dirs, files)| {
            let mut nodes: BTreeMap<Vec<String>, Node> = BTreeMap::new();
            let mut dir_paths = Vec::new();
            for (parts, mode, mtime) in dirs {
                let path: Vec<String> = parts.iter().map(|&i| DIRS[i].to_string()).collect();
                for depth in 1..=path.len() {
                    let at = path[..depth].to_vec();
                    let last = depth == path.len();
                    nodes.entry(at.clone()).or_insert(Node {
                        path: at.clone(),
                        content: None,
                        mode: if last { mode } else { 0o755 },
                        mtime,
                    });
                    dir_paths.push(at);
                }
            }
            for (name, parent, content, mode, mtime) in files {
                let mut path = match dir_paths.get(parent) {
                    Some(p) => p.clone(),
                    None => Vec::new(),
                };
                path.push(FILES[name].to_string());
                nodes.entry(path.clone()).or_insert(Node {
                    path,
                    content: Some(content),
                    mode,
                    mtime,
                });
            }
            nodes.into_values().collect()
        })
}

/// The tree as the sender offers it.
pub fn specs(nodes: &[Node]) -> Vec<(FileSpec, Bytes)> {
    let limits = TransferConfig::default().path_limits();
    nodes
        .iter()
        .map(|n| {
            let parts = n
                .path
                .iter()
                .map(|c| SafeName::new(c.as_bytes(), 255).expect("a valid name"))
                .collect();
            let content = n.content.clone().unwrap_or_default();
            let spec = FileSpec {
                path: SafePath::new(parts, &limits).expect("a valid path"),
                kind: match n.content {
                    Some(_) => EntryKind::File,
                    None => EntryKind::Directory,
                },
                size: content.len() as u64,
                meta: Meta {
                    mode: n.mode,
                    mtime: n.mtime,
                },
            };
            (spec, content)
        })
        .collect()
}

fn system_time(m: Mtime) -> SystemTime {
    let d = Duration::new(m.secs.unsigned_abs(), m.nanos);
    if m.secs >= 0 {
        UNIX_EPOCH + d
    } else {
        UNIX_EPOCH - Duration::from_secs(m.secs.unsigned_abs()) + Duration::new(0, m.nanos)
    }
}

/// Writes the tree under `root` (which must exist), times and modes last.
pub fn write(root: &Path, nodes: &[Node]) {
    for n in nodes {
        let path = join(root, &n.path);
        match &n.content {
            None => fs::create_dir_all(&path).unwrap(),
            Some(c) => fs::write(&path, c).unwrap(),
        }
    }
    // Deepest first: setting a directory's time after its contents.
    for n in nodes.iter().rev() {
        let path = join(root, &n.path);
        let file = fs::File::open(&path).unwrap();
        file.set_modified(system_time(n.mtime)).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(n.mode)).unwrap();
    }
}

fn join(root: &Path, parts: &[String]) -> PathBuf {
    parts.iter().fold(root.to_path_buf(), |p, c| p.join(c))
}

/// This process's umask, as the receiver applies it.
pub fn umask() -> u32 {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Umask:"))
        .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        .unwrap_or(0o022)
}

/// Checks that `root` holds the tree exactly: every entry with its content,
/// its mode (masked by the umask) and its modification time to the
/// nanosecond, and nothing else.
pub fn assert_tree(root: &Path, nodes: &[Node]) {
    let mask = !umask() & 0o777;
    for n in nodes {
        let path = join(root, &n.path);
        let meta =
            fs::symlink_metadata(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        match &n.content {
            None => assert!(meta.is_dir(), "{} is not a directory", path.display()),
            Some(c) => assert_eq!(&fs::read(&path).unwrap()[..], &c[..], "{}", path.display()),
        }
        assert_eq!(
            meta.mode() & 0o7777,
            n.mode & mask,
            "mode of {}",
            path.display()
        );
        let got = (meta.mtime(), meta.mtime_nsec() as u32);
        assert_eq!(
            got,
            (n.mtime.secs, n.mtime.nanos),
            "mtime of {}",
            path.display()
        );
    }
    let mut count = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            count += 1;
            if p.is_dir() {
                stack.push(p);
            }
        }
    }
    assert_eq!(count, nodes.len(), "entries under {}", root.display());
}
