//! What authenticates a native session: a short code (made here from OS
//! randomness, or typed by the user), a secret file, or nothing
//! (`--insecure`); the [`Channel`] a session's machine runs in (behind the
//! secure layer, or plain); and the messages that explain a wrong code or
//! a secure side meeting a plaintext one. The cryptography is the
//! library's (`echoxfer::secure`); this only chooses and explains.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use echoxfer::driver::{DriverError, Limits};
use echoxfer::error::{CodecError, ProtocolError, RefusalReason, SecureError};
use echoxfer::secure::{SecureConfig, Side};
use echoxfer::{Error, StreamMachine};

use echoxfer::secure::{self, secret_file_password};

use crate::addr::HostPort;
use crate::args::SecureArgs;
use crate::net::CmdResult;
use crate::term;

mod code;

pub use code::CODE_ENV;
/// A session's machine, behind the secure channel or plain: the library's.
pub use echoxfer::secure::Channel;

/// The code words, one per line (256: each word is 8 bits of a code).
const WORD_LIST: &str = include_str!("../words.txt");

/// Words in a code after its number.
const CODE_WORDS: usize = 3;

/// The code's number is 1 to this.
const CODE_NUMBERS: u16 = 999;

/// Random bytes of a secret made by `echoxfer secret` (written as hex).
const SECRET_BYTES: usize = 32;

/// The code words.
pub fn words() -> Vec<&'static str> {
    WORD_LIST.lines().filter(|l| !l.is_empty()).collect()
}

/// `N` bytes from the OS's CSPRNG.
pub fn random_bytes<const N: usize>() -> CmdResult<[u8; N]> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes)
        .map_err(|e| format!("cannot read the OS's random number generator: {e}"))?;
    Ok(bytes)
}

/// A uniformly random number below `n` (rejection sampling over u16s).
fn random_below(n: u16) -> CmdResult<u16> {
    let zone = u16::MAX - u16::MAX % n;
    loop {
        let v = u16::from_le_bytes(random_bytes()?);
        if v < zone {
            return Ok(v % n);
        }
    }
}

/// A fresh code: a number and [`CODE_WORDS`] words, e.g. `7-crossover-clockwork-amber`
/// (about 34 bits: log2(999) + 3 x 8).
pub fn new_code() -> CmdResult<String> {
    let words = words();
    let mut code = (random_below(CODE_NUMBERS)? + 1).to_string();
    for _ in 0..CODE_WORDS {
        let i = random_below(words.len() as u16)?;
        code.push('-');
        code.push_str(words[usize::from(i)]);
    }
    Ok(code)
}

/// Reads a secret file: it must be readable by its owner only, and its
/// content becomes the password by the library's rule
/// ([`secret_file_password`]: trailing whitespace dropped, at least 16
/// bytes left, no decoding). Errors name the file and say what to do.
pub fn read_secret_file(path: &Path) -> CmdResult<Vec<u8>> {
    let name = path.display();
    let meta = fs::metadata(path).map_err(|e| {
        format!("cannot read the secret file {name}: {e} (make one with `echoxfer secret {name}`)")
    })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(format!(
                "the secret file {name} is readable by others (mode {mode:03o}): \
                 run `chmod 600 {name}` (and make a new secret if others may have read it)"
            )
            .into());
        }
    }
    let _ = meta;
    let bytes = fs::read(path).map_err(|e| format!("cannot read the secret file {name}: {e}"))?;
    secret_file_password(&bytes).map_err(|e| {
        format!("the secret file {name} is too weak: {e}: make a strong one with `echoxfer secret {name}`")
            .into()
    })
}

/// A new secret: [`SECRET_BYTES`] random bytes as hex, and a newline.
fn new_secret() -> CmdResult<String> {
    let bytes: [u8; SECRET_BYTES] = random_bytes()?;
    let mut hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    hex.push('\n');
    Ok(hex)
}

