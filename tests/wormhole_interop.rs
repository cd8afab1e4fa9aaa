//! The echoxfer CLI against Python's magic-wormhole (and a wrong code between two echoxfers)
//! through a local mailbox server and transit relay
//! (tests/common/wormhole_servers.rs): texts both ways; files both ways,
//! direct (echoxfer offers `--hint-addr 127.0.0.1`, Python runs
//! `--no-listen` and connects to it) and forced through the relay
//! (`--no-listen` on both sides); echoxfer to echoxfer; a wrong code; the
//! refusals a receiver sends back (an existing file or folder); folders
//! both ways as the protocol's zip; an unreachable mailbox. echoxfer to
//! echoxfer (the native protocol over transit) is tests/wormhole_native.rs. Nothing here reaches the public servers: every
//! echoxfer run gets `--relay-url` and `--transit-helper`, and every
//! Python run the harness's.
//!
//! Skipped, with one line saying how to run them, when the Python tools
//! are absent (failed instead under `CI=true`); the unreachable-mailbox
//! test needs no Python and always runs. Every wait is bounded; every
//! process is killed with its process group if a test fails.
#![cfg(unix)]

use std::collections::BTreeMap;
use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod common;
use common::echoxfer_wormhole::{echoxfer, echoxfer_with, EchoWormhole};
use common::files::{content, dirs, entries, same_file, write_src, Dirs};
use common::wormhole_servers::{Finished, WormholeServers};

/// How the bytes of a file may travel.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Route {
    /// echoxfer listens and offers 127.0.0.1 only; Python (`--no-listen`)
    /// connects to it.
    Direct,
    /// echoxfer offers no direct hint either: only the relay is left.
    Relay,
}

impl Route {
    /// echoxfer's flags for this route.
    fn echoxfer_args(self) -> &'static [&'static str] {
        match self {
            Route::Direct => &["--hint-addr", "127.0.0.1"],
            Route::Relay => &["--no-listen"],
        }
    }
}

/// The files of the file tests: a few MB of incompressible bytes, an
/// empty file, and a name with spaces and non-ASCII letters.
fn files(d: &Dirs) -> Vec<PathBuf> {
    vec![
        write_src(d, "big.bin", &content(3 * 1024 * 1024 + 17, 1)),
        write_src(d, "empty", b""),
        write_src(d, "a name with spaces, été ✓.txt", &content(1000, 2)),
    ]
}

/// The file name of `path` as a string.
fn name(path: &Path) -> &str {
    path.file_name().unwrap().to_str().unwrap()
}

/// Asserts that a run failed; returns its stderr.
fn failed(run: &Finished, what: &str) -> String {
    assert!(
        !run.status.success(),
        "{what} succeeded but should have failed\n--- stdout ---\n{}\n--- stderr ---\n{}",
        run.stdout,
        run.stderr
    );
    run.stderr.clone()
}

/// Asserts that Python's stderr shows the route its transit took: to
/// echoxfer's direct hint on 127.0.0.1 (not the relay), or to the
/// local relay. `verb` is "Receiving" or "Sending".
fn assert_python_route(servers: &WormholeServers, stderr: &str, verb: &str, route: Route) {
    let relayed = format!("{verb} (->relay:{})", servers.relay_hint());
    match route {
        Route::Direct => {
            assert!(
                stderr.contains(&format!("{verb} (->tcp:127.0.0.1:")),
                "Python did not connect directly to echoxfer:\n{stderr}"
            );
            assert!(
                !stderr.contains("relay"),
                "Python went through the relay:\n{stderr}"
            );
        }
        Route::Relay => assert!(
            stderr.contains(&relayed),
            "Python did not go through the relay ({relayed}):\n{stderr}"
        ),
    }
}

/// A port on 127.0.0.1 where nothing listens (it was free a moment ago).
fn closed_port() -> u16 {
    let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
    listener.local_addr().unwrap().port()
}

/// The reason echoxfer's receiver gave for declining an offer (what it
/// sent the sender), from its "declined the offer: REASON" error line.
fn declined_reason(stderr: &str) -> String {
    let (_, rest) = stderr
        .split_once("declined the offer: ")
        .unwrap_or_else(|| panic!("echoxfer did not say it declined the offer:\n{stderr}"));
    rest.lines().next().unwrap().trim().to_string()
}

