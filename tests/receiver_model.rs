//! The file receiver against a reference model (proptest-state-machine):
//! random sequences of offers (valid, refused by name, too large, with the
//! right and a wrong id, beyond the window), `Begin` with good and bad
//! offsets, `Data` within and beyond the size, `End` with good and bad
//! hashes, `Quit` with entries in flight or not, garbage and peer errors,
//! EOF, clock jumps and the application's answers (accept fresh or resumed,
//! reject, saved, save failed; saves answered late, several owed at once).
//! After every step the receiver's state, the frames it sent and the events
//! it emitted are checked against the model.
//!
//! File content is the byte `FILL` repeated, so a hash and a resume prefix
//! depend only on a length.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use echoxfer::codec::{Frame, Protocol, RejectReason};
use echoxfer::session::Role;
use echoxfer::xfer::{encode_raw_path, offer_digest};
use echoxfer::xfer::{
    OfferRequest, Receiver, ReceiverEvent, ReceiverRole, Resume, SafeName, SaveRequest,
};
use echoxfer::{Error, ErrorCode, Machine, ProtocolError, StreamMachine, UsageError};
use echoxfer::{SessionLimits, TransferConfig};
use proptest::prelude::*;
use proptest_state_machine::{prop_state_machine, ReferenceStateMachine, StateMachineTest};

mod common;
use common::drain::Wire;

const FILL: u8 = 0xab;
const MAX_FILE: u64 = 300;
const IDLE: Duration = Duration::from_secs(10);

fn config() -> SessionLimits {
    SessionLimits {
        idle_timeout: IDLE,
        ..SessionLimits::default()
    }
}

const WINDOW: u32 = 3;

fn transfer() -> TransferConfig {
    TransferConfig {
        max_file_size: MAX_FILE,
        max_name_len: 16,
        window: WINDOW,
        ..TransferConfig::default()
    }
}

/// The `Offer` frame of entry `id`: a file `name` of `size` bytes.
/// A `Saved`, which only a receiver sends: unexpected from a sender.
fn stray_saved() -> Frame {
    Frame::Saved {
        id: 0,
        flags: 0,
        hash: [0; 32],
    }
}

fn offer_frame(id: u32, name: &[u8], size: u64) -> Frame {
    Frame::Offer {
        id,
        kind: 0,
        mode: 0o600,
        mtime_secs: 7,
        mtime_nanos: 8,
        size,
        path: encode_raw_path(&[name]),
    }
}

fn content_hash(len: u64) -> [u8; 32] {
    *blake3::hash(&vec![FILL; len as usize]).as_bytes()
}

fn prefix_hasher(len: u64) -> blake3::Hasher {
    let mut h = blake3::Hasher::new();
    h.update(&vec![FILL; len as usize]);
    h
}

/// A frame (or bytes) from the sender.
#[derive(Debug, Clone, PartialEq)]
enum In {
    Offer {
        id: u32,
        size: u64,
        name: &'static [u8],
    },
    Begin(u32, u64),
    Data(usize),
    /// Id, content hash and offer digest.
    End(u32, [u8; 32], [u8; 32]),
    Quit,
    /// A well-formed frame a receiver never expects.
    Unexpected(Frame),
    /// Bytes that are not a frame (an unknown type).
    Garbage,
    /// The sender reports a failure.
    PeerError,
}

impl In {
    fn wire(&self) -> Vec<u8> {
        let frame = match self {
            In::Offer { id, size, name } => offer_frame(*id, name, *size),
            In::Begin(id, from) => Frame::Begin {
                id: *id,
                from: *from,
            },
            In::Data(n) => Frame::Data(Bytes::from(vec![FILL; *n])),
            In::End(id, hash, offer) => Frame::End {
                id: *id,
                hash: *hash,
                offer: *offer,
            },
            In::Quit => Frame::Quit,
            In::Unexpected(f) => f.clone(),
            In::Garbage => return vec![0x77, 0, 0, 0, 0],
            In::PeerError => Frame::Error {
                code: ErrorCode::Internal,
                message: Bytes::from_static(b"sender gave up"),
            },
        };
        frame.encode_to_vec()
    }
}

#[derive(Debug, Clone)]
enum Step {
    Peer(In),
    Accept(Option<u64>),
    Reject,
    Saved,
    SaveFailed,
    Advance(Duration),
    Eof,
}

