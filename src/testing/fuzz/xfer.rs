//! The file-transfer harnesses: the receiver fed hostile frames, and
//! whole sender/receiver sessions with cuts, flips and resumes.

use std::time::Instant;

use bytes::{Bytes, BytesMut};

use super::{small_limits, small_transfer, Input, MAX_POLLS};
use crate::codec::{Frame, FrameDecoder, Protocol};
use crate::config::{SessionLimits, TransferConfig};
use crate::error::ProtocolError;
use crate::machine::{Machine, Output, StreamMachine};
use crate::session::RecvBudget;
use crate::testing::mem::{MemDisk, MemReceiver, MemSender};
use crate::testing::{Cutter, Pair};
use crate::xfer::{Receiver, ReceiverRole, SafeName, Sender};

/// Feeds `data` to a receiver (after a valid preamble and offer when the
/// first byte is even, raw otherwise), whole and cut into pieces, and checks:
/// it never panics; it never writes a name it did not accept nor beyond
/// the offered size; its output and input stay within the configured limits;
/// what one session costs is bounded by the config: never more `Reject`s
/// than `max_refusals` (the refusal after them fails the session), never
/// more input held than `recv_buffer`, never more drawn on its receive
/// budget than what it holds beyond `recv_allowance`, all of it given back
/// at the end; every drain ends in bounded steps and EOF always ends in
/// `Done`; and the outcome does not depend on how the input was cut.
pub fn receiver(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut input = Vec::new();
    if mode % 2 == 0 {
        input.extend_from_slice(&Protocol::File.preamble());
        input.extend_from_slice(&raw_offer(0, 0, 2048, &[b"f"]).encode_to_vec());
    }
    if mode & 0x81 == 0x80 {
        // Structured: the rest picks frames, so random inputs go deep.
        structured_frames(rest, &mut input);
    } else {
        input.extend_from_slice(rest);
    }
    let mut disk = MemDisk::default();
    if mode & 2 != 0 {
        // A partial file to resume from, with content from the input.
        disk.partials
            .insert("f".into(), rest.iter().take(1500).copied().collect());
    }
    let whole = normalize(feed_receiver(&input, disk.clone(), usize::MAX));
    let piece = usize::from(mode >> 2).max(1);
    let cut = normalize(feed_receiver(&input, disk, piece));
    assert_eq!(whole, cut, "outcome depends on how the input was cut");
}

/// The decoder reports a bad magic as soon as it can tell, with the bytes
/// it had then: which bytes those are depends on the cut; the error does not.
fn normalize(
    (result, disk): (Result<(), crate::Error>, MemDisk),
) -> (Result<(), crate::Error>, MemDisk) {
    use crate::error::{CodecError, Error, ProtocolError};
    let result = match result {
        Err(Error::Remote(ProtocolError::Codec(CodecError::BadMagic(_)))) => {
            Err(ProtocolError::Codec(CodecError::BadMagic([0; 4])).into())
        }
        other => other,
    };
    (result, disk)
}

/// An `Offer` of a path of any components (checked by the receiver).
fn raw_offer(id: u32, kind: u8, size: u64, path: &[&[u8]]) -> Frame {
    Frame::Offer {
        id,
        kind,
        mode: 0o644,
        mtime_secs: 1,
        mtime_nanos: 2,
        size,
        path: crate::xfer::encode_raw_path(path),
    }
}

