//! Seed inputs for every harness: small, valid-looking sessions, so a
//! fuzzer starts deep in each protocol. `fuzz/corpus/<target>/` holds them
//! (written by `cargo test --features testing --test fuzz_harnesses --
//! committed_seed_corpora_match_the_generator` with `ECHOXFER_WRITE_CORPORA=1`).

use bytes::Bytes;

use crate::codec::{Frame, Protocol};

/// Every harness, by its fuzz target's name.
pub const TARGETS: [&str; 10] = [
    "filexfer",
    "receiver",
    "echo",
    "codec",
    "legacy_echo_server",
    "legacy_echo_client",
    "legacy_file_sender",
    "legacy_file_receiver",
    "legacy_udp",
    "secure",
];

/// Runs the harness named `target` on `data`.
pub fn run(target: &str, data: &[u8]) {
    match target {
        "filexfer" => super::filexfer(data),
        "receiver" => super::receiver(data),
        "echo" => super::echo(data),
        "codec" => super::codec(data),
        "legacy_echo_server" => super::legacy_echo_server(data),
        "legacy_echo_client" => super::legacy_echo_client(data),
        "legacy_file_sender" => super::legacy_file_sender(data),
        "legacy_file_receiver" => super::legacy_file_receiver(data),
        "legacy_udp" => super::legacy_udp(data),
        "secure" => super::secure(data),
        other => panic!("no harness {other}"),
    }
}