#[derive(Debug, Clone, PartialEq)]
enum St {
    Open,
    Done,
    /// Failed; the code of the `Error` frame sent (`None`: the peer failed).
    Failed(Option<ErrorCode>),
}

/// A file the model's receiver has accepted or is receiving.
#[derive(Debug, Clone, PartialEq)]
struct File {
    id: u32,
    name: &'static [u8],
    size: u64,
    /// Bytes held: the resume point, then the next offset.
    at: u64,
}

/// What the receiver sends, with free-form text left out.
#[derive(Debug, Clone, PartialEq)]
enum Out {
    Accept { have: u64, prefix: [u8; 32] },
    Reject(RejectReason),
    Saved,
    Error(ErrorCode),
}

#[derive(Debug, Clone, PartialEq)]
enum Ev {
    Offer(&'static [u8], u64),
    Refused(RejectReason),
    Start(u64),
    Write(u64, usize),
    Verified,
    Discard,
    /// Asked to make durable what is verified.
    Flush,
    Finished,
}

#[derive(Debug, Clone)]
struct Model {
    st: St,
    /// The offer the application is deciding on.
    deciding: Option<File>,
    /// Accepted files waiting for their `Begin`, in order.
    accepted: VecDeque<File>,
    /// The file whose data is arriving.
    receiving: Option<File>,
    /// Frames buffered while the application decides or saves.
    pending: VecDeque<In>,
    idle: Duration,
    saved: u64,
    received: u64,
    /// The id the next offer must carry.
    next_id: u32,
    /// Entries offered and not finished.
    in_flight: u32,
    /// Saves the application owes.
    saves: u32,
    /// `Quit` arrived while saves were owed: it ends the session once they
    /// are answered, and holds every later frame until then.
    quit_held: bool,
    /// What the last step made the receiver send and emit.
    out: Vec<Out>,
    events: Vec<Ev>,
    /// What the last command must return: Ok, or a local error (by kind).
    command: Option<Result<(), &'static str>>,
}

impl Model {
    fn closed(&self) -> bool {
        matches!(self.st, St::Done | St::Failed(_))
    }

    fn awaits_app(&self) -> bool {
        self.deciding.is_some() || self.quit_held
    }

    /// Ends the session once `Quit` arrived and no save is owed.
    fn end_if_quit(&mut self) {
        if self.quit_held && self.saves == 0 {
            self.quit_held = false;
            self.events.push(Ev::Finished);
            self.st = St::Done;
        }
    }

    fn fail(&mut self, code: Option<ErrorCode>) {
        if !self.closed() {
            self.st = St::Failed(code);
            if let Some(code) = code {
                self.out.push(Out::Error(code));
            }
            self.pending.clear();
        }
    }

    /// Dispatches buffered frames while the receiver may.
    fn process(&mut self) {
        while !self.closed() && !self.awaits_app() {
            let Some(frame) = self.pending.pop_front() else {
                return;
            };
            self.dispatch(frame);
        }
    }

    fn dispatch(&mut self, frame: In) {
        let protocol = Some(ErrorCode::Protocol);
        match frame {
            In::Garbage | In::Unexpected(_) => self.fail(protocol),
            In::PeerError => self.fail(None),
            In::Offer { id, .. } if id != self.next_id => self.fail(protocol),
            In::Offer { .. } if self.in_flight >= WINDOW => self.fail(protocol),
            In::Offer { id, size, name } => {
                self.next_id += 1;
                let valid = SafeName::new(name, transfer().max_name_len).is_ok();
                if !valid {
                    self.out.push(Out::Reject(RejectReason::NameRefused));
                    self.events.push(Ev::Refused(RejectReason::NameRefused));
                } else if size > MAX_FILE {
                    self.out.push(Out::Reject(RejectReason::TooLarge));
                    self.events.push(Ev::Refused(RejectReason::TooLarge));
                } else {
                    self.events.push(Ev::Offer(name, size));
                    self.in_flight += 1;
                    self.deciding = Some(File {
                        id,
                        name,
                        size,
                        at: 0,
                    });
                }
            }
            In::Quit if self.in_flight > self.saves => self.fail(protocol),
            In::Quit => {
                self.quit_held = true;
                // Saves owed and no Flush needed from the sender: the
                // receiver asks its app to make them durable itself.
                if self.saves > 0 {
                    self.events.push(Ev::Flush);
                }
                self.end_if_quit();
            }
            In::Begin(id, from) => {
                let next = self.accepted.front();
                let ok = self.receiving.is_none()
                    && next.is_some_and(|f| f.id == id && (from == 0 || from == f.at));
                match self.accepted.pop_front() {
                    Some(mut f) if ok => {
                        self.events.push(Ev::Start(from));
                        f.at = from;
                        self.receiving = Some(f);
                    }
                    _ => self.fail(protocol),
                }
            }
            In::Data(n) => match &mut self.receiving {
                Some(f) if f.at + n as u64 <= f.size => {
                    if n > 0 {
                        self.events.push(Ev::Write(f.at, n));
                        self.received += n as u64;
                    }
                    f.at += n as u64;
                }
                _ => self.fail(protocol),
            },
            In::End(id, hash, offer) => match self.receiving.take() {
                Some(f) if f.at == f.size && f.id == id => {
                    let digest = offer_digest(&offer_frame(f.id, f.name, f.size));
                    if hash == content_hash(f.size) && offer == digest {
                        self.events.push(Ev::Verified);
                        self.saves += 1;
                    } else {
                        self.events.push(Ev::Discard);
                        self.fail(Some(ErrorCode::HashMismatch));
                    }
                }
                _ => self.fail(protocol),
            },
        }
    }

