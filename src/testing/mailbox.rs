//! An in-memory magic-wormhole mailbox server, and a pump that runs
//! [`Wormhole`] clients against it (feature `wormhole`). Pure: memory and
//! a virtual clock only, so wormhole sessions are tested without a network
//! and their timeouts without sleeping.
//!
//! * [`MailboxServer`]: the server protocol (magic-wormhole's
//!   `server-protocol.md`)
//!   over a server-side WebSocket (tungstenite's, on in-memory buffers):
//!   welcome, bind, list, allocate, claim, release, open, add, close,
//!   ping, an `ack` for every command and an `error` (with `orig`) for
//!   what it cannot do. It records what the clients did
//!   ([`Recorded`]) for tests to assert on, and it can misbehave on
//!   purpose ([`Faults`]).
//! * [`Rendezvous`]: one server and any number of clients; it shuttles
//!   bytes between them until nothing moves (optionally cutting every byte
//!   stream at random points), collects each client's events and result,
//!   and moves a virtual clock.
//! * [`EchoingMailbox`]: the server with an echoing peer inside, as one
//!   stream machine, for the simulator.
//! * [`fuzz_server_answers`]: a fuzz harness (a client fed hostile
//!   answers), behind `tests/wormhole_client.rs` and `fuzz/`'s `wormhole`
//!   target.
//!
//! The simulator (`testing::sim`) runs a pair of stream machines joined by
//! two links; a wormhole session has three parties (two clients and the
//! mailbox server between them), so [`EchoingMailbox`] packs the server
//! and an honest peer into one stream machine: a [`Wormhole`] then runs
//! there against it, over the simulator's impaired links.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Map, Value};
use tungstenite::handshake::server::{NoCallback, ServerHandshake};
use tungstenite::handshake::{HandshakeError, MidHandshake};
use tungstenite::{Message, WebSocket};

use crate::error::Error;
use crate::machine::{Machine, Output, StreamMachine};
use crate::wormhole::code::Code;
use crate::wormhole::ws::Pipe;
use crate::wormhole::{Wormhole, WormholeConfig, WormholeEvent};

/// One connection to a [`MailboxServer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub usize);

/// Ways the server misbehaves on purpose, for hostile tests. Counts are
/// of the messages the server sends on one connection (the welcome is the
/// first, every `ack` counts).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Faults {
    /// After this many messages, every further one is bytes that are not
    /// JSON (in a well-formed WebSocket text message).
    pub garbage_after: Option<usize>,
    /// After this many messages the server says nothing more on the
    /// connection (it still reads, and still answers WebSocket pings).
    pub stall_after: Option<usize>,
    /// Every `message` is delivered twice (the protocol allows it).
    pub duplicate_messages: bool,
    /// The welcome carries this `error`, and every command is refused
    /// with an `error` of the same text.
    pub welcome_error: Option<String>,
    /// The welcome's `permission-required` (an object, one key per
    /// method). Without a `none` method, every command but
    /// `submit-permissions` and `ping` is refused ("permission denied").
    pub permission_required: Option<Value>,
}

/// How a [`MailboxServer`] behaves.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerConfig {
    /// The welcome's message of the day.
    pub motd: Option<String>,
    /// Misbehaviour, for hostile tests.
    pub faults: Faults,
}

/// What the server saw the clients do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// A side bound to an application id.
    Bound {
        /// The connection.
        conn: ConnId,
        /// The application id.
        appid: String,
        /// The side.
        side: String,
    },
    /// A nameplate was allocated to a side (and claimed for it).
    Allocated {
        /// The side.
        side: String,
        /// The nameplate.
        nameplate: String,
    },
    /// A side claimed a nameplate and learnt its mailbox.
    Claimed {
        /// The side.
        side: String,
        /// The nameplate.
        nameplate: String,
        /// The nameplate's mailbox.
        mailbox: String,
    },
    /// A third side tried a nameplate or mailbox and was refused.
    Crowded {
        /// The side refused.
        side: String,
    },
    /// A side released its nameplate.
    Released {
        /// The side.
        side: String,
        /// The nameplate.
        nameplate: String,
    },
    /// A side opened a mailbox.
    Opened {
        /// The side.
        side: String,
        /// The mailbox.
        mailbox: String,
    },
    /// A side added a message to its mailbox.
    Added {
        /// The side.
        side: String,
        /// The message's phase.
        phase: String,
    },
    /// A side closed its mailbox, with the mood it reported.
    Closed {
        /// The side.
        side: String,
        /// The mailbox.
        mailbox: String,
        /// The mood (`happy`, `lonely`, `scary`, `errory`), if given.
        mood: Option<String>,
    },
    /// The server answered a command with an `error`.
    Error {
        /// The connection.
        conn: ConnId,
        /// The error's text.
        error: String,
    },
}

enum Ws {
    Upgrading(Box<MidHandshake<ServerHandshake<Pipe, NoCallback>>>),
    Open(Box<WebSocket<Pipe>>),
    /// The upgrade failed, or a frame was malformed.
    Broken,
}

impl Ws {
    fn pipe(&mut self) -> Option<&mut Pipe> {
        match self {
            Ws::Upgrading(mid) => Some(mid.get_mut().get_mut()),
            Ws::Open(ws) => Some(ws.get_mut()),
            Ws::Broken => None,
        }
    }
}