#[test]
fn a_text_from_echoxfer_is_printed_by_python_receive_only_text() {
    let Some(servers) =
        WormholeServers::start("a_text_from_echoxfer_is_printed_by_python_receive_only_text")
    else {
        return;
    };
    let text = "hello from echoxfer, été ✓";
    let mut send = EchoWormhole::spawn(echoxfer(&servers, "send", &["--text", text]));
    let code = send.code();
    let receive = servers
        .spawn_wormhole(&["receive", "--only-text", "--no-listen", &code])
        .finish();
    assert_eq!(receive.success_stdout(), format!("{text}\n"));
    let send = send.finish();
    send.success_stdout();
    assert!(send.stderr.contains("text sent"), "{}", send.stderr);
}

#[test]
fn a_text_from_python_is_printed_by_echoxfer_receive_exactly() {
    let Some(servers) =
        WormholeServers::start("a_text_from_python_is_printed_by_echoxfer_receive_exactly")
    else {
        return;
    };
    let text = "two lines from Python,\n  the second indented: été ✓ \"quoted\"";
    let mut send = servers.spawn_wormhole(&["send", "--no-listen", "--text", text]);
    let code = send.code();
    let receive = EchoWormhole::spawn(echoxfer(&servers, "receive", &[&code])).finish();
    assert_eq!(receive.success_stdout(), format!("{text}\n"));
    let send = send.finish();
    send.success_stdout();
    assert!(send.stderr.contains("text message sent"), "{}", send.stderr);
}

/// echoxfer sends each of [`files`] to Python's `wormhole receive
/// --no-listen --accept-file` by `route`.
fn echoxfer_sends_files_to_python(test: &str, route: Route) {
    let Some(servers) = WormholeServers::start(test) else {
        return;
    };
    let d = dirs();
    let sent = files(&d);
    for path in &sent {
        let mut args = route.echoxfer_args().to_vec();
        args.push(path.to_str().unwrap());
        let mut send = EchoWormhole::spawn(echoxfer(&servers, "send", &args));
        let code = send.code();
        let receive = servers
            .spawn_wormhole_in(
                Some(&d.dst),
                &["receive", "--no-listen", "--accept-file", &code],
            )
            .finish();
        receive.success_stdout();
        assert_python_route(&servers, &receive.stderr, "Receiving", route);
        let send = send.finish();
        send.success_stdout();
        assert!(
            send.stderr.contains(&format!(
                "sent {}: {} bytes",
                name(path),
                fs::metadata(path).unwrap().len()
            )),
            "{}",
            send.stderr
        );
        let got = d.dst.join(name(path));
        assert!(same_file(path, &got), "{} differs", got.display());
    }
    let mut names: Vec<String> = sent.iter().map(|p| name(p).to_string()).collect();
    names.sort();
    assert_eq!(entries(&d.dst), names);
}

#[test]
fn files_from_echoxfer_reach_python_byte_identical_over_a_direct_connection() {
    echoxfer_sends_files_to_python(
        "files_from_echoxfer_reach_python_byte_identical_over_a_direct_connection",
        Route::Direct,
    );
}

#[test]
fn files_from_echoxfer_reach_python_byte_identical_through_the_relay() {
    echoxfer_sends_files_to_python(
        "files_from_echoxfer_reach_python_byte_identical_through_the_relay",
        Route::Relay,
    );
}