    /// A command on the application's side: `Err` names the local error.
    fn command(&mut self, step: &Step) -> Result<(), &'static str> {
        match self.st {
            St::Done => return Err("closed"),
            St::Failed(_) => return Err("sticky"),
            _ => {}
        }
        match step {
            Step::Accept(have) if self.deciding.is_some() => {
                let have = have.unwrap_or(0);
                let Some(mut f) = self.deciding.take() else {
                    return Err("wrong state");
                };
                if have > f.size {
                    // The request is spent on an answer that cannot be used.
                    self.fail(Some(ErrorCode::Internal));
                    return Err("bad resume");
                }
                self.out.push(Out::Accept {
                    have,
                    prefix: content_hash(have),
                });
                f.at = have;
                self.accepted.push_back(f);
            }
            Step::Reject if self.deciding.is_some() => {
                self.out.push(Out::Reject(RejectReason::Exists));
                self.in_flight -= 1;
                self.deciding = None;
            }
            Step::Saved if self.saves > 0 => {
                self.out.push(Out::Saved);
                self.saved += 1;
                self.saves -= 1;
                self.in_flight -= 1;
                self.end_if_quit();
            }
            Step::SaveFailed if self.saves > 0 => {
                self.out.push(Out::Reject(RejectReason::Disk));
                self.saves -= 1;
                self.in_flight -= 1;
                self.end_if_quit();
            }
            _ => return Err("wrong state"),
        }
        Ok(())
    }
}

struct RefMachine;

const NAMES: [&[u8]; 6] = [b"f", b"g", b"file..txt", b"../x", b"", b"a\x1b[2J"];

impl ReferenceStateMachine for RefMachine {
    type State = Model;
    type Transition = Step;

    fn init_state() -> BoxedStrategy<Model> {
        Just(Model {
            st: St::Open,
            deciding: None,
            accepted: VecDeque::new(),
            receiving: None,
            pending: VecDeque::new(),
            idle: Duration::ZERO,
            saved: 0,
            received: 0,
            next_id: 0,
            in_flight: 0,
            saves: 0,
            quit_held: false,
            out: Vec::new(),
            events: Vec::new(),
            command: None,
        })
        .boxed()
    }