/// One connection's state, as the Python server keeps it.
struct Conn {
    ws: Ws,
    /// Whether the transport still runs (no hang-up from either end).
    connected: bool,
    appid: Option<String>,
    side: Option<String>,
    allocated: bool,
    claimed: Option<String>,
    released: bool,
    mailbox: Option<String>,
    closed: bool,
    /// Messages sent on this connection (for [`Faults`]).
    sent: usize,
    /// WebSocket pings the client sent (its keep-alives).
    pings: usize,
    /// `message`s delivered on this connection (repeats included).
    delivered: usize,
}

struct Nameplate {
    mailbox: String,
    sides: BTreeSet<String>,
}

#[derive(Default)]
struct Mailbox {
    /// Every side that opened it.
    sides: BTreeSet<String>,
    /// The messages added so far, as delivered.
    messages: Vec<Value>,
    /// The connections that opened it and have not closed it.
    listeners: BTreeSet<usize>,
}

/// An in-memory mailbox server: connections in, bytes both ways, and a
/// record of what the clients did. See the module docs.
pub struct MailboxServer {
    config: ServerConfig,
    conns: Vec<Conn>,
    /// By `(appid, nameplate)`.
    nameplates: BTreeMap<(String, String), Nameplate>,
    mailboxes: BTreeMap<String, Mailbox>,
    next_mailbox: u64,
    log: Vec<Recorded>,
}

impl std::fmt::Debug for MailboxServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailboxServer")
            .field("conns", &self.conns.len())
            .field("nameplates", &self.nameplates())
            .finish_non_exhaustive()
    }
}

/// Why a command fails: the `error` text the server answers.
type Refusal = String;

fn text(msg: &Map<String, Value>, key: &str) -> Result<String, Refusal> {
    match msg.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        _ => Err(format!("missing '{key}'")),
    }
}

fn optional_text(msg: &Map<String, Value>, key: &str) -> Result<Option<String>, Refusal> {
    match msg.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("'{key}' must be a string")),
    }
}

impl MailboxServer {
    /// A server with no connections, nameplates or mailboxes.
    pub fn new(config: ServerConfig) -> MailboxServer {
        MailboxServer {
            config,
            conns: Vec::new(),
            nameplates: BTreeMap::new(),
            mailboxes: BTreeMap::new(),
            next_mailbox: 0,
            log: Vec::new(),
        }
    }

    /// A new connection; its WebSocket upgrade comes through
    /// [`feed`](Self::feed), and the welcome follows the upgrade.
    pub fn connect(&mut self) -> ConnId {
        let mid = ServerHandshake::start(Pipe::default(), NoCallback, None);
        self.conns.push(Conn {
            ws: Ws::Upgrading(Box::new(mid)),
            connected: true,
            appid: None,
            side: None,
            allocated: false,
            claimed: None,
            released: false,
            mailbox: None,
            closed: false,
            sent: 0,
            pings: 0,
            delivered: 0,
        });
        ConnId(self.conns.len() - 1)
    }

    /// Whether `conn` is still up (neither end hung up).
    pub fn is_connected(&self, conn: ConnId) -> bool {
        self.conns[conn.0].connected
    }

    /// The transport of `conn` ends (either end hung up): what the server
    /// already wrote can still be taken, nothing more is read. As with
    /// the Python server, the side keeps its nameplate and mailbox; only
    /// live deliveries stop.
    pub fn hang_up(&mut self, conn: ConnId) {
        self.conns[conn.0].connected = false;
        if let Some(mailbox) = self.conns[conn.0].mailbox.clone() {
            if let Some(m) = self.mailboxes.get_mut(&mailbox) {
                m.listeners.remove(&conn.0);
            }
        }
    }

    /// The server closes `conn` cleanly: a WebSocket close frame, then
    /// the end of the transport.
    pub fn close(&mut self, conn: ConnId) {
        if let Ws::Open(ws) = &mut self.conns[conn.0].ws {
            let _ = ws.close(None);
            let _ = ws.flush();
        }
        self.hang_up(conn);
    }

