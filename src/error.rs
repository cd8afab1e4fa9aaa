//! The error types of the machines.
//!
//! Following h11, an error says whose fault it is: [`ProtocolError`] means
//! the peer broke the protocol (remote), [`UsageError`] means the caller
//! misused the API (local). Machine errors are sticky, as in rustls: once a
//! machine fails, every later input returns the same [`Error`].
//!
//! Whose fault each [`Error`] is:
//!
//! | fault | variants | what to do |
//! |---|---|---|
//! | the peer's | [`Error::Remote`] ([`ProtocolError`]), [`Error::TimedOut`], [`Error::TooSlow`], [`Error::HashMismatch`] | nothing locally: the session is lost, retry or blame the peer |
//! | the peer reports its own | [`Error::PeerFailed`] | read its message; it may say what to change |
//! | the caller's (API misuse, a bad config) | [`Error::Local`] ([`UsageError`], [`ConfigError`] inside [`UsageError::BadConfig`]) | fix the code or the config: the error names the call or the field |
//! | the application's (not misuse) | [`Error::Aborted`], [`Error::SourceChanged`] | what the application decided or saw: a disk failed, a file changed, a shutdown |
//! | this side's load (nobody's fault) | [`Error::Busy`] | try again later |

use std::fmt;

pub use crate::codec::CodecError;

/// Why a machine stopped with a failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The peer broke the protocol (or sent bytes that are not the protocol).
    #[error("peer broke the protocol: {0}")]
    Remote(#[from] ProtocolError),
    /// The caller used the machine wrongly.
    #[error("API misuse: {0}")]
    Local(#[from] UsageError),
    /// The peer told us it failed, with an `Error` frame.
    #[error("peer reported an error ({code:?}): {message}")]
    PeerFailed {
        /// The peer's error code.
        code: ErrorCode,
        /// The peer's text, with control characters neutralised.
        message: String,
    },
    /// The peer sent nothing for longer than the configured idle timeout.
    #[error("peer stalled: no input for {0:?}")]
    TimedOut(std::time::Duration),
    /// The file's BLAKE3 did not match what the sender announced.
    #[error("integrity check failed: content hash mismatch")]
    HashMismatch,
    /// The application gave up on the session (a disk failed, a source
    /// file changed, the server is shutting down): neither the peer's
    /// fault nor a misuse of the machine.
    #[error("aborted: {0}")]
    Aborted(String),
    /// What the application handed a sender is not what the sender asked
    /// for: the source changed while it was being sent (a file shrank or
    /// grew). The application's failure, like [`Error::Aborted`], not a
    /// misuse of the machine: the answer is refused and changes nothing;
    /// abort the session and send the file again once it is stable.
    #[error(
        "source changed while being sent ({0}); send the file again once it no longer changes"
    )]
    SourceChanged(&'static str),
    /// The peer was too slow: its preamble, or one frame once begun, did not
    /// arrive whole within its deadline (`handshake_timeout`,
    /// `frame_timeout`), however steadily bytes trickled in.
    #[error("peer too slow: {what} did not arrive whole within {limit:?}")]
    TooSlow {
        /// What was late: "its preamble" or "a frame".
        what: &'static str,
        /// The deadline it missed.
        limit: std::time::Duration,
    },
    /// This side holds as many half-received frames, for all its peers
    /// together, as its shared receive budget allows
    /// ([`RecvBudget`](crate::session::RecvBudget)). Not a protocol error:
    /// this peer may be innocent (others spent the budget), so it is told
    /// the server is busy and may try again later.
    #[error("server busy: its receive budget of {limit} bytes for half-received frames is spent; try again later")]
    Busy {
        /// The shared budget, in bytes.
        limit: usize,
    },
    /// The secure channel failed: a wrong code, a record that does not
    /// authenticate, a plaintext peer, a handshake that took too long
    /// (see [`SecureError`]).
    #[error(transparent)]
    Secure(#[from] SecureError),
    /// The magic-wormhole client failed: a wrong code, a mailbox server or
    /// transit relay that broke its protocol, a peer whose messages do not
    /// decrypt (see [`WormholeError`]).
    #[error(transparent)]
    Wormhole(#[from] WormholeError),
}

impl Error {
    /// The code sent to the peer in an `Error` frame when this error ends a session.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::Remote(_) => ErrorCode::Protocol,
            Error::Local(_)
            | Error::PeerFailed { .. }
            | Error::Aborted(_)
            | Error::SourceChanged(_) => ErrorCode::Internal,
            Error::TimedOut(_) => ErrorCode::Timeout,
            Error::HashMismatch => ErrorCode::HashMismatch,
            Error::TooSlow { .. } => ErrorCode::Timeout,
            Error::Busy { .. } => ErrorCode::Busy,
            Error::Secure(_) | Error::Wormhole(_) => ErrorCode::Protocol,
        }
    }
}

