//! A tokio app that answers the receiver's requests asynchronously: each
//! offer is put to an async "policy" (standing in for a database or a
//! remote service), and accepted or rejected only once it has answered,
//! after an `.await`, while the runtime goes on with everything else.
//!
//! How: an [`OfferRequest`] is a token, not a callback. The app keeps it
//! when the offer comes in and hands the driver an async [`Work`] from
//! [`poll_work`](App::poll_work) ([`Work::future`]): a future that asks
//! the policy and awaits its verdict. The tokio driver spawns it as a task
//! of its own, so an owed answer costs a task, not a thread; its finish,
//! run back in the session with the machine at hand, spends the token on
//! `accept` or `reject`. While the answer is owed the machine processes no
//! frame.
//!
//! Several sessions run at once, each a sender (in memory, as in
//! `examples/in_memory.rs`) offering a file over the policy's limit, then
//! one under it, over `tokio::io::duplex`. The run checks that in every
//! session the first was refused and the second arrived intact, and that
//! the owed answers cost no thread: the runtime has a single blocking
//! thread (`max_blocking_threads(1)`), and the policy answers in rounds,
//! only once every session's verdict is owed at once. Were each owed
//! answer a job waiting on the blocking pool (as a blocking [`Work::new`]
//! job waiting with `blocking_recv` would be), only one could be owed at a
//! time, no round would ever fill, and the run would fail at its timeout.
//! It exits non-zero if any check fails. `cargo run --example tokio_async`

use std::io;
use std::time::{Duration, Instant};

use bytes::Bytes;
use echoxfer::codec::RejectReason;
use echoxfer::driver::async_tokio::run_stream;
use echoxfer::driver::{App, Work};
use echoxfer::xfer::{FileSpec, OfferRequest, Receiver, ReceiverEvent, ReceiverRole, Resume};
use echoxfer::xfer::{SafeName, Sender, SenderEvent, SenderRole};
use echoxfer::{SessionLimits, TransferConfig};
use tokio::sync::{mpsc, oneshot};

/// The largest file the policy lets in.
const LIMIT: u64 = 256 * 1024;
/// Sessions at once, and so the verdicts the policy waits to be owed at
/// once before it answers any.
const SESSIONS: usize = 4;
/// The run's bound: far more than it needs, reached only if the owed
/// answers cannot all be outstanding at once.
const BOUND: Duration = Duration::from_secs(60);

/// A question for the policy: may a file of `size` bytes come in?
struct Ask {
    size: u64,
    reply: oneshot::Sender<bool>,
}

/// The policy's address: a question asked here is answered after an await.
#[derive(Clone)]
struct Policy(mpsc::UnboundedSender<Ask>);

impl Policy {
    /// The policy's verdict on a file of `size` bytes (no, if it is gone).
    async fn may_come_in(&self, size: u64) -> bool {
        let (reply, verdict) = oneshot::channel();
        if self.0.send(Ask { size, reply }).is_err() {
            return false;
        }
        verdict.await.unwrap_or(false)
    }
}

/// The policy: answers in rounds of `round` questions, each round only
/// once all of its questions are owed at once (and after a pause, as a
/// remote service would take).
async fn policy(mut asks: mpsc::UnboundedReceiver<Ask>, round: usize) {
    let mut owed = Vec::new();
    while let Some(ask) = asks.recv().await {
        owed.push(ask);
        if owed.len() < round {
            continue;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        for ask in owed.drain(..) {
            let _ = ask.reply.send(ask.size <= LIMIT);
        }
    }
}

/// The receiver's app: asks the policy about each offer, keeps files in memory.
struct Inbox {
    policy: Policy,
    /// The offer to put to the policy: its token, and the file's size.
    pending: Option<(OfferRequest, u64)>,
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
                // Answered by the work `poll_work` hands out next.
                self.pending = Some((request, spec.size));
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
        let (request, size) = self.pending.take()?;
        let policy = self.policy.clone();
        Some(Work::future(async move {
            // A task of its own while it waits: no thread is held.
            let accepted = policy.may_come_in(size).await;
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

/// One session: a sender offering `files` to a receiver whose app asks
/// `policy`. Returns what each side made of it.
async fn session(
    files: Vec<(&'static str, Vec<u8>)>,
    policy: Policy,
) -> Result<(Outbox, Inbox), Box<dyn std::error::Error + Send + Sync>> {
    let specs = files
        .iter()
        .map(|(name, content)| {
            let name = SafeName::new(name.as_bytes(), 255)?;
            Ok(FileSpec::file(name, content.len() as u64))
        })
        .collect::<Result<Vec<_>, echoxfer::xfer::NameError>>()?;
    let (now, limits, config) = (
        Instant::now(),
        SessionLimits::default(),
        TransferConfig::default(),
    );
    let mut sender = Sender::new(SenderRole::new(specs, config.clone()), limits.clone(), now);
    let mut receiver = Receiver::new(ReceiverRole::new(config), limits, now);
    let mut outbox = Outbox {
        contents: files.into_iter().map(|(_, content)| content).collect(),
        delivered: Vec::new(),
        rejected: Vec::new(),
    };
    let mut inbox = Inbox {
        policy,
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
    Ok((outbox, inbox))
}

fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    // One blocking thread: the owed answers must not need any.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(1)
        .enable_all()
        .build()?;
    let too_large = vec![7u8; LIMIT as usize + 1];
    let fits: Vec<u8> = (0..LIMIT as usize).map(|i| (i * 31 % 251) as u8).collect();
    let files = vec![("too_large.bin", too_large), ("fits.bin", fits.clone())];

    let ended = runtime.block_on(async {
        let (asks, questions) = mpsc::unbounded_channel();
        tokio::spawn(policy(questions, SESSIONS));
        let policy = Policy(asks);
        let sessions: Vec<_> = (0..SESSIONS)
            .map(|_| tokio::spawn(session(files.clone(), policy.clone())))
            .collect();
        tokio::time::timeout(BOUND, async {
            let mut ended = Vec::new();
            for session in sessions {
                ended.push(session.await?);
            }
            Ok::<_, tokio::task::JoinError>(ended)
        })
        .await
    });
    let Ok(ended) = ended else {
        return Err(format!(
            "the policy never saw all {SESSIONS} verdicts owed at once within {BOUND:?}: \
             each owed answer held a blocking thread"
        )
        .into());
    };

    for (n, ended) in ended?.into_iter().enumerate() {
        let (outbox, inbox) = ended?;
        if (outbox.rejected.as_slice(), outbox.delivered.as_slice()) != (&[0], &[1]) {
            return Err(format!(
                "session {n}: expected file 0 refused and file 1 delivered: \
                 refused {:?}, delivered {:?}",
                outbox.rejected, outbox.delivered
            )
            .into());
        }
        if inbox.saved != [("fits.bin".to_string(), fits.clone())] {
            return Err(format!("session {n}: what arrived differs from what was sent").into());
        }
    }
    println!(
        "{SESSIONS} sessions' verdicts were owed at once with one blocking thread; \
         each refused too_large.bin and let fits.bin in ({LIMIT} bytes intact)"
    );
    Ok(())
}
