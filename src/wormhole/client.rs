//! The wormhole client protocol, one machine: it runs the mailbox session
//! to a shared mailbox (allocating or claiming the code's nameplate), the
//! SPAKE2 exchange over the code, the version phase that proves both sides
//! typed the same code, and the numbered application phases, each sealed
//! with SecretBox under its own HKDF-derived key and handed over in order.
//! Closing releases the nameplate and closes the mailbox with a mood, as
//! Python's client does. Every step is one row of [`Stage`]'s table.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use bytes::Bytes;
use rand_chacha_spake::rand_core::{RngCore, SeedableRng};
use rand_chacha_spake::ChaCha20Rng;
use serde_json::{json, Value};
use spake2::{Ed25519Group, Identity, Password, Spake2};

use super::code::Code;
use super::keys::{self, Key, NONCE_LEN};
use super::mailbox::{Mailbox, MailboxEvent};
use super::WormholeConfig;
use crate::error::{Error, UsageError, WormholeError};
use crate::machine::{Machine, Output, StreamMachine};

/// How many application phases may wait for an earlier one.
const MAX_EARLY_PHASES: usize = 64;
/// How many bytes of input may wait for the WebSocket layer.
const INPUT_ROOM: usize = 64 << 10;

/// What a wormhole tells its application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WormholeEvent {
    /// The mailbox server's message of the day (sanitised): show it.
    Motd(String),
    /// The code to give the other person (allocated by this side).
    Code(Code),
    /// The key is agreed, not yet confirmed: the verifier both sides may
    /// compare out of band.
    Keyed {
        /// `derive(key, "wormhole:verifier")`.
        verifier: Key,
    },
    /// The peer proved it typed the same code; its `app_versions`.
    Verified {
        /// The peer's application versions (`{}` from most clients).
        app_versions: Value,
    },
    /// The peer's next application message, in order.
    Message(Bytes),
}

/// Where the session is; each row says what it waits for.
#[derive(Debug)]
enum Stage {
    /// `allocate` sent: waits for a nameplate.
    Allocating,
    /// `claim` sent: waits for the mailbox.
    Claiming,
    /// Mailbox open and our `pake` added: waits for the peer's.
    AwaitingPeer(Spake2<Ed25519Group>),
    /// Key agreed and our `version` sent: waits for the peer's version.
    Keyed,
    /// The peer proved the code: application phases flow.
    Verified,
    /// `release` and `close` sent: waits for their answers; then ends
    /// with the result kept here.
    Closing(Result<(), Error>),
    /// Over.
    Done(Result<(), Error>),
}

/// The mood a closing side reports to the server (its usage statistics).
fn mood(stage: &Stage, result: &Result<(), Error>) -> &'static str {
    match (stage, result) {
        (_, Err(Error::Wormhole(WormholeError::WrongCode))) => "scary",
        (_, Err(_)) => "errory",
        (Stage::Verified, Ok(())) => "happy",
        _ => "lonely",
    }
}

/// A magic-wormhole client session: code, key, versions, messages.
pub struct Wormhole {
    config: WormholeConfig,
    mailbox: Mailbox,
    stage: Stage,
    side: String,
    rng: ChaCha20Rng,
    code: Option<Code>,
    nameplate: Option<String>,
    nameplate_held: bool,
    mailbox_id: Option<String>,
    key: Option<Key>,
    next_tx_phase: u64,
    next_rx_phase: u64,
    early: BTreeMap<u64, Vec<u8>>,
    /// Application messages asked for before the key was agreed.
    unsent: VecDeque<Vec<u8>>,
    events: VecDeque<WormholeEvent>,
    input: Vec<u8>,
    keep_alive_at: Option<Instant>,
    last_wait: Option<Instant>,
    /// The latest time seen (for a command that carries none).
    now: Instant,
    /// The stage a lost connection interrupted, kept for
    /// [`resume`](Wormhole::resume).
    suspended: Option<Stage>,
    /// Whether the server's message of the day was told (once per session).
    motd_told: bool,
}

impl std::fmt::Debug for Wormhole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wormhole")
            .field("stage", &stage_name(&self.stage))
            .field("side", &self.side)
            .field("nameplate", &self.nameplate)
            .finish_non_exhaustive()
    }
}