    /// The client's next bytes on `conn`, cut anywhere. Ignored once the
    /// connection is down.
    pub fn feed(&mut self, conn: ConnId, data: &[u8]) {
        let c = &mut self.conns[conn.0];
        if !c.connected {
            return;
        }
        if let Some(pipe) = c.ws.pipe() {
            pipe.push_input(data);
        }
        if let Ws::Upgrading(_) = c.ws {
            let Ws::Upgrading(mid) = std::mem::replace(&mut c.ws, Ws::Broken) else {
                unreachable!("checked just above")
            };
            match mid.handshake() {
                Err(HandshakeError::Interrupted(mid)) => c.ws = Ws::Upgrading(Box::new(mid)),
                Err(HandshakeError::Failure(_)) => c.ws = Ws::Broken,
                Ok(ws) => {
                    c.ws = Ws::Open(Box::new(ws));
                    self.welcome(conn.0);
                }
            }
        }
        loop {
            let Ws::Open(ws) = &mut self.conns[conn.0].ws else {
                return;
            };
            let payload = match ws.read() {
                Ok(Message::Text(text)) => Bytes::from(text),
                Ok(Message::Binary(bytes)) => bytes,
                Ok(Message::Ping(_)) => {
                    self.conns[conn.0].pings += 1;
                    continue;
                }
                Ok(_) => continue,
                Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                    let _ = ws.flush();
                    return;
                }
                Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                    return
                }
                Err(_) => {
                    self.conns[conn.0].ws = Ws::Broken;
                    return;
                }
            };
            self.on_message(conn.0, &payload);
        }
    }

    /// What the server sends on `conn` next, if anything (also after a
    /// hang-up, until what was written is taken).
    pub fn take_output(&mut self, conn: ConnId) -> Option<Bytes> {
        self.conns[conn.0].ws.pipe()?.take_output()
    }

    /// Sends `payload` on `conn` as one WebSocket text message, whatever
    /// it holds (for hostile tests: any JSON, or none). Ignores
    /// [`Faults`].
    pub fn send_raw(&mut self, conn: ConnId, payload: &[u8]) {
        if let Ws::Open(ws) = &mut self.conns[conn.0].ws {
            let text = String::from_utf8_lossy(payload).into_owned();
            let _ = ws.send(Message::text(text));
        }
    }

    /// From now on the server misbehaves as `faults` say (counts are
    /// still of every message sent on a connection since it opened).
    pub fn set_faults(&mut self, faults: Faults) {
        self.config.faults = faults;
    }

    /// How many WebSocket pings (keep-alives) the client sent on `conn`.
    pub fn pings(&self, conn: ConnId) -> usize {
        self.conns[conn.0].pings
    }

    /// How many `message`s the server delivered on `conn` (repeats
    /// included, the sender's own echoes too).
    pub fn delivered(&self, conn: ConnId) -> usize {
        self.conns[conn.0].delivered
    }

    /// Everything the server saw, in order.
    pub fn log(&self) -> &[Recorded] {
        &self.log
    }

    /// The nameplates claimed now (by any application), in order.
    pub fn nameplates(&self) -> Vec<String> {
        self.nameplates.keys().map(|(_, n)| n.clone()).collect()
    }

    /// The moods the sides closed their mailboxes with: `(side, mood)`.
    pub fn moods(&self) -> Vec<(String, Option<String>)> {
        self.log
            .iter()
            .filter_map(|r| match r {
                Recorded::Closed { side, mood, .. } => Some((side.clone(), mood.clone())),
                _ => None,
            })
            .collect()
    }

    /// The `error` texts the server sent on `conn`.
    pub fn errors(&self, conn: ConnId) -> Vec<String> {
        self.log
            .iter()
            .filter_map(|r| match r {
                Recorded::Error { conn: c, error } if *c == conn => Some(error.clone()),
                _ => None,
            })
            .collect()
    }

    /// Sends one message of `kind` on `conn`, through the [`Faults`].
    fn send(&mut self, conn: usize, kind: &str, fields: Value) {
        let faults = &self.config.faults;
        let c = &mut self.conns[conn];
        c.sent += 1;
        if !c.connected || faults.stall_after.is_some_and(|n| c.sent > n) {
            return;
        }
        let mut message = match fields {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        message.insert("type".into(), Value::from(kind));
        message.insert("server_tx".into(), Value::from(1_700_000_000.25));
        let mut text = Value::Object(message).to_string();
        if faults.garbage_after.is_some_and(|n| c.sent > n) {
            text = "}{ this is not JSON \u{1}".to_owned();
        }
        if let Ws::Open(ws) = &mut c.ws {
            let _ = ws.send(Message::text(text));
        }
    }

    fn welcome(&mut self, conn: usize) {
        let mut welcome = Map::new();
        if let Some(motd) = &self.config.motd {
            welcome.insert("motd".into(), Value::from(motd.clone()));
        }
        if let Some(error) = &self.config.faults.welcome_error {
            welcome.insert("error".into(), Value::from(error.clone()));
        }
        if let Some(methods) = &self.config.faults.permission_required {
            welcome.insert("permission-required".into(), methods.clone());
        }
        self.send(conn, "welcome", json!({ "welcome": welcome }));
    }

    /// Why every command is refused, if the server refuses service.
    fn refusal(&self) -> Option<String> {
        if let Some(error) = &self.config.faults.welcome_error {
            return Some(error.clone());
        }
        match &self.config.faults.permission_required {
            Some(methods) if methods.get("none").is_none() => Some("permission denied".into()),
            _ => None,
        }
    }

    fn on_message(&mut self, conn: usize, payload: &[u8]) {
        let orig: Value = match serde_json::from_slice(payload) {
            Ok(value) => value,
            Err(_) => Value::String(String::from_utf8_lossy(payload).into_owned()),
        };
        let Some(msg) = orig.as_object().filter(|m| m.contains_key("type")) else {
            return self.refuse(conn, "missing 'type'".into(), orig);
        };
        let id = msg.get("id").cloned().unwrap_or(Value::Null);
        self.send(conn, "ack", json!({ "id": id }));
        if let Err(error) = self.dispatch(conn, msg) {
            self.refuse(conn, error, orig);
        }
    }

    fn refuse(&mut self, conn: usize, error: String, orig: Value) {
        self.log.push(Recorded::Error {
            conn: ConnId(conn),
            error: error.clone(),
        });
        self.send(conn, "error", json!({ "error": error, "orig": orig }));
    }

    fn dispatch(&mut self, conn: usize, msg: &Map<String, Value>) -> Result<(), Refusal> {
        let kind = msg.get("type").and_then(Value::as_str).unwrap_or("");
        match kind {
            "ping" => {
                let ping = msg.get("ping").cloned().unwrap_or(Value::Null);
                self.send(conn, "pong", json!({ "pong": ping }));
                return Ok(());
            }
            "submit-permissions" => return Ok(()),
            _ => {}
        }
        if let Some(refusal) = self.refusal() {
            return Err(refusal);
        }
        if kind == "bind" {
            return self.bind(conn, msg);
        }
        let (Some(appid), Some(side)) = (
            self.conns[conn].appid.clone(),
            self.conns[conn].side.clone(),
        ) else {
            return Err("must bind first".into());
        };
        match kind {
            "list" => {
                let list: Vec<Value> = self
                    .nameplates
                    .keys()
                    .filter(|(a, _)| *a == appid)
                    .map(|(_, n)| json!({ "id": n }))
                    .collect();
                self.send(conn, "nameplates", json!({ "nameplates": list }));
                Ok(())
            }
            "allocate" => self.allocate(conn, &appid, &side),
            "claim" => self.claim(conn, &appid, &side, &text(msg, "nameplate")?),
            "release" => self.release(conn, &appid, &side, optional_text(msg, "nameplate")?),
            "open" => self.open(conn, &side, &text(msg, "mailbox")?),
            "add" => self.add(conn, &side, msg),
            "close" => self.close_mailbox(conn, &side, msg),
            _ => Err("unknown type".into()),
        }
    }

    fn bind(&mut self, conn: usize, msg: &Map<String, Value>) -> Result<(), Refusal> {
        if self.conns[conn].appid.is_some() {
            return Err("already bound".into());
        }
        let appid = text(msg, "appid")?;
        let side = text(msg, "side")?;
        self.log.push(Recorded::Bound {
            conn: ConnId(conn),
            appid: appid.clone(),
            side: side.clone(),
        });
        self.conns[conn].appid = Some(appid);
        self.conns[conn].side = Some(side);
        Ok(())
    }

    fn allocate(&mut self, conn: usize, appid: &str, side: &str) -> Result<(), Refusal> {
        if self.conns[conn].allocated {
            return Err("you already allocated one, you can't allocate another".into());
        }
        self.conns[conn].allocated = true;
        let nameplate = (1u64..)
            .map(|n| n.to_string())
            .find(|n| !self.nameplates.contains_key(&(appid.to_owned(), n.clone())))
            .expect("some number is free");
        self.claim_for(appid, side, &nameplate)?;
        self.log.push(Recorded::Allocated {
            side: side.to_owned(),
            nameplate: nameplate.clone(),
        });
        self.send(conn, "allocated", json!({ "nameplate": nameplate }));
        Ok(())
    }

    /// Adds `side` to `nameplate` (made, with a new mailbox, if new): its mailbox.
    fn claim_for(&mut self, appid: &str, side: &str, nameplate: &str) -> Result<String, Refusal> {
        let key = (appid.to_owned(), nameplate.to_owned());
        if !self.nameplates.contains_key(&key) {
            self.next_mailbox += 1;
            let mailbox = format!("mb{:011}", self.next_mailbox);
            self.mailboxes.insert(mailbox.clone(), Mailbox::default());
            self.nameplates.insert(
                key.clone(),
                Nameplate {
                    mailbox,
                    sides: BTreeSet::new(),
                },
            );
        }
        let plate = self.nameplates.get_mut(&key).expect("made just above");
        if !plate.sides.contains(side) && plate.sides.len() >= 2 {
            self.log.push(Recorded::Crowded {
                side: side.to_owned(),
            });
            return Err("crowded".into());
        }
        plate.sides.insert(side.to_owned());
        Ok(plate.mailbox.clone())
    }

    fn claim(
        &mut self,
        conn: usize,
        appid: &str,
        side: &str,
        nameplate: &str,
    ) -> Result<(), Refusal> {
        if self.conns[conn].claimed.is_some() {
            return Err("only one claim per connection".into());
        }
        let mailbox = self.claim_for(appid, side, nameplate)?;
        self.conns[conn].claimed = Some(nameplate.to_owned());
        self.log.push(Recorded::Claimed {
            side: side.to_owned(),
            nameplate: nameplate.to_owned(),
            mailbox: mailbox.clone(),
        });
        self.send(conn, "claimed", json!({ "mailbox": mailbox }));
        Ok(())
    }

    fn release(
        &mut self,
        conn: usize,
        appid: &str,
        side: &str,
        nameplate: Option<String>,
    ) -> Result<(), Refusal> {
        let c = &self.conns[conn];
        if c.released {
            return Err("only one release per connection".into());
        }
        let nameplate = match (nameplate, &c.claimed) {
            (Some(given), Some(claimed)) if given != *claimed => {
                return Err("release and claim must use same nameplate".into())
            }
            (Some(given), _) => given,
            (None, Some(claimed)) => claimed.clone(),
            (None, None) => return Err("release without nameplate must follow claim".into()),
        };
        self.conns[conn].released = true;
        let key = (appid.to_owned(), nameplate.clone());
        if let Some(plate) = self.nameplates.get_mut(&key) {
            plate.sides.remove(side);
            if plate.sides.is_empty() {
                self.nameplates.remove(&key);
            }
        }
        self.log.push(Recorded::Released {
            side: side.to_owned(),
            nameplate,
        });
        self.send(conn, "released", json!({}));
        Ok(())
    }

    fn open(&mut self, conn: usize, side: &str, mailbox: &str) -> Result<(), Refusal> {
        if self.conns[conn].mailbox.is_some() {
            return Err("only one open per connection".into());
        }
        let m = self.mailboxes.entry(mailbox.to_owned()).or_default();
        if !m.sides.contains(side) && m.sides.len() >= 2 {
            self.log.push(Recorded::Crowded {
                side: side.to_owned(),
            });
            return Err("crowded".into());
        }
        m.sides.insert(side.to_owned());
        m.listeners.insert(conn);
        let stored = m.messages.clone();
        self.conns[conn].mailbox = Some(mailbox.to_owned());
        self.log.push(Recorded::Opened {
            side: side.to_owned(),
            mailbox: mailbox.to_owned(),
        });
        for message in stored {
            self.deliver_to(conn, &message);
        }
        Ok(())
    }

    fn deliver_to(&mut self, conn: usize, message: &Value) {
        let times = match self.config.faults.duplicate_messages {
            true => 2,
            false => 1,
        };
        for _ in 0..times {
            self.conns[conn].delivered += 1;
            self.send(conn, "message", message.clone());
        }
    }

    fn add(&mut self, conn: usize, side: &str, msg: &Map<String, Value>) -> Result<(), Refusal> {
        let Some(mailbox) = self.conns[conn].mailbox.clone() else {
            return Err("must open mailbox before adding".into());
        };
        let phase = text(msg, "phase")?;
        let body = text(msg, "body")?;
        let id = msg.get("id").cloned().unwrap_or(Value::Null);
        let message = json!({ "side": side, "phase": phase, "body": body, "id": id, "server_rx": 1_700_000_000.0 });
        let m = self.mailboxes.get_mut(&mailbox).expect("opened");
        m.messages.push(message.clone());
        let listeners: Vec<usize> = m.listeners.iter().copied().collect();
        self.log.push(Recorded::Added {
            side: side.to_owned(),
            phase,
        });
        for listener in listeners {
            self.deliver_to(listener, &message);
        }
        Ok(())
    }

    fn close_mailbox(
        &mut self,
        conn: usize,
        side: &str,
        msg: &Map<String, Value>,
    ) -> Result<(), Refusal> {
        let c = &self.conns[conn];
        if c.closed {
            return Err("only one close per connection".into());
        }
        let mailbox = match (optional_text(msg, "mailbox")?, &c.mailbox) {
            (Some(given), Some(open)) if given != *open => {
                return Err("open and close must use same mailbox".into())
            }
            (Some(given), _) => given,
            (None, Some(open)) => open.clone(),
            (None, None) => return Err("close without mailbox must follow open".into()),
        };
        let mood = optional_text(msg, "mood")?;
        self.conns[conn].closed = true;
        if let Some(m) = self.mailboxes.get_mut(&mailbox) {
            m.listeners.remove(&conn);
        }
        self.log.push(Recorded::Closed {
            side: side.to_owned(),
            mailbox,
            mood,
        });
        self.send(conn, "closed", json!({}));
        Ok(())
    }
}

