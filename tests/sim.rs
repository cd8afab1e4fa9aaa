//! The deterministic simulator over many seeds: echo and file-transfer
//! sessions over benign and hostile simulated links (latency,
//! fragmentation, coalescing, stalls, corruption, cuts), with reconnects
//! and resumes, and sessions where one side trickles its bytes, all in
//! virtual time. `SIM_SEEDS` sets how many seeds each
//! protocol runs (default 2500); a failure prints the seed and the command
//! that replays it.

use echoxfer::testing::sim::{
    echo_session, secure_replay_session, secure_tamper_session, secure_wrong_code_session,
    secure_xfer_session, trickle_session, xfer_session, SimReport,
};

fn seeds() -> u64 {
    std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2500)
}

fn run(protocol: &str, session: fn(u64) -> Result<SimReport, String>) -> Vec<SimReport> {
    run_some(protocol, session, seeds())
}

fn run_some(
    protocol: &str,
    session: fn(u64) -> Result<SimReport, String>,
    count: u64,
) -> Vec<SimReport> {
    let mut reports = Vec::new();
    let mut failures = Vec::new();
    for seed in 0..count {
        match session(seed) {
            Ok(r) => reports.push(r),
            Err(e) => failures.push(format!(
                "{e}\n  replay: cargo run --release --example simulate -- --protocol {protocol} --seed {seed}"
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    reports
}

#[test]
fn echo_sessions_keep_their_invariants_over_many_seeds() {
    let reports = run("echo", echo_session);
    // The seeds cover what they should: clean runs and every impairment.
    assert!(reports.iter().any(SimReport::is_clean));
    if reports.len() >= 500 {
        assert!(reports.iter().any(|r| r.cuts > 0), "no seed cut a link");
        assert!(
            reports.iter().any(|r| r.corrupted_bits > 0),
            "no seed corrupted"
        );
        assert!(reports.iter().any(|r| r.failures.contains(&"timeout")));
    }
}

#[test]
fn file_transfers_arrive_identical_or_resume_over_many_seeds() {
    let reports = run("xfer", xfer_session);
    assert!(reports.iter().any(SimReport::is_clean));
    if reports.len() >= 500 {
        assert!(reports.iter().any(|r| r.resumes > 0), "no seed resumed");
        assert!(reports.iter().any(|r| r.cuts > 0), "no seed cut a link");
        assert!(
            reports.iter().any(|r| r.corrupted_bits > 0),
            "no seed corrupted"
        );
    }
}

#[test]
fn trickling_peers_end_by_the_handshake_and_frame_deadlines_over_many_seeds() {
    // A fifth of the seeds: each trickled byte is a step of its own.
    let reports: Vec<SimReport> = run_some("trickle", trickle_session, seeds() / 5);
    assert!(reports.iter().all(|r| !r.is_clean()));
    if reports.len() >= 100 {
        assert!(reports.iter().any(|r| r.failures.contains(&"too-slow")));
    }
}

#[test]
fn a_seed_replays_exactly() {
    for seed in [1, 7, 42] {
        assert_eq!(xfer_session(seed), xfer_session(seed));
        assert_eq!(echo_session(seed), echo_session(seed));
        assert_eq!(trickle_session(seed), trickle_session(seed));
    }
}

#[test]
fn secure_file_transfers_arrive_identical_or_resume_over_many_seeds() {
    // A fifth of the seeds: the same files and links as the plain runs,
    // every byte through the secure channel.
    let reports = run_some("secure-xfer", secure_xfer_session, seeds() / 5);
    assert!(reports.iter().any(SimReport::is_clean));
    // Each side reads the other's close record before it closes: a clean
    // end never resets the connection.
    let benign_cuts: u32 = reports.iter().filter(|r| !r.hostile).map(|r| r.cuts).sum();
    assert_eq!(benign_cuts, 0, "clean secure sessions ended in a reset");
    if reports.len() >= 400 {
        assert!(reports.iter().any(|r| r.resumes > 0), "no seed resumed");
        assert!(
            reports.iter().any(|r| r
                .failures
                .iter()
                .any(|f| ["integrity", "truncated"].contains(f))),
            "no seed hit an integrity error or a truncation"
        );
    }
}

#[test]
fn one_edited_byte_or_record_after_the_handshake_ends_the_session_with_an_integrity_error_and_no_final_file_over_many_seeds(
) {
    let reports = run_some("secure-tamper", secure_tamper_session, seeds() / 5);
    // Nearly every edit changes the stream (a swap of two equal bytes does not).
    let edited = reports
        .iter()
        .filter(|r| r.corrupted_connections > 0)
        .count();
    assert!(
        edited * 10 >= reports.len() * 9,
        "only {edited} of {} edits changed the stream",
        reports.len()
    );
}

#[test]
fn a_wrong_code_fails_both_sides_before_any_offer_over_many_seeds() {
    let reports = run_some("secure-wrong-code", secure_wrong_code_session, seeds() / 5);
    assert!(reports
        .iter()
        .all(|r| r.failures == ["wrong-code", "wrong-code"]));
}

#[test]
fn a_recorded_secure_session_replayed_to_a_new_receiver_fails_with_a_wrong_code_before_any_offer_over_many_seeds(
) {
    let reports = run_some("secure-replay", secure_replay_session, seeds() / 10);
    assert!(!reports.is_empty());
    assert!(reports.iter().all(|r| r.failures == ["wrong-code"]));
}

/// Bound: many small files over a 20 ms round trip take a few window turns,
/// not a round trip each. With a window of 256 entries, 500 files (and 10
/// directories) need two turns; each costs about two round trips (offers
/// out and accepts back, then the group's confirmations after `Flush`).
/// One round trip per file would be 500 of them.
#[test]
fn many_small_files_cost_window_turns_not_a_round_trip_each() {
    use echoxfer::testing::sim::many_files_session;
    use std::time::Duration;
    let one_way = Duration::from_millis(10);
    let rtt = 2 * one_way;
    let few = many_files_session(50, one_way, 1).expect("50 files");
    let many = many_files_session(500, one_way, 2).expect("500 files");
    eprintln!("50 files: {:?}; 500 files: {:?}", few.elapsed, many.elapsed);
    assert_eq!(few.saved, 60);
    assert_eq!(many.saved, 510);
    assert!(
        many.elapsed <= 12 * rtt,
        "500 files took {:?}, {:.1} round trips",
        many.elapsed,
        many.elapsed.as_secs_f64() / rtt.as_secs_f64()
    );
    // Ten times the files: a window turn more, not 450 round trips more.
    assert!(
        many.elapsed <= few.elapsed + 6 * rtt,
        "50 files {:?}, 500 files {:?}",
        few.elapsed,
        many.elapsed
    );
}