fn stage_name(stage: &Stage) -> &'static str {
    match stage {
        Stage::Allocating => "allocating a nameplate",
        Stage::Claiming => "claiming the nameplate",
        Stage::AwaitingPeer(_) => "waiting for the other side",
        Stage::Keyed => "waiting for the other side's confirmation",
        Stage::Verified => "connected",
        Stage::Closing(_) => "closing",
        Stage::Done(_) => "done",
    }
}

impl Wormhole {
    /// A session that asks the mailbox server for a nameplate and makes a
    /// code of it ([`WormholeEvent::Code`]) with `words` random words.
    /// `seed`: 32 bytes from a CSPRNG, never reused (`secure::os_seed`).
    pub fn allocate(
        config: WormholeConfig,
        now: Instant,
        seed: [u8; 32],
    ) -> Result<Wormhole, Error> {
        let mut wormhole = Wormhole::start(config, Stage::Allocating, now, seed)?;
        wormhole.mailbox.allocate(now)?;
        Ok(wormhole)
    }

    /// A session that joins the other side's `code` (`4-purple-sausages`).
    pub fn join(
        config: WormholeConfig,
        code: Code,
        now: Instant,
        seed: [u8; 32],
    ) -> Result<Wormhole, Error> {
        let nameplate = code.nameplate().to_owned();
        let mut wormhole = Wormhole::start(config, Stage::Claiming, now, seed)?;
        wormhole.code = Some(code);
        wormhole.mailbox.claim(&nameplate, now)?;
        wormhole.nameplate = Some(nameplate);
        wormhole.nameplate_held = true;
        Ok(wormhole)
    }

    fn start(
        config: WormholeConfig,
        stage: Stage,
        now: Instant,
        seed: [u8; 32],
    ) -> Result<Wormhole, Error> {
        let mut rng = ChaCha20Rng::from_seed(seed);
        let mut side = [0u8; 5];
        rng.fill_bytes(&mut side);
        let side = hex::encode(side);
        let mailbox = Mailbox::connect(
            &config.mailbox_url,
            &config.appid,
            &side,
            config.answer_within,
            now,
        )?;
        let keep_alive_at = config.keep_alive.map(|every| now + every);
        Ok(Wormhole {
            config,
            mailbox,
            stage,
            side,
            rng,
            code: None,
            nameplate: None,
            nameplate_held: false,
            mailbox_id: None,
            key: None,
            next_tx_phase: 0,
            next_rx_phase: 0,
            early: BTreeMap::new(),
            unsent: VecDeque::new(),
            events: VecDeque::new(),
            input: Vec::new(),
            keep_alive_at,
            last_wait: None,
            now,
            suspended: None,
            motd_told: false,
        })
    }

    /// The code, once known (given, or allocated).
    pub fn code(&self) -> Option<&Code> {
        self.code.as_ref()
    }

    /// This side's random identifier in the mailbox.
    pub fn side(&self) -> &str {
        &self.side
    }

    /// A key for another purpose (transit, say), derived from the agreed
    /// key: `derive(key, purpose)`; `None` before the key is agreed.
    pub fn derive_key(&self, purpose: &str) -> Option<Key> {
        self.key
            .as_ref()
            .map(|key| keys::derive(key, purpose.as_bytes()))
    }

    /// Whether the peer has proved the code.
    pub fn is_verified(&self) -> bool {
        matches!(self.stage, Stage::Verified)
    }

    /// Whether [`resume`](Self::resume) can go on with this session: the
    /// server had welcomed it, and the connection to it was lost (the
    /// server hung up, stalled past `answer_within`, or the transport
    /// failed while the session was still running) before the session
    /// was over.
    pub fn can_resume(&self) -> bool {
        self.mailbox.was_welcomed() && (self.suspended.is_some() || is_live(&self.stage))
    }

