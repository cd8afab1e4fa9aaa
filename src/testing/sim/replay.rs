//! A recorded secure session played back to a new receiver: what an
//! eavesdropper who kept every byte of a good transfer can do with it.

use std::time::Instant;

use bytes::Bytes;
use rand::Rng;

use super::{content, guarded, Sim, SimReport, HANDSHAKE, MAX_STEPS, SIM_CODE};
use crate::config::UnframedConfig;
use crate::driver::DriverError;
use crate::error::{Error, SecureError};
use crate::secure::{Secure, SecureConfig};
use crate::testing::fuzz::{small_limits, small_transfer};
use crate::testing::{MemDisk, MemReceiver, MemSender};
use crate::unframed::{sealed, Unframed, UnframedLink, UnframedRole};
use crate::xfer::{Receiver, ReceiverRole, SafeName, Sender};

/// One secure file transfer from `seed`, recorded byte for byte on its way
/// to the receiver over a random benign link, then played back, over
/// another, to a new receiver that holds the same code. Invariants: the
/// recorded session delivers the file; the replay fails the new receiver
/// with a wrong code (the old confirmation answers another exchange),
/// before any offer, with nothing saved and the peer never confirmed;
/// bounded steps.
pub fn secure_replay_session(seed: u64) -> Result<SimReport, String> {
    guarded(seed, || replay_inner(seed))
}

fn replay_inner(seed: u64) -> Result<SimReport, String> {
    let start = Instant::now();
    let mut sim = Sim::new(seed, start);
    let size = sim.rng.random_range(0..=4 * small_transfer().chunk_size);
    let name = SafeName::new(b"recorded.bin", 64).expect("valid");
    let data = Bytes::from(content(&mut sim.rng, size));
    let recorded = record_transfer(&mut sim, &name, &data)?;
    if (recorded.len() as u64) < HANDSHAKE + size as u64 {
        return Err(format!("only {} bytes were recorded", recorded.len()));
    }

    let now = sim.now;
    let mut rx = MemReceiver::new(MemDisk::default(), false);
    let receiver = Receiver::new(ReceiverRole::new(small_transfer()), small_limits(), now);
    let seed_b = sim.rng.random();
    let mut b = Secure::server(receiver, SIM_CODE, SecureConfig::default(), now, seed_b);
    let role = Replay(Some(Bytes::from(recorded)));
    let mut replayer = Unframed::with_role(role, UnframedConfig::default(), now);
    let link = sim.random_impairments(false);
    let (outcome, _) = sim
        .connect(
            (&mut replayer, &mut crate::driver::Ignore),
            (&mut b, &mut rx),
            &link,
            MAX_STEPS,
        )
        .map_err(|e| format!("the replay: {e}"))?;
    let wrong_code = matches!(
        outcome.b,
        Err(DriverError::Machine(Error::Secure(SecureError::WrongCode)))
    );
    if !wrong_code {
        return Err(format!(
            "the replayed-to receiver ended with {:?}",
            outcome.b
        ));
    }
    if b.is_confirmed() || !rx.offers.is_empty() || !rx.disk.files.is_empty() {
        return Err(format!(
            "the replay got through: confirmed {}, offers {:?}",
            b.is_confirmed(),
            rx.offers
        ));
    }
    let failure = match &outcome.b {
        Err(e) => super::failure_kind(e)?,
        Ok(()) => unreachable!("checked above: a wrong code"),
    };
    Ok(SimReport {
        seed,
        connections: 2,
        bytes: size as u64,
        elapsed: sim.now - start,
        failures: vec![failure],
        ..SimReport::default()
    })
}

/// A good secure transfer of `data` as `name`; returns every byte the
/// sender wrote toward the receiver.
fn record_transfer(sim: &mut Sim, name: &SafeName, data: &Bytes) -> Result<Vec<u8>, String> {
    let now = sim.now;
    let mut tx = MemSender::new([(name.clone(), data.clone())]);
    let mut rx = MemReceiver::new(MemDisk::default(), false);
    let sender = Sender::new(tx.role(small_transfer()), small_limits(), now);
    let receiver = Receiver::new(ReceiverRole::new(small_transfer()), small_limits(), now);
    let (seed_a, seed_b) = (sim.rng.random(), sim.rng.random());
    let config = SecureConfig::default();
    let mut a = Secure::client(sender, SIM_CODE, config.clone(), now, seed_a);
    let mut b = Secure::server(receiver, SIM_CODE, config, now, seed_b);
    let to_b = super::Impairments {
        record: true,
        ..sim.random_impairments(false)
    };
    let to_a = sim.random_impairments(false);
    let (outcome, link) = sim
        .connect_links(
            (&mut a, &mut tx),
            (&mut b, &mut rx),
            (&to_b, &to_a),
            MAX_STEPS,
        )
        .map_err(|e| format!("the recorded session: {e}"))?;
    if outcome.b.is_err() || rx.disk.files.get(name.as_str()).map(Vec::as_slice) != Some(&data[..])
    {
        return Err(format!("the recorded session failed: {outcome:?}"));
    }
    Ok(link.recorded_to_b)
}

/// Plays recorded bytes to the peer and reads (and drops) whatever comes
/// back until the peer closes.
#[derive(Debug)]
struct Replay(Option<Bytes>);

impl sealed::Sealed for Replay {}

impl UnframedRole for Replay {
    type Event = ();

    fn start(&mut self, link: &mut UnframedLink<()>) {
        if let Some(recorded) = self.0.take() {
            link.send(recorded);
        }
    }

    fn on_read(&mut self, link: &mut UnframedLink<()>) -> Result<(), Error> {
        link.take_read();
        Ok(())
    }

    fn on_eof(&mut self, _link: &mut UnframedLink<()>) -> Result<(), Error> {
        Ok(())
    }

    fn input_room(&self, _link: &UnframedLink<()>) -> usize {
        64 * 1024
    }
}
