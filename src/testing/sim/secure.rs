//! Secure sessions with an edited stream or the wrong code.

use super::*;

/// One secure file transfer from `seed` in which the sender's stream to the
/// receiver is edited once after the handshake: one byte (within the
/// file's data) or one record (of the first few after the offer) flipped,
/// dropped, duplicated or swapped with the next, over a random benign link
/// (latency, fragmentation, coalescing, a window). Invariants: if the edit
/// changed the stream, the receiver ends with an integrity error, the
/// sender with an integrity error or the receiver's report of its failure
/// (never believing the file delivered), and nothing is ever under the
/// final name (nothing saved); if it did not (a swap of two equal bytes),
/// the file arrives identical; bounded steps.
pub fn secure_tamper_session(seed: u64) -> Result<SimReport, String> {
    guarded(seed, || secure_tamper_inner(seed))
}

fn secure_tamper_inner(seed: u64) -> Result<SimReport, String> {
    use crate::testing::netem::{Tamper, TamperOp, TamperTarget};
    use crate::testing::{MemDisk, MemReceiver, MemSender};
    use crate::xfer::SafeName;

    let start = Instant::now();
    let mut sim = Sim::new(seed, start);
    let chunk = small_transfer().chunk_size;
    let size = sim.rng.random_range(4 * chunk..=8 * chunk);
    let name = SafeName::new(b"tampered.bin", 64).expect("valid");
    let data = bytes::Bytes::from(content(&mut sim.rng, size));
    let ops = [
        TamperOp::Flip,
        TamperOp::Drop,
        TamperOp::Duplicate,
        TamperOp::Swap,
    ];
    let op = ops[sim.rng.random_range(0..ops.len())];
    // After the first record (the preamble and the offer, which the
    // sender follows with nothing until it is accepted): the file's data,
    // which flows on, so an edit that needs the next bytes gets them.
    let target = match sim.rng.random_bool(0.5) {
        true => TamperTarget::Byte(HANDSHAKE + sim.rng.random_range(200..2 * chunk as u64)),
        false => TamperTarget::Record(sim.rng.random_range(1..4)),
    };
    let tampered = Impairments {
        tamper: Some(Tamper { op, target }),
        ..sim.random_impairments(false)
    };
    let plain = sim.random_impairments(false);
    let config = SecureConfig {
        max_record: sim.rng.random_range(256..=1024),
        ..SecureConfig::default()
    };
    let now = sim.now;
    let mut tx = MemSender::new([(name.clone(), data.clone())]);
    let mut rx = MemReceiver::new(MemDisk::default(), false);
    let sender = crate::xfer::Sender::new(tx.role(small_transfer()), small_limits(), now);
    let receiver = crate::xfer::Receiver::new(
        crate::xfer::ReceiverRole::new(small_transfer()),
        small_limits(),
        now,
    );
    let mut a = Secure::client(sender, SIM_CODE, config.clone(), now, sim.rng.random());
    let mut b = Secure::server(receiver, SIM_CODE, config, now, sim.rng.random());
    let (outcome, link) = sim
        .connect_links(
            (&mut a, &mut tx),
            (&mut b, &mut rx),
            (&tampered, &plain),
            MAX_STEPS,
        )
        .map_err(|e| e.to_string())?;
    let edit = format!("{op:?} {target:?}");
    if std::env::var_os("SIM_DEBUG").is_some() {
        eprintln!("{edit} of a {size}-byte file: {tampered:?}\n  {outcome:?}\n  {link:?}");
    }
    if !link.tampered {
        // The edit changed nothing: the transfer is whole.
        if outcome.a.is_err() || outcome.b.is_err() {
            return Err(format!("{edit} changed nothing, yet: {outcome:?}"));
        }
        if rx.disk.files.get(name.as_str()).map(Vec::as_slice) != Some(&data[..]) {
            return Err(format!("{edit} changed nothing, yet the file differs"));
        }
    } else {
        if !is_integrity(&outcome.b) {
            return Err(format!("{edit}: the receiver ended with {:?}", outcome.b));
        }
        // The sender learns it from the channel, or from the receiver's
        // report of a failure of its own (an edited record length made it
        // wait for bytes that never came, until its frame deadline).
        let told = matches!(
            outcome.a,
            Err(DriverError::Machine(crate::Error::PeerFailed { .. }))
        );
        if !(is_integrity(&outcome.a) || told) || !tx.delivered.is_empty() {
            return Err(format!("{edit}: the sender ended with {:?}", outcome.a));
        }
        if !rx.disk.files.is_empty() || !rx.saved.is_empty() {
            return Err(format!("{edit} left a file under its final name"));
        }
    }
    let mut report = SimReport {
        seed,
        connections: 1,
        corrupted_connections: u32::from(link.tampered),
        bytes: size as u64,
        elapsed: sim.now - start,
        ..SimReport::default()
    };
    report.note_failures(&outcome)?;
    Ok(report)
}

/// One secure session from `seed`, a file transfer or echo, in which the
/// two sides hold different codes (one character changed, or another code
/// altogether), over a random benign link. Invariants: both sides fail
/// with a wrong code, each having seen the other's hello and neither
/// confirmed; the wrapped machines see nothing: no offer, no file, no
/// greeting or reply; bounded steps.
pub fn secure_wrong_code_session(seed: u64) -> Result<SimReport, String> {
    guarded(seed, || secure_wrong_code_inner(seed))
}

