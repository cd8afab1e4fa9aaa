//! Work an application hands to its driver: an answer it cannot give at
//! once, prepared off the event loop, its result applied to the application
//! and its machine afterwards.
//!
//! An [`App`](super::App) answers a request that needs such a wait by
//! keeping the request and returning a [`Work`] from
//! [`poll_work`](super::App::poll_work). A work is one of two kinds:
//!
//! - a *blocking* job ([`Work::new`]): a call that may block (the file
//!   system's). The tokio driver runs it on tokio's blocking pool
//!   (`spawn_blocking`), so no runtime worker ever waits on a disk;
//! - an *async* job ([`Work::future`]): a future (a policy service asked
//!   over a channel, a database client). The tokio driver spawns it as a
//!   task (`tokio::spawn`), so an answer owed costs a task, not a thread,
//!   however many are owed at once. It must not block.
//!
//! The blocking driver, the simulator and the in-memory pair run either
//! kind in place ([`Work::run`]): an async job is polled to its end on the
//! calling thread by a minimal executor that parks the thread between
//! wake-ups. That executor drives no reactor: a future that needs one
//! (tokio's timers or sockets) runs only on the tokio driver; channels,
//! locks and other runtime-agnostic futures run anywhere.
//!
//! Either way, the job's result is a closure applied to the application
//! and its machine back on the session's own thread or task (a
//! [`Finish`]). While a work runs, the stream core fires none of its
//! machine's timers (a slow disk or service is not the peer's fault) and
//! drains nothing from it; it only writes what was already queued, applies
//! an abort request and, with a shell that can wait for two things at
//! once, reads ahead into the machine's buffer as far as its input room
//! allows ([`StreamCore::read_while_working`](super::stream::StreamCore::read_while_working)).

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::Instant;

/// The application's part of a session's result, applied once its work
/// has run: typically the machine's answer to the request the work was
/// for (`accept`, `saved`, `push_chunk`).
type Apply<A, M> = Box<dyn FnOnce(&mut A, &mut M, Instant) -> io::Result<()> + Send>;

/// An answer the application cannot give at once, for the driver to
/// prepare off its event loop: a call that may block ([`Work::new`]) or a
/// future ([`Work::future`]). `A` is the application, `M` its machine.
pub struct Work<A, M> {
    job: Job<A, M>,
}

/// A [`Work`]'s job, as a driver runs it ([`Work::into_job`]): how a
/// driver of one's own tells the two kinds apart.
pub enum Job<A, M> {
    /// A call that may block: run it where blocking stalls no other
    /// session (the session's own thread, a blocking pool).
    Blocking(Box<dyn FnOnce() -> Finish<A, M> + Send>),
    /// A future: poll it as a task of its own (it does not block), or to
    /// its end in place ([`Work::run`]).
    Async(Pin<Box<dyn Future<Output = Finish<A, M>> + Send>>),
}

/// What a [`Work`] produced: applied to the application and its machine
/// when the driver is ready for it.
pub struct Finish<A, M> {
    apply: Apply<A, M>,
}

impl<A, M> Work<A, M> {
    /// `job` runs where it may block, and returns what is then applied to
    /// the application and machine (on the driver's own thread or task).
    pub fn new<J, F>(job: J) -> Work<A, M>
    where
        J: FnOnce() -> F + Send + 'static,
        F: FnOnce(&mut A, &mut M, Instant) -> io::Result<()> + Send + 'static,
    {
        Work {
            job: Job::Blocking(Box::new(move || Finish {
                apply: Box::new(job()),
            })),
        }
    }

    /// An async work: `job` is awaited (on the tokio driver, as a task of
    /// its own: it costs no thread while it waits), and its output is then
    /// applied to the application and machine (on the driver's own thread
    /// or task). `job` must not block; the drivers that run work in place
    /// poll it on their own thread, with no reactor (see the [module
    /// docs](self)).
    ///
    /// An app that asks a service (examples/tokio_async.rs asks a policy
    /// task over a channel) returns the question as such a work:
    ///
    /// ```
    /// use echoxfer::driver::Work;
    /// use std::time::Instant;
    ///
    /// async fn ask_the_service() -> u32 {
    ///     6 * 7
    /// }
    ///
    /// let work: Work<Vec<u32>, ()> = Work::future(async {
    ///     let answer = ask_the_service().await;
    ///     move |app: &mut Vec<u32>, _: &mut (), _| {
    ///         app.push(answer);
    ///         Ok(())
    ///     }
    /// });
    /// assert!(work.is_async());
    /// // What the blocking driver does with it (the tokio driver spawns it).
    /// let mut app = Vec::new();
    /// work.run().apply(&mut app, &mut (), Instant::now()).unwrap();
    /// assert_eq!(app, [42]);
    /// ```
    pub fn future<J, F>(job: J) -> Work<A, M>
    where
        J: Future<Output = F> + Send + 'static,
        F: FnOnce(&mut A, &mut M, Instant) -> io::Result<()> + Send + 'static,
    {
        Work {
            job: Job::Async(Box::pin(async move {
                Finish {
                    apply: Box::new(job.await),
                }
            })),
        }
    }

