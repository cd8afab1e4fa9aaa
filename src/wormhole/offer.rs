//! The wormhole phase of the file-transfer protocol, as `wormhole send`
//! and `wormhole receive` run it: the sender offers a text, a file or a
//! directory (with its transit hints first when bytes are to follow); the
//! receiver accepts (a text at once; a file or directory when its policy
//! says so, with its own hints) or declines with an `error` the sender
//! shows; both then close the wormhole. The two roles are [`App`]s of the
//! [`Wormhole`] machine, so any driver runs them; they touch nothing but
//! the machine. What follows an accepted file (transit) is the caller's.

use std::io;
use std::time::Instant;

use super::transfer::{Answer, Offer, TransferMessage};
use super::transit::TransitHints;
use super::{Wormhole, WormholeEvent};
use crate::driver::App;
use crate::error::WormholeError;
use crate::wormhole::app_error;

fn send(wormhole: &mut Wormhole, message: TransferMessage) -> io::Result<()> {
    wormhole.send(&message.encode()).map_err(io::Error::other)
}

fn close(wormhole: &mut Wormhole, now: Instant) -> io::Result<()> {
    wormhole.close(now).map_err(io::Error::other)
}

fn is_ok(ack: &Option<String>) -> bool {
    ack.as_deref() == Some("ok")
}

/// The sending role: offers one text, file or directory once the peer
/// has proved the code, and ends when the receiver answers.
#[derive(Debug)]
pub struct SendOffer {
    offer: Offer,
    hints: Option<TransitHints>,
    peer_hints: Option<TransitHints>,
    accepted: bool,
}

impl SendOffer {
    /// Offers a text; it travels in the offer itself.
    pub fn text(text: impl Into<String>) -> SendOffer {
        SendOffer {
            offer: Offer::Message(text.into()),
            hints: None,
            peer_hints: None,
            accepted: false,
        }
    }

    /// Offers a file or a directory, telling the peer where to connect
    /// for its bytes (`hints`, sent before the offer).
    pub fn with_transit(offer: Offer, hints: TransitHints) -> SendOffer {
        SendOffer {
            offer,
            hints: Some(hints),
            peer_hints: None,
            accepted: false,
        }
    }

    /// Whether the receiver accepted (a text: received it).
    pub fn accepted(&self) -> bool {
        self.accepted
    }

    /// Where the receiver said to connect, if it said.
    pub fn peer_hints(&self) -> Option<&TransitHints> {
        self.peer_hints.as_ref()
    }

    fn on_message(
        &mut self,
        wormhole: &mut Wormhole,
        now: Instant,
        bytes: &[u8],
    ) -> io::Result<()> {
        let text = matches!(self.offer, Offer::Message(_));
        match TransferMessage::decode(bytes).map_err(app_error)? {
            TransferMessage::Transit(value) => {
                self.peer_hints = Some(TransitHints::from_value(value).map_err(app_error)?);
                Ok(())
            }
            TransferMessage::Answer(Answer { message_ack, .. }) if text && is_ok(&message_ack) => {
                self.accepted = true;
                close(wormhole, now)
            }
            TransferMessage::Answer(Answer { file_ack, .. }) if !text && is_ok(&file_ack) => {
                self.accepted = true;
                close(wormhole, now)
            }
            TransferMessage::Error(text) => Err(app_error(WormholeError::PeerError(text))),
            _ => Err(app_error(WormholeError::BadPeer(
                "an answer that does not fit the offer",
            ))),
        }
    }
}

impl App<Wormhole> for SendOffer {
    fn on_event(
        &mut self,
        wormhole: &mut Wormhole,
        now: Instant,
        event: WormholeEvent,
    ) -> io::Result<()> {
        match event {
            WormholeEvent::Verified { .. } => {
                if let Some(hints) = &self.hints {
                    send(wormhole, TransferMessage::Transit(hints.to_value()))?;
                }
                send(wormhole, TransferMessage::Offer(self.offer.clone()))
            }
            WormholeEvent::Message(bytes) => self.on_message(wormhole, now, &bytes),
            _ => Ok(()),
        }
    }
}

