//! A sender's side of a folder transfer: the paths given on the command
//! line, walked into the list of entries to offer.
//!
//! Each root is offered under its own base name, as `scp -r` and
//! `rsync -r src` (no trailing slash) do: `send dir` offers `dir`,
//! `dir/a`, `dir/sub`, `dir/sub/b`... and `send file` offers `file`.
//! Directories come before their contents and children are sorted by name
//! (byte order), so a walk of the same tree always gives the same order.
//!
//! A symbolic link is never followed, not even a root: everything is
//! looked at with `lstat`, and a link, a device, a socket or a fifo is left
//! out and recorded in [`Walk::skipped`] for the caller to report. So is a
//! name that a receiver would refuse (see [`SafeName`]) or a path past the
//! [`PathLimits`], and a directory that cannot be read. No file descriptor
//! is held for an entry: each directory is listed and closed before the
//! next is opened, and files are opened later, one at a time, with
//! [`Source::open_entry`](super::Source::open_entry), which checks that the
//! file is still the one the walk saw.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::{self, Metadata};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::error::io_text as os_text;
use crate::xfer::MODE_BITS;
use crate::xfer::{EntryKind, FileSpec, Meta, Mtime, PathError, PathLimits, SafeName, SafePath};

/// The result of a walk: what to offer, in order, and what was left out.
#[derive(Debug, Default)]
pub struct Walk {
    /// Entries to offer, each directory before its contents.
    pub entries: Vec<WalkEntry>,
    /// What was left out, and why, in the order it was met.
    pub skipped: Vec<Skipped>,
}

impl Walk {
    /// Content bytes of all the files.
    pub fn total_bytes(&self) -> u64 {
        self.entries.iter().map(|e| e.spec.size).sum()
    }
}

/// One entry to offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalkEntry {
    /// Where it is on this machine.
    pub local: PathBuf,
    /// What is offered: its relative path, kind, size and metadata.
    pub spec: FileSpec,
    /// Its device and inode as the walk saw them, so that opening it later
    /// can tell whether it was replaced in between.
    pub dev_ino: (u64, u64),
}

/// Something the walk left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// Where it is on this machine.
    pub path: PathBuf,
    /// Why it was left out.
    pub why: SkipReason,
}

/// Why the walk left something out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SkipReason {
    /// A symbolic link (never followed).
    #[error("is a symbolic link (not followed)")]
    Symlink,
    /// A block or character device.
    #[error("is a device")]
    Device,
    /// A Unix socket.
    #[error("is a socket")]
    Socket,
    /// A named pipe.
    #[error("is a fifo")]
    Fifo,
    /// Its name or path would be refused by a receiver.
    #[error("cannot be offered: {0}")]
    BadName(PathError),
    /// It could not be examined or listed (the I/O error's text).
    #[error("cannot be read: {0}")]
    Unreadable(String),
}

impl SkipReason {
    /// Whether leaving it out is a failure to deliver what the user gave
    /// (a name that cannot be offered, something that cannot be read),
    /// rather than a rule applied by design (links are never followed,
    /// special files never sent).
    pub fn is_failure(&self) -> bool {
        matches!(self, SkipReason::BadName(_) | SkipReason::Unreadable(_))
    }
}

/// Walks `roots` (files and directories, see the module docs) into the
/// entries to offer.
///
/// Errors, naming the path and what to do: a root that does not exist or
/// cannot be examined, a root directory that cannot be listed, a root with
/// no name (`/`), and two roots that would be offered under the same name.
/// Anything below a root that cannot be offered is skipped instead.
pub fn walk(roots: &[PathBuf], limits: &PathLimits) -> io::Result<Walk> {
    let mut walk = Walk::default();
    let mut seen: HashMap<SafeName, PathBuf> = HashMap::new();
    for root in roots {
        let (local, base) = root_and_name(root)?;
        let meta = fs::symlink_metadata(&local).map_err(|e| root_error(root, &e))?;
        let name = match SafeName::new(base.as_bytes(), limits.max_name_len) {
            Ok(name) => name,
            Err(error) => {
                let why = SkipReason::BadName(PathError::Component { index: 0, error });
                walk.skip(local, why);
                continue;
            }
        };
        // Only what will be offered can collide: a skipped root (a link,
        // a fifo...) takes no name.
        if meta.is_dir() || meta.is_file() {
            if let Some(other) = seen.get(&name) {
                return Err(duplicate_error(other, root, &name));
            }
            seen.insert(name.clone(), root.clone());
        }
        walk_root(&mut walk, local, name, meta, limits)?;
    }
    Ok(walk)
}

