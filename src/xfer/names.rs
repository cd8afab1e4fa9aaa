//! File names offered by a peer: the one place that decides which are safe.
//!
//! Pure code, no file system. A safe name is a single plain path component
//! (scp CVE-2019-6111, CVE-2018-20685; croc GHSA-ppjh-xp5v-46wc): checked
//! as a whole component, never by substring, so `file..txt` is fine while
//! `..`, `a/b`, `a\b`, `C:x` and names carrying control characters are not.
//! [`SafeName`] can only be built by [`SafeName::new`]; holding one proves
//! the checks passed.

use std::fmt;

/// Suffix of the temporary names partial files use in a receiver's
/// directory; a peer may not offer a name that ends with it.
pub const PARTIAL_SUFFIX: &str = ".echoxfer-part";

/// A validated file name: one plain path component, valid UTF-8, no
/// control characters, not `.`/`..`, no separators or drive prefix.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SafeName(String);

/// Why a name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The empty name.
    #[error("the name is empty")]
    Empty,
    /// Longer than the configured limit.
    #[error("the name is {len} bytes long; the limit is {max}")]
    TooLong {
        /// Length in bytes.
        len: usize,
        /// The configured `max_name_len`.
        max: usize,
    },
    /// Not UTF-8.
    #[error("the name is not valid UTF-8")]
    NotUtf8,
    /// `.` or `..`.
    #[error("the name is a relative directory reference")]
    DotName,
    /// Contains `/` or `\`: more than one component, or an absolute path.
    #[error("the name contains a path separator")]
    Separator,
    /// A Windows drive prefix such as `C:`.
    #[error("the name starts with a drive prefix")]
    Drive,
    /// NUL or another control character (escape codes could rewrite a terminal).
    #[error("the name contains a control character")]
    Control,
    /// Ends with the suffix reserved for partial files.
    #[error("the name ends with the reserved suffix {PARTIAL_SUFFIX}")]
    Reserved,
}

impl SafeName {
    /// Checks `raw` (peer-supplied bytes, or a local file name) and wraps
    /// it if it is a safe single component of at most `max_len` bytes.
    pub fn new(raw: &[u8], max_len: usize) -> Result<SafeName, NameError> {
        if raw.is_empty() {
            return Err(NameError::Empty);
        }
        if raw.len() > max_len {
            return Err(NameError::TooLong {
                len: raw.len(),
                max: max_len,
            });
        }
        let name = std::str::from_utf8(raw).map_err(|_| NameError::NotUtf8)?;
        if name.chars().any(char::is_control) {
            return Err(NameError::Control);
        }
        if name.contains(['/', '\\']) {
            return Err(NameError::Separator);
        }
        if name == "." || name == ".." {
            return Err(NameError::DotName);
        }
        let b = name.as_bytes();
        if b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':' {
            return Err(NameError::Drive);
        }
        if name.ends_with(PARTIAL_SUFFIX) {
            return Err(NameError::Reserved);
        }
        Ok(SafeName(name.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for SafeName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SafeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_names_are_refused_by_component() {
        let long = "a".repeat(300);
        let table: &[(&[u8], NameError)] = &[
            (b"../x", NameError::Separator),
            (b"a/../../b", NameError::Separator),
            (b"/etc/passwd", NameError::Separator),
            (b"..\\x", NameError::Separator),
            (b"C:x", NameError::Drive),
            (b"C:\\x", NameError::Separator),
            ("x\u{1b}[2J".as_bytes(), NameError::Control),
            (b"", NameError::Empty),
            (b".", NameError::DotName),
            (b"..", NameError::DotName),
            (long.as_bytes(), NameError::TooLong { len: 300, max: 255 }),
            (b"a\0b", NameError::Control),
            (b"\xff\xfe", NameError::NotUtf8),
            ("x\u{9b}2J".as_bytes(), NameError::Control),
            (b"x.echoxfer-part", NameError::Reserved),
        ];
        for (raw, want) in table {
            assert_eq!(SafeName::new(raw, 255), Err(*want), "{raw:?}");
        }
    }

    #[test]
    fn plain_names_with_dots_are_accepted() {
        for ok in ["file..txt", "...", ".hidden", "a", "é.txt", "C", "1:2"] {
            let name = SafeName::new(ok.as_bytes(), 255).expect(ok);
            assert_eq!(name.as_str(), ok);
        }
        assert!(SafeName::new(&[b'a'; 255], 255).is_ok());
    }

    proptest::proptest! {
        /// Invariant: every accepted name is exactly one normal path
        /// component (joined to a directory, it names a direct child).
        #[test]
        fn accepted_names_are_one_normal_component(raw in proptest::collection::vec(
            proptest::prop_oneof![
                proptest::prelude::Just(b'.'), proptest::prelude::Just(b'/'),
                proptest::prelude::Just(b'\\'), proptest::prelude::Just(b':'),
                proptest::prelude::Just(b'C'), proptest::prelude::Just(0x1b_u8),
                proptest::prelude::any::<u8>(),
            ],
            0..12,
        )) {
            if let Ok(name) = SafeName::new(&raw, 255) {
                use std::path::{Component, Path};
                let dir = Path::new("/dest");
                let joined = dir.join(name.as_str());
                proptest::prop_assert_eq!(joined.parent(), Some(dir));
                let parts: Vec<_> = Path::new(name.as_str()).components().collect();
                proptest::prop_assert!(matches!(parts[..], [Component::Normal(_)]), "{:?}", name);
                proptest::prop_assert!(!name.as_str().chars().any(char::is_control));
            }
        }
    }
}