    fn transitions(m: &Model) -> BoxedStrategy<Step> {
        let (size, have, at, name, last) = match (&m.deciding, m.accepted.front(), &m.receiving) {
            (_, _, Some(f)) => (f.size, 0, f.at, f.name, f.id),
            (_, Some(f), None) => (f.size, f.at, 0, f.name, f.id),
            (Some(f), None, None) => (f.size, 0, 0, f.name, f.id),
            _ => (100, 0, 0, NAMES[0], m.next_id.wrapping_sub(1)),
        };
        let left = size.saturating_sub(at) as usize;
        let next = m.next_id;
        let digest = |name| offer_digest(&offer_frame(last, name, size));
        let good = In::End(last, content_hash(size), digest(name));
        let mut bad_content = content_hash(size);
        bad_content[0] ^= 1;
        let bad_content = In::End(last, bad_content, digest(name));
        // The same content under another offer: a name corrupted in flight.
        let bad_offer = In::End(last, content_hash(size), digest(b"other"));
        let id = prop_oneof![6 => Just(next), 1 => Just(next + 1), 1 => Just(last)];
        let peer = prop_oneof![
            4 => (id, 0..NAMES.len(), prop_oneof![0..=MAX_FILE, Just(MAX_FILE + 1), Just(u64::MAX)])
                .prop_map(|(id, n, size)| In::Offer { id, size, name: NAMES[n] }),
            3 => (prop_oneof![4 => Just(last), 1 => Just(next)], prop_oneof![Just(0), Just(have), 1..=size + 2])
                .prop_map(|(id, from)| In::Begin(id, from)),
            6 => prop_oneof![0..=left.min(64), Just(left), Just(left + 1)].prop_map(In::Data),
            3 => prop_oneof![3 => Just(good.clone()), 1 => Just(bad_content), 1 => Just(bad_offer)],
            1 => Just(In::Quit),
            1 => prop_oneof![
                Just(stray_saved()),
                Just(Frame::Bye),
                Just(Frame::Message(Bytes::from_static(b"hi"))),
                Just(Frame::Accept { id: 0, have: 0, prefix: [0; 32], flags: 0 }),
                Just(Frame::Window { files: 1 }),
            ]
            .prop_map(In::Unexpected),
            1 => Just(In::Garbage),
            1 => Just(In::PeerError),
        ];
        let any = prop_oneof![
            12 => peer.prop_map(Step::Peer),
            3 => prop_oneof![Just(None), (0..=size + 1).prop_map(Some)].prop_map(Step::Accept),
            1 => Just(Step::Reject),
            2 => Just(Step::Saved),
            1 => Just(Step::SaveFailed),
            2 => (0u64..6000).prop_map(|ms| Step::Advance(Duration::from_millis(ms))),
            1 => Just(Step::Eof),
        ]
        .boxed();
        // What a well-behaved peer and application would do next, so that
        // sequences reach every state (and the hostile steps hit them there).
        let offer = move |(n, size)| {
            Step::Peer(In::Offer {
                id: next,
                size,
                name: NAMES[n],
            })
        };
        let likely: BoxedStrategy<Step> = if m.closed() {
            any.clone()
        } else if m.quit_held {
            prop_oneof![4 => Just(Step::Saved), 1 => Just(Step::SaveFailed)].boxed()
        } else if m.deciding.is_some() {
            prop_oneof![
                Just(Step::Accept(None)),
                (0..=size).prop_map(|h| Step::Accept(Some(h))),
            ]
            .boxed()
        } else if m.receiving.is_some() && left > 0 {
            prop_oneof![
                6 => (1..=left.min(128)).prop_map(|n| Step::Peer(In::Data(n))),
                1 => (0..3usize, 0..=MAX_FILE).prop_map(offer),
                1 => Just(Step::Saved),
            ]
            .boxed()
        } else if m.receiving.is_some() {
            Just(Step::Peer(good)).boxed()
        } else if !m.accepted.is_empty() {
            prop_oneof![
                3 => prop_oneof![Just(0), Just(have)].prop_map(move |f| Step::Peer(In::Begin(last, f))),
                1 => (0..3usize, 0..=MAX_FILE).prop_map(offer),
            ]
            .boxed()
        } else if m.saves > 0 && m.in_flight >= WINDOW {
            prop_oneof![4 => Just(Step::Saved), 1 => Just(Step::SaveFailed)].boxed()
        } else {
            prop_oneof![
                6 => (0..3usize, 0..=MAX_FILE).prop_map(offer),
                2 => Just(Step::Saved),
                1 => Just(Step::Peer(In::Quit)),
            ]
            .boxed()
        };
        prop_oneof![3 => likely, 2 => any].boxed()
    }