    /// Whether this is an async work ([`Work::future`]).
    pub fn is_async(&self) -> bool {
        matches!(self.job, Job::Async(_))
    }

    /// The job, for a driver to run as its kind says.
    pub fn into_job(self) -> Job<A, M> {
        self.job
    }

    /// Runs the job to its end on this thread: a blocking job is called
    /// (this may block), an async one polled until it is ready, the thread
    /// parked between its wake-ups.
    pub fn run(self) -> Finish<A, M> {
        match self.job {
            Job::Blocking(job) => job(),
            Job::Async(job) => block_on(job),
        }
    }

    /// The same work, of the same kind, with `then` turning its result
    /// into another.
    fn map<B>(self, then: impl FnOnce(Finish<A, M>) -> Finish<B, M> + Send + 'static) -> Work<B, M>
    where
        A: 'static,
        B: 'static,
        M: 'static,
    {
        Work {
            job: match self.job {
                Job::Blocking(job) => Job::Blocking(Box::new(move || then(job()))),
                Job::Async(job) => Job::Async(Box::pin(async move { then(job.await) })),
            },
        }
    }

    /// The same work, with `after` applied to the application and machine
    /// once its result has been (and only if that succeeded): how an app
    /// that wraps another keeps its own books.
    pub fn and_then(self, after: fn(&mut A, &mut M, Instant) -> io::Result<()>) -> Work<A, M>
    where
        A: 'static,
        M: 'static,
    {
        self.map(move |finish| Finish {
            apply: Box::new(move |app: &mut A, m: &mut M, now| {
                finish.apply(app, m, now)?;
                after(app, m, now)
            }),
        })
    }

    /// The same work for an application `B` that holds this one's
    /// application (reached with `inner`): how an app that wraps another
    /// passes its work on.
    pub fn within<B>(self, inner: fn(&mut B) -> &mut A) -> Work<B, M>
    where
        A: 'static,
        B: 'static,
        M: 'static,
    {
        self.map(move |finish| Finish {
            apply: Box::new(move |outer: &mut B, m: &mut M, now| {
                finish.apply(inner(outer), m, now)
            }),
        })
    }
}

/// Polls `future` to its end on this thread, parking it until a wake-up.
/// The flag makes it robust to spurious unparks and to an unpark token
/// taken by something else that parks this thread.
fn block_on<T>(mut future: Pin<Box<dyn Future<Output = T> + Send>>) -> T {
    struct Signal {
        woken: AtomicBool,
        thread: Thread,
    }
    impl Wake for Signal {
        fn wake(self: Arc<Self>) {
            self.wake_by_ref();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.woken.store(true, Ordering::Release);
            self.thread.unpark();
        }
    }
    let signal = Arc::new(Signal {
        woken: AtomicBool::new(false),
        thread: thread::current(),
    });
    let waker = Waker::from(signal.clone());
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        while !signal.woken.swap(false, Ordering::Acquire) {
            thread::park();
        }
    }
}

impl<A, M> Finish<A, M> {
    /// A result that fails the application with `error`: what a driver
    /// reports when the job could not run to its end (it panicked).
    pub fn failed(error: io::Error) -> Finish<A, M> {
        Finish {
            apply: Box::new(move |_, _, _| Err(error)),
        }
    }

    /// Applies the result at `now`. An `Err` is the application's failure,
    /// as from [`App::on_event`](super::App::on_event).
    pub fn apply(self, app: &mut A, machine: &mut M, now: Instant) -> io::Result<()> {
        (self.apply)(app, machine, now)
    }
}

/// Runs `app`'s work in place until it has none, applying each result at
/// `now`: what a synchronous loop of one's own does after handing the app
/// an event (the drivers of this crate do it themselves).
pub fn work_in_place<A: super::App<M>, M: crate::Machine>(
    app: &mut A,
    machine: &mut M,
    now: Instant,
) -> io::Result<()> {
    while let Some(work) = app.poll_work() {
        work.run().apply(app, machine, now)?;
    }
    Ok(())
}

