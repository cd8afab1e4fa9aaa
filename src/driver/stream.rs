//! The stream loop, written once and sans-IO: [`StreamCore`] drives one
//! [`StreamMachine`] and its [`App`], and tells an I/O shell what to do
//! next. The blocking driver, the tokio driver and the simulator are such
//! shells: they only move bytes and time, so all three run the same loop.
//!
//! # Contract
//!
//! A shell calls [`StreamCore::next`] with the current time and does what
//! the returned [`Next`] says, then reports how it went with exactly one
//! report method, and calls `next` again:
//!
//! | `Next`            | the shell does                                        | and reports                                     |
//! |-------------------|-------------------------------------------------------|-------------------------------------------------|
//! | `Write { until }` | one (vectored) write of [`transmit`](StreamCore::transmit), giving up waiting at `until` if it can | [`wrote`](StreamCore::wrote), [`write_failed`](StreamCore::write_failed) or [`timed_out`](StreamCore::timed_out) |
//! | `Flush`           | flushes the transport                                 | [`flushed`](StreamCore::flushed) or [`write_failed`](StreamCore::write_failed) |
//! | `Read { max, until }` | one read of at most `max` bytes, giving up at `until` (`None`: no limit) | [`read`](StreamCore::read), [`eof`](StreamCore::eof), [`read_failed`](StreamCore::read_failed) or [`timed_out`](StreamCore::timed_out) |
//! | `Sleep(t)`        | waits until `t` (the peer has gone; only a timer is left) | [`timed_out`](StreamCore::timed_out)        |
//! | `Work`            | takes the application's [`Work`] with [`take_work`](StreamCore::take_work) and runs it as its kind says (in place; or off the loop, a blocking job on a blocking pool, an async one as a task, while it goes on with the next `next`) | [`worked`](StreamCore::worked), once it has run |
//! | `AwaitWork`       | waits for the work it runs (and for an abort request, if it can); meanwhile it may read as far as [`read_while_working`](StreamCore::read_while_working) allows | [`worked`](StreamCore::worked), or [`woken`](StreamCore::woken) for the abort; a read as for `Read` |
//! | `Close`           | shuts its sending side (best effort)                  | [`closed`](StreamCore::closed)                  |
//! | `Done(result)`    | stops; the session is over                            | nothing                                         |
//!
//! Time only ever comes in as `now`; the core owns no socket, clock or
//! thread. What it owns:
//!
//! - the transmit batch: the machine's output gathered for one vectored
//!   write (written before the core reads, and whenever it grows past a
//!   batch worth writing);
//! - the EOF flag: once the peer has closed, the core only sleeps until the
//!   machine's deadline (and fails at once if the machine has none);
//! - the deadline: the machine's, handed out as `until`; a deadline
//!   already past fires the machine's timer without asking the shell;
//! - the write timeout: a write that made no progress for the machine's
//!   [`write_timeout`](StreamMachine::write_timeout), counted from the
//!   last write that took bytes, ends the session
//!   (see [`DriverError::is_stalled_peer`]). A shell whose writes cannot wait
//!   with a limit may report each give-up as a `WouldBlock`/`TimedOut`
//!   failure: the core decides from `now` whether the limit is reached;
//! - the application's work: asked for (with [`App::poll_work`]) whenever
//!   the machine has drained, handed out before anything is read, and
//!   awaited before the session ends; while it runs, none of the
//!   machine's timers fire (a slow disk is not the peer's fault), it is
//!   not drained, and only output already gathered is written. A shell
//!   that can wait for two things at once may meanwhile read the peer's
//!   next bytes into the machine's buffer, as far as
//!   [`read_while_working`](StreamCore::read_while_working) allows: the
//!   network and the disk then overlap, bounded by the machine's own
//!   back-pressure (its input room) and by a MiB per work in all (what the
//!   machine decodes meanwhile waits for the work as well); what was read
//!   is handed out once the work is done;
//! - the application's failure: the machine is aborted (it tells the peer
//!   why) and still driven to its end, and the session returns the
//!   application's error;
//! - the abort request of an [`Abort`] handle, applied at every `next` and
//!   before any input is handed to the machine;
//! - the salvage after a reset: when a write fails because the peer reset
//!   the connection, the core asks for one more read (for at most
//!   one second) of what the peer sent before it went, usually an
//!   `Error` frame that says why, and ends with the peer's reason if it is
//!   there, else with the write's failure.
//!
//! A session that ends as its machine says (`Done` from the machine) is
//! closed in order: the rest of the batch is written (best effort), the
//! transport flushed and shut for sending, then `Done`. A session that
//! fails at the transport (a read or write error, a stalled peer) writes
//! nothing more and ends without `Close`. Either way the application hears
//! of the end first ([`App::on_end`]), and the work it then still has runs
//! before `Done`: what it holds (verified files waiting for their group
//! commit) is not lost with the connection.
//!
//! Reports are forgiving: a timeout reported early is harmless, and
//! `Interrupted` failures are retried. Calling `next` after `Done` returns
//! `Done` again with an error.

use std::io::{self, IoSlice};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::slot::WorkSlot;
use super::{Abort, App, DriverError, Finish, Work};
use crate::machine::{Output, StreamMachine};

/// Bytes gathered before one vectored write.
pub(crate) const WRITE_BATCH: usize = 256 * 1024;
/// The most bytes the core asks a shell to read at once; a buffer this
/// size serves every [`Next::Read`].
pub(crate) const READ_CHUNK: usize = 256 * 1024;
/// The first read size: what an idle or chatty connection needs. Reads go
/// into the machine's own buffer, which is real memory once handed out, so
/// the size grows (doubling, up to 256 KiB) only while reads come
/// back full, as a bulk transfer's do, and shrinks again when they do not.
pub(crate) const READ_START: usize = 16 * 1024;
/// The most a shell may read, in all, while one application work runs
/// ([`StreamCore::read_while_working`]). A machine decodes what it is
/// given, and the events it decodes wait, undrained, until the work is
/// done, so its input room alone would not bound what piles up behind a
/// stalled disk; this does (a MiB: four reads of the largest size).
pub(crate) const READ_AHEAD: usize = 4 * READ_CHUNK;
/// How long the core waits for the peer's last words after a failed write.
pub(crate) const SALVAGE_WAIT: Duration = Duration::from_secs(1);

/// What the shell does next.
#[derive(Debug)]
pub enum Next {
    /// Write [`StreamCore::transmit`] (or a prefix of it), waiting at most
    /// until `until` for the peer to take anything (`None`: no limit).
    Write {
        /// When the write timeout runs out if nothing is taken.
        until: Option<Instant>,
    },
    /// Flush what was written.
    Flush,
    /// Read at most `max` bytes (at least 1), waiting at most until `until`.
    Read {
        /// The most bytes the machine takes now.
        max: usize,
        /// When to give up and report [`StreamCore::timed_out`].
        until: Option<Instant>,
    },
    /// Wait until this instant, then report [`StreamCore::timed_out`].
    Sleep(Instant),
    /// Take the application's work ([`StreamCore::take_work`]) and run it
    /// where it may block; report [`StreamCore::worked`] once it has run.
    Work,
    /// Wait for the running work, then report [`StreamCore::worked`] (or
    /// [`StreamCore::woken`] if an abort request woke the shell first).
    /// Meanwhile the shell may read, if
    /// [`StreamCore::read_while_working`] says how much, and report the
    /// read as for [`Next::Read`] (then ask `next` again: the work is still
    /// awaited).
    AwaitWork,
    /// Shut the sending side, then report [`StreamCore::closed`].
    Close,
    /// The session is over, with this result.
    Done(Result<(), DriverError>),
}

