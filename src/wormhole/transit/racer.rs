//! Racing candidate connections, decided sans-IO: [`Racer`] says which
//! connection to try when (the peer's direct hints at once, the relays
//! [`RaceConfig::relay_delay`] later, or at once when there is no direct
//! hint), which to stop once one won, and how the race ended. The caller
//! connects, accepts and runs each candidate (a [`Transit`](super::Transit)
//! with its app, whose shared [`Race`](super::Race) picks the first to
//! check out) and reports back; time comes in as a value. One racer per
//! transfer, on one side.

use std::time::{Duration, Instant};

use super::hints::{RelayEndpoint, TransitHints};

/// How a race is run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaceConfig {
    /// How long relays wait when the peer gave direct hints, so a direct
    /// connection wins when there is one. Default 2 s, as Python's client.
    pub relay_delay: Duration,
    /// How long the race may take until a candidate claims it (then it
    /// waits for that candidate's end, however long the transfer takes).
    /// Default 60 s.
    pub timeout: Duration,
}

impl Default for RaceConfig {
    fn default() -> Self {
        RaceConfig {
            relay_delay: Duration::from_secs(2),
            timeout: Duration::from_secs(60),
        }
    }
}

/// One candidate of a race.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CandidateId(pub usize);

/// Where a candidate connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Way {
    /// Straight to the peer.
    Direct {
        /// The peer's address.
        host: String,
        /// Its port.
        port: u16,
    },
    /// To a transit relay (the candidate sends the relay handshake first).
    Relay {
        /// The relay's address.
        host: String,
        /// Its port.
        port: u16,
    },
}

/// What the caller does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RaceAction {
    /// Connect to `Way` and run the candidate there; report with
    /// [`Racer::finished`].
    Connect(CandidateId, Way),
    /// Stop this running candidate: another one won.
    Stop(CandidateId),
}

/// How a race ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RaceVerdict {
    /// This candidate carried the transfer and ended well.
    Won(CandidateId),
    /// No candidate carried it; the reason (the winner's failure, or the
    /// last candidate's, or the timeout).
    Failed(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// To be tried at this instant.
    Scheduled(Instant),
    Running,
    /// Told to stop; waits for its report.
    Stopping,
    /// Over (reported, or never started because the race was claimed).
    Over,
}

#[derive(Debug)]
struct Candidate {
    way: Option<Way>,
    state: State,
}

/// The race's decisions (see the [module docs](self)).
#[derive(Debug)]
pub struct Racer {
    config: RaceConfig,
    candidates: Vec<Candidate>,
    listening: bool,
    claimed: bool,
    verdict: Option<RaceVerdict>,
    last_failure: Option<String>,
    deadline: Instant,
    now: Instant,
}

impl Racer {
    /// A race toward `peer`'s hints and the relays of both sides
    /// (`local`'s and `peer`'s, each once), starting at `now`; `listening`:
    /// the peer may also connect to us ([`accepted`](Self::accepted)), so
    /// the race is not lost while that can happen.
    pub fn new(
        local: &TransitHints,
        peer: &TransitHints,
        listening: bool,
        config: RaceConfig,
        now: Instant,
    ) -> Racer {
        let mut ways: Vec<Way> = peer
            .direct()
            .map(|d| Way::Direct {
                host: d.hostname.clone(),
                port: d.port,
            })
            .collect();
        let relays_at = match ways.is_empty() {
            true => now,
            false => now + config.relay_delay,
        };
        let relays = local.relays().chain(peer.relays()).flat_map(|r| {
            r.hints.iter().filter_map(|endpoint| match endpoint {
                RelayEndpoint::Tcp(d) => Some(Way::Relay {
                    host: d.hostname.clone(),
                    port: d.port,
                }),
                _ => None,
            })
        });
        let direct = ways.len();
        ways.extend(relays);
        let mut candidates: Vec<Candidate> = Vec::new();
        for (i, way) in ways.into_iter().enumerate() {
            if candidates.iter().any(|c| c.way.as_ref() == Some(&way)) {
                continue;
            }
            let at = if i < direct { now } else { relays_at };
            candidates.push(Candidate {
                way: Some(way),
                state: State::Scheduled(at),
            });
        }
        Racer {
            deadline: now + config.timeout,
            config,
            candidates,
            listening,
            claimed: false,
            verdict: None,
            last_failure: None,
            now,
        }
    }

    /// The config this race runs with.
    pub fn config(&self) -> &RaceConfig {
        &self.config
    }

    /// The peer connected to us: a candidate to run at once (ignored,
    /// and to be dropped, once the race is over: `None`).
    pub fn accepted(&mut self) -> Option<CandidateId> {
        if self.verdict.is_some() || self.claimed {
            return None;
        }
        self.candidates.push(Candidate {
            way: None,
            state: State::Running,
        });
        Some(CandidateId(self.candidates.len() - 1))
    }

