//! Wormhole codes: `NAMEPLATE-WORD-WORD...`, such as `7-guitarist-revenge`.
//!
//! The nameplate (decimal digits) names the rendezvous on the mailbox
//! server; the whole code, byte for byte, is the SPAKE2 password. So a code
//! must reach the key exchange exactly as the Python client (magic-wormhole
//! 0.24) would use it: [`Code::parse`] trims surrounding whitespace and
//! changes nothing else (no case folding: `7-Guitarist-Revenge` and
//! `7-guitarist-revenge` are different codes, as they are in Python).
//!
//! Generated words come from the PGP word list ([`even_word`],
//! [`odd_word`]), alternating as Python's `choose_words` does: the first
//! word is an odd word, the second an even word, and so on
//! ([`word_for`]). Sans-IO: the caller brings the randomness.

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use rand_chacha_spake::rand_core::{RngCore, SeedableRng};
use rand_chacha_spake::ChaCha20Rng;

use crate::error::WormholeError;

/// The PGP word list as the Python client carries it (see the file's
/// header): one line per byte, `HEX even odd`.
const PGP_WORDS: &str = include_str!("pgp_words.txt");

/// `[even, odd]` for each byte, parsed once from [`PGP_WORDS`].
fn table() -> &'static [[&'static str; 2]; 256] {
    static TABLE: OnceLock<[[&'static str; 2]; 256]> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut table = [["", ""]; 256];
        let mut count = 0;
        for line in PGP_WORDS.lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let mut fields = line.split(' ');
            let (Some(hex), Some(even), Some(odd), None) =
                (fields.next(), fields.next(), fields.next(), fields.next())
            else {
                panic!("pgp_words.txt: malformed line {line:?}");
            };
            let byte = u8::from_str_radix(hex, 16).expect("pgp_words.txt: a hex byte");
            assert_eq!(usize::from(byte), count, "pgp_words.txt: bytes in order");
            table[count] = [even, odd];
            count += 1;
        }
        assert_eq!(count, 256, "pgp_words.txt: one line per byte");
        table
    })
}

/// The even word for `byte` in the PGP word list (lowercase): the word a
/// code uses at its second, fourth... word.
pub fn even_word(byte: u8) -> &'static str {
    table()[usize::from(byte)][0]
}

/// The odd word for `byte` in the PGP word list (lowercase): the word a
/// code uses at its first, third... word.
pub fn odd_word(byte: u8) -> &'static str {
    table()[usize::from(byte)][1]
}

/// The word for `byte` at `position` among a code's words (0 is the first
/// word after the nameplate): an odd word at positions 0, 2, 4..., an even
/// word at 1, 3, 5..., as Python's `PGPWordList.choose_words` picks them
/// (alternating lists let a reader notice a dropped or swapped word).
pub fn word_for(position: usize, byte: u8) -> &'static str {
    if position % 2 == 0 {
        odd_word(byte)
    } else {
        even_word(byte)
    }
}

/// A valid wormhole code: a nameplate of ASCII decimal digits, then one or
/// more non-empty words, all joined by `-`.
///
/// What [`Code::parse`] normalises, and nothing more: leading and trailing
/// whitespace (as [`str::trim`]: characters with the Unicode `White_Space`
/// property) is dropped. Case, Unicode form and everything inside are kept
/// as typed, since the code's bytes are the SPAKE2 password and must equal
/// what a Python peer uses (Python's client neither lowercases nor trims a
/// code given on its command line).
///
/// What it refuses ([`WormholeError::BadCode`]): an empty code; whitespace
/// or a control character inside; a nameplate that is not ASCII digits;
/// no word after the nameplate; an empty word (`7-a--b`, `7-a-`). Python
/// only refuses spaces and a non-numeric nameplate, so a few codes it
/// would take (`7-`, `7-a--b`, a tab inside) are refused here; none of
/// them is a code it generates.
///
/// `Debug` shows the nameplate and the number of words, not the words:
/// the code is a password, and logs should not hold it. [`fmt::Display`]
/// and [`Code::as_str`] give the whole code.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Code {
    text: String,
    /// Bytes of the nameplate at the start of `text` (before the first `-`).
    nameplate_len: usize,
}

