//! The wormhole interop harness (tests/common/wormhole_servers.rs) proves
//! itself: Python's `wormhole send --text` reaches Python's `wormhole
//! receive` through a local mailbox server and transit relay. Skipped, with
//! one line saying how to run it, when the Python tools are absent (and
//! failed instead under `CI=true`).
#![cfg(unix)]

mod common;
use common::wormhole_servers::{code_in, reported_port, WormholeServers};

#[test]
fn python_sends_text_to_python_through_the_local_servers() {
    let Some(servers) =
        WormholeServers::start("python_sends_text_to_python_through_the_local_servers")
    else {
        return;
    };
    assert!(servers.mailbox_url().starts_with("ws://127.0.0.1:"));
    assert!(servers.mailbox_url().ends_with("/v1"));
    assert!(servers.relay_hint().starts_with("tcp:127.0.0.1:"));
    let text = "hello from the harness";
    let mut send = servers.spawn_wormhole(&["send", "--text", text]);
    let code = send.code();
    // A code the local mailbox allocated: digits, then two words.
    let (nameplate, words) = code.split_once('-').expect("a nameplate and words");
    assert!(nameplate.bytes().all(|b| b.is_ascii_digit()), "{code}");
    assert_eq!(words.split('-').count(), 2, "{code}");
    let receive = servers
        .spawn_wormhole(&["receive", "--no-listen", &code])
        .finish();
    assert_eq!(receive.success_stdout(), format!("{text}\n"));
    let send = send.finish();
    send.success_stdout();
    assert!(send.stderr.contains("text message sent"), "{}", send.stderr);
}

#[test]
fn the_harness_reads_ports_and_codes_from_python_output() {
    let log = "2026-12-07T23:30:00+0000 [-] websocket listening on ws://HOSTNAME:PORT/v1\n\
               2026-12-07T23:30:00+0000 [-] PrivacyEnhancedSite starting on 37907\n";
    assert_eq!(reported_port(log), Some(37907));
    assert_eq!(reported_port("Starting reactor...\n"), None);
    assert_eq!(
        code_in("Wormhole code is: 7-guitarist-revenge").as_deref(),
        Some("7-guitarist-revenge")
    );
    assert_eq!(
        code_in("wormhole receive --verify 12-a-b").as_deref(),
        Some("12-a-b")
    );
    assert_eq!(code_in("On the other computer, please run:"), None);
}
