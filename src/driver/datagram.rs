//! The datagram loop, written once and sans-IO: [`DatagramCore`] drives one
//! [`DatagramMachine`] and its [`App`], and tells an I/O shell what to do
//! next. The blocking and tokio `run_datagram`s are such shells: they only
//! move datagrams and time.
//!
//! # Contract
//!
//! A shell calls [`DatagramCore::next`] with the current time and does what
//! the returned [`DatagramNext`] says, reports how it went, and calls `next`
//! again:
//!
//! | `DatagramNext`       | the shell does                                          | and reports |
//! |----------------------|---------------------------------------------------------|-------------|
//! | `Send(datagram)`     | sends the payload to its peer (best effort)             | [`sent`](DatagramCore::sent) |
//! | `Receive { until }`  | receives one datagram into [`receive_buffer`](DatagramCore::receive_buffer), giving up at `until` (`None`: no limit) or at a shutdown | [`received`](DatagramCore::received), [`receive_failed`](DatagramCore::receive_failed), [`timed_out`](DatagramCore::timed_out) or [`stop`](DatagramCore::stop) |
//! | `Work`               | takes the application's [`Work`] with [`take_work`](DatagramCore::take_work) and runs it as its kind says ([`Work::into_job`]): in place, or off the loop (a blocking job on a blocking pool, an async one as a task) | [`worked`](DatagramCore::worked), once it has run |
//! | `AwaitWork`          | waits for the work it runs                              | [`worked`](DatagramCore::worked) |
//! | `Done(result)`       | stops; the loop is over                                 | nothing |
//!
//! Time only ever comes in as `now`. What the core owns:
//!
//! - the draining: the machine's outputs, one datagram at a time, its events
//!   handed to the application;
//! - the application's failure: it ends the loop at once with the
//!   application's error (a datagram protocol has no way to tell its peers
//!   why; later events are dropped);
//! - the application's work: asked for (with [`App::poll_work`]) whenever
//!   the machine has drained, run before anything more is received, and
//!   before the loop ends as the machine says (not when it fails); while
//!   it runs, the machine gets no input (datagrams wait in the socket's
//!   buffer) and its timers do not fire;
//! - the deadline: the machine's, handed out as `until`; a deadline already
//!   past fires the machine's timer without asking the shell, and a
//!   [`timed_out`](DatagramCore::timed_out) before it (a shell that wakes
//!   to look at a shutdown flag) does not reach the machine;
//! - the end: the machine's `Done`, the application's failure, a failed
//!   receive, or a shutdown ([`stop`](DatagramCore::stop), which ends the
//!   loop with `Ok` at its next wait; running work is awaited first).
//!
//! UDP is lossy by contract: a failed send is a lost datagram, and an ICMP
//! error from an earlier send surfacing at a receive (`ConnectionRefused`)
//! is ignored, as is `Interrupted`. Calling `next` after `Done` returns
//! `Done` again with an error.

use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use super::slot::WorkSlot;
use super::{App, DriverError, Finish, Work};
use crate::machine::{Datagram, DatagramMachine, Output};

/// The largest datagram the core receives whole: a UDP payload cannot be
/// larger, so the receive buffer is this size.
pub(crate) const DATAGRAM_MAX: usize = 65_536;

/// What the shell does next.
#[derive(Debug)]
pub enum DatagramNext {
    /// Send this datagram to its peer, then report [`DatagramCore::sent`].
    Send(Datagram),
    /// Receive one datagram into [`DatagramCore::receive_buffer`], waiting
    /// at most until `until` (`None`: until a datagram or a shutdown).
    Receive {
        /// When the machine's timer is due.
        until: Option<Instant>,
    },
    /// Take the application's work ([`DatagramCore::take_work`]) and run it
    /// as its kind says (a blocking job where it may block, an async one
    /// polled); report [`DatagramCore::worked`] once it has run.
    Work,
    /// Wait for the running work, then report [`DatagramCore::worked`].
    AwaitWork,
    /// The loop is over, with this result.
    Done(Result<(), DriverError>),
}

/// The sans-IO datagram loop around one machine and its application (see
/// the [module docs](self) for the contract).
pub struct DatagramCore<'a, M, A> {
    machine: &'a mut M,
    app: &'a mut A,
    /// Where the shell receives a datagram.
    buf: Vec<u8>,
    /// The machine's deadline at its last wait.
    deadline: Option<Instant>,
    /// The application's work: asked for, handed out, awaited.
    work: WorkSlot<A, M>,
    /// The peer of the datagram last handed out, for the log of a failed send.
    sending_to: Option<SocketAddr>,
    /// How the loop ends, once it does (after any work owed).
    ending: Option<Result<(), DriverError>>,
    stopped: bool,
    finished: bool,
}