    /// Goes on with this session over a new connection to the mailbox
    /// server (which the caller has made), after the old one was lost,
    /// as the server protocol's reconnection rules say: the same side binds
    /// again; an allocation or claim that was not answered is asked again;
    /// an open mailbox is opened again, so the server sends its messages
    /// again (those already handled are skipped); and this side's messages
    /// whose echo never came are added again (a peer skips one it already
    /// has). The code, the key and the phases are kept; the application
    /// sees no event twice. Refused with [`UsageError::WrongState`] unless
    /// [`can_resume`](Self::can_resume).
    pub fn resume(mut self, now: Instant) -> Result<Wormhole, Error> {
        if !self.can_resume() {
            return Err(UsageError::WrongState {
                call: "resume",
                state: stage_name(&self.stage),
            }
            .into());
        }
        let stage = match self.suspended.take() {
            Some(stage) => stage,
            None => std::mem::replace(&mut self.stage, Stage::Done(Ok(()))),
        };
        self.mailbox = self.mailbox.reconnect(now)?;
        match &stage {
            Stage::Allocating => self.mailbox.allocate(now)?,
            Stage::Claiming => {
                let nameplate = self.nameplate.clone().unwrap_or_default();
                self.mailbox.claim(&nameplate, now)?;
            }
            _ => {}
        }
        if let Some(mailbox) = self.mailbox_id.clone() {
            self.mailbox.open(&mailbox)?;
            self.mailbox.add_unechoed()?;
        }
        self.stage = stage;
        self.input.clear();
        self.last_wait = None;
        self.now = self.now.max(now);
        self.keep_alive_at = self.config.keep_alive.map(|every| now + every);
        Ok(self)
    }

    /// Sends `message` as the next application phase; before the key is
    /// agreed it waits, in order.
    pub fn send(&mut self, message: &[u8]) -> Result<(), Error> {
        match self.stage {
            Stage::Closing(_) | Stage::Done(_) => Err(UsageError::Closed.into()),
            Stage::Keyed | Stage::Verified => self.send_phase(message).map_err(Error::from),
            _ => {
                self.unsent.push_back(message.to_vec());
                Ok(())
            }
        }
    }

    /// Ends the session: releases the nameplate, closes the mailbox with
    /// the mood the session earned, then the WebSocket.
    pub fn close(&mut self, now: Instant) -> Result<(), Error> {
        match self.stage {
            Stage::Closing(_) | Stage::Done(_) => Err(UsageError::Closed.into()),
            _ => {
                self.begin_closing(Ok(()), now);
                Ok(())
            }
        }
    }

    fn seal(&mut self, phase: &str, plaintext: &[u8]) -> Vec<u8> {
        let key = self.key.expect("sealing happens once keyed");
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill_bytes(&mut nonce);
        keys::seal(&keys::phase_key(&key, &self.side, phase), nonce, plaintext)
    }

    fn send_phase(&mut self, message: &[u8]) -> Result<(), WormholeError> {
        let phase = self.next_tx_phase.to_string();
        self.next_tx_phase += 1;
        let sealed = self.seal(&phase, message);
        self.mailbox.add(&phase, &sealed)
    }

    /// Starts the end: whatever is owed to the server to free what this
    /// side holds, then `Done(result)` once answered.
    fn begin_closing(&mut self, result: Result<(), Error>, now: Instant) {
        let mood = mood(&self.stage, &result);
        let mut asked = Ok(());
        if let (true, Some(nameplate)) = (self.nameplate_held, self.nameplate.clone()) {
            self.nameplate_held = false;
            asked = self.mailbox.release(&nameplate, now);
        }
        if let Some(mailbox) = self.mailbox_id.take() {
            asked = asked.and_then(|()| self.mailbox.close(&mailbox, mood, now));
        }
        self.stage = Stage::Closing(result);
        if asked.is_err() || self.mailbox.server_closed() {
            self.finish();
        } else {
            self.finish_if_answered();
        }
    }

    fn finish_if_answered(&mut self) {
        if let Stage::Closing(_) = self.stage {
            if !self.mailbox.owes_answers() {
                self.finish();
            }
        }
    }

    fn finish(&mut self) {
        let result = match std::mem::replace(&mut self.stage, Stage::Done(Ok(()))) {
            Stage::Closing(result) | Stage::Done(result) => result,
            _ => Ok(()),
        };
        self.mailbox.hang_up();
        self.stage = Stage::Done(result);
    }

