//! Presence data, as every layer sees it: a tracked connection ([`Tracked`]), the ops relays
//! exchange through the log ([`PresenceOp`], the body of a `realtime:presence` logical message),
//! and the members and `join` / `update` / `leave` events clients see ([`Member`],
//! [`PresenceEvent`]). Pure data and its JSON; the state that merges ops into members is
//! `crate::hub::presence::View`.

use serde::Deserialize;
use serde_json::Value;

/// One connection tracking one channel, as stored in `realtime.presence` and carried by ops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracked {
    pub channel: String,
    pub conn: String,
    pub relay: String,
    pub presence_id: String,
    pub user_id: Option<String>,
    /// The state object as compact JSON text.
    pub state: String,
}

/// The canonical text of a state: compact JSON with keys in byte order, as every op carries it
/// (`serde_json::Value` keeps objects sorted). States read back from `jsonb` (which orders keys
/// by length and prints spaces) go through this, so equal states compare equal.
pub fn canonical_state(text: &str) -> String {
    serde_json::from_str::<Value>(text).map(|v| v.to_string()).unwrap_or_else(|_| "{}".to_string())
}

/// A change to presence, as relays emit it (`realtime:presence` logical messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PresenceOp {
    /// A connection tracks (or re-tracks) a channel.
    Track(Tracked),
    /// A connection stops tracking these channels (untrack, unsubscribe or close).
    Untrack { conn: String, channels: Vec<String> },
    /// Every entry of a relay is gone (it was declared dead, or it restarted).
    Reap { relay: String },
    /// A relay's start-up marker; see `crate::hub::presence_sync`.
    Sync { relay: String, nonce: String },
}

#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum OpWire {
    Track {
        channel: String,
        conn: String,
        relay: String,
        presence_id: String,
        #[serde(default)]
        user_id: Option<String>,
        state: Value,
    },
    Untrack {
        conn: String,
        channels: Vec<String>,
    },
    Reap {
        relay: String,
    },
    Sync {
        relay: String,
        nonce: String,
    },
}

impl PresenceOp {
    /// Parses the body of a `realtime:presence` logical message.
    pub fn parse(body: &[u8]) -> Result<Self, String> {
        let wire: OpWire = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        Ok(match wire {
            OpWire::Track { channel, conn, relay, presence_id, user_id, state } => {
                if !state.is_object() {
                    return Err("presence state is not an object".into());
                }
                PresenceOp::Track(Tracked {
                    channel,
                    conn,
                    relay,
                    presence_id,
                    user_id,
                    state: state.to_string(),
                })
            }
            OpWire::Untrack { conn, channels } => PresenceOp::Untrack { conn, channels },
            OpWire::Reap { relay } => PresenceOp::Reap { relay },
            OpWire::Sync { relay, nonce } => PresenceOp::Sync { relay, nonce },
        })
    }

    /// The JSON body of this op (the inverse of [`PresenceOp::parse`]).
    pub fn to_json(&self) -> String {
        let v = match self {
            PresenceOp::Track(t) => serde_json::json!({
                "op": "track", "channel": t.channel, "conn": t.conn, "relay": t.relay,
                "presence_id": t.presence_id, "user_id": t.user_id,
                "state": serde_json::value::RawValue::from_string(t.state.clone())
                    .unwrap_or_else(|_| serde_json::value::RawValue::from_string("{}".into()).expect("{} is JSON")),
            }),
            PresenceOp::Untrack { conn, channels } => {
                serde_json::json!({"op": "untrack", "conn": conn, "channels": channels})
            }
            PresenceOp::Reap { relay } => serde_json::json!({"op": "reap", "relay": relay}),
            PresenceOp::Sync { relay, nonce } => {
                serde_json::json!({"op": "sync", "relay": relay, "nonce": nonce})
            }
        };
        v.to_string()
    }
}

/// A member as clients see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub presence_id: String,
    pub user_id: Option<String>,
    /// Compact JSON text of an object.
    pub state: String,
}

/// What happened to a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Join,
    Update,
    Leave,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Join => "join",
            EventKind::Update => "update",
            EventKind::Leave => "leave",
        }
    }
}

/// One event to send to a channel's subscribers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceEvent {
    pub channel: String,
    pub kind: EventKind,
    pub member: Member,
}

/// A tracked entry whose user id is its presence id (for tests).
#[cfg(test)]
pub(crate) fn tracked(channel: &str, conn: &str, relay: &str, pid: &str, state: &str) -> Tracked {
    Tracked {
        channel: channel.into(),
        conn: conn.into(),
        relay: relay.into(),
        presence_id: pid.into(),
        user_id: Some(pid.into()),
        state: state.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::tracked as t;

    #[test]
    fn ops_round_trip_through_json() {
        let ops = [
            PresenceOp::Track(t("c", "k", "r", "alice", r#"{"n":[1,2],"name":"Ada"}"#)),
            PresenceOp::Track(Tracked { user_id: None, ..t("c", "k", "r", "conn-1", "{}") }),
            PresenceOp::Untrack { conn: "k".into(), channels: vec!["c".into()] },
            PresenceOp::Reap { relay: "r".into() },
            PresenceOp::Sync { relay: "r".into(), nonce: "n".into() },
        ];
        for op in ops {
            assert_eq!(PresenceOp::parse(op.to_json().as_bytes()).unwrap(), op);
        }
        assert!(PresenceOp::parse(
            br#"{"op":"track","channel":"c","conn":"k","relay":"r","presence_id":"p","state":[1]}"#
        )
        .is_err());
        assert!(PresenceOp::parse(br#"{"op":"dance"}"#).is_err());
        assert!(PresenceOp::parse(b"nope").is_err());
    }
}