/// `echoxfer secret [FILE]`: writes a new secret to `FILE` (created
/// readable by its owner only; an existing file is never replaced), or
/// prints it.
pub fn secret_command(file: Option<PathBuf>) -> CmdResult {
    let secret = new_secret()?;
    let Some(path) = file else {
        print!("{secret}");
        return Ok(());
    };
    let name = path.display();
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&path).map_err(|e| {
        format!("cannot create the secret file {name}: {e} (an existing file is never replaced: pick a new name or delete it)")
    })?;
    file.write_all(secret.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("cannot write the secret file {name}: {e}"))?;
    eprintln!(
        "wrote a new secret to {name} (readable by you only): copy it to the other side \
         (e.g. with scp) and give both `--secret-file {name}`"
    );
    Ok(())
}

/// How a session is authenticated.
#[derive(Debug, Clone)]
pub enum Auth {
    /// Plaintext (`--insecure`).
    Insecure,
    /// The secure channel, keyed by this secret (a code or a file's content).
    Secret(Vec<u8>),
}

impl Auth {
    /// A server's `limits` for this authentication: a secure server tells
    /// a client over `--max-per-source` why it is refused (a refusal
    /// notice, which a secure client reads and explains); a plaintext one
    /// closes such a connection without a byte, as before.
    pub fn server_limits(&self, limits: Limits) -> Limits {
        Limits {
            notify_at_cap: matches!(self, Auth::Secret(_)),
            ..limits
        }
    }
}

/// What a side that connects (`send`, `echo connect`, `receive --stdio`)
/// was given: `--code`, `--secret-file` or `--insecure`; else the code in
/// [`CODE_ENV`]; else, when `may_prompt` and stdin is a terminal, the code
/// typed at a prompt. It must be told one of them.
pub fn for_client(a: &SecureArgs, command: &str, may_prompt: bool) -> CmdResult<Auth> {
    match (&a.code, &a.secret_file, a.insecure) {
        (Some(_), _, _) => {}
        (_, Some(file), _) => return Ok(Auth::Secret(read_secret_file(file)?)),
        (_, _, true) => return Ok(Auth::Insecure),
        _ => {}
    }
    if let Some(code) = code::given(a.code.as_deref())? {
        return Ok(Auth::Secret(code.into_bytes()));
    }
    if may_prompt {
        if let Some(code) = code::prompt("code (the one the other side printed)")? {
            return Ok(Auth::Secret(code.into_bytes()));
        }
    }
    let typed = if may_prompt {
        "type it at the prompt (run from a terminal), or "
    } else {
        ""
    };
    Err(format!(
        "{command} needs the code the other side printed: {typed}set {CODE_ENV}=CODE in its \
         environment (or give --code CODE, which other users can see in ps); or --secret-file \
         FILE, the same as the other side's; or --insecure if it runs with --insecure"
    )
    .into())
}

/// How long a server serves: what decides how strong its secret must be.
#[derive(Debug, Clone, Copy)]
pub enum Lifetime {
    /// One session (`receive --once`): a wrong code ends it, so a guesser
    /// has one try and a printed code is enough.
    Once,
    /// Until stopped (`receive`, `echo serve`): a guesser gets try after
    /// try, so a secret file or a code at least as strong as a printed one
    /// is required. `command` names it; `once` says what serves one
    /// session instead, if anything does.
    UntilStopped {
        /// The server's command, e.g. `echo serve`.
        command: &'static str,
        /// What to run for one session instead, if anything.
        once: Option<&'static str>,
    },
}