fn secure_wrong_code_inner(seed: u64) -> Result<SimReport, String> {
    let start = Instant::now();
    let mut sim = Sim::new(seed, start);
    let mut other = SIM_CODE.to_vec();
    if sim.rng.random_bool(0.8) {
        let i = sim.rng.random_range(0..other.len());
        other[i] = match other[i] {
            b'z' => b'a',
            c => c + 1,
        };
    } else {
        other = b"412-guess-guess-guess".to_vec();
    }
    let (client_code, server_code) = match sim.rng.random_bool(0.5) {
        true => (SIM_CODE, &other[..]),
        false => (&other[..], SIM_CODE),
    };
    let links = (sim.random_impairments(false), sim.random_impairments(false));
    let config = SecureConfig::default();
    let codes = (client_code, server_code);
    let (outcome, link, seen) = match sim.rng.random_bool(0.5) {
        true => wrong_code_xfer(&mut sim, codes, (&links.0, &links.1), &config)?,
        false => wrong_code_echo(&mut sim, codes, (&links.0, &links.1), &config)?,
    };
    if let Some(seen) = seen {
        return Err(format!("the wrapped machine saw {seen}"));
    }
    for (side, result) in [("client", &outcome.a), ("server", &outcome.b)] {
        let wrong = matches!(
            result,
            Err(DriverError::Machine(crate::Error::Secure(
                crate::error::SecureError::WrongCode
            )))
        );
        if !wrong {
            return Err(format!(
                "the {side} ended with {result:?}, not a wrong code"
            ));
        }
    }
    let mut report = SimReport {
        seed,
        connections: 1,
        stalls: link.stalls,
        elapsed: sim.now - start,
        ..SimReport::default()
    };
    report.note_failures(&outcome)?;
    Ok(report)
}

fn is_integrity(result: &Result<(), DriverError>) -> bool {
    matches!(
        result,
        Err(DriverError::Machine(crate::Error::Secure(
            crate::error::SecureError::Integrity(_) | crate::error::SecureError::Truncated
        )))
    )
}

/// A wrong-code session's outcome, its links, and what (if anything) the
/// wrapped machines let through.
type WrongCodeRun = (PairOutcome, LinkReport, Option<String>);

/// Both sides of a secure session after it: each saw the other's hello
/// (a guess was spent) and neither was confirmed.
fn handshake_failed<A: StreamMachine, B: StreamMachine>(
    a: &Secure<A>,
    b: &Secure<B>,
) -> Option<String> {
    let spent = a.has_peer_hello() && b.has_peer_hello();
    let confirmed = a.is_confirmed() || b.is_confirmed();
    (!spent || confirmed).then(|| format!("hellos taken {spent}, a side confirmed {confirmed}"))
}

fn wrong_code_xfer(
    sim: &mut Sim,
    (client_code, server_code): (&[u8], &[u8]),
    links: Links<'_>,
    config: &SecureConfig,
) -> Result<WrongCodeRun, String> {
    use crate::testing::{MemDisk, MemReceiver, MemSender};
    use crate::xfer::{Receiver, ReceiverRole, SafeName, Sender};

    let name = SafeName::new(b"never.bin", 64).expect("valid");
    let data = bytes::Bytes::from(content(&mut sim.rng, 3000));
    let now = sim.now;
    let mut tx = MemSender::new([(name, data)]);
    let mut rx = MemReceiver::new(MemDisk::default(), false);
    let sender = Sender::new(tx.role(small_transfer()), small_limits(), now);
    let receiver = Receiver::new(ReceiverRole::new(small_transfer()), small_limits(), now);
    let mut a = Secure::client(sender, client_code, config.clone(), now, sim.rng.random());
    let mut b = Secure::server(receiver, server_code, config.clone(), now, sim.rng.random());
    let (outcome, link) = sim
        .connect_links((&mut a, &mut tx), (&mut b, &mut rx), links, MAX_STEPS)
        .map_err(|e| e.to_string())?;
    let seen = if !rx.offers.is_empty() || !rx.disk.partials.is_empty() {
        Some(format!("offers {:?}", rx.offers))
    } else if !rx.disk.files.is_empty() || !tx.started.is_empty() {
        Some("a file started".into())
    } else {
        handshake_failed(&a, &b)
    };
    Ok((outcome, link, seen))
}

fn wrong_code_echo(
    sim: &mut Sim,
    (client_code, server_code): (&[u8], &[u8]),
    links: Links<'_>,
    config: &SecureConfig,
) -> Result<WrongCodeRun, String> {
    use crate::echo::{Client, ClientEvent, ClientRole, Server, ServerRole};
    use crate::testing::fuzz::echo::GREETING;

    let now = sim.now;
    let mut client = Client::new(ClientRole::new(small_echo()), small_limits(), now);
    client
        .send(bytes::Bytes::from_static(b"for your eyes only"))
        .map_err(|e| e.to_string())?;
    client.close().map_err(|e| e.to_string())?;
    let server = Server::new(ServerRole::new(GREETING, small_echo()), small_limits(), now);
    let mut a = Secure::client(client, client_code, config.clone(), now, sim.rng.random());
    let mut b = Secure::server(server, server_code, config.clone(), now, sim.rng.random());
    let mut events = Vec::new();
    let mut app = |_: &mut Secure<Client>, _: Instant, e: ClientEvent| {
        events.push(e);
        Ok(())
    };
    let (outcome, link) = sim
        .connect_links(
            (&mut a, &mut app),
            (&mut b, &mut crate::driver::Ignore),
            links,
            MAX_STEPS,
        )
        .map_err(|e| e.to_string())?;
    let seen = match events.is_empty() {
        false => Some(format!("client events {events:?}")),
        true => handshake_failed(&a, &b),
    };
    Ok((outcome, link, seen))
}
