//! A deterministic simulator for whole sessions: one seed drives a virtual
//! clock and a pair of [`Netem`] links (latency, fragmentation, coalescing,
//! stalls, corruption, cuts) between two stream machines. One seed
//! replays one run exactly; timeouts fire in virtual time, so a stalled
//! peer is dropped without any real waiting.

use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::netem::{Impairments, Netem};
use super::pair::{PairOutcome, Stuck};
use crate::driver::{App, DriverError};
use crate::machine::{Output, StreamMachine};

/// The simulated world: a seeded generator and a virtual clock.
#[derive(Debug)]
pub struct Sim {
    /// The seed this world was made from.
    pub seed: u64,
    /// The generator every random choice comes from.
    pub rng: ChaCha8Rng,
    /// The virtual time.
    pub now: Instant,
}

/// What happened on the links of one connection.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LinkReport {
    /// Bits flipped in flight, both ways.
    pub corrupted: u64,
    /// Whether the connection dropped.
    pub cut: bool,
}

/// One side of a simulated connection.
struct Side<'a, M, P> {
    machine: &'a mut M,
    app: &'a mut P,
    done: Option<Result<(), DriverError>>,
}

impl Sim {
    /// A world made from `seed`, starting at `start`.
    pub fn new(seed: u64, start: Instant) -> Self {
        Sim {
            seed,
            rng: ChaCha8Rng::seed_from_u64(seed),
            now: start,
        }
    }

    /// Random impairments: mostly benign, sometimes hostile.
    pub fn random_impairments(&mut self, hostile: bool) -> Impairments {
        let r = &mut self.rng;
        let max_latency = Duration::from_millis(r.random_range(0..50));
        let chance = |r: &mut ChaCha8Rng, p: f64| {
            if hostile && r.random_bool(0.3) {
                p
            } else {
                0.0
            }
        };
        Impairments {
            latency: (Duration::ZERO, max_latency),
            max_piece: [1, 7, 100, 1500, 65_536][r.random_range(0..5)],
            stall_chance: chance(r, 0.01),
            stall: Duration::from_secs(r.random_range(1..120)),
            corrupt_chance: chance(r, 0.005),
            cut_chance: chance(r, 0.005),
        }
    }

    /// Runs one connection between `a` and `b` over links with `imp` until
    /// both sides are done, for at most `max_steps` steps.
    pub fn connect<A, B>(
        &mut self,
        (a, app_a): (&mut A, &mut impl App<A>),
        (b, app_b): (&mut B, &mut impl App<B>),
        imp: &Impairments,
        max_steps: usize,
    ) -> Result<(PairOutcome, LinkReport), Stuck>
    where
        A: StreamMachine,
        B: StreamMachine,
    {
        let mut a = Side {
            machine: a,
            app: app_a,
            done: None,
        };
        let mut b = Side {
            machine: b,
            app: app_b,
            done: None,
        };
        let mut to_b = Netem::new(imp.clone());
        let mut to_a = Netem::new(imp.clone());
        for steps in 0..max_steps {
            let mut busy = self.drain(&mut a, &mut to_b);
            busy |= self.drain(&mut b, &mut to_a);
            if to_a.is_cut() != to_b.is_cut() {
                // A connection drops in both directions at once.
                to_a.cut();
                to_b.cut();
            }
            if let (Some(_), Some(_)) = (&a.done, &b.done) {
                let report = LinkReport {
                    corrupted: to_a.corrupted + to_b.corrupted,
                    cut: to_a.is_cut(),
                };
                let outcome = PairOutcome {
                    a: a.done.take().expect("checked"),
                    b: b.done.take().expect("checked"),
                };
                return Ok((outcome, report));
            }
            busy |= self.deliver(&mut to_b, &mut b);
            busy |= self.deliver(&mut to_a, &mut a);
            if !busy && !self.advance(&mut a, &mut b, &to_a, &to_b) {
                return Err(Stuck { steps });
            }
        }
        Err(Stuck { steps: max_steps })
    }

    /// Drains one side into its outgoing link.
    fn drain<M: StreamMachine, P: App<M>>(
        &mut self,
        side: &mut Side<'_, M, P>,
        out: &mut Netem,
    ) -> bool {
        if side.done.is_some() {
            return false;
        }
        let mut busy = false;
        loop {
            match side.machine.poll_output() {
                Output::Transmit(bytes) => {
                    busy = true;
                    out.send(self.now, &bytes, &mut self.rng);
                }
                Output::Event(e) => {
                    busy = true;
                    if let Err(source) = side.app.on_event(side.machine, self.now, e) {
                        side.done = Some(Err(DriverError::Io {
                            context: "app",
                            source,
                        }));
                        out.close();
                        return true;
                    }
                }
                Output::Wait(_) => return busy,
                Output::Done(result) => {
                    side.done = Some(result.map_err(DriverError::from));
                    out.close();
                    return true;
                }
            }
        }
    }

    /// Hands a side whatever its incoming link has delivered by now.
    fn deliver<M: StreamMachine, P: App<M>>(
        &mut self,
        link: &mut Netem,
        side: &mut Side<'_, M, P>,
    ) -> bool {
        if side.done.is_some() {
            return false;
        }
        match link.receive(self.now, side.machine.input_room()) {
            Some(bytes) if bytes.is_empty() => side.machine.handle_eof(self.now),
            // A failure is sticky in the machine and surfaces as its `Done`.
            Some(bytes) => drop(side.machine.handle_input(self.now, &bytes)),
            None => return false,
        }
        true
    }

    /// Jumps to the next arrival or deadline and fires timers.
    fn advance<A, B, PA, PB>(
        &mut self,
        a: &mut Side<'_, A, PA>,
        b: &mut Side<'_, B, PB>,
        to_a: &Netem,
        to_b: &Netem,
    ) -> bool
    where
        A: StreamMachine,
        B: StreamMachine,
    {
        let next = [
            deadline(a.machine, &a.done),
            deadline(b.machine, &b.done),
            to_a.next_arrival(self.now),
            to_b.next_arrival(self.now),
        ]
        .into_iter()
        .flatten()
        .min();
        let Some(next) = next else {
            return false;
        };
        self.now = self.now.max(next);
        a.machine.handle_timeout(self.now);
        b.machine.handle_timeout(self.now);
        true
    }
}

fn deadline<M: StreamMachine>(
    m: &mut M,
    done: &Option<Result<(), DriverError>>,
) -> Option<Instant> {
    match (done, m.poll_output()) {
        (None, Output::Wait(t)) => t,
        _ => None,
    }
}
