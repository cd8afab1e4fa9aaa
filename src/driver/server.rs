//! Serving, written once and sans-IO: [`ServeCore`] holds a server's policy
//! (who is let in, how failing accepts are waited out, how the server stops,
//! how each session is counted), and both drivers' `serve` are thin shells
//! around it that only accept, spawn, wait and cut.
//!
//! # Why a core and not a runtime trait
//!
//! quinn writes one async endpoint over a `Runtime` trait. Here the
//! blocking `serve` is synchronous and the tokio one is `async`; one generic
//! `serve` over a trait would force one of them into the other's shape (the
//! blocking server onto an executor, or the tokio one behind a blocking
//! facade). The stream loop already solved the same problem with a sans-IO
//! core ([`super::stream`]); serving follows it: the decisions are plain
//! values fed the time, so they are unit-tested with a fake clock, and each
//! shell keeps the waiting its runtime does best (a condvar and threads, or
//! `select!` over a `JoinSet`).
//!
//! # Contract
//!
//! While serving, a shell accepts only while [`has_room`](ServeCore::has_room)
//! (else it waits for a session to end), and reports every accept:
//! [`accepted`](ServeCore::accepted) says whether to start a session (with
//! its id) or close the connection at once;
//! [`accept_failed`](ServeCore::accept_failed) says how long to pause. Every
//! session that was started is reported once when it ends, with
//! [`ended`](ServeCore::ended).
//!
//! To stop, the shell stops accepting, drops its listener, calls
//! [`stop`](ServeCore::stop) with the grace, then does what
//! [`stop_step`](ServeCore::stop_step) says until it says `Done`:
//!
//! | `StopStep`   | the shell does                                                     |
//! |--------------|--------------------------------------------------------------------|
//! | `Wait`       | waits until a session ends or `until` (or the shutdown turns urgent, if `or_urgent`) |
//! | `AbortAll`   | requests the sessions' [`Abort`](super::Abort) with [`SHUTDOWN_REASON`](super::shutdown::SHUTDOWN_REASON) and wakes blocked reads |
//! | `Cut`        | cuts every connection still open                                   |
//! | `Done`       | returns the report                                                 |
//!
//! The sequence: up to the grace for sessions to end on their own (less if
//! the shutdown turns urgent), then abort all, then up to
//! [`ABORT_WAIT`] for them to tell their peers and end, then cut what still
//! runs (counted `unfinished`) and wait up to [`ABORT_WAIT`] more for it to go.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::listen::{source_of, AcceptBackoff, Limits, Refusals};
use super::penalty::Penalties;
use super::shutdown::{ServeReport, ABORT_WAIT};
use crate::error::RefusalReason;
use crate::secure::{refusal_notice, REFUSAL_LEN};

/// A session the core let in, until it is reported ended.
pub(crate) type SessionId = u64;

/// What to do with an accepted connection.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Start a session; report its end with this id.
    Start(SessionId),
    /// Close it at once, without a byte: its source runs its cap of
    /// sessions (counted).
    Refuse,
    /// Send it this refusal notice and close it: its source is refused for
    /// a while after failed guesses at the code (counted).
    Penalized([u8; REFUSAL_LEN]),
    /// Send it this refusal notice and close it: its source runs its cap of
    /// sessions, and the server sends notices (`Limits::notify_at_cap`; counted).
    AtCap([u8; REFUSAL_LEN]),
}

impl Admit {
    /// What a refused connection is sent before it is closed (nothing for
    /// one beyond the per-source cap).
    pub(crate) fn notice(&self) -> &[u8] {
        match self {
            Admit::Penalized(notice) | Admit::AtCap(notice) => notice,
            Admit::Start(_) | Admit::Refuse => &[],
        }
    }
}

/// What a stopping shell does next.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum StopStep {
    /// Wait until a session ends or `until`; if `or_urgent`, a second
    /// trigger of the shutdown also ends the wait.
    Wait {
        /// When to ask again even if nothing happened.
        until: Instant,
        /// Whether the shutdown turning urgent ends the wait.
        or_urgent: bool,
    },
    /// Abort every running session (telling each peer why).
    AbortAll,
    /// Cut every connection still open.
    Cut,
    /// Stopped: how every session ended.
    Done(ServeReport),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Serving,
    Grace { until: Instant },
    Aborting { until: Instant },
    Cutting { until: Instant },
    Done,
}