/// Python's `wormhole send --no-listen` sends each of [`files`] to
/// `echoxfer receive CODE --dir` by `route`.
fn python_sends_files_to_echoxfer(test: &str, route: Route) {
    let Some(servers) = WormholeServers::start(test) else {
        return;
    };
    let d = dirs();
    let sent = files(&d);
    for (i, path) in sent.iter().enumerate() {
        let mut send = servers.spawn_wormhole_in(
            Some(&d.src),
            &["send", "--no-listen", path.to_str().unwrap()],
        );
        let code = send.code();
        let mut args = vec![code.as_str(), "--dir", d.dst.to_str().unwrap()];
        args.extend_from_slice(route.echoxfer_args());
        let receive = EchoWormhole::spawn(echoxfer(&servers, "receive", &args)).finish();
        receive.success_stdout();
        let send = send.finish();
        send.success_stdout();
        assert!(
            send.stderr.contains("Confirmation received"),
            "{}",
            send.stderr
        );
        assert_python_route(&servers, &send.stderr, "Sending", route);
        let got = d.dst.join(name(path));
        assert!(same_file(path, &got), "{} differs", got.display());
        // Only the files received so far: no partial file left beside them.
        let mut names: Vec<String> = sent[..=i].iter().map(|p| name(p).to_string()).collect();
        names.sort();
        assert_eq!(entries(&d.dst), names);
    }
}

#[test]
fn files_from_python_reach_echoxfer_byte_identical_over_a_direct_connection() {
    python_sends_files_to_echoxfer(
        "files_from_python_reach_echoxfer_byte_identical_over_a_direct_connection",
        Route::Direct,
    );
}

#[test]
fn files_from_python_reach_echoxfer_byte_identical_through_the_relay() {
    python_sends_files_to_echoxfer(
        "files_from_python_reach_echoxfer_byte_identical_through_the_relay",
        Route::Relay,
    );
}

/// `code` with its words replaced by others (the same nameplate).
fn wrong_words(code: &str) -> String {
    let (nameplate, words) = code.split_once('-').unwrap();
    let wrong = if words == "absurd-aardvark" {
        "adroitness-adult"
    } else {
        "absurd-aardvark"
    };
    format!("{nameplate}-{wrong}")
}

#[test]
fn a_wrong_code_fails_both_echoxfer_sides_and_writes_nothing() {
    let Some(servers) =
        WormholeServers::start("a_wrong_code_fails_both_echoxfer_sides_and_writes_nothing")
    else {
        return;
    };
    let d = dirs();
    let path = write_src(&d, "secret.bin", &content(10_000, 4));
    let mut send = EchoWormhole::spawn(echoxfer(
        &servers,
        "send",
        &["--hint-addr", "127.0.0.1", path.to_str().unwrap()],
    ));
    let code = send.code();
    let wrong = wrong_words(&code);
    let receive = EchoWormhole::spawn(echoxfer(
        &servers,
        "receive",
        &[&wrong, "--dir", d.dst.to_str().unwrap()],
    ))
    .finish();
    let stderr = failed(&receive, "echoxfer receive with a wrong code");
    assert!(stderr.contains("wrong code"), "{stderr}");
    let send = send.finish();
    let stderr = failed(&send, "echoxfer send to a wrong code");
    assert!(stderr.contains("wrong code"), "{stderr}");
    assert_eq!(entries(&d.dst), Vec::<String>::new());
}

#[test]
fn a_wrong_code_fails_echoxfer_receive_and_python_send() {
    let Some(servers) =
        WormholeServers::start("a_wrong_code_fails_echoxfer_receive_and_python_send")
    else {
        return;
    };
    let d = dirs();
    let path = write_src(&d, "secret.bin", &content(10_000, 5));
    let mut send = servers.spawn_wormhole_in(
        Some(&d.src),
        &["send", "--no-listen", path.to_str().unwrap()],
    );
    let code = send.code();
    let wrong = wrong_words(&code);
    let receive = EchoWormhole::spawn(echoxfer(
        &servers,
        "receive",
        &[&wrong, "--dir", d.dst.to_str().unwrap()],
    ))
    .finish();
    let stderr = failed(&receive, "echoxfer receive with a wrong code");
    assert!(stderr.contains("wrong code"), "{stderr}");
    let send = send.finish();
    failed(&send, "Python wormhole send to a wrong code");
    assert_eq!(entries(&d.dst), Vec::<String>::new());
}

