//! Which of several candidate connections carries a transfer: the shared
//! [`Race`] they claim, and [`HandOver`], the app of a candidate whose
//! connection goes on with another protocol after `go\n`.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use super::{Role, Transit, TransitEvent};
use crate::driver::App;
use crate::wormhole::app_error;

/// Which of the candidate connections carries the transfer: the first to
/// [`claim`](Race::claim) it.
#[derive(Debug, Clone, Default)]
pub struct Race(Arc<AtomicBool>);

impl Race {
    /// A race nobody has won.
    pub fn new() -> Race {
        Race::default()
    }

    /// Claims the win: `true` for the first caller only.
    pub fn claim(&self) -> bool {
        !self.0.swap(true, Ordering::AcqRel)
    }

    /// Whether someone won.
    pub fn is_won(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// The app of one candidate of a [`hand_over`](super::TransitConfig::hand_over)
/// transit: the sender says `go` on the first connection to check out and
/// `nevermind` on the others; the receiver takes the one that hears `go`.
/// Once its session ends well, [`won`](Self::won) says whether this
/// connection is the one to carry on with.
#[derive(Debug, Clone)]
pub struct HandOver {
    race: Race,
    won: bool,
}

impl HandOver {
    /// A candidate in `race`.
    pub fn new(race: Race) -> HandOver {
        HandOver { race, won: false }
    }

    /// Whether this connection won (and its machine ended right after `go`).
    pub fn won(&self) -> bool {
        self.won
    }
}

impl App<Transit> for HandOver {
    fn on_event(
        &mut self,
        transit: &mut Transit,
        _: Instant,
        event: TransitEvent,
    ) -> io::Result<()> {
        let TransitEvent::Connected = event else {
            return Ok(());
        };
        match transit.role() {
            Role::Sender if self.race.claim() => {
                self.won = true;
                transit.go().map_err(app_error)
            }
            Role::Sender => transit.nevermind().map_err(app_error),
            // Only the sender's pick hears `go`; a second one would be the
            // sender's fault.
            Role::Receiver => {
                self.won = self.race.claim();
                match self.won {
                    true => Ok(()),
                    false => Err(io::Error::other("a second transit connection said go")),
                }
            }
        }
    }
}