/// A server's policy, sans-IO (see the [module docs](self)).
#[derive(Debug)]
pub(crate) struct ServeCore {
    limits: Limits,
    /// Running sessions, with the source each is counted against.
    sessions: HashMap<SessionId, IpAddr>,
    /// Running sessions per source; holds only sources with some.
    per_source: HashMap<IpAddr, usize>,
    last_id: SessionId,
    backoff: AcceptBackoff,
    refusals: Refusals,
    /// Sources refused for failed guesses, and the refusals they cost.
    penalties: Penalties,
    penalized: Refusals,
    report: ServeReport,
    phase: Phase,
}

impl ServeCore {
    /// A core that lets in at most `limits` sessions at once.
    pub(crate) fn new(limits: Limits) -> ServeCore {
        ServeCore {
            limits,
            sessions: HashMap::new(),
            per_source: HashMap::new(),
            last_id: 0,
            backoff: AcceptBackoff::default(),
            refusals: Refusals::default(),
            penalties: Penalties::new(&limits),
            penalized: Refusals::default(),
            report: ServeReport::default(),
            phase: Phase::Serving,
        }
    }

    /// Whether to accept now: serving, and below the total cap (above it,
    /// connections wait in the kernel's backlog).
    pub(crate) fn has_room(&self) -> bool {
        self.phase == Phase::Serving && self.sessions.len() < self.limits.max_connections
    }

    /// Sessions started and not yet reported ended.
    pub(crate) fn running(&self) -> usize {
        self.sessions.len()
    }

    /// A connection from `peer` was accepted at `now`.
    pub(crate) fn accepted(&mut self, now: Instant, peer: SocketAddr) -> Admit {
        self.backoff.after_success(now);
        let source = source_of(peer.ip());
        if let Some(left) = self.penalties.refused_for(now, source) {
            if let Some(count) = self.penalized.refused(now) {
                tracing::warn!(%peer, count, "closed connections from a source refused for a while after failed guesses at the code");
            }
            return Admit::Penalized(refusal_notice(RefusalReason::FailedGuesses, left));
        }
        let count = self.per_source.entry(source).or_insert(0);
        if *count >= self.limits.max_per_source {
            self.refusals.refuse(now, peer, self.limits.max_per_source);
            if self.limits.notify_at_cap {
                let notice = refusal_notice(RefusalReason::SourceCap, Duration::from_secs(1));
                return Admit::AtCap(notice);
            }
            return Admit::Refuse;
        }
        *count += 1;
        self.last_id += 1;
        self.sessions.insert(self.last_id, source);
        Admit::Start(self.last_id)
    }

    /// An accept failed at `now`; returns the pause before the next one
    /// (none for a failure that concerns only the connection being accepted).
    pub(crate) fn accept_failed(&mut self, now: Instant, error: &io::Error) -> Option<Duration> {
        self.backoff.after_error(now, error)
    }

    /// Session `id` ended at `now` with `result`: frees its place and
    /// counts how it ended (aborted, if the shutdown had aborted it by then;
    /// not at all if its connection was cut, as it was counted unfinished
    /// then). A failed session whose machine says the peer spent a guess
    /// (`guessed`: [`StreamMachine::failed_guess`](crate::machine::StreamMachine::failed_guess),
    /// for the secure channel [`Handshake::Unconfirmed`](crate::secure::Handshake::Unconfirmed))
    /// refuses its source for a while, whatever the error (a reset too).
    /// The error alone never does: a handshake timeout or an end of input
    /// in the handshake says nothing of whether the peer ever sent a hello
    /// (a scanner, a health check, a peer that only read our hello). An
    /// unknown id is ignored.
    pub(crate) fn ended<E>(
        &mut self,
        now: Instant,
        id: SessionId,
        result: &Result<(), E>,
        guessed: bool,
    ) {
        let Some(source) = self.sessions.remove(&id) else {
            return;
        };
        if result.is_err() && guessed {
            let delay = self.penalties.failed(now, source);
            tracing::info!(%source, ?delay, "failed guess at the code: source refused for a while");
        }
        if let Some(count) = self.per_source.get_mut(&source) {
            *count -= 1;
            if *count == 0 {
                self.per_source.remove(&source);
            }
        }
        match self.phase {
            Phase::Serving | Phase::Grace { .. } => self.report.count(result, false),
            Phase::Aborting { .. } => self.report.count(result, true),
            Phase::Cutting { .. } | Phase::Done => {}
        }
    }

