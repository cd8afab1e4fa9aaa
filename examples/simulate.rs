//! Runs the deterministic simulator over many seeds and prints a summary.
//!
//! ```sh
//! cargo run --release --example simulate -- [--protocol P] [--seed S | --from F --count N]
//! ```
//!
//! Protocols: `echo`, `xfer`, `trickle` (sessions where one side trickles
//! its bytes), and with the secure channel on, `secure-xfer`,
//! `secure-tamper` (one byte or record edited after the handshake),
//! `secure-wrong-code` and `secure-replay` (a recorded session played back
//! to a new receiver). Without `--protocol` all of them run. Exits non-zero if any seed breaks an
//! invariant, printing the seed and the command that replays it.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Instant;

use echoxfer::testing::sim::{
    echo_session, secure_replay_session, secure_tamper_session, secure_wrong_code_session,
    secure_xfer_session, trickle_session, xfer_session, SimReport,
};

const PROTOCOLS: [&str; 7] = [
    "echo",
    "xfer",
    "trickle",
    "secure-xfer",
    "secure-tamper",
    "secure-wrong-code",
    "secure-replay",
];

fn usage() -> ExitCode {
    eprintln!(
        "usage: simulate [--protocol {}] [--seed S | --from F --count N]",
        PROTOCOLS.join("|")
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let mut protocols = PROTOCOLS.to_vec();
    let (mut from, mut count) = (0u64, 1000u64);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(());
        let parsed = match arg.as_str() {
            "--protocol" => value().and_then(|p| {
                let p = PROTOCOLS.into_iter().find(|k| *k == p).ok_or(())?;
                protocols = vec![p];
                Ok(())
            }),
            "--seed" => value().and_then(|v| v.parse().map_err(drop)).map(|s| {
                from = s;
                count = 1;
            }),
            "--from" => value()
                .and_then(|v| v.parse().map_err(drop))
                .map(|s| from = s),
            "--count" => value()
                .and_then(|v| v.parse().map_err(drop))
                .map(|n| count = n),
            "-h" | "--help" => return usage(),
            _ => Err(()),
        };
        if parsed.is_err() {
            return usage();
        }
    }
    let mut broken = 0;
    for protocol in protocols {
        let session: fn(u64) -> Result<SimReport, String> = match protocol {
            "echo" => echo_session,
            "trickle" => trickle_session,
            "secure-xfer" => secure_xfer_session,
            "secure-tamper" => secure_tamper_session,
            "secure-wrong-code" => secure_wrong_code_session,
            "secure-replay" => secure_replay_session,
            _ => xfer_session,
        };
        let started = Instant::now();
        let mut s = Summary::default();
        for seed in from..from.saturating_add(count) {
            match session(seed) {
                Ok(r) => s.add(&r),
                Err(e) => {
                    broken += 1;
                    println!("BROKEN {e}");
                    println!(
                        "  replay: cargo run --release --example simulate -- --protocol {protocol} --seed {seed}"
                    );
                }
            }
            if count == 1 {
                if let Ok(r) = session(seed) {
                    println!("{r:#?}");
                }
            }
        }
        println!(
            "{protocol}: {} seeds run ({}..{}) in {:.1?}: {} clean, {} with typed failures, {} broken",
            count,
            from,
            from.saturating_add(count),
            started.elapsed(),
            s.clean,
            s.failed_runs,
            count - s.runs
        );
        println!(
            "  hostile runs {}, connections {}, cuts {}, resumes {}, corrupted runs {} ({} bits), stalls {}",
            s.hostile, s.connections, s.cuts, s.resumes, s.corrupted, s.bits, s.stalls
        );
        println!("  payload {} bytes, re-sent {} bytes", s.bytes, s.resent);
        let kinds: Vec<String> = s.kinds.iter().map(|(k, n)| format!("{k} {n}")).collect();
        println!(
            "  typed failures by kind: {}",
            if kinds.is_empty() {
                "none".into()
            } else {
                kinds.join(", ")
            }
        );
    }
    if broken > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

#[derive(Default)]
struct Summary {
    runs: u64,
    clean: u64,
    failed_runs: u64,
    hostile: u64,
    connections: u64,
    cuts: u64,
    resumes: u64,
    corrupted: u64,
    bits: u64,
    stalls: u64,
    bytes: u64,
    resent: u64,
    kinds: BTreeMap<&'static str, u64>,
}

impl Summary {
    fn add(&mut self, r: &SimReport) {
        self.runs += 1;
        if r.is_clean() {
            self.clean += 1;
        } else {
            self.failed_runs += 1;
        }
        self.hostile += u64::from(r.hostile);
        self.connections += u64::from(r.connections);
        self.cuts += u64::from(r.cuts);
        self.resumes += u64::from(r.resumes);
        self.corrupted += u64::from(r.corrupted_connections > 0);
        self.bits += r.corrupted_bits;
        self.stalls += r.stalls;
        self.bytes += r.bytes;
        self.resent += r.resent;
        for k in &r.failures {
            *self.kinds.entry(k).or_default() += 1;
        }
    }
}
