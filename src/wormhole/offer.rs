//! The wormhole phase of the file-transfer protocol, as `wormhole send`
//! and `wormhole receive` run it: the sender offers a text, a file or a
//! directory (with its transit hints first when bytes are to follow); the
//! receiver accepts (a text at once; a file or directory when its policy
//! says so, with its own hints) or declines with an `error` the sender
//! shows; both then close the wormhole. The two roles are [`App`]s of the
//! [`Wormhole`] machine, so any driver runs them; they touch nothing but
//! the machine. What follows an accepted file (transit) is the caller's.
//!
//! Between two echoxfer sides (each version phase carrying
//! [`native_app_versions`](super::transfer::native_app_versions)), a
//! sender made with [`SendOffer::files`] proposes the native protocol
//! instead of an offer, and a receiver made
//! [`with_native`](ReceiveOffer::with_native) accepts it with its hints:
//! the native file protocol then runs over the transit connection, where
//! it offers, refuses and resumes file by file itself.

use std::io;

use serde_json::Value;
use std::time::Instant;

use super::transfer::{speaks_native, Answer, Native, Offer, TransferMessage, NATIVE_VERSION};
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

/// Makes the classic offer for a peer that does not speak the native
/// protocol; `Err` is the reason the peer is told.
pub type MakeOffer = Box<dyn FnOnce() -> Result<Offer, String> + Send>;

/// What a sender offers.
enum Offering {
    /// This offer, to any peer.
    Classic(Offer),
    /// The native protocol to an echoxfer peer, else the offer made then.
    NativeOr(MakeOffer),
    /// The native protocol was proposed (or the offer made and sent).
    Proposed { native: bool, text: bool },
}

/// The sending role: offers one text, file or directory (or proposes the
/// native protocol) once the peer has proved the code, and ends when the
/// receiver answers.
pub struct SendOffer {
    offering: Offering,
    hints: Option<TransitHints>,
    peer_hints: Option<TransitHints>,
    accepted: bool,
}

impl std::fmt::Debug for SendOffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendOffer")
            .field("native", &self.native())
            .field("accepted", &self.accepted)
            .finish_non_exhaustive()
    }
}

impl SendOffer {
    /// Offers a text; it travels in the offer itself.
    pub fn text(text: impl Into<String>) -> SendOffer {
        SendOffer {
            offering: Offering::Classic(Offer::Message(text.into())),
            hints: None,
            peer_hints: None,
            accepted: false,
        }
    }

    /// Offers a file or a directory, telling the peer where to connect
    /// for its bytes (`hints`, sent before the offer).
    pub fn with_transit(offer: Offer, hints: TransitHints) -> SendOffer {
        SendOffer {
            offering: Offering::Classic(offer),
            hints: Some(hints),
            peer_hints: None,
            accepted: false,
        }
    }

    /// Sends files: proposes the native protocol to a peer whose version
    /// phase says it speaks it (see [`native`](Self::native)), and to any
    /// other peer offers what `classic` makes then (one file, or a folder
    /// as a zip: work a native peer never costs). `hints` go first either
    /// way. The wormhole's own version phase should carry
    /// [`native_app_versions`](super::transfer::native_app_versions).
    pub fn files(hints: TransitHints, classic: MakeOffer) -> SendOffer {
        SendOffer {
            offering: Offering::NativeOr(classic),
            hints: Some(hints),
            peer_hints: None,
            accepted: false,
        }
    }

    /// Whether the receiver accepted (a text: received it).
    pub fn accepted(&self) -> bool {
        self.accepted
    }

    /// Whether the native protocol was proposed (and, once
    /// [`accepted`](Self::accepted), agreed): the transit connection then
    /// carries it, not the classic records.
    pub fn native(&self) -> bool {
        matches!(self.offering, Offering::Proposed { native: true, .. })
    }

    /// Where the receiver said to connect, if it said.
    pub fn peer_hints(&self) -> Option<&TransitHints> {
        self.peer_hints.as_ref()
    }