    /// Fails the session with `error`: frees the nameplate and mailbox
    /// (the server is told the mood) when the server can still hear it.
    /// A server that broke its protocol, stalled or went away will not
    /// answer a release or a close: the session ends at once. Otherwise
    /// (the peer's fault, or the application's) the server hears the mood
    /// and frees what this side holds first.
    fn fail(&mut self, error: impl Into<Error>, now: Instant) {
        let error = error.into();
        match self.stage {
            Stage::Done(_) => {}
            Stage::Closing(_) => self.finish(),
            _ if is_servers_fault(&error) => {
                let lost = is_connection_loss(&error);
                let live = std::mem::replace(&mut self.stage, Stage::Closing(Err(error)));
                if lost && is_live(&live) {
                    self.suspended = Some(live);
                }
                self.finish();
            }
            _ => self.begin_closing(Err(error), now),
        }
    }

    fn on_mailbox_event(&mut self, event: MailboxEvent, now: Instant) -> Result<(), WormholeError> {
        match event {
            MailboxEvent::Welcome { motd } => {
                if let (Some(motd), false) = (motd, self.motd_told) {
                    self.motd_told = true;
                    self.events.push_back(WormholeEvent::Motd(motd));
                }
            }
            MailboxEvent::Allocated(nameplate) => self.on_allocated(nameplate, now)?,
            MailboxEvent::Claimed(mailbox) => self.on_claimed(mailbox)?,
            MailboxEvent::Message { side, phase, body } => {
                self.on_message(&side, &phase, &body, now)?
            }
            MailboxEvent::Released | MailboxEvent::Closed => self.finish_if_answered(),
        }
        Ok(())
    }

    fn on_allocated(&mut self, nameplate: String, now: Instant) -> Result<(), WormholeError> {
        if let Stage::Closing(_) = self.stage {
            // Closed while the allocation was on its way: free it.
            return self.mailbox.release(&nameplate, now);
        }
        let Stage::Allocating = self.stage else {
            return Err(WormholeError::BadServer("a nameplate nobody asked for"));
        };
        let rng = &mut self.rng;
        let code = Code::generate(&nameplate, self.config.code_words, &mut || {
            (rng.next_u32() & 0xff) as u8
        })?;
        self.events.push_back(WormholeEvent::Code(code.clone()));
        self.code = Some(code);
        self.mailbox.claim(&nameplate, now)?;
        self.nameplate = Some(nameplate);
        self.nameplate_held = true;
        self.stage = Stage::Claiming;
        Ok(())
    }

    fn on_claimed(&mut self, mailbox: String) -> Result<(), WormholeError> {
        if let Stage::Closing(_) = self.stage {
            return Ok(()); // closed while claiming: the release is on its way
        }
        let Stage::Claiming = self.stage else {
            return Err(WormholeError::BadServer("a mailbox nobody asked for"));
        };
        self.mailbox.open(&mailbox)?;
        self.mailbox_id = Some(mailbox);
        let code = self.code.as_ref().map_or("", Code::as_str).to_owned();
        let mut seed = [0u8; 32];
        self.rng.fill_bytes(&mut seed);
        let (spake, message) = Spake2::<Ed25519Group>::start_symmetric_with_rng(
            &Password::new(code.as_bytes()),
            &Identity::new(self.config.appid.as_bytes()),
            ChaCha20Rng::from_seed(seed),
        );
        let pake = json!({ "pake_v1": hex::encode(message) }).to_string();
        self.mailbox.add("pake", pake.as_bytes())?;
        self.stage = Stage::AwaitingPeer(spake);
        Ok(())
    }

    fn on_message(
        &mut self,
        side: &str,
        phase: &str,
        body: &[u8],
        now: Instant,
    ) -> Result<(), WormholeError> {
        // The peer has the mailbox: the nameplate's work is done.
        if let (true, Some(nameplate)) = (self.nameplate_held, self.nameplate.clone()) {
            self.nameplate_held = false;
            self.mailbox.release(&nameplate, now)?;
        }
        match phase {
            "pake" => self.on_pake(body),
            "version" => self.on_version(side, body),
            numbered if !numbered.is_empty() && numbered.bytes().all(|b| b.is_ascii_digit()) => {
                self.on_numbered(side, numbered, body)
            }
            _ => Ok(()),
        }
    }