/// Turns fuzz bytes into a plausible, often hostile, sequence of frames:
/// offers of hostile paths (`..`, empty and control-character components,
/// too deep), ids in and out of order, data, holes, skips and ends of the
/// right and the wrong file.
fn structured_frames(rest: &[u8], out: &mut Vec<u8>) {
    const NAMES: [&[u8]; 6] = [b"f", b"g", b"..", b"file..txt", b"x\x1b[2J", b""];
    let mut input = Input(rest);
    let mut hasher = blake3::Hasher::new();
    let mut offer = [0u8; 32];
    // The id of the next offer, and of the last offered, as a good sender counts.
    let (mut next, mut last) = (1u32, 0u32);
    while !input.0.is_empty() {
        let op = input.byte();
        let arg = input.byte();
        let id = if arg & 0x80 == 0 {
            last
        } else {
            u32::from(arg & 3)
        };
        let frame = match op % 10 {
            0 => {
                let n = (usize::from(arg) * 8).min(input.0.len());
                let (data, tail) = input.0.split_at(n);
                input.0 = tail;
                hasher.update(data);
                Frame::Data(Bytes::copy_from_slice(data))
            }
            1 => {
                hasher = blake3::Hasher::new();
                let from = if arg % 2 == 0 {
                    0
                } else {
                    u64::from(input.u32())
                };
                Frame::Begin { id, from }
            }
            2 => {
                let mut hash = *hasher.finalize().as_bytes();
                hash[0] ^= arg & 1;
                let mut offer = offer;
                offer[0] ^= (arg >> 1) & 1;
                Frame::End { id, hash, offer }
            }
            3 => {
                let size = [0, 1, 2048, 1 << 21, u64::MAX][usize::from(arg % 5)];
                let depth = usize::from(input.byte() % 12) + 1;
                let path: Vec<&[u8]> = (0..depth)
                    .map(|i| NAMES[(usize::from(arg / 5) + i) % NAMES.len()])
                    .collect();
                let kind = input.byte() % 3;
                let frame = raw_offer(next, kind, size, &path);
                offer = crate::xfer::offer_digest(&frame);
                last = next;
                next += 1;
                frame
            }
            4 => Frame::Quit,
            5 => {
                out.push(arg);
                continue;
            }
            6 => Frame::Saved {
                id,
                flags: 0,
                hash: [0; 32],
            },
            7 => {
                let len = u64::from(arg) * 64 + 1;
                hasher.update(&vec![0; len as usize]);
                Frame::Hole { len }
            }
            8 => Frame::Skip { id },
            _ => Frame::Error {
                code: crate::error::ErrorCode::from_u16(arg.into()),
                message: Bytes::from_static(b"\x1b]0;owned\x07"),
            },
        };
        out.extend_from_slice(&frame.encode_to_vec());
    }
}

/// The receiver harness's limits: [`small_limits`] and [`small_transfer`]
/// with few refusals and a small allowance, so that fuzz inputs reach both
/// bounds.
fn receiver_config() -> (SessionLimits, TransferConfig) {
    let limits = SessionLimits {
        recv_allowance: 1024,
        ..small_limits()
    };
    let transfer = TransferConfig {
        max_refusals: 8,
        ..small_transfer()
    };
    (limits, transfer)
}

/// The receiver harness's shared receive budget, in bytes.
const RECV_BUDGET: usize = 4096;

/// What the receiver sent, decoded as its sender would read it.
struct SentFrames {
    decoder: FrameDecoder,
    buf: BytesMut,
    rejects: u64,
}

impl SentFrames {
    fn take(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        while let Some(f) = self
            .decoder
            .decode(&mut self.buf)
            .expect("well-formed output")
        {
            if let Frame::Reject { .. } = f {
                self.rejects += 1;
            }
        }
    }
}

/// Feeds `input` in pieces of at most `piece` bytes; returns the final
/// result and the disk.
fn feed_receiver(input: &[u8], disk: MemDisk, piece: usize) -> (Result<(), crate::Error>, MemDisk) {
    let (config, transfer) = receiver_config();
    let now = Instant::now();
    let budget = RecvBudget::new(RECV_BUDGET);
    let mut m = Receiver::new(ReceiverRole::new(transfer.clone()), config.clone(), now)
        .with_recv_budget(budget.clone());
    let mut app = MemReceiver::new(disk, false);
    let mut sent = SentFrames {
        decoder: FrameDecoder::new(Protocol::File, config.max_frame),
        buf: BytesMut::new(),
        rejects: 0,
    };
    let mut rest = input;
    let result = loop {
        if let Some(result) = drain_checked(&mut m, &mut app, &config, &mut sent) {
            break result;
        }
        check_cost(&m, &budget, &config);
        let room = m.input_room();
        assert!(
            room <= config.recv_buffer,
            "input room {room} beyond recv_buffer"
        );
        if rest.is_empty() {
            m.handle_eof(now);
            let result = drain_checked(&mut m, &mut app, &config, &mut sent);
            break result.expect("EOF must end the session");
        }
        let n = rest.len().min(room).min(piece);
        assert!(n > 0, "no input room after a full drain");
        let _ = m.handle_input(now, &rest[..n]);
        check_cost(&m, &budget, &config);
        rest = &rest[n..];
    };
    let max = transfer.max_refusals;
    assert!(sent.rejects <= max, "{} offers refused", sent.rejects);
    assert_eq!(sent.rejects, m.role().refusals(), "refusals miscounted");
    if let Err(crate::Error::Remote(ProtocolError::TooManyRefusals { .. })) = &result {
        assert_eq!(sent.rejects, max, "failed before max_refusals");
    }
    drop(m);
    assert_eq!(budget.in_use(), 0, "budget not given back");
    (result, app.disk)
}

