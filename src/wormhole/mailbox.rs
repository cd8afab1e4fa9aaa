//! The mailbox session (magic-wormhole's server protocol), client side:
//! JSON commands to the mailbox server (`bind`, `allocate`, `claim`,
//! `open`, `add`, `release`, `close`) and its answers, over the
//! [`Ws`](super::ws::Ws) layer. It tracks which direct answers are owed
//! and by when, filters the echoes of this side's own messages, and turns
//! what the server says into [`MailboxEvent`]s. The client protocol above
//! it decides what to say; this layer knows nothing of keys.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::ws::Ws;
use crate::error::{sanitize, WormholeError};

/// What the mailbox server told this side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailboxEvent {
    /// The server's welcome; `motd` is its message of the day, if any
    /// (sanitised: show it to the user).
    Welcome {
        /// The server's message of the day.
        motd: Option<String>,
    },
    /// The nameplate the server allocated (already claimed for this side).
    Allocated(String),
    /// The nameplate's mailbox.
    Claimed(String),
    /// A message another side added to the mailbox (this side's echoes
    /// are dropped here).
    Message {
        /// The sending side.
        side: String,
        /// The phase: `pake`, `version`, or a number.
        phase: String,
        /// The body, hex-decoded.
        body: Vec<u8>,
    },
    /// The nameplate is released.
    Released,
    /// The mailbox is closed for this side.
    Closed,
}

