//! Unit tests of the hub: subscribe, dispatch, slow sessions, held (resuming) subscriptions.

use super::*;
use crate::pg::replication::{Ephemeral, StoredMessage};

fn session(hub: &Hub, cap: usize) -> (SessionHandle, mpsc::Receiver<Frame>, CancellationToken) {
    let (tx, rx) = mpsc::channel(cap);
    let slow = CancellationToken::new();
    (SessionHandle::new(hub.next_session_id(), tx, slow.clone()), rx, slow)
}

/// Two sessions subscribed to channel "c"; returns their queues (the subscribe replies read).
fn two_subscribers_of_c(hub: &Hub) -> (mpsc::Receiver<Frame>, mpsc::Receiver<Frame>) {
    let (a, mut ra, _) = session(hub, 8);
    let (b, mut rb, _) = session(hub, 8);
    hub.subscribe("c", &a, |_| Frame::from("r"));
    hub.subscribe("c", &b, |_| Frame::from("r"));
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

fn batch(events: Vec<LogEvent>) -> CommitBatch {
    CommitBatch { commit_lsn: 1, events, commit_time_micros: 0 }
}

fn json(f: &Frame) -> serde_json::Value {
    serde_json::from_str(f.as_str()).unwrap()
}

#[test]
fn subscribe_reply_is_queued_before_messages_and_carries_position() {
    let hub = Hub::new();
    hub.dispatch(&batch(vec![stored("other", 5, 1)]));
    let (s, mut rx, _) = session(&hub, 8);
    assert!(hub.subscribe("c", &s, |pos| Frame::from(format!("reply {}", pos.unwrap()))));
    hub.dispatch(&batch(vec![stored("c", 9, 2)]));
    assert_eq!(rx.try_recv().unwrap().as_str(), format!("reply {}", Cursor::end_of_commit(5)));
    let m = json(&rx.try_recv().unwrap());
    assert_eq!(m["channel"], "c");
    assert_eq!(m["cursor"], Cursor { commit_lsn: 9, seq: 2 }.to_string());
    assert_eq!(m["payload"], serde_json::json!({"n": 2}));
}

#[test]
fn one_encoded_frame_is_shared_by_all_subscribers() {
    let hub = Hub::new();
    let (mut ra, mut rb) = two_subscribers_of_c(&hub);
    assert_eq!(hub.dispatch(&batch(vec![stored("c", 2, 1)])), 2);
    let (fa, fb) = (ra.try_recv().unwrap(), rb.try_recv().unwrap());
    assert_eq!(fa.as_str().as_ptr(), fb.as_str().as_ptr(), "frames share one buffer");
}

#[test]
fn dispatch_counting_reports_subscribers_of_stored_messages_only() {
    let hub = Hub::new();
    let (_ra, _rb) = two_subscribers_of_c(&hub);
    let eph = LogEvent::Ephemeral(Ephemeral {
        channel: "c".into(),
        event: "e".into(),
        payload: "{}".into(),
        sender_id: None,
    });
    let mut counts = Vec::new();
    hub.dispatch_counting(&batch(vec![stored("c", 2, 1), stored("nobody", 2, 2), eph]), &mut counts);
    assert_eq!(counts, vec![("id-1".to_string(), 2)]);
}

#[test]
fn full_queue_marks_only_that_session_slow() {
    let hub = Hub::new();
    let (slow_s, _slow_rx, slow_flag) = session(&hub, 1);
    let (ok_s, mut ok_rx, ok_flag) = session(&hub, 16);
    hub.subscribe("c", &slow_s, |_| Frame::from("r"));
    hub.subscribe("c", &ok_s, |_| Frame::from("r"));
    hub.dispatch(&batch(vec![stored("c", 2, 1), stored("c", 2, 2), stored("c", 2, 3)]));
    assert!(slow_flag.is_cancelled());
    assert!(!ok_flag.is_cancelled());
    assert!(!slow_s.send(Frame::from("later")), "nothing is queued after a drop");
    assert_eq!(ok_rx.try_recv().unwrap().as_str(), "r");
    for seq in 1..=3 {
        assert_eq!(json(&ok_rx.try_recv().unwrap())["payload"]["n"], seq);
    }
    assert_eq!(hub.stats.dropped_slow.load(Ordering::Relaxed), 3);
}

#[test]
fn unsubscribed_session_receives_nothing_more() {
    let hub = Hub::new();
    let (s, mut rx, _) = session(&hub, 8);
    hub.subscribe("c", &s, |_| Frame::from("r"));
    assert_eq!(hub.stats.channels.load(Ordering::Relaxed), 1);
    assert_eq!(hub.stats.subscriptions.load(Ordering::Relaxed), 1);
    assert!(hub.unsubscribe("c", s.id));
    assert!(!hub.unsubscribe("c", s.id));
    assert_eq!(hub.subscriber_count("c"), 0);
    assert_eq!(hub.stats.channels.load(Ordering::Relaxed), 0, "empty channels are not counted");
    assert_eq!(hub.stats.subscriptions.load(Ordering::Relaxed), 0);
    hub.dispatch(&batch(vec![stored("c", 2, 1)]));
    assert_eq!(rx.try_recv().unwrap().as_str(), "r");
    assert!(rx.try_recv().is_err());
}

#[test]
fn ephemeral_messages_have_no_cursor_and_do_not_move_position() {
    let hub = Hub::new();
    let (s, mut rx, _) = session(&hub, 8);
    hub.subscribe("c", &s, |_| Frame::from("r"));
    rx.try_recv().unwrap();
    let e = LogEvent::Ephemeral(Ephemeral {
        channel: "c".into(),
        event: "typing".into(),
        payload: "{}".into(),
        sender_id: None,
    });
    hub.dispatch(&batch(vec![e]));
    let m = json(&rx.try_recv().unwrap());
    assert_eq!(m["event"], "typing");
    assert!(m.get("cursor").is_none());
    assert_eq!(hub.position(), None);
}

#[test]
fn commit_to_send_latency_is_observed_once_per_queued_frame() {
    let hub = Hub::new();
    let (_ra, _rb) = two_subscribers_of_c(&hub);
    let mut timed = batch(vec![stored("c", 2, 1), stored("nobody", 2, 2)]);
    // committed "now" by the Postgres epoch (2000-01-01), give or take the test's own run time
    let unix = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    timed.commit_time_micros = unix.as_micros() as i64 - 946_684_800_000_000;
    hub.dispatch(&timed);
    hub.dispatch(&batch(vec![stored("c", 3, 3)])); // no commit time: not observed
    let s = hub.stats.commit_to_send.snapshot();
    assert_eq!(s.count(), 2, "two subscribers got the one timed frame");
    assert_eq!(hub.stats.delivered.load(Ordering::Relaxed), 4);
    assert_eq!(hub.stats.delivered_ephemeral.load(Ordering::Relaxed), 0);
}

#[test]
fn position_never_moves_backwards() {
    let hub = Hub::new();
    hub.advance_position("0000000000000002");
    hub.advance_position("0000000000000001");
    assert_eq!(hub.position().as_deref(), Some("0000000000000002"));
}

#[test]
fn position_after_a_commit_covers_all_of_it() {
    let hub = Hub::new();
    hub.dispatch(&batch(vec![stored("c", 7, 3), stored("c", 7, 4)]));
    let p = hub.position().unwrap();
    assert_eq!(p, Cursor::end_of_commit(7).to_string());
    assert!(Cursor::new(7, 4).to_string() < p && p < Cursor::new(8, 1).to_string());
}

#[test]
fn held_subscription_keeps_newer_frames_until_activated() {
    let hub = Hub::new();
    hub.dispatch(&batch(vec![stored("c", 5, 1)]));
    let (s, mut rx, _) = session(&hub, 8);
    let (p, _) = hub.subscribe_held("c", &s, 4);
    assert_eq!(p, Some(Cursor::end_of_commit(5).to_string()));
    hub.dispatch(&batch(vec![stored("c", 9, 2)]));
    let e = LogEvent::Ephemeral(Ephemeral {
        channel: "c".into(),
        event: "typing".into(),
        payload: "{}".into(),
        sender_id: None,
    });
    hub.dispatch(&batch(vec![e]));
    assert!(rx.try_recv().is_err(), "nothing reaches the queue while held");
    s.send(Frame::from("replayed"));
    assert_eq!(hub.activate("c", s.id), Activation::Done);
    hub.dispatch(&batch(vec![stored("c", 11, 3)]));
    assert_eq!(rx.try_recv().unwrap().as_str(), "replayed");
    assert_eq!(json(&rx.try_recv().unwrap())["payload"]["n"], 2);
    assert_eq!(json(&rx.try_recv().unwrap())["event"], "typing");
    assert_eq!(json(&rx.try_recv().unwrap())["payload"]["n"], 3);
    assert!(rx.try_recv().is_err());
    assert_eq!(hub.activate("c", s.id), Activation::Done, "activating a live subscription is a no-op");
}

#[test]
fn held_subscription_drops_frames_at_or_below_its_floor() {
    let hub = Hub::new();
    hub.advance_position(&Cursor::new(10, 5).to_string());
    let (s, mut rx, _) = session(&hub, 8);
    hub.subscribe_held("c", &s, 4);
    // a late commit below the floor (possible only with an out-of-band position)
    hub.dispatch(&batch(vec![stored("c", 10, 5), stored("c", 10, 6)]));
    assert_eq!(hub.activate("c", s.id), Activation::Done);
    assert_eq!(json(&rx.try_recv().unwrap())["payload"]["n"], 6);
    assert!(rx.try_recv().is_err());
}

#[test]
fn held_overflow_asks_for_more_replay_from_a_new_position() {
    let hub = Hub::new();
    let (s, mut rx, slow) = session(&hub, 8);
    hub.subscribe_held("c", &s, 2);
    hub.dispatch(&batch(vec![stored("c", 2, 1), stored("c", 2, 2), stored("c", 2, 3)]));
    let p2 = Cursor::end_of_commit(2).to_string();
    assert_eq!(hub.activate("c", s.id), Activation::Overflowed(Some(p2)));
    hub.dispatch(&batch(vec![stored("c", 3, 4)]));
    assert_eq!(hub.activate("c", s.id), Activation::Done);
    assert_eq!(json(&rx.try_recv().unwrap())["payload"]["n"], 4);
    assert!(!slow.is_cancelled());
}

#[test]
fn held_frames_wait_for_room_in_the_queue() {
    let hub = Hub::new();
    let (s, mut rx, _) = session(&hub, 2);
    hub.subscribe_held("c", &s, 8);
    hub.dispatch(&batch(vec![stored("c", 2, 1), stored("c", 2, 2)]));
    s.send(Frame::from("replayed"));
    assert_eq!(hub.activate("c", s.id), Activation::NoRoom);
    rx.try_recv().unwrap();
    assert_eq!(hub.activate("c", s.id), Activation::Done);
    assert_eq!(hub.activate("other", s.id), Activation::Gone);
    assert!(hub.unsubscribe("c", s.id));
    assert_eq!(hub.activate("c", s.id), Activation::Gone);
}
