//! A tokio app that answers the receiver's requests asynchronously: each
//! offer is put to an async "policy" task (standing in for a database or a
//! remote service), and accepted or rejected only once it has answered,
//! after an `.await`, while the runtime goes on with everything else.
//!
//! How: an [`OfferRequest`] is a token, not a callback. The app keeps it
//! when the offer comes in, with the receiving end of a oneshot the policy
//! answers on, and hands the driver a [`Work`] from
//! [`poll_work`](App::poll_work). The tokio driver runs a work's job on
//! tokio's blocking pool, so the job may wait for the answer
//! (`blocking_recv`) without stalling a runtime worker; its finish, run
//! back in the session with the machine at hand, spends the token on
//! `accept` or `reject`. While the answer is owed the machine processes no
//! frame. (A job cannot itself `.await`: the async part lives in the
//! policy task, and the job only waits for its verdict.)
//!
//! A sender (in memory, as in `examples/in_memory.rs`) offers a file over
//! the policy's limit, then one under it, over `tokio::io::duplex`. The run
//! checks that the first was refused and the second arrived intact, and
//! exits non-zero otherwise. `cargo run --example tokio_async`

use std::io;
use std::time::{Duration, Instant};

use bytes::Bytes;
use echoxfer::codec::RejectReason;
use echoxfer::driver::tokio::run_stream;
use echoxfer::driver::{App, Work};
use echoxfer::xfer::{FileSpec, OfferRequest, Receiver, ReceiverEvent, ReceiverRole, Resume};
use echoxfer::xfer::{SafeName, Sender, SenderEvent, SenderRole};
use echoxfer::{SessionLimits, TransferConfig};
use tokio::sync::{mpsc, oneshot};

/// The largest file the policy lets in.
const LIMIT: u64 = 256 * 1024;

/// A question for the policy: may a file of `size` bytes come in?
struct Ask {
    size: u64,
    reply: oneshot::Sender<bool>,
}

/// The policy: answers each question after an await.
async fn policy(mut asks: mpsc::UnboundedReceiver<Ask>) {
    while let Some(ask) = asks.recv().await {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let _ = ask.reply.send(ask.size <= LIMIT);
    }
}

/// The receiver's app: asks the policy about each offer, keeps files in memory.
struct Inbox {
    policy: mpsc::UnboundedSender<Ask>,
    /// The offer put to the policy: its token, held until the verdict.
    pending: Option<(OfferRequest, oneshot::Receiver<bool>)>,
    current: Vec<u8>,
    /// The path of each file accepted and not yet saved, by id.
    names: std::collections::BTreeMap<u32, String>,
    saved: Vec<(String, Vec<u8>)>,
}

impl App<Receiver> for Inbox {
    fn on_event(&mut self, m: &mut Receiver, _: Instant, event: ReceiverEvent) -> io::Result<()> {
        match event {
            ReceiverEvent::Offer { id, spec, request } => {
                self.names.insert(id, spec.path.to_string());
                let size = spec.size;
                let (reply, verdict) = oneshot::channel();
                let gone = |_| io::Error::other("the policy task has ended");
                self.policy.send(Ask { size, reply }).map_err(gone)?;
                self.pending = Some((request, verdict));
            }
            ReceiverEvent::Start { from, .. } => self.current.truncate(from as usize),
            ReceiverEvent::Write { data, .. } => self.current.extend_from_slice(&data),
            // In memory, "durable" is at once; a disk would go through a Work too.
            ReceiverEvent::Verified { id, request, .. } => {
                let content = std::mem::take(&mut self.current);
                let name = self.names.remove(&id).unwrap_or_default();
                self.saved.push((name, content));
                m.saved(request).map_err(io::Error::other)?;
            }
            ReceiverEvent::Hole { len, .. } => {
                let len = self.current.len() + len as usize;
                self.current.resize(len, 0);
            }
            ReceiverEvent::Discard { .. } => self.current.clear(),
            ReceiverEvent::Refused { .. }
            | ReceiverEvent::Skipped { .. }
            | ReceiverEvent::Flush
            | ReceiverEvent::Finished => {}
        }
        Ok(())
    }