/// The path to examine for `root` and the name it is offered under.
///
/// Trailing slashes and `.` components are dropped, as `lstat("link/")`
/// would follow the link. A root that names no entry of its own (`.`,
/// `dir/..`) is resolved to the directory it means.
fn root_and_name(root: &Path) -> io::Result<(PathBuf, OsString)> {
    let local: PathBuf = root.components().collect();
    if let Some(base) = local.file_name() {
        return Ok((local.clone(), base.to_os_string()));
    }
    let resolved = fs::canonicalize(&local).map_err(|e| root_error(root, &e))?;
    match resolved.file_name() {
        Some(base) => {
            let base = base.to_os_string();
            Ok((resolved, base))
        }
        None => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{}: has no name to offer it under; name the files or directories inside it",
                root.display()
            ),
        )),
    }
}

/// One pending entry of a walk: where it is and the components of its path.
struct Pending {
    local: PathBuf,
    components: Vec<SafeName>,
}

/// Walks one root, depth first with an explicit stack (deep trees cannot
/// overflow the call stack), listing each directory before going into it.
fn walk_root(
    walk: &mut Walk,
    local: PathBuf,
    name: SafeName,
    meta: Metadata,
    limits: &PathLimits,
) -> io::Result<()> {
    let root = Pending {
        local,
        components: vec![name],
    };
    if meta.is_dir() {
        // A root directory that cannot be listed is an error, not a skip:
        // the user named it.
        let children = list_dir(&root.local).map_err(|e| root_error(&root.local, &e))?;
        let mut stack = Vec::new();
        walk.visit_dir(root, &meta, children, &mut stack, limits);
        walk.drain(stack, limits);
    } else {
        walk.visit_other(root, &meta, limits);
    }
    Ok(())
}

impl Walk {
    fn skip(&mut self, path: PathBuf, why: SkipReason) {
        self.skipped.push(Skipped { path, why });
    }

    /// Visits the entries on `stack` (last is next) and everything below them.
    fn drain(&mut self, mut stack: Vec<Pending>, limits: &PathLimits) {
        while let Some(next) = stack.pop() {
            let meta = match fs::symlink_metadata(&next.local) {
                Ok(meta) => meta,
                Err(e) => {
                    self.skip(next.local, SkipReason::Unreadable(os_text(&e)));
                    continue;
                }
            };
            if !meta.is_dir() {
                self.visit_other(next, &meta, limits);
                continue;
            }
            match list_dir(&next.local) {
                Ok(children) => self.visit_dir(next, &meta, children, &mut stack, limits),
                Err(e) => self.skip(next.local, SkipReason::Unreadable(os_text(&e))),
            }
        }
    }

    /// Records a listed directory and queues its children, first name on top.
    fn visit_dir(
        &mut self,
        dir: Pending,
        meta: &Metadata,
        children: Vec<OsString>,
        stack: &mut Vec<Pending>,
        limits: &PathLimits,
    ) {
        if !self.offer(&dir, EntryKind::Directory, meta, limits) {
            return;
        }
        let first = stack.len();
        for child in children {
            let local = dir.local.join(&child);
            let index = dir.components.len();
            match SafeName::new(child.as_bytes(), limits.max_name_len) {
                Ok(name) => {
                    let mut components = dir.components.clone();
                    components.push(name);
                    stack.push(Pending { local, components });
                }
                Err(error) => {
                    let why = SkipReason::BadName(PathError::Component { index, error });
                    self.skip(local, why);
                }
            }
        }
        // The stack pops from the end: put the first name there.
        stack[first..].reverse();
    }

    /// Records a file, or skips anything else that is not a directory.
    fn visit_other(&mut self, entry: Pending, meta: &Metadata, limits: &PathLimits) {
        let kind = meta.file_type();
        let why = if kind.is_file() {
            self.offer(&entry, EntryKind::File, meta, limits);
            return;
        } else if kind.is_symlink() {
            SkipReason::Symlink
        } else if kind.is_fifo() {
            SkipReason::Fifo
        } else if kind.is_socket() {
            SkipReason::Socket
        } else {
            SkipReason::Device
        };
        self.skip(entry.local, why);
    }

