//! Presence in Phoenix's shape: `presence_state` `{key: {metas: [{phx_ref, ...state}]}}` and
//! `presence_diff` `{joins: {..}, leaves: {..}}`.
//!
//! The key is the relay's member (`presence_id`: the JWT `sub`, else the connection), and the
//! member's one meta has `phx_ref` = that key. An update is a join of the new meta under the
//! same `phx_ref`, which the Phoenix client's `syncDiff` puts in place of the old one.

use crate::core::presence::{EventKind, Member};

/// `{"<key>":{"metas":[{"phx_ref":"<key>", ...state}]}}` for `members`.
pub fn state(members: &[Member]) -> String {
    let entries: Vec<String> = members.iter().map(entry).collect();
    format!("{{{}}}", entries.join(","))
}

/// `"<key>":{"metas":[..]}`
fn entry(m: &Member) -> String {
    let key = serde_json::to_string(&m.presence_id).expect("serialises");
    format!(r#"{key}:{{"metas":[{}]}}"#, meta(m))
}

/// The state object with `phx_ref` first (a state's own `phx_ref` key is replaced).
fn meta(m: &Member) -> String {
    let key = serde_json::to_string(&m.presence_id).expect("serialises");
    let mut state = match serde_json::from_str::<serde_json::Value>(&m.state) {
        Ok(serde_json::Value::Object(o)) => o,
        _ => Default::default(),
    };
    state.remove("phx_ref");
    let rest = serde_json::Value::Object(state).to_string();
    match rest.as_str() {
        "{}" => format!(r#"{{"phx_ref":{key}}}"#),
        _ => format!(r#"{{"phx_ref":{key},{}"#, &rest[1..]),
    }
}

/// The `presence_diff` payload for one member's event.
pub fn diff(kind: EventKind, m: &Member) -> String {
    let one = format!("{{{}}}", entry(m));
    match kind {
        EventKind::Join | EventKind::Update => format!(r#"{{"joins":{one},"leaves":{{}}}}"#),
        EventKind::Leave => format!(r#"{{"joins":{{}},"leaves":{one}}}"#),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(pid: &str, state: &str) -> Member {
        Member { presence_id: pid.into(), user_id: Some(pid.into()), state: state.into() }
    }

    #[test]
    fn state_is_keyed_by_member_with_one_meta_each() {
        assert_eq!(state(&[]), "{}");
        let s = state(&[member("alice", r#"{"name":"Ada"}"#), member("bob", "{}")]);
        assert_eq!(
            s,
            r#"{"alice":{"metas":[{"phx_ref":"alice","name":"Ada"}]},"bob":{"metas":[{"phx_ref":"bob"}]}}"#
        );
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["alice"]["metas"][0]["name"], "Ada");
    }

    #[test]
    fn diffs_put_joins_and_updates_in_joins_and_leaves_in_leaves() {
        let m = member("a\"b", r#"{"phx_ref":"forged","x":1}"#);
        let join = diff(EventKind::Join, &m);
        assert_eq!(join, r#"{"joins":{"a\"b":{"metas":[{"phx_ref":"a\"b","x":1}]}},"leaves":{}}"#);
        assert_eq!(diff(EventKind::Update, &m), join);
        assert_eq!(
            diff(EventKind::Leave, &m),
            r#"{"joins":{},"leaves":{"a\"b":{"metas":[{"phx_ref":"a\"b","x":1}]}}}"#
        );
    }
}