/// One client of a [`Rendezvous`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientId(pub usize);

/// A client in a [`Rendezvous`]: its machine and what it said.
#[derive(Debug)]
pub struct Client {
    /// The machine; call its commands between runs.
    pub wormhole: Wormhole,
    /// Its connection on the server.
    pub conn: ConnId,
    /// Every event it told, in order.
    pub events: Vec<WormholeEvent>,
    /// How it ended, once it said `Done`.
    pub done: Option<Result<(), Error>>,
    to_server: Vec<u8>,
    to_client: Vec<u8>,
    eof_fed: bool,
}

impl Client {
    /// The code it printed ([`WormholeEvent::Code`]), if any.
    pub fn code(&self) -> Option<Code> {
        self.events.iter().find_map(|e| match e {
            WormholeEvent::Code(code) => Some(code.clone()),
            _ => None,
        })
    }

    /// The application messages it received, in order.
    pub fn messages(&self) -> Vec<Bytes> {
        self.events
            .iter()
            .filter_map(|e| match e {
                WormholeEvent::Message(m) => Some(m.clone()),
                _ => None,
            })
            .collect()
    }

    /// Whether it told [`WormholeEvent::Verified`].
    pub fn verified(&self) -> bool {
        self.events
            .iter()
            .any(|e| matches!(e, WormholeEvent::Verified { .. }))
    }
}

