//! The peer's bytes, in order: its hello and key confirmation, then its
//! records, opened and handed to the wrapped machine (straight into its
//! receive buffer when it has room). Touches `Secure`'s receive side only.

use bytes::{Buf, Bytes};

use super::phase::{Input, Phase};
use super::record::Direction;
use super::record::{self, KIND_CLOSE, KIND_DATA, RECORD_HEADER, TAG_LEN};
use super::{handshake, Handshake, Secure, Side, CONFIRM_LEN, HELLO_LEN};
use crate::error::{Error, SecureError};
use crate::machine::StreamMachine;

impl<M: StreamMachine> Secure<M> {
    /// Takes the peer's hello once it is whole (failing at its first bytes
    /// if they cannot start one, and on the client at a whole refusal
    /// notice): derives the keys and queues this side's key confirmation,
    /// which is derived from the peer's own SPAKE2 message and so goes
    /// only to a peer that sent one. Returns whether it moved on.
    pub(super) fn take_hello(&mut self) -> Result<bool, Error> {
        handshake::check_prefix(self.side, self.rx.held())?;
        if self.side == Side::Client && self.rx.held().starts_with(&handshake::REFUSAL_MAGIC) {
            // The server refuses this connection: no hello is coming.
            return match handshake::take_refusal(self.rx.held()) {
                Some(refused) => Err(refused.into()),
                None => Ok(false),
            };
        }
        if self.rx.len() < HELLO_LEN {
            return Ok(false);
        }
        // The key exchange spends this side's state, success or not.
        let Phase::Hello(started) = std::mem::replace(&mut self.phase, Phase::Ended(Ok(()))) else {
            unreachable!("take_hello runs in the hello phase")
        };
        let keys = match handshake::finish(self.side, started, &self.rx.held()[..HELLO_LEN]) {
            Ok(keys) => keys,
            Err(e) => {
                self.enter_failed(e.into());
                return Ok(true);
            }
        };
        self.rx.data().advance(HELLO_LEN);
        self.verdict = Handshake::Unconfirmed;
        self.out.push_back(Bytes::copy_from_slice(&keys.confirm));
        self.phase = Phase::Confirm(keys);
        Ok(true)
    }

    /// Checks the peer's key confirmation once it is whole (a mismatch is
    /// a wrong code); then records flow. Returns whether it moved on.
    pub(super) fn take_confirm(&mut self) -> Result<bool, Error> {
        if self.rx.len() < CONFIRM_LEN {
            return Ok(false);
        }
        let Phase::Confirm(keys) = &self.phase else {
            unreachable!("take_confirm runs in the confirm phase")
        };
        keys.check_confirm(&self.rx.held()[..CONFIRM_LEN])?;
        self.rx.data().advance(CONFIRM_LEN);
        let Phase::Confirm(keys) = std::mem::replace(&mut self.phase, Phase::Ended(Ok(()))) else {
            unreachable!("checked above")
        };
        self.verdict = Handshake::Confirmed;
        self.phase = Phase::Open {
            send: keys.send,
            recv: keys.recv,
            input: Input::Running,
        };
        Ok(true)
    }

    /// Hands pending plaintext to the inner machine, or opens the next
    /// whole record.
    pub(super) fn take_record(&mut self) -> Result<bool, Error> {
        if self.pending.is_some() {
            return Ok(self.feed_inner());
        }
        if self.rx.len() < RECORD_HEADER {
            return Ok(false);
        }
        let inner_runs = match self.phase {
            Phase::Open {
                input: Input::Over, ..
            } => {
                return Err(SecureError::Integrity("bytes after the peer's close record").into());
            }
            Phase::Open { .. } => true,
            _ => false,
        };
        let (kind, len) = record::parse_header(&self.rx.held()[..RECORD_HEADER])?;
        let whole = RECORD_HEADER + len + TAG_LEN;
        if self.rx.len() < whole {
            // Checked against the limit above: the reservation is bounded.
            self.rx.reserve(whole - self.rx.len());
            return Ok(false);
        }
        if inner_runs && kind == KIND_DATA && len > 0 && self.open_into_inner(len)? {
            self.rx.data().advance(whole);
            return Ok(true);
        }
        self.opened.resize(len + TAG_LEN, 0);
        let (head, sealed) = self.rx.held()[..whole].split_at(RECORD_HEADER);
        receiving(&mut self.phase).open_into(head, sealed, &mut self.opened)?;
        self.rx.data().advance(whole);
        if kind == KIND_CLOSE {
            match &mut self.phase {
                Phase::Open { input, .. } => {
                    *input = Input::Over;
                    self.inner.handle_eof(self.now);
                }
                _ => self.stop_closing(),
            }
        } else if inner_runs {
            self.pending = Some((0, len));
            self.feed_inner();
        }
        // Else the inner machine has ended: the record authenticated, and
        // what it carried has nowhere to go.
        Ok(true)
    }

