//! Legacy mode: the classic "seed" echo, UDP and file scripts' wire
//! protocols, byte for byte, as sans-IO machines with the same contract as
//! the native ones ([`StreamMachine`](crate::StreamMachine),
//! [`DatagramMachine`](crate::DatagramMachine)), so the existing drivers run
//! them and no second driver loop exists.
//!
//! There is no framing on these wires: message boundaries are whatever one
//! `recv(1024)` returns, and `exit`, `quit` and `success` are in-band words.
//! The machines here keep the peers' view of the wire unchanged while closing
//! the gaps the seed scripts leave open:
//!
//! * every stream machine accepts at most [`PIECE_MAX`] bytes per
//!   `handle_input` (its `input_room()`), so one call is one `recv(1024)`;
//! * senders cut their data into pieces of at most [`PIECE_MAX`] bytes, none
//!   containing the in-band word the peer stops at (`quit`, `exit`), and send
//!   the next piece only after the previous one came back (echo) or was
//!   acked (file), so each piece is one read on the other side (or several,
//!   if the network splits it, none of which can be the stop word, because
//!   a piece never even contains it);
//! * the file sender parses `success` acks as a byte stream (split and glued
//!   acks both count) and sends `quit` only after the acks have settled;
//! * the file receiver acks once per line or per burst (see
//!   [`LegacyFileReceiver`]), reports the size and BLAKE3 of what it got, and
//!   tells a completed transfer (`quit`) from a cut one (end of stream), so
//!   the driver never leaves a truncated file under the final name.
//!
//! What each module is for, and what it may touch:
//!
//! * `echo`: [`LegacyEchoServer`], [`LegacyEchoClient`]. Pure machines.
//! * `udp`: [`LegacyUdpSink`], [`LegacyUdpSender`]. Pure machines.
//! * `file`: [`LegacyFileSender`], [`LegacyFileReceiver`]. Pure machines;
//!   file data comes and goes only through events the application answers.
//!
//! No module here touches the file system or sockets, nor depends on the
//! drivers: the small `std::fs` application that answers the file
//! machines' events (temp file, atomic move into place) is
//! [`files::legacy`](crate::files::legacy), with the other apps.
//!
//! **Legacy mode has no integrity check**: no names, no sizes, no
//! checksums on the wire. Front ends print [`NO_INTEGRITY_WARNING`] once.
//!
//! Being unframed, each stream machine here is the generic
//! [`Unframed`](crate::unframed::Unframed) over its role (its transition
//! table, e.g. [`LegacyServerRole`]) and keeps the rules of
//! [`crate::unframed`]: a read restarts the idle timer; the native handshake and frame
//! deadlines, lingering close and receive budget do not apply (see
//! `docs/PROTOCOL.md`, section 5).

mod echo;
mod file;
mod udp;

pub use echo::{
    LegacyClientEvent, LegacyClientRole, LegacyEchoClient, LegacyEchoServer, LegacyServerEvent,
    LegacyServerRole,
};
pub use file::{
    LegacyFileReceiver, LegacyFileSender, LegacyReceiverEvent, LegacyReceiverRole,
    LegacySenderEvent, LegacySenderRole,
};
pub use udp::{LegacyUdpSender, LegacyUdpSink, SenderDatagramEvent, SinkEvent};

/// The one-line warning a front end prints once when it runs any legacy role.
pub const NO_INTEGRITY_WARNING: &str = "warning: legacy mode has no integrity check \
(no names, no sizes, no checksums on the wire); use the native protocol for verified transfers";

/// The greeting of the blocking seed echo server (one client at a time).
pub const GREETING_BLOCKING: &str = "连接成功";
/// The greeting of the threaded seed echo server.
pub const GREETING_THREADED: &str = "Hello World!";

/// The seed scripts' read size: one `recv(1024)`. The most any legacy
/// stream machine takes per `handle_input`, and the largest piece any
/// legacy sender writes at once. Also the largest datagram the seed UDP
/// server reads whole.
pub const PIECE_MAX: usize = 1024;

/// The read that ends an echo session.
pub const EXIT: &[u8] = b"exit";
/// The read that ends a file transfer.
pub const QUIT: &[u8] = b"quit";
/// The file receiver's acknowledgement of one read.
pub const SUCCESS: &[u8] = b"success";

/// How many bytes of `window` (not empty, at most [`PIECE_MAX`] bytes) the
/// next piece takes; `more` says whether data follows the window.
///
/// * Up to and including the window's last newline when it has one (so text
///   goes a line or a few lines at a time, as the seed sender sends it),
///   else the whole window, less any tail that could start the stop word
///   when more data follows (`...qu` | `it...` would tear the word).
/// * Cut inside the first occurrence of `forbidden` if that much would
///   contain it, so no piece contains the stop word at all (a piece read
///   whole, or in reads split anywhere, can never make a read that is the
///   word). All but the word's last byte stay in this piece, so the next
///   piece starts with that byte and is never empty.
///
/// A piece that ends with a proper prefix of the word while more data
/// follows is [`tears_word`]: a read spanning it and the next piece could be
/// the word, so the next piece must wait until this one is surely read.
pub(crate) fn piece_len(window: &[u8], more: bool, forbidden: &[u8]) -> usize {
    debug_assert!(!window.is_empty() && window.len() <= PIECE_MAX);
    let mut n = match window.iter().rposition(|&b| b == b'\n') {
        Some(p) => p + 1,
        None => window.len(),
    };
    if let Some(p) = window[..n]
        .windows(forbidden.len())
        .position(|w| w == forbidden)
    {
        return p + forbidden.len() - 1;
    }
    if more {
        if let Some(k) = (1..forbidden.len())
            .rev()
            .find(|&k| n > k && window[..n].ends_with(&forbidden[..k]))
        {
            n -= k;
        }
    }
    n
}

/// Whether `piece`, followed by more data, ends with a proper prefix of
/// `word` (so a read spanning it and the next piece could be `word`).
pub(crate) fn tears_word(piece: &[u8], more: bool, word: &[u8]) -> bool {
    more && (1..word.len()).any(|k| piece.ends_with(&word[..k]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_piece_never_contains_the_stop_word() {
        assert_eq!(piece_len(b"quit", false, QUIT), 3);
        assert_eq!(piece_len(b"ab\nquit", false, QUIT), 3);
        assert_eq!(piece_len(b"xquit", false, QUIT), 4);
        assert_eq!(piece_len(b"quit\nx", true, QUIT), 3);
        assert_eq!(piece_len(b"t", false, QUIT), 1);
        assert_eq!(piece_len(b"exit", false, EXIT), 3);
        assert_eq!(piece_len(b"abc", true, QUIT), 3);
        assert_eq!(piece_len(b"a\nb\nc", true, QUIT), 4);
    }

    #[test]
    fn a_full_window_does_not_end_with_a_torn_word() {
        assert_eq!(piece_len(b"abcqu", true, QUIT), 3);
        assert_eq!(piece_len(b"abcqu", false, QUIT), 5);
        assert_eq!(piece_len(b"qui", true, QUIT), 3);
        assert!(tears_word(b"qui", true, QUIT));
        assert!(!tears_word(b"qui", false, QUIT));
        assert!(!tears_word(b"quit\n", true, QUIT));
    }
}
