//! Presence, as pure state: who is tracked on which channel, merged into members, and the
//! `join` / `update` / `leave` events each change produces. No sockets, no Postgres.
//!
//! Every relay applies the same [`PresenceOp`]s in the same order (the WAL order of the
//! `realtime:presence` logical messages), so every relay's [`View`] holds the same members.
//!
//! * A **connection entry** is one connection tracking one channel, keyed by `conn` (unique per
//!   relay process and session). Tracking again replaces its state.
//! * A **member** is every entry of a channel with the same `presence_id` (the JWT `sub`, or the
//!   connection when there is none): several tabs of one user are one member. Its visible state
//!   and `user_id` are those of its most recently tracked entry.
//! * Events: the first entry of a member → `join`; a change of the visible state → `update`
//!   (never a leave plus a join); the last entry gone → `leave` with the last visible state.
//!   A change that leaves the visible member as it was (a second tab tracking the same state)
//!   produces no event.
//! * Every operation is idempotent given the same order (tracking the same entry twice, removing
//!   a missing one), which is what lets a relay rebuild its view from the table and then apply
//!   operations that the table already contained (see `crate::hub::presence_sync`).

use std::collections::HashMap;

use crate::core::presence::{EventKind, Member, PresenceEvent, PresenceOp, Tracked};

#[derive(Debug)]
struct Entry {
    presence_id: String,
    relay: String,
    user_id: Option<String>,
    state: String,
    /// Order of the last track (higher is more recent).
    seq: u64,
}

#[derive(Debug, Default)]
struct ChannelView {
    entries: HashMap<String, Entry>,
    /// presence_id → its connection ids.
    members: HashMap<String, Vec<String>>,
}

impl ChannelView {
    /// The visible member `pid`: its most recently tracked entry.
    fn visible(&self, pid: &str) -> Option<Member> {
        let conns = self.members.get(pid)?;
        let e = conns.iter().filter_map(|c| self.entries.get(c)).max_by_key(|e| e.seq)?;
        Some(Member { presence_id: pid.to_string(), user_id: e.user_id.clone(), state: e.state.clone() })
    }

    fn remove(&mut self, conn: &str) -> Option<String> {
        let entry = self.entries.remove(conn)?;
        if let Some(conns) = self.members.get_mut(&entry.presence_id) {
            conns.retain(|c| c != conn);
            if conns.is_empty() {
                self.members.remove(&entry.presence_id);
            }
        }
        Some(entry.presence_id)
    }
}

/// Every channel's presence. See the module docs.
#[derive(Debug, Default)]
pub struct View {
    channels: HashMap<String, ChannelView>,
    next_seq: u64,
    members: usize,
}

/// The event for a member that was `before` and is `after` a change.
fn diff(channel: &str, before: Option<Member>, after: Option<Member>) -> Option<PresenceEvent> {
    let (kind, member) = match (before, after) {
        (None, Some(a)) => (EventKind::Join, a),
        (Some(b), None) => (EventKind::Leave, b),
        (Some(b), Some(a)) if a != b => (EventKind::Update, a),
        _ => return None,
    };
    Some(PresenceEvent { channel: channel.to_string(), kind, member })
}

impl View {
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one op; returns the events it causes, in order. `Sync` changes nothing here.
    pub fn apply(&mut self, op: PresenceOp) -> Vec<PresenceEvent> {
        match op {
            PresenceOp::Track(t) => self.track(t),
            PresenceOp::Untrack { conn, channels } => {
                channels.iter().filter_map(|c| self.untrack(c, &conn)).collect()
            }
            PresenceOp::Reap { relay } => self.reap(&relay),
            PresenceOp::Sync { .. } => Vec::new(),
        }
    }

    /// Adds or replaces a connection entry.
    pub fn track(&mut self, t: Tracked) -> Vec<PresenceEvent> {
        let mut events = Vec::new();
        // An entry re-tracked under another presence_id (not done by this relay, but possible
        // in a hand-made op) first leaves its old member.
        let moved = self
            .channels
            .get(&t.channel)
            .and_then(|ch| ch.entries.get(&t.conn))
            .is_some_and(|old| old.presence_id != t.presence_id);
        if moved {
            events.extend(self.untrack(&t.channel, &t.conn));
        }
        self.next_seq += 1;
        let seq = self.next_seq;
        let ch = self.channels.entry(t.channel.clone()).or_default();
        let before = ch.visible(&t.presence_id);
        let conns = ch.members.entry(t.presence_id.clone()).or_default();
        if !conns.contains(&t.conn) {
            conns.push(t.conn.clone());
        }
        let entry = Entry {
            presence_id: t.presence_id.clone(),
            relay: t.relay,
            user_id: t.user_id,
            state: t.state,
            seq,
        };
        ch.entries.insert(t.conn, entry);
        let after = ch.visible(&t.presence_id);
        if before.is_none() {
            self.members += 1;
        }
        events.extend(diff(&t.channel, before, after));
        events
    }

