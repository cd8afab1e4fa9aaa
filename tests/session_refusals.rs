//! What a session of refused offers may cost the receiver: at most
//! `max_refusals` of them (refused by the machine or by the application),
//! after which the session fails telling the sender why; a bounded report
//! (the first refusals in full, the rest counted); and a bounded summary
//! on the terminal.
#![cfg(unix)]

use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::Command;
use std::sync::mpsc::RecvTimeoutError;
use std::time::Instant;

use bytes::BytesMut;
use echoxfer::codec::{Frame, FrameDecoder, Protocol, RejectReason};
use echoxfer::driver::work::work_in_place;
use echoxfer::driver::App;
use echoxfer::error::{ErrorCode, ProtocolError};
use echoxfer::files::{Outcome, ReceiverApp, Store};
use echoxfer::testing::file_offer;
use echoxfer::xfer::{Receiver, ReceiverRole};
use echoxfer::{Error, Machine, Output, SessionLimits, StreamMachine, TransferConfig};

mod common;
use common::files::dirs;
use common::process::{spawn_until, BOUND};

fn offer(name: &'static [u8], size: u64) -> Frame {
    file_offer(0, name, size)
}

/// The frames after a preamble, offers numbered in order as a sender does.
fn wire(frames: &[Frame]) -> Vec<u8> {
    let mut out = Protocol::File.preamble().to_vec();
    let mut next = 0;
    for f in frames {
        let f = match f.clone() {
            Frame::Offer {
                kind,
                mode,
                mtime_secs,
                mtime_nanos,
                size,
                path,
                ..
            } => {
                next += 1;
                Frame::Offer {
                    id: next - 1,
                    kind,
                    mode,
                    mtime_secs,
                    mtime_nanos,
                    size,
                    path,
                }
            }
            other => other,
        };
        out.extend(f.encode_to_vec());
    }
    out
}

/// Decodes what a receiver sent (preamble first).
fn frames(bytes: &[u8]) -> Vec<Frame> {
    let mut dec = FrameDecoder::new(Protocol::File, 1 << 20);
    let mut buf = BytesMut::from(bytes);
    let mut out = Vec::new();
    while let Some(f) = dec.decode(&mut buf).expect("well-formed output") {
        out.push(f);
    }
    out
}

/// Drives `m` until it waits or ends, answering events with `app` (or
/// rejecting every valid offer as existing when `app` is `None`); returns
/// the bytes it sent.
fn run(m: &mut Receiver, mut app: Option<&mut ReceiverApp>) -> Vec<u8> {
    let mut sent = Vec::new();
    loop {
        match m.poll_output() {
            Output::Transmit(b) => sent.extend_from_slice(&b),
            Output::Event(e) => match app.as_deref_mut() {
                Some(app) => {
                    app.on_event(m, Instant::now(), e).unwrap();
                    work_in_place(app, m, Instant::now()).unwrap();
                }
                None => {
                    if let echoxfer::xfer::ReceiverEvent::Offer { request, .. } = e {
                        let _ = m.reject(request, RejectReason::Exists, "exists");
                    }
                }
            },
            Output::Wait(_) | Output::Done(_) => return sent,
        }
    }
}

fn rejects(frames: &[Frame]) -> usize {
    frames
        .iter()
        .filter(|f| matches!(f, Frame::Reject { .. }))
        .count()
}

#[test]
fn refusals_beyond_max_refusals_fail_the_session_and_tell_the_sender_why() {
    let now = Instant::now();
    let config = TransferConfig {
        max_refusals: 5,
        ..TransferConfig::default()
    };
    let mut rx = Receiver::new(ReceiverRole::new(config), SessionLimits::default(), now);
    let _ = rx.handle_input(now, &wire(&vec![offer(b"../x", 1); 10]));
    let sent = frames(&run(&mut rx, None));
    assert_eq!(rejects(&sent), 5, "{sent:?}");
    match sent.last() {
        Some(Frame::Error { code, message }) => {
            assert_eq!(*code, ErrorCode::Protocol);
            let text = String::from_utf8_lossy(message);
            assert!(text.contains("more than 5 offers refused"), "{text}");
        }
        other => panic!("no Error frame: {other:?}"),
    }
    assert_eq!(
        rx.error(),
        Some(&Error::Remote(ProtocolError::TooManyRefusals { max: 5 }))
    );
    assert_eq!(rx.role().refusals(), 5);
}