impl<A, M> fmt::Debug for Work<A, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.job, f)
    }
}

impl<A, M> fmt::Debug for Job<A, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Job::Blocking(_) => "Work(blocking)",
            Job::Async(_) => "Work(async)",
        })
    }
}

impl<A, M> fmt::Debug for Finish<A, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Finish")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_work_runs_its_job_once_and_its_finish_sees_the_jobs_result() {
        let work: Work<Vec<u32>, u32> = Work::new(|| {
            let answer = 6 * 7;
            move |app: &mut Vec<u32>, m: &mut u32, _| {
                app.push(answer);
                *m += 1;
                Ok(())
            }
        });
        let (mut app, mut machine) = (Vec::new(), 0);
        work.run()
            .apply(&mut app, &mut machine, Instant::now())
            .unwrap();
        assert_eq!((app, machine), (vec![42], 1));
        let failed: Finish<Vec<u32>, u32> = Finish::failed(io::ErrorKind::Other.into());
        assert!(failed
            .apply(&mut Vec::new(), &mut 0, Instant::now())
            .is_err());
    }

    /// A future that is pending until another thread wakes it: the first
    /// poll starts that thread, which sets `ready` and then wakes the
    /// task, as a channel's sender does.
    struct WokenLater {
        ready: Arc<AtomicBool>,
        started: bool,
    }

    impl Future for WokenLater {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            if self.ready.load(Ordering::Acquire) {
                return Poll::Ready(());
            }
            if !self.started {
                self.started = true;
                let (ready, waker) = (self.ready.clone(), cx.waker().clone());
                thread::spawn(move || {
                    ready.store(true, Ordering::Release);
                    waker.wake();
                });
            }
            Poll::Pending
        }
    }

    #[test]
    fn a_future_work_runs_once_to_its_end_and_its_finish_is_applied() {
        let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = runs.clone();
        let work: Work<Vec<u32>, u32> = Work::future(async move {
            counted.fetch_add(1, Ordering::SeqCst);
            // Pending until another thread wakes it: run parks, then polls again.
            WokenLater {
                ready: Arc::new(AtomicBool::new(false)),
                started: false,
            }
            .await;
            let answer = 6 * 7;
            move |app: &mut Vec<u32>, m: &mut u32, _| {
                app.push(answer);
                *m += 1;
                Ok(())
            }
        });
        assert!(work.is_async());
        assert!(matches!(work, Work { job: Job::Async(_) }));
        let (mut app, mut machine) = (Vec::new(), 0);
        let finish = work.run();
        assert_eq!(runs.load(Ordering::SeqCst), 1, "the future ran once");
        assert!(app.is_empty(), "nothing is applied before the finish");
        finish
            .apply(&mut app, &mut machine, Instant::now())
            .unwrap();
        assert_eq!((app, machine), (vec![42], 1));
    }

    struct Outer {
        inner: Vec<u32>,
        books: Vec<&'static str>,
    }

    fn note(outer: &mut Outer, _: &mut u32, _: Instant) -> io::Result<()> {
        outer.books.push("after");
        Ok(())
    }

    #[test]
    fn within_and_and_then_keep_the_kind_and_apply_in_order_for_both_kinds() {
        let blocking: Work<Vec<u32>, u32> = Work::new(|| {
            |app: &mut Vec<u32>, _: &mut u32, _| {
                app.push(1);
                Ok(())
            }
        });
        let future: Work<Vec<u32>, u32> = Work::future(async {
            |app: &mut Vec<u32>, _: &mut u32, _| {
                app.push(2);
                Ok(())
            }
        });
        for (work, is_async, pushed) in [(blocking, false, 1), (future, true, 2)] {
            let outer = work.within(|o: &mut Outer| &mut o.inner).and_then(note);
            assert_eq!(outer.is_async(), is_async, "{outer:?}");
            let mut app = Outer {
                inner: Vec::new(),
                books: Vec::new(),
            };
            outer.run().apply(&mut app, &mut 0, Instant::now()).unwrap();
            assert_eq!((app.inner, app.books), (vec![pushed], vec!["after"]));
        }
        // A failed finish skips what `and_then` adds.
        let failing: Work<Outer, u32> = Work::future(async {
            |_: &mut Outer, _: &mut u32, _| Err(io::ErrorKind::Other.into())
        });
        let mut app = Outer {
            inner: Vec::new(),
            books: Vec::new(),
        };
        let result = failing
            .and_then(note)
            .run()
            .apply(&mut app, &mut 0, Instant::now());
        assert!(result.is_err());
        assert!(app.books.is_empty());
    }
}