/// The sans-IO stream loop around one machine and its application (see the
/// [module docs](self) for the contract).
///
/// Its state is a small table: the session's phase (running, salvaging
/// the peer's last words, ending, finished), the transmit batch's state
/// (idle, writing, unflushed), and the application's work slot.
///
/// # A shell of one's own
///
/// A shell is a loop that does what [`next`](Self::next) says on its
/// transport and reports back. This one runs an echo client and server
/// over two in-memory pipes, switching sides whenever one would block:
///
/// ```
/// use std::collections::VecDeque;
/// use std::time::Instant;
/// use echoxfer::driver::stream::{Next, StreamCore};
/// use echoxfer::driver::{Abort, App, DriverError, Ignore};
/// use echoxfer::echo::{Client, ClientEvent, ClientRole, Server, ServerRole};
/// use echoxfer::{EchoConfig, SessionLimits, StreamMachine};
///
/// /// Runs `core` until it would block reading `inbox`: `Some` once it is done.
/// fn shell<M: StreamMachine, A: App<M>>(
///     core: &mut StreamCore<'_, M, A>,
///     inbox: &mut VecDeque<u8>,
///     outbox: &mut VecDeque<u8>,
///     peer_closed: bool,
/// ) -> Option<Result<(), DriverError>> {
///     loop {
///         let now = Instant::now();
///         match core.next(now) {
///             Next::Write { .. } => {
///                 let n: usize = core.transmit().iter().map(|s| s.len()).sum();
///                 outbox.extend(core.transmit().iter().flat_map(|s| s.iter()));
///                 core.wrote(now, n);
///             }
///             Next::Flush => core.flushed(now),
///             Next::Read { .. } if inbox.is_empty() && peer_closed => core.filled(now, 0),
///             Next::Read { .. } if inbox.is_empty() => return None, // would block
///             Next::Read { max, .. } => {
///                 let n = max.min(inbox.len());
///                 let buf = core.read_buffer(n);
///                 for (b, byte) in buf.iter_mut().zip(inbox.drain(..n)) {
///                     *b = byte;
///                 }
///                 core.filled(now, n);
///             }
///             Next::Work => {
///                 // In place: this shell may block.
///                 let work = core.take_work().expect("announced");
///                 core.worked(now, work.run());
///             }
///             Next::AwaitWork => unreachable!("work runs in place here"),
///             // A real shell waits until then, and reports `timed_out`.
///             Next::Sleep(_) => return None,
///             Next::Close => core.closed(now),
///             Next::Done(result) => return Some(result),
///         }
///     }
/// }
///
/// let now = Instant::now();
/// let mut server = Server::new(ServerRole::new("hi", EchoConfig::default()), SessionLimits::default(), now);
/// let mut client = Client::new(ClientRole::new(EchoConfig::default()), SessionLimits::default(), now);
/// client.send(&b"ping"[..]).unwrap();
/// client.close().unwrap();
/// let mut heard = Vec::new();
/// let mut on_event = |_: &mut Client, _: Instant, e: ClientEvent| {
///     heard.push(e);
///     Ok(())
/// };
/// let (abort, mut ignore) = (Abort::new(), Ignore);
/// let mut c = StreamCore::new(&mut client, &mut on_event, &abort);
/// let mut s = StreamCore::new(&mut server, &mut ignore, &abort);
/// let (mut to_server, mut to_client) = (VecDeque::new(), VecDeque::new());
/// let (mut c_done, mut s_done) = (None, None);
/// for _ in 0..10 {
///     c_done = c_done.or_else(|| shell(&mut c, &mut to_client, &mut to_server, s_done.is_some()));
///     s_done = s_done.or_else(|| shell(&mut s, &mut to_server, &mut to_client, c_done.is_some()));
/// }
/// assert!(matches!(c_done, Some(Ok(()))) && matches!(s_done, Some(Ok(()))));
/// drop(c);
/// assert!(heard.contains(&ClientEvent::Reply(bytes::Bytes::from_static(b"ping"))));
/// ```
pub struct StreamCore<'a, M, A> {
    machine: &'a mut M,
    app: &'a mut A,
    abort: Abort,
    /// The abort request was acted on (it is acted on once).
    abort_applied: bool,
    phase: Phase,
    out: Batch,
    sending: Sending,
    work: WorkSlot<A, M>,
    /// The application failed: the session's result, once the machine
    /// (aborted, so that it tells the peer why) has ended.
    app_failure: Option<DriverError>,
    write_limit: Option<Duration>,
    /// How much the next read asks for (see `READ_START`).
    read_size: usize,
    /// How much the last [`read_buffer`](StreamCore::read_buffer) handed out.
    offered: usize,
    /// What a shell may still read while the running work runs (see
    /// `READ_AHEAD`).
    ahead_left: usize,
}

/// Where a session is.
enum Phase {
    /// The machine runs: the peer's bytes are read, its output written.
    Running { peer: Peer },
    /// A write failed on a reset: one more read, until `until`, of what the
    /// peer said before it went; then `after`, with the peer's reason if
    /// it said one, else with `error`.
    Salvaging {
        error: DriverError,
        until: Instant,
        after: AfterSalvage,
    },
    /// The session ends with `result` once the application's remaining work
    /// has run, the batch is out and flushed, and (`close`) the sending
    /// side is shut.
    Ending {
        result: Result<(), DriverError>,
        close: bool,
    },
    /// `Done` was handed out.
    Finished,
}

/// The peer's sending side, as the machine knows it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Peer {
    /// Open: its bytes are read.
    Open,
    /// Its end was read ahead while the application's work ran: the
    /// machine is told once it waits for input again, where it would have
    /// met the end without the read-ahead (a machine that awaits its
    /// application's answer may still hold frames sent before the end).
    ClosedUnseen,
    /// Closed, and the machine told: only its timer is left to wait for.
    Closed,
}

/// What a salvage leads to.
#[derive(Clone, Copy)]
enum AfterSalvage {
    /// The session was running: it fails at the transport.
    Fail,
    /// The session was ending already: it ends with the error instead.
    End { close: bool },
}

/// The transmit batch's state.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sending {
    /// Nothing handed out (the batch may be gathering).
    Idle,
    /// The batch is being written: its progress clock.
    Writing(Progress),
    /// The batch was written and not yet flushed.
    Unflushed,
}

/// A batch's write progress: when the peer last took bytes (or the batch
/// began), and when the current write was handed out.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Progress {
    last: Instant,
    attempt: Instant,
}

impl<'a, M: StreamMachine, A: App<M>> StreamCore<'a, M, A> {
    /// A loop around `machine` and `app` that also ends when `abort` is
    /// requested (the machine is aborted, which tells the peer why).
    pub fn new(machine: &'a mut M, app: &'a mut A, abort: &Abort) -> Self {
        let write_limit = machine.write_timeout().filter(|t| !t.is_zero());
        StreamCore {
            machine,
            app,
            abort: abort.clone(),
            abort_applied: false,
            phase: Phase::Running { peer: Peer::Open },
            out: Batch::default(),
            sending: Sending::Idle,
            work: WorkSlot::Empty,
            app_failure: None,
            write_limit,
            read_size: READ_START,
            offered: 0,
            ahead_left: 0,
        }
    }

    /// Whether an abort request is yet to be acted on: a shell that waits
    /// for one (tokio's `select!`) must keep waiting for it until the core
    /// has applied it, even if it was requested just before the wait began.
    pub fn awaits_abort(&self) -> bool {
        !self.abort_applied
    }

    /// The machine's write timeout (a zero limit, from a config the machine
    /// refuses anyway, counts as none): how long the peer may take none of
    /// our output before the session ends.
    pub fn write_timeout(&self) -> Option<Duration> {
        self.write_limit
    }

    /// What to do next, at `now`: the phase's own answer, after what every
    /// phase but the last two does first (write and flush the batch, run
    /// and await the application's work).
    pub fn next(&mut self, now: Instant) -> Next {
        loop {
            match &self.phase {
                Phase::Finished => {
                    return Next::Done(Err(DriverError::io("polling an ended session")(
                        io::ErrorKind::NotConnected.into(),
                    )))
                }
                Phase::Salvaging { until, .. } => {
                    return Next::Read {
                        max: READ_CHUNK,
                        until: Some(*until),
                    }
                }
                Phase::Running { .. } | Phase::Ending { .. } => {}
            }
            if !self.out.is_empty() {
                return self.write(now);
            }
            if self.sending == Sending::Unflushed {
                return Next::Flush;
            }
            if self.work.is_running() {
                return Next::AwaitWork;
            }
            if self.work.is_ready() {
                return Next::Work;
            }
            let next = match self.phase {
                Phase::Ending { .. } => self.next_ending(),
                _ => self.next_running(now),
            };
            if let Some(next) = next {
                return next;
            }
        }
    }

