//! echoxfer to echoxfer through the wormhole runs the native protocol
//! over the transit connection (docs/PROTOCOL.md, "Through the
//! wormhole"): one code, then the native file protocol keyed from the
//! wormhole's key, directly when a hint connects and through the transit
//! relay otherwise. Through the local servers of
//! tests/common/wormhole_servers.rs (Python's mailbox server and transit
//! relay; skipped with a line saying how to run them when absent, failed
//! under `CI=true`):
//!
//! - random trees arrive identical (content, modes, times to the
//!   nanosecond, empty folders), directly and through the relay;
//! - several paths in one send, which only the native protocol carries;
//! - a connection cut halfway through the relay leaves a partial file
//!   (nothing under the final name), and the same send with a new code
//!   resumes it;
//! - `--classic` on one side keeps both on the classic protocol;
//! - a sender whose mailbox connection is cut while it waits connects
//!   again and the session goes on.
//!
//! Every wait is bounded; every process is killed with its group if a
//! test fails; nothing but loopback is reached.
#![cfg(unix)]

use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

mod common;
use common::echoxfer_wormhole::{echoxfer, echoxfer_with, EchoWormhole};
use common::files::{content, dirs, entries, same_file, write_src, Dirs};
use common::tree;
use common::wormhole_servers::{Finished, WormholeServers};

/// Flags that give only a direct route (127.0.0.1), and only the relay.
const DIRECT: &[&str] = &["--hint-addr", "127.0.0.1"];
const RELAYED: &[&str] = &["--no-listen"];

/// `echoxfer send ARGS PATHS` and `echoxfer receive CODE --dir DST ARGS`
/// through `servers`' mailbox and the relay `helper`; both outcomes.
fn send_and_receive(
    servers: &WormholeServers,
    helper: &str,
    args: &[&str],
    paths: &[PathBuf],
    dst: &Path,
) -> (Finished, Finished) {
    let mailbox = servers.mailbox_url();
    let mut send_args = args.to_vec();
    send_args.extend(paths.iter().map(|p| p.to_str().unwrap()));
    let mut send = EchoWormhole::spawn(echoxfer_with(&mailbox, helper, "send", &send_args));
    let code = send.code();
    let mut receive_args = vec![code.as_str(), "--dir", dst.to_str().unwrap()];
    receive_args.extend_from_slice(args);
    let receive =
        EchoWormhole::spawn(echoxfer_with(&mailbox, helper, "receive", &receive_args)).finish();
    (send.finish(), receive)
}

/// Asserts both sides ran the native protocol: its per-file summary
/// lines, not the classic protocol's SHA-256 confirmation.
fn assert_native(send: &Finished, receive: &Finished) {
    let sent = send.success_stdout();
    let received = receive.success_stdout();
    assert!(sent.contains("total: "), "no native summary:\n{sent}");
    assert!(
        received.contains("total: "),
        "no native summary:\n{received}"
    );
    assert!(
        !send.stderr.contains("SHA-256"),
        "the classic protocol ran:\n{}",
        send.stderr
    );
}

/// A random tree sent from `src/t` arrives as `dst/t`, identical.
fn tree_through(servers: &WormholeServers, helper: &str, args: &[&str], nodes: &[tree::Node]) {
    let d = dirs();
    let root = d.src.join("t");
    fs::create_dir(&root).unwrap();
    tree::write(&root, nodes);
    let (send, receive) = send_and_receive(servers, helper, args, &[root], &d.dst);
    assert_native(&send, &receive);
    tree::assert_tree(&d.dst.join("t"), nodes);
}

/// Three random trees (the same ones every run), each sent with `args`
/// and the relay `helper` gives.
fn random_trees(test: &str, helper: impl Fn(&WormholeServers) -> String, args: &[&str]) {
    let Some(servers) = WormholeServers::start(test) else {
        return;
    };
    let helper = helper(&servers);
    let config = Config {
        cases: 3,
        failure_persistence: None,
        ..Config::default()
    };
    let rng = TestRng::deterministic_rng(RngAlgorithm::ChaCha);
    TestRunner::new_with_rng(config, rng)
        .run(&tree::tree(), |nodes| {
            tree_through(&servers, &helper, args, &nodes);
            Ok(())
        })
        .unwrap();
}

/// A port on 127.0.0.1 where nothing listens (it was free a moment ago).
fn closed_port() -> u16 {
    let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
    listener.local_addr().unwrap().port()
}

