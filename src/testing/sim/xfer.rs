//! File-transfer sessions over simulated links, plain and secure: they
//! reconnect and resume, and only exact sources get a final name.

use super::*;

/// One file-transfer run from `seed`: one to three files of random bytes
/// with `quit`, `exit` and `success` lines, sized around chunk boundaries,
/// sent over simulated links (benign or hostile); after a failed
/// connection, fresh machines reconnect over the same receiver directory
/// and resume, for a bounded number of attempts (the last ones on a clean
/// link). Invariants: every file ends byte-identical under its name;
/// nothing is ever under a final name that is not exactly its source; a
/// resume after a connection with no corruption starts exactly where the
/// partial file ends; re-sent bytes stay within what the dropped
/// connections could have had in flight; every failure is typed; timeouts
/// need a stall or corruption; bounded steps.
pub fn xfer_session(seed: u64) -> Result<SimReport, String> {
    guarded(seed, || xfer_inner(seed, None))
}

/// [`xfer_session`] with both machines behind the secure channel, records
/// of a random size (one byte to the limit): the same invariants, and a
/// tampered or cut connection fails typed (an integrity error, a wrong
/// code if the handshake was hit) and the transfer resumes on the next.
pub fn secure_xfer_session(seed: u64) -> Result<SimReport, String> {
    guarded(seed, || {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ SECURE_STREAM);
        let max_record = match rng.random_range(0..4) {
            0 => rng.random_range(1..64),
            1 => rng.random_range(64..2048),
            2 => crate::secure::RECORD_LIMIT,
            _ => rng.random_range(2048..=crate::secure::RECORD_LIMIT),
        };
        let config = SecureConfig {
            max_record,
            ..SecureConfig::default()
        };
        xfer_inner(seed, Some(config))
    })
}

/// Mixed into a seed for the secure runs' own choices, so that a secure
/// run sees the same files and links as the plain run of its seed.
const SECURE_STREAM: u64 = 0x5ec0_5ec0_5ec0_5ec0;

/// One connection of a transfer between `tx` and `rx`, plain or (with a
/// config) behind the secure channel.
fn connect_xfer(
    sim: &mut Sim,
    (tx, rx): (
        &mut crate::testing::MemSender,
        &mut crate::testing::MemReceiver,
    ),
    imp: &Impairments,
    secure: Option<&SecureConfig>,
) -> Result<(PairOutcome, LinkReport), Stuck> {
    use crate::xfer::{Receiver, ReceiverRole, Sender};

    let now = sim.now;
    let mut sender = Sender::new(tx.role(small_transfer()), small_limits(), now);
    let mut receiver = Receiver::new(ReceiverRole::new(small_transfer()), small_limits(), now);
    let Some(config) = secure else {
        return sim.connect((&mut sender, tx), (&mut receiver, rx), imp, MAX_STEPS);
    };
    let (seed_a, seed_b) = (sim.rng.random(), sim.rng.random());
    let mut sender = Secure::client(sender, SIM_CODE, config.clone(), now, seed_a);
    let mut receiver = Secure::server(receiver, SIM_CODE, config.clone(), now, seed_b);
    sim.connect((&mut sender, tx), (&mut receiver, rx), imp, MAX_STEPS)
}

/// Connections tried before a run must be complete.
const ATTEMPTS: u32 = 6;
/// Of those, how many may be on a hostile link.
const HOSTILE_ATTEMPTS: u32 = 3;