    /// The machine runs: drain it, then write, work, fire its timer, sleep
    /// or read. `None`: ask again.
    fn next_running(&mut self, now: Instant) -> Option<Next> {
        self.apply_abort();
        let step = self.drain(now);
        if self.app_failure.is_none() {
            self.work.ask(self.app);
        }
        let peer = match self.phase {
            Phase::Running { peer } => peer,
            _ => Peer::Open,
        };
        match step {
            Step::Done(result) => self.end(result, true),
            // The work runs first; the machine is asked again after it.
            _ if self.work.is_ready() => {}
            Step::Flush => {}
            // Whatever was gathered goes out before the core waits.
            Step::Wait(_) if !self.out.is_empty() => {}
            Step::Wait(Some(deadline)) if deadline <= now => self.machine.handle_timeout(now),
            // The machine waits for input: the end read ahead is its now.
            Step::Wait(_) if peer == Peer::ClosedUnseen => self.peer_closed(now),
            // The peer is gone and the machine still waits: only its timer can end it.
            Step::Wait(Some(deadline)) if peer == Peer::Closed => {
                return Some(Next::Sleep(deadline))
            }
            Step::Wait(None) if peer == Peer::Closed => {
                self.fail(DriverError::io("waiting after EOF")(
                    io::ErrorKind::UnexpectedEof.into(),
                ))
            }
            Step::Wait(until) => {
                let max = self.machine.input_room().clamp(1, self.read_size);
                return Some(Next::Read { max, until });
            }
        }
        None
    }

    /// The session ends: what the application still has to do (write out
    /// the last data it was given) is done first, then the close, then
    /// `Done`. `None`: ask again.
    fn next_ending(&mut self) -> Option<Next> {
        if self.app_failure.is_none() && self.work.ask(self.app) {
            return None;
        }
        if let Phase::Ending { close: true, .. } = self.phase {
            return Some(Next::Close);
        }
        let Phase::Ending { result, .. } = std::mem::replace(&mut self.phase, Phase::Finished)
        else {
            unreachable!("next_ending runs in the ending phase")
        };
        // The application's failure (in its events or its work, even after
        // the machine ended) is the session's result.
        Some(Next::Done(match self.app_failure.take() {
            Some(error) => Err(error),
            None => result,
        }))
    }

    /// Hands out a write of the batch, starting its progress clock.
    fn write(&mut self, now: Instant) -> Next {
        let mut progress = match self.sending {
            Sending::Writing(progress) => progress,
            _ => Progress {
                last: now,
                attempt: now,
            },
        };
        progress.attempt = now;
        self.sending = Sending::Writing(progress);
        Next::Write {
            until: self.write_limit.map(|limit| progress.last + limit),
        }
    }

    /// The unwritten part of the batch, as slices for one vectored write
    /// (meaningful after [`Next::Write`]).
    pub fn transmit(&self) -> Vec<IoSlice<'_>> {
        self.out.slices()
    }

    /// The last write took `n` bytes of [`transmit`](Self::transmit). Zero
    /// means the transport will take nothing more, and fails the session.
    pub fn wrote(&mut self, now: Instant, n: usize) {
        if n == 0 {
            return self.write_error(now, io::ErrorKind::WriteZero.into());
        }
        self.out.consume(n.min(self.out.len));
        if let Sending::Writing(progress) = &mut self.sending {
            // A write that returns a count after waiting may have taken
            // the bytes as it began.
            progress.last = progress.attempt;
        }
        if self.out.is_empty() {
            self.sending = Sending::Unflushed;
        }
    }

    /// The flush asked for by [`Next::Flush`] succeeded.
    pub fn flushed(&mut self, now: Instant) {
        let _ = now;
        self.sending = Sending::Idle;
    }

    /// The last write or flush failed with `error`. `WouldBlock` and
    /// `TimedOut` mean it took nothing within the shell's wait (the core
    /// decides whether the write timeout has run out); `Interrupted` is
    /// retried; a reset starts the salvage; anything else ends the session.
    pub fn write_failed(&mut self, now: Instant, error: io::Error) {
        match error.kind() {
            io::ErrorKind::Interrupted => {}
            _ if is_timeout(&error) => self.timed_out(now),
            _ => self.write_error(now, error),
        }
    }

    fn write_error(&mut self, now: Instant, error: io::Error) {
        let context = match self.sending {
            Sending::Writing(_) => "writing to the peer",
            _ => "flushing to the peer",
        };
        let reset = is_reset(&error);
        let error = DriverError::Io {
            context,
            source: error,
        };
        self.out = Batch::default();
        self.sending = Sending::Idle;
        let after = match &mut self.phase {
            // Best effort once the session has failed: its own error stands.
            Phase::Ending { result: Err(_), .. } => return,
            Phase::Ending { result, .. } if !reset => return *result = Err(error),
            Phase::Ending { close, .. } => AfterSalvage::End { close: *close },
            Phase::Running { .. } if !reset => return self.fail(error),
            Phase::Running { .. } => AfterSalvage::Fail,
            Phase::Salvaging { .. } | Phase::Finished => return,
        };
        let until = now + SALVAGE_WAIT;
        self.phase = Phase::Salvaging {
            error,
            until,
            after,
        };
    }

    /// The machine's own receive buffer for the read of [`Next::Read`]
    /// (`max` bytes at most): read the peer's bytes straight into it, with
    /// no copy on the way, then say how many with [`filled`](Self::filled).
    pub fn read_buffer(&mut self, max: usize) -> &mut [u8] {
        let buf = self.machine.input_buffer(max);
        self.offered = buf.len();
        buf
    }

    /// `n` bytes of the peer arrived in the [`read_buffer`](Self::read_buffer)
    /// (zero: the peer's end).
    pub fn filled(&mut self, now: Instant, n: usize) {
        if n == 0 && self.offered == 0 {
            // The machine had no room (it drains first): nothing was read,
            // which says nothing about the peer.
            return;
        }
        if n == 0 {
            return self.eof(now);
        }
        self.adapt_read_size(n);
        self.apply_abort();
        if self.work.is_running() {
            self.ahead_left = self.ahead_left.saturating_sub(n);
        }
        // A failure is sticky in the machine and comes out as its `Done`.
        let _ = self.machine.commit_input(now, n);
        if self.is_salvaging() {
            self.salvage(now, &[]);
        }
    }

    /// Grows the read size while reads fill it, shrinks it when they
    /// bring a quarter or less.
    fn adapt_read_size(&mut self, n: usize) {
        let offered = std::mem::take(&mut self.offered);
        if n >= offered && offered >= self.read_size {
            self.read_size = (self.read_size * 2).min(READ_CHUNK);
        } else if n <= self.read_size / 4 {
            self.read_size = (self.read_size / 2).max(READ_START);
        }
    }

    /// Bytes from the peer, at most the `max` of [`Next::Read`] (an empty
    /// slice counts as its end). The same as reading into
    /// [`read_buffer`](Self::read_buffer), with one more copy.
    pub fn read(&mut self, now: Instant, data: &[u8]) {
        if data.is_empty() {
            return self.eof(now);
        }
        self.apply_abort();
        if self.is_salvaging() {
            return self.salvage(now, data);
        }
        if self.work.is_running() {
            self.ahead_left = self.ahead_left.saturating_sub(data.len());
        }
        // A failure is sticky in the machine and comes out as its `Done`.
        let _ = self.machine.handle_input(now, data);
    }

    /// The peer closed its sending side.
    pub fn eof(&mut self, now: Instant) {
        // An abort may shut the transport for reading to wake a read: the
        // abort is acted on before that is taken for the peer's end.
        self.apply_abort();
        if self.is_salvaging() {
            return self.salvage(now, &[]);
        }
        if matches!(self.phase, Phase::Running { .. }) && self.work.is_running() {
            // Read ahead: told once the machine waits for input again.
            self.phase = Phase::Running {
                peer: Peer::ClosedUnseen,
            };
            return;
        }
        self.peer_closed(now);
    }

    /// The machine is told of the peer's end.
    fn peer_closed(&mut self, now: Instant) {
        if let Phase::Running { peer } = &mut self.phase {
            *peer = Peer::Closed;
        }
        self.machine.handle_eof(now);
    }

    /// The read failed with `error`. `WouldBlock` and `TimedOut` count as
    /// [`timed_out`](Self::timed_out); `Interrupted` is retried.
    pub fn read_failed(&mut self, now: Instant, error: io::Error) {
        self.apply_abort();
        match error.kind() {
            io::ErrorKind::Interrupted => {}
            _ if is_timeout(&error) => self.timed_out(now),
            _ if self.is_salvaging() => self.salvage(now, &[]),
            _ => self.fail(DriverError::io("reading from the peer")(error)),
        }
    }

    /// The wait that [`next`](Self::next) handed out ended at `now` with
    /// nothing to report. Early calls are harmless.
    pub fn timed_out(&mut self, now: Instant) {
        self.apply_abort();
        if let Phase::Salvaging { until, .. } = self.phase {
            if now >= until {
                self.salvage(now, &[]);
            }
            return;
        }
        let Sending::Writing(progress) = self.sending else {
            return self.machine.handle_timeout(now);
        };
        let waited = now.saturating_duration_since(progress.last);
        if self.write_limit.is_some_and(|limit| waited < limit) {
            return;
        }
        self.out = Batch::default();
        self.sending = Sending::Idle;
        let stalled = DriverError::StalledPeer { waited };
        match &mut self.phase {
            Phase::Ending { result: Err(_), .. } => {}
            Phase::Ending { result, .. } => *result = Err(stalled),
            _ => self.fail(stalled),
        }
    }

    /// The sending side is shut, as [`Next::Close`] asked.
    pub fn closed(&mut self, now: Instant) {
        let _ = now;
        if let Phase::Ending { close, .. } = &mut self.phase {
            *close = false;
        }
    }

    /// While [`Next::AwaitWork`] awaits the application's work: how many
    /// bytes the shell may read meanwhile into
    /// [`read_buffer`](Self::read_buffer), reporting with
    /// [`filled`](Self::filled) (or [`eof`](Self::eof),
    /// [`read_failed`](Self::read_failed)) as after [`Next::Read`]. `None`
    /// when the machine has no room (its back-pressure: it is drained only
    /// once the work is done), a MiB has been read since the work started
    /// (the events decoded meanwhile wait for the work too, and must not
    /// pile up behind a stalled disk), the peer has closed, the session is
    /// ending, or no work runs. The read has no deadline of its own: the
    /// work's end (or an abort) ends the wait.
    pub fn read_while_working(&self) -> Option<usize> {
        if !self.work.is_running() || !matches!(self.phase, Phase::Running { peer: Peer::Open }) {
            return None;
        }
        let room = self.machine.input_room().min(self.ahead_left);
        (room > 0).then(|| room.min(self.read_size))
    }

    /// The application's work that [`Next::Work`] announced, to run; the
    /// core then awaits it ([`Next::AwaitWork`]) until
    /// [`worked`](Self::worked). `None` if there is none.
    pub fn take_work(&mut self) -> Option<Work<A, M>> {
        let work = self.work.take()?;
        self.ahead_left = READ_AHEAD;
        Some(work)
    }

    /// The work has run and produced `finish`, which is applied now. An
    /// error is the application's failure: the machine is aborted (it tells
    /// the peer why) and the session ends with that error.
    pub fn worked(&mut self, now: Instant, finish: Finish<A, M>) {
        self.work.done();
        self.apply_abort();
        if self.app_failure.is_some() {
            return;
        }
        if let Err(source) = finish.apply(self.app, self.machine, now) {
            self.app_failed(source);
        }
    }

    /// A wait ended early with nothing to report (the shell woke for an
    /// abort request): the request, if any, is applied.
    pub fn woken(&mut self, now: Instant) {
        let _ = now;
        self.apply_abort();
    }

    fn app_failed(&mut self, source: io::Error) {
        self.machine.abort(source.to_string());
        self.app_failure = Some(DriverError::App(source));
    }

    /// The session ends with `result` (and `close`s the transport first),
    /// once the application's remaining work has run; the application
    /// hears of it first.
    fn end(&mut self, result: Result<(), DriverError>, close: bool) {
        self.app.on_end(&result);
        self.phase = Phase::Ending { result, close };
    }

    /// The session failed at the transport: nothing more goes out, and no
    /// `Close`; the application still finishes what it holds.
    fn fail(&mut self, error: DriverError) {
        self.out = Batch::default();
        self.sending = Sending::Idle;
        self.end(Err(error), false);
    }

    fn is_salvaging(&self) -> bool {
        matches!(self.phase, Phase::Salvaging { .. })
    }

    fn apply_abort(&mut self) {
        self.abort.apply(self.machine, &mut self.abort_applied);
    }

    /// Feeds the machine what the peer sent before its reset, and ends.
    fn salvage(&mut self, now: Instant, input: &[u8]) {
        let Phase::Salvaging { error, after, .. } =
            std::mem::replace(&mut self.phase, Phase::Finished)
        else {
            unreachable!("salvage runs in the salvaging phase")
        };
        let error = salvage(self.machine, now, input).map_or(error, DriverError::Machine);
        match after {
            AfterSalvage::Fail => self.fail(error),
            AfterSalvage::End { close } => {
                self.phase = Phase::Ending {
                    result: Err(error),
                    close,
                }
            }
        }
    }

    /// Drains the machine's outputs into the batch (handing events to the
    /// app) until it waits, ends, or the batch is worth writing.
    ///
    /// When the application fails, the machine is aborted (it queues an
    /// `Error` frame telling the peer why, and ends as its protocol says);
    /// the application's error is kept for the final result, and later
    /// events are dropped: the application has given up on them.
    fn drain(&mut self, now: Instant) -> Step {
        loop {
            match self.machine.poll_output() {
                Output::Transmit(bytes) => {
                    self.out.push(bytes);
                    if self.out.len >= WRITE_BATCH {
                        return Step::Flush;
                    }
                }
                Output::Event(_) if self.app_failure.is_some() => {}
                Output::Event(e) => {
                    if let Err(source) = self.app.on_event(self.machine, now, e) {
                        self.app_failed(source);
                    }
                }
                Output::Wait(deadline) => return Step::Wait(deadline),
                Output::Done(result) => {
                    return Step::Done(match self.app_failure.take() {
                        Some(error) => Err(error),
                        None => result.map_err(DriverError::from),
                    })
                }
            }
        }
    }
}