/// What a side that accepts (`receive`, `echo serve`) uses: the secret
/// file given, plaintext with `--insecure` (warned about on a non-loopback
/// address), the code given (`--code` or [`CODE_ENV`]), or, for one
/// session, a fresh code, printed (`code: ...` on stdout). A server that
/// runs until stopped takes no printed code and no weak code
/// ([`code::is_strong`]): it is refused with what to do. The other side is
/// told to type the code at its prompt, not on its command line.
pub fn for_server(
    a: &SecureArgs,
    listen: &HostPort,
    peer_command: &str,
    lifetime: Lifetime,
) -> CmdResult<Auth> {
    if a.insecure {
        if !listen.is_loopback() {
            eprintln!(
                "WARNING: --insecure on {listen}, which is not (only) a loopback address: anyone who can \
                 reach it can read everything sent and send in their own data; drop --insecure to \
                 require a code"
            );
        }
        return Ok(Auth::Insecure);
    }
    if let Some(file) = &a.secret_file {
        return Ok(Auth::Secret(read_secret_file(file)?));
    }
    let given = code::given(a.code.as_deref())?;
    if let Lifetime::UntilStopped { command, once } = lifetime {
        match &given {
            Some(code) if code::is_strong(code) => {}
            other => return Err(code::long_running_refusal(command, other.is_some(), once).into()),
        }
    }
    // Printed once the listener is bound: a port in use prints no code.
    let code = match given {
        Some(code) => code,
        None => {
            let code = new_code()?;
            term::after_listening(term::info_out(), format!("code: {code}"));
            code
        }
    };
    term::after_listening(
        term::Out::Stderr,
        format!(
            "on the other side, run `{peer_command}` and type the code when it asks (or set \
             {CODE_ENV} in its environment): not --code, which other users can see in ps"
        ),
    );
    Ok(Auth::Secret(code.into_bytes()))
}

impl Auth {
    /// The secure channel's password; `None` with `--insecure`.
    pub fn secret(&self) -> Option<&[u8]> {
        match self {
            Auth::Insecure => None,
            Auth::Secret(secret) => Some(secret),
        }
    }

    /// `machine` on the side that connected, behind the secure channel
    /// (or plain with `--insecure`).
    pub fn client_channel<M: StreamMachine>(&self, machine: M, now: Instant) -> Channel<M> {
        self.channel(Side::Client, machine, now)
    }

    /// `machine` on the side that accepted.
    pub fn server_channel<M: StreamMachine>(&self, machine: M, now: Instant) -> Channel<M> {
        self.channel(Side::Server, machine, now)
    }

    fn channel<M: StreamMachine>(&self, side: Side, machine: M, now: Instant) -> Channel<M> {
        let config = SecureConfig::default();
        let Some(secret) = self.secret() else {
            return Channel::Plain(machine);
        };
        match secure::os_seed() {
            Ok(seed) => Channel::new(side, machine, Some(secret), config, now, seed),
            Err(e) => {
                // No seed, no session: an empty secret fails it at once,
                // with a typed error, rather than running it on a weak seed.
                tracing::error!("{e}");
                Channel::new(side, machine, Some(b""), config, now, [0; 32])
            }
        }
    }
}

/// The machine's error inside a command's error, if that is what it is.
fn machine_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a Error> {
    match e.downcast_ref::<DriverError>() {
        Some(DriverError::Machine(m)) => Some(m),
        _ => e.downcast_ref::<Error>(),
    }
}

/// Whether a command's error is the peer's "wrong code".
pub fn is_wrong_code(e: &(dyn std::error::Error + 'static)) -> bool {
    matches!(
        machine_error(e),
        Some(Error::Secure(SecureError::WrongCode))
    )
}

/// What kind of session failed, for [`explain`]: what to do next differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Session {
    /// `send`: the receiver's one-time code is used up after a wrong one.
    Send,
    /// `receive` (`--once`, `--stdio`).
    Receive,
    /// `echo connect`: messages, no files.
    Echo,
}

impl Session {
    /// What to run again after a wrong code.
    fn again(self) -> &'static str {
        match self {
            Session::Send => "run receive again",
            Session::Receive => "run receive again",
            Session::Echo => "try again",
        }
    }

    /// What is left after a cut session, and how to go on.
    fn after_cut(self) -> &'static str {
        match self {
            Session::Send | Session::Receive => {
                "files already saved stay, partial files are kept, and sending the same files \
                 again resumes"
            }
            Session::Echo => "connect again to go on",
        }
    }
}