/// The direct answers the server owes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owed {
    Welcome,
    Allocated,
    Claimed,
    Released,
    Closed,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum FromServer {
    Welcome {
        welcome: Welcome,
    },
    Allocated {
        nameplate: String,
    },
    Claimed {
        mailbox: String,
    },
    Released {},
    Closed {},
    Message {
        side: String,
        phase: String,
        body: String,
    },
    Error {
        error: String,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct Welcome {
    motd: Option<Value>,
    error: Option<Value>,
    #[serde(rename = "permission-required")]
    permission_required: Option<Map<String, Value>>,
}

/// The client's side of one mailbox session.
#[derive(Debug)]
pub struct Mailbox {
    ws: Ws,
    url: String,
    appid: String,
    side: String,
    /// Whether the server ever welcomed this session (on any connection).
    welcomed: bool,
    /// Messages this side added whose echo has not come back: added
    /// again after a reconnection (the server may never have had them).
    unechoed: Vec<(String, Vec<u8>)>,
    owed: Vec<(Owed, Instant)>,
    answer_within: Duration,
    events: VecDeque<MailboxEvent>,
    next_id: u16,
}

impl Mailbox {
    /// Opens the WebSocket to `url` and binds this `side` to `appid` at
    /// once (as the Python client does, without waiting for the welcome).
    /// The server must answer each command within `answer_within`.
    pub fn connect(
        url: &str,
        appid: &str,
        side: &str,
        answer_within: Duration,
        now: Instant,
    ) -> Result<Mailbox, WormholeError> {
        let mut mailbox = Mailbox {
            ws: Ws::connect(url)?,
            url: url.to_owned(),
            appid: appid.to_owned(),
            side: side.to_owned(),
            welcomed: false,
            unechoed: Vec::new(),
            owed: vec![(Owed::Welcome, now + answer_within)],
            answer_within,
            events: VecDeque::new(),
            next_id: 0,
        };
        mailbox.send(
            "bind",
            json!({ "appid": appid, "side": side, "client_version": ["echoxfer", env!("CARGO_PKG_VERSION")] }),
        )?;
        Ok(mailbox)
    }

    /// The same session over a new WebSocket (the caller made a new
    /// connection): binds the same side again at once. What this side
    /// added and never saw echoed is kept for [`add_unechoed`](Self::add_unechoed).
    pub fn reconnect(self, now: Instant) -> Result<Mailbox, WormholeError> {
        let mut mailbox =
            Mailbox::connect(&self.url, &self.appid, &self.side, self.answer_within, now)?;
        mailbox.welcomed = self.welcomed;
        mailbox.unechoed = self.unechoed;
        mailbox.next_id = self.next_id;
        Ok(mailbox)
    }

    /// Whether the server ever welcomed this session.
    pub fn was_welcomed(&self) -> bool {
        self.welcomed
    }

    /// Adds again every message whose echo never came (after
    /// [`open`](Self::open) on a new connection).
    pub fn add_unechoed(&mut self) -> Result<(), WormholeError> {
        for (phase, body) in self.unechoed.clone() {
            self.send("add", json!({ "phase": phase, "body": hex::encode(body) }))?;
        }
        Ok(())
    }

    fn send(&mut self, kind: &str, fields: Value) -> Result<(), WormholeError> {
        let mut message = match fields {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        // The id only correlates answers in the server's timing logs.
        self.next_id = self.next_id.wrapping_add(1);
        message.insert("id".into(), Value::from(format!("{:04x}", self.next_id)));
        message.insert("type".into(), Value::from(kind));
        self.ws.send(Value::Object(message).to_string())
    }

    fn owe(&mut self, what: Owed, now: Instant) {
        self.owed.push((what, now + self.answer_within));
    }

    /// Asks for a nameplate ([`MailboxEvent::Allocated`] answers).
    pub fn allocate(&mut self, now: Instant) -> Result<(), WormholeError> {
        self.owe(Owed::Allocated, now);
        self.send("allocate", json!({}))
    }

    /// Claims `nameplate` ([`MailboxEvent::Claimed`] answers).
    pub fn claim(&mut self, nameplate: &str, now: Instant) -> Result<(), WormholeError> {
        self.owe(Owed::Claimed, now);
        self.send("claim", json!({ "nameplate": nameplate }))
    }

    /// Opens `mailbox`: its messages, past and future, arrive as
    /// [`MailboxEvent::Message`]. The server sends no direct answer.
    pub fn open(&mut self, mailbox: &str) -> Result<(), WormholeError> {
        self.send("open", json!({ "mailbox": mailbox }))
    }

    /// Adds a message for the other side.
    pub fn add(&mut self, phase: &str, body: &[u8]) -> Result<(), WormholeError> {
        self.unechoed.push((phase.to_owned(), body.to_vec()));
        self.send("add", json!({ "phase": phase, "body": hex::encode(body) }))
    }

    /// Releases `nameplate` ([`MailboxEvent::Released`] answers).
    pub fn release(&mut self, nameplate: &str, now: Instant) -> Result<(), WormholeError> {
        self.owe(Owed::Released, now);
        self.send("release", json!({ "nameplate": nameplate }))
    }

    /// Closes `mailbox` with `mood` ([`MailboxEvent::Closed`] answers).
    pub fn close(&mut self, mailbox: &str, mood: &str, now: Instant) -> Result<(), WormholeError> {
        self.owe(Owed::Closed, now);
        self.send("close", json!({ "mailbox": mailbox, "mood": mood }))
    }

    /// Sends a WebSocket ping, to keep NAT bindings open while waiting.
    pub fn keep_alive(&mut self) -> Result<(), WormholeError> {
        self.ws.ping()
    }

    /// Ends the WebSocket (its closing handshake).
    pub fn hang_up(&mut self) {
        self.ws.close()
    }

    /// Whether the server ended the WebSocket.
    pub fn server_closed(&self) -> bool {
        self.ws.is_closed()
    }

    /// Whether any direct answer is still owed.
    pub fn owes_answers(&self) -> bool {
        !self.owed.is_empty()
    }

    /// The server's next bytes; events follow from
    /// [`poll_event`](Self::poll_event).
    pub fn feed(&mut self, data: &[u8]) -> Result<(), WormholeError> {
        self.ws.feed(data)?;
        while let Some(message) = self.ws.poll_message()? {
            self.handle(&message)?;
        }
        Ok(())
    }

    /// The server closed its end of the connection.
    pub fn feed_eof(&mut self) -> Result<(), WormholeError> {
        self.ws.feed_eof();
        while let Some(message) = self.ws.poll_message()? {
            self.handle(&message)?;
        }
        Ok(())
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<MailboxEvent> {
        self.events.pop_front()
    }

    /// What to send to the server next, if anything.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.ws.take_output()
    }

    /// The earliest instant by which an owed answer must arrive.
    pub fn deadline(&self) -> Option<Instant> {
        self.owed.iter().map(|(_, at)| *at).min()
    }

    /// Fails when an owed answer is late at `now`.
    pub fn check_deadline(&self, now: Instant) -> Result<(), WormholeError> {
        match self.deadline() {
            Some(at) if at <= now => Err(WormholeError::ServerTimeout(self.answer_within)),
            _ => Ok(()),
        }
    }

    fn paid(&mut self, what: Owed) -> Result<(), WormholeError> {
        match self.owed.iter().position(|(owed, _)| *owed == what) {
            Some(i) => {
                self.owed.remove(i);
                Ok(())
            }
            None => Err(WormholeError::BadServer(
                "it answered a command this side never sent",
            )),
        }
    }

    fn handle(&mut self, raw: &[u8]) -> Result<(), WormholeError> {
        let message: FromServer = serde_json::from_slice(raw).map_err(|_| {
            WormholeError::BadServer("a message that is not the JSON its type needs")
        })?;
        let event = match message {
            FromServer::Welcome { welcome } => {
                self.paid(Owed::Welcome)?;
                check_welcome(&welcome)?;
                self.welcomed = true;
                MailboxEvent::Welcome {
                    motd: welcome.motd.as_ref().map(shown),
                }
            }
            FromServer::Allocated { nameplate } => {
                self.paid(Owed::Allocated)?;
                check_nameplate(&nameplate)?;
                MailboxEvent::Allocated(nameplate)
            }
            FromServer::Claimed { mailbox } => {
                self.paid(Owed::Claimed)?;
                MailboxEvent::Claimed(mailbox)
            }
            FromServer::Released {} => {
                self.paid(Owed::Released)?;
                MailboxEvent::Released
            }
            FromServer::Closed {} => {
                self.paid(Owed::Closed)?;
                MailboxEvent::Closed
            }
            FromServer::Message { side, phase, body } => {
                if side == self.side {
                    // Our own echo: the server has it.
                    if let Some(i) = self.unechoed.iter().position(|(p, _)| *p == phase) {
                        self.unechoed.remove(i);
                    }
                    return Ok(());
                }
                let body = hex::decode(body)
                    .map_err(|_| WormholeError::BadServer("a message body that is not hex"))?;
                MailboxEvent::Message { side, phase, body }
            }
            FromServer::Error { error } => {
                return Err(WormholeError::Refused(sanitize(error.as_bytes())))
            }
            FromServer::Other => return Ok(()),
        };
        self.events.push_back(event);
        Ok(())
    }
}

/// A value the server sent, made safe to show.
fn shown(value: &Value) -> String {
    match value {
        Value::String(s) => sanitize(s.as_bytes()),
        other => sanitize(other.to_string().as_bytes()),
    }
}

fn check_welcome(welcome: &Welcome) -> Result<(), WormholeError> {
    if let Some(error) = &welcome.error {
        return Err(WormholeError::Refused(shown(error)));
    }
    match &welcome.permission_required {
        Some(methods) if !methods.contains_key("none") => {
            let names: Vec<&str> = methods.keys().map(String::as_str).collect();
            Err(WormholeError::PermissionRequired(sanitize(
                names.join(", ").as_bytes(),
            )))
        }
        _ => Ok(()),
    }
}

/// A nameplate is what a code starts with: digits only.
fn check_nameplate(nameplate: &str) -> Result<(), WormholeError> {
    match !nameplate.is_empty()
        && nameplate.len() <= 32
        && nameplate.bytes().all(|b| b.is_ascii_digit())
    {
        true => Ok(()),
        false => Err(WormholeError::BadServer(
            "an allocated nameplate that is not a short number",
        )),
    }
}