#[test]
fn an_existing_different_file_is_refused_with_the_reason_python_shows_unless_overwrite() {
    let Some(servers) = WormholeServers::start(
        "an_existing_different_file_is_refused_with_the_reason_python_shows_unless_overwrite",
    ) else {
        return;
    };
    let d = dirs();
    let new = content(200_000, 6);
    let path = write_src(&d, "report.bin", &new);
    let target = d.dst.join("report.bin");
    // The same size and a different one: neither is taken for the file.
    for old in [content(200_000, 7), content(1234, 8)] {
        fs::write(&target, &old).unwrap();
        let mut send = servers.spawn_wormhole_in(
            Some(&d.src),
            &["send", "--no-listen", path.to_str().unwrap()],
        );
        let code = send.code();
        let receive = EchoWormhole::spawn(echoxfer(
            &servers,
            "receive",
            &[&code, "--dir", d.dst.to_str().unwrap(), "--no-listen"],
        ))
        .finish();
        let stderr = failed(&receive, "echoxfer receive onto an existing file");
        let reason = declined_reason(&stderr);
        assert!(reason.contains("report.bin"), "{stderr}");
        assert_eq!(fs::read(&target).unwrap(), old, "the existing file changed");
        assert_eq!(entries(&d.dst), ["report.bin"]);
        let send = send.finish();
        let py = failed(&send, "Python wormhole send to a refusing receiver");
        assert!(
            py.contains(&format!("remote error, transfer abandoned: {reason}")),
            "Python does not show echoxfer's reason {reason:?}:\n{py}"
        );
    }
    let mut send = servers.spawn_wormhole_in(
        Some(&d.src),
        &["send", "--no-listen", path.to_str().unwrap()],
    );
    let code = send.code();
    let receive = EchoWormhole::spawn(echoxfer(
        &servers,
        "receive",
        &[
            &code,
            "--dir",
            d.dst.to_str().unwrap(),
            "--no-listen",
            "--overwrite",
        ],
    ))
    .finish();
    receive.success_stdout();
    let send = send.finish();
    send.success_stdout();
    assert!(
        send.stderr.contains("Confirmation received"),
        "{}",
        send.stderr
    );
    assert_eq!(fs::read(&target).unwrap(), new, "not replaced");
    assert_eq!(entries(&d.dst), ["report.bin"]);
}

/// Writes a small tree under `root/name`: a unicode name, an empty file,
/// a subfolder with a name with spaces, a few hundred KB; returns its path.
fn write_tree(root: &Path, name: &str) -> PathBuf {
    let top = root.join(name);
    fs::create_dir_all(top.join("sub dir/deeper")).unwrap();
    fs::write(top.join("a.txt"), b"a small text\n").unwrap();
    fs::write(top.join("empty"), b"").unwrap();
    fs::write(top.join("sub dir/ü ✓.bin"), content(300_000, 9)).unwrap();
    fs::write(top.join("sub dir/deeper/x"), content(5, 10)).unwrap();
    top
}

/// Every path under `dir` (relative, `/`-separated) with its bytes, or
/// `None` for a folder.
fn tree_of(dir: &Path) -> BTreeMap<String, Option<Vec<u8>>> {
    fn walk(dir: &Path, prefix: &str, into: &mut BTreeMap<String, Option<Vec<u8>>>) {
        for entry in fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let name = format!("{prefix}{}", entry.file_name().to_str().unwrap());
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                into.insert(name.clone(), None);
                walk(&entry.path(), &format!("{name}/"), into);
            } else {
                into.insert(name, Some(fs::read(entry.path()).unwrap()));
            }
        }
    }
    let mut tree = BTreeMap::new();
    walk(dir, "", &mut tree);
    tree
}

#[test]
fn a_folder_from_python_arrives_in_echoxfer_dir_as_the_same_tree() {
    let Some(servers) =
        WormholeServers::start("a_folder_from_python_arrives_in_echoxfer_dir_as_the_same_tree")
    else {
        return;
    };
    let d = dirs();
    let folder = write_tree(&d.src, "tree été");
    let mut send = servers.spawn_wormhole_in(
        Some(&d.src),
        &["send", "--no-listen", folder.to_str().unwrap()],
    );
    let code = send.code();
    let receive = EchoWormhole::spawn(echoxfer(
        &servers,
        "receive",
        &[
            &code,
            "--dir",
            d.dst.to_str().unwrap(),
            "--hint-addr",
            "127.0.0.1",
        ],
    ))
    .finish();
    receive.success_stdout();
    let send = send.finish();
    send.success_stdout();
    assert!(
        send.stderr.contains("Confirmation received"),
        "{}",
        send.stderr
    );
    assert_eq!(tree_of(&d.dst.join("tree été")), tree_of(&folder));
    // Nothing beside it: no zip spool or partial file left.
    assert_eq!(entries(&d.dst), ["tree été"]);
}

