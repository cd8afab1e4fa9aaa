//! Embedding the file-transfer machines with no I/O at all: a sender and a
//! receiver joined in memory, byte by byte if you like, each answered by a
//! few lines of application code. This is the whole contract: feed input
//! with `handle_input`, drain `poll_output`, answer the events that ask.
//!
//! `cargo run --example in_memory -- [SIZE] [PIECE]`: sends SIZE bytes
//! (default 1 MiB) moved PIECE bytes at a time (default 1000) and checks
//! that they arrive intact.

use std::time::Instant;

use bytes::Bytes;
use echoxfer::xfer::{
    FileSpec, Receiver, ReceiverEvent, ReceiverRole, Resume, SafeName, Sender, SenderEvent,
    SenderRole,
};
use echoxfer::{Output, SessionLimits, StreamMachine, TransferConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<usize>());
    let size = args.next().transpose()?.unwrap_or(1 << 20);
    let piece = args.next().transpose()?.unwrap_or(1000).max(1);
    let content: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();

    let now = Instant::now();
    let spec = FileSpec::file(SafeName::new(b"hello.bin", 255)?, size as u64);
    let mut sender = Sender::new(
        SenderRole::new(vec![spec], TransferConfig::default()),
        SessionLimits::default(),
        now,
    );
    let mut receiver = Receiver::new(
        ReceiverRole::new(TransferConfig::default()),
        SessionLimits::default(),
        now,
    );
    let mut stored = Vec::new();

    // Drain each side into the other until both are done. A real transport
    // would write the transmits to a socket and read the other side's.
    // What each side sent that the other has not taken yet.
    let mut done = (None, None);
    let (mut to_receiver, mut to_sender) = (Vec::new(), Vec::new());
    while done.0.is_none() || done.1.is_none() {
        let sent = drain(&mut sender, &mut done.0, |m, e| {
            answer_sender(m, e, &content)
        })?;
        to_receiver.extend_from_slice(&sent);
        let replied = drain(&mut receiver, &mut done.1, |m, e| store(m, e, &mut stored))?;
        to_sender.extend_from_slice(&replied);
        let taken = feed(&mut receiver, &mut to_receiver, piece)?
            + feed(&mut sender, &mut to_sender, piece)?;
        let quiet = sent.is_empty() && replied.is_empty() && taken == 0;
        if quiet && (done.0.is_none() || done.1.is_none()) {
            return Err("both sides wait on each other: stuck".into());
        }
    }
    done.0.take().expect("ended")?;
    done.1.take().expect("ended")?;
    assert_eq!(stored, content, "the content arrived changed");
    println!("{size} bytes moved {piece} at a time, verified by BLAKE3 on arrival");
    Ok(())
}

/// Collects what `m` wants to send, handing its events to `on_event`,
/// until it waits; notes its end in `done`.
fn drain<M: StreamMachine>(
    m: &mut M,
    done: &mut Option<Result<(), echoxfer::Error>>,
    mut on_event: impl FnMut(&mut M, M::Event) -> Result<(), echoxfer::Error>,
) -> Result<Vec<u8>, echoxfer::Error> {
    let mut out = Vec::new();
    loop {
        match m.poll_output() {
            Output::Transmit(bytes) => out.extend_from_slice(&bytes),
            Output::Event(e) => on_event(m, e)?,
            Output::Wait(_) => return Ok(out),
            Output::Done(result) => {
                done.get_or_insert(result);
                return Ok(out);
            }
        }
    }
}

/// Hands `m` what it takes of `bytes`, in pieces of at most `piece`, and
/// removes that from `bytes`; returns how much it took. A machine takes
/// what fits its bounded buffers and says how much (`handle_input`'s
/// count): the rest waits until its output has been drained.
fn feed<M: StreamMachine>(
    m: &mut M,
    bytes: &mut Vec<u8>,
    piece: usize,
) -> Result<usize, echoxfer::Error> {
    let mut taken = 0;
    while taken < bytes.len() {
        let n = piece.min(bytes.len() - taken);
        let k = m.handle_input(Instant::now(), &bytes[taken..taken + n])?;
        taken += k;
        if k < n {
            break;
        }
    }
    bytes.drain(..taken);
    Ok(taken)
}

/// The sender's application: its one "file" is `content`.
fn answer_sender(
    m: &mut Sender,
    event: SenderEvent,
    content: &[u8],
) -> Result<(), echoxfer::Error> {
    match event {
        SenderEvent::Read {
            offset,
            len,
            request,
            ..
        } => {
            let at = offset as usize;
            m.push_chunk(request, Bytes::copy_from_slice(&content[at..at + len]))
        }
        SenderEvent::HashPrefix { len, request, .. } => {
            let mut hasher = blake3::Hasher::new();
            hasher.update(&content[..len as usize]);
            m.prefix_hashed(request, hasher, len)
        }
        SenderEvent::Delivered { .. } | SenderEvent::Started { .. } | SenderEvent::Ended { .. } => {
            Ok(())
        }
        SenderEvent::Rejected { message, .. } => {
            Err(echoxfer::Error::Aborted(format!("refused: {message}")))
        }
    }
}

/// The receiver's application: keeps the file in memory.
fn store(
    m: &mut Receiver,
    event: ReceiverEvent,
    stored: &mut Vec<u8>,
) -> Result<(), echoxfer::Error> {
    match event {
        ReceiverEvent::Offer { request, .. } => m.accept(request, Resume::Fresh),
        ReceiverEvent::Start { from, .. } => {
            stored.truncate(from as usize);
            Ok(())
        }
        ReceiverEvent::Write { offset, data } => {
            assert_eq!(offset as usize, stored.len(), "writes arrive in order");
            stored.extend_from_slice(&data);
            Ok(())
        }
        // The machine checked the hash; "durable" is trivially true in memory.
        ReceiverEvent::Verified { request, .. } => m.saved(request),
        ReceiverEvent::Discard { .. } => {
            stored.clear();
            Ok(())
        }
        // Holes are zeros: in memory they must be written out.
        ReceiverEvent::Hole { len, .. } => {
            stored.resize(stored.len() + len as usize, 0);
            Ok(())
        }
        ReceiverEvent::Refused { .. }
        | ReceiverEvent::Skipped { .. }
        | ReceiverEvent::Flush
        | ReceiverEvent::Finished => Ok(()),
    }
}
