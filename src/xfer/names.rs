//! File names offered by a peer: the one place that decides which are safe.
//!
//! Pure code, no file system. A safe name is a single plain path component
//! (scp CVE-2019-6111, CVE-2018-20685; croc GHSA-ppjh-xp5v-46wc): checked
//! as a whole component, never by substring, so `file..txt` is fine while
//! `..`, `a/b`, `a\b`, `C:x` and names carrying control characters are not.
//! Nor are names with invisible format characters: a bidirectional override
//! (U+202E) makes `gpj.exe` look like `exe.jpg` in `ls`, and a zero-width
//! space makes two names look the same (see [`NameError::Invisible`]).
//! [`SafeName`] can only be built by [`SafeName::new`]; holding one proves
//! the checks passed.

use std::fmt;

/// Suffix of the temporary names partial files use in a receiver's
/// directory; a peer may not offer a name that ends with it.
pub const PARTIAL_SUFFIX: &str = ".echoxfer-part";

/// A validated file name: one plain path component, valid UTF-8, no
/// control characters, no invisible format characters except ZWNJ and ZWJ,
/// not `.`/`..`, no separators or drive prefix.
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
    /// An invisible format character (Unicode general category Cf, such as
    /// a bidirectional override or isolate, U+061C, U+200B..U+200F,
    /// U+2060..U+206F, U+FEFF, a soft hyphen or a tag) or a line or
    /// paragraph separator (U+2028, U+2029): shown in a listing, it would
    /// disguise the name. Only U+200C ZWNJ and U+200D ZWJ are allowed, as
    /// some scripts (Persian, the Indic ones) and emoji need them to spell
    /// words, and they reorder nothing.
    #[error(
        "the name contains an invisible formatting character (such as a bidirectional override)"
    )]
    Invisible,
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
        if name.chars().any(is_disguising) {
            return Err(NameError::Invisible);
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

/// Zero-width non-joiner and joiner: format characters that names in some
/// scripts and emoji sequences need, and that reorder nothing.
const NEEDED_JOINERS: [char; 2] = ['\u{200c}', '\u{200d}'];

/// Whether `c` (not a control character) would disguise a name when shown.
fn is_disguising(c: char) -> bool {
    crate::error::is_unsafe_to_show(c) && !NEEDED_JOINERS.contains(&c)
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
            ("gpj.\u{202e}exe".as_bytes(), NameError::Invisible),
            ("a\u{2066}b\u{2069}".as_bytes(), NameError::Invisible),
            ("\u{200f}x".as_bytes(), NameError::Invisible),
            ("\u{61c}x".as_bytes(), NameError::Invisible),
            ("a\u{200b}b".as_bytes(), NameError::Invisible),
            ("\u{feff}x".as_bytes(), NameError::Invisible),
            ("soft\u{ad}hyphen".as_bytes(), NameError::Invisible),
            ("x\u{2028}y".as_bytes(), NameError::Invisible),
            ("x\u{e0001}".as_bytes(), NameError::Invisible),
        ];
        for (raw, want) in table {
            assert_eq!(SafeName::new(raw, 255), Err(*want), "{raw:?}");
        }
    }

    #[test]
    fn plain_names_with_dots_are_accepted() {
        let joined = [
            "می\u{200c}خواهم.txt",
            "क्\u{200d}ष.txt",
            "👨\u{200d}👩\u{200d}👧",
        ];
        for ok in [
            "file..txt",
            "...",
            ".hidden",
            "a",
            "é.txt",
            "C",
            "1:2",
            "עברית.txt",
        ]
        .into_iter()
        .chain(joined)
        {
            let name = SafeName::new(ok.as_bytes(), 255).expect(ok);
            assert_eq!(name.as_str(), ok);
        }
        assert!(SafeName::new(&[b'a'; 255], 255).is_ok());
    }

    proptest::proptest! {
        /// Invariant: no accepted name holds a format character (bidi
        /// overrides, zero-width...) or separator but ZWNJ and ZWJ.
        #[test]
        fn accepted_names_hold_no_invisible_format_char_but_zwnj_zwj(chars in proptest::collection::vec(
            proptest::prop_oneof![
                proptest::strategy::Strategy::prop_filter_map(0x2000u32..=0x206f, "assigned", char::from_u32),
                proptest::prelude::Just('\u{feff}'), proptest::prelude::Just('\u{61c}'),
                proptest::prelude::Just('\u{ad}'), proptest::prelude::Just('\u{180e}'),
                proptest::prelude::any::<char>(),
            ],
            1..8,
        )) {
            use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
            let raw = String::from_iter(chars);
            if let Ok(name) = SafeName::new(raw.as_bytes(), 255) {
                for c in name.as_str().chars() {
                    let invisible = matches!(c.general_category(), GeneralCategory::Format
                        | GeneralCategory::LineSeparator | GeneralCategory::ParagraphSeparator);
                    proptest::prop_assert!(!invisible || NEEDED_JOINERS.contains(&c), "{:?}", c);
                }
            }
        }

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
                proptest::prop_assert!(!name.as_str().chars().any(is_disguising));
            }
        }
    }
}