/// Polls per drain, and pump rounds per run, before a run counts as a livelock.
const MAX_POLLS: usize = 100_000;

/// A mailbox server and the clients that meet through it, on a virtual
/// clock: [`run`](Self::run) moves bytes until nothing moves,
/// [`advance`](Self::advance) moves time (firing every deadline on the way).
#[derive(Debug)]
pub struct Rendezvous {
    /// The server every client talks to.
    pub server: MailboxServer,
    /// The virtual time.
    pub now: Instant,
    clients: Vec<Client>,
    /// Cuts every byte stream at random points when set.
    cuts: Option<ChaCha8Rng>,
}

impl Rendezvous {
    /// A rendezvous with `server` and no clients yet, at virtual time `now`.
    pub fn new(server: MailboxServer, now: Instant) -> Rendezvous {
        Rendezvous {
            server,
            now,
            clients: Vec::new(),
            cuts: None,
        }
    }

    /// From now on every hand-over (client to server, server to client)
    /// moves a random prefix of what is in flight, chosen by `seed`, so
    /// the byte streams are cut at arbitrary points.
    pub fn cut_streams(&mut self, seed: u64) {
        self.cuts = Some(ChaCha8Rng::seed_from_u64(seed));
    }

    /// Connects `wormhole` to the server.
    pub fn add(&mut self, wormhole: Wormhole) -> ClientId {
        let conn = self.server.connect();
        self.clients.push(Client {
            wormhole,
            conn,
            events: Vec::new(),
            done: None,
            to_server: Vec::new(),
            to_client: Vec::new(),
            eof_fed: false,
        });
        ClientId(self.clients.len() - 1)
    }