/// Where a drain stopped.
enum Step {
    /// Enough output is gathered: write it, then drain again.
    Flush,
    /// The machine waits for input or for this deadline.
    Wait(Option<Instant>),
    /// The session is over: the application's failure if it failed (the
    /// machine was aborted and has told the peer why), else the machine's
    /// own result.
    Done(Result<(), DriverError>),
}

/// Reads what the peer sent before it reset the connection: usually an
/// `Error` frame that says why (a full disk, a refusal), which explains the
/// failure far better than "broken pipe". Returns the machine's error if
/// that input ends it.
fn salvage<M: StreamMachine>(machine: &mut M, now: Instant, input: &[u8]) -> Option<crate::Error> {
    let room = machine.input_room().min(input.len());
    let _ = machine.handle_input(now, &input[..room]);
    machine.handle_eof(now);
    // Bounded: a failed or cut machine queues at most a frame or two and ends.
    for _ in 0..1024 {
        match machine.poll_output() {
            Output::Transmit(_) | Output::Event(_) => {}
            Output::Done(Err(e @ crate::Error::PeerFailed { .. })) => return Some(e),
            Output::Wait(_) | Output::Done(_) => return None,
        }
    }
    None
}

/// The peer closed or reset the connection under a write.
pub(crate) fn is_reset(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
    )
}

/// The transport gave up waiting (a timeout, or nothing ready).
pub(crate) fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Transmits gathered for one vectored write.
#[derive(Default)]
struct Batch {
    parts: Vec<Bytes>,
    first: usize,
    len: usize,
}

impl Batch {
    fn push(&mut self, bytes: Bytes) {
        // An empty part would make a write that takes nothing look stalled.
        if bytes.is_empty() {
            return;
        }
        self.len += bytes.len();
        self.parts.push(bytes);
    }

    fn is_empty(&self) -> bool {
        self.first == self.parts.len()
    }

