//! Where a typed code comes from, kept off the command line where it can:
//! `--code` (seen by every user in `ps` and `/proc/PID/cmdline`, and kept
//! in shell history), the [`CODE_ENV`] environment variable (readable by
//! the same user only), or a prompt on the terminal; and whether a code is
//! strong enough for a server that runs until stopped.

use std::collections::HashSet;
use std::io::{self, BufRead, IsTerminal, Write};

use echoxfer::secure::normalize_code;

use super::{words, CODE_NUMBERS, CODE_WORDS};
use crate::net::CmdResult;

/// The environment variable a code may be given in.
pub const CODE_ENV: &str = "ECHOXFER_CODE";

/// A chosen code not in the printed form counts as strong from this many
/// characters on ...
const CHOSEN_MIN_CHARS: usize = 20;

/// ... with at least this many different characters among them.
const CHOSEN_MIN_DISTINCT: usize = 10;

/// The code given with `--code` or in [`CODE_ENV`] (normalised), if any.
pub fn given(flag: Option<&str>) -> CmdResult<Option<String>> {
    if let Some(code) = flag {
        return Ok(Some(normalized(code, "--code")?));
    }
    match std::env::var(CODE_ENV) {
        Ok(code) => Ok(Some(normalized(&code, CODE_ENV)?)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => {
            Err(format!("{CODE_ENV} is not valid UTF-8: set it to the code").into())
        }
    }
}

/// A code as typed, normalised (the library's one rule), or what to do.
fn normalized(code: &str, from: &str) -> CmdResult<String> {
    normalize_code(code)
        .map_err(|e| format!("{e} ({from}): give the code the other side printed").into())
}

/// Asks for the code on the terminal when stdin is one (`what` says whose
/// code it is); `None` when stdin is not a terminal.
pub fn prompt(what: &str) -> CmdResult<Option<String>> {
    let stdin = io::stdin();
    if !stdin.is_terminal() {
        return Ok(None);
    }
    let mut err = io::stderr();
    write!(err, "{what} (or set {CODE_ENV}): ")?;
    err.flush()?;
    let mut line = String::new();
    if stdin.lock().read_line(&mut line)? == 0 {
        return Err("no code typed (the terminal's input ended)".into());
    }
    Ok(Some(normalized(&line, "the prompt")?))
}

/// How strong a (normalised) code is, against a printed one: a number
/// from 1 to 999 and at least [`CODE_WORDS`] words of the list, joined by
/// `-`, is at least as strong (about 34 bits, more with more words); a
/// code in another form counts as strong when it is at least
/// [`CHOSEN_MIN_CHARS`] characters long with at least
/// [`CHOSEN_MIN_DISTINCT`] different ones (a passphrase, or random
/// characters such as `echoxfer secret`'s hex). Anything else is weak.
pub fn is_strong(code: &str) -> bool {
    let mut parts = code.split('-');
    let number = parts.next().unwrap_or("");
    let rest: Vec<&str> = parts.collect();
    let list = words();
    let printed_form = !number.is_empty()
        && number.len() <= 3
        && number.bytes().all(|b| b.is_ascii_digit())
        && number
            .parse::<u16>()
            .is_ok_and(|n| (1..=CODE_NUMBERS).contains(&n))
        && rest.len() >= CODE_WORDS
        && rest.iter().all(|w| list.contains(w));
    if printed_form {
        return true;
    }
    let distinct: HashSet<char> = code.chars().collect();
    code.chars().count() >= CHOSEN_MIN_CHARS && distinct.len() >= CHOSEN_MIN_DISTINCT
}

/// What a server that runs until stopped (`command`) is told when it has
/// no secret file and no strong code (`weak`: the code it was given is too
/// weak; otherwise it was given none). `once` says what runs one session
/// instead, if anything does.
pub fn long_running_refusal(command: &str, weak: bool, once: Option<&str>) -> String {
    let why = if weak {
        "the code given is weaker than a printed one"
    } else {
        "no secret was given"
    };
    let once = once
        .map(|o| format!("; for one session, {o}"))
        .unwrap_or_default();
    format!(
        "{command} runs until stopped, so a guesser gets try after try, and {why}: give it \
         --secret-file FILE (make one with `echoxfer secret FILE`, and give the other side a \
         copy), or a code at least as strong as a printed one in {CODE_ENV} (a number and \
         {CODE_WORDS} or more words of the list, like 7-amber-otter-violin, or {CHOSEN_MIN_CHARS} \
         characters or more with {CHOSEN_MIN_DISTINCT} or more different ones), or --insecure on \
         purpose{once}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printed_codes_and_long_varied_codes_are_strong_short_or_repetitive_ones_weak() {
        for _ in 0..20 {
            let code = super::super::new_code().unwrap();
            assert!(is_strong(&code), "{code}");
        }
        assert!(is_strong("7-acorn-bell-echo"));
        assert!(is_strong("999-acorn-bell-echo-acorn"));
        assert!(is_strong("0123456789abcdef0123456789abcdef"));
        assert!(is_strong("correct horse battery staple"));
        for weak in [
            "1",
            "-",
            "hunter2",
            "7-acorn-bell",
            "0-acorn-bell-echo",
            "1000-acorn-bell",
            "7-acorn-bell-nope",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "abababababababababababab",
        ] {
            assert!(!is_strong(weak), "{weak}");
        }
    }
}