    fn apply(mut m: Model, step: &Step) -> Model {
        m.out.clear();
        m.events.clear();
        m.command = None;
        match step {
            Step::Peer(frame) => {
                if !m.closed() {
                    // Only a frame dispatched restarts the idle timer: one
                    // waiting for the application's answer does not yet.
                    if !m.awaits_app() {
                        m.idle = Duration::ZERO;
                    }
                    m.pending.push_back(frame.clone());
                    m.process();
                }
            }
            Step::Accept(_) | Step::Reject | Step::Saved | Step::SaveFailed => {
                m.command = Some(m.command(step));
                m.process();
            }
            Step::Advance(d) => {
                if !m.closed() {
                    m.idle += *d;
                    if m.idle >= IDLE {
                        m.fail(Some(ErrorCode::Timeout));
                    }
                }
            }
            Step::Eof => m.fail(Some(ErrorCode::Protocol)),
        }
        if !m.out.is_empty() {
            // Sending counts as activity.
            m.idle = Duration::ZERO;
        }
        m
    }
}

struct Sut {
    rx: Receiver,
    now: Instant,
    /// What the receiver sent, decoded, and how it ended.
    wire: Wire,
    /// The request of the last `Offer`, and of every `Verified` not yet
    /// answered (oldest first).
    offer: Option<OfferRequest>,
    saves: VecDeque<SaveRequest>,
}

impl Sut {
    /// Drains the receiver: the frames it sent and its events, keeping the
    /// requests the events carry.
    fn drain(&mut self) -> (Vec<Frame>, Vec<Ev>) {
        let (frames, events) = self.wire.drain(&mut self.rx);
        let events = events.into_iter().map(|e| self.keep(e)).collect();
        (frames, events)
    }

    fn keep(&mut self, e: ReceiverEvent) -> Ev {
        match e {
            ReceiverEvent::Offer { spec, request, .. } => {
                self.offer = Some(request);
                assert_eq!(spec.meta.mode, 0o600);
                assert_eq!((spec.meta.mtime.secs, spec.meta.mtime.nanos), (7, 8));
                Ev::Offer(find(spec.path.file_name()), spec.size)
            }
            ReceiverEvent::Verified { request, .. } => {
                self.saves.push_back(request);
                Ev::Verified
            }
            other => to_ev(other),
        }
    }
}

/// The raw name a safe name was made of.
fn find(n: &SafeName) -> &'static [u8] {
    NAMES
        .iter()
        .find(|raw| **raw == n.as_str().as_bytes())
        .expect("a known name")
}

fn to_out(f: Frame) -> Out {
    match f {
        Frame::Accept { have, prefix, .. } => Out::Accept { have, prefix },
        Frame::Reject { reason, .. } => Out::Reject(reason),
        Frame::Saved { .. } => Out::Saved,
        Frame::Error { code, .. } => Out::Error(code),
        other => panic!("a receiver never sends {other:?}"),
    }
}

/// The events that carry no request.
fn to_ev(e: ReceiverEvent) -> Ev {
    match e {
        ReceiverEvent::Offer { .. } | ReceiverEvent::Verified { .. } => {
            unreachable!("kept by Sut::keep")
        }
        ReceiverEvent::Refused { reason, name, .. } => {
            assert!(!name.chars().any(char::is_control), "unsanitised {name:?}");
            Ev::Refused(reason)
        }
        ReceiverEvent::Start { from, .. } => Ev::Start(from),
        ReceiverEvent::Write { offset, data } => {
            assert!(data.iter().all(|&b| b == FILL), "data changed");
            Ev::Write(offset, data.len())
        }
        ReceiverEvent::Discard { .. } => Ev::Discard,
        ReceiverEvent::Finished => Ev::Finished,
        ReceiverEvent::Flush => Ev::Flush,
        other => panic!("a one-file-at-a-time sender never causes {other:?}"),
    }
}

struct ReceiverTest;

impl StateMachineTest for ReceiverTest {
    type SystemUnderTest = Sut;
    type Reference = RefMachine;

    fn init_test(_: &Model) -> Sut {
        let now = Instant::now();
        let mut rx = Receiver::new(ReceiverRole::new(transfer()), config(), now);
        rx.handle_input(now, &Protocol::File.preamble()).unwrap();
        let mut sut = Sut {
            rx,
            now,
            wire: Wire::new(Protocol::File),
            offer: None,
            saves: VecDeque::new(),
        };
        let window = Frame::Window { files: WINDOW };
        assert_eq!(sut.drain(), (vec![window], vec![]));
        sut
    }

