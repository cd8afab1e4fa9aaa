//! How what a user holds becomes the secure channel's password: a code as
//! typed ([`normalize_code`]) and a secret file's content
//! ([`secret_file_password`]). Both sides of a session must apply the same
//! rule, so it lives here, once, and docs/PROTOCOL.md ("Sides and
//! identities", section 6) states it for implementations in other
//! languages.

/// The fewest bytes of secret a secret file must hold (after its trailing
/// whitespace is dropped).
pub const MIN_SECRET_LEN: usize = 16;

/// Why a code or a secret file's content cannot be a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    /// Nothing is left of the code once surrounding whitespace is dropped.
    #[error("the code is empty")]
    EmptyCode,
    /// A secret file holds too little.
    #[error("it holds {len} bytes of secret, fewer than {MIN_SECRET_LEN}")]
    ShortSecret {
        /// Bytes of secret, trailing whitespace excluded.
        len: usize,
    },
}

/// The one normalisation of a typed code; the password is the UTF-8 bytes
/// of the result:
///
/// 1. leading and trailing whitespace is dropped: every character with the
///    Unicode `White_Space` property (U+0009 to U+000D, U+0020, U+0085,
///    U+00A0, U+1680, U+2000 to U+200A, U+2028, U+2029, U+202F, U+205F,
///    U+3000), as [`str::trim`] does; whitespace inside is kept;
/// 2. ASCII capital letters `A` to `Z` become `a` to `z`;
/// 3. every other character stays exactly as given: no Unicode case
///    folding (`É` and `é` are different codes) and no Unicode
///    normalisation (`é` as one code point or as `e` and a combining accent
///    are different codes).
///
/// So `7-Amber-Otter-Violin`, ` 7-amber-otter-violin\n` and the printed
/// `7-amber-otter-violin` are one code. Generated codes are ASCII, where
/// this is plain case-insensitivity; the rule is ASCII-only so that it does
/// not depend on a Unicode version's case tables. An empty result is
/// refused.
pub fn normalize_code(typed: &str) -> Result<String, PasswordError> {
    let code = typed.trim().to_ascii_lowercase();
    if code.is_empty() {
        return Err(PasswordError::EmptyCode);
    }
    Ok(code)
}

/// The password a secret file's `content` gives: its bytes as they are
/// (no hex decoding, no text encoding assumed), less trailing ASCII
/// whitespace (bytes 0x09, 0x0A, 0x0C, 0x0D and 0x20, as
/// [`<[u8]>::trim_ascii_end`](slice::trim_ascii_end); leading whitespace is
/// kept). At least [`MIN_SECRET_LEN`] bytes must remain. `echoxfer secret`
/// writes 64 hex digits and a newline: the password is those 64 ASCII
/// bytes.
pub fn secret_file_password(content: &[u8]) -> Result<Vec<u8>, PasswordError> {
    let secret = content.trim_ascii_end();
    if secret.len() < MIN_SECRET_LEN {
        return Err(PasswordError::ShortSecret { len: secret.len() });
    }
    Ok(secret.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_is_trimmed_of_unicode_whitespace_and_ascii_lowercased_only() {
        assert_eq!(normalize_code(" 7-Acorn-BELL \n").unwrap(), "7-acorn-bell");
        assert_eq!(
            normalize_code("\u{a0}\u{3000}7-acorn\u{2009}").unwrap(),
            "7-acorn"
        );
        assert_eq!(normalize_code("a b").unwrap(), "a b");
        // No Unicode case folding, no normalisation.
        assert_eq!(normalize_code("É-Σ").unwrap(), "É-Σ");
        assert_ne!(
            normalize_code("caf\u{e9}").unwrap(),
            normalize_code("cafe\u{301}").unwrap()
        );
        assert_eq!(normalize_code(" \t\n"), Err(PasswordError::EmptyCode));
    }

    #[test]
    fn a_secret_file_keeps_its_bytes_less_trailing_ascii_whitespace() {
        let hex = "00112233445566778899aabbccddeeff";
        let got = secret_file_password(format!("{hex}\r\n \t").as_bytes()).unwrap();
        assert_eq!(got, hex.as_bytes(), "no hex decoding");
        let lead = secret_file_password(b" 0123456789abcdef\n").unwrap();
        assert_eq!(lead, b" 0123456789abcdef", "leading whitespace is kept");
        assert_eq!(
            secret_file_password(b"0123456789abcde\n\n\n"),
            Err(PasswordError::ShortSecret { len: 15 })
        );
        assert_eq!(secret_file_password(&[0xff; 16]).unwrap(), [0xff; 16]);
    }
}
