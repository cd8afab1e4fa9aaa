//! The `transit` message of the file-transfer protocol: this side's
//! abilities and connection hints, sent to the peer through the mailbox so
//! each side knows where to connect (file-transfer-protocol.md,
//! "Transit"; transit.md, "Canonical abilities encodings" and
//! "Canonical hint encodings").
//!
//! ```json
//! {"abilities-v1": [{"type": "direct-tcp-v1"}, {"type": "relay-v1"}],
//!  "hints-v1": [{"type": "direct-tcp-v1", "priority": 0.0, "hostname": "10.0.0.5", "port": 40123},
//!               {"type": "relay-v1", "hints": [{"type": "direct-tcp-v1", "priority": 0.0,
//!                                               "hostname": "transit.magic-wormhole.io", "port": 4001}]}]}
//! ```
//!
//! Parsing is as lenient as Python's `add_connection_hints`: an ability or
//! a hint of a type this client does not know (`tor-tcp-v1`, a future
//! one), or one without a usable host and port, is skipped, never an
//! error; a relay hint with no endpoint left is dropped. Only a message
//! that is not an object of lists fails.

use serde::de::{Deserializer, Error as _};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::WormholeError;

/// One way this client can connect, as listed in `abilities-v1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Ability {
    /// `direct-tcp-v1`: outbound TCP to a peer's direct hint.
    #[serde(rename = "direct-tcp-v1")]
    DirectTcpV1,
    /// `relay-v1`: the transit relay protocol.
    #[serde(rename = "relay-v1")]
    RelayV1,
}

/// A host and port to connect to (`direct-tcp-v1`), directly or as a way
/// to reach a relay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DirectHint {
    /// An IP address or a domain name.
    pub hostname: String,
    /// The TCP port.
    pub port: u16,
    /// Under-specified in transit.md, which says to ignore it; Python
    /// sends `0.0` and reads a missing one as `0.0`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient_priority"
    )]
    pub priority: Option<f64>,
}

/// A relay's WebSocket endpoint (`websocket-v1`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebSocketHint {
    /// `ws://` or `wss://` URL.
    pub url: String,
    /// As in [`DirectHint::priority`].
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient_priority"
    )]
    pub priority: Option<f64>,
}

/// One way to reach a relay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum RelayEndpoint {
    /// TCP to this host and port.
    #[serde(rename = "direct-tcp-v1")]
    Tcp(DirectHint),
    /// A WebSocket at this URL.
    #[serde(rename = "websocket-v1")]
    WebSocket(WebSocketHint),
}

/// A transit relay (`relay-v1`), reachable at any of its endpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RelayHint {
    /// A name for people (a domain, usually); Python sends none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Its endpoints, those of unknown types left out.
    #[serde(deserialize_with = "known_endpoints")]
    pub hints: Vec<RelayEndpoint>,
}

/// One entry of `hints-v1`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Hint {
    /// The peer listens here: connect and do the transit handshake.
    #[serde(rename = "direct-tcp-v1")]
    Direct(DirectHint),
    /// A relay: connect, send the relay handshake, then the transit one.
    #[serde(rename = "relay-v1")]
    Relay(RelayHint),
}

/// The value of the `transit` key of a file-transfer message.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TransitHints {
    /// The ways this side can connect (unknown ones left out).
    #[serde(rename = "abilities-v1", default, deserialize_with = "known_abilities")]
    pub abilities: Vec<Ability>,
    /// Where to find this side (unknown or unusable hints left out).
    #[serde(rename = "hints-v1", default, deserialize_with = "known_hints")]
    pub hints: Vec<Hint>,
}

/// What a `transit` value that is not an object of lists says.
const BAD_MESSAGE: &str =
    "its transit message is not an object with abilities-v1 and hints-v1 lists";

impl TransitHints {
    /// Both abilities this client has, and no hints yet.
    pub fn new() -> Self {
        TransitHints {
            abilities: vec![Ability::DirectTcpV1, Ability::RelayV1],
            hints: Vec::new(),
        }
    }