fn xfer_inner(seed: u64, secure: Option<SecureConfig>) -> Result<SimReport, String> {
    use crate::testing::{MemDisk, MemReceiver, MemSender};
    use crate::xfer::SafeName;
    use bytes::Bytes;

    let start = Instant::now();
    let mut sim = Sim::new(seed, start);
    let hostile = sim.rng.random_bool(0.4);
    let config = small_limits();
    let chunk = small_transfer().chunk_size;
    let files: Vec<(SafeName, Bytes)> = (0..sim.rng.random_range(1..=3))
        .map(|i| {
            let size = match sim.rng.random_range(0..8) {
                0 => 0,
                1 => 1,
                2 => chunk - 1,
                3 => chunk,
                4 => chunk + 1,
                5 => 2 * chunk,
                6 => 3 * chunk + 7,
                _ => sim.rng.random_range(0..=6 * chunk),
            };
            let name = SafeName::new(format!("file{i}.txt").as_bytes(), 64).expect("valid");
            (name, Bytes::from(content(&mut sim.rng, size)))
        })
        .collect();
    let total: u64 = files.iter().map(|(_, c)| c.len() as u64).sum();
    let mut report = SimReport {
        seed,
        hostile,
        bytes: total,
        ..SimReport::default()
    };
    let mut disk = MemDisk::default();
    let mut pushed = 0u64;
    let mut lost_budget = 0u64;
    // Once bits were flipped, a partial file may hold them: resuming from
    // 0 instead of its end is then right.
    let mut ever_corrupted = false;
    for attempt in 0..ATTEMPTS {
        let imp = sim.random_impairments(hostile && attempt < HOSTILE_ATTEMPTS);
        // What the receiver holds of each file: all of it once saved (an
        // attempt then finds it up to date), else its partial file.
        let held: Vec<usize> = files
            .iter()
            .map(|(n, c)| match disk.files.contains_key(n.as_str()) {
                true => c.len(),
                false => disk.partials.get(n.as_str()).map_or(0, Vec::len),
            })
            .collect();
        let mut tx = MemSender::new(files.iter().cloned());
        let mut rx = MemReceiver::new(disk, false);
        let (outcome, link) = connect_xfer(&mut sim, (&mut tx, &mut rx), &imp, secure.as_ref())
            .map_err(|e| format!("attempt {attempt}: {e}"))?;
        disk = rx.disk;
        if std::env::var_os("SIM_DEBUG").is_some() {
            eprintln!(
                "attempt {attempt}: {imp:?}\n  {outcome:?}\n  {link:?}\n  held {held:?} started {:?} delivered {:?} rejected {:?}\n  partials {:?} files {:?}",
                tx.started,
                tx.delivered.iter().map(|d| d.0).collect::<Vec<_>>(),
                tx.rejected,
                disk.partials.iter().map(|(k, v)| (k, v.len())).collect::<Vec<_>>(),
                disk.files.iter().map(|(k, v)| (k, v.len())).collect::<Vec<_>>(),
            );
        }
        report.connections += 1;
        report.cuts += u32::from(link.cut);
        report.corrupted_connections += u32::from(link.corrupted > 0);
        report.corrupted_bits += link.corrupted;
        report.stalls += link.stalls;
        pushed += tx.pushed;
        report.note_failures(&outcome)?;
        // Nothing under a final name but its exact source; the content of
        // a final file is always exactly some source (its hash matched).
        for (name, held) in &disk.files {
            if !files.iter().any(|(_, c)| held[..] == c[..]) {
                return Err(format!(
                    "attempt {attempt}: {name} holds content never sent"
                ));
            }
            // `End` certifies the offer (name and size) as well as the
            // content, so even a corrupted link never misnames a file.
            let source = files.iter().find(|(n, _)| n.as_str() == name);
            if source.is_none_or(|(_, c)| held[..] != c[..]) {
                return Err(format!(
                    "attempt {attempt}: {name:?} under a final name is not its source"
                ));
            }
        }
        for &(file, from) in &tx.started {
            if from > 0 {
                report.resumes += 1;
            }
            if !ever_corrupted && link.corrupted == 0 && from != held[file] as u64 {
                return Err(format!(
                    "attempt {attempt}: file {file} resumed at {from}, its partial holds {}",
                    held[file]
                ));
            }
        }
        let impaired = link.cut || link.corrupted > 0 || link.stalls > 0;
        if !impaired && (outcome.a.is_err() || outcome.b.is_err()) {
            return Err(format!(
                "attempt {attempt} failed on a perfect link: {outcome:?}"
            ));
        }
        let timed_out = [&outcome.a, &outcome.b].iter().any(|r| match r {
            Err(DriverError::Machine(crate::Error::TimedOut(_) | crate::Error::TooSlow { .. })) => {
                true
            }
            Err(e) => e.is_stalled_peer(),
            Ok(()) => false,
        });
        if timed_out && link.stalls == 0 && link.corrupted == 0 {
            return Err(format!(
                "attempt {attempt} timed out with no stall and no corruption"
            ));
        }
        // What a dropped or failed connection may have lost in flight: the
        // link's window, both machines' buffers and a chunk being read.
        if outcome.a.is_err() || outcome.b.is_err() {
            let window = imp.window.min(1 << 24) as u64;
            let mut buffers = (config.send_buffer + config.recv_buffer + 2 * chunk) as u64;
            if let Some(secure) = &secure {
                // Each side's channel: a record being built, and two
                // whole records of input held.
                let record = (secure.max_record + RECORD_HEADER + TAG_LEN) as u64;
                buffers += 2 * 3 * record;
            }
            lost_budget += window + buffers;
            if link.corrupted > 0 {
                // A corrupted partial is discarded and sent again whole.
                lost_budget += total;
            }
        }
        ever_corrupted |= link.corrupted > 0;
        let done = files
            .iter()
            .all(|(n, _)| disk.files.contains_key(n.as_str()));
        if done {
            break;
        }
    }
    for (name, _) in &files {
        if !disk.files.contains_key(name.as_str()) {
            return Err(format!("{name} never arrived in {ATTEMPTS} connections"));
        }
    }
    report.resent = pushed.saturating_sub(total);
    if report.resent > lost_budget {
        return Err(format!(
            "{} bytes re-sent, more than the {lost_budget} the failed connections could lose",
            report.resent
        ));
    }
    report.elapsed = sim.now - start;
    Ok(report)
}
