#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| echoxfer::testing::fuzz::legacy_file_receiver(data));