    /// Removes one connection entry (nothing if it is not there).
    pub fn untrack(&mut self, channel: &str, conn: &str) -> Option<PresenceEvent> {
        let ch = self.channels.get_mut(channel)?;
        let pid = ch.entries.get(conn)?.presence_id.clone();
        let before = ch.visible(&pid);
        ch.remove(conn);
        let after = ch.visible(&pid);
        if after.is_none() {
            self.members -= 1;
        }
        if ch.entries.is_empty() {
            self.channels.remove(channel);
        }
        diff(channel, before, after)
    }

    /// Removes every entry of `relay`, channel by channel (channels in name order).
    pub fn reap(&mut self, relay: &str) -> Vec<PresenceEvent> {
        let mut doomed: Vec<(String, String)> = self
            .channels
            .iter()
            .flat_map(|(name, ch)| {
                ch.entries
                    .iter()
                    .filter(|(_, e)| e.relay == relay)
                    .map(move |(c, _)| (name.clone(), c.clone()))
            })
            .collect();
        doomed.sort();
        doomed.iter().filter_map(|(channel, conn)| self.untrack(channel, conn)).collect()
    }

    /// The members of `channel`, by presence_id.
    pub fn members(&self, channel: &str) -> Vec<Member> {
        let Some(ch) = self.channels.get(channel) else { return Vec::new() };
        let mut pids: Vec<&String> = ch.members.keys().collect();
        pids.sort();
        pids.into_iter().filter_map(|p| ch.visible(p)).collect()
    }

    /// Number of members of `channel`.
    pub fn member_count(&self, channel: &str) -> usize {
        self.channels.get(channel).map_or(0, |ch| ch.members.len())
    }

    /// Number of anonymous members of `channel` (tracked without a user id).
    pub fn anonymous_count(&self, channel: &str) -> usize {
        let Some(ch) = self.channels.get(channel) else { return 0 };
        ch.members
            .values()
            .filter(|conns| conns.iter().filter_map(|c| ch.entries.get(c)).all(|e| e.user_id.is_none()))
            .count()
    }

    /// Whether `presence_id` is a member of `channel`.
    pub fn is_member(&self, channel: &str, presence_id: &str) -> bool {
        self.channels.get(channel).is_some_and(|ch| ch.members.contains_key(presence_id))
    }

