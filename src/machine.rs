//! The contract every machine keeps, native or legacy, echo or file.
//!
//! Shaped after quinn-proto and str0m: inputs are `handle_*` calls that
//! carry the current time as a value; outputs are drained with
//! [`Machine::poll_output`] until it returns [`Output::Wait`] (the next
//! deadline) or [`Output::Done`]. User commands are methods of each machine.
//! Nothing here performs I/O; drivers do, and they are generic over these traits.
//!
//! # The contract, for every machine of this crate
//!
//! * **Draining.** After every input, timeout or user command, call
//!   [`Machine::poll_output`] until it returns [`Output::Wait`] or
//!   [`Output::Done`]. Polling again without anything new in between is
//!   harmless and answers the same: `Wait(t)` again, with the same `t`;
//!   `Done(r)` again, with the same `r`, forever. `Done` is final: the
//!   machine never produces another transmit or event.
//! * **Deadlines.** [`Machine::poll_timeout`] answers the deadline of the
//!   last `Wait` without draining anything: the instant at which the
//!   driver calls [`Machine::handle_timeout`], or `None` (no deadline, or
//!   the session is `Done`). After `poll_output` returned `Wait(t)`,
//!   `poll_timeout()` is `t` until the next input, timeout or command.
//! * **Input after the end.** Once a stream machine has ended *normally*,
//!   input is accepted and discarded: `handle_input` (and `commit_input`)
//!   return `Ok(())` and the result stays `Done(Ok(()))`. The peer may
//!   well send bytes after the protocol's last word (a racing message, a
//!   trailing newline), and a driver that keeps reading until the peer's
//!   EOF (so that closing never resets the connection) must not see its
//!   own clean session turn into an error for it. Once a machine has
//!   *failed*, every input returns the sticky error (as in rustls), and
//!   what is read is discarded as well. Framed and unframed machines keep
//!   this rule alike.
//! * **Receive buffer.** A stream machine owns the buffer its input is
//!   decoded from: a driver reads into
//!   [`input_buffer`](StreamMachine::input_buffer) and commits with
//!   [`commit_input`](StreamMachine::commit_input), and payloads are split
//!   off that buffer without a copy.
//!   [`handle_input`](StreamMachine::handle_input) is the same, for a
//!   caller that already holds the bytes (it copies them in once).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::error::Error;

/// What a machine asks of its driver next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output<T, E> {
    /// Bytes (or a datagram) to send to the peer, in order.
    Transmit(T),
    /// Something the application should know or act on.
    Event(E),
    /// Nothing more to do until new input, or until this instant, when the
    /// driver calls [`Machine::handle_timeout`]. `None`: no deadline.
    Wait(Option<Instant>),
    /// The session is over; every transmit has been handed out. `Ok` means
    /// it ended as the protocol says it should; `Err` is the sticky error.
    Done(Result<(), Error>),
}

/// A datagram and the address it goes to (or came from).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    /// The other end.
    pub peer: SocketAddr,
    /// The payload.
    pub payload: Bytes,
}

/// The part of the contract shared by stream and datagram machines.
pub trait Machine {
    /// What the machine hands the driver to send.
    type Transmit;
    /// What the machine tells the application.
    type Event;

    /// Advances timers to `now`. Early calls are harmless and ignored.
    fn handle_timeout(&mut self, now: Instant);

    /// The next output. Call until it returns [`Output::Wait`] or
    /// [`Output::Done`] after every input, timeout or user command.
    fn poll_output(&mut self) -> Output<Self::Transmit, Self::Event>;

    /// When the driver must call [`handle_timeout`](Self::handle_timeout)
    /// next, without draining anything: the deadline [`Output::Wait`]
    /// carried when `poll_output` last returned it (`None`: no deadline,
    /// or the session is over). Meaningful once output has been drained.
    fn poll_timeout(&self) -> Option<Instant>;
}

/// A machine that talks over an ordered byte stream (TCP, a pipe, stdio).
pub trait StreamMachine: Machine<Transmit = Bytes> {
    /// A writable slice of the machine's own receive buffer, exactly
    /// `min(max, input_room())` bytes long, to read the peer's bytes into;
    /// then [`commit_input`](Self::commit_input) says how many arrived.
    /// Its content is unspecified. Ask for what one read may bring (64 KiB
    /// is typical): the machine initialises the memory it hands out once,
    /// so asking for far more than a read brings costs time and memory.
    /// Payloads (file `Data`, echoed bytes, legacy reads) are later split
    /// off this very memory: nothing is copied on their way out.
    fn input_buffer(&mut self, max: usize) -> &mut [u8];

    /// The first `n` bytes of the slice last returned by
    /// [`input_buffer`](Self::input_buffer) are the peer's next bytes,
    /// received at `now`: the machine processes them as
    /// [`handle_input`](Self::handle_input) would. More than that slice
    /// held is a [`UsageError::InputOverflow`](crate::UsageError::InputOverflow),
    /// which fails the machine. After the end, see the module docs: the
    /// bytes are discarded, and a failed machine answers its sticky error.
    fn commit_input(&mut self, now: Instant, n: usize) -> Result<(), Error>;

    /// Bytes from the peer, in order, cut anywhere. The machine takes as
    /// many as it has room for now ([`input_room`](Self::input_room)) and
    /// says how many, as rustls's `read_tls` does: more input than fits is
    /// never an error. Feed the rest after draining the output
    /// ([`poll_output`](Machine::poll_output) until `Wait`) and answering
    /// what it asked; `Ok(0)` for non-empty input means exactly that.
    /// After a normal end, input is taken and discarded. An `Err` is
    /// sticky: the machine has failed, and further output drains what tells
    /// the peer why.
    ///
    /// A convenience for callers that already hold the bytes: it copies
    /// what fits into [`input_buffer`](Self::input_buffer) and commits it,
    /// so both ways of feeding a machine behave identically.
    fn handle_input(&mut self, now: Instant, data: &[u8]) -> Result<usize, Error> {
        let buf = self.input_buffer(data.len());
        let n = buf.len().min(data.len());
        buf[..n].copy_from_slice(&data[..n]);
        self.commit_input(now, n)?;
        Ok(n)
    }

    /// The peer closed its sending side.
    fn handle_eof(&mut self, now: Instant);

    /// The application gave up on the session (a disk failed, a source
    /// file changed): the machine fails, telling the peer why if its
    /// protocol can. The default does nothing, for protocols that cannot
    /// (dropping the connection says all they can say).
    fn abort(&mut self, reason: String) {
        let _ = reason;
    }

    /// How many bytes the machine accepts now. Zero means "drain output
    /// first": this is how back-pressure reaches the driver.
    fn input_room(&self) -> usize;

    /// Whether the session, now over, spent a guess at a shared code: the
    /// peer got what lets it check one guess (for the secure channel, this
    /// side's key confirmation, sent once the peer's hello arrived) and
    /// never proved it knew the code. Servers read it when a session ends,
    /// whatever ended it: a connection reset says nothing of the handshake,
    /// so the machine must. The default is false (no code involved).
    fn failed_guess(&self) -> bool {
        false
    }

    /// How long a driver may wait for the transport to take any of the
    /// output before it gives up on the session, so that a peer that stops
    /// reading cannot hold it forever. Every machine of this crate answers
    /// its idle timeout; `None` (the default) waits as long as it takes.
    fn write_timeout(&self) -> Option<Duration> {
        None
    }
}

/// A machine that talks in datagrams (UDP).
pub trait DatagramMachine: Machine<Transmit = Datagram> {
    /// One datagram from `from`.
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]);
}
