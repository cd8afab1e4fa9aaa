//! The echo server role: its whole transition table.

use bytes::Bytes;

use crate::codec::{Frame, FrameLimits, Protocol};
use crate::config::{EchoConfig, SessionLimits};
use crate::error::{ConfigError, Error, ProtocolError, UsageError};
use crate::session::{Link, Role};

/// What an echo server tells its application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerEvent {
    /// A message of this many bytes was echoed.
    Echoed(usize),
    /// The client sent `Exit`; `Bye` is queued and the session is over.
    ClientExited,
}

/// The echo server role. Use it as [`Server`](super::Server).
#[derive(Debug)]
pub struct ServerRole {
    greeting: Bytes,
    open: bool,
    config: EchoConfig,
}

impl ServerRole {
    /// A server role that greets with `greeting`, within `config`
    /// (validated by [`Framed::new`](crate::session::Framed::new)).
    pub fn new(greeting: impl Into<Bytes>, config: EchoConfig) -> Self {
        ServerRole {
            greeting: greeting.into(),
            open: true,
            config,
        }
    }
}

impl Role for ServerRole {
    type Event = ServerEvent;
    const PROTOCOL: Protocol = Protocol::Echo;

    /// Sends the greeting; one longer than `max_message`, which no client
    /// of the same limits would accept, is refused as the caller's mistake.
    fn start(&mut self, link: &mut Link<ServerEvent>) -> Result<(), Error> {
        let (len, max) = (self.greeting.len(), self.config.max_message);
        if len > max {
            return Err(UsageError::MessageTooLarge { len, max }.into());
        }
        link.send(&Frame::Greeting(self.greeting.clone()));
        Ok(())
    }

    fn on_frame(&mut self, link: &mut Link<ServerEvent>, frame: Frame) -> Result<(), Error> {
        match frame {
            Frame::Message(msg) => {
                let max = self.config.max_message;
                if msg.len() > max {
                    let len = msg.len();
                    return Err(ProtocolError::MessageTooLarge { len, max }.into());
                }
                let len = msg.len();
                link.send(&Frame::Message(msg));
                link.emit(ServerEvent::Echoed(len));
            }
            Frame::Exit => {
                link.send(&Frame::Bye);
                link.emit(ServerEvent::ClientExited);
                self.open = false;
            }
            other => {
                return Err(ProtocolError::UnexpectedFrame {
                    state: self.state_name(),
                    frame: other.name(),
                }
                .into())
            }
        }
        Ok(())
    }

    fn is_finished(&self) -> bool {
        !self.open
    }

    fn frame_limits(&self, session: &SessionLimits) -> Result<FrameLimits, ConfigError> {
        self.config.validate(session)?;
        Ok(FrameLimits {
            max_message: self.config.max_message,
            ..FrameLimits::uniform(session.max_frame)
        })
    }

    fn state_name(&self) -> &'static str {
        if self.open {
            "echoing"
        } else {
            "closed"
        }
    }
}