    /// Connects a [`Wormhole::allocate`] with `config` (seed: `seed` in
    /// every byte).
    pub fn allocate(&mut self, config: WormholeConfig, seed: u8) -> ClientId {
        let wormhole = Wormhole::allocate(config, self.now, [seed; 32]).expect("a valid config");
        self.add(wormhole)
    }

    /// Connects a [`Wormhole::join`] of `code` with `config`.
    pub fn join(&mut self, config: WormholeConfig, code: Code, seed: u8) -> ClientId {
        let wormhole = Wormhole::join(config, code, self.now, [seed; 32]).expect("a valid config");
        self.add(wormhole)
    }

    /// The client `id`.
    pub fn client(&self, id: ClientId) -> &Client {
        &self.clients[id.0]
    }

    /// The client `id`, to call its machine's commands.
    pub fn client_mut(&mut self, id: ClientId) -> &mut Client {
        &mut self.clients[id.0]
    }

    /// Whether every client said `Done`.
    pub fn all_done(&self) -> bool {
        self.clients.iter().all(|c| c.done.is_some())
    }

    /// Puts `bytes` in flight toward client `id`, as if the server had
    /// written them (for hostile tests: they need not be WebSocket frames).
    pub fn inject(&mut self, id: ClientId, bytes: &[u8]) {
        self.clients[id.0].to_client.extend_from_slice(bytes);
    }

    /// The server hangs up on client `id` without a word (its transport
    /// ends; what was already written still arrives, then the end).
    pub fn hang_up(&mut self, id: ClientId) {
        let conn = self.clients[id.0].conn;
        self.server.hang_up(conn);
    }

    /// Client `id` connects again after losing its connection: the server
    /// gets a new connection and the machine goes on as
    /// [`Wormhole::resume`] makes it (what it had told, its events and
    /// `done`, are kept but `done` is cleared). Panics if the machine
    /// cannot resume.
    pub fn reconnect(&mut self, id: ClientId) {
        let placeholder = Wormhole::allocate(WormholeConfig::default(), self.now, [0; 32])
            .expect("the default config is valid");
        let client = &mut self.clients[id.0];
        let old = std::mem::replace(&mut client.wormhole, placeholder);
        client.wormhole = old.resume(self.now).expect("the session can resume");
        client.conn = self.server.connect();
        client.done = None;
        client.to_server.clear();
        client.to_client.clear();
        client.eof_fed = false;
    }

    /// Moves bytes and drains machines until nothing moves; no time passes.
    pub fn run(&mut self) {
        for _ in 0..MAX_POLLS {
            let mut moved = false;
            for i in 0..self.clients.len() {
                moved |= self.drain(i);
                moved |= self.hand_to_server(i);
                moved |= self.hand_to_client(i);
            }
            if !moved {
                return;
            }
        }
        panic!("the rendezvous did not settle within {MAX_POLLS} rounds");
    }

    /// Moves the clock `by` ahead, firing every client deadline on the way
    /// in order and running after each; then runs at the new time.
    pub fn advance(&mut self, by: Duration) {
        let until = self.now + by;
        self.run();
        for _ in 0..MAX_POLLS {
            let next = self
                .clients
                .iter()
                .filter(|c| c.done.is_none())
                .filter_map(|c| c.wormhole.poll_timeout())
                .filter(|at| *at <= until)
                .min();
            let Some(at) = next else {
                self.now = until;
                return self.run();
            };
            self.now = self.now.max(at);
            let now = self.now;
            for c in self.clients.iter_mut().filter(|c| c.done.is_none()) {
                if c.wormhole.poll_timeout().is_some_and(|t| t <= now) {
                    c.wormhole.handle_timeout(now);
                }
            }
            self.run();
        }
        panic!("deadlines kept firing without the clock moving past them");
    }

    /// Drains client `i`'s machine; whether anything came out.
    fn drain(&mut self, i: usize) -> bool {
        let c = &mut self.clients[i];
        if c.done.is_some() {
            return false;
        }
        let mut moved = false;
        for _ in 0..MAX_POLLS {
            match c.wormhole.poll_output() {
                Output::Transmit(bytes) => c.to_server.extend_from_slice(&bytes),
                Output::Event(event) => c.events.push(event),
                Output::Wait(at) => {
                    assert_eq!(c.wormhole.poll_timeout(), at, "poll_timeout after Wait");
                    return moved;
                }
                Output::Done(result) => {
                    c.done = Some(result);
                    return true;
                }
            }
            moved = true;
        }
        panic!("client {i} did not settle within {MAX_POLLS} polls");
    }

    /// How many of `len` in-flight bytes move in one hand-over.
    fn piece(cuts: &mut Option<ChaCha8Rng>, len: usize) -> usize {
        match cuts {
            Some(rng) if len > 1 => rng.random_range(1..=len),
            _ => len,
        }
    }

    fn hand_to_server(&mut self, i: usize) -> bool {
        let c = &mut self.clients[i];
        let mut moved = false;
        if !c.to_server.is_empty() {
            let n = Self::piece(&mut self.cuts, c.to_server.len());
            let bytes: Vec<u8> = c.to_server.drain(..n).collect();
            self.server.feed(c.conn, &bytes);
            moved = true;
        }
        // A client that is done closes its transport once its last bytes left.
        if c.done.is_some() && c.to_server.is_empty() && self.server.is_connected(c.conn) {
            self.server.hang_up(c.conn);
            moved = true;
        }
        moved
    }

