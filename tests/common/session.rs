//! One file-transfer session between a sender and a receiver joined by the
//! in-memory pair.

use std::time::Instant;

use echoxfer::driver::App;
use echoxfer::testing::fuzz::{small_limits, small_transfer};
use echoxfer::testing::{Cutter, Pair, PairOutcome};
use echoxfer::xfer::{Receiver, ReceiverRole, Sender, SenderRole};

/// How a session ended on each side, and the two apps after it.
pub struct Run<T, R> {
    pub outcome: PairOutcome,
    pub tx: T,
    pub rx: R,
}

/// Runs a sender of `role` answered by `tx` against a fresh receiver
/// answered by `rx` (both with `small_limits()` and `small_transfer()`), the stream cut into
/// pieces by `cutter`, dropped after `cut` bytes and with the byte at
/// `flip` corrupted when given. Panics if it takes a million steps.
pub fn run_session<T: App<Sender>, R: App<Receiver>>(
    role: SenderRole,
    mut tx: T,
    mut rx: R,
    cutter: Cutter,
    cut: Option<u64>,
    flip: Option<u64>,
) -> Run<T, R> {
    let now = Instant::now();
    let a = Sender::new(role, small_limits(), now);
    let b = Receiver::new(ReceiverRole::new(small_transfer()), small_limits(), now);
    let mut pair = Pair::new(a, b, now, cutter);
    if let Some(n) = cut {
        pair = pair.cut_after(n);
    }
    if let Some(n) = flip {
        pair = pair.flip_at(n);
    }
    let outcome = pair.run(&mut tx, &mut rx, 1_000_000).expect("bounded");
    Run { outcome, tx, rx }
}