fn frames(protocol: Protocol, frames: &[Frame]) -> Vec<u8> {
    let mut out = protocol.preamble().to_vec();
    for f in frames {
        out.extend_from_slice(&f.encode_to_vec());
    }
    out
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// Text with the in-band words of every protocol in it.
const TEXT: &[u8] = b"hello\nquit\nexit\nsuccess\nqu\nEXFR\x02F\nlast line quit";

/// The seed inputs: `(target, file name, bytes)`.
pub fn seed_corpora() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let echo_session = frames(
        Protocol::Echo,
        &[
            Frame::Message(Bytes::from_static(b"hello")),
            Frame::Message(Bytes::from_static(b"exit")),
            Frame::Message(Bytes::new()),
            Frame::Exit,
        ],
    );
    let content = Bytes::from_static(TEXT);
    let hash = *blake3::hash(&content).as_bytes();
    let offer = crate::xfer::offer_frame(
        0,
        &crate::xfer::FileSpec::file(
            crate::xfer::SafeName::new(b"f", 255).expect("a valid name"),
            content.len() as u64,
        ),
    );
    let file_session = frames(
        Protocol::File,
        &[
            offer.clone(),
            Frame::Begin { id: 0, from: 0 },
            Frame::Data(content.clone()),
            Frame::End {
                id: 0,
                hash,
                offer: crate::xfer::offer_digest(&offer),
            },
            Frame::Quit,
        ],
    );
    let file_session_rest = &file_session[6..];
    let bad_offers: Vec<Frame> = (0..12)
        .map(|id| Frame::Offer {
            id,
            kind: 0,
            mode: 0o644,
            mtime_secs: 0,
            mtime_nanos: 0,
            size: 1,
            path: crate::xfer::encode_raw_path(&[b"..", b"x"]),
        })
        .collect();
    let bad_offers = frames(Protocol::File, &bad_offers);
    let mut seeds = vec![
        // filexfer: flags (files, cut, flip), seed, content.
        ("filexfer", "clean", cat(&[&[0, 1, 2, 3, 4], TEXT])),
        (
            "filexfer",
            "three-files",
            cat(&[&[2, 9, 9, 9, 9], TEXT, TEXT, TEXT]),
        ),
        (
            "filexfer",
            "cut",
            cat(&[&[4, 1, 0, 0, 0, 40, 0, 0, 0], TEXT, TEXT]),
        ),
        (
            "filexfer",
            "flip",
            cat(&[&[8, 1, 0, 0, 0, 30, 0, 0, 0], TEXT]),
        ),
        // receiver: mode byte, then frames (after a preamble and offer when even).
        ("receiver", "raw-session", cat(&[&[1], &file_session])),
        (
            "receiver",
            "after-offer",
            cat(&[
                &[0],
                &file_session_rest[file_session_rest.len().min(14 + 1)..],
            ]),
        ),
        (
            "receiver",
            "structured",
            vec![0x80, 1, 0, 0, 40, 2, 0, 4, 0],
        ),
        ("receiver", "resume", cat(&[&[2], &[1u8; 64]])),
        // More refused offers than the harness's max_refusals (8) allows.
        ("receiver", "refusals", cat(&[&[1], &bad_offers])),
        // echo: scenario byte, then the script.
        (
            "echo",
            "server",
            vec![0, 0, 0, 3, b'h', b'e', b'y', 4, 0, 11, 0],
        ),
        (
            "echo",
            "server-raw",
            cat(&[&[0x80, 2, 5, 9, 6, 200], &echo_session]),
        ),
        (
            "echo",
            "client",
            vec![1, 2, 3, b'a', b'b', b'c', 1, b'x', 0, 0, 0],
        ),
        (
            "echo",
            "pair",
            cat(&[&[2, 3, 1, 2, 3, 4, 5, 0], b"hello", &[4, 0], b"exit"]),
        ),
        // codec: mode byte, cut count and sizes, then bytes.
        ("codec", "echo", cat(&[&[0x80, 2, 3, 7], &echo_session])),
        ("codec", "file", cat(&[&[0x81, 1, 5], &file_session])),
        ("codec", "frames", vec![6, 0, 0, 1, 0, 12, 3, 4, 7, 2, 0, 1]),
        // legacy: each its own script (see the harnesses).
        (
            "legacy_echo_server",
            "session",
            cat(&[&[0, 0, 2], b"helloworld", &[6, 20, 5, 0, 7, 0]]),
        ),
        (
            "legacy_echo_server",
            "backpressure",
            vec![0x44, 0, 200, 0, 200, 7, 0, 6, 255],
        ),
        (
            "legacy_echo_client",
            "pair",
            cat(&[&[0, 3, 2, 2], &[1; 16], &[3, 0, 0, 0, 0, 1, 4, 0]]),
        ),
        (
            "legacy_echo_client",
            "hostile",
            cat(&[&[1, 2, 1, 1], &[0, 0], &[0, 20, 3, 20, 0, 50, 3, 20, 2, 3]]),
        ),
        (
            "legacy_file_sender",
            "text",
            cat(&[
                &[60, 0],
                &[0, 1, 2, 3, 4, 5, 6, 7, 8],
                &[0, 0, 6, 5, 0, 0, 3, 4],
            ]),
        ),
        (
            "legacy_file_sender",
            "long",
            cat(&[&[8, 0, 70, b'q', 0, 75, b'x'], &[0; 24]]),
        ),
        (
            "legacy_file_receiver",
            "complete",
            cat(&[&[0, 0, 3], b"hello\nworld!", &[6, 20, 4, 0]]),
        ),
        (
            "legacy_file_receiver",
            "limit",
            vec![1, 1, 255, 6, 255, 9, 0],
        ),
        (
            "legacy_udp",
            "lines",
            cat(&[&[3, 0, 5, 0], b"hello", &[4, 7, 5, 1]]),
        ),
        (
            "legacy_udp",
            "long",
            vec![8, 0, 0x10, 0x04, 4, 2, 0xff, 0xff, 4],
        ),
        // An honest 3000-byte session, then one with a flip after the handshake.
        ("secure", "session", vec![1, 0xb8, 0x0b]),
        ("secure", "flip", vec![1, 0xb8, 0x0b, 100, 0, 0x20, 1]),
        ("secure", "plaintext", cat(&[&[0, 5, 0], b"EXFR\x02F"])),
    ];
    seeds.sort_by_key(|(t, n, _)| (*t, *n));
    seeds
}