/// A session's failure with `peer` said the way a user can act on: a
/// server that refuses this address for a while (after failed guesses from
/// it), a wrong code, a secure side meeting a plaintext one (either way
/// round), a peer of the other protocol, a peer that hung up in the
/// handshake, a peer that went away mid-session (reset, or an end of
/// stream without its close record: stopped or killed, not tampering).
/// Other errors are returned as they are.
pub fn explain(
    e: Box<dyn std::error::Error + Send + Sync>,
    peer: &str,
    session: Session,
) -> Box<dyn std::error::Error + Send + Sync> {
    // Before the reset test: a refusal notice is read before the reset a
    // refusing server's close may cause.
    if let Some(Error::Secure(SecureError::Refused {
        reason,
        retry_after,
    })) = machine_error(&*e)
    {
        let secs = retry_after.as_secs();
        return match *reason {
            RefusalReason::FailedGuesses => format!(
                "refused: the server at {peer} refuses this address for {secs} s after failed \
                 code guesses from it; wait and try again"
            ),
            RefusalReason::SourceCap => format!(
                "refused: the server at {peer} already runs as many sessions from this address \
                 as its --max-per-source limit allows; wait for one of them to end, or have the \
                 server raise --max-per-source (e.g. many clients behind one address)"
            ),
            RefusalReason::Unknown(byte) => format!(
                "refused: the server at {peer} refuses this connection for {secs} s (reason \
                 {byte}); wait and try again"
            ),
        }
        .into();
    }
    let after_cut = session.after_cut();
    if e.downcast_ref::<DriverError>()
        .is_some_and(DriverError::is_broken_connection)
    {
        return format!(
            "the connection with {peer} broke ({e}): the other side stopped or the network cut \
             it; {after_cut}"
        )
        .into();
    }
    let Some(m) = machine_error(&*e) else {
        return e;
    };
    let text = match m {
        Error::Secure(SecureError::WrongCode) => format!(
            "wrong code: {peer} was given a different code or secret (a one-time code is now \
             used up); check the code and {}",
            session.again()
        ),
        Error::Secure(SecureError::Truncated) => format!(
            "the peer at {peer} closed the connection without ending the session (it was \
             stopped or killed, or its network went away); {after_cut}"
        ),
        Error::Secure(SecureError::PeerIsPlaintext) => format!(
            "{peer} speaks plaintext (it runs with --insecure) and this side requires \
             encryption: run both sides with the same --code, or add --insecure here too \
             (then anyone on the path can read and alter the session)"
        ),
        Error::Remote(ProtocolError::Codec(CodecError::PeerExpectsEncryption)) => format!(
            "{peer} requires an encrypted session and this side runs with --insecure: drop \
             --insecure and give --code CODE (the code it printed) or --secret-file FILE"
        ),
        Error::Remote(ProtocolError::Codec(CodecError::WrongProtocol { found, .. })) => {
            match other_protocol(*found) {
                Some(text) => format!("{peer}: {text}"),
                None => return e,
            }
        }
        Error::PeerFailed { message, .. } if other_protocol_message(message).is_some() => {
            format!(
                "{peer}: {}",
                other_protocol_message(message).expect("checked")
            )
        }
        Error::Secure(SecureError::HandshakeCut) => {
            format!(
                "{peer} closed the connection during the secure handshake: it may run as many \
                 sessions from this address as it allows, or be stopping or gone; check the \
                 code and try again later"
            )
        }
        _ => return e,
    };
    text.into()
}

/// What a peer that speaks the other protocol (its preamble's protocol
/// byte) runs, and what to do.
fn other_protocol(found: u8) -> Option<&'static str> {
    match found {
        b'F' => Some(
            "that port runs `echoxfer receive` (file transfer), not an echo server: use \
             `echoxfer send` there, or give echo connect the address of an `echoxfer echo serve`",
        ),
        b'E' => Some(
            "that port runs `echoxfer echo serve`, not a file receiver: use `echoxfer echo \
             connect` there, or give send the address of an `echoxfer receive`",
        ),
        _ => None,
    }
}

