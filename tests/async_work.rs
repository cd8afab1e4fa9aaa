//! Async work ([`Work::future`]) on every driver: the tokio driver awaits
//! it as a task of its own, never on the blocking pool; the blocking
//! driver and the in-memory pair poll it to its end in place. Each session
//! sends files to a receiver whose every offer is answered only after an
//! `.await` on a "service" (another task or thread), so the answers are
//! owed across wake-ups.

use std::future::Future;
use std::io;
use std::net::{TcpListener, TcpStream};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use echoxfer::driver::{blocking, App, DriverError, Work};
use echoxfer::testing::fuzz::{small_limits, small_transfer};
use echoxfer::testing::{Cutter, MemDisk, MemReceiver, MemSender, Pair};
use echoxfer::xfer::{Receiver, ReceiverEvent, ReceiverRole, SafeName, Sender};
use tokio::sync::oneshot;

/// A bound on a wait that only a broken driver reaches (it fails the
/// test instead of hanging it); never a measure of speed.
const BOUND: Duration = Duration::from_secs(60);

/// What an offer's answer waits for.
type Answer = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A receiver over an in-memory disk that answers each offer from an async
/// work: the offer is held, the work awaits `wait()`, and its finish hands
/// the offer to the [`MemReceiver`], which accepts it.
struct Deferred {
    inner: MemReceiver,
    held: Option<ReceiverEvent>,
    wait: Box<dyn Fn() -> Answer + Send>,
    /// How many of the works' futures ran (each must run once).
    ran: Arc<AtomicUsize>,
}

impl Deferred {
    fn new(wait: impl Fn() -> Answer + Send + 'static) -> Deferred {
        Deferred {
            inner: MemReceiver::new(MemDisk::default(), false),
            held: None,
            wait: Box::new(wait),
            ran: Arc::default(),
        }
    }
}

impl App<Receiver> for Deferred {
    fn on_event(&mut self, m: &mut Receiver, now: Instant, event: ReceiverEvent) -> io::Result<()> {
        if let ReceiverEvent::Offer { .. } = event {
            if self.held.is_some() {
                return Err(io::Error::other("an offer came while one was owed"));
            }
            self.held = Some(event);
            return Ok(());
        }
        self.inner.on_event(m, now, event)
    }

    fn poll_work(&mut self) -> Option<Work<Self, Receiver>> {
        let offer = self.held.take()?;
        let (wait, ran) = ((self.wait)(), self.ran.clone());
        let work = Work::future(async move {
            ran.fetch_add(1, Ordering::SeqCst);
            wait.await;
            move |app: &mut Deferred, m: &mut Receiver, now| app.inner.on_event(m, now, offer)
        });
        assert!(work.is_async());
        Some(work)
    }
}

/// The files each session sends: several, so several answers are owed in
/// turn.
fn files() -> Vec<(SafeName, Bytes)> {
    (0..3)
        .map(|i| {
            let name = SafeName::new(format!("file-{i}.bin").as_bytes(), 255).unwrap();
            let content: Vec<u8> = (0..5000 + i * 1000).map(|n| (n * 7 + i) as u8).collect();
            (name, Bytes::from(content))
        })
        .collect()
}

fn machines() -> (Sender, Receiver, MemSender) {
    let now = Instant::now();
    let tx = MemSender::new(files());
    let sender = Sender::new(tx.role(small_transfer()), small_limits(), now);
    let receiver = Receiver::new(ReceiverRole::new(small_transfer()), small_limits(), now);
    (sender, receiver, tx)
}

/// Every file arrived intact, each through one async work run once.
fn assert_received(rx: &Deferred, tx: &MemSender) {
    let expected: Vec<(String, Vec<u8>)> = files()
        .into_iter()
        .map(|(name, content)| (name.to_string(), content.to_vec()))
        .collect();
    let got: Vec<(String, Vec<u8>)> = rx.inner.disk.files.clone().into_iter().collect();
    assert_eq!(got, expected);
    assert_eq!(rx.inner.offers.len(), expected.len());
    assert_eq!(
        rx.ran.load(Ordering::SeqCst),
        expected.len(),
        "one run per work"
    );
    assert_eq!(tx.delivered.len(), expected.len());
}