/// One session's cost is within its config: input held, budget drawn.
fn check_cost(m: &Receiver, budget: &RecvBudget, config: &SessionLimits) {
    assert!(
        m.buffered() <= config.recv_buffer,
        "holds {} bytes",
        m.buffered()
    );
    assert!(m.role().refusals() <= receiver_config().1.max_refusals);
    let beyond = config.recv_buffer.saturating_sub(config.recv_allowance);
    assert!(
        budget.in_use() <= beyond.min(budget.limit()),
        "drew {} on the budget",
        budget.in_use()
    );
}

/// Drains the receiver, answering with `app` and checking the limits.
/// `Some` once the machine is done.
fn drain_checked(
    m: &mut Receiver,
    app: &mut MemReceiver,
    config: &SessionLimits,
    sent: &mut SentFrames,
) -> Option<Result<(), crate::Error>> {
    let now = Instant::now();
    let mut out = 0usize;
    for _ in 0..MAX_POLLS {
        match m.poll_output() {
            Output::Transmit(b) => {
                out += b.len();
                sent.take(&b);
                assert!(
                    out <= config.send_buffer + config.max_frame + 1024,
                    "receiver queued {out} bytes of output"
                );
            }
            Output::Event(e) => {
                use crate::driver::App;
                if let Err(e) = app.on_event(m, now, e) {
                    // The app refuses only what a correct machine never asks.
                    panic!("receiver asked for something it must not: {e}");
                }
                check_fs_requests(app);
            }
            Output::Wait(_) => return None,
            Output::Done(result) => return Some(result),
        }
    }
    panic!("receiver did not settle within {MAX_POLLS} polls");
}

/// Every file-system request the receiver's machine made stays under the
/// receiver's directory: each path offered to the app is relative, of
/// plain components only, within the limits; and no accepted file holds
/// more than was offered.
fn check_fs_requests(app: &MemReceiver) {
    let limits = receiver_config().1.path_limits();
    for (path, _) in &app.offers {
        let parts: Vec<&str> = path.split('/').collect();
        assert!(parts.len() <= limits.max_depth, "{path}: too deep");
        assert!(path.len() <= limits.max_path_len, "{path}: too long");
        for p in parts {
            let plain = !p.is_empty() && p != "." && p != ".." && !p.contains('\\');
            assert!(plain, "{path}: a component that leaves the directory");
        }
    }
    for accepted in app.accepted.values() {
        let held = app.disk.partials.get(&accepted.path).map_or(0, Vec::len);
        assert!(
            held as u64 <= accepted.size,
            "wrote beyond the offered size"
        );
    }
}

