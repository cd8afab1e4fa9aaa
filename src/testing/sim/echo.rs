//! Echo sessions over simulated links, and peers that trickle their
//! bytes (echo or file transfer).

use super::*;

/// One echo session from `seed`: random messages (the word `exit`
/// among them) from a client to a server over simulated links, benign or
/// hostile. Invariants: the client gets back exactly what it sent, in
/// order, or the session fails with a typed error; on a link with no
/// stall, corruption or cut both sides end well; a stall longer than the
/// idle timeout ends in a timeout in virtual time; bounded steps.
pub fn echo_session(seed: u64) -> Result<SimReport, String> {
    guarded(seed, || echo_inner(seed))
}

fn echo_inner(seed: u64) -> Result<SimReport, String> {
    use crate::echo::{Client, ClientRole, Server, ServerRole};
    use crate::testing::fuzz::echo::{ClientApp, GREETING};
    use bytes::Bytes;

    let start = Instant::now();
    let mut sim = Sim::new(seed, start);
    let hostile = sim.rng.random_bool(0.4);
    let imp = sim.random_impairments(hostile);
    let config = small_limits();
    let echo = crate::config::EchoConfig {
        echo_window: 8 * 1024,
        ..small_echo()
    };
    let mut queue = std::collections::VecDeque::new();
    for _ in 0..sim.rng.random_range(0..24) {
        let msg: Vec<u8> = match sim.rng.random_range(0..6) {
            0 => b"exit".to_vec(),
            1 => Vec::new(),
            _ => {
                let n = sim.rng.random_range(1..=echo.max_message);
                (0..n).map(|_| sim.rng.random()).collect()
            }
        };
        queue.push_back(Bytes::from(msg));
    }
    let bytes = queue.iter().map(|m| m.len() as u64).sum();
    let mut client = Client::new(ClientRole::new(echo.clone()), config.clone(), start);
    let mut app = ClientApp::new(queue);
    app.check_greeting = imp.corrupt_chance == 0.0;
    app.pump(&mut client);
    let mut server = Server::new(ServerRole::new(GREETING, echo), config.clone(), start);
    let mut ignore = crate::driver::Ignore;
    let (outcome, link) = sim
        .connect(
            (&mut client, &mut app),
            (&mut server, &mut ignore),
            &imp,
            MAX_STEPS,
        )
        .map_err(|e| e.to_string())?;
    let mut report = SimReport {
        seed,
        hostile,
        connections: 1,
        cuts: u32::from(link.cut),
        corrupted_connections: u32::from(link.corrupted > 0),
        corrupted_bits: link.corrupted,
        stalls: link.stalls,
        bytes,
        elapsed: sim.now - start,
        ..SimReport::default()
    };
    report.note_failures(&outcome)?;
    if outcome.a.is_ok() && !(app.closed && app.queue.is_empty() && app.replies == app.sent.len()) {
        return Err("client ended Ok without every reply".into());
    }
    let impaired = link.cut || link.corrupted > 0 || link.stalls > 0;
    if !impaired && !report.is_clean() {
        return Err(format!("failed on a perfect link: {outcome:?}"));
    }
    let late = ["timeout", "too-slow", "stalled"]
        .iter()
        .any(|kind| report.failures.contains(kind));
    if late && link.stalls == 0 && link.corrupted == 0 {
        return Err("timed out with no stall and no corruption".into());
    }
    if report.failures.contains(&"echo-mismatch") && link.corrupted == 0 {
        return Err("echo mismatch with nothing corrupted".into());
    }
    Ok(report)
}

/// One session from `seed` in which one side's bytes trickle in (a
/// slowloris peer, or a starved link): echo or file transfer; towards the
/// server (receiver) or towards the client (sender); from a stream offset
/// in or after the preamble on, one byte every 7 to 50 s, always more often
/// than the idle timeout, so only the handshake and frame deadlines can end
/// it. The side writing the trickle is patient (a 10-minute idle timeout):
/// the side reading it must end the session by itself. Invariants: the
/// reading side fails with a timeout (too slow, or idle), no later than its
/// deadlines allow: `handshake_timeout + 2 * frame_timeout + 2 * gap +
/// linger` (a partial preamble, a partial frame that may still complete,
/// then one whole frame that cannot); bounded steps.
pub fn trickle_session(seed: u64) -> Result<SimReport, String> {
    guarded(seed, || trickle_inner(seed))
}