/// A service on a thread of its own (no runtime): each answer is a oneshot
/// it completes from that thread, waking the work's future there.
fn thread_service() -> impl Fn() -> Answer + Send + 'static {
    let (ask, questions) = mpsc::channel::<oneshot::Sender<()>>();
    thread::spawn(move || {
        for reply in questions {
            let _ = reply.send(());
        }
    });
    move || {
        let (reply, answered) = oneshot::channel();
        let asked = ask.send(reply);
        Box::pin(async move {
            asked.expect("the service runs");
            answered.await.expect("the service answers");
        })
    }
}

/// On a runtime whose one blocking thread is held by a parked blocking
/// task, a session whose every offer waits on an async work still ends:
/// the works ran as tasks. A blocking job queued at the start shows the
/// pool was held all along: it has not run when the session ends.
#[test]
fn the_tokio_driver_runs_an_async_work_as_a_task_while_the_blocking_pool_is_held() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(1)
        .enable_all()
        .build()
        .unwrap();
    // Declared after the runtime, so dropped first on any exit: the held
    // blocking thread is let go before the runtime waits for it.
    let (release, released) = mpsc::channel::<()>();
    let (sender, receiver, tx) = machines();
    let (ended, held, queued, tx, rx) = runtime.block_on(async move {
        let (started, running) = oneshot::channel();
        let held = tokio::task::spawn_blocking(move || {
            let _ = started.send(());
            let _ = released.recv();
        });
        running
            .await
            .expect("the blocking thread runs the holding task");
        let queued = tokio::task::spawn_blocking(|| ());

        // The service: a task answering each question.
        let (ask, mut questions) = tokio::sync::mpsc::unbounded_channel::<oneshot::Sender<()>>();
        tokio::spawn(async move {
            while let Some(reply) = questions.recv().await {
                tokio::task::yield_now().await;
                let _ = reply.send(());
            }
        });
        let mut rx = Deferred::new(move || {
            let (reply, answered) = oneshot::channel();
            let asked = ask.send(reply);
            Box::pin(async move {
                asked.expect("the service runs");
                answered.await.expect("the service answers");
            })
        });
        let (mut sender, mut receiver, mut tx) = (sender, receiver, tx);
        let (mut one_end, mut other_end) = tokio::io::duplex(64 * 1024);
        let session = async {
            tokio::join!(
                echoxfer::driver::async_tokio::run_stream(&mut sender, &mut one_end, &mut tx),
                echoxfer::driver::async_tokio::run_stream(&mut receiver, &mut other_end, &mut rx),
            )
        };
        let ended = tokio::time::timeout(BOUND, session).await;
        (ended, held.is_finished(), queued.is_finished(), tx, rx)
    });
    assert!(!held, "the blocking thread was held throughout");
    assert!(!queued, "no blocking job could run during the session");
    let (sent, received) = ended.expect("the session ended though the blocking pool was held");
    sent.unwrap();
    received.unwrap();
    assert_received(&rx, &tx);
    drop(release);
}

/// The blocking driver polls an async work to its end in place, parked
/// while another thread owes the answer.
#[test]
fn the_blocking_driver_runs_an_async_work_in_place() {
    let (mut sender, mut receiver, mut tx) = machines();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let receiving = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut rx = Deferred::new(thread_service());
        let result = blocking::run_stream(&mut receiver, &mut stream, &mut rx);
        (result, rx)
    });
    let mut stream = TcpStream::connect(addr).unwrap();
    let sent: Result<(), DriverError> = blocking::run_stream(&mut sender, &mut stream, &mut tx);
    sent.unwrap();
    let (received, rx) = receiving.join().unwrap();
    received.unwrap();
    assert_received(&rx, &tx);
}

/// The in-memory pair (the simulator's loop) runs an async work in place.
#[test]
fn the_in_memory_pair_runs_an_async_work_in_place() {
    let (sender, receiver, mut tx) = machines();
    let mut pair = Pair::new(sender, receiver, Instant::now(), Cutter::random(7, 300));
    let mut rx = Deferred::new(thread_service());
    let outcome = pair.run(&mut tx, &mut rx, 1_000_000).expect("bounded");
    outcome.a.unwrap();
    outcome.b.unwrap();
    assert_received(&rx, &tx);
}