    /// The peer proved the code: hints, then the offer or the proposal.
    fn on_verified(&mut self, wormhole: &mut Wormhole, peer_versions: &Value) -> io::Result<()> {
        let placeholder = Offering::Proposed {
            native: false,
            text: false,
        };
        let offer = match std::mem::replace(&mut self.offering, placeholder) {
            Offering::NativeOr(_) if speaks_native(peer_versions) => None,
            Offering::NativeOr(make) => match make() {
                Ok(offer) => Some(offer),
                Err(reason) => {
                    send(wormhole, TransferMessage::Error(reason.clone()))?;
                    return Err(io::Error::other(reason));
                }
            },
            Offering::Classic(offer) => Some(offer),
            Offering::Proposed { .. } => {
                return Err(app_error(WormholeError::BadPeer("a second version")))
            }
        };
        if let Some(hints) = &self.hints {
            send(wormhole, TransferMessage::Transit(hints.to_value()))?;
        }
        self.offering = Offering::Proposed {
            native: offer.is_none(),
            text: matches!(offer, Some(Offer::Message(_))),
        };
        match offer {
            Some(offer) => send(wormhole, TransferMessage::Offer(offer)),
            None => send(
                wormhole,
                TransferMessage::Echoxfer(Native {
                    native: NATIVE_VERSION,
                }),
            ),
        }
    }

    fn on_message(
        &mut self,
        wormhole: &mut Wormhole,
        now: Instant,
        bytes: &[u8],
    ) -> io::Result<()> {
        let Offering::Proposed { native, text } = self.offering else {
            return Err(app_error(WormholeError::BadPeer(
                "a message before the version phase",
            )));
        };
        let ack = match TransferMessage::decode(bytes).map_err(app_error)? {
            TransferMessage::Transit(value) => {
                self.peer_hints = Some(TransitHints::from_value(value).map_err(app_error)?);
                return Ok(());
            }
            TransferMessage::Error(text) => return Err(app_error(WormholeError::PeerError(text))),
            TransferMessage::Answer(answer) if native => answer.native_ack,
            TransferMessage::Answer(answer) if text => answer.message_ack,
            TransferMessage::Answer(answer) => answer.file_ack,
            _ => None,
        };
        if !is_ok(&ack) {
            return Err(app_error(WormholeError::BadPeer(
                "an answer that does not fit the offer",
            )));
        }
        self.accepted = true;
        close(wormhole, now)
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
            WormholeEvent::Verified { app_versions } => self.on_verified(wormhole, &app_versions),
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
    /// The native protocol, agreed: it runs over transit next.
    Native,
}

/// The receiving role: takes one offer. A text is acknowledged; a file or
/// a directory goes to the policy, and is then accepted (with this side's
/// transit hints) or declined.
pub struct ReceiveOffer {
    hints: TransitHints,
    policy: Policy,
    native: bool,
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
            native: false,
            peer_hints: None,
            received: None,
        }
    }

    /// A receiver that takes texts and declines everything else.
    pub fn text_only() -> ReceiveOffer {
        ReceiveOffer::new(TransitHints::new(), Box::new(|_| Err(TEXT_ONLY.to_owned())))
    }

    /// Also accepts the native protocol from an echoxfer sender (the
    /// wormhole's own version phase must then carry
    /// [`native_app_versions`](super::transfer::native_app_versions)).
    pub fn with_native(mut self) -> ReceiveOffer {
        self.native = true;
        self
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

    /// The sender proposes the native protocol: accepted with our hints
    /// if we said we speak this version of it.
    fn on_native(&mut self, wormhole: &mut Wormhole, now: Instant, n: Native) -> io::Result<()> {
        if self.received.is_some() {
            return Err(app_error(WormholeError::BadPeer("a second offer")));
        }
        if !self.native || n.native != NATIVE_VERSION {
            let reason = format!(
                "this receiver does not speak echoxfer's native protocol version {}",
                n.native
            );
            send(wormhole, TransferMessage::Error(reason))?;
            return Err(app_error(WormholeError::BadPeer(
                "a native proposal this side never advertised",
            )));
        }
        send(wormhole, TransferMessage::Transit(self.hints.to_value()))?;
        send(wormhole, TransferMessage::Answer(Answer::native_accepted()))?;
        self.received = Some(Received::Native);
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
            TransferMessage::Echoxfer(native) => self.on_native(wormhole, now, native),
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