    /// The peer's `transit` value, already parsed as JSON.
    /// Anything but an object (serde would take a list as the struct's
    /// fields in order) is [`WormholeError::BadPeer`].
    pub fn from_value(value: Value) -> Result<Self, WormholeError> {
        if !value.is_object() {
            return Err(WormholeError::BadPeer(BAD_MESSAGE));
        }
        serde_json::from_value(value).map_err(|_| WormholeError::BadPeer(BAD_MESSAGE))
    }

    /// The peer's `transit` value, as JSON text.
    pub fn from_json(text: &str) -> Result<Self, WormholeError> {
        let value = serde_json::from_str(text).map_err(|_| WormholeError::BadPeer(BAD_MESSAGE))?;
        Self::from_value(value)
    }

    /// This side's `transit` value, to put in a file-transfer message.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).expect("hints are plain JSON")
    }

    /// The direct hints, in order.
    pub fn direct(&self) -> impl Iterator<Item = &DirectHint> {
        self.hints.iter().filter_map(|h| match h {
            Hint::Direct(d) => Some(d),
            Hint::Relay(_) => None,
        })
    }

    /// The relay hints, in order.
    pub fn relays(&self) -> impl Iterator<Item = &RelayHint> {
        self.hints.iter().filter_map(|h| match h {
            Hint::Relay(r) => Some(r),
            Hint::Direct(_) => None,
        })
    }
}

/// Each entry of a list that parses as `T`; the others skipped.
fn known<'de, D: Deserializer<'de>, T: serde::de::DeserializeOwned>(
    d: D,
) -> Result<Vec<T>, D::Error> {
    let raw = Vec::<Value>::deserialize(d)?;
    Ok(raw
        .into_iter()
        .filter_map(|v| serde_json::from_value(v).ok())
        .collect())
}

fn known_abilities<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Ability>, D::Error> {
    let mut out: Vec<Ability> = Vec::new();
    for a in known::<D, Ability>(d)? {
        // An ability may appear once; a repeat says nothing new.
        if !out.contains(&a) {
            out.push(a);
        }
    }
    Ok(out)
}

fn known_hints<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Hint>, D::Error> {
    Ok(known::<D, Hint>(d)?
        .into_iter()
        .filter(|h| !matches!(h, Hint::Relay(r) if r.hints.is_empty()))
        .collect())
}

fn known_endpoints<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<RelayEndpoint>, D::Error> {
    known(d)
}

