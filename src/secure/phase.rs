//! The secure channel's states as one table, and the transitions between
//! them that are not driven by a particular input: failing, and ending the
//! wait for the peer's close record. Touches `Secure`'s state only.
//!
//! | phase      | holds                           | leaves for                                  |
//! |------------|---------------------------------|---------------------------------------------|
//! | `Hello`    | this side's SPAKE2 state        | `Confirm` (the peer's hello), `Failed`      |
//! | `Confirm`  | the keys, unconfirmed           | `Open` (the peer's confirmation), `Failed`  |
//! | `Open`     | both directions, the inner's input | `Closing` (the inner machine ended), `Failed` |
//! | `Closing`  | the receive direction, the inner's result, a deadline | `Ended` (the peer's close record, its end, the deadline, an abort) |
//! | `Ended`    | the inner machine's result      | (final)                                     |
//! | `Failed`   | the channel's own error         | (final)                                     |
//!
//! The handshake verdict (`Secure::handshake`) is kept beside the table:
//! it only moves forward and outlives the phases that set it.

use super::handshake::{Keys, Started};
use super::record::Direction;
use super::Secure;
use crate::error::Error;
use crate::machine::StreamMachine;

/// Where the channel is.
#[derive(Debug)]
pub(super) enum Phase {
    /// Waiting for the peer's hello; this side's hello is queued.
    Hello(Started),
    /// The peer's hello taken and this side's confirmation queued: waiting
    /// for the peer's confirmation.
    Confirm(Keys),
    /// Both confirmations checked: records flow both ways and the wrapped
    /// machine runs.
    Open {
        send: Direction,
        recv: Direction,
        input: Input,
    },
    /// The wrapped machine ended with `result` and this side's close record
    /// is queued: the peer's records are read (and dropped) until its close
    /// record, the end of the connection, or `until`.
    Closing {
        recv: Direction,
        result: Result<(), Error>,
        until: std::time::Instant,
    },
    /// Over: the wrapped machine's result, once the close exchange is done.
    Ended(Result<(), Error>),
    /// Over: the channel itself failed (its sticky error).
    Failed(Error),
}

/// The wrapped machine's input while records flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Input {
    /// Records feed it.
    Running,
    /// Its application aborted it (it tells the peer why, in a record): the
    /// end of the connection now ends its input, as its protocol says,
    /// rather than counting as a truncation.
    Aborted,
    /// It was given its end of input: the peer's close record came (or,
    /// after an abort, the end of the connection did). No record may follow.
    Over,
}

impl<M: StreamMachine> Secure<M> {
    /// The channel fails with `error`, unless it is over already; while it
    /// closes, the session's result stands and only the wait ends.
    pub(super) fn fail(&mut self, error: Error) {
        match &self.phase {
            Phase::Closing { .. } => {
                tracing::debug!(%error, "secure channel failed while closing");
                return self.stop_closing();
            }
            Phase::Ended(_) | Phase::Failed(_) => return,
            // Nothing more goes out under keys the session no longer trusts.
            Phase::Open { .. } => self.out.clear(),
            // During the handshake, the hello and confirmation already
            // queued still go: with them the peer sees "wrong code" too.
            Phase::Hello(_) | Phase::Confirm(_) => {}
        }
        tracing::debug!(%error, "secure channel failed");
        self.enter_failed(error);
    }

    /// Moves to `Failed` whatever the phase: for a transition that has
    /// already consumed its phase (the key exchange spends its state).
    pub(super) fn enter_failed(&mut self, error: Error) {
        self.phase = Phase::Failed(error);
        self.staging.clear();
        self.rx.clear();
        self.pending = None;
    }

    /// The close exchange is over: the keys and held input go, and the
    /// channel ends with the wrapped machine's result.
    pub(super) fn stop_closing(&mut self) {
        let phase = std::mem::replace(&mut self.phase, Phase::Ended(Ok(())));
        self.phase = match phase {
            Phase::Closing { result, .. } => Phase::Ended(result),
            other => other,
        };
        self.rx.clear();
        self.pending = None;
    }

    /// Works through held input: the handshake, then records into the inner
    /// machine as far as it has room. Returns whether anything happened.
    pub(super) fn process(&mut self) -> bool {
        let mut progressed = false;
        loop {
            let step = match self.phase {
                Phase::Hello(_) => self.take_hello(),
                Phase::Confirm(_) => self.take_confirm(),
                Phase::Open { .. } | Phase::Closing { .. } => self.take_record(),
                Phase::Ended(_) | Phase::Failed(_) => Ok(false),
            };
            match step {
                Ok(true) => progressed = true,
                Ok(false) => return progressed,
                Err(e) => {
                    self.fail(e);
                    return true;
                }
            }
        }
    }
}