    /// Members over all channels.
    pub fn total_members(&self) -> usize {
        self.members
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::presence::canonical_state;
    use serde_json::Value;

    use crate::core::presence::tracked as t;

    fn kinds(events: &[PresenceEvent]) -> Vec<(EventKind, String, String)> {
        events.iter().map(|e| (e.kind, e.member.presence_id.clone(), e.member.state.clone())).collect()
    }

    #[test]
    fn first_track_joins_retrack_updates_untrack_leaves_with_last_state() {
        let mut v = View::new();
        let e = v.track(t("c", "k1", "r", "alice", r#"{"n":1}"#));
        assert_eq!(kinds(&e), [(EventKind::Join, "alice".into(), r#"{"n":1}"#.into())]);
        let e = v.track(t("c", "k1", "r", "alice", r#"{"n":2}"#));
        assert_eq!(kinds(&e), [(EventKind::Update, "alice".into(), r#"{"n":2}"#.into())]);
        assert!(v.track(t("c", "k1", "r", "alice", r#"{"n":2}"#)).is_empty(), "same state: no event");
        let e = v.untrack("c", "k1").unwrap();
        assert_eq!((e.kind, e.member.state.as_str()), (EventKind::Leave, r#"{"n":2}"#));
        assert_eq!((v.total_members(), v.member_count("c")), (0, 0));
        assert!(v.untrack("c", "k1").is_none(), "untracking twice is a no-op");
    }

    #[test]
    fn two_tabs_are_one_member_with_the_latest_state_until_the_last_goes() {
        let mut v = View::new();
        v.track(t("c", "tab1", "r1", "alice", r#"{"tab":1}"#));
        let e = v.track(t("c", "tab2", "r2", "alice", r#"{"tab":2}"#));
        assert_eq!(kinds(&e), [(EventKind::Update, "alice".into(), r#"{"tab":2}"#.into())]);
        assert_eq!(v.member_count("c"), 1);
        // the latest tab leaves: the member falls back to the other tab's state
        let e = v.untrack("c", "tab2").unwrap();
        assert_eq!((e.kind, e.member.state.as_str()), (EventKind::Update, r#"{"tab":1}"#));
        let e = v.untrack("c", "tab1").unwrap();
        assert_eq!(e.kind, EventKind::Leave);
        assert_eq!(v.total_members(), 0);
    }

    #[test]
    fn a_second_tab_with_the_same_state_changes_nothing_visible() {
        let mut v = View::new();
        v.track(t("c", "tab1", "r", "alice", "{}"));
        assert!(v.track(t("c", "tab2", "r", "alice", "{}")).is_empty());
        assert!(v.untrack("c", "tab1").is_none(), "still present through tab2");
        assert_eq!(v.untrack("c", "tab2").unwrap().kind, EventKind::Leave);
    }

    #[test]
    fn reaping_a_relay_removes_only_its_entries() {
        let mut v = View::new();
        v.track(t("a", "y3", "live", "alice", r#"{"other":true}"#));
        v.track(t("a", "x1", "dead", "alice", "{}"));
        v.track(t("b", "x2", "dead", "bob", "{}"));
        v.track(t("b", "y1", "live", "carol", "{}"));
        v.track(t("a", "y2", "live", "dave", "{}"));
        let e = v.reap("dead");
        assert_eq!(
            kinds(&e),
            [
                (EventKind::Update, "alice".into(), r#"{"other":true}"#.into()),
                (EventKind::Leave, "bob".into(), "{}".into()),
            ]
        );
        let pids = |c| v.members(c).into_iter().map(|m| m.presence_id).collect::<Vec<_>>();
        assert_eq!(pids("a"), ["alice", "dave"]);
        assert_eq!(pids("b"), ["carol"]);
        assert!(v.reap("dead").is_empty());
    }

    #[test]
    fn members_are_sorted_and_channels_are_separate() {
        let mut v = View::new();
        v.track(t("c", "k2", "r", "zed", "{}"));
        v.track(t("c", "k1", "r", "amy", r#"{"x":1}"#));
        v.track(t("d", "k1", "r", "amy", "{}"));
        let m = v.members("c");
        assert_eq!(
            m[0],
            Member { presence_id: "amy".into(), user_id: Some("amy".into()), state: r#"{"x":1}"#.into() }
        );
        assert_eq!(m[1].presence_id, "zed");
        assert!(v.is_member("d", "amy") && !v.is_member("d", "zed"));
        assert_eq!(v.total_members(), 3);
        assert!(v.members("nope").is_empty());
    }

    #[test]
    fn untrack_op_covers_several_channels() {
        let mut v = View::new();
        v.track(t("a", "k", "r", "p", "{}"));
        v.track(t("b", "k", "r", "p", "{}"));
        let e = v.apply(PresenceOp::Untrack {
            conn: "k".into(),
            channels: vec!["a".into(), "b".into(), "c".into()],
        });
        assert_eq!(e.len(), 2);
        assert!(e.iter().all(|e| e.kind == EventKind::Leave));
    }

    #[test]
    fn jsonb_text_and_op_text_of_one_state_are_the_same_canonical_state() {
        let from_jsonb = canonical_state(r#"{"n": 1.50, "name": "Ada", "b": {"z": 1, "a": [1, 2]}}"#);
        let from_client: Value =
            serde_json::from_str(r#"{"b":{"a":[1,2],"z":1},"name":"Ada","n":1.5}"#).unwrap();
        assert_eq!(from_jsonb, from_client.to_string());
        let mut v = View::new();
        v.track(t("c", "k", "r", "alice", &from_jsonb));
        assert!(
            v.track(t("c", "k", "r", "alice", &from_client.to_string())).is_empty(),
            "no spurious update"
        );
    }
}