    fn on_pake(&mut self, body: &[u8]) -> Result<(), WormholeError> {
        let Stage::AwaitingPeer(_) = self.stage else {
            // A repeated delivery after the key is agreed changes nothing.
            return Ok(());
        };
        let Stage::AwaitingPeer(spake) = std::mem::replace(&mut self.stage, Stage::Keyed) else {
            unreachable!("checked just above")
        };
        let message = parse_pake(body)?;
        let key: Key = spake
            .finish(&message)
            .ok()
            .and_then(|key| key.try_into().ok())
            .ok_or(WormholeError::BadPeer(
                "a PAKE message that is not a SPAKE2 point",
            ))?;
        self.key = Some(key);
        self.events.push_back(WormholeEvent::Keyed {
            verifier: keys::verifier(&key),
        });
        let version =
            json!({ "abilities": [], "app_versions": self.config.app_versions }).to_string();
        let sealed = self.seal("version", version.as_bytes());
        self.mailbox.add("version", &sealed)?;
        while let Some(message) = self.unsent.pop_front() {
            self.send_phase(&message)?;
        }
        Ok(())
    }

    fn open(&self, side: &str, phase: &str, body: &[u8]) -> Result<Vec<u8>, WormholeError> {
        let key = self.key.ok_or(WormholeError::BadPeer(
            "an encrypted message before its PAKE message",
        ))?;
        keys::open(&keys::phase_key(&key, side, phase), body).ok_or(WormholeError::WrongCode)
    }

    fn on_version(&mut self, side: &str, body: &[u8]) -> Result<(), WormholeError> {
        if !matches!(self.stage, Stage::Keyed) {
            return Ok(());
        }
        let plaintext = self.open(side, "version", body)?;
        let versions: Value = serde_json::from_slice(&plaintext)
            .map_err(|_| WormholeError::BadPeer("a version message that is not JSON"))?;
        let app_versions = versions
            .get("app_versions")
            .cloned()
            .unwrap_or_else(|| json!({}));
        self.stage = Stage::Verified;
        self.events
            .push_back(WormholeEvent::Verified { app_versions });
        self.deliver_in_order();
        Ok(())
    }

    fn on_numbered(&mut self, side: &str, phase: &str, body: &[u8]) -> Result<(), WormholeError> {
        let Ok(number) = phase.parse::<u64>() else {
            return Err(WormholeError::BadPeer("a phase number too large"));
        };
        if number < self.next_rx_phase || self.early.contains_key(&number) {
            return Ok(()); // the server may deliver a message twice
        }
        if self.early.len() >= MAX_EARLY_PHASES {
            return Err(WormholeError::BadPeer(
                "too many messages ahead of a missing one",
            ));
        }
        let plaintext = self.open(side, phase, body)?;
        self.early.insert(number, plaintext);
        if let Stage::Verified = self.stage {
            self.deliver_in_order();
        }
        Ok(())
    }

    fn deliver_in_order(&mut self) {
        while let Some(message) = self.early.remove(&self.next_rx_phase) {
            self.next_rx_phase += 1;
            self.events
                .push_back(WormholeEvent::Message(Bytes::from(message)));
        }
    }

    fn drain_mailbox(&mut self, now: Instant) -> Result<(), WormholeError> {
        while let Some(event) = self.mailbox.poll_event() {
            self.on_mailbox_event(event, now)?;
        }
        Ok(())
    }

    fn after_input(&mut self, fed: Result<(), WormholeError>, now: Instant) {
        let result = fed.and_then(|()| self.drain_mailbox(now));
        if let Err(error) = result {
            self.fail(error, now);
        } else if self.mailbox.server_closed() && !matches!(self.stage, Stage::Done(_)) {
            match self.stage {
                Stage::Closing(_) => self.finish(),
                _ => self.fail(
                    WormholeError::ServerClosed("before the session was over"),
                    now,
                ),
            }
        }
    }

    fn deadline(&self) -> Option<Instant> {
        match self.stage {
            Stage::Done(_) => None,
            _ => [self.mailbox.deadline(), self.keep_alive_at]
                .into_iter()
                .flatten()
                .min(),
        }
    }
}