    fn apply(mut sut: Sut, m: &Model, step: Step) -> Sut {
        let result = match &step {
            Step::Peer(frame) => {
                let wire = frame.wire();
                assert!(wire.len() <= sut.rx.input_room());
                let (a, b) = wire.split_at(wire.len() / 2);
                for piece in [a, b] {
                    let _ = sut.rx.handle_input(sut.now, piece);
                }
                None
            }
            Step::Accept(have) => {
                let resume = match have {
                    None => Resume::Fresh,
                    Some(have) => Resume::From {
                        have: *have,
                        hasher: prefix_hasher(*have),
                    },
                };
                sut.offer.take().map(|r| sut.rx.accept(r, resume))
            }
            Step::Reject => {
                (sut.offer.take()).map(|r| sut.rx.reject(r, RejectReason::Exists, "exists"))
            }
            Step::Saved => sut.saves.pop_front().map(|r| sut.rx.saved(r)),
            Step::SaveFailed => (sut.saves.pop_front())
                .map(|r| sut.rx.save_failed(r, RejectReason::Disk, "disk full")),
            Step::Advance(d) => {
                sut.now += *d;
                sut.rx.handle_timeout(sut.now);
                None
            }
            Step::Eof => {
                sut.rx.handle_eof(sut.now);
                None
            }
        };
        if let (Some(r), Some(want)) = (&result, &m.command) {
            let ok = match (r, want) {
                (Ok(()), Ok(())) => true,
                (Err(Error::Local(UsageError::Closed)), Err("closed")) => true,
                (Err(e), Err("sticky")) => Some(e) == sut.rx.error(),
                (Err(Error::Local(UsageError::BadResume { .. })), Err("bad resume")) => true,
                _ => false,
            };
            assert!(ok, "{step:?}: receiver said {r:?}, the model {want:?}");
        }
        if result.is_none() {
            // No request was owed, so no answer could be written: the model
            // must agree that none was possible.
            assert!(
                m.command.as_ref().is_none_or(|want| want.is_err()),
                "{step:?}: the model took an answer the receiver never asked for"
            );
        }
        let (frames, events) = sut.drain();
        let frames: Vec<Out> = frames.into_iter().map(to_out).collect();
        assert_eq!(frames, m.out, "frames after {step:?}");
        assert_eq!(events, m.events, "events after {step:?}");
        let role = sut.rx.role();
        let state = match &m.st {
            St::Failed(_) => role.state_name(),
            St::Done => "finished",
            St::Open if m.deciding.is_some() => "deciding on an offer",
            St::Open if m.quit_held => "saving the last files",
            St::Open if m.receiving.is_some() => "receiving file data",
            St::Open if !m.accepted.is_empty() => "waiting for Begin",
            St::Open => "waiting for an offer",
        };
        assert_eq!(role.state_name(), state, "state after {step:?}");
        let current = m.receiving.as_ref().map(|f| f.id);
        if !matches!(m.st, St::Failed(_)) {
            assert_eq!(role.current(), current, "current file");
            assert_eq!(role.in_flight(), m.in_flight, "entries in flight");
        }
        assert_eq!(role.files_saved(), m.saved);
        assert_eq!(role.bytes_received(), m.received);
        // A receiver that failed lingers for the sender's EOF before its
        // `Done`: until then its sticky error says how it ended.
        let ended = (sut.wire.done.clone()).or_else(|| sut.rx.error().cloned().map(Err));
        match (&m.st, &ended) {
            (St::Done, Some(Ok(()))) => {}
            (St::Failed(None), Some(Err(Error::PeerFailed { .. }))) => {}
            (St::Failed(Some(code)), Some(Err(e))) => assert_eq!(e.code(), *code, "{e}"),
            (St::Open, None) => {}
            (st, done) => panic!("model {st:?}, receiver {done:?}"),
        }
        sut
    }

    fn check_invariants(sut: &Sut, _: &Model) {
        assert!(sut.rx.input_room() <= config().recv_buffer);
    }
}

prop_state_machine! {
    #![proptest_config(common::persisted("proptest-regressions/receiver_model.txt"))]
    #[test]
    fn receiver_matches_its_reference_model_after_every_step(sequential 1..60 => ReceiverTest);
}

/// A receiver whose app was just offered `f` (`size` bytes) as entry 0.
fn offered(size: u64) -> (Receiver, Wire, Instant, OfferRequest) {
    let now = Instant::now();
    let mut rx = Receiver::new(ReceiverRole::new(transfer()), config(), now);
    rx.handle_input(now, &Protocol::File.preamble()).unwrap();
    let mut wire = Wire::new(Protocol::File);
    rx.handle_input(now, &offer_frame(0, b"f", size).encode_to_vec())
        .unwrap();
    let (_, events) = wire.drain(&mut rx);
    (rx, wire, now, common::drain::offer_request(events))
}

