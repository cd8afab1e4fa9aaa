//! What a sender offers: an entry of a tree (a file or a directory), its
//! relative path as a list of checked components, and its metadata.
//!
//! Pure code, no file system. A [`SafePath`] can only be built from
//! [`SafeName`]s within [`PathLimits`]: holding one proves that every
//! component passed the name rules and that the path is not too deep or
//! too long, so a receiver can create it one component at a time under its
//! directory and never leave it.

use std::fmt;

use bytes::{BufMut, BytesMut};

use super::names::{NameError, SafeName};
use crate::config::PathLimits;

/// A relative path of one or more [`SafeName`] components.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SafePath(Vec<SafeName>);

/// Why an offered path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// No component at all.
    #[error("the path is empty")]
    Empty,
    /// A component broke the name rules.
    #[error("component {index} of the path: {error}")]
    Component {
        /// Which component (0 is the first).
        index: usize,
        /// What was wrong with it.
        error: NameError,
    },
    /// More components than allowed.
    #[error("the path has {depth} components; the limit is {max}")]
    TooDeep {
        /// Components offered (counted up to one past the limit).
        depth: usize,
        /// The configured `max_depth`.
        max: usize,
    },
    /// Longer than allowed.
    #[error("the path is {len} bytes long; the limit is {max}")]
    TooLong {
        /// Its length, components joined with `/`.
        len: usize,
        /// The configured `max_path_len`.
        max: usize,
    },
    /// The wire encoding is cut short (a component's length runs past the end).
    #[error("the path's encoding is malformed")]
    Malformed,
}

impl SafePath {
    /// A path of the given components, checked against `limits`.
    pub fn new(components: Vec<SafeName>, limits: &PathLimits) -> Result<SafePath, PathError> {
        if components.is_empty() {
            return Err(PathError::Empty);
        }
        if components.len() > limits.max_depth {
            let (depth, max) = (components.len(), limits.max_depth);
            return Err(PathError::TooDeep { depth, max });
        }
        for (index, c) in components.iter().enumerate() {
            if c.as_str().len() > limits.max_name_len {
                let (len, max) = (c.as_str().len(), limits.max_name_len);
                let error = NameError::TooLong { len, max };
                return Err(PathError::Component { index, error });
            }
        }
        let path = SafePath(components);
        if path.len() > limits.max_path_len {
            let (len, max) = (path.len(), limits.max_path_len);
            return Err(PathError::TooLong { len, max });
        }
        Ok(path)
    }

    /// A path of one component.
    pub fn single(name: SafeName) -> SafePath {
        SafePath(vec![name])
    }

    /// Decodes a path from its wire form (each component: length `u16`,
    /// then its bytes) and checks it. Stops at the first violation, so a
    /// hostile encoding costs at most `limits` worth of work.
    pub fn decode(mut raw: &[u8], limits: &PathLimits) -> Result<SafePath, PathError> {
        let mut components = Vec::new();
        let mut len = 0usize;
        while !raw.is_empty() {
            if components.len() == limits.max_depth {
                let depth = limits.max_depth + 1;
                return Err(PathError::TooDeep {
                    depth,
                    max: limits.max_depth,
                });
            }
            let [a, b, rest @ ..] = raw else {
                return Err(PathError::Malformed);
            };
            let n = usize::from(u16::from_be_bytes([*a, *b]));
            if rest.len() < n {
                return Err(PathError::Malformed);
            }
            let (bytes, rest) = rest.split_at(n);
            let index = components.len();
            let name = SafeName::new(bytes, limits.max_name_len)
                .map_err(|error| PathError::Component { index, error })?;
            len += n + usize::from(index > 0);
            if len > limits.max_path_len {
                return Err(PathError::TooLong {
                    len,
                    max: limits.max_path_len,
                });
            }
            components.push(name);
            raw = rest;
        }
        if components.is_empty() {
            return Err(PathError::Empty);
        }
        Ok(SafePath(components))
    }

