//! The secure channel, as the `echoxfer` CLI speaks it by default: a file
//! sender and a receiver, each behind `Secure`, each on a thread of its
//! own, joined by two `std::sync::mpsc` channels that stand in for a TCP
//! connection. The machines never see the channels: swap in a socket, a
//! pipe or a QUIC stream and nothing else changes.
//!
//! `cargo run --example secure`: sends 1 MiB through the channel and
//! checks that it arrived intact.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::Instant;

use bytes::{Buf, Bytes};
use echoxfer::secure::{normalize_code, os_seed, Secure, SecureConfig};
use echoxfer::xfer::{
    FileSpec, Receiver, ReceiverEvent, ReceiverRole, Resume, SafeName, Sender, SenderEvent,
    SenderRole,
};
use echoxfer::{Error, Output, SessionLimits, StreamMachine, TransferConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let content: Bytes = (0..1 << 20).map(|i| (i % 251) as u8).collect();
    // Both ends must turn what the user typed into the same password:
    // surrounding blanks and ASCII case do not count.
    let code = normalize_code(" 7-Crossover-Clockwork ")?;
    let now = Instant::now();
    let config = SecureConfig::default();

    // The side that opened the connection is the client, the side that
    // accepted it the server, whichever of them sends. Each gets its own
    // fresh seed from the OS (feature `os-rng`; or 32 bytes from your CSPRNG).
    let file = FileSpec::file(SafeName::new(b"hello.bin", 255)?, content.len() as u64);
    let role = SenderRole::new(vec![file], TransferConfig::default());
    let sender = Sender::new(role, SessionLimits::default(), now);
    let mut sender = Secure::client(sender, code.as_bytes(), config.clone(), now, os_seed()?);
    let role = ReceiverRole::new(TransferConfig::default());
    let receiver = Receiver::new(role, SessionLimits::default(), now);
    let mut receiver = Secure::server(receiver, code.as_bytes(), config, now, os_seed()?);

    // The "connection": a channel each way.
    let (to_receiver, from_sender) = mpsc::channel();
    let (to_sender, from_receiver) = mpsc::channel();
    let receiving = thread::spawn(move || {
        let mut stored = Vec::new();
        // `Secure<Receiver>` dereferences to the `Receiver`: answer on it.
        let answer = |r: &mut Secure<Receiver>, event| match event {
            ReceiverEvent::Offer { request, .. } => r.accept(request, Resume::Fresh),
            ReceiverEvent::Write { data, .. } => {
                stored.extend_from_slice(&data);
                Ok(())
            }
            // Its BLAKE3 checked out; in memory, it is as durable as it gets.
            ReceiverEvent::Verified { request, .. } => r.saved(request),
            _ => Ok(()),
        };
        run(&mut receiver, to_sender, from_sender, answer).map(|()| stored)
    });
    let data = content.clone();
    let answer = |s: &mut Secure<Sender>, event| match event {
        // A slice of the `Bytes`: sealed into records straight from there.
        SenderEvent::Read {
            offset,
            len,
            request,
            ..
        } => {
            let at = offset as usize;
            s.push_chunk(request, data.slice(at..at + len))
        }
        SenderEvent::Rejected { message, .. } => Err(Error::Aborted(message)),
        _ => Ok(()),
    };
    run(&mut sender, to_receiver, from_receiver, answer)?;
    let stored = receiving.join().expect("the receiver's thread panicked")?;
    assert!(stored == content, "the file arrived changed");
    println!(
        "{} bytes sent encrypted and authenticated, arrived intact",
        stored.len()
    );
    Ok(())
}

/// One side's loop, as a socket driver runs it: send what the machine
/// sends, answer its events, and when it waits, hand it the peer's bytes
/// or fire its deadline.
fn run<M: StreamMachine>(
    m: &mut M,
    tx: mpsc::Sender<Bytes>,
    rx: mpsc::Receiver<Bytes>,
    mut answer: impl FnMut(&mut M, M::Event) -> Result<(), Error>,
) -> Result<(), Error> {
    let mut unread = Bytes::new();
    loop {
        match m.poll_output() {
            // Fails only if the peer is gone; its own end says why.
            Output::Transmit(bytes) => drop(tx.send(bytes)),
            // A failed answer aborts the session: the peer is told why.
            Output::Event(event) => {
                if let Err(e) = answer(m, event) {
                    m.abort(e.to_string());
                }
            }
            Output::Done(result) => return result,
            // The machine takes what fits (two records, for `Secure`) and
            // says how much; the rest waits until its output is drained.
            Output::Wait(_) if !unread.is_empty() => {
                let taken = m.handle_input(Instant::now(), &unread)?;
                unread.advance(taken);
            }
            Output::Wait(deadline) => {
                let next = match deadline {
                    Some(at) => rx.recv_timeout(at.saturating_duration_since(Instant::now())),
                    None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                };
                match next {
                    Ok(bytes) => unread = bytes,
                    Err(RecvTimeoutError::Timeout) => m.handle_timeout(Instant::now()),
                    // The peer hung up: without its close record, a truncation.
                    Err(RecvTimeoutError::Disconnected) => m.handle_eof(Instant::now()),
                }
            }
        }
    }
}
