//! Failed guesses per source, sans-IO: after a session from a source spent
//! a guess at the code (its peer sent a whole hello, so it got this side's
//! key confirmation, and never confirmed its own: a wrong code, or a peer
//! that left, reset or stalled after its hello; see
//! [`Handshake`](crate::secure::Handshake)), the server refuses that source until a deadline
//! that doubles with each failure, so an online guesser gains nothing by
//! trying faster, while other sources are served as usual. Memory is
//! bounded: a source is forgotten a while after its refusal ends, and at
//! most [`Limits::max_guessing_sources`] are remembered.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::listen::Limits;

/// One source's failed guesses.
#[derive(Debug, Clone, Copy)]
struct Penalty {
    /// Failures remembered (each doubles the delay).
    failures: u32,
    /// Refused until then.
    until: Instant,
}

/// The sources being refused, or remembered, for failed guesses.
#[derive(Debug)]
pub(crate) struct Penalties {
    first: Duration,
    max: Duration,
    forget_after: Duration,
    max_sources: usize,
    sources: HashMap<IpAddr, Penalty>,
}

impl Penalties {
    /// Penalties as `limits` says (validated by the caller).
    pub(crate) fn new(limits: &Limits) -> Penalties {
        Penalties {
            first: limits.guess_delay,
            max: limits.max_guess_delay,
            forget_after: limits.forget_guesses_after,
            max_sources: limits.max_guessing_sources,
            sources: HashMap::new(),
        }
    }

    /// Whether `source` is refused at `now`.
    #[cfg(test)]
    pub(crate) fn is_refused(&self, now: Instant, source: IpAddr) -> bool {
        self.refused_for(now, source).is_some()
    }

    /// How much longer `source` is refused at `now`, if it is.
    pub(crate) fn refused_for(&self, now: Instant, source: IpAddr) -> Option<Duration> {
        self.sources
            .get(&source)
            .filter(|p| now < p.until)
            .map(|p| p.until - now)
    }

    /// A session from `source` failed a guess at `now`: it is refused for
    /// the first delay doubled once per earlier remembered failure, capped.
    /// Returns the delay.
    pub(crate) fn failed(&mut self, now: Instant, source: IpAddr) -> Duration {
        let remembered = self
            .sources
            .get(&source)
            .filter(|p| !self.is_forgotten(now, p))
            .map_or(0, |p| p.failures);
        if !self.sources.contains_key(&source) && self.sources.len() >= self.max_sources {
            self.make_room(now);
        }
        let failures = remembered.saturating_add(1);
        let delay = self.delay(failures);
        // A refusal already running longer (failures counted while others
        // from the same source were still in their sessions) is kept.
        let until = self
            .sources
            .get(&source)
            .map_or(now + delay, |p| p.until.max(now + delay));
        self.sources.insert(source, Penalty { failures, until });
        delay
    }

    /// The delay after `failures` failures: `first * 2^(failures-1)`, capped.
    fn delay(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        self.first
            .checked_mul(1u32 << doublings)
            .map_or(self.max, |d| d.min(self.max))
    }

    fn is_forgotten(&self, now: Instant, p: &Penalty) -> bool {
        now >= p.until + self.forget_after
    }

    /// Drops the forgotten sources; if none was, the one whose refusal
    /// ends first.
    fn make_room(&mut self, now: Instant) {
        let forget_after = self.forget_after;
        self.sources.retain(|_, p| now < p.until + forget_after);
        if self.sources.len() < self.max_sources {
            return;
        }
        let first_free = self
            .sources
            .iter()
            .min_by_key(|(_, p)| p.until)
            .map(|(source, _)| *source);
        if let Some(source) = first_free {
            self.sources.remove(&source);
        }
    }

    /// Sources remembered now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.sources.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn penalties(max_sources: usize) -> Penalties {
        Penalties::new(&Limits {
            guess_delay: SECOND,
            max_guess_delay: 8 * SECOND,
            forget_guesses_after: 60 * SECOND,
            max_guessing_sources: max_sources,
            ..Limits::default()
        })
    }

    #[test]
    fn each_failed_guess_doubles_the_refusal_up_to_the_cap() {
        let t0 = Instant::now();
        let mut p = penalties(16);
        let a = ip("10.0.0.1");
        let mut now = t0;
        let mut delays = Vec::new();
        for _ in 0..6 {
            let d = p.failed(now, a);
            assert!(p.is_refused(now, a));
            assert!(p.is_refused(now + d - Duration::from_millis(1), a));
            assert!(!p.is_refused(now + d, a), "refused no longer than {d:?}");
            delays.push(d.as_secs());
            now += d;
        }
        assert_eq!(delays, [1, 2, 4, 8, 8, 8]);
        assert!(
            !p.is_refused(t0, ip("10.0.0.2")),
            "other sources are served"
        );
    }

    #[test]
    fn a_source_quiet_for_the_forget_time_after_its_refusal_starts_over() {
        let t0 = Instant::now();
        let mut p = penalties(16);
        let a = ip("10.0.0.1");
        p.failed(t0, a);
        let d = p.failed(t0 + SECOND, a);
        assert_eq!(d, 2 * SECOND);
        let end = t0 + SECOND + d;
        assert_eq!(
            p.failed(end + 59 * SECOND, a),
            4 * SECOND,
            "still remembered"
        );
        let end = end + 59 * SECOND + 4 * SECOND;
        assert_eq!(p.failed(end + 60 * SECOND, a), SECOND, "forgotten");
    }

    #[test]
    fn failures_at_once_from_one_source_keep_the_longest_refusal() {
        let t0 = Instant::now();
        let mut p = penalties(16);
        let a = ip("10.0.0.1");
        for _ in 0..4 {
            p.failed(t0, a);
        }
        assert!(p.is_refused(t0 + 7 * SECOND, a), "four failures: 8 s");
        assert!(!p.is_refused(t0 + 8 * SECOND, a));
    }

    #[test]
    fn at_most_max_sources_are_remembered_and_the_first_to_be_free_goes() {
        let t0 = Instant::now();
        let mut p = penalties(3);
        let (a, b, c, d) = (
            ip("10.0.0.1"),
            ip("10.0.0.2"),
            ip("10.0.0.3"),
            ip("10.0.0.4"),
        );
        p.failed(t0, a);
        p.failed(t0, b);
        p.failed(t0, b); // b: 2 s
        p.failed(t0, c);
        p.failed(t0, c);
        p.failed(t0, c); // c: 4 s
        p.failed(t0, d);
        assert_eq!(p.len(), 3);
        assert!(
            !p.is_refused(t0, a),
            "a's refusal ended first: it made room"
        );
        assert!(p.is_refused(t0, b) && p.is_refused(t0, c) && p.is_refused(t0, d));
        for i in 0..100u8 {
            p.failed(t0, IpAddr::from([10, 1, 0, i]));
        }
        assert_eq!(p.len(), 3, "bounded however many sources fail");
    }

    #[test]
    fn forgotten_sources_make_room_before_a_refused_one_is_dropped() {
        let t0 = Instant::now();
        let mut p = penalties(2);
        let (a, b, c) = (ip("10.0.0.1"), ip("10.0.0.2"), ip("10.0.0.3"));
        p.failed(t0, a);
        let later = t0 + 100 * SECOND;
        p.failed(later, b);
        p.failed(later, b);
        p.failed(later + SECOND, c);
        assert!(p.is_refused(later + SECOND, b), "b kept: a was forgotten");
        assert!(p.is_refused(later + SECOND, c));
    }
}