    /// Appends the wire form (see [`decode`](SafePath::decode)).
    pub fn encode(&self, out: &mut BytesMut) {
        for c in &self.0 {
            let bytes = c.as_str().as_bytes();
            // A component is at most a SafeName; longer ones never get here
            // from `new` with limits below 64 KiB, and `decode` refuses them.
            let n = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
            out.put_u16(n);
            out.put_slice(&bytes[..usize::from(n)]);
        }
    }

    /// Bytes of the wire form.
    pub fn encoded_len(&self) -> usize {
        self.0.iter().map(|c| 2 + c.as_str().len()).sum()
    }

    /// The components, outermost first.
    pub fn components(&self) -> &[SafeName] {
        &self.0
    }

    /// The last component: the entry's own name.
    pub fn file_name(&self) -> &SafeName {
        // Never empty: every constructor refuses an empty path.
        &self.0[self.0.len() - 1]
    }

    /// The components before the last (the directories it lives in).
    pub fn parents(&self) -> &[SafeName] {
        &self.0[..self.0.len() - 1]
    }

    /// Its length in bytes, components joined with `/`.
    pub fn len(&self) -> usize {
        self.0.iter().map(|c| c.as_str().len()).sum::<usize>() + self.0.len() - 1
    }

    /// Never true: a path has at least one component.
    pub fn is_empty(&self) -> bool {
        false
    }
}

impl fmt::Display for SafePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, c) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("/")?;
            }
            f.write_str(c.as_str())?;
        }
        Ok(())
    }
}

/// The wire form of a path of any components, checked or not (for tests
/// and hostile peers: a receiver must refuse what [`SafePath`] would not).
pub fn encode_raw_path(components: &[&[u8]]) -> bytes::Bytes {
    let mut out = BytesMut::new();
    for c in components {
        let n = u16::try_from(c.len()).unwrap_or(u16::MAX);
        out.put_u16(n);
        out.put_slice(&c[..usize::from(n)]);
    }
    out.freeze()
}

/// How a receiver shows an offered path it refused: when the wire form
/// decodes (each component: length `u16`, then its bytes), its components
/// joined with `/`, whatever the name rules say of them; otherwise the raw
/// bytes. Either way at most `max` bytes of it, escaped with
/// [`sanitize`](crate::error::sanitize) (control and invisible characters
/// as `\u{...}`), so a hostile name never reaches a terminal as is.
pub fn show_offered_path(raw: &[u8], max: usize) -> String {
    let mut joined = Vec::new();
    let mut rest = raw;
    let decoded = loop {
        let [a, b, tail @ ..] = rest else {
            break rest.is_empty() && !joined.is_empty();
        };
        let n = usize::from(u16::from_be_bytes([*a, *b]));
        if tail.len() < n {
            break false;
        }
        if !joined.is_empty() {
            joined.push(b'/');
        }
        let room = (max + 1).saturating_sub(joined.len());
        joined.extend_from_slice(&tail[..n.min(room)]);
        rest = &tail[n..];
    };
    let shown = if decoded { &joined[..] } else { raw };
    crate::error::sanitize(&shown[..shown.len().min(max)])
}

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// A regular file: content follows.
    File,
    /// A directory: created (empty if nothing is offered inside it).
    Directory,
}

impl EntryKind {
    /// Its byte on the wire.
    pub fn to_byte(self) -> u8 {
        match self {
            EntryKind::File => 0,
            EntryKind::Directory => 1,
        }
    }

    /// From its byte on the wire, if known.
    pub fn from_byte(b: u8) -> Option<EntryKind> {
        match b {
            0 => Some(EntryKind::File),
            1 => Some(EntryKind::Directory),
            _ => None,
        }
    }
}

/// A modification time: seconds since the Unix epoch (negative before it)
/// and nanoseconds (below 10^9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Mtime {
    /// Seconds since 1970-01-01T00:00:00Z.
    pub secs: i64,
    /// Nanoseconds, below 1,000,000,000.
    pub nanos: u32,
}

/// Permission bits that travel: read, write and execute for user, group
/// and others. Never setuid, setgid or sticky.
pub const MODE_BITS: u32 = 0o777;

