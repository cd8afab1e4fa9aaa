//! The echo server against a reference model (proptest-state-machine):
//! random sequences of messages, exits, garbage, clock jumps and EOFs, with
//! the server's decoded output checked against the model after every step.

use std::time::{Duration, Instant};

use bytes::Bytes;
use echoxfer::codec::{Frame, Protocol};
use echoxfer::echo::{Server, ServerRole};
use echoxfer::{EchoConfig, ErrorCode, Machine, SessionLimits, StreamMachine};
use proptest::prelude::*;
use proptest_state_machine::{prop_state_machine, ReferenceStateMachine, StateMachineTest};

mod common;
use common::drain::Wire;

const MAX_MESSAGE: usize = 64;
const IDLE: Duration = Duration::from_secs(10);

fn config() -> SessionLimits {
    SessionLimits {
        idle_timeout: IDLE,
        ..SessionLimits::default()
    }
}

fn echo() -> EchoConfig {
    EchoConfig {
        max_message: MAX_MESSAGE,
        ..EchoConfig::default()
    }
}

#[derive(Debug, Clone)]
enum Step {
    Message(Vec<u8>),
    Exit,
    /// A frame a client must never send (a server-only frame).
    Garbage,
    Advance(Duration),
    Eof,
}

#[derive(Debug, Clone, PartialEq)]
enum Phase {
    Open { idle: Duration },
    Closed,
    Failed,
}

struct Model;

impl ReferenceStateMachine for Model {
    type State = Phase;
    type Transition = Step;

    fn init_state() -> BoxedStrategy<Phase> {
        Just(Phase::Open {
            idle: Duration::ZERO,
        })
        .boxed()
    }

    fn transitions(_: &Phase) -> BoxedStrategy<Step> {
        prop_oneof![
            6 => proptest::collection::vec(any::<u8>(), 0..MAX_MESSAGE + 8).prop_map(Step::Message),
            1 => Just(Step::Message(b"exit".to_vec())),
            1 => Just(Step::Exit),
            1 => Just(Step::Garbage),
            2 => (0u64..6000).prop_map(|ms| Step::Advance(Duration::from_millis(ms))),
            1 => Just(Step::Eof),
        ]
        .boxed()
    }

    fn apply(phase: Phase, step: &Step) -> Phase {
        let Phase::Open { idle } = phase else {
            return phase;
        };
        match step {
            Step::Message(m) if m.len() <= MAX_MESSAGE => Phase::Open {
                idle: Duration::ZERO,
            },
            Step::Message(_) | Step::Garbage | Step::Eof => Phase::Failed,
            Step::Exit => Phase::Closed,
            Step::Advance(d) if idle + *d >= IDLE => Phase::Failed,
            Step::Advance(d) => Phase::Open { idle: idle + *d },
        }
    }
}

struct Sut {
    server: Server,
    now: Instant,
    /// What the server sent, decoded, and how it ended.
    wire: Wire,
    /// The model's phase before the step being applied (the runner hands
    /// `apply` the phase after it).
    phase: Phase,
}

impl Sut {
    /// Drains the server and decodes what it sent.
    fn drain(&mut self) -> Vec<Frame> {
        self.wire.drain(&mut self.server).0
    }
}

struct EchoServerTest;

impl StateMachineTest for EchoServerTest {
    type SystemUnderTest = Sut;
    type Reference = Model;

    fn init_test(_: &Phase) -> Sut {
        let now = Instant::now();
        let mut server = Server::new(ServerRole::new("hi", echo()), config(), now);
        server
            .handle_input(now, &Protocol::Echo.preamble())
            .unwrap();
        let mut sut = Sut {
            server,
            now,
            wire: Wire::new(Protocol::Echo),
            phase: Phase::Open {
                idle: Duration::ZERO,
            },
        };
        assert_eq!(sut.drain(), [Frame::Greeting(Bytes::from_static(b"hi"))]);
        sut
    }

    fn apply(mut sut: Sut, after: &Phase, step: Step) -> Sut {
        let before = &sut.phase.clone();
        assert_eq!(&Model::apply(before.clone(), &step), after);
        match &step {
            Step::Message(m) => feed(&mut sut, Frame::Message(Bytes::from(m.clone()))),
            Step::Exit => feed(&mut sut, Frame::Exit),
            Step::Garbage => feed(&mut sut, Frame::Bye),
            Step::Advance(d) => {
                sut.now += *d;
                sut.server.handle_timeout(sut.now);
            }
            Step::Eof => sut.server.handle_eof(sut.now),
        }
        let frames = sut.drain();
        let expected: Vec<Frame> = match (before, after, &step) {
            (Phase::Open { .. }, Phase::Open { .. }, Step::Message(m)) => {
                vec![Frame::Message(Bytes::from(m.clone()))]
            }
            (Phase::Open { .. }, Phase::Closed, _) => vec![Frame::Bye],
            (Phase::Open { .. }, Phase::Failed, _) => vec![error_frame(&frames)],
            _ => vec![],
        };
        assert_eq!(frames, expected, "step {step:?} from {before:?}");
        // A server that failed lingers for the client's EOF before its
        // `Done`: until then its sticky error says how it ended.
        let ended = (sut.wire.done.clone()).or_else(|| sut.server.error().cloned().map(Err));
        match (after, &ended) {
            (Phase::Open { .. }, None)
            | (Phase::Closed, Some(Ok(())))
            | (Phase::Failed, Some(Err(_))) => {}
            (phase, done) => panic!("model says {phase:?}, server says {done:?}"),
        }
        if let (Phase::Open { .. }, Phase::Failed, Some(Err(e))) = (before, after, &ended) {
            let code = match &step {
                Step::Advance(_) => ErrorCode::Timeout,
                _ => ErrorCode::Protocol,
            };
            assert_eq!(e.code(), code, "{e}");
        }
        sut.phase = after.clone();
        sut
    }

    fn check_invariants(sut: &Sut, _: &Phase) {
        assert!(sut.server.input_room() <= config().recv_buffer);
    }
}

/// The error frame the server sent, if any (its text is free-form).
fn error_frame(frames: &[Frame]) -> Frame {
    match frames.first() {
        Some(f @ Frame::Error { .. }) => f.clone(),
        _ => Frame::Error {
            code: ErrorCode::Unknown(0),
            message: Bytes::from_static(b"<missing Error frame>"),
        },
    }
}

/// Feeds a frame in two pieces, so every step also crosses a cut.
fn feed(sut: &mut Sut, frame: Frame) {
    let wire = frame.encode_to_vec();
    let (a, b) = wire.split_at(wire.len() / 2);
    for piece in [a, b] {
        let _ = sut.server.handle_input(sut.now, piece);
    }
}

prop_state_machine! {
    #![proptest_config(common::persisted("proptest-regressions/echo_model.txt"))]
    #[test]
    fn echo_server_matches_its_reference_model_after_every_step(sequential 1..40 => EchoServerTest);
}