/// One sender/receiver session over an in-memory pair, driven by `data`:
/// file contents, how the stream is cut, an optional dropped link and an
/// optional corrupted byte; then a second, clean session over the same
/// directory. Checks: whatever sits under a final name is exactly its
/// source; the clean session completes every file byte-identical; after a
/// cut without corruption, every file resumes exactly where its partial ends.
pub fn filexfer(data: &[u8]) {
    let mut input = Input(data);
    let flags = input.byte();
    let files = usize::from(flags % 3) + 1;
    let seed = u64::from(input.u32());
    let cut = (flags & 4 != 0).then(|| u64::from(input.u32() % 40_000));
    let flip = (flags & 8 != 0).then(|| u64::from(input.u32() % 40_000));
    // A second interruption, resumed from wherever the first left off.
    let recut = (flags & 16 != 0).then(|| u64::from(input.u32() % 40_000));
    // Lines of the in-band words of every protocol, so content is never special.
    let mut content = Vec::new();
    if flags & 32 != 0 {
        content.extend_from_slice(b"quit\nexit\nsuccess\nEXFR\x02F\n");
    }
    content.extend_from_slice(&input.0[..input.0.len().min(30_000)]);
    let content = Bytes::from(content);
    let per = content.len() / files;
    let sources: Vec<(SafeName, Bytes)> = (0..files)
        .map(|i| {
            let name = SafeName::new(format!("f{i}").as_bytes(), 64).expect("valid name");
            let end = if i + 1 == files {
                content.len()
            } else {
                per * (i + 1)
            };
            (name, content.slice(per * i..end))
        })
        .collect();
    let check_disk = |disk: &MemDisk| {
        for (name, held) in &disk.files {
            let source = sources.iter().find(|(n, _)| n.as_str() == name.as_str());
            let source = source.expect("a final file that was never offered");
            assert!(held[..] == source.1[..], "{name} differs from its source");
        }
    };

    let (first, disk) = session(&sources, MemDisk::default(), seed, cut, flip);
    check_disk(&disk);
    if cut.is_none() && flip.is_none() {
        assert!(first.is_ok(), "clean session failed: {first:?}");
    }
    // What the receiver holds of each file: all of it once saved (the
    // next session finds it up to date), else its partial file.
    let held_after = |disk: &MemDisk| -> Vec<usize> {
        sources
            .iter()
            .map(|(n, c)| match disk.files.contains_key(n.as_str()) {
                true => c.len(),
                false => disk.partials.get(n.as_str()).map_or(0, Vec::len),
            })
            .collect()
    };
    let disk = match recut {
        Some(n) => {
            let held = held_after(&disk);
            let (again, disk) = session(&sources, disk, seed ^ 2, Some(n), None);
            check_disk(&disk);
            if let (Ok(sender), None) = (&again, flip) {
                for &(file, from) in &sender.started {
                    assert_eq!(from, held[file] as u64, "second resume misplaced");
                }
            }
            disk
        }
        None => disk,
    };
    let held = held_after(&disk);
    let (second, disk) = session(&sources, disk, seed ^ 1, None, None);
    let sender = second.expect("the clean resumed session failed");
    check_disk(&disk);
    for (name, _) in &sources {
        assert!(disk.files.contains_key(name.as_str()), "{name} missing");
    }
    if flip.is_none() {
        for &(file, from) in &sender.started {
            assert_eq!(
                from, held[file] as u64,
                "resume did not start at the partial's end"
            );
        }
        // Only what was missing is sent again.
        let missing: u64 = sources
            .iter()
            .zip(&held)
            .filter(|((n, _), _)| sender.started.iter().any(|&(f, _)| sources[f].0 == *n))
            .map(|((_, c), &h)| (c.len() - h) as u64)
            .sum();
        assert_eq!(sender.pushed, missing, "re-sent more than was missing");
    }
}

/// Runs one session; returns the sender app (when both sides ended well) and the disk.
fn session(
    sources: &[(SafeName, Bytes)],
    disk: MemDisk,
    seed: u64,
    cut: Option<u64>,
    flip: Option<u64>,
) -> (Result<MemSender, String>, MemDisk) {
    let config = small_limits();
    let now = Instant::now();
    let mut tx = MemSender::new(sources.iter().cloned());
    let mut rx = MemReceiver::new(disk, false);
    let sender = Sender::new(tx.role(small_transfer()), config.clone(), now);
    let receiver = Receiver::new(ReceiverRole::new(small_transfer()), config, now);
    let mut pair = Pair::new(sender, receiver, now, Cutter::random(seed, 3000));
    if let Some(n) = cut {
        pair = pair.cut_after(n);
    }
    if let Some(n) = flip {
        pair = pair.flip_at(n);
    }
    let outcome = pair.run(&mut tx, &mut rx, 200_000).expect("pair stuck");
    // The in-memory apps fail only when a machine asks what it must not
    // (a write for another name, a verified file whose content differs).
    for side in [&outcome.a, &outcome.b] {
        if let Err(crate::driver::DriverError::App(source)) = side {
            panic!("an app caught a machine breaking an invariant: {source}");
        }
    }
    let result = match (outcome.a, outcome.b) {
        (Ok(()), Ok(())) => Ok(tx),
        (a, b) => Err(format!("{a:?} / {b:?}")),
    };
    // Sticky errors: a failed machine keeps failing the same way.
    if let Some(e) = pair.a.error().cloned() {
        assert_eq!(pair.a.handle_input(now, b"x"), Err(e));
    }
    (result, rx.disk)
}