impl<'a, M: DatagramMachine, A: App<M>> DatagramCore<'a, M, A> {
    /// A loop around `machine` and `app`.
    pub fn new(machine: &'a mut M, app: &'a mut A) -> Self {
        DatagramCore {
            machine,
            app,
            buf: vec![0; DATAGRAM_MAX],
            deadline: None,
            work: WorkSlot::Empty,
            sending_to: None,
            ending: None,
            stopped: false,
            finished: false,
        }
    }

    /// What to do next, at `now`.
    pub fn next(&mut self, now: Instant) -> DatagramNext {
        loop {
            if self.finished {
                return DatagramNext::Done(Err(DriverError::io("polling an ended datagram loop")(
                    io::ErrorKind::NotConnected.into(),
                )));
            }
            if self.work.is_running() {
                return DatagramNext::AwaitWork;
            }
            if self.work.is_ready() {
                return DatagramNext::Work;
            }
            if let Some(result) = self.ending.take() {
                return self.end(result);
            }
            if self.stopped {
                return self.end(Ok(()));
            }
            match self.machine.poll_output() {
                Output::Transmit(datagram) => {
                    self.sending_to = Some(datagram.peer);
                    return DatagramNext::Send(datagram);
                }
                Output::Event(event) => {
                    if let Err(source) = self.app.on_event(self.machine, now, event) {
                        self.app_failure(source);
                    }
                }
                Output::Wait(deadline) => {
                    if self.work.ask(self.app) {
                        continue;
                    }
                    match deadline {
                        Some(due) if due <= now => self.machine.handle_timeout(now),
                        until => {
                            self.deadline = until;
                            return DatagramNext::Receive { until };
                        }
                    }
                }
                Output::Done(result) => self.ending = Some(result.map_err(DriverError::from)),
            }
        }
    }

    /// Ends with `result`, once the application has done the work it still
    /// owes (writing out what it was given) if the loop ends well.
    fn end(&mut self, result: Result<(), DriverError>) -> DatagramNext {
        if result.is_ok() && self.work.ask(self.app) {
            self.ending = Some(result);
            return DatagramNext::Work;
        }
        self.finished = true;
        DatagramNext::Done(result)
    }

    fn app_failure(&mut self, source: io::Error) {
        // The first failure stands; later events are dropped with the loop.
        if !matches!(self.ending, Some(Err(_))) {
            self.ending = Some(Err(DriverError::App(source)));
        }
    }

    /// The datagram of [`DatagramNext::Send`] went out, or failed: a failed
    /// send is a lost datagram (UDP is lossy), logged and otherwise ignored.
    pub fn sent(&mut self, now: Instant, result: io::Result<usize>) {
        let _ = now;
        if let Err(error) = result {
            let peer = self.sending_to.map(|p| p.to_string()).unwrap_or_default();
            tracing::debug!(%peer, %error, "send_to failed");
        }
    }

    /// Where the shell receives the datagram of [`DatagramNext::Receive`]
    /// (64 KiB, enough for any).
    pub fn receive_buffer(&mut self) -> &mut [u8] {
        &mut self.buf
    }

    /// A datagram of `n` bytes from `from` arrived in the
    /// [`receive_buffer`](Self::receive_buffer).
    pub fn received(&mut self, now: Instant, from: SocketAddr, n: usize) {
        let n = n.min(self.buf.len());
        self.machine.handle_datagram(now, from, &self.buf[..n]);
    }

    /// The receive failed with `error`. `WouldBlock` and `TimedOut` count as
    /// [`timed_out`](Self::timed_out); `Interrupted` and `ConnectionRefused`
    /// (an ICMP error from an earlier send) are ignored; anything else ends
    /// the loop.
    pub fn receive_failed(&mut self, now: Instant, error: io::Error) {
        match error.kind() {
            io::ErrorKind::Interrupted | io::ErrorKind::ConnectionRefused => {}
            _ if super::stream::is_timeout(&error) => self.timed_out(now),
            _ => self.ending = Some(Err(DriverError::io("receiving a datagram")(error))),
        }
    }

    /// The wait of [`DatagramNext::Receive`] ended at `now` with nothing
    /// received. The machine's timer fires only once its deadline is due.
    pub fn timed_out(&mut self, now: Instant) {
        if self.deadline.is_some_and(|due| due <= now) {
            self.machine.handle_timeout(now);
        }
    }

    /// A shutdown was requested: the loop ends with `Ok` at its next step
    /// (after the running work, if any).
    pub fn stop(&mut self, now: Instant) {
        let _ = now;
        self.stopped = true;
    }

    /// The application's work that [`DatagramNext::Work`] announced, to
    /// run; the core then awaits it until [`worked`](Self::worked). `None`
    /// if there is none.
    pub fn take_work(&mut self) -> Option<Work<A, M>> {
        self.work.take()
    }

