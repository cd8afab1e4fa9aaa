//! The file receiver against a reference model (proptest-state-machine):
//! random sequences of offers (valid, refused by name, too large), `Begin`
//! with good and bad offsets, `Data` within and beyond the size, `End` with
//! good and bad hashes, `Quit`, garbage and peer errors, EOF, clock jumps
//! and the application's answers (accept fresh or resumed, reject, saved,
//! save failed). After every step the receiver's state, the frames it sent
//! and the events it emitted are checked against the model.
//!
//! File content is the byte `FILL` repeated, so a hash and a resume prefix
//! depend only on a length.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use echoxfer::codec::{Frame, Protocol, RejectReason};
use echoxfer::session::Role;
use echoxfer::xfer::offer_digest;
use echoxfer::xfer::{
    OfferRequest, Receiver, ReceiverEvent, ReceiverRole, Resume, SafeName, SaveRequest,
};
use echoxfer::{Error, ErrorCode, Machine, StreamMachine, UsageError};
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

fn transfer() -> TransferConfig {
    TransferConfig {
        max_file_size: MAX_FILE,
        max_name_len: 16,
        ..TransferConfig::default()
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
        size: u64,
        name: &'static [u8],
    },
    Begin(u64),
    Data(usize),
    /// Content hash and offer digest.
    End([u8; 32], [u8; 32]),
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
            In::Offer { size, name } => Frame::Offer {
                size: *size,
                name: Bytes::from_static(name),
            },
            In::Begin(from) => Frame::Begin { from: *from },
            In::Data(n) => Frame::Data(Bytes::from(vec![FILL; *n])),
            In::End(hash, offer) => Frame::End {
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
    Idle,
    Deciding {
        name: &'static [u8],
        size: u64,
    },
    Accepted {
        name: &'static [u8],
        size: u64,
        have: u64,
    },
    Receiving {
        name: &'static [u8],
        size: u64,
        at: u64,
    },
    Saving {
        name: &'static [u8],
    },
    Done,
    /// Failed; the code of the `Error` frame sent (`None`: the peer failed).
    Failed(Option<ErrorCode>),
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
    Start(&'static [u8], u64),
    Write(u64, usize),
    Verified(&'static [u8]),
    Discard(&'static [u8]),
    Finished,
}

#[derive(Debug, Clone)]
struct Model {
    st: St,
    /// Frames buffered while the application decides or saves.
    pending: VecDeque<In>,
    idle: Duration,
    saved: u64,
    received: u64,
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
        matches!(self.st, St::Deciding { .. } | St::Saving { .. })
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
        match (self.st.clone(), frame) {
            (_, In::Garbage) => self.fail(protocol),
            (_, In::PeerError) => self.fail(None),
            (St::Idle, In::Offer { size, name }) => {
                let valid = SafeName::new(name, transfer().max_name_len).is_ok();
                if !valid {
                    self.out.push(Out::Reject(RejectReason::NameRefused));
                    self.events.push(Ev::Refused(RejectReason::NameRefused));
                } else if size > MAX_FILE {
                    self.out.push(Out::Reject(RejectReason::TooLarge));
                    self.events.push(Ev::Refused(RejectReason::TooLarge));
                } else {
                    self.events.push(Ev::Offer(name, size));
                    self.st = St::Deciding { name, size };
                }
            }
            (St::Idle, In::Quit) => {
                self.events.push(Ev::Finished);
                self.st = St::Done;
            }
            (St::Accepted { name, size, have }, In::Begin(from)) if from == 0 || from == have => {
                self.events.push(Ev::Start(name, from));
                self.st = St::Receiving {
                    name,
                    size,
                    at: from,
                };
            }
            (St::Receiving { name, size, at }, In::Data(n)) if at + n as u64 <= size => {
                if n > 0 {
                    self.events.push(Ev::Write(at, n));
                    self.received += n as u64;
                }
                self.st = St::Receiving {
                    name,
                    size,
                    at: at + n as u64,
                };
            }
            (St::Receiving { name, size, at }, In::End(hash, offer)) if at == size => {
                if hash == content_hash(size) && offer == offer_digest(size, name) {
                    self.events.push(Ev::Verified(name));
                    self.st = St::Saving { name };
                } else {
                    self.events.push(Ev::Discard(name));
                    self.fail(Some(ErrorCode::HashMismatch));
                }
            }
            _ => self.fail(protocol),
        }
    }

    /// A command on the application's side: `Err` names the local error.
    fn command(&mut self, step: &Step) -> Result<(), &'static str> {
        match self.st {
            St::Done => return Err("closed"),
            St::Failed(_) => return Err("sticky"),
            _ => {}
        }
        match (self.st.clone(), step) {
            (St::Deciding { name, size }, Step::Accept(have)) => {
                let have = have.unwrap_or(0);
                if have > size {
                    // The request is spent on an answer that cannot be used.
                    self.fail(Some(ErrorCode::Internal));
                    return Err("bad resume");
                }
                self.out.push(Out::Accept {
                    have,
                    prefix: content_hash(have),
                });
                self.st = St::Accepted { name, size, have };
            }
            (St::Deciding { .. }, Step::Reject) => {
                self.out.push(Out::Reject(RejectReason::Exists));
                self.st = St::Idle;
            }
            (St::Saving { .. }, Step::Saved) => {
                self.out.push(Out::Saved);
                self.saved += 1;
                self.st = St::Idle;
            }
            (St::Saving { .. }, Step::SaveFailed) => {
                self.out.push(Out::Reject(RejectReason::Disk));
                self.st = St::Idle;
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
            st: St::Idle,
            pending: VecDeque::new(),
            idle: Duration::ZERO,
            saved: 0,
            received: 0,
            out: Vec::new(),
            events: Vec::new(),
            command: None,
        })
        .boxed()
    }

    fn transitions(m: &Model) -> BoxedStrategy<Step> {
        let (size, have, at, name) = match m.st {
            St::Deciding { size, name } => (size, 0, 0, name),
            St::Accepted { size, have, name } => (size, have, 0, name),
            St::Receiving { size, at, name } => (size, 0, at, name),
            _ => (100, 0, 0, NAMES[0]),
        };
        let left = size.saturating_sub(at) as usize;
        let good = In::End(content_hash(size), offer_digest(size, name));
        let mut bad_content = content_hash(size);
        bad_content[0] ^= 1;
        let bad_content = In::End(bad_content, offer_digest(size, name));
        // The same content under another offer: a name corrupted in flight.
        let bad_offer = In::End(content_hash(size), offer_digest(size, b"other"));
        let peer = prop_oneof![
            4 => (0..NAMES.len(), prop_oneof![0..=MAX_FILE, Just(MAX_FILE + 1), Just(u64::MAX)])
                .prop_map(|(n, size)| In::Offer { size, name: NAMES[n] }),
            3 => prop_oneof![Just(0), Just(have), 1..=size + 2].prop_map(In::Begin),
            6 => prop_oneof![0..=left.min(64), Just(left), Just(left + 1)].prop_map(In::Data),
            3 => prop_oneof![3 => Just(good.clone()), 1 => Just(bad_content), 1 => Just(bad_offer)],
            1 => Just(In::Quit),
            1 => prop_oneof![
                Just(Frame::Saved),
                Just(Frame::Bye),
                Just(Frame::Message(Bytes::from_static(b"hi"))),
                Just(Frame::Accept { have: 0, prefix: [0; 32] }),
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
        let likely: BoxedStrategy<Step> = match m.st {
            St::Idle => prop_oneof![
                6 => (0..3usize, 0..=MAX_FILE)
                    .prop_map(|(n, size)| Step::Peer(In::Offer { size, name: NAMES[n] })),
                1 => Just(Step::Peer(In::Quit)),
            ]
            .boxed(),
            St::Deciding { size, .. } => prop_oneof![
                Just(Step::Accept(None)),
                (0..=size).prop_map(|h| Step::Accept(Some(h))),
            ]
            .boxed(),
            St::Accepted { have, .. } => prop_oneof![Just(0), Just(have)]
                .prop_map(|f| Step::Peer(In::Begin(f)))
                .boxed(),
            St::Receiving { .. } if left > 0 => (1..=left.min(128))
                .prop_map(|n| Step::Peer(In::Data(n)))
                .boxed(),
            St::Receiving { .. } => Just(Step::Peer(good)).boxed(),
            St::Saving { .. } => {
                prop_oneof![4 => Just(Step::Saved), 1 => Just(Step::SaveFailed)].boxed()
            }
            St::Done | St::Failed(_) => any.clone(),
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
    /// The requests of the last `Offer` and `Verified`, until answered.
    offer: Option<OfferRequest>,
    save: Option<SaveRequest>,
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
            ReceiverEvent::Offer {
                name,
                size,
                request,
            } => {
                self.offer = Some(request);
                Ev::Offer(find(&name), size)
            }
            ReceiverEvent::Verified { name, request, .. } => {
                self.save = Some(request);
                Ev::Verified(find(&name))
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

fn safe(raw: &'static [u8]) -> SafeName {
    SafeName::new(raw, 16).expect("a valid name")
}

fn to_out(f: Frame) -> Out {
    match f {
        Frame::Accept { have, prefix } => Out::Accept { have, prefix },
        Frame::Reject { reason, .. } => Out::Reject(reason),
        Frame::Saved => Out::Saved,
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
        ReceiverEvent::Start { name, from } => Ev::Start(find(&name), from),
        ReceiverEvent::Write { offset, data } => {
            assert!(data.iter().all(|&b| b == FILL), "data changed");
            Ev::Write(offset, data.len())
        }
        ReceiverEvent::Discard { name } => Ev::Discard(find(&name)),
        ReceiverEvent::Finished => Ev::Finished,
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
            save: None,
        };
        assert_eq!(sut.drain(), (vec![], vec![]));
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
            Step::Saved => sut.save.take().map(|r| sut.rx.saved(r)),
            Step::SaveFailed => {
                (sut.save.take()).map(|r| sut.rx.save_failed(r, RejectReason::Disk, "disk full"))
            }
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
            St::Idle => "waiting for an offer",
            St::Deciding { .. } => "deciding on an offer",
            St::Accepted { .. } => "waiting for Begin",
            St::Receiving { .. } => "receiving file data",
            St::Saving { .. } => "saving a file",
            St::Done => "finished",
            St::Failed(_) => role.state_name(),
        };
        assert_eq!(role.state_name(), state, "state after {step:?}");
        let current = match &m.st {
            St::Deciding { name, .. }
            | St::Accepted { name, .. }
            | St::Receiving { name, .. }
            | St::Saving { name } => Some(safe(name)),
            _ => None,
        };
        if !matches!(m.st, St::Failed(_)) {
            assert_eq!(role.current(), current.as_ref(), "current file");
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
            (st, None) if !matches!(st, St::Done | St::Failed(_)) => {}
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
