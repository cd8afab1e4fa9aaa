//! Transit through a relay in the seeded simulator (`testing::sim` with
//! `testing::relay::SimRelay`): the sender's connection to the relay has
//! latency, fragments and, on odd seeds, stalls, corruption and cuts; the
//! relay pairs it with the receiver's by the token of the transit key,
//! answers `ok\n` to both and forwards every byte. Over many seeds:
//! records arrive whole and in order, clean links always end well, no
//! link leaves the pair stuck, a wrong key is never paired and moves no
//! record, and a connection handed over after `go` ends at `go` on both
//! sides. Time is virtual: the 60 s handshake timeout costs nothing.

use std::time::{Duration, Instant};

use bytes::Bytes;
use echoxfer::driver::DriverError;
use echoxfer::testing::relay::SimRelay;
use echoxfer::testing::sim::Sim;
use echoxfer::wormhole::transit::{reasons, Role, Transit, TransitConfig, TransitEvent};
use echoxfer::{Error, WormholeError};
use rand::{Rng, SeedableRng};

const SIDES: [&str; 2] = ["aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb"];
const STEPS: usize = 2_000_000;

fn relayed(role: Role, key: &[u8]) -> TransitConfig {
    let side = match role {
        Role::Sender => SIDES[0],
        Role::Receiver => SIDES[1],
    };
    TransitConfig::new(role, key).via_relay(side)
}

/// Records of random sizes (less than the 1 MiB send buffer in all).
fn records(seed: u64) -> Vec<Bytes> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..rng.random_range(0..20))
        .map(|i| {
            let len = rng.random_range(0..16_384);
            Bytes::from(vec![i as u8 ^ 0x5a; len])
        })
        .collect()
}

/// The sender's app: on `Connected`, go, send every record, close.
fn sending(
    to_send: Vec<Bytes>,
) -> impl FnMut(&mut Transit, Instant, TransitEvent) -> std::io::Result<()> {
    move |t: &mut Transit, _, event| {
        if event == TransitEvent::Connected {
            t.go().map_err(std::io::Error::other)?;
            for r in &to_send {
                t.send_record(r).map_err(std::io::Error::other)?;
            }
            t.close().map_err(std::io::Error::other)?;
        }
        Ok(())
    }
}

#[test]
fn relayed_records_arrive_whole_and_in_order_and_clean_links_always_end_well() {
    let key = [0x42; 32];
    for seed in 0..96u64 {
        let mut sim = Sim::new(seed, Instant::now());
        let imp = sim.random_impairments(seed % 2 == 1);
        let clean = imp.corrupt_chance == 0.0 && imp.cut_chance == 0.0 && imp.stall_chance == 0.0;
        let sent = records(seed);
        let mut sender = Transit::new(relayed(Role::Sender, &key), sim.now);
        let receiver = Transit::new(relayed(Role::Receiver, &key), sim.now);
        let mut relay = SimRelay::new(receiver, sim.now);
        let mut got = Vec::new();
        let mut collect = |_: &mut SimRelay<Transit>, _, event| {
            if let TransitEvent::Record(r) = event {
                got.push(r);
            }
            Ok(())
        };
        let (outcome, _) = sim
            .connect(
                (&mut sender, &mut sending(sent.clone())),
                (&mut relay, &mut collect),
                &imp,
                STEPS,
            )
            .unwrap_or_else(|stuck| panic!("seed {seed}: {stuck} on {imp:?}"));
        assert!(
            got.len() <= sent.len() && got[..] == sent[..got.len()],
            "seed {seed}: records altered, reordered or invented"
        );
        if clean {
            assert!(relay.paired(), "seed {seed}: never paired");
            assert!(
                outcome.a.is_ok() && outcome.b.is_ok(),
                "seed {seed}: {outcome:?}"
            );
            assert_eq!(got, sent, "seed {seed}: a clean link lost records");
        }
    }
}

#[test]
fn a_wrong_key_is_never_paired_no_record_moves_and_both_sides_time_out() {
    for seed in 0..16u64 {
        let mut sim = Sim::new(seed, Instant::now());
        let imp = sim.random_impairments(false);
        let start = sim.now;
        let mut sender = Transit::new(relayed(Role::Sender, &[1; 32]), start);
        let receiver = Transit::new(relayed(Role::Receiver, &[2; 32]), start);
        let mut relay = SimRelay::new(receiver, start);
        let mut got = 0;
        let mut collect = |_: &mut SimRelay<Transit>, _, event| {
            got += matches!(event, TransitEvent::Record(_)) as usize;
            Ok(())
        };
        let (outcome, _) = sim
            .connect(
                (&mut sender, &mut sending(records(seed))),
                (&mut relay, &mut collect),
                &imp,
                STEPS,
            )
            .unwrap_or_else(|stuck| panic!("seed {seed}: {stuck}"));
        let timed_out = |r: &Result<(), DriverError>| {
            matches!(r, Err(DriverError::Machine(Error::Wormhole(WormholeError::Transit(why))))
                if *why == reasons::HANDSHAKE_TIMEOUT)
        };
        assert!(!relay.paired(), "seed {seed}: paired two different keys");
        assert_eq!(got, 0, "seed {seed}");
        assert!(timed_out(&outcome.a), "seed {seed}: {:?}", outcome.a);
        let reached = sim.now.saturating_duration_since(start);
        assert!(
            reached >= Duration::from_secs(60),
            "seed {seed}: ended after {reached:?}"
        );
        assert!(timed_out(&outcome.b), "seed {seed}: {:?}", outcome.b);
    }
}

#[test]
fn handed_over_through_the_relay_both_sides_end_at_go() {
    let key = [7; 32];
    for seed in 0..32u64 {
        let mut sim = Sim::new(seed, Instant::now());
        let imp = sim.random_impairments(false);
        let mut sender = Transit::new(relayed(Role::Sender, &key).handing_over(), sim.now);
        let receiver = Transit::new(relayed(Role::Receiver, &key).handing_over(), sim.now);
        let mut relay = SimRelay::new(receiver, sim.now);
        let mut go = |t: &mut Transit, _, event| match event {
            TransitEvent::Connected => t.go().map_err(std::io::Error::other),
            TransitEvent::Record(_) => Err(std::io::Error::other("a record after go")),
        };
        let mut heard_go = false;
        let mut connected = |_: &mut SimRelay<Transit>, _, event| {
            heard_go |= event == TransitEvent::Connected;
            Ok(())
        };
        let (outcome, _) = sim
            .connect(
                (&mut sender, &mut go),
                (&mut relay, &mut connected),
                &imp,
                STEPS,
            )
            .unwrap_or_else(|stuck| panic!("seed {seed}: {stuck}"));
        assert!(
            outcome.a.is_ok() && outcome.b.is_ok(),
            "seed {seed}: {outcome:?}"
        );
        assert!(heard_go, "seed {seed}: the receiver never heard go");
    }
}