#[test]
fn offers_the_application_rejects_count_toward_max_refusals() {
    let now = Instant::now();
    let config = TransferConfig {
        max_refusals: 3,
        ..TransferConfig::default()
    };
    let mut rx = Receiver::new(ReceiverRole::new(config), SessionLimits::default(), now);
    // Two refused by the machine, then valid offers the app rejects.
    let mut offers = vec![offer(b"../x", 1), offer(b"", 1)];
    offers.extend(vec![offer(b"a.txt", 1); 5]);
    let _ = rx.handle_input(now, &wire(&offers));
    let sent = frames(&run(&mut rx, None));
    assert_eq!(rejects(&sent), 3, "{sent:?}");
    assert!(matches!(sent.last(), Some(Frame::Error { .. })));
    assert_eq!(
        rx.error(),
        Some(&Error::Remote(ProtocolError::TooManyRefusals { max: 3 }))
    );
}

#[test]
fn the_receiver_app_lists_the_first_entries_and_counts_them_all() {
    let d = dirs();
    fs::write(d.dst.join("a.txt"), b"there").unwrap();
    let listed = 20;
    let mut app = ReceiverApp::new(Store::new(&d.dst, false).unwrap()).list_up_to(listed);
    let now = Instant::now();
    let mut rx = Receiver::new(
        ReceiverRole::new(TransferConfig::default()),
        SessionLimits::default(),
        now,
    );
    // 60 names the machine refuses, 40 offers the app refuses (Exists).
    let mut offers = Vec::new();
    for i in 0..100 {
        offers.push(match i % 5 {
            0 | 1 => offer(b"a.txt", 10),
            _ => offer(b"../x", 7),
        });
    }
    rx.handle_input(now, &wire(&offers)).unwrap();
    let sent = frames(&run(&mut rx, Some(&mut app)));
    assert_eq!(rejects(&sent), 100);
    let report = app.report();
    assert_eq!(report.len(), listed, "{report:#?}");
    assert!(report
        .iter()
        .all(|f| matches!(f.outcome, Outcome::Refused { .. })));
    assert_eq!(app.totals().refused, 100);
}

/// `receive --once` against a raw peer that offers 1500 bad names: the
/// peer reads 1000 `Reject`s and then why its session failed; the
/// receiver's summary lists 20 refusals and counts the rest.
#[test]
fn a_flood_of_refused_offers_costs_a_bounded_session_and_a_short_summary() {
    let d = dirs();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_echoxfer"));
    cmd.args([
        "receive",
        "--once",
        "--insecure",
        "--listen",
        "127.0.0.1:0",
        "--dir",
    ])
    .arg(&d.dst);
    let (mut guard, addr, lines) = spawn_until(cmd, "listening on");
    let mut peer = TcpStream::connect(&addr).unwrap();
    peer.set_read_timeout(Some(BOUND)).unwrap();
    peer.write_all(&wire(&vec![offer(b"../x", 1); 1500]))
        .unwrap();
    peer.shutdown(Shutdown::Write).unwrap();
    let mut got = Vec::new();
    peer.read_to_end(&mut got).unwrap();
    let sent = frames(&got);
    assert_eq!(rejects(&sent), 1000);
    match sent.last() {
        Some(Frame::Error { message, .. }) => {
            let text = String::from_utf8_lossy(message);
            assert!(text.contains("more than 1000 offers refused"), "{text}");
        }
        other => panic!("the peer never read why: {other:?}"),
    }
    assert_eq!(guard.wait().code(), Some(1));
    let mut out = Vec::new();
    loop {
        match lines.recv_timeout(BOUND) {
            Ok(line) => out.push(line),
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => panic!("stdout still open"),
        }
    }
    let refused: Vec<&String> = out.iter().filter(|l| l.starts_with("refused")).collect();
    assert_eq!(refused.len(), 21, "{out:#?}");
    assert_eq!(
        refused[20],
        "refused 980 more offers (not listed one by one)"
    );
    assert!(
        out.iter()
            .any(|l| l.starts_with("total: 0 received (0 resumed), 0 up to date, 1000 refused")),
        "{out:#?}"
    );
}