/// Why a magic-wormhole session (the `wormhole` module, feature `wormhole`)
/// failed. Whose fault it was is in the variant: the peer's (a wrong code,
/// a message that does not decrypt or parse), the mailbox server's or the
/// transit relay's (garbage, a refusal, a stall), never told apart by text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WormholeError {
    /// The peer's first encrypted message did not decrypt: the two sides
    /// typed different codes (or someone guessed and failed).
    #[error(
        "wrong code: the other side used a different code; check it and try again with a new code"
    )]
    WrongCode,
    /// The mailbox server said no: its `error` message, or an `error` in
    /// its welcome (the text is the server's, shown sanitised).
    #[error("the mailbox server refused: {0}")]
    Refused(String),
    /// The mailbox server asks for a permission method this client does
    /// not implement (a proof of work, say).
    #[error("the mailbox server requires a permission this client does not support ({0}); use another mailbox server (--relay-url)")]
    PermissionRequired(String),
    /// The mailbox server sent something that breaks its protocol.
    #[error("the mailbox server broke its protocol: {0}")]
    BadServer(&'static str),
    /// The WebSocket under the mailbox session failed (a bad upgrade, a
    /// malformed frame, a message over the size limit).
    #[error("the mailbox WebSocket failed: {0}")]
    WebSocket(String),
    /// The mailbox server took longer than the configured limit to answer.
    #[error(
        "the mailbox server did not answer within {0:?}; check the --relay-url, or try again later"
    )]
    ServerTimeout(std::time::Duration),
    /// The mailbox connection ended before the session was over.
    #[error("the mailbox server closed the connection {0}; try again")]
    ServerClosed(&'static str),
    /// The peer sent a message that decrypts but breaks the protocol
    /// (malformed JSON, a missing key, too many out-of-order phases).
    #[error("the other side broke the wormhole protocol: {0}")]
    BadPeer(&'static str),
    /// The peer sent an `error` message (its text, sanitised).
    #[error("the other side reported an error: {0}")]
    PeerError(String),
    /// A transit connection failed its handshake or a record failed to
    /// authenticate, arrived out of order or exceeded the size limit.
    #[error("transit failed: {0}")]
    Transit(&'static str),
    /// A wormhole code that is not one: what is wrong with it. A code is
    /// a nameplate (decimal digits) and one or more words, joined by
    /// hyphens (see `wormhole::code::Code`).
    #[error("bad wormhole code: {0}; a code is a nameplate number and words joined by hyphens, like 7-guitarist-revenge")]
    BadCode(&'static str),
}

/// Why a secure channel ([`crate::secure`]) failed. Each ends the session;
/// none is ever sent to the peer in clear.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecureError {
    /// The peer's key confirmation does not match: it used another code
    /// (or secret), or a man in the middle took its place. Both sides see
    /// this, each from the other's confirmation.
    #[error("wrong code: the peer used a different code or secret; check the code and try again")]
    WrongCode,
    /// A record failed authentication or is malformed (a byte flipped,
    /// dropped, duplicated or reordered on the way).
    #[error("integrity failure on the encrypted channel: {0}; the connection was tampered with or broken, try again")]
    Integrity(&'static str),
    /// The stream ended, after the handshake, without the peer's close
    /// record: a truncation, which is also what a peer that was killed (or
    /// whose host or network went away) looks like.
    #[error("the connection ended without the peer's close record (truncated): the peer stopped or the network cut it, try again")]
    Truncated,
    /// The connection ended during the handshake, before the peer's key
    /// confirmation checked out: a peer that left, a server that refused
    /// the connection without a notice, or one stopping.
    /// [`Secure::handshake`](crate::secure::Secure::handshake) says whether
    /// the session spent a guess at the code.
    #[error("the connection ended during the secure handshake")]
    HandshakeCut,
    /// The peer speaks plaintext echoxfer while this side expects an
    /// encrypted session.
    #[error("the peer sent a plaintext session but this side expects an encrypted one: give the peer the same code (or secret), or run both sides unencrypted")]
    PeerIsPlaintext,
    /// The peer's secure hello is not one this version understands (bad
    /// magic, version or side).
    #[error("bad secure hello: {0}")]
    BadHello(&'static str),
    /// The key exchange and key confirmation did not complete in time.
    #[error("secure handshake timed out after {0:?}")]
    HandshakeTimeout(std::time::Duration),
    /// This side has sent so many records that the next nonce would repeat
    /// (2^64 records); the session must end.
    #[error("record counter exhausted: start a new session")]
    NonceExhausted,
    /// The server sent a refusal notice instead of its hello (docs/PROTOCOL.md,
    /// section 6, "Refusal notice"): it refuses connections from this
    /// side's address for `retry_after` (rounded up to a second), for
    /// `reason`. The notice is not authenticated (it comes before any key): it says
    /// nothing an on-path attacker could not also do by cutting the
    /// connection.
    #[error("{}", refusal_text(*.reason, *.retry_after))]
    Refused {
        /// Why.
        reason: RefusalReason,
        /// How long the server says it refuses this address.
        retry_after: std::time::Duration,
    },
}

/// Why a server refuses a connection before its handshake, as its
/// refusal notice says (docs/PROTOCOL.md, section 6, gives each reason's
/// byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalReason {
    /// Failed guesses at the code from the connection's source address.
    FailedGuesses,
    /// The source address already runs as many sessions as the server
    /// allows from one address; one may end soon.
    SourceCap,
    /// A reason this version does not know (reserved): its byte.
    Unknown(u8),
}

/// What a [`SecureError::Refused`] says.
fn refusal_text(reason: RefusalReason, retry_after: std::time::Duration) -> String {
    let secs = retry_after.as_secs();
    match reason {
        RefusalReason::FailedGuesses => format!(
            "the server refuses this address for {secs} s after failed code guesses from it; \
             wait and try again"
        ),
        RefusalReason::SourceCap => "the server already runs as many sessions from this \
             address as it allows (its max_per_source); wait for one to end and try again"
            .to_string(),
        RefusalReason::Unknown(byte) => format!(
            "the server refuses this connection for {secs} s (reason {byte}); wait and try again"
        ),
    }
}

/// The peer broke the protocol. Always ends the session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// The byte stream is not well-formed frames.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// A well-formed frame that is not allowed in the current state.
    #[error("unexpected {frame} frame while {state}")]
    UnexpectedFrame {
        /// What the machine was doing.
        state: &'static str,
        /// The frame's name.
        frame: &'static str,
    },
    /// The connection ended before the protocol said it could.
    #[error("connection closed by peer while {state}")]
    UnexpectedEof {
        /// What the machine was doing.
        state: &'static str,
    },
    /// A message larger than the configured maximum.
    #[error("message of {len} bytes exceeds the limit of {max}")]
    MessageTooLarge {
        /// Announced or received length.
        len: usize,
        /// The configured limit.
        max: usize,
    },
    /// The echo server sent back something other than what was sent.
    #[error("echo reply differs from the message sent")]
    EchoMismatch,
    /// File data beyond the size the sender offered.
    #[error("file data overruns the offered size of {size} bytes")]
    Overrun {
        /// The offered size.
        size: u64,
    },
    /// `End` arrived before all the offered bytes did.
    #[error("file ended after {received} of {size} offered bytes")]
    ShortFile {
        /// The offered size.
        size: u64,
        /// Bytes actually held.
        received: u64,
    },
    /// A resume offset (`Accept.have` or `Begin.from`) the protocol does not allow.
    #[error("bad resume offset {offset} ({reason})")]
    BadOffset {
        /// The offset the peer sent.
        offset: u64,
        /// What it should have been.
        reason: &'static str,
    },
    /// A field's value is outside what the protocol allows.
    #[error("invalid {field}: {reason}")]
    InvalidField {
        /// The field's name.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The sender had more offers refused in one session than the
    /// receiver's `max_refusals` allows.
    #[error("more than {max} offers refused in one session; start a new session")]
    TooManyRefusals {
        /// The receiver's `max_refusals`.
        max: u64,
    },
    /// More bytes of holes than the receiver's `hole_allowance` (plus
    /// their share of the data sent) in one session.
    #[error("more than {allowance} bytes of holes (plus 1024 per byte of data) in one session; raise the receiver's hole allowance to send such sparse files")]
    TooManyHoles {
        /// The receiver's `hole_allowance`.
        allowance: u64,
    },
    /// A frame about another entry than the protocol allows next (offer
    /// ids count up from 0; `Begin`, `Accept` and `End` come in offer order).
    #[error("frame for entry {id} out of order (expected entry {expected})")]
    OutOfOrder {
        /// The entry the frame named.
        id: u32,
        /// The one allowed.
        expected: u32,
    },
    /// A `Saved` whose hash is not the one the sender's `End` certified:
    /// the receiver confirmed content it cannot have verified (a `Saved`
    /// sent before the file's `End` was read, say).
    #[error("Saved for entry {id} with a hash that is not its content's")]
    SavedMismatch {
        /// The entry.
        id: u32,
    },
    /// A frame naming an entry that is not waiting for it.
    #[error("frame for entry {id}, which is not waiting for it")]
    UnknownEntry {
        /// The entry the frame named.
        id: u32,
    },
    /// More entries offered and not finished than the receiver's window.
    #[error("more than {window} entries in flight (the receiver's window)")]
    WindowExceeded {
        /// The receiver's window.
        window: u32,
    },
    /// An `Offer` of an entry kind this version does not know.
    #[error("unknown entry kind {0}")]
    UnknownEntryKind(u8),
    /// A directory offered with a size.
    #[error("a directory offered with a size of {size} bytes")]
    DirectoryWithSize {
        /// The size offered.
        size: u64,
    },
    /// File data, a hole or an end with no file begun.
    #[error("{0} frame with no file begun")]
    NoFileBegun(&'static str),
    /// `Skip` of an entry that is neither the next accepted one (before
    /// its `Begin`) nor the one begun last (before its `End`).
    #[error("Skip of entry {id}, which may not be skipped")]
    BadSkip {
        /// The entry.
        id: u32,
    },
    /// `Quit` while entries are still in flight.
    #[error("Quit with {in_flight} entries still in flight")]
    QuitInFlight {
        /// Entries not finished.
        in_flight: u32,
    },
}

/// An I/O error's text without std's ` (os error N)` suffix, for messages
/// that name a file and say what to do.
pub fn io_text(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.rfind(" (os error ") {
        Some(i) if text.ends_with(')') => text[..i].to_string(),
        _ => text,
    }
}

/// The caller misused a machine. A refused command changes nothing; only
/// input beyond the machine's room or a bad config fail the session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsageError {
    /// The machine has already finished or failed.
    #[error("the session is closed")]
    Closed,
    /// More input than [`StreamMachine::input_room`](crate::StreamMachine::input_room) allowed.
    #[error("{len} bytes of input exceed the {room} bytes of room")]
    InputOverflow {
        /// Bytes given.
        len: usize,
        /// Room there was.
        room: usize,
    },
    /// A message larger than the configured maximum.
    #[error("message of {len} bytes exceeds the limit of {max}")]
    MessageTooLarge {
        /// Length given.
        len: usize,
        /// The configured limit.
        max: usize,
    },
    /// The send window is full: drain output and wait for replies first.
    #[error("send window full; drain output first")]
    WouldBlock,
    /// A [`Request`](crate::xfer::Request) that is not the one the machine
    /// waits for: answered already, or issued by another machine.
    #[error("this request is not the one the session waits for (answered already, or another session's)")]
    StaleRequest,
    /// A method called in a state where it makes no sense.
    #[error("{call} is not allowed while {state}")]
    WrongState {
        /// The method.
        call: &'static str,
        /// What the machine was doing.
        state: &'static str,
    },
    /// The config given to the machine cannot work (see [`crate::config`]).
    #[error("invalid configuration: {0}")]
    BadConfig(#[from] ConfigError),
    /// A resume point that cannot be used (more bytes held than offered).
    #[error("cannot resume from {have} bytes of a {size}-byte file")]
    BadResume {
        /// Bytes the caller claimed to hold.
        have: u64,
        /// The offered size.
        size: u64,
    },
}

/// A config (see [`crate::config`]) that cannot work. Each names the field
/// to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A limit is zero; zero never means "unlimited".
    #[error("{0} must not be zero; give it a positive value")]
    Zero(&'static str),
    /// A limit contradicts another one, or what the protocol can carry.
    #[error("{field} {rule}")]
    Inconsistent {
        /// The field to change.
        field: &'static str,
        /// What it must satisfy.
        rule: &'static str,
    },
}

impl ConfigError {
    /// The name of the field to change.
    pub fn field(&self) -> &'static str {
        match self {
            ConfigError::Zero(field) | ConfigError::Inconsistent { field, .. } => field,
        }
    }
}

/// The code carried by an `Error` frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// The sender of the frame saw a protocol violation.
    Protocol,
    /// The sender of the frame gave up waiting.
    Timeout,
    /// The content hash did not match.
    HashMismatch,
    /// Anything else (including a local failure of the frame's sender).
    Internal,
    /// The frame's sender is overloaded (its shared receive budget is
    /// spent): not the receiver's fault; try again later.
    Busy,
    /// A code this version does not know.
    Unknown(u16),
}

impl ErrorCode {
    /// The code's wire value.
    pub fn to_u16(self) -> u16 {
        match self {
            ErrorCode::Protocol => 1,
            ErrorCode::Timeout => 2,
            ErrorCode::HashMismatch => 3,
            ErrorCode::Internal => 4,
            ErrorCode::Busy => 5,
            ErrorCode::Unknown(v) => v,
        }
    }

    /// The code for a wire value.
    pub fn from_u16(v: u16) -> Self {
        match v {
            1 => ErrorCode::Protocol,
            2 => ErrorCode::Timeout,
            3 => ErrorCode::HashMismatch,
            4 => ErrorCode::Internal,
            5 => ErrorCode::Busy,
            other => ErrorCode::Unknown(other),
        }
    }
}

/// Renders peer-supplied bytes for a terminal or a log: invalid UTF-8 is
/// replaced and every control character (Cc), invisible format character
/// (Cf: bidirectional overrides and isolates, zero-width characters, the
/// BOM, soft hyphen...) and line or paragraph separator (U+2028, U+2029) is
/// escaped as `\u{...}`, visibly, so a peer can never move the cursor,
/// clear the screen, forge a line (scp CVE-2019-6109) or reorder what is
/// shown (Trojan Source, CVE-2021-42574).
pub fn sanitize(bytes: &[u8]) -> String {
    struct Escaped<'a>(&'a str);
    impl fmt::Display for Escaped<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            for c in self.0.chars() {
                if is_unsafe_to_show(c) {
                    write!(f, "{}", c.escape_default())?;
                } else {
                    write!(f, "{c}")?;
                }
            }
            Ok(())
        }
    }
    Escaped(&String::from_utf8_lossy(bytes)).to_string()
}

