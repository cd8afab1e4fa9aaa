#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| echoxfer::testing::mailbox::fuzz_server_answers(data));
