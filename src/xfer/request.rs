//! Requests: the decisions a file-transfer machine waits for, as values.
//!
//! An event that needs an answer (an offer to accept, a file to save, a
//! prefix to hash, a chunk to read) carries a [`Request`]. The application
//! keeps it for as long as its work takes (on another thread, after an
//! `await`) and hands it back, by value, to the one method made for its
//! kind, as quinn's `Incoming` goes back to `accept` or `refuse`. So an
//! answer cannot be given twice, nor to a question that was not asked, nor
//! with a method of the wrong kind; and while a request is owed, the
//! machine processes no frame (`Role::awaits_app`).

use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, UsageError};

/// A decision the machine waits for; `K` says which methods answer it (see
/// the aliases [`OfferRequest`], [`SaveRequest`], [`PrefixRequest`] and
/// [`ChunkRequest`]). Not `Clone`: answering consumes it.
#[must_use = "the machine waits until this request is answered"]
pub struct Request<K> {
    machine: u64,
    seq: u64,
    kind: PhantomData<fn() -> K>,
}

impl<K> Request<K> {
    /// Its number, unique among its machine's requests.
    pub(crate) fn number(&self) -> u64 {
        self.seq
    }
}

// By hand: derives would ask the same of `K`, which is never a value.
impl<K> PartialEq for Request<K> {
    fn eq(&self, other: &Self) -> bool {
        (self.machine, self.seq) == (other.machine, other.seq)
    }
}

impl<K> Eq for Request<K> {}

impl<K> std::fmt::Debug for Request<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = std::any::type_name::<K>()
            .rsplit("::")
            .next()
            .unwrap_or("?");
        // The machine's number is left out: it differs from run to run.
        write!(f, "Request<{kind}>#{}", self.seq)
    }
}

/// The kinds of [`Request`], one per question.
pub mod kind {
    /// Accept or reject an offered file.
    #[derive(Debug)]
    pub enum Offer {}
    /// Make a verified file durable under its final name.
    #[derive(Debug)]
    pub enum Save {}
    /// Hash a prefix of a local file.
    #[derive(Debug)]
    pub enum Prefix {}
    /// Read a chunk of a local file.
    #[derive(Debug)]
    pub enum Chunk {}
}

/// Answered by `Receiver::accept` or `Receiver::reject`.
pub type OfferRequest = Request<kind::Offer>;
/// Answered by `Receiver::saved` or `Receiver::save_failed`.
pub type SaveRequest = Request<kind::Save>;
/// Answered by `Sender::prefix_hashed`.
pub type PrefixRequest = Request<kind::Prefix>;
/// Answered by `Sender::push_chunk`.
pub type ChunkRequest = Request<kind::Chunk>;

/// Issues a machine's requests and checks the answers, each with a number
/// no other request of any machine shares. Several may be owed at once (a
/// receiver's saves, up to its window); the machine bounds how many.
#[derive(Debug)]
pub(crate) struct Requests {
    machine: u64,
    next: u64,
    owed: std::collections::BTreeSet<u64>,
}

impl Default for Requests {
    fn default() -> Self {
        // Tells apart the requests of different machines in one process,
        // so a request answered to the wrong session is refused.
        static MACHINES: AtomicU64 = AtomicU64::new(0);
        Requests {
            machine: MACHINES.fetch_add(1, Ordering::Relaxed),
            next: 0,
            owed: std::collections::BTreeSet::new(),
        }
    }
}

impl Requests {
    /// A new request, now owed.
    pub(crate) fn issue<K>(&mut self) -> Request<K> {
        let seq = self.next;
        self.next += 1;
        self.owed.insert(seq);
        Request {
            machine: self.machine,
            seq,
            kind: PhantomData,
        }
    }

    /// Takes `request` as the answer to what is owed, or refuses it.
    pub(crate) fn answer<K>(&mut self, request: Request<K>) -> Result<(), Error> {
        if request.machine != self.machine || !self.owed.remove(&request.seq) {
            return Err(UsageError::StaleRequest.into());
        }
        Ok(())
    }

    /// Like [`answer`](Requests::answer), and returns the request's number
    /// (to find what it was about among several owed).
    pub(crate) fn answer_numbered<K>(&mut self, request: Request<K>) -> Result<u64, Error> {
        let seq = request.seq;
        self.answer(request)?;
        Ok(seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_answered_once_and_only_by_the_machine_that_issued_it() {
        let (mut a, mut b) = (Requests::default(), Requests::default());
        let from_a: Request<kind::Offer> = a.issue();
        let _from_b: Request<kind::Offer> = b.issue();
        let stale = |r: Result<(), Error>| matches!(r, Err(Error::Local(UsageError::StaleRequest)));
        assert!(stale(b.answer(from_a)), "another machine's request");
        let again: Request<kind::Offer> = a.issue();
        let copy = Request::<kind::Offer> {
            machine: again.machine,
            seq: again.seq,
            kind: PhantomData,
        };
        assert!(a.answer(again).is_ok());
        assert!(stale(a.answer(copy)), "answered twice");
    }
}