#[test]
fn a_folder_from_echoxfer_arrives_in_python_cwd_as_the_same_tree() {
    let Some(servers) =
        WormholeServers::start("a_folder_from_echoxfer_arrives_in_python_cwd_as_the_same_tree")
    else {
        return;
    };
    let d = dirs();
    let folder = write_tree(&d.src, "tree été");
    let mut send = EchoWormhole::spawn(echoxfer(
        &servers,
        "send",
        &["--no-listen", folder.to_str().unwrap()],
    ));
    let code = send.code();
    let receive = servers
        .spawn_wormhole_in(
            Some(&d.dst),
            &["receive", "--no-listen", "--accept-file", &code],
        )
        .finish();
    receive.success_stdout();
    assert!(
        receive.stderr.contains("Receiving directory"),
        "{}",
        receive.stderr
    );
    let send = send.finish();
    send.success_stdout();
    assert!(
        send.stderr.contains("confirmed by the receiver"),
        "{}",
        send.stderr
    );
    assert_eq!(tree_of(&d.dst.join("tree été")), tree_of(&folder));
    assert_eq!(entries(&d.dst), ["tree été"]);
}

#[test]
fn a_folder_whose_name_exists_is_refused_with_the_reason_python_shows() {
    let Some(servers) = WormholeServers::start(
        "a_folder_whose_name_exists_is_refused_with_the_reason_python_shows",
    ) else {
        return;
    };
    let d = dirs();
    let folder = write_tree(&d.src, "tree");
    let existing = d.dst.join("tree");
    fs::create_dir(&existing).unwrap();
    fs::write(existing.join("keep.txt"), b"kept").unwrap();
    let before = tree_of(&d.dst);
    let mut send = servers.spawn_wormhole_in(
        Some(&d.src),
        &["send", "--no-listen", folder.to_str().unwrap()],
    );
    let code = send.code();
    let receive = EchoWormhole::spawn(echoxfer(
        &servers,
        "receive",
        &[&code, "--dir", d.dst.to_str().unwrap(), "--no-listen"],
    ))
    .finish();
    let stderr = failed(
        &receive,
        "echoxfer receive of a folder onto an existing one",
    );
    let reason = declined_reason(&stderr);
    assert!(reason.contains("tree"), "{stderr}");
    assert_eq!(tree_of(&d.dst), before, "the receiver's folder changed");
    let send = send.finish();
    let py = failed(
        &send,
        "Python wormhole send of a folder to a refusing echoxfer",
    );
    assert!(
        py.contains(&format!("remote error, transfer abandoned: {reason}")),
        "Python does not show echoxfer's reason {reason:?}:\n{py}"
    );
}

#[test]
fn send_to_an_unreachable_mailbox_fails_fast_naming_its_address() {
    // No server at all: the mailbox and the relay are closed ports.
    let (mailbox_port, relay_port) = (closed_port(), closed_port());
    let mailbox = format!("ws://127.0.0.1:{mailbox_port}/v1");
    let relay = format!("tcp:127.0.0.1:{relay_port}");
    let d = dirs();
    let path = write_src(&d, "file.bin", b"bytes");
    for args in [
        vec!["--text", "hello"],
        vec!["--hint-addr", "127.0.0.1", path.to_str().unwrap()],
    ] {
        let start = Instant::now();
        let send = EchoWormhole::spawn(echoxfer_with(&mailbox, &relay, "send", &args))
            .finish_within(Duration::from_secs(10));
        let stderr = failed(&send, "echoxfer send to a closed mailbox port");
        assert!(
            stderr.contains(&format!("127.0.0.1:{mailbox_port}")),
            "the address is not named: {stderr}"
        );
        assert!(!stderr.contains("Wormhole code is"), "{stderr}");
        assert!(start.elapsed() < Duration::from_secs(10));
    }
}