/// An entry's metadata as offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Meta {
    /// Permission bits, within [`MODE_BITS`].
    pub mode: u32,
    /// Modification time.
    pub mtime: Mtime,
}

/// One entry a sender offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSpec {
    /// Where it goes, relative to the receiver's directory.
    pub path: SafePath,
    /// A file or a directory.
    pub kind: EntryKind,
    /// Content bytes (0 for a directory).
    pub size: u64,
    /// Permission bits and modification time.
    pub meta: Meta,
}

impl FileSpec {
    /// A regular file of `size` bytes at the top of the receiver's
    /// directory, mode 0644 and modification time 0.
    pub fn file(name: SafeName, size: u64) -> FileSpec {
        FileSpec {
            path: SafePath::single(name),
            kind: EntryKind::File,
            size,
            meta: Meta {
                mode: 0o644,
                mtime: Mtime::default(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_path_is_shown_as_components_joined_with_slashes_escaped_and_bounded() {
        let raw = encode_raw_path(&[b"docs", b"C:x"]);
        assert_eq!(show_offered_path(&raw, 64), "docs/C:x");
        let raw = encode_raw_path(&[b"d", b"a\x1b[2J\n"]);
        assert_eq!(show_offered_path(&raw, 64), "d/a\\u{1b}[2J\\n");
        // Not a valid encoding: the raw bytes, escaped.
        assert_eq!(show_offered_path(b"\0\x09ab", 64), "\\u{0}\\tab");
        assert_eq!(show_offered_path(b"", 64), "");
        // At most `max` bytes, whatever the path's length.
        let long = encode_raw_path(&[&[b'x'; 300], &[b'y'; 300]]);
        assert_eq!(show_offered_path(&long, 10), "x".repeat(10));
    }

    fn limits() -> PathLimits {
        PathLimits {
            max_name_len: 255,
            max_depth: 4,
            max_path_len: 20,
        }
    }

    fn encoded(parts: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in parts {
            out.extend_from_slice(&(p.len() as u16).to_be_bytes());
            out.extend_from_slice(p);
        }
        out
    }

    #[test]
    fn a_path_round_trips_through_its_wire_form() {
        let raw = encoded(&[b"a", "é".as_bytes(), b"x.txt"]);
        let path = SafePath::decode(&raw, &limits()).unwrap();
        assert_eq!(path.to_string(), "a/é/x.txt");
        assert_eq!(path.len(), "a/é/x.txt".len());
        let mut out = BytesMut::new();
        path.encode(&mut out);
        assert_eq!(&out[..], &raw[..]);
        assert_eq!(path.encoded_len(), raw.len());
    }

    #[test]
    fn hostile_components_depths_and_lengths_are_refused_with_their_reason() {
        let l = limits();
        let component = |parts: &[&[u8]], index, error| {
            assert_eq!(
                SafePath::decode(&encoded(parts), &l),
                Err(PathError::Component { index, error })
            );
        };
        component(&[b"a", b"..", b"..", b"b"], 1, NameError::DotName);
        component(&[b"a", b""], 1, NameError::Empty);
        component(&[b"."], 0, NameError::DotName);
        component(&[b"a/b"], 0, NameError::Separator);
        assert_eq!(SafePath::decode(&[], &l), Err(PathError::Empty));
        assert_eq!(
            SafePath::decode(&[0, 5, b'a'], &l),
            Err(PathError::Malformed)
        );
        assert_eq!(SafePath::decode(&[0], &l), Err(PathError::Malformed));
        let deep = encoded(&[b"a", b"b", b"c", b"d", b"e"]);
        assert_eq!(
            SafePath::decode(&deep, &l),
            Err(PathError::TooDeep { depth: 5, max: 4 })
        );
        let long = encoded(&[b"0123456789", b"0123456789"]);
        assert_eq!(
            SafePath::decode(&long, &l),
            Err(PathError::TooLong { len: 21, max: 20 })
        );
    }
}
