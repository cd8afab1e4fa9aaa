#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| echoxfer::testing::fuzz::transit(data));