impl Code {
    /// The code `typed` stands for, trimmed of surrounding whitespace (see
    /// [`Code`] for exactly what is normalised and what is refused).
    ///
    /// # Errors
    ///
    /// [`WormholeError::BadCode`], saying what is wrong.
    ///
    /// ```
    /// use echoxfer::wormhole::code::Code;
    /// let code = Code::parse(" 7-guitarist-revenge\n")?;
    /// assert_eq!(code.as_str(), "7-guitarist-revenge");
    /// assert_eq!(code.nameplate(), "7");
    /// assert!(Code::parse("guitarist-revenge").is_err());
    /// # Ok::<(), echoxfer::error::WormholeError>(())
    /// ```
    pub fn parse(typed: &str) -> Result<Code, WormholeError> {
        let text = typed.trim();
        if text.is_empty() {
            return Err(WormholeError::BadCode("it is empty"));
        }
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(WormholeError::BadCode(
                "it contains whitespace or a control character",
            ));
        }
        let (nameplate, words) = match text.split_once('-') {
            Some((nameplate, words)) => (nameplate, Some(words)),
            None => (text, None),
        };
        validate_nameplate(nameplate)?;
        match words {
            None => Err(WormholeError::BadCode(
                "it has no words after the nameplate",
            )),
            Some(words) if words.split('-').any(str::is_empty) => Err(WormholeError::BadCode(
                "it has an empty word (two hyphens in a row, or a hyphen at an end)",
            )),
            Some(_) => Ok(Code {
                text: text.to_string(),
                nameplate_len: nameplate.len(),
            }),
        }
    }

    /// A new code on `nameplate` (as the mailbox server allocated it) with
    /// `words` words, each chosen by one byte from `next_byte` as Python's
    /// client chooses them ([`word_for`]): 2 words give e.g.
    /// `7-guitarist-revenge`. `next_byte` must be a CSPRNG's output: the
    /// words are the secret.
    ///
    /// # Errors
    ///
    /// [`WormholeError::BadCode`] when `nameplate` is not decimal digits
    /// or `words` is 0.
    ///
    /// ```
    /// use echoxfer::wormhole::code::Code;
    /// let mut bytes = [0x69u8, 0xA9].into_iter();
    /// let code = Code::generate("7", 2, &mut || bytes.next().unwrap())?;
    /// assert_eq!(code.as_str(), "7-guitarist-revenge");
    /// # Ok::<(), echoxfer::error::WormholeError>(())
    /// ```
    pub fn generate(
        nameplate: &str,
        words: usize,
        next_byte: &mut impl FnMut() -> u8,
    ) -> Result<Code, WormholeError> {
        validate_nameplate(nameplate)?;
        if words == 0 {
            return Err(WormholeError::BadCode(
                "it has no words after the nameplate",
            ));
        }
        let mut text = nameplate.to_string();
        for position in 0..words {
            text.push('-');
            text.push_str(word_for(position, next_byte()));
        }
        Ok(Code {
            text,
            nameplate_len: nameplate.len(),
        })
    }

    /// [`Code::generate`] with its bytes drawn from ChaCha20 seeded with
    /// `seed`: the first `words` bytes of its stream, one per word, in
    /// order. Pass a fresh seed from a CSPRNG (`secure::os_seed` with the
    /// `os-rng` feature), never a reused one. The same seed always gives
    /// the same code.
    ///
    /// # Errors
    ///
    /// As [`Code::generate`].
    pub fn generate_seeded(
        nameplate: &str,
        words: usize,
        seed: [u8; 32],
    ) -> Result<Code, WormholeError> {
        let mut bytes = vec![0u8; words];
        ChaCha20Rng::from_seed(seed).fill_bytes(&mut bytes);
        let mut bytes = bytes.into_iter();
        Code::generate(nameplate, words, &mut || bytes.next().unwrap_or(0))
    }

    /// The nameplate: the digits before the first `-`, as typed (leading
    /// zeros kept).
    pub fn nameplate(&self) -> &str {
        &self.text[..self.nameplate_len]
    }

    /// The words after the nameplate, in order.
    pub fn words(&self) -> impl Iterator<Item = &str> {
        self.text[self.nameplate_len + 1..].split('-')
    }

    /// The whole code: its UTF-8 bytes are the SPAKE2 password.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// Refuses a nameplate that is not one or more ASCII decimal digits.