/// Decides on a file or directory offer: `Ok` accepts, `Err(reason)`
/// declines, and the reason is sent to the sender.
pub type Policy = Box<dyn FnMut(&Offer) -> Result<(), String> + Send>;

/// What a receiver ended with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// A text, acknowledged.
    Text(String),
    /// A file or directory offer, accepted: its bytes follow through
    /// transit.
    Accepted(Offer),
    /// An offer the policy declined, with the reason the sender was given.
    Declined(Offer, String),
}

/// The receiving role: takes one offer. A text is acknowledged; a file or
/// a directory goes to the policy, and is then accepted (with this side's
/// transit hints) or declined.
pub struct ReceiveOffer {
    hints: TransitHints,
    policy: Policy,
    peer_hints: Option<TransitHints>,
    received: Option<Received>,
}

impl std::fmt::Debug for ReceiveOffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceiveOffer")
            .field("received", &self.received)
            .finish_non_exhaustive()
    }
}

impl ReceiveOffer {
    /// A receiver whose transit is reachable at `hints`, deciding with
    /// `policy`.
    pub fn new(hints: TransitHints, policy: Policy) -> ReceiveOffer {
        ReceiveOffer {
            hints,
            policy,
            peer_hints: None,
            received: None,
        }
    }

    /// A receiver that takes texts and declines everything else.
    pub fn text_only() -> ReceiveOffer {
        ReceiveOffer::new(TransitHints::new(), Box::new(|_| Err(TEXT_ONLY.to_owned())))
    }

    /// What was received, once the offer came.
    pub fn received(&self) -> Option<&Received> {
        self.received.as_ref()
    }

    /// Where the sender said to connect, if it said.
    pub fn peer_hints(&self) -> Option<&TransitHints> {
        self.peer_hints.as_ref()
    }

    fn on_offer(&mut self, wormhole: &mut Wormhole, now: Instant, offer: Offer) -> io::Result<()> {
        if self.received.is_some() {
            return Err(app_error(WormholeError::BadPeer("a second offer")));
        }
        let received = match offer {
            Offer::Message(text) => {
                send(wormhole, TransferMessage::Answer(Answer::text_received()))?;
                Received::Text(text)
            }
            offer => match (self.policy)(&offer) {
                Ok(()) => {
                    send(wormhole, TransferMessage::Transit(self.hints.to_value()))?;
                    send(wormhole, TransferMessage::Answer(Answer::file_accepted()))?;
                    Received::Accepted(offer)
                }
                Err(reason) => {
                    send(wormhole, TransferMessage::Error(reason.clone()))?;
                    Received::Declined(offer, reason)
                }
            },
        };
        self.received = Some(received);
        close(wormhole, now)
    }
}

/// What a text-only receiver tells a sender of files.
pub const TEXT_ONLY: &str = "this receiver takes text only";

impl App<Wormhole> for ReceiveOffer {
    fn on_event(
        &mut self,
        wormhole: &mut Wormhole,
        now: Instant,
        event: WormholeEvent,
    ) -> io::Result<()> {
        let WormholeEvent::Message(bytes) = event else {
            return Ok(());
        };
        match TransferMessage::decode(&bytes).map_err(app_error)? {
            TransferMessage::Offer(offer) => self.on_offer(wormhole, now, offer),
            TransferMessage::Transit(value) => {
                self.peer_hints = Some(TransitHints::from_value(value).map_err(app_error)?);
                Ok(())
            }
            TransferMessage::Error(text) => Err(app_error(WormholeError::PeerError(text))),
            TransferMessage::Answer(_) => Err(app_error(WormholeError::BadPeer(
                "an answer sent to the receiver",
            ))),
        }
    }
}