    /// Starts stopping at `now`: accept no more; sessions get `grace` to end.
    pub(crate) fn stop(&mut self, now: Instant, grace: Duration) {
        if self.phase == Phase::Serving {
            self.phase = Phase::Grace { until: now + grace };
        }
    }

    /// What to do next while stopping; `urgent`: the shutdown was
    /// triggered again. Call [`stop`](Self::stop) first.
    pub(crate) fn stop_step(&mut self, now: Instant, urgent: bool) -> StopStep {
        if self.sessions.is_empty() && self.phase != Phase::Serving {
            self.phase = Phase::Done;
        }
        match self.phase {
            // Not stopping: nothing to wait for yet; treated as a zero grace.
            Phase::Serving => {
                self.stop(now, Duration::ZERO);
                self.stop_step(now, urgent)
            }
            Phase::Grace { until } if urgent || now >= until => {
                self.phase = Phase::Aborting {
                    until: now + ABORT_WAIT,
                };
                StopStep::AbortAll
            }
            Phase::Grace { until } => StopStep::Wait {
                until,
                or_urgent: true,
            },
            Phase::Aborting { until } if now >= until => {
                self.report.unfinished = self.sessions.len() as u64;
                self.phase = Phase::Cutting {
                    until: now + ABORT_WAIT,
                };
                StopStep::Cut
            }
            Phase::Aborting { until } | Phase::Cutting { until } if now < until => StopStep::Wait {
                until,
                or_urgent: false,
            },
            Phase::Cutting { .. } | Phase::Aborting { .. } | Phase::Done => {
                self.phase = Phase::Done;
                StopStep::Done(self.report())
            }
        }
    }