    /// Adds an entry if its path is within `limits` (else skips it);
    /// whether it was added.
    fn offer(
        &mut self,
        entry: &Pending,
        kind: EntryKind,
        meta: &Metadata,
        limits: &PathLimits,
    ) -> bool {
        let path = match SafePath::new(entry.components.clone(), limits) {
            Ok(path) => path,
            Err(e) => {
                self.skip(entry.local.clone(), SkipReason::BadName(e));
                return false;
            }
        };
        let size = match kind {
            EntryKind::File => meta.len(),
            EntryKind::Directory => 0,
        };
        let spec = FileSpec {
            path,
            kind,
            size,
            meta: meta_of(meta),
        };
        self.entries.push(WalkEntry {
            local: entry.local.clone(),
            spec,
            dev_ino: (meta.dev(), meta.ino()),
        });
        true
    }
}

/// The names in a directory, sorted by their bytes. The directory is
/// closed before this returns.
fn list_dir(dir: &Path) -> io::Result<Vec<OsString>> {
    let mut names = fs::read_dir(dir)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<Vec<_>>>()?;
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}

/// Permission bits and modification time, as `lstat` reports them.
pub(crate) fn meta_of(meta: &Metadata) -> Meta {
    Meta {
        mode: meta.mode() & MODE_BITS,
        mtime: Mtime {
            secs: meta.mtime(),
            // Below 10^9 by definition; clamp rather than trust it.
            nanos: u32::try_from(meta.mtime_nsec()).map_or(0, |n| n.min(999_999_999)),
        },
    }
}

/// A root that cannot be examined or listed: its path, why, what to do.
fn root_error(root: &Path, e: &io::Error) -> io::Error {
    let hint = match e.kind() {
        io::ErrorKind::PermissionDenied => "check its permissions",
        _ => "check the path",
    };
    io::Error::new(
        e.kind(),
        format!("{}: {}; {hint}", root.display(), os_text(e)),
    )
}