    fn hand_to_client(&mut self, i: usize) -> bool {
        let c = &mut self.clients[i];
        let mut moved = false;
        if let Some(bytes) = self.server.take_output(c.conn) {
            c.to_client.extend_from_slice(&bytes);
            moved = true;
        }
        if !c.to_client.is_empty() {
            let n = Self::piece(&mut self.cuts, c.to_client.len());
            match c.done {
                // After the end, input is discarded (the contract): feed
                // it anyway, and check.
                Some(_) => {
                    let _ = c.wormhole.handle_input(self.now, &c.to_client[..n]);
                    c.to_client.drain(..n);
                }
                None => match c.wormhole.handle_input(self.now, &c.to_client[..n]) {
                    Ok(taken) => {
                        c.to_client.drain(..taken);
                    }
                    Err(_) => c.to_client.clear(),
                },
            }
            moved = true;
        }
        let server_gone = !self.server.is_connected(c.conn);
        if server_gone && c.to_client.is_empty() && !c.eof_fed && c.done.is_none() {
            c.eof_fed = true;
            c.wormhole.handle_eof(self.now);
            moved = true;
        }
        moved
    }
}

/// The mailbox server with an honest peer inside, as one stream machine
/// whose byte stream is one outside client's connection: so a
/// [`Wormhole`] runs in the simulator (`testing::sim`), which joins two
/// stream machines. The peer joins `code`, sends every message it
/// receives back, and closes after the first (or when the outside client
/// hangs up); the machine is done (with the peer's result) once the peer
/// is done and the outside client has hung up.
#[derive(Debug)]
pub struct EchoingMailbox {
    rv: Rendezvous,
    conn: ConnId,
    peer: ClientId,
    echoed: usize,
    input: Vec<u8>,
    client_gone: bool,
    last_wait: Option<Instant>,
}

impl EchoingMailbox {
    /// A server with one outside connection, and the peer inside joining
    /// `code` with `config` at `now`.
    pub fn new(config: WormholeConfig, code: Code, now: Instant) -> EchoingMailbox {
        let mut rv = Rendezvous::new(MailboxServer::new(ServerConfig::default()), now);
        let conn = rv.server.connect();
        let peer = rv.join(config, code, 0xee);
        let mut mailbox = EchoingMailbox {
            rv,
            conn,
            peer,
            echoed: 0,
            input: Vec::new(),
            client_gone: false,
            last_wait: None,
        };
        mailbox.play();
        mailbox
    }

    /// The peer inside.
    pub fn peer(&self) -> &Client {
        self.rv.client(self.peer)
    }

    /// The server.
    pub fn server(&self) -> &MailboxServer {
        &self.rv.server
    }

    /// Runs the server and the peer until nothing moves, the peer echoing.
    fn play(&mut self) {
        loop {
            self.rv.run();
            let now = self.rv.now;
            let peer = self.rv.client_mut(self.peer);
            let messages = peer.messages();
            if peer.done.is_some() || messages.len() == self.echoed {
                return;
            }
            for message in &messages[self.echoed..] {
                let _ = peer.wormhole.send(message);
            }
            let _ = peer.wormhole.close(now);
            self.echoed = messages.len();
        }
    }
}

impl Machine for EchoingMailbox {
    type Transmit = Bytes;
    type Event = std::convert::Infallible;

    fn handle_timeout(&mut self, now: Instant) {
        if now > self.rv.now {
            self.rv.advance(now - self.rv.now);
        }
        self.play();
    }

    fn poll_output(&mut self) -> Output<Bytes, std::convert::Infallible> {
        if let Some(bytes) = self.rv.server.take_output(self.conn) {
            return Output::Transmit(bytes);
        }
        if let (true, Some(result)) = (self.client_gone, self.peer().done.clone()) {
            self.last_wait = None;
            return Output::Done(result);
        }
        self.last_wait = match self.peer().done {
            Some(_) => None,
            None => self.peer().wormhole.poll_timeout(),
        };
        Output::Wait(self.last_wait)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.last_wait
    }
}

impl StreamMachine for EchoingMailbox {
    fn input_buffer(&mut self, max: usize) -> &mut [u8] {
        self.input.resize(max.min(self.input_room()), 0);
        &mut self.input
    }

    fn commit_input(&mut self, now: Instant, n: usize) -> Result<(), Error> {
        if n > self.input.len() {
            let (len, room) = (n, self.input.len());
            return Err(crate::error::UsageError::InputOverflow { len, room }.into());
        }
        self.rv.now = self.rv.now.max(now);
        self.rv.server.feed(self.conn, &self.input[..n]);
        self.play();
        Ok(())
    }

    fn handle_eof(&mut self, now: Instant) {
        self.client_gone = true;
        self.rv.server.hang_up(self.conn);
        // Nobody else will come: the peer gives up waiting (it would wait
        // for the other side forever).
        self.rv.now = self.rv.now.max(now);
        let peer = self.rv.client_mut(self.peer);
        if peer.done.is_none() {
            let _ = peer.wormhole.close(now);
        }
        self.play();
    }

    fn input_room(&self) -> usize {
        64 << 10
    }
}

/// A clock jump picked by one fuzz byte: mostly short, sometimes past
/// the 30 s answer limit.
fn jump(b: u8) -> Duration {
    match b % 4 {
        0 | 1 => Duration::from_millis(u64::from(b) * 10),
        2 => Duration::from_secs(u64::from(b % 40)),
        _ => Duration::from_secs(61),
    }
}