    /// The work has run and produced `finish`, which is applied now. An
    /// error is the application's failure, which ends the loop.
    pub fn worked(&mut self, now: Instant, finish: Finish<A, M>) {
        self.work.done();
        if let Err(source) = finish.apply(self.app, self.machine, now) {
            self.app_failure(source);
        }
    }
}

#[cfg(test)]
mod tests {
    //! The core driven by hand with a scripted fake machine and a fake
    //! clock (`t(secs)`).
    use super::*;
    use bytes::Bytes;
    use std::collections::VecDeque;
    use std::time::Duration;

    fn start() -> Instant {
        // Any fixed instant: nothing here reads the clock again.
        static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        *START.get_or_init(Instant::now)
    }

    fn t(secs: f64) -> Instant {
        start() + Duration::from_secs_f64(secs)
    }

    fn peer(port: u16) -> SocketAddr {
        ([127, 0, 0, 1], port).into()
    }

    /// A machine whose outputs are scripted, and which logs every input.
    #[derive(Default)]
    struct Fake {
        outputs: VecDeque<Output<Datagram, u32>>,
        deadline: Option<Instant>,
        ended: Option<Result<(), crate::Error>>,
        log: Vec<String>,
    }

    impl Fake {
        fn send(&mut self, port: u16, payload: &'static [u8]) {
            self.outputs.push_back(Output::Transmit(Datagram {
                peer: peer(port),
                payload: Bytes::from_static(payload),
            }));
        }
    }

    impl crate::machine::Machine for Fake {
        type Transmit = Datagram;
        type Event = u32;

        fn handle_timeout(&mut self, now: Instant) {
            self.log.push(format!("timeout@{:?}", now - start()));
            if self.deadline.is_some_and(|d| d <= now) {
                self.deadline = None;
                self.ended = Some(Err(crate::Error::TimedOut(Duration::from_secs(10))));
            }
        }

        fn poll_timeout(&self) -> Option<Instant> {
            self.deadline
        }

        fn poll_output(&mut self) -> Output<Datagram, u32> {
            if let Some(out) = self.outputs.pop_front() {
                return out;
            }
            match self.ended.take() {
                Some(result) => Output::Done(result),
                None => Output::Wait(self.deadline),
            }
        }
    }

    impl DatagramMachine for Fake {
        fn handle_datagram(&mut self, _: Instant, from: SocketAddr, data: &[u8]) {
            self.log
                .push(format!("{}:{}", from.port(), String::from_utf8_lossy(data)));
            if data == b"bye" {
                self.ended = Some(Ok(()));
            }
        }
    }

    /// Receives `data` from `from` as a shell would: into the core's buffer.
    fn deliver<A: App<Fake>>(
        core: &mut DatagramCore<'_, Fake, A>,
        now: Instant,
        from: u16,
        data: &[u8],
    ) {
        core.receive_buffer()[..data.len()].copy_from_slice(data);
        core.received(now, peer(from), data.len());
    }

    #[test]
    fn each_transmit_is_handed_out_in_order_then_the_core_receives_until_the_machines_deadline() {
        let mut fake = Fake::default();
        fake.send(7, b"one");
        fake.send(8, b"two");
        fake.deadline = Some(t(5.0));
        let mut app = super::super::Ignore;
        let mut core = DatagramCore::new(&mut fake, &mut app);
        let mut sent = Vec::new();
        loop {
            match core.next(t(0.0)) {
                DatagramNext::Send(d) => {
                    sent.push((d.peer.port(), d.payload));
                    core.sent(t(0.0), Err(io::ErrorKind::PermissionDenied.into()));
                }
                DatagramNext::Receive { until } => {
                    assert_eq!(until, Some(t(5.0)));
                    break;
                }
                other => panic!("expected sends, then a receive: {other:?}"),
            }
        }
        assert_eq!(
            sent,
            [(7, Bytes::from("one")), (8, Bytes::from("two"))],
            "a failed send is lost, not fatal"
        );
        deliver(&mut core, t(1.0), 9, b"hello");
        assert!(matches!(core.next(t(1.0)), DatagramNext::Receive { .. }));
        // A shell that woke early (to look at a shutdown flag) does not fire the timer.
        core.timed_out(t(2.0));
        assert!(matches!(core.next(t(2.0)), DatagramNext::Receive { .. }));
        core.timed_out(t(5.0));
        assert!(matches!(
            core.next(t(5.0)),
            DatagramNext::Done(Err(DriverError::Machine(crate::Error::TimedOut(_))))
        ));
        assert!(
            matches!(core.next(t(5.0)), DatagramNext::Done(Err(_))),
            "after Done"
        );
        drop(core);
        assert_eq!(fake.log, ["9:hello", "timeout@5s"]);
    }

