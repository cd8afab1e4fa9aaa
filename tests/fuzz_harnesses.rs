//! The library's fuzz harnesses under `cargo test`, with bolero's random
//! inputs (the same functions back the cargo-fuzz targets in `fuzz/`),
//! plus the seed corpora run through their harnesses.

use std::time::Duration;

use echoxfer::testing::fuzz;

/// Per harness: bounded so the whole file stays well under a minute.
const TIME: Duration = Duration::from_secs(2);

macro_rules! harness {
    ($($name:ident),* $(,)?) => {$(
        #[test]
        fn $name() {
            bolero::check!()
                .with_test_time(TIME)
                .for_each(|data: &[u8]| fuzz::$name(data));
        }
    )*};
}

harness!(
    filexfer,
    receiver,
    echo,
    codec,
    legacy_echo_server,
    legacy_echo_client,
    legacy_file_sender,
    legacy_file_receiver,
    legacy_udp,
);

/// Every seed input passes its harness (a fuzzer starts from them).
#[test]
fn seed_corpora_pass_their_harnesses() {
    for (target, name, data) in fuzz::seed_corpora() {
        assert!(fuzz::TARGETS.contains(&target), "{target}");
        let result = std::panic::catch_unwind(|| fuzz::run(target, &data));
        assert!(result.is_ok(), "seed {target}/{name} failed");
    }
}

/// Writes the seed corpora to `fuzz/corpus/<target>/` (run by hand:
/// `cargo test --test fuzz_harnesses -- --ignored write_seed_corpora`).
#[test]
#[ignore = "writes files; run by hand to refresh fuzz/corpus"]
fn write_seed_corpora() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    for (target, name, data) in fuzz::seed_corpora() {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("seed-{name}")), data).unwrap();
    }
}
