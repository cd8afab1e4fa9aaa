//! The echo client role: its whole transition table and user commands.

use std::collections::VecDeque;

use bytes::Bytes;

use crate::codec::{Frame, FrameLimits, Protocol};
use crate::config::{EchoConfig, SessionLimits};
use crate::error::{ConfigError, Error, ProtocolError, UsageError};
use crate::session::{Framed, Link, Role};

/// What an echo client tells its application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// The server's greeting arrived.
    Greeted(Bytes),
    /// The reply to the oldest outstanding message; it equals what was sent.
    Reply(Bytes),
    /// The server confirmed the end of the session.
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    AwaitGreeting,
    Open,
    Exiting,
    Closed,
}

/// The echo client role. Use it as [`Client`](super::Client).
#[derive(Debug)]
pub struct ClientRole {
    state: State,
    greeted: bool,
    /// Messages sent and not yet echoed, oldest first (shared, not copied).
    pending: VecDeque<Bytes>,
    /// Their size on the wire, headers included: what the window bounds.
    pending_bytes: usize,
    config: EchoConfig,
}

impl Default for ClientRole {
    fn default() -> Self {
        Self::new(EchoConfig::default())
    }
}

impl ClientRole {
    /// A client role within `config` (validated by
    /// [`Framed::new`](crate::session::Framed::new)); messages may be sent
    /// before the greeting arrives.
    pub fn new(config: EchoConfig) -> Self {
        ClientRole {
            state: State::AwaitGreeting,
            greeted: false,
            pending: VecDeque::new(),
            pending_bytes: 0,
            config,
        }
    }

    /// Messages sent whose reply has not arrived yet.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// Whether `msg` fits the window; a lone message always does, so
    /// `max_message` may exceed the window.
    fn window_admits(&self, msg: &Bytes, window: usize) -> bool {
        self.pending.is_empty() || self.pending_bytes + wire_len(msg) <= window
    }

    fn unexpected(&self, frame: &Frame) -> Error {
        ProtocolError::UnexpectedFrame {
            state: self.state_name(),
            frame: frame.name(),
        }
        .into()
    }

    fn on_reply(&mut self, link: &mut Link<ClientEvent>, msg: Bytes) -> Result<(), Error> {
        match self.pending.pop_front() {
            Some(sent) if sent == msg => {
                self.pending_bytes -= wire_len(&sent);
                link.emit(ClientEvent::Reply(msg));
                Ok(())
            }
            Some(_) => Err(ProtocolError::EchoMismatch.into()),
            None => Err(self.unexpected(&Frame::Message(msg))),
        }
    }
}

/// A message's size on the wire: payload and frame header.
fn wire_len(msg: &Bytes) -> usize {
    msg.len() + crate::codec::HEADER_LEN
}

impl Role for ClientRole {
    type Event = ClientEvent;
    const PROTOCOL: Protocol = Protocol::Echo;

    fn start(&mut self, _link: &mut Link<ClientEvent>) -> Result<(), Error> {
        Ok(())
    }

    fn on_frame(&mut self, link: &mut Link<ClientEvent>, frame: Frame) -> Result<(), Error> {
        match (self.state, frame) {
            (_, Frame::Greeting(g)) if !self.greeted => {
                self.greeted = true;
                if self.state == State::AwaitGreeting {
                    self.state = State::Open;
                }
                link.emit(ClientEvent::Greeted(g));
                Ok(())
            }
            (State::Open | State::Exiting, Frame::Message(m)) => self.on_reply(link, m),
            (State::Exiting, Frame::Bye) if self.pending.is_empty() => {
                self.state = State::Closed;
                link.emit(ClientEvent::Closed);
                Ok(())
            }
            (_, other) => Err(self.unexpected(&other)),
        }
    }

    fn is_finished(&self) -> bool {
        self.state == State::Closed
    }

    fn frame_limits(&self, session: &SessionLimits) -> Result<FrameLimits, ConfigError> {
        self.config.validate(session)?;
        Ok(FrameLimits {
            max_message: self.config.max_message,
            ..FrameLimits::uniform(session.max_frame)
        })
    }

    fn state_name(&self) -> &'static str {
        match self.state {
            State::AwaitGreeting => "awaiting the greeting",
            State::Open => "echoing",
            State::Exiting => "awaiting Bye",
            State::Closed => "closed",
        }
    }
}

impl Framed<ClientRole> {
    /// Queues one message. Refused, changing nothing, if it is larger than
    /// `max_message`, if it would take the bytes awaiting replies beyond
    /// `echo_window` or the output is full ([`UsageError::WouldBlock`]:
    /// handle replies or drain output first), or after [`close`](Self::close).
    pub fn send(&mut self, msg: impl Into<Bytes>) -> Result<(), Error> {
        let msg = msg.into();
        self.command(|role, link| {
            let max = role.config.max_message;
            if msg.len() > max {
                let len = msg.len();
                return Err(UsageError::MessageTooLarge { len, max }.into());
            }
            if role.state == State::Exiting {
                let state = role.state_name();
                return Err(UsageError::WrongState {
                    call: "send",
                    state,
                }
                .into());
            }
            if !role.window_admits(&msg, role.config.echo_window) || !link.has_room() {
                return Err(UsageError::WouldBlock.into());
            }
            link.send(&Frame::Message(msg.clone()));
            role.pending_bytes += wire_len(&msg);
            role.pending.push_back(msg);
            Ok(())
        })
    }

    /// Ends the session: sends `Exit`; the session is over when `Bye` arrives
    /// (after the replies to everything sent before).
    pub fn close(&mut self) -> Result<(), Error> {
        self.command(|role, link| {
            if role.state != State::Exiting {
                link.send(&Frame::Exit);
                role.state = State::Exiting;
            }
            Ok(())
        })
    }
}