    #[test]
    fn a_deadline_already_past_fires_without_asking_the_shell_to_receive() {
        let mut fake = Fake {
            deadline: Some(t(1.0)),
            ..Fake::default()
        };
        let mut app = super::super::Ignore;
        let mut core = DatagramCore::new(&mut fake, &mut app);
        assert!(matches!(core.next(t(3.0)), DatagramNext::Done(Err(_))));
        drop(core);
        assert_eq!(fake.log, ["timeout@3s"]);
    }

    #[test]
    fn a_failing_app_ends_the_loop_with_its_error_and_later_events_are_dropped() {
        let mut fake = Fake::default();
        fake.outputs.push_back(Output::Event(1));
        fake.outputs.push_back(Output::Event(2));
        let mut seen = Vec::new();
        let mut app = |_: &mut Fake, _: Instant, e: u32| -> io::Result<()> {
            seen.push(e);
            Err(io::Error::other("disk full"))
        };
        let mut core = DatagramCore::new(&mut fake, &mut app);
        match core.next(t(0.0)) {
            DatagramNext::Done(Err(DriverError::App(source))) => {
                assert_eq!(source.to_string(), "disk full");
            }
            other => panic!("the app's failure is the result: {other:?}"),
        }
        drop(core);
        assert_eq!(seen, [1]);
    }

    #[test]
    fn a_stop_ends_the_loop_with_ok_at_its_next_step() {
        let mut fake = Fake::default();
        let mut app = super::super::Ignore;
        let mut core = DatagramCore::new(&mut fake, &mut app);
        assert!(matches!(
            core.next(t(0.0)),
            DatagramNext::Receive { until: None }
        ));
        core.stop(t(1.0));
        assert!(matches!(core.next(t(1.0)), DatagramNext::Done(Ok(()))));
    }

    #[test]
    fn refused_and_interrupted_receives_are_ignored_and_any_other_failure_ends_the_loop() {
        let mut fake = Fake::default();
        let mut app = super::super::Ignore;
        let mut core = DatagramCore::new(&mut fake, &mut app);
        for kind in [
            io::ErrorKind::ConnectionRefused,
            io::ErrorKind::Interrupted,
            io::ErrorKind::WouldBlock,
        ] {
            assert!(matches!(core.next(t(0.0)), DatagramNext::Receive { .. }));
            core.receive_failed(t(0.0), kind.into());
        }
        assert!(matches!(core.next(t(0.0)), DatagramNext::Receive { .. }));
        core.receive_failed(t(0.0), io::ErrorKind::PermissionDenied.into());
        assert!(matches!(
            core.next(t(0.0)),
            DatagramNext::Done(Err(DriverError::Io {
                context: "receiving a datagram",
                ..
            }))
        ));
    }

    /// An app that, for every event, hands the driver one work whose finish
    /// sends the event's number back through the machine's script.
    #[derive(Default)]
    struct Worker {
        owed: Vec<u32>,
        finished: Vec<u32>,
    }

    impl App<Fake> for Worker {
        fn on_event(&mut self, _: &mut Fake, _: Instant, event: u32) -> io::Result<()> {
            self.owed.push(event);
            Ok(())
        }

        fn poll_work(&mut self) -> Option<Work<Self, Fake>> {
            let event = self.owed.pop()?;
            Some(Work::new(move || {
                let answer = event * 10;
                move |app: &mut Worker, m: &mut Fake, _| {
                    app.finished.push(answer);
                    m.log.push(format!("answered:{answer}"));
                    Ok(())
                }
            }))
        }
    }

    fn run_work(core: &mut DatagramCore<'_, Fake, Worker>, now: Instant) {
        assert!(matches!(core.next(now), DatagramNext::Work));
        let work = core.take_work().expect("work");
        assert!(
            matches!(core.next(now), DatagramNext::AwaitWork),
            "nothing else while it runs"
        );
        core.worked(now, work.run());
    }

    #[test]
    fn app_work_runs_before_the_next_receive_and_before_a_good_end() {
        let mut fake = Fake::default();
        fake.outputs.push_back(Output::Event(4));
        let mut app = Worker::default();
        let mut core = DatagramCore::new(&mut fake, &mut app);
        run_work(&mut core, t(0.0));
        assert!(matches!(core.next(t(0.0)), DatagramNext::Receive { .. }));
        // The work owed for an event just before the machine's end runs before Done.
        core.machine.outputs.push_back(Output::Event(5));
        deliver(&mut core, t(1.0), 9, b"bye");
        run_work(&mut core, t(1.0));
        assert!(matches!(core.next(t(1.0)), DatagramNext::Done(Ok(()))));
        drop(core);
        assert_eq!(app.finished, [40, 50]);
        assert_eq!(fake.log, ["answered:40", "9:bye", "answered:50"]);
    }
}
