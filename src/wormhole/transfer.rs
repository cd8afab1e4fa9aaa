//! The file-transfer protocol's messages (what `wormhole send` and
//! `wormhole receive` say to each other through the wormhole): each is a
//! JSON object with one key, `offer`, `answer`, `transit` or `error`;
//! and `echoxfer`, this crate's own, sent only to a peer whose version
//! phase said it speaks it ([`NATIVE_VERSION`]). Pure types and their
//! encoding; the flows that use them are the apps'.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{sanitize, WormholeError};

/// One file-transfer message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransferMessage {
    /// What the sender offers.
    Offer(Offer),
    /// The receiver's acceptance.
    Answer(Answer),
    /// Transit abilities and hints (see the transit module).
    Transit(Value),
    /// The other side gave up, saying why.
    Error(String),
    /// echoxfer's own: the sender proposes the native file protocol over
    /// the transit connection (docs/PROTOCOL.md, "Through the wormhole").
    Echoxfer(Native),
}

/// The version of the native protocol over transit that this crate
/// speaks, as both the version phase (`{"echoxfer": {"native": 1}}` in
/// `app_versions`) and the [`TransferMessage::Echoxfer`] proposal carry it.
pub const NATIVE_VERSION: u32 = 1;

/// What the version phase's `app_versions` holds for a side that speaks
/// the native protocol over transit.
pub fn native_app_versions() -> Value {
    serde_json::json!({ "echoxfer": { "native": NATIVE_VERSION } })
}

/// Whether a peer's `app_versions` say it speaks this crate's native
/// protocol over transit (any other client's say nothing of it).
pub fn speaks_native(app_versions: &Value) -> bool {
    app_versions
        .pointer("/echoxfer/native")
        .and_then(Value::as_u64)
        == Some(u64::from(NATIVE_VERSION))
}

/// The native protocol proposal: its version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Native {
    /// [`NATIVE_VERSION`].
    pub native: u32,
}

/// What a sender offers: exactly one of text, a file or a directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Offer {
    /// A text message, carried in the offer itself.
    Message(String),
    /// One file, to come through transit.
    File {
        /// Its name (a base name; the receiver checks it).
        filename: String,
        /// Its size in bytes.
        filesize: u64,
    },
    /// A directory, to come through transit as a deflated zip.
    Directory {
        /// `zipfile/deflated`.
        mode: String,
        /// Its name (a base name; the receiver checks it).
        dirname: String,
        /// Bytes of the zip to come.
        zipsize: u64,
        /// The sender's estimate of the bytes once unpacked.
        numbytes: u64,
        /// Files and directories in it.
        numfiles: u64,
    },
}

/// A receiver's acceptance of an offer.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Answer {
    /// `ok` for a text offer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_ack: Option<String>,
    /// `ok` for a file or directory offer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_ack: Option<String>,
    /// `ok` for an echoxfer native proposal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub native_ack: Option<String>,
}

impl Answer {
    /// The acceptance of a text.
    pub fn text_received() -> Answer {
        Answer {
            message_ack: Some("ok".into()),
            ..Answer::default()
        }
    }

    /// The acceptance of a file or directory.
    pub fn file_accepted() -> Answer {
        Answer {
            file_ack: Some("ok".into()),
            ..Answer::default()
        }
    }

    /// The acceptance of an echoxfer native proposal.
    pub fn native_accepted() -> Answer {
        Answer {
            native_ack: Some("ok".into()),
            ..Answer::default()
        }
    }
}

impl TransferMessage {
    /// The JSON bytes to send as one wormhole message.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("these types always serialise")
    }

    /// The message in `bytes`; an `error` from the peer is kept as a
    /// message (sanitised), so the caller decides how to end.
    ///
    /// # Errors
    ///
    /// [`WormholeError::BadPeer`] when the bytes are not one of these.
    pub fn decode(bytes: &[u8]) -> Result<TransferMessage, WormholeError> {
        match serde_json::from_slice(bytes) {
            Ok(TransferMessage::Error(text)) => {
                Ok(TransferMessage::Error(sanitize(text.as_bytes())))
            }
            Ok(message) => Ok(message),
            Err(_) => Err(WormholeError::BadPeer(
                "a file-transfer message that is not offer, answer, transit, error or echoxfer",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_read_as_python_writes_them() {
        let text = br#"{"offer": {"message": "hi there"}}"#;
        assert_eq!(
            TransferMessage::decode(text),
            Ok(TransferMessage::Offer(Offer::Message("hi there".into())))
        );
        let file = br#"{"offer": {"file": {"filename": "a.bin", "filesize": 12}}}"#;
        assert_eq!(
            TransferMessage::decode(file),
            Ok(TransferMessage::Offer(Offer::File {
                filename: "a.bin".into(),
                filesize: 12
            }))
        );
        let ack = br#"{"answer": {"message_ack": "ok"}}"#;
        assert_eq!(
            TransferMessage::decode(ack),
            Ok(TransferMessage::Answer(Answer::text_received()))
        );
        let error = b"{\"error\": \"no \\u001b[2J thanks\"}";
        assert_eq!(
            TransferMessage::decode(error),
            Ok(TransferMessage::Error("no \\u{1b}[2J thanks".into()))
        );
        assert!(TransferMessage::decode(br#"{"surprise": 1}"#).is_err());
    }

    #[test]
    fn answers_encode_only_their_ack() {
        let bytes = TransferMessage::Answer(Answer::text_received()).encode();
        assert_eq!(bytes, br#"{"answer":{"message_ack":"ok"}}"#);
        let bytes = TransferMessage::Answer(Answer::native_accepted()).encode();
        assert_eq!(bytes, br#"{"answer":{"native_ack":"ok"}}"#);
    }

    #[test]
    fn native_is_spoken_only_at_this_version() {
        let proposal = TransferMessage::Echoxfer(Native {
            native: NATIVE_VERSION,
        });
        assert_eq!(proposal.encode(), br#"{"echoxfer":{"native":1}}"#);
        assert_eq!(TransferMessage::decode(&proposal.encode()), Ok(proposal));
        assert!(speaks_native(&native_app_versions()));
        assert!(!speaks_native(&serde_json::json!({})));
        assert!(!speaks_native(
            &serde_json::json!({"echoxfer": {"native": 2}})
        ));
        assert!(!speaks_native(
            &serde_json::json!({"echoxfer": {"native": "1"}})
        ));
    }
}