fn trickle_inner(seed: u64) -> Result<SimReport, String> {
    let start = Instant::now();
    let mut sim = Sim::new(seed, start);
    let gap = Duration::from_secs([7, 10, 20, 50][sim.rng.random_range(0..4)]);
    let from = sim.rng.random_range(0..40u64);
    let xfer = sim.rng.random_bool(0.5);
    let towards_server = sim.rng.random_bool(0.5);
    let latency = Duration::from_millis(sim.rng.random_range(0..50));
    let fast = Impairments {
        latency: (Duration::ZERO, latency),
        ..Impairments::none()
    };
    let slow = Impairments {
        trickle: Some(Trickle { from, gap }),
        ..fast.clone()
    };
    let strict = small_limits();
    let patient = crate::config::SessionLimits {
        idle_timeout: Duration::from_secs(600),
        ..small_limits()
    };
    let (links, configs) = match towards_server {
        true => ((&slow, &fast), (patient, strict.clone())),
        false => ((&fast, &slow), (strict.clone(), patient)),
    };
    let (outcome, link) = match xfer {
        true => trickled_xfer(&mut sim, links, configs),
        false => trickled_echo(&mut sim, links, configs),
    }
    .map_err(|e| e.to_string())?;
    let (reader, ended) = match towards_server {
        true => (&outcome.b, outcome.ended.1),
        false => (&outcome.a, outcome.ended.0),
    };
    let mut report = SimReport {
        seed,
        connections: 1,
        elapsed: sim.now - start,
        stalls: link.stalls,
        ..SimReport::default()
    };
    report.note_failures(&outcome)?;
    let kind = match reader {
        Err(e) => failure_kind(e)?,
        Ok(()) => "none",
    };
    if !matches!(kind, "too-slow" | "timeout") {
        return Err(format!(
            "the side reading a trickle (from byte {from}, every {gap:?}) ended with {kind}: {reader:?}"
        ));
    }
    let bound = strict.handshake_timeout + 2 * strict.frame_timeout + 2 * gap + strict.linger;
    let took = ended - start;
    if took > bound + Duration::from_secs(1) {
        return Err(format!(
            "a trickle from byte {from}, every {gap:?}, held its reader {took:?} (bound {bound:?})"
        ));
    }
    Ok(report)
}

/// A client sending messages of 40 to 200 bytes (each too long to trickle
/// within a frame timeout) to an echo server.
fn trickled_echo(
    sim: &mut Sim,
    links: Links<'_>,
    (client_config, server_config): (SessionLimits, SessionLimits),
) -> Result<(PairOutcome, LinkReport), Stuck> {
    use crate::echo::{Client, ClientRole, Server, ServerRole};
    use crate::testing::fuzz::echo::{ClientApp, GREETING};

    let queue = (0..sim.rng.random_range(2..6))
        .map(|_| {
            let n = sim.rng.random_range(40..200);
            bytes::Bytes::from((0..n).map(|_| sim.rng.random::<u8>()).collect::<Vec<u8>>())
        })
        .collect();
    let now = sim.now;
    let mut client = Client::new(ClientRole::new(small_echo()), client_config, now);
    let mut app = ClientApp::new(queue);
    app.pump(&mut client);
    let mut server = Server::new(ServerRole::new(GREETING, small_echo()), server_config, now);
    let mut ignore = crate::driver::Ignore;
    sim.connect_links(
        (&mut client, &mut app),
        (&mut server, &mut ignore),
        links,
        MAX_STEPS,
    )
}

/// A sender of one file of up to three chunks to a receiver.
fn trickled_xfer(
    sim: &mut Sim,
    links: Links<'_>,
    (sender_config, receiver_config): (SessionLimits, SessionLimits),
) -> Result<(PairOutcome, LinkReport), Stuck> {
    use crate::testing::{MemDisk, MemReceiver, MemSender};
    use crate::xfer::{Receiver, ReceiverRole, SafeName, Sender};

    let size = sim.rng.random_range(0..=3 * small_transfer().chunk_size);
    let name = SafeName::new(b"slow.bin", 64).expect("valid");
    let file = (name, bytes::Bytes::from(content(&mut sim.rng, size)));
    let now = sim.now;
    let mut tx = MemSender::new([file]);
    let mut sender = Sender::new(tx.role(small_transfer()), sender_config, now);
    let mut rx = MemReceiver::new(MemDisk::default(), false);
    let mut receiver = Receiver::new(ReceiverRole::new(small_transfer()), receiver_config, now);
    sim.connect_links(
        (&mut sender, &mut tx),
        (&mut receiver, &mut rx),
        links,
        MAX_STEPS,
    )
}
