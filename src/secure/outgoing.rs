//! The wrapped machine's output, sealed into records: large output straight
//! from where it is, small output gathered first; and the close record.
//! Touches `Secure`'s send side only.

use super::phase::{Input, Phase};
use super::record::{self, KIND_CLOSE, KIND_DATA, RECORD_HEADER, RECORD_WIRE_LIMIT, TAG_LEN};
use super::{Secure, DIRECT_FROM, RECORDS_PER_BLOCK};
use crate::error::Error;
use crate::machine::StreamMachine;

impl<M: StreamMachine> Secure<M> {
    /// Seals the inner machine's output into records. Large output (a
    /// file chunk) is encrypted straight from where it is into records of
    /// at most `max_record` bytes; small output (frame headers, short
    /// frames) is gathered and sealed once a record is full or the inner
    /// machine waits.
    pub(super) fn push_plain(&mut self, mut bytes: &[u8]) -> Result<(), Error> {
        let max = self.config.max_record;
        if bytes.len() >= DIRECT_FROM {
            self.seal_staging()?;
            for body in bytes.chunks(max) {
                self.seal(KIND_DATA, body)?;
            }
            return Ok(());
        }
        while !bytes.is_empty() {
            if self.staging.is_empty() {
                self.staging.reserve(max);
            }
            let n = (max - self.staging.len()).min(bytes.len());
            self.staging.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if self.staging.len() == max {
                self.seal_staging()?;
            }
        }
        Ok(())
    }

    /// Seals the gathered output, if any, as one record.
    pub(super) fn seal_staging(&mut self) -> Result<(), Error> {
        if self.staging.is_empty() {
            return Ok(());
        }
        let staging = std::mem::take(&mut self.staging);
        let sealed = self.seal(KIND_DATA, &staging);
        self.staging = staging;
        self.staging.clear();
        sealed
    }

    /// Seals `plain` as a record of `kind` and queues it.
    fn seal(&mut self, kind: u8, plain: &[u8]) -> Result<(), Error> {
        let Phase::Open { send, .. } = &mut self.phase else {
            unreachable!("records are sealed in the open phase")
        };
        let wire = RECORD_HEADER + plain.len() + TAG_LEN;
        if self.block.capacity() < wire {
            // Once the transport has taken the records split off the last
            // block, `reserve` takes that allocation back: memory already
            // in use, not a fresh allocation (and page faults) per record.
            self.block.reserve(RECORD_WIRE_LIMIT * RECORDS_PER_BLOCK);
        }
        self.block.resize(wire, 0);
        let (head, body) = self.block.split_at_mut(RECORD_HEADER);
        head.copy_from_slice(&record::header(kind, plain.len()));
        send.seal_into(head, plain, body)?;
        self.out.push_back(self.block.split().freeze());
        Ok(())
    }

    /// The inner machine ended: the rest of its output and our close
    /// record go out; then the channel waits (at most `close_timeout`) for
    /// the peer's close record, reading what comes before it, and ends
    /// with the inner's result. (Closing a connection with unread input
    /// resets it: the peer's last records would meet a reset.)
    pub(super) fn close(&mut self, result: Result<(), Error>) {
        let sealed = self
            .seal_staging()
            .and_then(|()| self.seal(KIND_CLOSE, &[]));
        if let Err(e) = sealed {
            return self.fail(e);
        }
        let until = self.now + self.config.close_timeout;
        let phase = std::mem::replace(&mut self.phase, Phase::Ended(Ok(())));
        let Phase::Open { recv, input, .. } = phase else {
            unreachable!("the inner machine ends in the open phase")
        };
        self.pending = None;
        self.phase = Phase::Closing {
            recv,
            result,
            until,
        };
        if input == Input::Over || self.eof {
            self.stop_closing();
        }
    }
}