    fn poll_work(&mut self) -> Option<Work<Self, Receiver>> {
        let (request, verdict) = self.pending.take()?;
        Some(Work::new(move || {
            // On tokio's blocking pool: this wait stalls no runtime worker.
            let accepted = verdict.blocking_recv().unwrap_or(false);
            move |_: &mut Inbox, m: &mut Receiver, _| {
                let answered = match accepted {
                    true => m.accept(request, Resume::Fresh),
                    false => m.reject(request, RejectReason::TooLarge, "over the policy's limit"),
                };
                answered.map_err(io::Error::other)
            }
        }))
    }
}

/// The sender's app: its files are `contents`; notes what became of them.
struct Outbox {
    contents: Vec<Vec<u8>>,
    delivered: Vec<usize>,
    rejected: Vec<usize>,
}

impl App<Sender> for Outbox {
    fn on_event(&mut self, m: &mut Sender, _: Instant, event: SenderEvent) -> io::Result<()> {
        let answered = match event {
            SenderEvent::Read {
                file,
                offset,
                len,
                request,
            } => {
                let chunk = &self.contents[file][offset as usize..][..len];
                m.push_chunk(request, Bytes::copy_from_slice(chunk))
            }
            SenderEvent::HashPrefix { file, len, request } => {
                let mut hasher = blake3::Hasher::new();
                hasher.update(&self.contents[file][..len as usize]);
                m.prefix_hashed(request, hasher, len)
            }
            SenderEvent::Delivered { file, .. } => {
                self.delivered.push(file);
                Ok(())
            }
            SenderEvent::Rejected { file, .. } => {
                self.rejected.push(file);
                Ok(())
            }
            SenderEvent::Started { .. } | SenderEvent::Ended { .. } => Ok(()),
        };
        answered.map_err(io::Error::other)
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let too_large = vec![7u8; LIMIT as usize + 1];
    let fits: Vec<u8> = (0..LIMIT as usize).map(|i| (i * 31 % 251) as u8).collect();
    let specs = [("too_large.bin", &too_large), ("fits.bin", &fits)]
        .into_iter()
        .map(|(name, content)| {
            let name = SafeName::new(name.as_bytes(), 255)?;
            let size = content.len() as u64;
            Ok(FileSpec::file(name, size))
        })
        .collect::<Result<Vec<_>, echoxfer::xfer::NameError>>()?;

    let (asks, questions) = mpsc::unbounded_channel();
    tokio::spawn(policy(questions));
    let (now, limits, config) = (
        Instant::now(),
        SessionLimits::default(),
        TransferConfig::default(),
    );
    let mut sender = Sender::new(SenderRole::new(specs, config.clone()), limits.clone(), now);
    let mut receiver = Receiver::new(ReceiverRole::new(config), limits, now);
    let mut outbox = Outbox {
        contents: vec![too_large, fits.clone()],
        delivered: Vec::new(),
        rejected: Vec::new(),
    };
    let mut inbox = Inbox {
        policy: asks,
        pending: None,
        current: Vec::new(),
        names: Default::default(),
        saved: Vec::new(),
    };

    let (mut one_end, mut other_end) = tokio::io::duplex(64 * 1024);
    let (sent, received) = tokio::join!(
        run_stream(&mut sender, &mut one_end, &mut outbox),
        run_stream(&mut receiver, &mut other_end, &mut inbox),
    );
    sent?;
    received?;

    if (outbox.rejected.as_slice(), outbox.delivered.as_slice()) != (&[0], &[1]) {
        return Err(format!(
            "expected file 0 refused and file 1 delivered: refused {:?}, delivered {:?}",
            outbox.rejected, outbox.delivered
        )
        .into());
    }
    if inbox.saved != [("fits.bin".to_string(), fits)] {
        return Err("what arrived differs from what was sent".into());
    }
    println!("the policy refused too_large.bin and let fits.bin in; {LIMIT} bytes arrived intact");
    Ok(())
}
