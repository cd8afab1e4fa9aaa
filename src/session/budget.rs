//! The receive budget a server shares among its sessions, so that the
//! memory parked in half-received frames is bounded for the server, not
//! only per session. Pure bookkeeping: an atomic counter, no I/O.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Bytes of undecoded input that all the sessions holding a clone of this
/// budget may keep, together, beyond each one's `Config::recv_allowance`.
///
/// A server makes one ([`RecvBudget::new`] with `Config::recv_budget`) and
/// hands a clone to every machine it creates
/// ([`Framed::with_recv_budget`](crate::session::Framed::with_recv_budget)).
/// A session draws on it when it holds more than its allowance (a large
/// frame arriving slowly, frames waiting while its peer does not read) and
/// gives back as soon as it holds less, or when it ends or is dropped. A
/// session that needs more while the budget is spent fails with
/// [`Error::Busy`](crate::Error::Busy).
#[derive(Debug, Clone)]
pub struct RecvBudget {
    inner: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    limit: usize,
    used: AtomicUsize,
}

impl RecvBudget {
    /// A budget of `limit` bytes, none of it in use.
    pub fn new(limit: usize) -> Self {
        RecvBudget {
            inner: Arc::new(Shared {
                limit,
                used: AtomicUsize::new(0),
            }),
        }
    }

    /// The budget's size.
    pub fn limit(&self) -> usize {
        self.inner.limit
    }

    /// Bytes drawn by sessions right now.
    pub fn in_use(&self) -> usize {
        self.inner.used.load(Ordering::Acquire)
    }

    /// Takes `n` bytes if that many are left.
    fn try_take(&self, n: usize) -> bool {
        let limit = self.inner.limit;
        self.inner
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|&total| total <= limit)
            })
            .is_ok()
    }

    fn give_back(&self, n: usize) {
        self.inner.used.fetch_sub(n, Ordering::AcqRel);
    }
}

/// What one session has drawn from a [`RecvBudget`]; given back when dropped.
#[derive(Debug)]
pub(crate) struct Charge {
    budget: RecvBudget,
    held: usize,
}

impl Charge {
    pub(crate) fn new(budget: RecvBudget) -> Self {
        Charge { budget, held: 0 }
    }

    /// Makes the session's draw exactly `want` bytes. `Err` (with the
    /// budget's size) if that needs more than is left; the draw is then
    /// unchanged.
    pub(crate) fn set(&mut self, want: usize) -> Result<(), usize> {
        if want > self.held {
            if !self.budget.try_take(want - self.held) {
                return Err(self.budget.limit());
            }
        } else {
            self.budget.give_back(self.held - want);
        }
        self.held = want;
        Ok(())
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.budget.give_back(self.held);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_are_bounded_by_the_budget_and_given_back_on_drop() {
        let budget = RecvBudget::new(100);
        let mut a = Charge::new(budget.clone());
        let mut b = Charge::new(budget.clone());
        assert_eq!(a.set(70), Ok(()));
        assert_eq!(b.set(31), Err(100), "only 30 left");
        assert_eq!(b.set(30), Ok(()));
        assert_eq!(budget.in_use(), 100);
        assert_eq!(a.set(10), Ok(()));
        assert_eq!(budget.in_use(), 40);
        drop(a);
        drop(b);
        assert_eq!(budget.in_use(), 0);
    }
}