fn validate_nameplate(nameplate: &str) -> Result<(), WormholeError> {
    if nameplate.is_empty() || !nameplate.bytes().all(|b| b.is_ascii_digit()) {
        return Err(WormholeError::BadCode(
            "the nameplate (before the first hyphen) must be decimal digits",
        ));
    }
    Ok(())
}

impl FromStr for Code {
    type Err = WormholeError;

    fn from_str(typed: &str) -> Result<Code, WormholeError> {
        Code::parse(typed)
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Code")
            .field("nameplate", &self.nameplate())
            .field("words", &self.words().count())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn bad(typed: &str) -> &'static str {
        match Code::parse(typed) {
            Err(WormholeError::BadCode(why)) => why,
            other => panic!("{typed:?} gave {other:?}, not BadCode"),
        }
    }

    fn from_bytes(nameplate: &str, bytes: &[u8]) -> Code {
        let mut bytes = bytes.iter().copied();
        Code::generate(nameplate, bytes.len(), &mut || bytes.next().unwrap()).unwrap()
    }

    #[test]
    fn the_word_list_is_the_pgp_list_python_carries() {
        // Entries checked against the PGP word list itself (and Python's
        // _wordlist.py), not against the parsing above.
        assert_eq!(
            (even_word(0x00), odd_word(0x00)),
            ("aardvark", "adroitness")
        );
        assert_eq!((even_word(0x3C), odd_word(0x3C)), ("cobra", "crossover"));
        assert_eq!((even_word(0x69), odd_word(0x69)), ("gazelle", "guitarist"));
        assert_eq!((even_word(0xA9), odd_word(0xA9)), ("revenge", "passenger"));
        assert_eq!((even_word(0xFF), odd_word(0xFF)), ("zulu", "yucatan"));
        let all: HashSet<&str> = (0..=255u8)
            .flat_map(|b| [even_word(b), odd_word(b)])
            .collect();
        assert_eq!(all.len(), 512, "512 distinct words");
        assert!(all
            .iter()
            .all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase())));
    }

    #[test]
    fn words_alternate_odd_then_even_as_python_chooses_them() {
        assert_eq!(
            from_bytes("7", &[0x69, 0xA9]).as_str(),
            "7-guitarist-revenge"
        );
        assert_eq!(
            from_bytes("42", &[0, 0, 0, 0]).as_str(),
            "42-adroitness-aardvark-adroitness-aardvark"
        );
        assert_eq!(from_bytes("1", &[0xFF]).as_str(), "1-yucatan");
        for position in 0..6 {
            let want = if position % 2 == 0 {
                "crossover"
            } else {
                "cobra"
            };
            assert_eq!(word_for(position, 0x3C), want, "position {position}");
        }
    }

    #[test]
    fn a_seed_gives_one_code_with_each_word_from_its_list() {
        let seed = [7u8; 32];
        let code = Code::generate_seeded("15", 5, seed).unwrap();
        assert_eq!(code, Code::generate_seeded("15", 5, seed).unwrap());
        assert_eq!(code.nameplate(), "15");
        let words: Vec<&str> = code.words().collect();
        assert_eq!(words.len(), 5);
        let odd: HashSet<&str> = (0..=255u8).map(odd_word).collect();
        let even: HashSet<&str> = (0..=255u8).map(even_word).collect();
        for (i, word) in words.iter().enumerate() {
            let list = if i % 2 == 0 { &odd } else { &even };
            assert!(list.contains(word), "word {i} {word:?} from the wrong list");
        }
        // The stream's first five bytes, one per word, in order.
        let mut rng = ChaCha20Rng::from_seed(seed);
        let mut bytes = [0u8; 5];
        rng.fill_bytes(&mut bytes);
        assert_eq!(code.as_str(), from_bytes("15", &bytes).as_str());
        // Another seed, another code (2^-40 to collide by chance).
        assert_ne!(code, Code::generate_seeded("15", 5, [8u8; 32]).unwrap());
        // Generated codes parse back to themselves.
        assert_eq!(Code::parse(code.as_str()).unwrap(), code);
    }

    #[test]
    fn generate_refuses_no_words_and_a_bad_nameplate() {
        let mut zero = || 0u8;
        for (nameplate, words) in [("7", 0), ("", 2), ("7a", 2), ("-7", 2), (" 7", 2)] {
            assert!(
                matches!(
                    Code::generate(nameplate, words, &mut zero),
                    Err(WormholeError::BadCode(_))
                ),
                "{nameplate:?} with {words} words"
            );
        }
    }

    #[test]
    fn parse_trims_surrounding_whitespace_and_keeps_everything_else() {
        let code = Code::parse(" \t7-guitarist-revenge\r\n").unwrap();
        assert_eq!(code.as_str(), "7-guitarist-revenge");
        assert_eq!(code.nameplate(), "7");
        assert_eq!(code.words().collect::<Vec<_>>(), ["guitarist", "revenge"]);
        // Case is kept: the bytes are the SPAKE2 password.
        let upper = Code::parse("7-Guitarist-REVENGE").unwrap();
        assert_eq!(upper.as_str(), "7-Guitarist-REVENGE");
        assert_ne!(upper, code);
        // Leading zeros, long nameplates, one word, non-list and
        // non-ASCII words are all codes.
        assert_eq!(Code::parse("007-x").unwrap().nameplate(), "007");
        assert_eq!(Code::parse("123456-purple").unwrap().nameplate(), "123456");
        assert_eq!(Code::parse("4-été-ß").unwrap().as_str(), "4-été-ß");
        assert_eq!("9-a-b".parse::<Code>().unwrap().to_string(), "9-a-b");
    }

    #[test]
    fn parse_refuses_what_is_not_a_code_with_the_reason() {
        for typed in ["", "  \n"] {
            assert_eq!(bad(typed), "it is empty", "{typed:?}");
        }
        for typed in [
            "7-guitar ist",
            "7 -a",
            "7-a\tb",
            "7-a\u{0}b",
            "7-a\u{3000}b",
        ] {
            assert_eq!(
                bad(typed),
                "it contains whitespace or a control character",
                "{typed:?}"
            );
        }
        let nameplate = "the nameplate (before the first hyphen) must be decimal digits";
        // "٣" is ARABIC-INDIC DIGIT THREE: a Unicode digit, not a nameplate.
        for typed in [
            "guitarist-revenge",
            "-7-a",
            "x7-a",
            "7x-a",
            "٣-a",
            "+7-a",
            "abc",
        ] {
            assert_eq!(bad(typed), nameplate, "{typed:?}");
        }
        assert_eq!(bad("7"), "it has no words after the nameplate");
        for typed in ["7-", "7-a--b", "7-a-", "7--a"] {
            assert!(bad(typed).starts_with("it has an empty word"), "{typed:?}");
        }
    }

    #[test]
    fn the_error_says_what_a_code_looks_like() {
        let text = Code::parse("revenge").unwrap_err().to_string();
        assert!(text.contains("nameplate"), "{text}");
        assert!(text.contains("7-guitarist-revenge"), "{text}");
    }

    #[test]
    fn debug_does_not_show_the_words() {
        let shown = format!("{:?}", Code::parse("7-guitarist-revenge").unwrap());
        assert!(!shown.contains("guitarist"), "{shown}");
        assert!(shown.contains("\"7\"") && shown.contains('2'), "{shown}");
    }
}