/// Whether `c` must not reach a terminal as is: a control character, an
/// invisible format character (general category Cf) or a line or paragraph
/// separator (Zl, Zp).
pub(crate) fn is_unsafe_to_show(c: char) -> bool {
    use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
    c.is_control()
        || matches!(
            c.general_category(),
            GeneralCategory::Format
                | GeneralCategory::LineSeparator
                | GeneralCategory::ParagraphSeparator
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_escapes_terminal_control_sequences() {
        let shown = sanitize(b"x\x1b[2J\r\nforged\x07");
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
        assert!(shown.contains("forged"));
    }

    #[test]
    fn sanitize_escapes_bidi_overrides_and_invisible_format_characters() {
        // "exe.txt" shown reversed by U+202E, and its siblings.
        let cases = [
            ("evil\u{202e}txt.exe", "evil\\u{202e}txt.exe"),
            ("a\u{200b}b", "a\\u{200b}b"),
            ("\u{feff}bom", "\\u{feff}bom"),
            ("x\u{2066}y\u{2069}", "x\\u{2066}y\\u{2069}"),
            ("arabic\u{61c}mark", "arabic\\u{61c}mark"),
            ("one\u{2028}two\u{2029}", "one\\u{2028}two\\u{2029}"),
            ("soft\u{ad}hyphen", "soft\\u{ad}hyphen"),
            ("tag\u{e0041}", "tag\\u{e0041}"),
        ];
        for (raw, shown) in cases {
            assert_eq!(sanitize(raw.as_bytes()), shown);
        }
    }

    #[test]
    fn sanitize_leaves_ordinary_text_alone() {
        let text = "file..txt é ß 日本語 עברית العربية 👍 \\ \"q\"";
        assert_eq!(sanitize(text.as_bytes()), text);
    }

    fn unsafe_to_show_or_any() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let picked = prop_oneof![
            // Cc, Cf (bidi, zero-width, BOM, tags, soft hyphen...), Zl, Zp.
            Just('\u{1b}'),
            Just('\u{9b}'),
            Just('\u{ad}'),
            Just('\u{61c}'),
            Just('\u{180e}'),
            (0x200bu32..=0x200f).prop_map(|c| char::from_u32(c).unwrap()),
            (0x2028u32..=0x202e).prop_map(|c| char::from_u32(c).unwrap()),
            (0x2060u32..=0x206f).prop_filter_map("assigned", char::from_u32),
            Just('\u{feff}'),
            (0xfff9u32..=0xfffb).prop_map(|c| char::from_u32(c).unwrap()),
            (0xe0000u32..=0xe007f).prop_map(|c| char::from_u32(c).unwrap()),
            any::<char>(),
        ];
        proptest::collection::vec(picked, 0..24).prop_map(String::from_iter)
    }

    /// The invariant, stated independently of the code under test.
    fn is_control_format_or_separator(c: char) -> bool {
        use unicode_properties::{GeneralCategory as G, UnicodeGeneralCategory};
        let category = c.general_category();
        matches!(
            category,
            G::Control | G::Format | G::LineSeparator | G::ParagraphSeparator
        )
    }

    proptest::proptest! {
        #[test]
        fn sanitized_text_holds_no_control_format_or_separator_char(
            text in unsafe_to_show_or_any(),
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..32),
        ) {
            for shown in [sanitize(text.as_bytes()), sanitize(&bytes)] {
                proptest::prop_assert!(!shown.chars().any(is_control_format_or_separator), "{:?}", shown);
                // Idempotent: what is shown is shown as is a second time.
                proptest::prop_assert_eq!(sanitize(shown.as_bytes()), shown.clone());
            }
        }
    }

    #[test]
    fn error_codes_round_trip() {
        for v in 0..10u16 {
            assert_eq!(ErrorCode::from_u16(v).to_u16(), v);
        }
    }
}