#[test]
fn random_trees_arrive_identical_with_modes_and_times_over_a_direct_connection() {
    // The only relay either side knows is a closed port: only the direct
    // connection on 127.0.0.1 can carry the files.
    random_trees(
        "random_trees_arrive_identical_with_modes_and_times_over_a_direct_connection",
        |_| format!("tcp:127.0.0.1:{}", closed_port()),
        DIRECT,
    );
}

#[test]
fn random_trees_arrive_identical_with_modes_and_times_through_the_relay() {
    random_trees(
        "random_trees_arrive_identical_with_modes_and_times_through_the_relay",
        |servers| servers.relay_hint(),
        RELAYED,
    );
}

#[test]
fn several_paths_go_in_one_send() {
    let Some(servers) = WormholeServers::start("several_paths_go_in_one_send") else {
        return;
    };
    let d = dirs();
    let a = write_src(&d, "a.bin", &content(200_000, 1));
    let b = write_src(&d, "b.txt", b"two\n");
    let (send, receive) = send_and_receive(
        &servers,
        &servers.relay_hint(),
        DIRECT,
        &[a.clone(), b.clone()],
        &d.dst,
    );
    assert_native(&send, &receive);
    assert!(same_file(&a, &d.dst.join("a.bin")));
    assert!(same_file(&b, &d.dst.join("b.txt")));
    assert_eq!(entries(&d.dst), ["a.bin", "b.txt"]);
}

#[test]
fn classic_on_either_side_keeps_both_on_the_classic_protocol() {
    let Some(servers) =
        WormholeServers::start("classic_on_either_side_keeps_both_on_the_classic_protocol")
    else {
        return;
    };
    for classic_sender in [true, false] {
        let d = dirs();
        let path = write_src(&d, "c.bin", &content(100_000, 5));
        let (mut send_args, mut receive_args) = (DIRECT.to_vec(), DIRECT.to_vec());
        match classic_sender {
            true => send_args.push("--classic"),
            false => receive_args.push("--classic"),
        }
        send_args.push(path.to_str().unwrap());
        let mut send = EchoWormhole::spawn(echoxfer(&servers, "send", &send_args));
        let code = send.code();
        let mut args = vec![code.as_str(), "--dir", d.dst.to_str().unwrap()];
        args.extend_from_slice(&receive_args);
        let receive = EchoWormhole::spawn(echoxfer(&servers, "receive", &args)).finish();
        receive.success_stdout();
        let send = send.finish();
        send.success_stdout();
        assert!(
            send.stderr.contains("confirmed by the receiver's SHA-256"),
            "not the classic protocol (classic sender: {classic_sender}):\n{}",
            send.stderr
        );
        assert!(same_file(&path, &d.dst.join("c.bin")));
    }
}

/// A TCP forwarder to `upstream` that cuts every connection (both ways,
/// both sockets) once `cut_after` bytes in all went through it, or when
/// told ([`cut_now`](Self::cut_now): later connections go through).
struct CutProxy {
    port: u16,
    cut: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    sockets: Arc<Mutex<Vec<TcpStream>>>,
}

