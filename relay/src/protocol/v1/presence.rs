//! Presence frames: the `presence` event frame, member objects, and the `presence` field of
//! subscribe replies. Each event frame is encoded once and shared by every subscriber.

use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::core::presence::{EventKind, Member};

#[derive(Serialize)]
struct MemberJson<'a> {
    presence_id: &'a str,
    user_id: Option<&'a str>,
    state: &'a RawValue,
}

fn raw(state: &str) -> std::borrow::Cow<'_, RawValue> {
    super::frames::payload_json(state)
}

/// `{"presence_id":..,"user_id":..|null,"state":{..}}`
pub fn member_json(m: &Member) -> String {
    let state = raw(&m.state);
    let j = MemberJson { presence_id: &m.presence_id, user_id: m.user_id.as_deref(), state: &state };
    serde_json::to_string(&j).expect("member serialises")
}

/// `{"members":[..]}`, the `presence` field of a subscribe reply.
pub fn snapshot_json(members: &[Member]) -> String {
    let list: Vec<String> = members.iter().map(member_json).collect();
    format!(r#"{{"members":[{}]}}"#, list.join(","))
}

/// `{"type":"presence","channel":..,"event":"join"|"update"|"leave","member":{..}}`
pub fn event(channel: &str, kind: EventKind, member: &Member) -> String {
    let channel = serde_json::to_string(channel).expect("string serialises");
    format!(
        r#"{{"type":"presence","channel":{channel},"event":"{}","member":{}}}"#,
        kind.as_str(),
        member_json(member)
    )
}

/// `{"type":"presence","channel":..,"event":"sync","members":[..]}`: the channel's members now,
/// replacing what the client knew (after it fell behind and caught up).
pub fn sync(channel: &str, members: &[Member]) -> String {
    let channel = serde_json::to_string(channel).expect("string serialises");
    let list: Vec<String> = members.iter().map(member_json).collect();
    format!(r#"{{"type":"presence","channel":{channel},"event":"sync","members":[{}]}}"#, list.join(","))
}

#[derive(Serialize)]
struct SubscribeReply<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
    reference: Option<&'a Value>,
    ok: bool,
    channel: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    cursor: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    recovered: Option<bool>,
    presence: &'a RawValue,
}

/// The reply to `subscribe`: `{"type":"reply","ref":..,"ok":true,"channel":..,"cursor":..,
/// ["recovered":..,] "presence":{"members":[..]}}`.
pub fn subscribe_reply(
    reference: Option<&Value>,
    channel: &str,
    cursor: Option<&str>,
    recovered: Option<bool>,
    members: &[Member],
) -> String {
    let snapshot = snapshot_json(members);
    let presence = raw(&snapshot);
    let r = SubscribeReply {
        kind: "reply",
        reference,
        ok: true,
        channel,
        cursor,
        recovered,
        presence: &presence,
    };
    serde_json::to_string(&r).expect("reply serialises")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ada() -> Member {
        Member {
            presence_id: "alice".into(),
            user_id: Some("alice".into()),
            state: r#"{"name":"Ada"}"#.into(),
        }
    }

    #[test]
    fn event_frame_carries_channel_event_and_member() {
        let v: Value = serde_json::from_str(&event("chat:\"lobby\"", EventKind::Leave, &ada())).unwrap();
        assert_eq!(
            v,
            json!({"type":"presence","channel":"chat:\"lobby\"","event":"leave",
                   "member":{"presence_id":"alice","user_id":"alice","state":{"name":"Ada"}}})
        );
    }

    #[test]
    fn sync_frame_lists_the_members() {
        let v: Value = serde_json::from_str(&sync("c", &[ada()])).unwrap();
        assert_eq!(
            v,
            json!({"type":"presence","channel":"c","event":"sync",
                   "members":[{"presence_id":"alice","user_id":"alice","state":{"name":"Ada"}}]})
        );
    }

    #[test]
    fn anonymous_member_has_null_user_id() {
        let m = Member { presence_id: "conn-1".into(), user_id: None, state: "{}".into() };
        let v: Value = serde_json::from_str(&member_json(&m)).unwrap();
        assert_eq!(v, json!({"presence_id":"conn-1","user_id":null,"state":{}}));
    }

    #[test]
    fn subscribe_reply_always_has_presence_members() {
        let empty: [Member; 0] = [];
        let v: Value =
            serde_json::from_str(&subscribe_reply(Some(&json!(1)), "c", Some("0f"), None, &empty)).unwrap();
        assert_eq!(
            v,
            json!({"type":"reply","ref":1,"ok":true,"channel":"c","cursor":"0f","presence":{"members":[]}})
        );
        let v: Value =
            serde_json::from_str(&subscribe_reply(Some(&json!(1)), "c", Some("0f"), Some(true), &empty))
                .unwrap();
        assert_eq!(
            v,
            json!({"type":"reply","ref":1,"ok":true,"channel":"c","cursor":"0f","recovered":true,
                   "presence":{"members":[]}})
        );
        let v: Value = serde_json::from_str(&subscribe_reply(None, "c", None, Some(true), &[ada()])).unwrap();
        assert_eq!(v["recovered"], true);
        assert_eq!(v["presence"]["members"][0]["state"]["name"], "Ada");
    }
}
