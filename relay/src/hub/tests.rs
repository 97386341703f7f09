//! Unit tests of the hub: subscribe, dispatch, slow sessions, held (resuming) subscriptions.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::group::GroupActivation;
use super::*;
use crate::core::event::{Ephemeral, StoredMessage};
use crate::core::frame::WireFrame;
use crate::core::presence::PresenceOp;
use crate::metrics::Metrics;

pub(super) fn hub() -> Hub {
    Hub::new(Metrics::new().unwrap().hub.clone())
}

/// Bytes of one of the small test events (`stored`, `typing`).
const EVENT: usize = 170;

/// A session whose queue holds `bytes`.
pub(super) fn session(hub: &Hub, bytes: usize) -> (SessionHandle, SessionQueue, CancellationToken) {
    let limits = QueueLimits { bytes, budget: Budget::new(1 << 30) };
    let (handle, queue) = session_queue(hub.next_session_id(), limits);
    let slow = handle.slow_signal();
    (handle, queue, slow)
}

/// A stand-in for a protocol's subscribe reply.
pub(super) fn reply(_: Joined) -> Outbound {
    text("r")
}

fn text(s: &str) -> Outbound {
    Outbound::Frame(WireFrame::text(s.to_string()))
}

/// The text of a frame item.
pub(super) fn frame_text(o: Outbound) -> String {
    match o {
        Outbound::Frame(f) => String::from_utf8(f.as_bytes().to_vec()).unwrap(),
        other => panic!("not a frame: {other:?}"),
    }
}

/// The shared event of an event item.
pub(super) fn event(o: Outbound) -> SharedEvent {
    match o {
        Outbound::Event(e) => e,
        other => panic!("not an event: {other:?}"),
    }
}

/// The message of an event item.
fn message(o: Outbound) -> Message {
    match &event(o).event {
        Event::Message(m) => m.clone(),
        other => panic!("not a message: {other:?}"),
    }
}

/// `n` of a message whose payload is `{"n": ..}`.
fn n(o: Outbound) -> i64 {
    serde_json::from_str::<serde_json::Value>(&message(o).payload).unwrap()["n"].as_i64().unwrap()
}

/// Two sessions subscribed to channel "c"; returns their queues (the subscribe replies read).
fn two_subscribers_of_c(hub: &Hub) -> (SessionQueue, SessionQueue) {
    let (a, mut ra, _) = session(hub, 100 * EVENT);
    let (b, mut rb, _) = session(hub, 100 * EVENT);
    hub.subscribe("c", &a, reply);
    hub.subscribe("c", &b, reply);
    ra.try_recv().unwrap();
    rb.try_recv().unwrap();
    (ra, rb)
}