    fn report(&self) -> ServeReport {
        ServeReport {
            refused: self.refusals.total + self.penalized.total,
            ..self.report.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);
    const SECOND: Duration = Duration::from_secs(1);

    fn peer(ip: &str) -> SocketAddr {
        SocketAddr::new(ip.parse().unwrap(), 40_000)
    }

    fn started(core: &mut ServeCore, now: Instant, ip: &str) -> SessionId {
        match core.accepted(now, peer(ip)) {
            Admit::Start(id) => id,
            refused => panic!("{ip} was refused: {refused:?}"),
        }
    }

    /// Whether a connection from `ip` at `now` is refused for failed
    /// guesses, with a notice saying for how many seconds.
    fn penalized(core: &mut ServeCore, now: Instant, ip: &str) -> Option<u32> {
        match core.accepted(now, peer(ip)) {
            Admit::Penalized(notice) => {
                assert_eq!(notice[..5], *b"EXFW\x01", "{notice:?}");
                Some(u32::from_be_bytes(notice[5..].try_into().unwrap()))
            }
            Admit::Start(id) => {
                core.ended(now, id, &OK, false);
                None
            }
            Admit::Refuse | Admit::AtCap(_) => panic!("{ip} refused at its cap"),
        }
    }

    fn limits(max_connections: usize, max_per_source: usize) -> Limits {
        Limits {
            max_connections,
            max_per_source,
            ..Limits::default()
        }
    }

    const OK: Result<(), crate::Error> = Ok(());
    const FAILED: Result<(), crate::Error> = Err(crate::Error::HashMismatch);
    const WRONG_CODE: Result<(), crate::Error> =
        Err(crate::Error::Secure(crate::error::SecureError::WrongCode));

    #[test]
    fn a_source_at_its_cap_is_refused_until_one_of_its_sessions_ends() {
        let t0 = Instant::now();
        let mut core = ServeCore::new(limits(16, 2));
        let first = started(&mut core, t0, "127.0.0.2");
        started(&mut core, t0, "127.0.0.2");
        assert_eq!(core.accepted(t0, peer("127.0.0.2")), Admit::Refuse);
        started(&mut core, t0, "127.0.0.3"); // another source is unaffected
        core.ended(t0, first, &OK, false);
        started(&mut core, t0, "127.0.0.2");
        assert_eq!(core.per_source.len(), 2);
    }

    #[test]
    fn one_ipv6_host_counts_as_one_source_against_the_per_source_cap() {
        let t0 = Instant::now();
        let mut core = ServeCore::new(limits(16, 1));
        started(&mut core, t0, "2001:db8:1:2::1");
        assert_eq!(core.accepted(t0, peer("2001:db8:1:2::99")), Admit::Refuse);
        started(&mut core, t0, "2001:db8:1:3::1");
    }

    #[test]
    fn there_is_room_only_below_the_total_cap_and_only_while_serving() {
        let t0 = Instant::now();
        let mut core = ServeCore::new(limits(2, 2));
        let a = started(&mut core, t0, "127.0.0.2");
        assert!(core.has_room());
        started(&mut core, t0, "127.0.0.3");
        assert!(!core.has_room(), "two running at a cap of two");
        core.ended(t0, a, &OK, false);
        assert!(core.has_room(), "an ended session frees its place");
        core.stop(t0, SECOND);
        assert!(!core.has_room(), "a stopping server accepts no more");
    }

    #[test]
    fn a_refused_connection_takes_no_place_and_is_reported() {
        let t0 = Instant::now();
        let mut core = ServeCore::new(limits(2, 1));
        started(&mut core, t0, "127.0.0.2");
        for _ in 0..5 {
            assert_eq!(core.accepted(t0, peer("127.0.0.2")), Admit::Refuse);
        }
        assert_eq!(core.running(), 1);
        assert!(core.has_room());
        core.stop(t0, SECOND);
        let mut report = match core.stop_step(t0, true) {
            StopStep::AbortAll => None,
            other => panic!("{other:?}"),
        };
        core.ended(t0, 1, &FAILED, false);
        if let StopStep::Done(r) = core.stop_step(t0, true) {
            report = Some(r);
        }
        let report = report.expect("done once the last session ended");
        assert_eq!(report.refused, 5);
        assert_eq!(report.aborted, 1);
    }

    #[test]
    fn accept_failures_pause_longer_each_time_but_a_vanished_client_costs_no_pause() {
        let t0 = Instant::now();
        let mut core = ServeCore::new(limits(2, 2));
        let emfile = io::Error::from_raw_os_error(libc_emfile());
        let aborted = io::Error::from(io::ErrorKind::ConnectionAborted);
        assert_eq!(core.accept_failed(t0, &aborted), None);
        assert_eq!(core.accept_failed(t0, &emfile), Some(10 * MS));
        assert_eq!(core.accept_failed(t0 + 10 * MS, &emfile), Some(20 * MS));
        started(&mut core, t0 + 30 * MS, "127.0.0.2");
        assert_eq!(
            core.accept_failed(t0 + SECOND, &emfile),
            Some(10 * MS),
            "a successful accept starts the pauses over"
        );
    }

    /// EMFILE's number on the systems this runs on (24 on Linux and the BSDs).
    fn libc_emfile() -> i32 {
        24
    }

    #[test]
    fn a_stop_with_no_session_running_is_done_at_once() {
        let t0 = Instant::now();
        let mut core = ServeCore::new(limits(2, 2));
        core.stop(t0, SECOND);
        assert_eq!(
            core.stop_step(t0, false),
            StopStep::Done(ServeReport::default())
        );
    }

    #[test]
    fn sessions_get_the_grace_then_are_aborted_then_cut_after_the_abort_wait() {
        let t0 = Instant::now();
        let mut core = ServeCore::new(limits(4, 4));
        let quick = started(&mut core, t0, "127.0.0.2");
        let aborted = started(&mut core, t0, "127.0.0.3");
        let stuck = started(&mut core, t0, "127.0.0.4");
        core.stop(t0, SECOND);
        let grace = StopStep::Wait {
            until: t0 + SECOND,
            or_urgent: true,
        };
        assert_eq!(core.stop_step(t0, false), grace);
        core.ended(t0, quick, &OK, false);
        assert_eq!(core.stop_step(t0 + 500 * MS, false), grace);
        let t1 = t0 + SECOND;
        assert_eq!(core.stop_step(t1, false), StopStep::AbortAll);
        let abort_wait = StopStep::Wait {
            until: t1 + ABORT_WAIT,
            or_urgent: false,
        };
        assert_eq!(core.stop_step(t1, true), abort_wait);
        core.ended(t0, aborted, &FAILED, false);
        assert_eq!(core.stop_step(t1 + MS, false), abort_wait);
        let t2 = t1 + ABORT_WAIT;
        assert_eq!(core.stop_step(t2, false), StopStep::Cut);
        assert_eq!(
            core.stop_step(t2, false),
            StopStep::Wait {
                until: t2 + ABORT_WAIT,
                or_urgent: false
            },
            "the cut sessions get time to go"
        );
        core.ended(t0, stuck, &FAILED, false);
        let expected = ServeReport {
            ok: 1,
            aborted: 1,
            unfinished: 1,
            ..ServeReport::default()
        };
        assert_eq!(core.stop_step(t2 + MS, false), StopStep::Done(expected));
    }

    #[test]
    fn an_urgent_stop_aborts_without_waiting_for_the_grace() {
        let t0 = Instant::now();
        let mut core = ServeCore::new(limits(2, 2));
        started(&mut core, t0, "127.0.0.2");
        core.stop(t0, Duration::from_secs(3600));
        assert_eq!(core.stop_step(t0, true), StopStep::AbortAll);
    }

    #[test]
    fn cut_sessions_that_never_end_still_let_the_stop_finish() {
        let t0 = Instant::now();
        let mut core = ServeCore::new(limits(2, 2));
        started(&mut core, t0, "127.0.0.2");
        core.stop(t0, Duration::ZERO);
        assert_eq!(core.stop_step(t0, false), StopStep::AbortAll);
        let t1 = t0 + ABORT_WAIT;
        assert_eq!(core.stop_step(t1, false), StopStep::Cut);
        let done = core.stop_step(t1 + ABORT_WAIT, false);
        let expected = ServeReport {
            unfinished: 1,
            ..ServeReport::default()
        };
        assert_eq!(done, StopStep::Done(expected));
    }

    #[test]
    fn a_failure_before_the_abort_counts_as_failed_and_after_it_as_aborted() {
        let t0 = Instant::now();
        let mut core = ServeCore::new(limits(4, 4));
        let early = started(&mut core, t0, "127.0.0.2");
        let late = started(&mut core, t0, "127.0.0.3");
        core.ended(t0, early, &FAILED, false);
        core.stop(t0, Duration::ZERO);
        assert_eq!(core.stop_step(t0, false), StopStep::AbortAll);
        core.ended(t0, late, &FAILED, false);
        core.ended(t0, late, &FAILED, false); // reported twice: counted once
        let expected = ServeReport {
            failed: 1,
            aborted: 1,
            ..ServeReport::default()
        };
        assert_eq!(core.stop_step(t0, false), StopStep::Done(expected));
    }

    fn penalty_limits() -> Limits {
        Limits {
            guess_delay: SECOND,
            max_guess_delay: 4 * SECOND,
            ..limits(16, 16)
        }
    }

    #[test]
    fn a_failed_guess_refuses_its_source_for_a_doubling_while_and_others_are_served() {
        let t0 = Instant::now();
        let mut core = ServeCore::new(penalty_limits());
        let guess = started(&mut core, t0, "127.0.0.2");
        core.ended(t0, guess, &WRONG_CODE, true);
        assert_eq!(penalized(&mut core, t0, "127.0.0.2"), Some(1));
        started(&mut core, t0, "127.0.0.3"); // a good sender elsewhere
        let t1 = t0 + SECOND;
        let guess = started(&mut core, t1, "127.0.0.2");
        core.ended(t1, guess, &WRONG_CODE, true);
        assert_eq!(
            penalized(&mut core, t1 + SECOND, "127.0.0.2"),
            Some(1),
            "2 s now, 1 s of it left"
        );
        let t2 = t1 + 2 * SECOND;
        let guess = started(&mut core, t2, "127.0.0.2");
        core.ended(t2, guess, &WRONG_CODE, true);
        let t3 = t2 + 4 * SECOND;
        let guess = started(&mut core, t3, "127.0.0.2");
        core.ended(t3, guess, &WRONG_CODE, true);
        assert_eq!(
            penalized(&mut core, t3 + 2500 * MS, "127.0.0.2"),
            Some(2),
            "1.5 s left, rounded up"
        );
        started(&mut core, t3 + 4 * SECOND, "127.0.0.2"); // capped at 4 s
        core.stop(t3, Duration::ZERO);
        let report = loop {
            match core.stop_step(t3 + 5 * SECOND, true) {
                StopStep::Done(r) => break r,
                StopStep::AbortAll | StopStep::Cut | StopStep::Wait { .. } => {
                    for id in 0..=core.last_id {
                        core.ended(t3, id, &FAILED, false);
                    }
                }
            }
        };
        assert_eq!(report.refused, 3, "each refusal counted");
    }

    #[test]
    fn other_failures_and_clean_ends_cost_no_refusal() {
        let t0 = Instant::now();
        let mut core = ServeCore::new(penalty_limits());
        let failed = started(&mut core, t0, "127.0.0.2");
        core.ended(t0, failed, &FAILED, false);
        let ok = started(&mut core, t0, "127.0.0.2");
        core.ended(t0, ok, &OK, false);
        let plaintext = started(&mut core, t0, "127.0.0.2");
        let e = crate::Error::Secure(crate::error::SecureError::PeerIsPlaintext);
        core.ended(t0, plaintext, &Err(e), false);
        started(&mut core, t0, "127.0.0.2");
    }

    #[test]
    fn a_reset_after_the_peers_hello_is_a_failed_guess_and_one_after_its_confirmation_is_not() {
        let t0 = Instant::now();
        let mut core = ServeCore::new(penalty_limits());
        let reset = || -> Result<(), super::super::DriverError> {
            let e = io::Error::from(io::ErrorKind::ConnectionReset);
            Err(super::super::DriverError::io("reading from the peer")(e))
        };
        // A guesser that read the server's confirmation, then reset.
        let guesser = started(&mut core, t0, "127.0.0.2");
        core.ended(t0, guesser, &reset(), true);
        assert!(penalized(&mut core, t0, "127.0.0.2").is_some());
        // An honest sender cut mid-transfer: it resumes at once.
        let honest = started(&mut core, t0, "127.0.0.3");
        core.ended(t0, honest, &reset(), false);
        started(&mut core, t0, "127.0.0.3");
        // A machine's word never turns a clean end into a guess.
        let clean = started(&mut core, t0, "127.0.0.4");
        core.ended(t0, clean, &Ok::<(), crate::Error>(()), true);
        started(&mut core, t0, "127.0.0.4");
    }

    #[test]
    fn only_the_machines_verdict_makes_a_guess_never_the_error_alone() {
        let t0 = Instant::now();
        let mut core = ServeCore::new(penalty_limits());
        let eof = || crate::Error::Secure(crate::error::SecureError::HandshakeCut);
        let timeout = || crate::Error::Secure(crate::error::SecureError::HandshakeTimeout(SECOND));
        // A health check that read the server's hello and left, and a
        // scanner that stayed silent until the handshake deadline: no hello
        // from them, so no guess, however often.
        for _ in 0..8 {
            let left = started(&mut core, t0, "127.0.0.2");
            core.ended(t0, left, &Err(eof()), false);
            let stalled = started(&mut core, t0, "127.0.0.2");
            core.ended(t0, stalled, &Err(timeout()), false);
        }
        assert_eq!(penalized(&mut core, t0, "127.0.0.2"), None);
        // The same ends after the peer's whole hello: guesses.
        let left = started(&mut core, t0, "127.0.0.3");
        core.ended(t0, left, &Err(eof()), true);
        assert!(penalized(&mut core, t0, "127.0.0.3").is_some());
        let stalled = started(&mut core, t0, "127.0.0.4");
        core.ended(t0, stalled, &Err(timeout()), true);
        assert!(penalized(&mut core, t0, "127.0.0.4").is_some());
    }

    #[test]
    fn a_source_at_its_cap_gets_no_notice_and_a_penalized_one_does() {
        let t0 = Instant::now();
        let mut core = ServeCore::new(limits(4, 1));
        started(&mut core, t0, "127.0.0.2");
        let capped = core.accepted(t0, peer("127.0.0.2"));
        assert_eq!((&capped, capped.notice()), (&Admit::Refuse, &[][..]));
        let guess = started(&mut core, t0, "127.0.0.3");
        core.ended(t0, guess, &WRONG_CODE, true);
        let penalized = core.accepted(t0, peer("127.0.0.3"));
        assert_eq!(penalized.notice(), b"EXFW\x01\x00\x00\x00\x01");
        let mut core = ServeCore::new(Limits {
            notify_at_cap: true,
            ..limits(4, 1)
        });
        started(&mut core, t0, "127.0.0.2");
        let capped = core.accepted(t0, peer("127.0.0.2"));
        assert_eq!(capped.notice(), b"EXFW\x02\x00\x00\x00\x01");
    }
}
