//! Unit tests of the hub: subscribe, dispatch, slow sessions, held (resuming) subscriptions.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::core::event::{Ephemeral, StoredMessage};
use crate::core::frame::WireFrame;
use crate::metrics::Metrics;

pub(super) fn hub() -> Hub {
    Hub::new(Metrics::new().unwrap().hub.clone())
}

pub(super) fn session(hub: &Hub, cap: usize) -> (SessionHandle, mpsc::Receiver<Outbound>, CancellationToken) {
    let (tx, rx) = mpsc::channel(cap);
    let slow = CancellationToken::new();
    (SessionHandle::new(hub.next_session_id(), tx, slow.clone()), rx, slow)
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
fn two_subscribers_of_c(hub: &Hub) -> (mpsc::Receiver<Outbound>, mpsc::Receiver<Outbound>) {
    let (a, mut ra, _) = session(hub, 8);
    let (b, mut rb, _) = session(hub, 8);
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
    let (s, mut rx, _) = session(&hub, 8);
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
fn full_queue_marks_only_that_session_slow() {
    let hub = hub();
    let (slow_s, _slow_rx, slow_flag) = session(&hub, 1);
    let (ok_s, mut ok_rx, ok_flag) = session(&hub, 16);
    hub.subscribe("c", &slow_s, reply);
    hub.subscribe("c", &ok_s, reply);
    dispatch(&hub, vec![stored("c", 2, 1), stored("c", 2, 2), stored("c", 2, 3)]);
    assert!(slow_flag.is_cancelled());
    assert!(!ok_flag.is_cancelled());
    assert!(!slow_s.send(text("later")), "nothing is queued after a drop");
    assert_eq!(frame_text(ok_rx.try_recv().unwrap()), "r");
    for seq in 1..=3 {
        assert_eq!(n(ok_rx.try_recv().unwrap()), seq);
    }
    assert_eq!(hub.metrics.dropped_slow.get(), 3);
}

#[test]
fn unsubscribed_session_receives_nothing_more() {
    let hub = hub();
    let (s, mut rx, _) = session(&hub, 8);
    hub.subscribe("c", &s, reply);
    assert_eq!((hub.metrics.channels.get(), hub.metrics.subscriptions.get()), (1, 1));
    assert!(hub.unsubscribe("c", s.id));
    assert!(!hub.unsubscribe("c", s.id));
    assert_eq!(hub.subscriber_count("c"), 0);
    assert_eq!(hub.metrics.channels.get(), 0, "empty channels are not counted");
    assert_eq!(hub.metrics.subscriptions.get(), 0);
    dispatch(&hub, vec![stored("c", 2, 1)]);
    assert_eq!(frame_text(rx.try_recv().unwrap()), "r");
    assert!(rx.try_recv().is_err());
}

#[test]
fn ephemeral_messages_have_no_cursor_and_do_not_move_position() {
    let hub = hub();
    let (s, mut rx, _) = session(&hub, 8);
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
    let (s, mut rx, _) = session(&hub, 8);
    let joined = hub.subscribe_held("c", &s, 4);
    assert_eq!(joined.position, Some(Cursor::end_of_commit(5)));
    dispatch(&hub, vec![stored("c", 9, 2)]);
    dispatch(&hub, vec![typing()]);
    assert!(rx.try_recv().is_err(), "nothing reaches the queue while held");
    s.send(text("replayed"));
    assert_eq!(hub.activate("c", s.id), Activation::Done);
    dispatch(&hub, vec![stored("c", 11, 3)]);
    assert_eq!(frame_text(rx.try_recv().unwrap()), "replayed");
    assert_eq!(n(rx.try_recv().unwrap()), 2);
    assert_eq!(message(rx.try_recv().unwrap()).event, "typing");
    assert_eq!(n(rx.try_recv().unwrap()), 3);
    assert!(rx.try_recv().is_err());
    assert_eq!(hub.activate("c", s.id), Activation::Done, "activating a live subscription is a no-op");
}

#[test]
fn held_subscription_drops_events_at_or_below_its_floor() {
    let hub = hub();
    hub.advance_position(Cursor::new(10, 5));
    let (s, mut rx, _) = session(&hub, 8);
    hub.subscribe_held("c", &s, 4);
    // a late commit below the floor (possible only with an out-of-band position)
    dispatch(&hub, vec![stored("c", 10, 5), stored("c", 10, 6)]);
    assert_eq!(hub.activate("c", s.id), Activation::Done);
    assert_eq!(n(rx.try_recv().unwrap()), 6);
    assert!(rx.try_recv().is_err());
}

#[test]
fn held_overflow_asks_for_more_replay_from_a_new_position() {
    let hub = hub();
    let (s, mut rx, slow) = session(&hub, 8);
    hub.subscribe_held("c", &s, 2);
    dispatch(&hub, vec![stored("c", 2, 1), stored("c", 2, 2), stored("c", 2, 3)]);
    assert_eq!(hub.activate("c", s.id), Activation::Overflowed(Some(Cursor::end_of_commit(2))));
    dispatch(&hub, vec![stored("c", 3, 4)]);
    assert_eq!(hub.activate("c", s.id), Activation::Done);
    assert_eq!(n(rx.try_recv().unwrap()), 4);
    assert!(!slow.is_cancelled());
}

#[test]
fn held_events_wait_for_room_in_the_queue() {
    let hub = hub();
    let (s, mut rx, _) = session(&hub, 2);
    hub.subscribe_held("c", &s, 8);
    dispatch(&hub, vec![stored("c", 2, 1), stored("c", 2, 2)]);
    s.send(text("replayed"));
    assert_eq!(hub.activate("c", s.id), Activation::NoRoom);
    rx.try_recv().unwrap();
    assert_eq!(hub.activate("c", s.id), Activation::Done);
    assert_eq!(hub.activate("other", s.id), Activation::Gone);
    assert!(hub.unsubscribe("c", s.id));
    assert_eq!(hub.activate("c", s.id), Activation::Gone);
}
