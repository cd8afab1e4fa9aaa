//! The contract every machine keeps, native or legacy, echo or file.
//!
//! Shaped after quinn-proto and str0m: inputs are `handle_*` calls that
//! carry the current time as a value; outputs are drained with
//! [`Machine::poll_output`] until it returns [`Output::Wait`] (the next
//! deadline) or [`Output::Done`]. User commands are methods of each machine.
//! Nothing here performs I/O; drivers do, and they are generic over these traits.

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
}

/// A machine that talks over an ordered byte stream (TCP, a pipe, stdio).
pub trait StreamMachine: Machine<Transmit = Bytes> {
    /// Bytes from the peer, in order, cut anywhere. At most
    /// [`input_room`](Self::input_room) bytes at once; more is a
    /// [`UsageError::InputOverflow`](crate::UsageError::InputOverflow).
    /// An `Err` is sticky: the machine has failed, and further output drains
    /// what tells the peer why.
    fn handle_input(&mut self, now: Instant, data: &[u8]) -> Result<(), Error>;

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
