//! The one place a session's application [`Work`] waits to be taken, runs
//! and is done: shared by the stream core and the datagram core, so both
//! ask for work, hand it out and await it the same way.

use super::{App, Work};
use crate::machine::Machine;

/// Where the application's work is: at most one at a time.
pub(crate) enum WorkSlot<A, M> {
    /// None asked for, or the last one is done.
    Empty,
    /// Asked for: the shell takes it at its next `Work`.
    Ready(Work<A, M>),
    /// Taken by the shell, which runs it and reports when it is done.
    Running,
}

impl<A: App<M>, M: Machine> WorkSlot<A, M> {
    /// Asks `app` for work if the slot is empty. Returns whether the slot
    /// now holds work to hand out.
    pub(crate) fn ask(&mut self, app: &mut A) -> bool {
        if let WorkSlot::Empty = self {
            if let Some(work) = app.poll_work() {
                *self = WorkSlot::Ready(work);
            }
        }
        self.is_ready()
    }
}

impl<A, M> WorkSlot<A, M> {
    /// Whether work waits to be taken.
    pub(crate) fn is_ready(&self) -> bool {
        matches!(self, WorkSlot::Ready(_))
    }

    /// Whether the shell runs work now.
    pub(crate) fn is_running(&self) -> bool {
        matches!(self, WorkSlot::Running)
    }

    /// The work to run, which the slot then awaits; `None` if none waits.
    pub(crate) fn take(&mut self) -> Option<Work<A, M>> {
        match std::mem::replace(self, WorkSlot::Running) {
            WorkSlot::Ready(work) => Some(work),
            other => {
                *self = other;
                None
            }
        }
    }

    /// The running work is done.
    pub(crate) fn done(&mut self) {
        *self = WorkSlot::Empty;
    }
}
