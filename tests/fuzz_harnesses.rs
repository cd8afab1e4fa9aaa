//! The library's fuzz harnesses under `cargo test`, with bolero's random
//! inputs (the same functions back the cargo-fuzz targets in `fuzz/`).

use std::time::Duration;

#[test]
fn fuzz_receiver() {
    bolero::check!()
        .with_test_time(Duration::from_secs(3))
        .for_each(|data: &[u8]| echoxfer::testing::fuzz::receiver(data));
}

#[test]
fn fuzz_filexfer() {
    bolero::check!()
        .with_test_time(Duration::from_secs(3))
        .for_each(|data: &[u8]| echoxfer::testing::fuzz::filexfer(data));
}