fn stored(channel: &str, lsn: u64, seq: i64) -> LogEvent {
    LogEvent::Stored(StoredMessage {
        id: format!("id-{seq}"),
        seq,
        channel: channel.into(),
        event: "e".into(),
        payload: format!(r#"{{"n":{seq}}}"#),
        sender_type: "system".into(),
        sender_id: None,
        created_at: "2026-11-23T10:00:00Z".into(),
        cursor: Cursor { commit_lsn: lsn, seq },
        wh_audience: 0,
    })
}

fn typing() -> LogEvent {
    LogEvent::Ephemeral(Ephemeral {
        channel: "c".into(),
        event: "typing".into(),
        payload: "{}".into(),
        sender_id: None,
    })
}

fn batch(events: Vec<LogEvent>) -> CommitBatch {
    CommitBatch { commit_lsn: 1, events, commit_time_micros: 0 }
}

fn dispatch(hub: &Hub, events: Vec<LogEvent>) -> usize {
    hub.dispatch(batch(events), &mut Vec::new())
}

#[test]
fn subscribe_reply_is_queued_before_messages_and_carries_position() {
    let hub = hub();
    dispatch(&hub, vec![stored("other", 5, 1)]);
    let (s, mut rx, _) = session(&hub, 100 * EVENT);
    assert!(hub.subscribe("c", &s, |j| text(&format!("reply {}", j.position.unwrap()))));
    dispatch(&hub, vec![stored("c", 9, 2)]);
    assert_eq!(frame_text(rx.try_recv().unwrap()), format!("reply {}", Cursor::end_of_commit(5)));
    let m = message(rx.try_recv().unwrap());
    assert_eq!(
        (m.channel.as_str(), m.cursor, m.payload.as_str()),
        ("c", Some(Cursor::new(9, 2)), r#"{"n":2}"#)
    );
}

#[test]
fn one_shared_event_goes_to_all_subscribers() {
    let hub = hub();
    let (mut ra, mut rb) = two_subscribers_of_c(&hub);
    assert_eq!(dispatch(&hub, vec![stored("c", 2, 1)]), 2);
    let (a, b) = (event(ra.try_recv().unwrap()), event(rb.try_recv().unwrap()));
    assert!(Arc::ptr_eq(&a, &b), "one event, shared");
}

#[test]
fn dispatch_reports_subscribers_of_stored_messages_only() {
    let hub = hub();
    let (_ra, _rb) = two_subscribers_of_c(&hub);
    let mut counts = Vec::new();
    hub.dispatch(batch(vec![stored("c", 2, 1), stored("nobody", 2, 2), typing()]), &mut counts);
    assert_eq!(counts, vec![("id-1".to_string(), 2)]);
}

#[test]
fn a_full_queue_makes_only_that_subscriber_fall_behind_from_its_last_message() {
    let hub = hub();
    // room for the reply and one event
    let (small, mut small_q, small_slow) = session(&hub, 2 * EVENT);
    let (ok, mut ok_q, ok_slow) = session(&hub, 100 * EVENT);
    hub.subscribe("c", &small, reply);
    hub.subscribe("c", &ok, reply);
    let typing_after = LogEvent::Ephemeral(Ephemeral {
        channel: "c".into(),
        event: "typing".into(),
        payload: "{}".into(),
        sender_id: None,
    });
    dispatch(&hub, vec![stored("c", 2, 1), stored("c", 2, 2), stored("c", 2, 3), typing_after]);
    assert!(!small_slow.is_cancelled() && !ok_slow.is_cancelled(), "nobody is closed");
    assert_eq!(frame_text(ok_q.try_recv().unwrap()), "r");
    for seq in 1..=3 {
        assert_eq!(n(ok_q.try_recv().unwrap()), seq);
    }
    assert_eq!(message(ok_q.try_recv().unwrap()).event, "typing");
    assert_eq!(frame_text(small_q.try_recv().unwrap()), "r");
    assert_eq!(n(small_q.try_recv().unwrap()), 1);
    assert!(small_q.try_recv().is_none(), "nothing after the first miss: no gap, no reordering");
    assert_eq!(hub.metrics.catch_ups.get(), 1);
    // the session is told; the subscription replays what it missed, from its last message
    let lagging = futures_util::FutureExt::now_or_never(small.next_lagging()).expect("told to catch up");
    assert_eq!(lagging, ["c"]);
    let from = Cursor::new(2, 1);
    assert_eq!(
        hub.activate("c", small.id),
        Activation::Overflowed { from, to: Some(Cursor::end_of_commit(2)) }
    );
    dispatch(&hub, vec![stored("c", 3, 4)]); // held while the replay runs
                                             // (the replay of (2/1, end of 2] would queue messages 2 and 3 here)
    assert_eq!(hub.activate("c", small.id), Activation::Done);
    match small_q.try_recv().unwrap() {
        Outbound::Dropped { channel, count } => {
            assert_eq!((channel.as_str(), count), ("c", 1), "the typing event")
        }
        other => panic!("expected the dropped notice, got {other:?}"),
    }
    assert_eq!(n(small_q.try_recv().unwrap()), 4, "then the held live events");
}

#[test]
fn a_subscriber_behind_on_presence_gets_a_snapshot_when_it_turns_live() {
    let hub = hub();
    hub.presence.expect_sync("me", "n");
    hub.dispatch(
        batch(vec![LogEvent::Presence(PresenceOp::Sync { relay: "me".into(), nonce: "n".into() })]),
        &mut Vec::new(),
    );
    hub.presence_load(vec![]);
    let (s, mut q, _) = session(&hub, 2 * EVENT);
    hub.subscribe("c", &s, |_| Outbound::Frame(WireFrame::text(String::new())));
    let join = |pid: &str| {
        LogEvent::Presence(PresenceOp::Track(crate::core::presence::tracked("c", pid, "r", pid, "{}")))
    };
    dispatch(&hub, vec![join("a"), join("b")]);
    q.try_recv().unwrap();
    q.try_recv().unwrap();
    assert!(q.try_recv().is_none(), "the second join did not fit");
    let Activation::Overflowed { .. } = hub.activate("c", s.id) else { panic!("overflowed") };
    assert_eq!(hub.activate("c", s.id), Activation::Done);
    match q.try_recv().unwrap() {
        Outbound::PresenceSync { channel, members } => {
            assert_eq!(channel, "c");
            assert_eq!(members.iter().map(|m| m.presence_id.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        }
        other => panic!("expected a presence snapshot, got {other:?}"),
    }
}

#[test]
fn unsubscribed_session_receives_nothing_more() {
    let hub = hub();
    let (s, mut rx, _) = session(&hub, 100 * EVENT);
    hub.subscribe("c", &s, reply);
    assert_eq!((hub.metrics.channels.get(), hub.metrics.subscriptions.get()), (1, 1));
    assert!(hub.unsubscribe("c", s.id));
    assert!(!hub.unsubscribe("c", s.id));
    assert_eq!(hub.subscriber_count("c"), 0);
    assert_eq!(hub.metrics.channels.get(), 0, "empty channels are not counted");
    assert_eq!(hub.metrics.subscriptions.get(), 0);
    dispatch(&hub, vec![stored("c", 2, 1)]);
    assert_eq!(frame_text(rx.try_recv().unwrap()), "r");
    assert!(rx.try_recv().is_none());
}

#[test]
fn what_the_relay_queues_to_its_own_consumers_is_not_counted_as_delivered() {
    let hub = hub();
    let (gate, mut rg, _) = session(&hub, 100 * EVENT);
    gate.mark_internal();
    let (client, mut rc, _) = session(&hub, 100 * EVENT);
    hub.subscribe("c", &gate, reply);
    hub.subscribe("c", &client, reply);
    rg.try_recv().unwrap();
    rc.try_recv().unwrap();
    dispatch(&hub, vec![stored("c", 2, 1), typing()]);
    assert_eq!(message(rg.try_recv().unwrap()).event, "e", "the internal consumer got the message");
    assert_eq!(hub.metrics.delivered_persisted.get(), 1, "one client delivery");
    assert_eq!(hub.metrics.delivered_ephemeral.get(), 1);
    assert_eq!(hub.metrics.frames_queued.get(), 2);
}

#[test]
fn ephemeral_messages_have_no_cursor_and_do_not_move_position() {
    let hub = hub();
    let (s, mut rx, _) = session(&hub, 100 * EVENT);
    hub.subscribe("c", &s, reply);
    rx.try_recv().unwrap();
    dispatch(&hub, vec![typing()]);
    let m = message(rx.try_recv().unwrap());
    assert_eq!((m.event.as_str(), m.cursor, m.id), ("typing", None, None));
    assert_eq!(hub.position(), None);
}

#[test]
fn commit_to_send_latency_is_observed_once_per_queued_frame() {
    let hub = hub();
    let (_ra, _rb) = two_subscribers_of_c(&hub);
    let mut timed = batch(vec![stored("c", 2, 1), stored("nobody", 2, 2)]);
    // committed "now" by the Postgres epoch (2000-01-01), give or take the test's own run time
    let unix = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    timed.commit_time_micros = unix.as_micros() as i64 - 946_684_800_000_000;
    hub.dispatch(timed, &mut Vec::new());
    dispatch(&hub, vec![stored("c", 3, 3)]); // no commit time: not observed
    assert_eq!(hub.metrics.commit_to_send.get_sample_count(), 2, "two subscribers got the one timed frame");
    assert_eq!(hub.metrics.frames_queued.get(), 4);
    assert_eq!(hub.metrics.delivered_persisted.get(), 4);
    assert_eq!(hub.metrics.delivered_ephemeral.get(), 0);
    assert_eq!(hub.metrics.stored_dispatched.get(), 3);
}

#[test]
fn position_never_moves_backwards() {
    let hub = hub();
    hub.advance_position(Cursor::new(2, 0));
    hub.advance_position(Cursor::new(1, 0));
    assert_eq!(hub.position(), Some(Cursor::new(2, 0)));
}

#[test]
fn position_after_a_commit_covers_all_of_it() {
    let hub = hub();
    dispatch(&hub, vec![stored("c", 7, 3), stored("c", 7, 4)]);
    let p = hub.position().unwrap();
    assert_eq!(p, Cursor::end_of_commit(7));
    assert!(Cursor::new(7, 4) < p && p < Cursor::new(8, 1));
}

#[test]
fn held_subscription_keeps_newer_events_until_activated() {
    let hub = hub();
    dispatch(&hub, vec![stored("c", 5, 1)]);
    let (s, mut rx, _) = session(&hub, 100 * EVENT);
    let joined = hub.subscribe_held("c", &s);
    assert_eq!(joined.position, Some(Cursor::end_of_commit(5)));
    dispatch(&hub, vec![stored("c", 9, 2)]);
    dispatch(&hub, vec![typing()]);
    assert!(rx.try_recv().is_none(), "nothing reaches the queue while held");
    s.send(text("replayed"));
    assert_eq!(hub.activate("c", s.id), Activation::Done);
    dispatch(&hub, vec![stored("c", 11, 3)]);
    assert_eq!(frame_text(rx.try_recv().unwrap()), "replayed");
    assert_eq!(n(rx.try_recv().unwrap()), 2);
    assert_eq!(message(rx.try_recv().unwrap()).event, "typing");
    assert_eq!(n(rx.try_recv().unwrap()), 3);
    assert!(rx.try_recv().is_none());
    assert_eq!(hub.activate("c", s.id), Activation::Done, "activating a live subscription is a no-op");
}

#[test]
fn held_subscription_drops_events_at_or_below_its_floor() {
    let hub = hub();
    hub.advance_position(Cursor::new(10, 5));
    let (s, mut rx, _) = session(&hub, 100 * EVENT);
    hub.subscribe_held("c", &s);
    // a late commit below the floor (possible only with an out-of-band position)
    dispatch(&hub, vec![stored("c", 10, 5), stored("c", 10, 6)]);
    assert_eq!(hub.activate("c", s.id), Activation::Done);
    assert_eq!(n(rx.try_recv().unwrap()), 6);
    assert!(rx.try_recv().is_none());
}

#[test]
fn held_overflow_asks_for_more_replay_from_a_new_position() {
    let hub = hub();
    let (s, mut rx, slow) = session(&hub, 2 * EVENT);
    hub.subscribe_held("c", &s);
    dispatch(&hub, vec![stored("c", 2, 1), stored("c", 2, 2), stored("c", 2, 3)]);
    let from = Cursor::MIN;
    assert_eq!(hub.activate("c", s.id), Activation::Overflowed { from, to: Some(Cursor::end_of_commit(2)) });
    dispatch(&hub, vec![stored("c", 3, 4)]);
    assert_eq!(hub.activate("c", s.id), Activation::Done);
    assert_eq!(n(rx.try_recv().unwrap()), 4);
    assert!(!slow.is_cancelled());
}

#[test]
fn held_events_wait_for_room_in_the_queue() {
    let hub = hub();
    let (s, mut rx, _) = session(&hub, 3 * EVENT);
    hub.subscribe_held("c", &s);
    dispatch(&hub, vec![stored("c", 2, 1), stored("c", 2, 2)]);
    s.send(text(&"replayed".repeat(25)));
    assert_eq!(hub.activate("c", s.id), Activation::NoRoom);
    rx.try_recv().unwrap();
    assert_eq!(hub.activate("c", s.id), Activation::Done);
    assert_eq!(hub.activate("other", s.id), Activation::Gone);
    assert!(hub.unsubscribe("c", s.id));
    assert_eq!(hub.activate("c", s.id), Activation::Gone);
}

#[test]
fn busiest_channels_are_listed_by_subscriber_count_up_to_the_limit() {
    let hub = hub();
    let _queues = two_subscribers_of_c(&hub);
    let (a, _ra, _) = session(&hub, 8);
    hub.subscribe("b", &a, reply);
    hub.subscribe("a", &a, reply);
    let (all, more) = hub.busiest_channels(10);
    assert_eq!(all, [("c".to_string(), 2), ("a".to_string(), 1), ("b".to_string(), 1)]);
    assert!(!more);
    let (top, more) = hub.busiest_channels(1);
    assert_eq!((top, more), (vec![("c".to_string(), 2)], true));
}

/// The (lsn, seq) of a stored-message event item.
fn at(o: Outbound) -> (String, u64, i64) {
    let m = message(o);
    let c = m.cursor.unwrap();
    (m.channel, c.commit_lsn, c.seq)
}

#[test]
fn a_group_turns_live_at_one_position_with_its_buffers_merged_in_cursor_order() {
    let hub = hub();
    hub.advance_position(Cursor::new(5, 0));
    let (s, mut q, _) = session(&hub, 1 << 20);
    s.keep_order();
    let group = ["a".to_string(), "b".to_string()];
    let joined = hub.subscribe_group(&group, &s);
    assert!(joined.iter().all(|j| j.position == Some(Cursor::new(5, 0))));
    hub.dispatch(batch(vec![stored("b", 10, 1), stored("a", 10, 2)]), &mut Vec::new());
    hub.dispatch(batch(vec![stored("a", 11, 1)]), &mut Vec::new());
    assert!(q.try_recv().is_none(), "held while the group replays");
    let activated = hub.activate_group(&group, s.id, |floor| {
        assert_eq!(floor, Cursor::new(5, 0));
        Some(text("marker"))
    });
    assert_eq!(activated, GroupActivation::Done);
    assert_eq!(frame_text(q.try_recv().unwrap()), "marker");
    let order: Vec<_> = std::iter::from_fn(|| q.try_recv()).map(at).collect();
    assert_eq!(order, [("b".into(), 10, 1), ("a".into(), 10, 2), ("a".into(), 11, 1)]);
    hub.dispatch(batch(vec![stored("b", 12, 1)]), &mut Vec::new());
    assert_eq!(at(q.try_recv().unwrap()), ("b".into(), 12, 1), "live");
}

#[test]
fn a_group_that_falls_behind_is_held_as_one_from_where_each_channel_was() {
    let hub = hub();
    hub.advance_position(Cursor::new(5, 0));
    let (s, mut q, _) = session(&hub, 3 * EVENT);
    s.keep_order();
    let group = ["a".to_string(), "b".to_string()];
    hub.subscribe_group(&group, &s);
    assert_eq!(hub.activate_group(&group, s.id, |_| None), GroupActivation::Done);
    // a: two fit, the third is refused; b's next event comes after the refusal: refused too,
    // though it would fit once the queue drains.
    hub.dispatch(
        batch(vec![stored("a", 10, 1), stored("a", 10, 2), stored("a", 10, 3), stored("a", 10, 4)]),
        &mut Vec::new(),
    );
    while q.try_recv().is_some() {}
    hub.dispatch(batch(vec![stored("b", 11, 1)]), &mut Vec::new());
    assert!(q.try_recv().is_none(), "nothing newer than a missed message is queued");
    hub.hold_group(&group, s.id);
    match hub.activate_group(&group, s.id, |_| None) {
        GroupActivation::Overflowed { from, to } => {
            assert_eq!(
                from,
                [Cursor::new(10, 2), Cursor::new(11, 0)],
                "a after its last delivered, b before its refused"
            );
            assert_eq!(to, Cursor::end_of_commit(11));
        }
        other => panic!("expected a catch-up, got {other:?}"),
    }
    // Caught up (the replay is the service's): live again, offers accepted.
    assert_eq!(hub.activate_group(&group, s.id, |_| None), GroupActivation::Done);
    hub.dispatch(batch(vec![stored("b", 12, 1)]), &mut Vec::new());
    assert_eq!(at(q.try_recv().unwrap()), ("b".into(), 12, 1));
}