fn duplicate_error(first: &Path, second: &Path, name: &SafeName) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "{} and {} would both be sent as {}; rename one, or send them separately",
            first.display(),
            second.display(),
            name.as_str()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::os::unix::fs::{symlink, PermissionsExt};
    use std::time::{Duration, SystemTime};

    fn limits() -> PathLimits {
        PathLimits {
            max_name_len: 255,
            max_depth: 16,
            max_path_len: 4096,
        }
    }

    fn write(path: &Path, content: &[u8], mode: u32, mtime: (u64, u32)) {
        fs::write(path, content).unwrap();
        set_meta(path, mode, mtime);
    }

    fn set_meta(path: &Path, mode: u32, (secs, nanos): (u64, u32)) {
        let f = File::open(path).unwrap();
        f.set_modified(SystemTime::UNIX_EPOCH + Duration::new(secs, nanos))
            .unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    /// (path, kind, size, mode, mtime) of each entry, in order.
    fn listing(walk: &Walk) -> Vec<(String, EntryKind, u64, u32, Mtime)> {
        let row = |e: &WalkEntry| {
            let s = &e.spec;
            (
                s.path.to_string(),
                s.kind,
                s.size,
                s.meta.mode,
                s.meta.mtime,
            )
        };
        walk.entries.iter().map(row).collect()
    }

    fn names(walk: &Walk) -> Vec<String> {
        walk.entries
            .iter()
            .map(|e| e.spec.path.to_string())
            .collect()
    }

    fn mt(secs: i64, nanos: u32) -> Mtime {
        Mtime { secs, nanos }
    }

    #[test]
    fn a_tree_is_listed_in_pre_order_with_paths_kinds_sizes_modes_and_mtimes() {
        let tmp = tempfile::tempdir().unwrap();
        let top = tmp.path().join("top");
        fs::create_dir_all(top.join("sub/deeper")).unwrap();
        fs::create_dir(top.join("empty")).unwrap();
        write(
            &top.join("b.txt"),
            b"bee",
            0o640,
            (1_600_000_000, 123_456_789),
        );
        write(&top.join("a"), b"", 0o600, (1_500_000_000, 1));
        write(
            &top.join("sub/é☃.bin"),
            &[7; 1000],
            0o755,
            (1_700_000_000, 999_999_999),
        );
        write(&top.join("sub/deeper/x"), b"x", 0o604, (42, 500));
        set_meta(&top.join("sub/deeper"), 0o711, (10, 20));
        set_meta(&top.join("sub"), 0o750, (30, 40));
        set_meta(&top.join("empty"), 0o700, (50, 60));
        set_meta(&top, 0o755, (70, 80));
        let single = tmp.path().join("single");
        write(&single, b"one", 0o644, (90, 100));

        let walk = walk(&[top.clone(), single.clone()], &limits()).unwrap();

        use EntryKind::{Directory as D, File as F};
        let expected = vec![
            ("top".to_string(), D, 0, 0o755, mt(70, 80)),
            ("top/a".into(), F, 0, 0o600, mt(1_500_000_000, 1)),
            (
                "top/b.txt".into(),
                F,
                3,
                0o640,
                mt(1_600_000_000, 123_456_789),
            ),
            ("top/empty".into(), D, 0, 0o700, mt(50, 60)),
            ("top/sub".into(), D, 0, 0o750, mt(30, 40)),
            ("top/sub/deeper".into(), D, 0, 0o711, mt(10, 20)),
            ("top/sub/deeper/x".into(), F, 1, 0o604, mt(42, 500)),
            (
                "top/sub/é☃.bin".into(),
                F,
                1000,
                0o755,
                mt(1_700_000_000, 999_999_999),
            ),
            ("single".into(), F, 3, 0o644, mt(90, 100)),
        ];
        assert_eq!(listing(&walk), expected);
        assert!(walk.skipped.is_empty(), "{:?}", walk.skipped);
        assert_eq!(walk.total_bytes(), 1007);
        let x = &walk.entries[6];
        assert_eq!(x.local, top.join("sub/deeper/x"));
        let m = fs::symlink_metadata(&x.local).unwrap();
        assert_eq!(x.dev_ino, (m.dev(), m.ino()));
        assert_eq!(x.spec.path.components().len(), 4);
    }

    #[test]
    fn trailing_slashes_and_dot_roots_are_offered_under_the_directory_name() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("d");
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join("f"), b"").unwrap();
        let slashed = PathBuf::from(format!("{}/", dir.display()));
        assert_eq!(names(&walk(&[slashed], &limits()).unwrap()), ["d", "d/f"]);
        let dotted = dir.join(".");
        assert_eq!(names(&walk(&[dotted], &limits()).unwrap()), ["d", "d/f"]);
        let err = walk(&[PathBuf::from("/")], &limits()).unwrap_err();
        assert!(err.to_string().contains("no name"), "{err}");
    }

    #[test]
    fn symlinks_in_the_tree_are_skipped_and_never_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("secret"), b"s").unwrap();
        let top = tmp.path().join("top");
        fs::create_dir(&top).unwrap();
        fs::write(top.join("real"), b"r").unwrap();
        symlink(top.join("real"), top.join("to-file")).unwrap();
        symlink(&outside, top.join("to-dir")).unwrap();

        let walk = walk(std::slice::from_ref(&top), &limits()).unwrap();

        assert_eq!(names(&walk), ["top", "top/real"]);
        let skipped: Vec<_> = walk
            .skipped
            .iter()
            .map(|s| (s.path.clone(), s.why.clone()))
            .collect();
        assert_eq!(
            skipped,
            [
                (top.join("to-dir"), SkipReason::Symlink),
                (top.join("to-file"), SkipReason::Symlink),
            ]
        );
        assert!(walk.entries.iter().all(|e| !e.local.starts_with(&outside)));
    }

    #[test]
    fn a_root_that_is_a_symlink_is_skipped_even_with_a_trailing_slash() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("target");
        fs::create_dir(&target).unwrap();
        fs::write(target.join("inside"), b"i").unwrap();
        let link = tmp.path().join("link");
        symlink(&target, &link).unwrap();
        let slashed = PathBuf::from(format!("{}/", link.display()));

        let walk = walk(&[link.clone(), slashed], &limits());

        // Both are named `link`, but a skipped root takes no name: no
        // duplicate error, and both are skipped.
        let walk = walk.unwrap();
        assert!(walk.entries.is_empty(), "{:?}", names(&walk));
        assert_eq!(walk.skipped.len(), 2);
        for s in &walk.skipped {
            assert_eq!(
                (s.path.clone(), s.why.clone()),
                (link.clone(), SkipReason::Symlink)
            );
        }
    }

    #[test]
    fn a_fifo_is_skipped() {
        let tmp = tempfile::tempdir().unwrap();
        let top = tmp.path().join("top");
        fs::create_dir(&top).unwrap();
        let fifo = top.join("pipe");
        let c = std::ffi::CString::new(fifo.as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);

        let walk = walk(&[top.clone(), fifo.clone()], &limits()).unwrap();

        assert_eq!(names(&walk), ["top"]);
        let why: Vec<_> = walk.skipped.iter().map(|s| (&s.path, &s.why)).collect();
        assert_eq!(
            why,
            [(&fifo, &SkipReason::Fifo), (&fifo, &SkipReason::Fifo)]
        );
    }

    #[test]
    fn a_missing_root_is_an_error_naming_it() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("no-such-thing");
        let err = walk(std::slice::from_ref(&missing), &limits()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert_eq!(
            err.to_string(),
            format!(
                "{}: No such file or directory; check the path",
                missing.display()
            )
        );
    }

    #[test]
    fn two_roots_with_the_same_name_are_an_error_naming_both() {
        let tmp = tempfile::tempdir().unwrap();
        for dir in ["a", "b"] {
            fs::create_dir(tmp.path().join(dir)).unwrap();
            fs::write(tmp.path().join(dir).join("x"), b"").unwrap();
        }
        let (ax, bx) = (tmp.path().join("a/x"), tmp.path().join("b/x"));
        let err = walk(&[ax.clone(), bx.clone()], &limits()).unwrap_err();
        let text = err.to_string();
        assert!(text.contains(&*ax.to_string_lossy()), "{text}");
        assert!(text.contains(&*bx.to_string_lossy()), "{text}");
        assert!(text.contains("both be sent as x"), "{text}");
        let distinct = walk(&[tmp.path().join("a"), bx], &limits()).unwrap();
        assert_eq!(names(&distinct), ["a", "a/x", "x"]);
    }

    #[test]
    fn bad_names_and_paths_past_the_limits_are_skipped_not_fatal() {
        let tmp = tempfile::tempdir().unwrap();
        let top = tmp.path().join("top");
        fs::create_dir_all(top.join("d1/d2/d3")).unwrap();
        fs::write(top.join("bad\u{1}name"), b"").unwrap();
        fs::write(top.join("good"), b"").unwrap();
        fs::write(top.join("d1/d2/d3/deep"), b"").unwrap();
        let limits = PathLimits {
            max_depth: 3,
            ..limits()
        };

        let walk = walk(std::slice::from_ref(&top), &limits).unwrap();

        assert_eq!(names(&walk), ["top", "top/d1", "top/d1/d2", "top/good"]);
        let why: Vec<_> = walk
            .skipped
            .iter()
            .map(|s| (s.path.clone(), s.why.clone()))
            .collect();
        let control = PathError::Component {
            index: 1,
            error: crate::xfer::NameError::Control,
        };
        assert_eq!(
            why,
            [
                (top.join("bad\u{1}name"), SkipReason::BadName(control)),
                (
                    top.join("d1/d2/d3"),
                    SkipReason::BadName(PathError::TooDeep { depth: 4, max: 3 })
                ),
            ]
        );
    }

    #[test]
    fn a_root_with_a_bad_name_is_skipped() {
        let tmp = tempfile::tempdir().unwrap();
        let bad = tmp.path().join("bad\nname");
        fs::write(&bad, b"").unwrap();
        let walk = walk(std::slice::from_ref(&bad), &limits()).unwrap();
        assert!(walk.entries.is_empty());
        let control = PathError::Component {
            index: 0,
            error: crate::xfer::NameError::Control,
        };
        assert_eq!(
            walk.skipped,
            [Skipped {
                path: bad,
                why: SkipReason::BadName(control)
            }]
        );
    }
}