impl CutProxy {
    fn start(upstream: SocketAddr, cut_after: u64) -> CutProxy {
        let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let moved = Arc::new(AtomicU64::new(0));
        let sockets: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (cut2, stop2, all) = (cut.clone(), stop.clone(), sockets.clone());
        thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                let Ok((client, _)) = listener.accept() else {
                    thread::sleep(Duration::from_millis(10));
                    continue;
                };
                client.set_nonblocking(false).unwrap();
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                let mut all = sockets.lock().unwrap();
                all.push(client.try_clone().unwrap());
                all.push(server.try_clone().unwrap());
                drop(all);
                for (from, to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    let pump = Pump {
                        moved: moved.clone(),
                        cut_after,
                        cut: cut2.clone(),
                        sockets: sockets.clone(),
                    };
                    thread::spawn(move || pump.run(from, to));
                }
            }
        });
        CutProxy {
            port,
            cut,
            stop,
            sockets: all,
        }
    }

    fn hint(&self) -> String {
        format!("tcp:127.0.0.1:{}", self.port)
    }

    /// Cuts every connection open now.
    fn cut_now(&self) {
        for s in self.sockets.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// One direction of one proxied connection.
struct Pump {
    moved: Arc<AtomicU64>,
    cut_after: u64,
    cut: Arc<AtomicBool>,
    sockets: Arc<Mutex<Vec<TcpStream>>>,
}

impl Pump {
    fn run(self, mut from: TcpStream, mut to: TcpStream) {
        let mut buf = [0u8; 16 * 1024];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if self.cut.load(Ordering::Relaxed) || to.write_all(&buf[..n]).is_err() {
                break;
            }
            let total = self.moved.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
            if total >= self.cut_after {
                self.cut.store(true, Ordering::Relaxed);
                for s in self.sockets.lock().unwrap().drain(..) {
                    let _ = s.shutdown(Shutdown::Both);
                }
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    }
}

/// `dir`'s partial files (the receiver's `.NAME.echoxfer-part`).
fn partials(dir: &Path) -> Vec<String> {
    entries(dir)
        .into_iter()
        .filter(|n| n.ends_with(".echoxfer-part"))
        .collect()
}

#[test]
fn a_cut_through_the_relay_leaves_a_partial_file_that_a_new_code_resumes() {
    let Some(servers) = WormholeServers::start(
        "a_cut_through_the_relay_leaves_a_partial_file_that_a_new_code_resumes",
    ) else {
        return;
    };
    let d: Dirs = dirs();
    let size = 16 * 1024 * 1024;
    let path = write_src(&d, "big.bin", &content(size, 7));
    // Both sides reach the relay only through the proxy, which cuts
    // every connection once 6 MiB went through it: mid-file.
    let proxy = CutProxy::start(servers.relay_addr(), 6 << 20);
    let (send, receive) = send_and_receive(
        &servers,
        &proxy.hint(),
        RELAYED,
        std::slice::from_ref(&path),
        &d.dst,
    );
    assert!(proxy.cut.load(Ordering::Relaxed), "the proxy never cut");
    assert!(
        !send.status.success(),
        "the cut send succeeded:\n{}",
        send.stderr
    );
    assert!(
        !receive.status.success(),
        "the cut receive succeeded:\n{}",
        receive.stderr
    );
    assert!(
        !d.dst.join("big.bin").exists(),
        "a cut file is under its final name"
    );
    assert_eq!(partials(&d.dst).len(), 1, "{:?}", entries(&d.dst));

    let (send, receive) = send_and_receive(
        &servers,
        &servers.relay_hint(),
        RELAYED,
        std::slice::from_ref(&path),
        &d.dst,
    );
    assert_native(&send, &receive);
    let received = receive.success_stdout();
    let resumed_from: u64 = received
        .split_once("(resumed from ")
        .and_then(|(_, rest)| rest.split(')').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the second send did not resume:\n{received}"));
    assert!(
        resumed_from > 0 && resumed_from < size as u64,
        "resumed from {resumed_from} of {size}"
    );
    assert!(same_file(&path, &d.dst.join("big.bin")));
    assert_eq!(entries(&d.dst), ["big.bin"]);
}

#[test]
fn a_sender_that_loses_the_mailbox_while_waiting_connects_again_and_still_meets_the_receiver() {
    let Some(servers) = WormholeServers::start(
        "a_sender_that_loses_the_mailbox_while_waiting_connects_again_and_still_meets_the_receiver",
    ) else {
        return;
    };
    let d = dirs();
    let path = write_src(&d, "r.bin", &content(50_000, 8));
    let proxy = CutProxy::start(servers.mailbox_addr(), u64::MAX);
    let mailbox = format!("ws://127.0.0.1:{}/v1", proxy.port);
    let helper = servers.relay_hint();
    let args = ["--hint-addr", "127.0.0.1", path.to_str().unwrap()];
    let mut send = EchoWormhole::spawn(echoxfer_with(&mailbox, &helper, "send", &args));
    let code = send.code();
    proxy.cut_now();
    let until = std::time::Instant::now() + Duration::from_secs(60);
    while !send.stderr_so_far().contains("reconnecting") {
        assert!(
            std::time::Instant::now() < until,
            "the sender did not say it reconnects:\n{}",
            send.stderr_so_far()
        );
        thread::sleep(Duration::from_millis(20));
    }
    let dst = d.dst.to_str().unwrap();
    let args = [code.as_str(), "--dir", dst, "--hint-addr", "127.0.0.1"];
    let receive = EchoWormhole::spawn(echoxfer(&servers, "receive", &args)).finish();
    let send = send.finish();
    assert_native(&send, &receive);
    assert!(
        send.stderr
            .contains("lost the mailbox server at 127.0.0.1:"),
        "{}",
        send.stderr
    );
    assert!(same_file(&path, &d.dst.join("r.bin")));
}