    /// Some candidate claimed the race: nothing more is tried, and no
    /// more connection is taken.
    pub fn claimed(&mut self) {
        self.claimed = true;
        self.listening = false;
        for c in &mut self.candidates {
            if let State::Scheduled(_) = c.state {
                c.state = State::Over;
            }
        }
    }

    /// Candidate `id` ended: `won` if it carried the transfer, with how
    /// it went (a connection that could not be made is `Err` too).
    pub fn finished(&mut self, id: CandidateId, won: bool, result: Result<(), String>) {
        let Some(c) = self.candidates.get_mut(id.0) else {
            return;
        };
        c.state = State::Over;
        if won && self.verdict.is_none() {
            self.claimed();
            self.verdict = Some(match result {
                Ok(()) => RaceVerdict::Won(id),
                Err(why) => RaceVerdict::Failed(why),
            });
            for (i, c) in self.candidates.iter_mut().enumerate() {
                if i != id.0 && c.state == State::Running {
                    c.state = State::Stopping;
                }
            }
            return;
        }
        if let Err(why) = result {
            self.last_failure = Some(why);
        }
        self.settle();
    }

    /// Time passes.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = self.now.max(now);
        self.settle();
    }

    /// The next thing to do, if any (call until `None`, after every
    /// report and timeout).
    pub fn poll_action(&mut self) -> Option<RaceAction> {
        for (i, c) in self.candidates.iter_mut().enumerate() {
            match c.state {
                State::Stopping => {
                    c.state = State::Over;
                    return Some(RaceAction::Stop(CandidateId(i)));
                }
                State::Scheduled(at) if at <= self.now && !self.claimed => {
                    c.state = State::Running;
                    let way = c.way.clone().expect("scheduled candidates have a way");
                    return Some(RaceAction::Connect(CandidateId(i), way));
                }
                _ => {}
            }
        }
        None
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) next: the
    /// next candidate's time, or the race's deadline; none once claimed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.verdict.is_some() || self.claimed {
            return None;
        }
        let next = self.candidates.iter().filter_map(|c| match c.state {
            State::Scheduled(at) if !self.claimed => Some(at),
            _ => None,
        });
        next.chain(Some(self.deadline)).min()
    }

    /// How the race ended, once it did.
    pub fn verdict(&self) -> Option<&RaceVerdict> {
        self.verdict.as_ref()
    }

    /// Ends the race when nothing can win it any more. A claimed race is
    /// the claimant's to end, however long its transfer takes.
    fn settle(&mut self) {
        if self.verdict.is_some() || self.claimed {
            return;
        }
        let why = || self.last_failure.clone();
        if self.now >= self.deadline {
            let last = why().unwrap_or_else(|| "no connection got through".into());
            self.verdict = Some(RaceVerdict::Failed(format!(
                "no transit connection within {:?}: {last}",
                self.config.timeout
            )));
            for c in &mut self.candidates {
                c.state = match c.state {
                    State::Running => State::Stopping,
                    _ => State::Over,
                };
            }
            return;
        }
        let alive = self
            .candidates
            .iter()
            .any(|c| matches!(c.state, State::Scheduled(_) | State::Running));
        if !alive && !self.listening {
            let last = why().unwrap_or_else(|| "there was nothing to connect to".into());
            self.verdict = Some(RaceVerdict::Failed(last));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wormhole::transit::hints::{DirectHint, Hint, RelayHint};

    fn direct(host: &str, port: u16) -> Hint {
        Hint::Direct(DirectHint {
            hostname: host.into(),
            port,
            priority: Some(0.0),
        })
    }

    fn relay(host: &str, port: u16) -> Hint {
        Hint::Relay(RelayHint {
            name: None,
            hints: vec![RelayEndpoint::Tcp(DirectHint {
                hostname: host.into(),
                port,
                priority: Some(0.0),
            })],
        })
    }

    fn hints(list: Vec<Hint>) -> TransitHints {
        let mut h = TransitHints::new();
        h.hints = list;
        h
    }

    fn actions(r: &mut Racer) -> Vec<RaceAction> {
        std::iter::from_fn(|| r.poll_action()).collect()
    }

    fn connect(id: usize, way: Way) -> RaceAction {
        RaceAction::Connect(CandidateId(id), way)
    }

    fn d(host: &str, port: u16) -> Way {
        Way::Direct {
            host: host.into(),
            port,
        }
    }

    fn r(host: &str, port: u16) -> Way {
        Way::Relay {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn direct_hints_go_at_once_and_relays_after_the_delay_each_relay_once() {
        let t = Instant::now();
        let local = hints(vec![relay("relay", 4001)]);
        let peer = hints(vec![direct("10.0.0.2", 5000), relay("relay", 4001)]);
        let mut racer = Racer::new(&local, &peer, false, RaceConfig::default(), t);
        assert_eq!(actions(&mut racer), [connect(0, d("10.0.0.2", 5000))]);
        assert_eq!(racer.poll_timeout(), Some(t + Duration::from_secs(2)));
        racer.handle_timeout(t + Duration::from_secs(1));
        assert_eq!(actions(&mut racer), []);
        racer.handle_timeout(t + Duration::from_secs(2));
        assert_eq!(actions(&mut racer), [connect(1, r("relay", 4001))]);
        assert_eq!(racer.poll_timeout(), Some(t + Duration::from_secs(60)));
    }

    #[test]
    fn without_direct_hints_relays_go_at_once() {
        let t = Instant::now();
        let local = hints(vec![relay("a", 1)]);
        let peer = hints(vec![relay("b", 2)]);
        let mut racer = Racer::new(&local, &peer, true, RaceConfig::default(), t);
        assert_eq!(
            actions(&mut racer),
            [connect(0, r("a", 1)), connect(1, r("b", 2))]
        );
    }

    #[test]
    fn the_winner_stops_the_others_and_nothing_more_is_tried_once_claimed() {
        let t = Instant::now();
        let peer = hints(vec![direct("h", 1), direct("h", 2), relay("r", 3)]);
        let mut racer = Racer::new(&TransitHints::new(), &peer, true, RaceConfig::default(), t);
        assert_eq!(actions(&mut racer).len(), 2);
        let inbound = racer.accepted().unwrap();
        racer.claimed();
        assert_eq!(racer.accepted(), None, "no connection taken once claimed");
        racer.handle_timeout(t + Duration::from_secs(5));
        assert_eq!(actions(&mut racer), [], "the relay is never tried");
        racer.finished(CandidateId(1), false, Ok(()));
        racer.finished(inbound, true, Ok(()));
        assert_eq!(racer.verdict(), Some(&RaceVerdict::Won(inbound)));
        assert_eq!(actions(&mut racer), [RaceAction::Stop(CandidateId(0))]);
        assert_eq!(racer.poll_timeout(), None);
    }

    #[test]
    fn once_claimed_the_race_waits_for_its_claimant_past_the_timeout() {
        let t = Instant::now();
        let peer = hints(vec![direct("h", 1)]);
        let mut racer = Racer::new(&TransitHints::new(), &peer, false, RaceConfig::default(), t);
        actions(&mut racer);
        racer.claimed();
        assert_eq!(racer.poll_timeout(), None);
        // A transfer of an hour is not a race lost at 60 s.
        racer.handle_timeout(t + Duration::from_secs(3600));
        assert_eq!(racer.verdict(), None);
        assert_eq!(actions(&mut racer), []);
        racer.finished(CandidateId(0), true, Ok(()));
        assert_eq!(racer.verdict(), Some(&RaceVerdict::Won(CandidateId(0))));
    }

    #[test]
    fn a_winner_that_fails_fails_the_race_with_its_reason() {
        let t = Instant::now();
        let peer = hints(vec![direct("h", 1)]);
        let mut racer = Racer::new(&TransitHints::new(), &peer, false, RaceConfig::default(), t);
        actions(&mut racer);
        racer.finished(CandidateId(0), true, Err("the hash differs".into()));
        assert_eq!(
            racer.verdict(),
            Some(&RaceVerdict::Failed("the hash differs".into()))
        );
    }

    #[test]
    fn when_every_way_failed_and_nobody_can_connect_the_race_fails_at_once() {
        let t = Instant::now();
        let peer = hints(vec![direct("h", 1)]);
        let mut racer = Racer::new(&TransitHints::new(), &peer, false, RaceConfig::default(), t);
        actions(&mut racer);
        racer.finished(CandidateId(0), false, Err("refused".into()));
        assert_eq!(
            racer.verdict(),
            Some(&RaceVerdict::Failed("refused".into()))
        );
    }

    #[test]
    fn while_listening_the_race_waits_until_its_timeout_then_stops_what_runs() {
        let t = Instant::now();
        let peer = hints(vec![direct("h", 1)]);
        let mut racer = Racer::new(&TransitHints::new(), &peer, true, RaceConfig::default(), t);
        actions(&mut racer);
        racer.finished(CandidateId(0), false, Err("refused".into()));
        assert_eq!(racer.verdict(), None, "the peer may still connect to us");
        let inbound = racer.accepted().unwrap();
        racer.handle_timeout(t + Duration::from_secs(60));
        match racer.verdict() {
            Some(RaceVerdict::Failed(why)) => assert!(why.contains("refused"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(actions(&mut racer), [RaceAction::Stop(inbound)]);
    }
}