/// A receiver that offered `f` (`MAX_FILE` bytes) to its app and accepted
/// it as a complete file here, which a different one may replace.
fn accepted_complete() -> (Receiver, Wire, Instant) {
    let (mut rx, wire, now, request) = offered(MAX_FILE);
    let resume = Resume::Complete {
        hasher: prefix_hasher(MAX_FILE),
        replace: true,
    };
    rx.accept(request, resume).unwrap();
    (rx, wire, now)
}

#[test]
fn a_complete_file_here_begins_at_0_or_at_its_size_and_at_no_other_offset() {
    for from in [1, MAX_FILE / 2, MAX_FILE - 1, MAX_FILE + 1] {
        let (mut rx, mut wire, now) = accepted_complete();
        let _ = rx.handle_input(now, &Frame::Begin { id: 0, from }.encode_to_vec());
        let (_, events) = wire.drain(&mut rx);
        assert!(
            !events
                .iter()
                .any(|e| matches!(e, ReceiverEvent::Start { .. })),
            "from {from}: {events:?}"
        );
        let ended = wire.done.clone().or_else(|| rx.error().cloned().map(Err));
        assert!(
            matches!(
                ended,
                Some(Err(Error::Remote(ProtocolError::BadOffset { offset, .. }))) if offset == from
            ),
            "from {from}: {ended:?}"
        );
    }
}

#[test]
fn a_complete_file_here_sent_again_from_0_is_verified_as_new_content_not_up_to_date() {
    let (mut rx, mut wire, now) = accepted_complete();
    let new = vec![FILL ^ 0xff; MAX_FILE as usize];
    let hash = *blake3::hash(&new).as_bytes();
    let offer = offer_digest(&offer_frame(0, b"f", MAX_FILE));
    for f in [
        Frame::Begin { id: 0, from: 0 },
        Frame::Data(Bytes::from(new)),
        Frame::End { id: 0, hash, offer },
    ] {
        rx.handle_input(now, &f.encode_to_vec()).unwrap();
    }
    let (_, events) = wire.drain(&mut rx);
    assert_eq!(rx.error(), None);
    assert!(
        events.iter().any(|e| matches!(
            e,
            ReceiverEvent::Verified { id: 0, hash: h, up_to_date: false, .. } if *h == hash
        )),
        "{events:?}"
    );
}

#[test]
fn a_skip_naming_neither_the_file_begun_nor_the_next_accepted_one_fails_the_session() {
    for begun in [false, true] {
        let (mut rx, mut wire, now, request) = offered(10);
        rx.accept(request, Resume::Fresh).unwrap();
        if begun {
            rx.handle_input(now, &Frame::Begin { id: 0, from: 0 }.encode_to_vec())
                .unwrap();
        }
        let _ = rx.handle_input(now, &Frame::Skip { id: 1 }.encode_to_vec());
        let (_, events) = wire.drain(&mut rx);
        assert!(
            !events
                .iter()
                .any(|e| matches!(e, ReceiverEvent::Skipped { .. })),
            "begun {begun}: {events:?}"
        );
        assert_eq!(
            rx.error(),
            Some(&Error::Remote(ProtocolError::BadSkip { id: 1 })),
            "begun {begun}"
        );
    }
}

#[test]
fn a_skip_before_begin_is_kept_and_a_refusal_only_for_a_complete_file_that_may_not_be_replaced() {
    let cases = [
        (Resume::Fresh, false),
        (
            Resume::From {
                have: 4,
                hasher: prefix_hasher(4),
            },
            false,
        ),
        (
            Resume::Complete {
                hasher: prefix_hasher(10),
                replace: true,
            },
            false,
        ),
        (
            Resume::Complete {
                hasher: prefix_hasher(10),
                replace: false,
            },
            true,
        ),
    ];
    for (resume, kept) in cases {
        let (mut rx, mut wire, now, request) = offered(10);
        rx.accept(request, resume.clone()).unwrap();
        rx.handle_input(now, &Frame::Skip { id: 0 }.encode_to_vec())
            .unwrap();
        let (_, events) = wire.drain(&mut rx);
        assert_eq!(rx.error(), None, "{resume:?}");
        assert_eq!(
            events,
            vec![ReceiverEvent::Skipped { id: 0, kept }],
            "{resume:?}"
        );
        assert_eq!(rx.role().refusals(), u64::from(kept), "{resume:?}");
        assert_eq!(rx.role().in_flight(), 0, "{resume:?}");
    }
}