/// Whether `error` means the mailbox server can no longer be talked to.
fn is_servers_fault(error: &Error) -> bool {
    matches!(
        error,
        Error::Wormhole(
            WormholeError::BadServer(_)
                | WormholeError::WebSocket(_)
                | WormholeError::ServerTimeout(_)
                | WormholeError::ServerClosed(_)
                | WormholeError::Refused(_)
                | WormholeError::PermissionRequired(_)
        )
    )
}

/// Whether `error` is the connection to the server going away (not the
/// server misbehaving or refusing): a session can go on over a new one.
fn is_connection_loss(error: &Error) -> bool {
    matches!(
        error,
        Error::Wormhole(
            WormholeError::WebSocket(_)
                | WormholeError::ServerTimeout(_)
                | WormholeError::ServerClosed(_)
        )
    )
}

/// Whether the session was running (not closing, not over) at `stage`.
fn is_live(stage: &Stage) -> bool {
    !matches!(stage, Stage::Closing(_) | Stage::Done(_))
}

fn parse_pake(body: &[u8]) -> Result<Vec<u8>, WormholeError> {
    let bad = || WormholeError::BadPeer("a PAKE message that is not {\"pake_v1\": hex}");
    let value: Value = serde_json::from_slice(body).map_err(|_| bad())?;
    let hex_msg = value
        .get("pake_v1")
        .and_then(Value::as_str)
        .ok_or_else(bad)?;
    hex::decode(hex_msg).map_err(|_| bad())
}

impl Machine for Wormhole {
    type Transmit = Bytes;
    type Event = WormholeEvent;

    fn handle_timeout(&mut self, now: Instant) {
        self.now = self.now.max(now);
        if let Err(error) = self.mailbox.check_deadline(now) {
            match self.stage {
                // A server that does not confirm a release or close does
                // not change how the session went.
                Stage::Closing(_) => self.finish(),
                _ => self.fail(error, now),
            }
            return;
        }
        if let (Some(at), Some(every)) = (self.keep_alive_at, self.config.keep_alive) {
            if at <= now {
                self.keep_alive_at = Some(now + every);
                if let Err(error) = self.mailbox.keep_alive() {
                    self.fail(error, now);
                }
            }
        }
    }

    fn poll_output(&mut self) -> Output<Bytes, WormholeEvent> {
        if let Some(bytes) = self.mailbox.poll_transmit() {
            return Output::Transmit(bytes);
        }
        if let Some(event) = self.events.pop_front() {
            return Output::Event(event);
        }
        if let Stage::Done(result) = &self.stage {
            self.last_wait = None;
            return Output::Done(result.clone());
        }
        self.last_wait = self.deadline();
        Output::Wait(self.last_wait)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.last_wait
    }
}

impl StreamMachine for Wormhole {
    fn input_buffer(&mut self, max: usize) -> &mut [u8] {
        let room = self.input_room().min(max);
        self.input.resize(room, 0);
        &mut self.input
    }

    fn commit_input(&mut self, now: Instant, n: usize) -> Result<(), Error> {
        if n > self.input.len() {
            let error = Error::from(UsageError::InputOverflow {
                len: n,
                room: self.input.len(),
            });
            return Err(error);
        }
        match &self.stage {
            Stage::Done(Err(error)) => return Err(error.clone()),
            Stage::Done(Ok(())) => return Ok(()),
            _ => {}
        }
        self.now = self.now.max(now);
        let input = std::mem::take(&mut self.input);
        let fed = self.mailbox.feed(&input[..n]);
        self.input = input;
        self.after_input(fed, now);
        match &self.stage {
            Stage::Done(Err(error)) => Err(error.clone()),
            _ => Ok(()),
        }
    }

    fn handle_eof(&mut self, now: Instant) {
        if let Stage::Done(_) = self.stage {
            return;
        }
        let fed = self.mailbox.feed_eof();
        self.after_input(fed, now);
        if !matches!(self.stage, Stage::Done(_)) {
            self.fail(
                WormholeError::ServerClosed("before the session was over"),
                now,
            );
            self.finish();
        }
    }

    fn abort(&mut self, reason: String) {
        self.fail(Error::Aborted(reason), self.now);
    }

    fn input_room(&self) -> usize {
        INPUT_ROOM
    }

    fn write_timeout(&self) -> Option<std::time::Duration> {
        Some(self.config.answer_within)
    }
}
