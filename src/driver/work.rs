//! Work an application hands to its driver: calls that may block (the file
//! system's), run where blocking stalls no other session, their result
//! applied to the application and its machine afterwards.
//!
//! An [`App`](super::App) answers a request that needs such a call by
//! keeping the request and returning the call as a [`Work`] from
//! [`poll_work`](super::App::poll_work). The blocking driver and the
//! simulator run it in place; the tokio driver runs it on tokio's blocking
//! pool (`spawn_blocking`), so no runtime worker ever waits on a disk.
//! While a work runs, the stream core hands its machine no input and
//! fires none of its timers (a slow disk is not the peer's fault); it only
//! writes what was already queued, and applies an abort request.

use std::fmt;
use std::io;
use std::time::Instant;

/// The application's part of a session's result, applied once its work
/// has run: typically the machine's answer to the request the work was
/// for (`accept`, `saved`, `push_chunk`).
type Apply<A, M> = Box<dyn FnOnce(&mut A, &mut M, Instant) -> io::Result<()> + Send>;

/// A call that may block, for the driver to run off its event loop. `A` is
/// the application, `M` its machine.
pub struct Work<A, M> {
    job: Box<dyn FnOnce() -> Finish<A, M> + Send>,
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
            job: Box::new(move || Finish {
                apply: Box::new(job()),
            }),
        }
    }

    /// Runs the job (this may block).
    pub fn run(self) -> Finish<A, M> {
        (self.job)()
    }

    /// The same work, with `after` applied to the application and machine
    /// once its result has been (and only if that succeeded): how an app
    /// that wraps another keeps its own books.
    pub fn and_then(self, after: fn(&mut A, &mut M, Instant) -> io::Result<()>) -> Work<A, M>
    where
        A: 'static,
        M: 'static,
    {
        Work {
            job: Box::new(move || {
                let finish = (self.job)();
                Finish {
                    apply: Box::new(move |app: &mut A, m: &mut M, now| {
                        finish.apply(app, m, now)?;
                        after(app, m, now)
                    }),
                }
            }),
        }
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
        Work {
            job: Box::new(move || {
                let finish = (self.job)();
                Finish {
                    apply: Box::new(move |outer: &mut B, m: &mut M, now| {
                        finish.apply(inner(outer), m, now)
                    }),
                }
            }),
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
        f.write_str("Work")
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
}