    /// Opens the whole data record of `len` bytes at the front of `rx`
    /// straight into the inner machine's own buffer, if it has room for
    /// all of it (and the tag) now: decrypting is then the only pass over
    /// the bytes. Returns whether it did; nothing reaches the inner machine
    /// unless the record authenticated.
    fn open_into_inner(&mut self, len: usize) -> Result<bool, Error> {
        let recv = receiving(&mut self.phase);
        let (head, sealed) =
            self.rx.held()[..RECORD_HEADER + len + TAG_LEN].split_at(RECORD_HEADER);
        let out = self.inner.input_buffer(len + TAG_LEN);
        if out.len() < len + TAG_LEN {
            return Ok(false);
        }
        recv.open_into(head, sealed, out)?;
        // The inner machine's failure is sticky: it comes out as its Done.
        let _ = self.inner.commit_input(self.now, len);
        Ok(true)
    }

    /// Copies as much pending plaintext into the inner machine's own
    /// buffer as it takes. Returns whether any went.
    fn feed_inner(&mut self) -> bool {
        let Some((start, end)) = self.pending else {
            return false;
        };
        let n = self.inner.input_room().min(end - start);
        if n == 0 && start < end {
            return false;
        }
        let buf = self.inner.input_buffer(n);
        let n = buf.len();
        buf.copy_from_slice(&self.opened[start..start + n]);
        // The inner machine's failure is sticky: it comes out as its Done.
        let _ = self.inner.commit_input(self.now, n);
        self.pending = (start + n < end).then_some((start + n, end));
        true
    }
}

/// The direction the peer's records are opened with: records are taken
/// only while they flow (open, or closing).
fn receiving(phase: &mut Phase) -> &mut Direction {
    match phase {
        Phase::Open { recv, .. } | Phase::Closing { recv, .. } => recv,
        _ => unreachable!("records are taken in the open and closing phases"),
    }
}

#[cfg(test)]
mod tests {
    //! What the public API cannot forge: a record this crate never sends
    //! but the wire allows (docs/PROTOCOL.md: data records carry 0 to
    //! 65536 bytes), sealed with the peer's own keys.
    use std::time::Instant;

    use super::*;
    use crate::echo::{self, ClientRole, ServerRole};
    use crate::machine::Output;
    use crate::{EchoConfig, SessionLimits};

    /// What `m` sends until it waits; `Some` with its result if it ended.
    fn drain<M: StreamMachine>(m: &mut M) -> (Vec<u8>, Option<Result<(), Error>>) {
        let mut sent = Vec::new();
        for _ in 0..10_000 {
            match m.poll_output() {
                Output::Transmit(bytes) => sent.extend_from_slice(&bytes),
                Output::Event(_) => {}
                Output::Wait(_) => return (sent, None),
                Output::Done(result) => return (sent, Some(result)),
            }
        }
        panic!("the machine did not settle");
    }

    fn feed<M: StreamMachine>(m: &mut M, now: Instant, bytes: &[u8]) {
        assert_eq!(m.handle_input(now, bytes), Ok(bytes.len()));
    }

    #[test]
    fn an_empty_data_record_is_taken_and_the_records_after_it_still_flow() {
        let now = Instant::now();
        let mut client = echo::Client::new(
            ClientRole::new(EchoConfig::default()),
            SessionLimits::default(),
            now,
        );
        client.send(&b"after nothing"[..]).unwrap();
        client.close().unwrap();
        let server = echo::Server::new(
            ServerRole::new("hi", EchoConfig::default()),
            SessionLimits::default(),
            now,
        );
        let config = super::super::SecureConfig::default;
        let mut c = Secure::client(client, b"code", config(), now, [1; 32]);
        let mut s = Secure::server(server, b"code", config(), now, [2; 32]);
        for _ in 0..2 {
            // Hellos, then confirmations.
            let ((to_s, _), (to_c, _)) = (drain(&mut c), drain(&mut s));
            feed(&mut c, now, &to_c);
            feed(&mut s, now, &to_s);
        }
        assert!(c.is_confirmed() && s.is_confirmed());
        let Phase::Open { send, .. } = &mut c.phase else {
            panic!("the client is open");
        };
        let head = record::header(KIND_DATA, 0);
        let mut empty = head.to_vec();
        empty.resize(RECORD_HEADER + TAG_LEN, 0);
        send.seal_into(&head, &[], &mut empty[RECORD_HEADER..])
            .unwrap();
        feed(&mut s, now, &empty);
        let (mut c_end, mut s_end) = (None, None);
        for _ in 0..10 {
            let ((to_s, c_done), (to_c, s_done)) = (drain(&mut c), drain(&mut s));
            (c_end, s_end) = (c_end.or(c_done), s_end.or(s_done));
            if s_end.is_none() {
                feed(&mut s, now, &to_s);
            }
            if c_end.is_none() {
                feed(&mut c, now, &to_c);
            }
        }
        assert_eq!(c_end, Some(Ok(())), "the message after it was echoed");
        assert_eq!(s_end, Some(Ok(())));
    }
}
