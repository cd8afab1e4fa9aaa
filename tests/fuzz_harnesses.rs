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
    secure,
);

// The transit harness, with the wormhole client it belongs to.
#[cfg(feature = "wormhole")]
harness!(transit);

/// The transit target's seeds pass its harness, and `fuzz/corpus/transit/`
/// holds exactly them (rewritten with `ECHOXFER_WRITE_CORPORA=1`).
#[cfg(feature = "wormhole")]
#[test]
fn transit_seeds_pass_and_are_committed() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/transit");
    let write = std::env::var_os("ECHOXFER_WRITE_CORPORA").is_some();
    for (name, data) in fuzz::transit_seeds() {
        fuzz::transit(&data);
        let path = root.join(format!("seed-{name}"));
        if write {
            std::fs::create_dir_all(&root).unwrap();
            std::fs::write(&path, &data).unwrap();
        }
        let committed = std::fs::read(&path).unwrap_or_default();
        assert!(
            committed == data,
            "{} is stale: rerun with ECHOXFER_WRITE_CORPORA=1",
            path.display()
        );
    }
}

/// Every seed input passes its harness (a fuzzer starts from them).
#[test]
fn seed_corpora_pass_their_harnesses() {
    for (target, name, data) in fuzz::seed_corpora() {
        assert!(fuzz::TARGETS.contains(&target), "{target}");
        let result = std::panic::catch_unwind(|| fuzz::run(target, &data));
        assert!(result.is_ok(), "seed {target}/{name} failed");
    }
}

/// The committed seed corpora under `fuzz/corpus/<target>/` are exactly
/// what the generator makes. With `ECHOXFER_WRITE_CORPORA=1` the test
/// (re)writes them instead, after a change to a harness or the wire.
#[test]
fn committed_seed_corpora_match_the_generator() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let write = std::env::var_os("ECHOXFER_WRITE_CORPORA").is_some();
    for (target, name, data) in fuzz::seed_corpora() {
        let path = root.join(target).join(format!("seed-{name}"));
        if write {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &data).unwrap();
        }
        let committed = std::fs::read(&path).unwrap_or_default();
        assert!(
            committed == data,
            "{} is stale: rerun with ECHOXFER_WRITE_CORPORA=1",
            path.display()
        );
    }
}