    /// The unwritten parts, as slices for one vectored write.
    fn slices(&self) -> Vec<IoSlice<'_>> {
        self.parts[self.first..]
            .iter()
            .take(64)
            .map(|b| IoSlice::new(b))
            .collect()
    }

    /// Marks `n` bytes written.
    fn consume(&mut self, mut n: usize) {
        self.len -= n;
        while n > 0 {
            let part = &mut self.parts[self.first];
            if n < part.len() {
                let _ = part.split_to(n);
                return;
            }
            n -= part.len();
            self.first += 1;
        }
        if self.is_empty() {
            self.parts.clear();
            self.first = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    //! The core driven by a scripted fake transport (the tests say what
    //! each write and read returns) and a fake clock (`t(secs)`).
    use super::*;
    use crate::error::ErrorCode;
    use std::collections::VecDeque;

    const WRITE_TIMEOUT: Duration = Duration::from_secs(8);

    fn start() -> Instant {
        // Any fixed instant: nothing here reads the clock again.
        static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        *START.get_or_init(Instant::now)
    }

    fn t(secs: f64) -> Instant {
        start() + Duration::from_secs_f64(secs)
    }

    /// A machine whose outputs are scripted, and which logs every input.
    #[derive(Default)]
    struct Fake {
        outputs: VecDeque<Output<Bytes, u32>>,
        deadline: Option<Instant>,
        ended: Option<Result<(), crate::Error>>,
        log: Vec<String>,
        /// What ends it when the peer closes (`None`: keeps waiting).
        on_eof: Option<Result<(), crate::Error>>,
        /// Where a read lands before it is committed.
        inbox: Vec<u8>,
        /// Its input room (default 100).
        room: Option<usize>,
    }

    impl Fake {
        fn sending(bytes: &'static [u8]) -> Self {
            let mut fake = Fake::default();
            fake.outputs
                .push_back(Output::Transmit(Bytes::from_static(bytes)));
            fake
        }
    }

    impl crate::machine::Machine for Fake {
        type Transmit = Bytes;
        type Event = u32;

        fn handle_timeout(&mut self, now: Instant) {
            self.log.push(format!("timeout@{:?}", now - start()));
            if self.deadline.is_some_and(|d| d <= now) {
                self.ended = Some(Err(crate::Error::TimedOut(Duration::from_secs(10))));
            }
        }

        fn poll_timeout(&self) -> Option<Instant> {
            self.deadline
        }

        fn poll_output(&mut self) -> Output<Bytes, u32> {
            if let Some(out) = self.outputs.pop_front() {
                return out;
            }
            match self.ended.take() {
                Some(result) => Output::Done(result),
                None => Output::Wait(self.deadline),
            }
        }
    }

    impl StreamMachine for Fake {
        fn input_buffer(&mut self, max: usize) -> &mut [u8] {
            self.inbox.resize(max.min(self.input_room()), 0);
            &mut self.inbox
        }

        fn commit_input(&mut self, _: Instant, n: usize) -> Result<(), crate::Error> {
            let read = std::mem::take(&mut self.inbox);
            let data = &read[..n];
            self.log
                .push(format!("input:{}", String::from_utf8_lossy(data)));
            if data.starts_with(b"ERR") {
                // The peer's Error frame: it failed, and says why.
                self.ended = Some(Err(crate::Error::PeerFailed {
                    code: ErrorCode::Internal,
                    message: "disk full".into(),
                }));
            }
            Ok(())
        }

        fn handle_eof(&mut self, _: Instant) {
            self.log.push("eof".into());
            if self.ended.is_none() {
                self.ended = self.on_eof.take();
            }
        }

        fn abort(&mut self, reason: String) {
            self.log.push(format!("abort:{reason}"));
            // Tells the peer why, then ends.
            self.outputs
                .push_back(Output::Transmit(Bytes::from_static(b"ERR")));
            self.ended = Some(Err(crate::Error::Aborted(reason)));
        }

        fn input_room(&self) -> usize {
            self.room.unwrap_or(100)
        }

        fn write_timeout(&self) -> Option<Duration> {
            Some(WRITE_TIMEOUT)
        }
    }

    fn written<A: App<Fake>>(core: &StreamCore<'_, Fake, A>) -> Vec<u8> {
        core.transmit().iter().flat_map(|s| s.to_vec()).collect()
    }

    /// `next` is the session's end with the I/O failure `kind` in
    /// `context`; `why` names the rule if it is not.
    fn assert_io_failure(next: Next, context: &str, kind: io::ErrorKind, why: &str) {
        match next {
            Next::Done(Err(DriverError::Io { context: c, source })) => {
                assert_eq!(c, context, "{why}");
                assert_eq!(source.kind(), kind, "{why}");
            }
            other => panic!("{why}: {other:?}"),
        }
    }

    fn is_write(next: &Next) -> bool {
        matches!(next, Next::Write { .. })
    }

    #[test]
    fn a_write_that_makes_progress_keeps_going_and_one_without_progress_for_the_timeout_stalls() {
        let mut fake = Fake::sending(b"0123456789");
        let mut app = super::super::Ignore;
        let abort = Abort::new();
        let mut core = StreamCore::new(&mut fake, &mut app, &abort);
        // The write limit runs from the batch's start.
        assert!(matches!(core.next(t(0.0)), Next::Write { until: Some(u) } if u == t(8.0)));
        core.wrote(t(0.5), 4);
        assert_eq!(written(&core), b"456789");
        // That write began at 0 s: the limit still runs from there.
        assert!(matches!(core.next(t(7.0)), Next::Write { until: Some(u) } if u == t(8.0)));
        core.wrote(t(9.0), 2);
        // Progress at 7 s (when that write began) moves the limit to 15 s.
        assert!(matches!(core.next(t(9.0)), Next::Write { until: Some(u) } if u == t(15.0)));
        core.write_failed(t(14.0), io::ErrorKind::TimedOut.into());
        assert!(
            is_write(&core.next(t(14.0))),
            "8 s have not passed since 7 s"
        );
        core.write_failed(t(15.0), io::ErrorKind::WouldBlock.into());
        match core.next(t(15.0)) {
            Next::Done(Err(e)) => assert!(e.is_stalled_peer(), "{e}"),
            other => panic!("a peer that took nothing for 8 s must end it: {other:?}"),
        }
    }

    #[test]
    fn a_written_batch_is_flushed_before_the_core_reads_until_the_deadline() {
        let mut fake = Fake::sending(b"hi");
        fake.deadline = Some(t(10.0));
        let mut app = super::super::Ignore;
        let abort = Abort::new();
        let mut core = StreamCore::new(&mut fake, &mut app, &abort);
        assert!(is_write(&core.next(t(0.0))));
        core.wrote(t(0.0), 2);
        assert!(matches!(core.next(t(0.0)), Next::Flush));
        core.flushed(t(0.0));
        match core.next(t(0.0)) {
            Next::Read { max, until } => assert_eq!((max, until), (100, Some(t(10.0)))),
            other => panic!("expected a read: {other:?}"),
        }
        core.read(t(1.0), b"abc");
        assert!(matches!(core.next(t(1.0)), Next::Read { .. }));
        // A deadline that has passed fires without asking the shell.
        match core.next(t(10.0)) {
            Next::Close => core.closed(t(10.0)),
            other => panic!("the timer must end it: {other:?}"),
        }
        assert!(matches!(
            core.next(t(10.0)),
            Next::Done(Err(DriverError::Machine(crate::Error::TimedOut(_))))
        ));
        drop(core);
        assert_eq!(fake.log, ["input:abc", "timeout@10s"]);
    }

    #[test]
    fn reads_go_into_the_machine_and_grow_while_they_come_back_full_then_shrink() {
        let mut fake = Fake {
            room: Some(1 << 20),
            ..Fake::default()
        };
        let mut app = super::super::Ignore;
        let abort = Abort::new();
        let mut core = StreamCore::new(&mut fake, &mut app, &abort);
        let mut sizes = Vec::new();
        for _ in 0..7 {
            let Next::Read { max, .. } = core.next(t(0.0)) else {
                panic!("expected a read");
            };
            sizes.push(max);
            let buf = core.read_buffer(max);
            assert_eq!(buf.len(), max, "the machine hands out what was asked");
            buf.fill(b'x');
            core.filled(t(0.0), max);
        }
        let k = 1024;
        assert_eq!(
            sizes,
            [16 * k, 32 * k, 64 * k, 128 * k, 256 * k, 256 * k, 256 * k]
        );
        // Short reads shrink it again.
        let Next::Read { max, .. } = core.next(t(0.0)) else {
            panic!("expected a read");
        };
        core.read_buffer(max);
        core.filled(t(0.0), 10);
        assert!(matches!(core.next(t(0.0)), Next::Read { max, .. } if max == 128 * k));
        drop(core);
        assert_eq!(fake.log.len(), 8, "every read was committed to the machine");
    }

    #[test]
    fn after_eof_the_core_sleeps_until_the_deadline_and_fails_without_one() {
        let mut fake = Fake {
            deadline: Some(t(5.0)),
            ..Fake::default()
        };
        let mut app = super::super::Ignore;
        let abort = Abort::new();
        let mut core = StreamCore::new(&mut fake, &mut app, &abort);
        assert!(matches!(core.next(t(0.0)), Next::Read { .. }));
        core.eof(t(1.0));
        assert!(matches!(core.next(t(1.0)), Next::Sleep(u) if u == t(5.0)));
        core.timed_out(t(5.0));
        assert!(matches!(core.next(t(5.0)), Next::Close));

        let mut fake = Fake::default();
        let mut core = StreamCore::new(&mut fake, &mut app, &abort);
        assert!(matches!(core.next(t(0.0)), Next::Read { until: None, .. }));
        core.eof(t(1.0));
        assert_io_failure(
            core.next(t(1.0)),
            "waiting after EOF",
            io::ErrorKind::UnexpectedEof,
            "nothing can end it",
        );
    }

    #[test]
    fn an_eof_that_ends_the_machine_closes_then_is_done() {
        let mut fake = Fake {
            on_eof: Some(Ok(())),
            ..Fake::default()
        };
        let mut app = super::super::Ignore;
        let abort = Abort::new();
        let mut core = StreamCore::new(&mut fake, &mut app, &abort);
        assert!(matches!(core.next(t(0.0)), Next::Read { .. }));
        core.eof(t(1.0));
        assert!(matches!(core.next(t(1.0)), Next::Close));
        core.closed(t(1.0));
        assert!(matches!(core.next(t(1.0)), Next::Done(Ok(()))));
        assert!(
            matches!(core.next(t(1.0)), Next::Done(Err(_))),
            "after Done"
        );
    }

    /// An app that turns each event into a work whose finish logs it (or
    /// fails, for event 13).
    #[derive(Default)]
    struct Worker {
        queued: Vec<u32>,
        finished: Vec<u32>,
    }

    impl App<Fake> for Worker {
        fn on_event(&mut self, _: &mut Fake, _: Instant, e: u32) -> io::Result<()> {
            self.queued.push(e);
            Ok(())
        }

        fn poll_work(&mut self) -> Option<Work<Self, Fake>> {
            let events = std::mem::take(&mut self.queued);
            if events.is_empty() {
                return None;
            }
            Some(Work::new(move || {
                move |app: &mut Worker, _: &mut Fake, _| {
                    if events.contains(&13) {
                        return Err(io::Error::other("cannot write"));
                    }
                    app.finished.extend(events);
                    Ok(())
                }
            }))
        }
    }

    #[test]
    fn work_is_handed_out_before_any_read_and_the_machine_gets_no_input_until_it_has_run() {
        let mut fake = Fake::default();
        fake.outputs.push_back(Output::Event(1));
        fake.outputs.push_back(Output::Event(2));
        let mut app = Worker::default();
        let abort = Abort::new();
        let mut core = StreamCore::new(&mut fake, &mut app, &abort);
        assert!(matches!(core.next(t(0.0)), Next::Work));
        let work = core.take_work().expect("work");
        // Run elsewhere: meanwhile the core only awaits it, at any time.
        assert!(matches!(core.next(t(0.0)), Next::AwaitWork));
        assert!(matches!(core.next(t(99.0)), Next::AwaitWork));
        core.worked(t(1.0), work.run());
        assert!(matches!(core.next(t(1.0)), Next::Read { .. }));
        drop(core);
        assert_eq!(app.finished, [1, 2], "one work for both events, in order");
        assert!(
            fake.log.is_empty(),
            "no timer fired, no input: {:?}",
            fake.log
        );
    }

    #[test]
    fn while_work_runs_the_shell_may_read_ahead_into_the_machine_which_is_drained_only_after() {
        let mut fake = Fake::default();
        fake.outputs.push_back(Output::Event(1));
        let mut app = Worker::default();
        let abort = Abort::new();
        let mut core = StreamCore::new(&mut fake, &mut app, &abort);
        assert_eq!(core.read_while_working(), None, "no work runs yet");
        assert!(matches!(core.next(t(0.0)), Next::Work));
        let work = core.take_work().expect("work");
        assert!(matches!(core.next(t(0.0)), Next::AwaitWork));
        // The machine has room (100): a read may go on meanwhile.
        let max = core.read_while_working().expect("room to read ahead");
        assert_eq!(max, 100);
        core.read_buffer(max)[..4].copy_from_slice(b"next");
        core.filled(t(0.5), 4);
        // Still awaiting the work: no drain, no timer.
        assert!(matches!(core.next(t(0.5)), Next::AwaitWork));
        core.worked(t(1.0), work.run());
        assert!(matches!(core.next(t(1.0)), Next::Read { .. }));
        drop(core);
        assert_eq!(fake.log, ["input:next"], "read ahead, no timer fired");
        assert_eq!(app.finished, [1]);
        // The peer's end, read ahead, reaches the machine only once it
        // waits for input again: where it would have met it without.
        let mut fake = Fake::default();
        fake.outputs.push_back(Output::Event(1));
        let mut app = Worker::default();
        let mut core = StreamCore::new(&mut fake, &mut app, &abort);
        assert!(matches!(core.next(t(0.0)), Next::Work));
        let work = core.take_work().expect("work");
        assert!(matches!(core.next(t(0.0)), Next::AwaitWork));
        let max = core.read_while_working().expect("room");
        let _ = core.read_buffer(max);
        core.filled(t(0.5), 0);
        assert_eq!(core.read_while_working(), None, "nothing after the end");
        core.worked(t(1.0), work.run());
        let _ = core.next(t(1.0));
        drop(core);
        assert_eq!(fake.log, ["eof"], "told after the work, once it waited");
        // A machine without room is not read ahead: its back-pressure holds.
        let mut full = Fake {
            room: Some(0),
            ..Fake::default()
        };
        full.outputs.push_back(Output::Event(1));
        let mut app = Worker::default();
        let mut core = StreamCore::new(&mut full, &mut app, &abort);
        assert!(matches!(core.next(t(0.0)), Next::Work));
        let _work = core.take_work().expect("work");
        assert_eq!(core.read_while_working(), None);
    }

    #[test]
    fn work_that_fails_after_the_machine_ended_makes_the_apps_error_the_result() {
        let mut fake = Fake::default();
        fake.outputs.push_back(Output::Event(13));
        fake.ended = Some(Ok(()));
        let mut app = Worker::default();
        let abort = Abort::new();
        let mut core = StreamCore::new(&mut fake, &mut app, &abort);
        assert!(matches!(core.next(t(0.0)), Next::Work));
        let work = core.take_work().expect("work");
        core.worked(t(0.0), work.run());
        assert!(matches!(core.next(t(0.0)), Next::Close));
        core.closed(t(0.0));
        assert!(matches!(
            core.next(t(0.0)),
            Next::Done(Err(DriverError::App(_)))
        ));
    }

    #[test]
    fn an_abort_while_work_runs_is_applied_at_once_and_told_to_the_peer_once_the_work_is_done() {
        let mut fake = Fake::default();
        fake.outputs.push_back(Output::Event(1));
        let mut app = Worker::default();
        let abort = Abort::new();
        let mut core = StreamCore::new(&mut fake, &mut app, &abort);
        assert!(matches!(core.next(t(0.0)), Next::Work));
        let work = core.take_work().expect("work");
        assert!(matches!(core.next(t(0.0)), Next::AwaitWork));
        abort.request("shutting down");
        core.woken(t(0.5));
        assert!(matches!(core.next(t(0.5)), Next::AwaitWork));
        core.worked(t(1.0), work.run());
        assert!(is_write(&core.next(t(1.0))), "the abort's words go out");
        assert_eq!(written(&core), b"ERR");
        core.wrote(t(1.0), 3);
        assert!(matches!(core.next(t(1.0)), Next::Flush));
        core.flushed(t(1.0));
        assert!(matches!(core.next(t(1.0)), Next::Close));
        core.closed(t(1.0));
        assert!(matches!(core.next(t(1.0)), Next::Done(Err(_))));
        drop(core);
        assert_eq!(app.finished, [1], "the work's result was still applied");
        assert_eq!(fake.log, ["abort:shutting down"], "applied once");
    }

    #[test]
    fn a_failing_app_aborts_the_machine_which_tells_the_peer_and_the_apps_error_is_the_result() {
        let mut fake = Fake::default();
        fake.outputs.push_back(Output::Event(1));
        fake.outputs.push_back(Output::Event(2));
        let mut seen = Vec::new();
        let mut app = |_: &mut Fake, _: Instant, e: u32| -> io::Result<()> {
            seen.push(e);
            Err(io::Error::other("disk full"))
        };
        let abort = Abort::new();
        let mut core = StreamCore::new(&mut fake, &mut app, &abort);
        assert!(is_write(&core.next(t(0.0))));
        let parts: Vec<u8> = core.transmit().iter().flat_map(|s| s.to_vec()).collect();
        assert_eq!(parts, b"ERR", "the machine was aborted and tells the peer");
        core.wrote(t(0.0), 3);
        assert!(matches!(core.next(t(0.0)), Next::Flush));
        core.flushed(t(0.0));
        assert!(matches!(core.next(t(0.0)), Next::Close));
        core.closed(t(0.0));
        match core.next(t(0.0)) {
            Next::Done(Err(DriverError::App(source))) => {
                assert_eq!(source.to_string(), "disk full");
            }
            other => panic!("the app's failure is the result: {other:?}"),
        }
        drop(core);
        assert_eq!(seen, [1], "events after the failure are dropped");
        assert_eq!(fake.log, ["abort:disk full"]);
    }

    #[test]
    fn a_reset_under_a_write_reads_the_peers_last_words_for_the_reason() {
        let mut fake = Fake::sending(b"data");
        let mut app = super::super::Ignore;
        let abort = Abort::new();
        let mut core = StreamCore::new(&mut fake, &mut app, &abort);
        assert!(is_write(&core.next(t(0.0))));
        core.write_failed(t(1.0), io::ErrorKind::ConnectionReset.into());
        match core.next(t(1.0)) {
            Next::Read { until, .. } => assert_eq!(until, Some(t(1.0) + SALVAGE_WAIT)),
            other => panic!("the core must read what the peer said: {other:?}"),
        }
        core.read(t(1.1), b"ERR");
        match core.next(t(1.1)) {
            Next::Done(Err(DriverError::Machine(crate::Error::PeerFailed { message, .. }))) => {
                assert_eq!(message, "disk full")
            }
            other => panic!("the peer's reason, not the reset: {other:?}"),
        }
    }

    #[test]
    fn a_reset_with_nothing_to_salvage_ends_with_the_writes_failure_once_the_wait_is_over() {
        let mut fake = Fake::sending(b"data");
        let mut app = super::super::Ignore;
        let abort = Abort::new();
        let mut core = StreamCore::new(&mut fake, &mut app, &abort);
        assert!(is_write(&core.next(t(0.0))));
        core.write_failed(t(0.0), io::ErrorKind::BrokenPipe.into());
        assert!(matches!(core.next(t(0.0)), Next::Read { .. }));
        core.timed_out(t(0.5));
        assert!(matches!(core.next(t(0.5)), Next::Read { .. }), "early");
        core.timed_out(t(1.0));
        assert_io_failure(
            core.next(t(1.0)),
            "writing to the peer",
            io::ErrorKind::BrokenPipe,
            "the write's failure",
        );
    }

    #[test]
    fn an_abort_request_aborts_the_machine_once_and_before_the_eof_that_woke_the_read() {
        let mut fake = Fake::default();
        let mut app = super::super::Ignore;
        let abort = Abort::new();
        let mut core = StreamCore::new(&mut fake, &mut app, &abort);
        assert!(matches!(core.next(t(0.0)), Next::Read { .. }));
        abort.request("shutting down");
        abort.request("ignored: the first reason is used");
        // The shell shut the transport for reading to wake its read.
        core.eof(t(1.0));
        assert!(is_write(&core.next(t(1.0))));
        assert_eq!(written(&core), b"ERR", "the peer is told why");
        core.wrote(t(1.0), 3);
        assert!(matches!(core.next(t(1.0)), Next::Flush));
        core.flushed(t(1.0));
        assert!(matches!(core.next(t(1.0)), Next::Close));
        core.closed(t(1.0));
        assert!(matches!(
            core.next(t(1.0)),
            Next::Done(Err(DriverError::Machine(crate::Error::Aborted(r)))) if r == "shutting down"
        ));
        drop(core);
        assert_eq!(fake.log, ["abort:shutting down", "eof"]);
    }

    #[test]
    fn a_transport_read_failure_ends_at_once_without_close() {
        let mut fake = Fake::default();
        let mut app = super::super::Ignore;
        let abort = Abort::new();
        let mut core = StreamCore::new(&mut fake, &mut app, &abort);
        assert!(matches!(core.next(t(0.0)), Next::Read { .. }));
        core.read_failed(t(0.0), io::ErrorKind::Interrupted.into());
        assert!(matches!(core.next(t(0.0)), Next::Read { .. }), "retried");
        core.read_failed(t(0.0), io::ErrorKind::PermissionDenied.into());
        assert!(matches!(
            core.next(t(0.0)),
            Next::Done(Err(DriverError::Io {
                context: "reading from the peer",
                ..
            }))
        ));
    }

    /// A fake that transmits `bytes`, then ends with `result`.
    fn ending_after(bytes: &'static [u8], result: Result<(), crate::Error>) -> Fake {
        let mut fake = Fake::sending(bytes);
        fake.ended = Some(result);
        fake
    }

    /// Answers `Close` with `closed` and returns the `Done` that follows.
    fn closes_then_done<A: App<Fake>>(
        core: &mut StreamCore<'_, Fake, A>,
        now: Instant,
    ) -> Result<(), DriverError> {
        match core.next(now) {
            Next::Close => core.closed(now),
            other => panic!("the ending session closes first: {other:?}"),
        }
        match core.next(now) {
            Next::Done(result) => result,
            other => panic!("then it is done: {other:?}"),
        }
    }

    #[test]
    fn the_core_awaits_an_abort_request_until_a_wake_has_applied_it_once() {
        let mut fake = Fake::default();
        let mut app = super::super::Ignore;
        let abort = Abort::new();
        let mut core = StreamCore::new(&mut fake, &mut app, &abort);
        assert!(core.awaits_abort(), "nothing applied yet");
        assert!(matches!(core.next(t(0.0)), Next::Read { .. }));
        assert!(core.awaits_abort(), "no request yet, so none applied");
        abort.request("shutting down");
        core.woken(t(0.5));
        assert!(!core.awaits_abort(), "the wake applied it");
        core.woken(t(0.6));
        drop(core);
        assert_eq!(fake.log, ["abort:shutting down"], "applied once");
    }

    #[test]
    fn the_write_timeout_is_the_machines() {
        let mut fake = Fake::default();
        let mut app = super::super::Ignore;
        let abort = Abort::new();
        let core = StreamCore::new(&mut fake, &mut app, &abort);
        assert_eq!(core.write_timeout(), Some(WRITE_TIMEOUT));
    }

    #[test]
    fn output_is_gathered_into_one_write_until_a_batch_of_256_kib_is_worth_writing() {
        let part = || Output::Transmit(Bytes::from(vec![7u8; 100 * 1024]));
        let mut fake = Fake::default();
        fake.outputs.extend([part(), part(), part(), part()]);
        let mut app = super::super::Ignore;
        let abort = Abort::new();
        let mut core = StreamCore::new(&mut fake, &mut app, &abort);
        assert!(is_write(&core.next(t(0.0))));
        let lens: Vec<usize> = core.transmit().iter().map(|s| s.len()).collect();
        assert_eq!(
            lens,
            [100 * 1024; 3],
            "gathered until past 256 KiB, no further"
        );
        core.wrote(t(0.0), 300 * 1024);
        assert!(matches!(core.next(t(0.0)), Next::Flush));
        core.flushed(t(0.0));
        assert!(is_write(&core.next(t(0.0))), "the rest, drained only now");
        assert_eq!(written(&core).len(), 100 * 1024);
    }

    #[test]
    fn a_write_that_takes_nothing_or_fails_ends_the_session_at_once_without_close() {
        // Zero bytes taken: the transport will take nothing more.
        let mut fake = Fake::sending(b"data");
        let mut app = super::super::Ignore;
        let abort = Abort::new();
        let mut core = StreamCore::new(&mut fake, &mut app, &abort);
        assert!(is_write(&core.next(t(0.0))));
        core.write_failed(t(0.0), io::ErrorKind::Interrupted.into());
        assert!(
            is_write(&core.next(t(0.0))),
            "an interrupted write is retried"
        );
        core.wrote(t(0.0), 0);
        assert_io_failure(
            core.next(t(0.0)),
            "writing to the peer",
            io::ErrorKind::WriteZero,
            "a write of nothing fails the session",
        );
        // A flush that fails: no reset, so nothing to salvage.
        let mut fake = Fake::sending(b"data");
        let mut core = StreamCore::new(&mut fake, &mut app, &abort);
        assert!(is_write(&core.next(t(0.0))));
        core.wrote(t(0.0), 4);
        assert!(matches!(core.next(t(0.0)), Next::Flush));
        core.write_failed(t(0.0), io::ErrorKind::PermissionDenied.into());
        assert_io_failure(
            core.next(t(0.0)),
            "flushing to the peer",
            io::ErrorKind::PermissionDenied,
            "a failed flush fails the session",
        );
    }

    #[test]
    fn a_write_that_fails_while_ending_is_the_result_and_a_reset_then_reads_the_peers_reason() {
        let mut app = super::super::Ignore;
        let abort = Abort::new();
        // The machine ended well; its last write fails: that is the result.
        let mut fake = ending_after(b"bye", Ok(()));
        let mut core = StreamCore::new(&mut fake, &mut app, &abort);
        assert!(is_write(&core.next(t(0.0))));
        core.write_failed(t(0.0), io::ErrorKind::PermissionDenied.into());
        match closes_then_done(&mut core, t(0.0)) {
            Err(DriverError::Io { context, source }) => {
                assert_eq!(context, "writing to the peer");
                assert_eq!(source.kind(), io::ErrorKind::PermissionDenied);
            }
            other => panic!("the write's failure: {other:?}"),
        }
        // A reset under that write: the peer's last words are read first.
        let mut fake = ending_after(b"bye", Ok(()));
        let mut core = StreamCore::new(&mut fake, &mut app, &abort);
        assert!(is_write(&core.next(t(0.0))));
        core.write_failed(t(1.0), io::ErrorKind::ConnectionReset.into());
        match core.next(t(1.0)) {
            Next::Read { until, .. } => assert_eq!(until, Some(t(1.0) + SALVAGE_WAIT)),
            other => panic!("the core must read what the peer said: {other:?}"),
        }
        core.read(t(1.1), b"ERR");
        match closes_then_done(&mut core, t(1.1)) {
            Err(DriverError::Machine(crate::Error::PeerFailed { message, .. })) => {
                assert_eq!(message, "disk full")
            }
            other => panic!("the peer's reason: {other:?}"),
        }
    }

    #[test]
    fn a_peer_that_stalls_the_last_write_fails_an_ending_session_unless_it_failed_already() {
        let mut app = super::super::Ignore;
        let abort = Abort::new();
        let mut fake = ending_after(b"bye", Ok(()));
        let mut core = StreamCore::new(&mut fake, &mut app, &abort);
        assert!(matches!(core.next(t(0.0)), Next::Write { until: Some(u) } if u == t(8.0)));
        core.timed_out(t(8.0));
        match closes_then_done(&mut core, t(8.0)) {
            Err(e) => assert!(e.is_stalled_peer(), "{e}"),
            Ok(()) => panic!("a stalled peer is the result"),
        }
        // The machine's own failure stands.
        let mut fake = ending_after(b"bye", Err(crate::Error::Aborted("gone".into())));
        let mut core = StreamCore::new(&mut fake, &mut app, &abort);
        assert!(is_write(&core.next(t(0.0))));
        core.timed_out(t(8.0));
        assert!(matches!(
            closes_then_done(&mut core, t(8.0)),
            Err(DriverError::Machine(crate::Error::Aborted(r))) if r == "gone"
        ));
    }

    #[test]
    fn a_read_the_machine_had_no_room_for_says_nothing_of_the_peers_end() {
        let mut fake = Fake {
            room: Some(0),
            ..Fake::default()
        };
        let mut app = super::super::Ignore;
        let abort = Abort::new();
        let mut core = StreamCore::new(&mut fake, &mut app, &abort);
        let Next::Read { max, .. } = core.next(t(0.0)) else {
            panic!("expected a read");
        };
        assert_eq!(max, 1, "a read asks for at least a byte");
        assert!(core.read_buffer(max).is_empty(), "no room");
        core.filled(t(0.0), 0);
        assert!(matches!(core.next(t(0.0)), Next::Read { .. }));
        drop(core);
        assert!(fake.log.is_empty(), "no end told: {:?}", fake.log);
    }

    #[test]
    fn a_read_that_brings_more_than_a_quarter_of_its_size_keeps_the_size() {
        let mut fake = Fake {
            room: Some(1 << 20),
            ..Fake::default()
        };
        let mut app = super::super::Ignore;
        let abort = Abort::new();
        let mut core = StreamCore::new(&mut fake, &mut app, &abort);
        let k = 1024;
        // Reads `n` bytes into the read asked for; returns its size.
        let read = |core: &mut StreamCore<'_, Fake, super::super::Ignore>, n: usize| {
            let Next::Read { max, .. } = core.next(t(0.0)) else {
                panic!("expected a read");
            };
            core.read_buffer(max)[..n].fill(b'x');
            core.filled(t(0.0), n);
            max
        };
        assert_eq!(read(&mut core, 16 * k), 16 * k, "full");
        assert_eq!(
            read(&mut core, 8 * k + 1),
            32 * k,
            "grown after the full read"
        );
        assert_eq!(
            read(&mut core, 8 * k),
            32 * k,
            "kept: more than a quarter came"
        );
        assert_eq!(read(&mut core, 1), 16 * k, "shrunk: a quarter came");
    }

    #[test]
    fn a_read_that_times_out_or_would_block_is_a_timeout_not_a_failure() {
        let mut fake = Fake {
            deadline: Some(t(5.0)),
            ..Fake::default()
        };
        let mut app = super::super::Ignore;
        let abort = Abort::new();
        let mut core = StreamCore::new(&mut fake, &mut app, &abort);
        assert!(matches!(core.next(t(0.0)), Next::Read { until: Some(u), .. } if u == t(5.0)));
        core.read_failed(t(1.0), io::ErrorKind::WouldBlock.into());
        assert!(matches!(core.next(t(1.0)), Next::Read { .. }), "early");
        core.read_failed(t(5.0), io::ErrorKind::TimedOut.into());
        assert!(
            matches!(core.next(t(5.0)), Next::Close),
            "the machine's timer ended it"
        );
        drop(core);
        assert_eq!(fake.log, ["timeout@1s", "timeout@5s"]);
    }

    #[test]
    fn a_read_that_fails_while_salvaging_ends_with_the_writes_failure() {
        let mut fake = Fake::sending(b"data");
        let mut app = super::super::Ignore;
        let abort = Abort::new();
        let mut core = StreamCore::new(&mut fake, &mut app, &abort);
        assert!(is_write(&core.next(t(0.0))));
        core.write_failed(t(0.0), io::ErrorKind::BrokenPipe.into());
        assert!(matches!(core.next(t(0.0)), Next::Read { .. }));
        core.read_failed(t(0.1), io::ErrorKind::ConnectionReset.into());
        assert_io_failure(
            core.next(t(0.1)),
            "writing to the peer",
            io::ErrorKind::BrokenPipe,
            "the write's failure, not the read's",
        );
    }

    #[test]
    fn a_batch_written_in_pieces_goes_out_once_in_order_and_the_next_batch_is_gathered_anew() {
        const PART: usize = 100 * 1024;
        let mut fake = Fake::default();
        let mut expected = Vec::new();
        for i in 0..8u8 {
            fake.outputs
                .push_back(Output::Transmit(Bytes::from(vec![i; PART])));
            expected.extend(std::iter::repeat_n(i, PART));
        }
        let mut app = super::super::Ignore;
        let abort = Abort::new();
        let mut core = StreamCore::new(&mut fake, &mut app, &abort);
        let (mut sent, mut batches, mut fresh) = (Vec::new(), Vec::new(), true);
        for _ in 0..100 {
            match core.next(t(0.0)) {
                Next::Write { .. } => {
                    let pending = written(&core);
                    if fresh {
                        batches.push(pending.len());
                        fresh = false;
                    }
                    // A transport that takes 70 KiB at a time.
                    let n = pending.len().min(70 * 1024);
                    sent.extend_from_slice(&pending[..n]);
                    core.wrote(t(0.0), n);
                }
                Next::Flush => {
                    core.flushed(t(0.0));
                    fresh = true;
                }
                Next::Read { .. } => break,
                other => panic!("only writes until the machine waits: {other:?}"),
            }
        }
        assert!(sent == expected, "every byte once, in order");
        assert_eq!(batches, [3 * PART, 3 * PART, 2 * PART]);
    }

    #[test]
    fn a_shell_reads_at_most_a_mib_ahead_while_one_work_runs() {
        let mut fake = Fake {
            room: Some(1 << 30),
            ..Fake::default()
        };
        fake.outputs.push_back(Output::Event(1));
        let mut app = Worker::default();
        let abort = Abort::new();
        let mut core = StreamCore::new(&mut fake, &mut app, &abort);
        assert!(matches!(core.next(t(0.0)), Next::Work));
        let work = core.take_work().expect("work");
        let mut ahead = 0;
        for _ in 0..100 {
            let Some(max) = core.read_while_working() else {
                break;
            };
            core.read_buffer(max).fill(b'x');
            core.filled(t(0.0), max);
            ahead += max;
        }
        assert_eq!(ahead, 1024 * 1024, "a MiB, though the machine has room");
        assert!(matches!(core.next(t(0.0)), Next::AwaitWork));
        core.worked(t(1.0), work.run());
    }
}
