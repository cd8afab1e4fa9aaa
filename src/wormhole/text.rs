//! Text through the wormhole, as `wormhole send --text` and `wormhole
//! receive` exchange it: the sender offers the text once the peer has
//! proved the code, the receiver acknowledges it, and both close. The two
//! roles are [`App`]s of the [`Wormhole`] machine, so any driver runs
//! them; they touch nothing but the machine.

use std::io;
use std::time::Instant;

use super::transfer::{Answer, Offer, TransferMessage};
use super::{Wormhole, WormholeEvent};
use crate::driver::App;
use crate::error::WormholeError;

fn failed(error: WormholeError) -> io::Error {
    io::Error::other(crate::Error::Wormhole(error))
}

fn send(wormhole: &mut Wormhole, message: TransferMessage) -> io::Result<()> {
    wormhole.send(&message.encode()).map_err(io::Error::other)
}

fn close(wormhole: &mut Wormhole, now: Instant) -> io::Result<()> {
    wormhole.close(now).map_err(io::Error::other)
}

/// The sending role: offers `text`, and is done once the receiver
/// acknowledged it ([`delivered`](TextSend::delivered)).
#[derive(Debug)]
pub struct TextSend {
    text: String,
    delivered: bool,
}

impl TextSend {
    /// A role that sends `text`.
    pub fn new(text: impl Into<String>) -> TextSend {
        TextSend {
            text: text.into(),
            delivered: false,
        }
    }

    /// Whether the receiver acknowledged the text.
    pub fn delivered(&self) -> bool {
        self.delivered
    }
}

impl App<Wormhole> for TextSend {
    fn on_event(
        &mut self,
        wormhole: &mut Wormhole,
        now: Instant,
        event: WormholeEvent,
    ) -> io::Result<()> {
        match event {
            WormholeEvent::Verified { .. } => send(
                wormhole,
                TransferMessage::Offer(Offer::Message(self.text.clone())),
            ),
            WormholeEvent::Message(bytes) => {
                match TransferMessage::decode(&bytes).map_err(failed)? {
                    TransferMessage::Answer(Answer {
                        message_ack: Some(ack),
                        ..
                    }) if ack == "ok" => {
                        self.delivered = true;
                        close(wormhole, now)
                    }
                    TransferMessage::Error(text) => Err(failed(WormholeError::PeerError(text))),
                    _ => Err(failed(WormholeError::BadPeer(
                        "an answer to a text that is not message_ack ok",
                    ))),
                }
            }
            _ => Ok(()),
        }
    }
}

/// The receiving role: takes one offered text, acknowledges it and
/// closes. An offer of a file or a directory is declined with an `error`
/// message the sender shows ([`TEXT_ONLY`]); the session then ends
/// normally and [`declined`](TextReceive::declined) holds the offer.
#[derive(Debug, Default)]
pub struct TextReceive {
    text: Option<String>,
    declined: Option<Offer>,
}

/// What the receiver tells a sender whose offer it cannot take.
pub const TEXT_ONLY: &str = "this receiver takes text only through the wormhole; send the files directly (echoxfer send --to)";

impl TextReceive {
    /// A role that waits for one text.
    pub fn new() -> TextReceive {
        TextReceive::default()
    }

    /// The text received, once it has arrived.
    pub fn text(&self) -> Option<&str> {
        self.text.as_deref()
    }

    /// The offer declined because it was not a text.
    pub fn declined(&self) -> Option<&Offer> {
        self.declined.as_ref()
    }
}

impl App<Wormhole> for TextReceive {
    fn on_event(
        &mut self,
        wormhole: &mut Wormhole,
        now: Instant,
        event: WormholeEvent,
    ) -> io::Result<()> {
        let WormholeEvent::Message(bytes) = event else {
            return Ok(());
        };
        match TransferMessage::decode(&bytes).map_err(failed)? {
            TransferMessage::Offer(Offer::Message(text)) => {
                self.text = Some(text);
                send(wormhole, TransferMessage::Answer(Answer::text_received()))?;
                close(wormhole, now)
            }
            TransferMessage::Offer(offer) => {
                self.declined = Some(offer);
                send(wormhole, TransferMessage::Error(TEXT_ONLY.into()))?;
                close(wormhole, now)
            }
            // Transit hints come before a file offer; a text needs none.
            TransferMessage::Transit(_) => Ok(()),
            TransferMessage::Error(text) => Err(failed(WormholeError::PeerError(text))),
            TransferMessage::Answer(_) => Err(failed(WormholeError::BadPeer(
                "an answer sent to the receiver",
            ))),
        }
    }
}