#[test]
fn an_accept_of_a_complete_file_carries_its_flags_and_needs_the_whole_hash() {
    use echoxfer::codec::{ACCEPT_COMPLETE, ACCEPT_REPLACE};
    let cases = [
        (
            prefix_hasher(10),
            true,
            Some(ACCEPT_COMPLETE | ACCEPT_REPLACE),
        ),
        (prefix_hasher(10), false, Some(ACCEPT_COMPLETE)),
        // A hasher that has not hashed the whole offered size.
        (prefix_hasher(9), true, None),
    ];
    for (hasher, replace, flags) in cases {
        let (mut rx, mut wire, _, request) = offered(10);
        let answer = rx.accept(request, Resume::Complete { hasher, replace });
        let (sent, _) = wire.drain(&mut rx);
        let accepts: Vec<u8> = sent
            .iter()
            .filter_map(|f| match f {
                Frame::Accept {
                    flags, have: 10, ..
                } => Some(*flags),
                _ => None,
            })
            .collect();
        match flags {
            Some(flags) => {
                assert_eq!(answer, Ok(()), "replace {replace}");
                assert_eq!(accepts, vec![flags], "replace {replace}");
            }
            None => {
                assert_eq!(
                    answer,
                    Err(Error::Local(UsageError::BadResume { have: 9, size: 10 }))
                );
                assert!(accepts.is_empty(), "{sent:?}");
            }
        }
    }
}

#[test]
fn an_accepted_directory_is_saved_at_once_with_the_hash_of_nothing_and_counts_as_saved() {
    let now = Instant::now();
    let mut rx = Receiver::new(ReceiverRole::new(transfer()), config(), now);
    rx.handle_input(now, &Protocol::File.preamble()).unwrap();
    let mut wire = Wire::new(Protocol::File);
    let dir = Frame::Offer {
        id: 0,
        kind: echoxfer::xfer::EntryKind::Directory.to_byte(),
        mode: 0o755,
        mtime_secs: 7,
        mtime_nanos: 8,
        size: 0,
        path: encode_raw_path(&[b"d"]),
    };
    rx.handle_input(now, &dir.encode_to_vec()).unwrap();
    let (_, events) = wire.drain(&mut rx);
    let request = common::drain::offer_request(events);
    assert_eq!(rx.role().files_saved(), 0);
    rx.accept(request, Resume::Fresh).unwrap();
    let (sent, _) = wire.drain(&mut rx);
    let nothing = *blake3::Hasher::new().finalize().as_bytes();
    let saved = Frame::Saved {
        id: 0,
        flags: 0,
        hash: nothing,
    };
    assert_eq!(sent, vec![saved]);
    assert_eq!(rx.role().files_saved(), 1);
}

#[test]
fn an_up_to_date_file_whose_metadata_was_brought_in_line_is_confirmed_with_the_metadata_flag() {
    let (mut rx, mut wire, now) = accepted_complete();
    let hash = content_hash(MAX_FILE);
    let offer = offer_digest(&offer_frame(0, b"f", MAX_FILE));
    for f in [
        Frame::Begin {
            id: 0,
            from: MAX_FILE,
        },
        Frame::End { id: 0, hash, offer },
    ] {
        rx.handle_input(now, &f.encode_to_vec()).unwrap();
    }
    let (_, events) = wire.drain(&mut rx);
    assert!(
        events.iter().any(|e| matches!(
            e,
            ReceiverEvent::Verified {
                up_to_date: true,
                ..
            }
        )),
        "{events:?}"
    );
    rx.metadata_updated(common::drain::save_request(events))
        .unwrap();
    let (sent, _) = wire.drain(&mut rx);
    let saved = Frame::Saved {
        id: 0,
        flags: echoxfer::codec::SAVED_METADATA,
        hash,
    };
    assert_eq!(sent, vec![saved]);
    assert_eq!(rx.role().files_saved(), 1);
}