/// A server message of a type the client knows, its fields from fuzz bytes.
fn forged(kind: u8, field: &str) -> Value {
    match kind % 10 {
        0 => json!({ "type": "welcome", "welcome": { "motd": field } }),
        1 => json!({ "type": "welcome", "welcome": { "permission-required": { field: {} } } }),
        2 => json!({ "type": "allocated", "nameplate": field }),
        3 => json!({ "type": "claimed", "mailbox": field }),
        4 => json!({ "type": "released" }),
        5 => json!({ "type": "closed" }),
        6 => {
            json!({ "type": "message", "side": "0123456789", "phase": "pake", "body": hex::encode(field) })
        }
        7 => {
            json!({ "type": "message", "side": "0123456789", "phase": field, "body": hex::encode(field) })
        }
        8 => json!({ "type": "error", "error": field, "orig": {} }),
        _ => json!({ "type": "ack", "id": field }),
    }
}

/// The fuzz harness behind `tests/wormhole_client.rs` and the `wormhole`
/// fuzz target: a client (allocating or joining, by the first byte) meets
/// an honest server and, later, an honest peer, while the input injects
/// raw bytes, arbitrary or forged server messages, hang-ups, commands and
/// clock jumps. It must never panic, and the contract holds throughout
/// (checked by [`Rendezvous`]: bounded drains, `poll_timeout` as the last
/// `Wait` said), plus: `Done` is final and repeats; at most one `Code`,
/// `Keyed` and `Verified`; `Verified` comes after `Keyed`, and messages
/// only after `Verified` (for the client and the peer alike).
pub fn fuzz_server_answers(data: &[u8]) {
    let mut rv = fuzz_session(data);
    for c in &mut rv.clients {
        check_events(&c.events);
        if let Some(result) = c.done.clone() {
            for _ in 0..2 {
                assert_eq!(c.wormhole.poll_output(), Output::Done(result.clone()));
                assert_eq!(c.wormhole.poll_timeout(), None);
            }
        }
    }
}

/// The session [`fuzz_server_answers`] plays from `data`, run to its
/// end (two virtual minutes after the input's last step): the fuzzed
/// client is the first, the honest peer (if it came) the second.
pub fn fuzz_session(data: &[u8]) -> Rendezvous {
    let mut input = data.iter().copied();
    let mut byte = move || input.next();
    let config = WormholeConfig {
        mailbox_url: "ws://mailbox.test:4000/v1".into(),
        ..WormholeConfig::default()
    };
    let mut rv = Rendezvous::new(MailboxServer::new(ServerConfig::default()), Instant::now());
    let joining = byte().unwrap_or(0) & 1 == 1;
    let a = match joining {
        true => rv.join(
            config.clone(),
            Code::parse("1-guitarist-revenge").expect("a valid code"),
            1,
        ),
        false => rv.allocate(config.clone(), 1),
    };
    let mut peer = None;
    let mut steps = 0;
    while let Some(op) = byte() {
        steps += 1;
        if steps > 200 {
            break;
        }
        let arg = byte().unwrap_or(0);
        match op % 9 {
            0 => rv.run(),
            1 => {
                let raw: Vec<u8> = (0..arg % 32).map_while(|_| byte()).collect();
                rv.inject(a, &raw);
            }
            2 => {
                let raw: Vec<u8> = (0..arg % 64).map_while(|_| byte()).collect();
                let conn = rv.client(a).conn;
                rv.server.send_raw(conn, &raw);
            }
            3 => {
                let field: Vec<u8> = (0..byte().unwrap_or(0) % 40)
                    .map_while(|_| byte())
                    .collect();
                let field = String::from_utf8_lossy(&field).into_owned();
                let conn = rv.client(a).conn;
                rv.server
                    .send_raw(conn, forged(arg, &field).to_string().as_bytes());
            }
            4 => rv.advance(jump(arg)),
            5 if arg % 8 == 0 => rv.hang_up(a),
            6 => {
                let now = rv.now;
                let w = &mut rv.client_mut(a).wormhole;
                let _ = match arg % 4 {
                    0 => w.close(now),
                    _ => w.send(&[arg; 5]),
                };
            }
            7 if peer.is_none() => {
                let code = match joining {
                    true => Code::parse("1-guitarist-revenge").ok(),
                    false => rv.client(a).code(),
                };
                if let Some(code) = code {
                    peer = Some(rv.join(config.clone(), code, 2));
                }
            }
            _ => rv.run(),
        }
    }
    rv.advance(Duration::from_secs(120));
    rv
}

/// The order of a client's events: see [`fuzz_server_answers`].
fn check_events(events: &[WormholeEvent]) {
    let count = |f: fn(&WormholeEvent) -> bool| events.iter().filter(|e| f(e)).count();
    assert!(
        count(|e| matches!(e, WormholeEvent::Code(_))) <= 1,
        "{events:?}"
    );
    assert!(
        count(|e| matches!(e, WormholeEvent::Keyed { .. })) <= 1,
        "{events:?}"
    );
    assert!(
        count(|e| matches!(e, WormholeEvent::Verified { .. })) <= 1,
        "{events:?}"
    );
    let position = |f: fn(&WormholeEvent) -> bool| events.iter().position(f);
    let keyed = position(|e| matches!(e, WormholeEvent::Keyed { .. }));
    let verified = position(|e| matches!(e, WormholeEvent::Verified { .. }));
    let message = position(|e| matches!(e, WormholeEvent::Message(_)));
    if let Some(v) = verified {
        assert!(keyed.is_some_and(|k| k < v), "{events:?}");
    }
    if let Some(m) = message {
        assert!(verified.is_some_and(|v| v < m), "{events:?}");
    }
}