/// The same, from the peer's own error report (it saw our preamble
/// first): `peer speaks protocol 0x45, ...` names what this side speaks.
fn other_protocol_message(message: &str) -> Option<&'static str> {
    if message.contains("peer speaks protocol 0x45") {
        // It got our echo preamble: it is a file receiver.
        other_protocol(b'F')
    } else if message.contains("peer speaks protocol 0x46") {
        other_protocol(b'E')
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_connection_broken_mid_session_names_the_peer_and_says_sending_again_resumes() {
        let broken = DriverError::Io {
            context: "writing to the peer",
            source: std::io::ErrorKind::BrokenPipe.into(),
        };
        let text = explain(broken.into(), "127.0.0.1:9", Session::Send).to_string();
        assert!(
            text.contains("127.0.0.1:9") && text.contains("again resumes"),
            "{text}"
        );
        let other = DriverError::Io {
            context: "reading from the peer",
            source: std::io::ErrorKind::PermissionDenied.into(),
        };
        let text = explain(other.into(), "127.0.0.1:9", Session::Send).to_string();
        assert!(!text.contains("resumes"), "{text}");
    }

    #[test]
    fn a_truncation_is_a_peer_that_went_away_and_a_bad_record_stays_an_integrity_failure() {
        let cut = DriverError::Machine(Error::Secure(SecureError::Truncated));
        let text = explain(cut.into(), "127.0.0.1:9", Session::Receive).to_string();
        assert!(
            text.contains("closed the connection without ending the session")
                && !text.contains("tampered")
                && !text.contains('\n'),
            "{text}"
        );
        let echo = DriverError::Machine(Error::Secure(SecureError::Truncated));
        let text = explain(echo.into(), "127.0.0.1:9", Session::Echo).to_string();
        assert!(!text.contains("file"), "echo says nothing of files: {text}");
        let forged = DriverError::Machine(Error::Secure(SecureError::Integrity("not authentic")));
        let text = explain(forged.into(), "127.0.0.1:9", Session::Receive).to_string();
        assert!(text.contains("integrity failure"), "{text}");
    }

    #[test]
    fn a_refusal_after_failed_guesses_says_for_how_long_and_not_that_the_network_cut_it() {
        let refused = DriverError::Machine(Error::Secure(SecureError::Refused {
            reason: RefusalReason::FailedGuesses,
            retry_after: Duration::from_secs(31),
        }));
        let text = explain(refused.into(), "127.0.0.1:9", Session::Send).to_string();
        assert_eq!(
            text,
            "refused: the server at 127.0.0.1:9 refuses this address for 31 s after failed code \
             guesses from it; wait and try again"
        );
    }

    #[test]
    fn the_word_list_has_at_least_256_distinct_short_lowercase_words() {
        let words = words();
        assert!(words.len() >= 256, "{}", words.len());
        let distinct: std::collections::HashSet<_> = words.iter().collect();
        assert_eq!(distinct.len(), words.len(), "duplicates in words.txt");
        for w in &words {
            assert!(
                (2..=9).contains(&w.len()) && w.chars().all(|c| c.is_ascii_lowercase()),
                "{w:?} is not an easy word"
            );
        }
    }

    #[test]
    fn a_new_code_is_a_number_and_three_listed_words_and_codes_differ() {
        let words = words();
        let code = new_code().unwrap();
        let parts: Vec<&str> = code.split('-').collect();
        assert_eq!(parts.len(), 1 + CODE_WORDS, "{code}");
        assert!((1..=999).contains(&parts[0].parse::<u32>().unwrap()));
        assert!(parts[1..].iter().all(|w| words.contains(w)), "{code}");
        let codes: std::collections::HashSet<String> =
            (0..50).map(|_| new_code().unwrap()).collect();
        assert!(codes.len() > 45, "codes repeat: {codes:?}");
    }
}
