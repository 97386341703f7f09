//! The encoder's mapping of queue items to Phoenix frames, per connection state: what each
//! item becomes, and what this connection's topics hold back (its own echoes, presence it did
//! not enable, changes no binding of it matches).

use serde_json::{json, Value};

use super::*;
use crate::core::event::{Ephemeral, Sender};
use crate::core::presence::{EventKind, Member, PresenceEvent};
use crate::core::ErrorCode;

fn encoder(vsn: Vsn) -> PhoenixEncoder {
    PhoenixEncoder { vsn, topics: super::Shared::default() }
}

fn join(e: &PhoenixEncoder, channel: &str, echo: bool, presence: bool) {
    lock(&e.topics).joined.insert(channel.into(), Joined { echo, ack: false, presence });
}

fn message(channel: &str, event: &str, payload: &str, sender: Option<&str>) -> Outbound {
    let m = Message::from(Ephemeral {
        channel: channel.into(),
        event: event.into(),
        payload: payload.into(),
        sender_id: sender.map(str::to_string),
    });
    Outbound::Event(crate::core::event::Shared::new(Event::Message(m), 0))
}

fn text(f: Option<WireFrame>) -> Value {
    match f.expect("a frame") {
        WireFrame::Text(t) => serde_json::from_str(t.as_str()).unwrap(),
        WireFrame::Binary(b) => panic!("binary frame {b:?}"),
    }
}

#[test]
fn messages_are_broadcasts_and_own_echoes_are_dropped_once() {
    let e = encoder(Vsn::V1);
    join(&e, "room", false, false);
    lock(&e.topics).echoes.push_back((
        "room".into(),
        "chat".into(),
        Some("alice".into()),
        r#"{"a":1,"b":2}"#.into(),
    ));
    // The echo of alice's own broadcast (same payload, keys in another order) is dropped once.
    assert!(e.encode(message("room", "chat", r#"{"b":2,"a":1}"#, Some("alice"))).is_none());
    let again = text(e.encode(message("room", "chat", r#"{"b":2,"a":1}"#, Some("alice"))));
    assert_eq!(
        again,
        json!({"join_ref": null, "ref": null, "topic": "realtime:room", "event": "broadcast",
            "payload": {"type": "broadcast", "event": "chat", "payload": {"a": 1, "b": 2}}})
    );
    let v2 = encoder(Vsn::V2);
    assert!(matches!(v2.encode(message("room", "chat", "{}", None)), Some(WireFrame::Binary(_))));
}

#[test]
fn presence_goes_only_to_topics_that_enabled_it() {
    let e = encoder(Vsn::V2);
    let member =
        Member { presence_id: "alice".into(), user_id: Some("alice".into()), state: r#"{"x":1}"#.into() };
    let diff = || {
        let p = PresenceEvent { channel: "room".into(), kind: EventKind::Leave, member: member.clone() };
        Outbound::Event(crate::core::event::Shared::new(Event::Presence(p), 0))
    };
    join(&e, "room", true, false);
    assert!(e.encode(diff()).is_none());
    assert!(e
        .encode(Outbound::PresenceSync { channel: "room".into(), members: vec![member.clone()] })
        .is_none());
    join(&e, "room", true, true);
    assert_eq!(
        text(e.encode(diff())),
        json!([null, null, "realtime:room", "presence_diff",
            {"joins": {}, "leaves": {"alice": {"metas": [{"phx_ref": "alice", "x": 1}]}}}])
    );
    let sync = text(e.encode(Outbound::PresenceSync { channel: "room".into(), members: vec![member] }));
    assert_eq!(sync[3], "presence_state");
}

#[test]
fn revocations_close_the_topic_or_report_on_the_binding_topic() {
    let e = encoder(Vsn::V2);
    join(&e, "room", true, false);
    let closed = text(e.encode(Outbound::Unsubscribed {
        channel: "room".into(),
        code: ErrorCode::Unauthorized,
        message: "revoked".into(),
    }));
    assert_eq!(closed, json!([null, null, "realtime:room", "phx_close", {"reason": "revoked"}]));
    assert!(lock(&e.topics).joined.is_empty());
    let b = changes::parse_bindings(&[json!({"table": "todos"})], 1).unwrap();
    lock(&e.topics).changes.insert("changes:public.todos".into(), ("db".into(), b));
    let system = text(e.encode(Outbound::Unsubscribed {
        channel: "changes:public.todos".into(),
        code: ErrorCode::Unauthorized,
        message: "no".into(),
    }));
    assert_eq!(system[2], "realtime:db");
    assert_eq!(system[3], "system");
    assert_eq!(system[4]["status"], "error");
    assert_eq!(system[4]["extension"], "postgres_changes");
}

#[test]
fn changes_go_to_the_binding_topic_with_the_matching_ids_only() {
    let e = encoder(Vsn::V2);
    let list =
        [json!({"event": "INSERT", "table": "todos"}), json!({"table": "todos", "filter": "owner=eq.bob"})];
    let b = changes::parse_bindings(&list, 4).unwrap();
    lock(&e.topics).changes.insert("changes:public.todos".into(), ("db".into(), b));
    let change = |op: &str, owner: &str| {
        let payload = json!({"operation": op, "schema": "public", "table": "todos",
            "record": {"id": 1, "owner": owner}, "old_record": null});
        message("changes:public.todos", op, &payload.to_string(), None)
    };
    let f = text(e.encode(change("INSERT", "alice")));
    assert_eq!((f[2].as_str(), f[3].as_str()), (Some("realtime:db"), Some("postgres_changes")));
    assert_eq!(f[4]["ids"], json!([4]));
    assert_eq!(f[4]["data"]["record"]["owner"], "alice");
    assert_eq!(text(e.encode(change("INSERT", "bob")))[4]["ids"], json!([4, 5]));
    assert!(e.encode(change("UPDATE", "alice")).is_none(), "no binding wants it");
    assert!(e.encode(message("changes:public.todos", "x", "not a change", None)).is_none());
}

#[test]
fn replayed_messages_carry_meta_and_gaps_are_silent() {
    let e = encoder(Vsn::V1);
    let m = Message {
        channel: "room".into(),
        id: Some("m1".into()),
        cursor: None,
        event: "note".into(),
        payload: "{}".into(),
        sender: Sender { kind: "system".into(), id: None },
        created_at: None,
    };
    let f = text(e.encode(Outbound::Replayed(Box::new(m))));
    assert_eq!(f["payload"]["meta"], json!({"replayed": true, "id": "m1"}));
    assert!(e.encode(Outbound::Reset { channel: "room".into(), cursor: None }).is_none());
    assert!(e.encode(Outbound::Dropped { channel: String::new(), count: 0 }).is_none());
}