/// A number, or nothing: any other value (a string, `null`) counts as no
/// priority rather than spoiling the hint, since it is to be ignored.
fn lenient_priority<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    match Value::deserialize(d)? {
        Value::Number(n) => n
            .as_f64()
            .map(Some)
            .ok_or_else(|| D::Error::custom("priority out of range")),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What Python magic-wormhole 0.24 sends (`json.dumps` of
    /// `{"abilities-v1": ts.get_connection_abilities(), "hints-v1": ...}`
    /// with one listening address and the default relay).
    const PYTHON_SENDS: &str = r#"{"abilities-v1": [{"type": "direct-tcp-v1"}, {"type": "relay-v1"}], "hints-v1": [{"type": "direct-tcp-v1", "priority": 0.0, "hostname": "192.168.1.20", "port": 37811}, {"type": "relay-v1", "hints": [{"type": "direct-tcp-v1", "priority": 0.0, "hostname": "transit.magic-wormhole.io", "port": 4001}]}]}"#;

    #[test]
    fn what_python_sends_parses() {
        let h = TransitHints::from_json(PYTHON_SENDS).unwrap();
        assert_eq!(h.abilities, vec![Ability::DirectTcpV1, Ability::RelayV1]);
        assert_eq!(
            h.direct().collect::<Vec<_>>(),
            vec![&DirectHint {
                hostname: "192.168.1.20".into(),
                port: 37811,
                priority: Some(0.0),
            }]
        );
        let relays: Vec<_> = h.relays().collect();
        assert_eq!(relays.len(), 1);
        assert_eq!(relays[0].name, None);
        assert_eq!(
            relays[0].hints,
            vec![RelayEndpoint::Tcp(DirectHint {
                hostname: "transit.magic-wormhole.io".into(),
                port: 4001,
                priority: Some(0.0),
            })]
        );
    }

    #[test]
    fn what_we_send_is_what_python_sends() {
        let mut ours = TransitHints::new();
        ours.hints.push(Hint::Direct(DirectHint {
            hostname: "192.168.1.20".into(),
            port: 37811,
            priority: Some(0.0),
        }));
        ours.hints.push(Hint::Relay(RelayHint {
            name: None,
            hints: vec![RelayEndpoint::Tcp(DirectHint {
                hostname: "transit.magic-wormhole.io".into(),
                port: 4001,
                priority: Some(0.0),
            })],
        }));
        let python: Value = serde_json::from_str(PYTHON_SENDS).unwrap();
        assert_eq!(ours.to_value(), python);
        assert_eq!(TransitHints::from_value(ours.to_value()).unwrap(), ours);
    }

    #[test]
    fn the_spec_example_with_a_name_websocket_and_integer_priority_parses() {
        let text = r#"{"abilities-v1": [{"type": "direct-tcp-v1"}, {"type": "relay-v1"}, {"type": "tor-tcp-v1"}],
            "hints-v1": [{"type": "relay-v1", "name": "example.org", "hints": [
                {"type": "direct-tcp-v1", "hostname": "relay.example.org", "port": 1234, "priority": 0.5},
                {"type": "websocket-v1", "url": "wss://relay.example.org:8000", "priority": 1}]}]}"#;
        let h = TransitHints::from_json(text).unwrap();
        assert_eq!(h.abilities, vec![Ability::DirectTcpV1, Ability::RelayV1]);
        let relay = h.relays().next().unwrap();
        assert_eq!(relay.name.as_deref(), Some("example.org"));
        assert_eq!(
            relay.hints[1],
            RelayEndpoint::WebSocket(WebSocketHint {
                url: "wss://relay.example.org:8000".into(),
                priority: Some(1.0),
            })
        );
        // Emitted again, a missing priority is left out rather than null.
        let direct = Hint::Direct(DirectHint {
            hostname: "h".into(),
            port: 1,
            priority: None,
        });
        assert_eq!(
            serde_json::to_string(&direct).unwrap(),
            r#"{"type":"direct-tcp-v1","hostname":"h","port":1}"#
        );
    }

    #[test]
    fn unknown_or_unusable_entries_are_skipped_not_fatal() {
        let text = r#"{"abilities-v1": [{"type": "carrier-pigeon-v1"}, {"nope": 1}, 7, {"type": "relay-v1"}, {"type": "relay-v1"}],
            "hints-v1": [
                {"type": "tor-tcp-v1", "hostname": "abc.onion", "port": 80},
                {"type": "direct-tcp-v1", "hostname": "a", "port": 70000},
                {"type": "direct-tcp-v1", "hostname": 5, "port": 1},
                {"type": "direct-tcp-v1", "port": 1},
                {"type": "direct-tcp-v1", "hostname": "ok", "port": 2, "priority": "high", "extra": [1]},
                {"type": "relay-v1", "hints": [{"type": "tor-tcp-v1", "hostname": "x.onion", "port": 1}]},
                {"type": "relay-v1", "hints": [{"type": "quic-v9"}, {"type": "direct-tcp-v1", "hostname": "r", "port": 3}]},
                {"type": "future-v7", "anything": {"at": "all"}},
                "not even an object"]}"#;
        let h = TransitHints::from_json(text).unwrap();
        assert_eq!(h.abilities, vec![Ability::RelayV1]);
        assert_eq!(
            h.hints,
            vec![
                Hint::Direct(DirectHint {
                    hostname: "ok".into(),
                    port: 2,
                    priority: None,
                }),
                Hint::Relay(RelayHint {
                    name: None,
                    hints: vec![RelayEndpoint::Tcp(DirectHint {
                        hostname: "r".into(),
                        port: 3,
                        priority: None,
                    })],
                }),
            ]
        );
    }

    #[test]
    fn missing_lists_are_empty_and_a_non_object_fails() {
        assert_eq!(
            TransitHints::from_json("{}").unwrap(),
            TransitHints::default()
        );
        let bad = Err(WormholeError::BadPeer(BAD_MESSAGE));
        assert_eq!(TransitHints::from_json("[]"), bad);
        assert_eq!(TransitHints::from_json(r#"{"hints-v1": 3}"#), bad);
        assert_eq!(TransitHints::from_json("{"), bad);
    }
}
