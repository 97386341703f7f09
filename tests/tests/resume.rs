//! Resume end to end: a client that reconnects with the last cursor it saw gets exactly the
//! messages it missed (`replayed: true`), in order, then live ones, none lost or doubled, on
//! the same relay, on another relay of the database, and across a relay `kill -9`; a cursor it
//! cannot honour gets `recovered: false` and a `reset` frame. A resume that missed nothing is
//! answered from the relay's memory, without reading the log.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use realtime_e2e::{
    open_channel, publish, scrape_metric, start_stack, start_stack_with, Cluster, Connect, Relay,
    RelayOptions, Ws,
};
use serde_json::{json, Value};

/// Publishes `{p, n}` for n = 1, 2, … on `channel` until `stop`; returns the last n.
fn publisher(
    cluster: &Cluster,
    channel: &'static str,
    p: i64,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<i64> {
    let url = cluster.url("postgres");
    tokio::spawn(async move {
        let (client, conn) =
            tokio_postgres::connect(&url, tokio_postgres::NoTls).await.expect("publisher connects");
        tokio::spawn(conn);
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            publish(&client, channel, "tick", &json!({"p": p, "n": n})).await;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        n
    })
}

/// Reads messages on `channel` until one with event `end`; returns them (without the end).
async fn until_end(ws: &mut Ws, channel: &str) -> Vec<Value> {
    let mut out = Vec::new();
    loop {
        let m = ws.expect_message(channel).await;
        if m["event"] == "end" {
            return out;
        }
        out.push(m);
    }
}

/// Sends `subscribe` with `resume` and returns the reply, asserting no frame of the channel came
/// before it.
async fn resume(ws: &mut Ws, channel: &str, cursor: &str) -> Value {
    let reply =
        ws.request(json!({"type": "subscribe", "channel": channel, "resume": {"cursor": cursor}})).await;
    if ws.pending().iter().any(|f| f["channel"] == channel) {
        ws.fail(&format!("a frame of {channel} arrived before the subscribe reply"));
    }
    reply
}

/// Asserts that `before` then `after` hold every `(p, n)` for n in 1..=totals[p-1] exactly once,
/// with cursors strictly increasing, and that `after` is replayed frames then live ones.
fn assert_exact(before: &[Value], after: &[Value], totals: &[i64]) {
    let all: Vec<&Value> = before.iter().chain(after.iter()).collect();
    let cursors: Vec<&str> = all.iter().map(|m| m["cursor"].as_str().expect("cursor")).collect();
    for w in cursors.windows(2) {
        assert!(w[0] < w[1], "cursors not strictly increasing at the seam: {} then {}", w[0], w[1]);
    }
    let mut seen = HashSet::new();
    for m in &all {
        let key = (m["payload"]["p"].as_i64().unwrap(), m["payload"]["n"].as_i64().unwrap());
        assert!(seen.insert(key), "delivered twice: {m}");
    }
    for (i, total) in totals.iter().enumerate() {
        let p = i as i64 + 1;
        for n in 1..=*total {
            assert!(seen.contains(&(p, n)), "lost: publisher {p} message {n}");
        }
    }
    assert_eq!(seen.len() as i64, totals.iter().sum::<i64>(), "nothing else was delivered");
    let first_live = after.iter().position(|m| m["replayed"] != true).unwrap_or(after.len());
    assert!(after[first_live..].iter().all(|m| m["replayed"] != true), "a replayed frame after a live one");
    assert!(first_live > 0, "something was replayed");
}

/// Subscribes, reads at least `k` messages and returns them (the last cursor is the resume point).
async fn read_some(ws: &mut Ws, channel: &str, k: usize) -> Vec<Value> {
    let mut got = Vec::new();
    while got.len() < k {
        got.push(ws.expect_message(channel).await);
    }
    got
}

async fn stop_and_mark(
    db: &tokio_postgres::Client,
    stop: &AtomicBool,
    pubs: Vec<tokio::task::JoinHandle<i64>>,
    channel: &str,
) -> Vec<i64> {
    stop.store(true, Ordering::Relaxed);
    let mut totals = Vec::new();
    for p in pubs {
        totals.push(p.await.unwrap());
    }
    publish(db, channel, "end", &json!({})).await;
    totals
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_after_disconnect_replays_missed_then_live_in_order() {
    let (cluster, relay) = start_stack().await;
    let db = cluster.client().await;
    open_channel(&db, "stream").await;
    let mut ws1 = Ws::connect(&relay.ws_url(), Connect::Anonymous).await;
    ws1.subscribe_ok("stream").await;
    let stop = Arc::new(AtomicBool::new(false));
    let pubs = vec![publisher(&cluster, "stream", 1, stop.clone())];
    let before = read_some(&mut ws1, "stream", 10).await;
    let cursor = before.last().unwrap()["cursor"].as_str().unwrap().to_string();
    drop(ws1);
    tokio::time::sleep(Duration::from_millis(400)).await;

    let mut ws2 = Ws::connect(&relay.ws_url(), Connect::Anonymous).await;
    let reply = resume(&mut ws2, "stream", &cursor).await;
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(reply["recovered"], true, "{reply}");
    assert!(reply["cursor"].as_str().is_some_and(|c| c > cursor.as_str()), "{reply}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let totals = stop_and_mark(&db, &stop, pubs, "stream").await;
    let after = until_end(&mut ws2, "stream").await;
    assert_exact(&before, &after, &totals);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_works_on_a_different_relay() {
    let (cluster, relay_a) = start_stack().await;
    let relay_b = Relay::start(&cluster, RelayOptions::default()).await;
    relay_b.wait_ready().await;
    let db = cluster.client().await;
    open_channel(&db, "stream").await;
    let mut ws1 = Ws::connect(&relay_a.ws_url(), Connect::Anonymous).await;
    ws1.subscribe_ok("stream").await;
    let stop = Arc::new(AtomicBool::new(false));
    let pubs = vec![publisher(&cluster, "stream", 1, stop.clone())];
    let before = read_some(&mut ws1, "stream", 10).await;
    let cursor = before.last().unwrap()["cursor"].as_str().unwrap().to_string();
    drop(ws1);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut ws2 = Ws::connect(&relay_b.ws_url(), Connect::Anonymous).await;
    let reply = resume(&mut ws2, "stream", &cursor).await;
    assert_eq!(reply["recovered"], true, "{reply}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let totals = stop_and_mark(&db, &stop, pubs, "stream").await;
    let after = until_end(&mut ws2, "stream").await;
    assert_exact(&before, &after, &totals);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_across_relay_kill_and_restart_with_concurrent_publishers() {
    let (cluster, relay) = start_stack().await;
    let id = relay.relay_id().to_string();
    let db = cluster.client().await;
    open_channel(&db, "stream").await;
    let mut ws1 = Ws::connect(&relay.ws_url(), Connect::Anonymous).await;
    ws1.subscribe_ok("stream").await;
    let stop = Arc::new(AtomicBool::new(false));
    let pubs =
        vec![publisher(&cluster, "stream", 1, stop.clone()), publisher(&cluster, "stream", 2, stop.clone())];
    let before = read_some(&mut ws1, "stream", 20).await;
    let cursor = before.last().unwrap()["cursor"].as_str().unwrap().to_string();
    relay.kill().await;
    drop(ws1);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let relay = Relay::start(&cluster, RelayOptions { relay_id: Some(id), ..Default::default() }).await;
    relay.wait_ready().await;
    let mut ws2 = Ws::connect(&relay.ws_url(), Connect::Anonymous).await;
    let reply = resume(&mut ws2, "stream", &cursor).await;
    assert_eq!(reply["recovered"], true, "{reply}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let totals = stop_and_mark(&db, &stop, pubs, "stream").await;
    let after = until_end(&mut ws2, "stream").await;
    assert_exact(&before, &after, &totals);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_with_the_subscribe_reply_cursor_gets_what_followed() {
    let (cluster, relay) = start_stack().await;
    let db = cluster.client().await;
    open_channel(&db, "quiet").await;
    let mut ws1 = Ws::connect(&relay.ws_url(), Connect::Anonymous).await;
    let reply = ws1.subscribe_ok("quiet").await;
    let cursor = reply["cursor"].as_str().unwrap().to_string();
    drop(ws1);
    let mut ws2 = Ws::connect(&relay.ws_url(), Connect::Anonymous).await;
    let same = resume(&mut ws2, "quiet", &cursor).await;
    assert_eq!(same["recovered"], true, "nothing missed: {same}");
    drop(ws2);
    // A live subscriber tells when the relay has dispatched the two ticks: only then is the
    // resume below sure to find them behind its position (replayed) rather than still to come.
    let mut watcher = Ws::connect(&relay.ws_url(), Connect::Anonymous).await;
    watcher.subscribe_ok("quiet").await;
    publish(&db, "quiet", "tick", &json!({"p": 1, "n": 1})).await;
    publish(&db, "quiet", "tick", &json!({"p": 1, "n": 2})).await;
    publish(&db, "quiet", "end", &json!({})).await;
    assert_eq!(until_end(&mut watcher, "quiet").await.len(), 2);
    let mut ws3 = Ws::connect(&relay.ws_url(), Connect::Anonymous).await;
    let again = resume(&mut ws3, "quiet", &cursor).await;
    assert_eq!(again["recovered"], true, "{again}");
    let after = until_end(&mut ws3, "quiet").await;
    let ns: Vec<_> = after.iter().map(|m| (m["payload"]["n"].clone(), m["replayed"].clone())).collect();
    assert_eq!(ns, [(json!(1), json!(true)), (json!(2), json!(true))], "{after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_old_or_unknown_cursor_gets_reset_then_live() {
    let options =
        RelayOptions { extra_args: vec!["--replay-window-secs".into(), "1".into()], ..Default::default() };
    let (cluster, relay) = start_stack_with(options).await;
    let db = cluster.client().await;
    open_channel(&db, "news").await;
    let mut ws1 = Ws::connect(&relay.ws_url(), Connect::Anonymous).await;
    ws1.subscribe_ok("news").await;
    publish(&db, "news", "tick", &json!({"n": 1})).await;
    let old = ws1.expect_message("news").await["cursor"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    // The relay must have dispatched tick 2 before the resumes below (else it would reach them
    // live, after the reset); a live subscriber sees when it has.
    publish(&db, "news", "tick", &json!({"n": 2})).await;
    assert_eq!(ws1.expect_message("news").await["payload"]["n"], 2);
    drop(ws1);

    let unknown = "0000000000000001".to_string() + "0000000000000001";
    for cursor in [old.as_str(), unknown.as_str(), "ffffffffffffffff0000000000000001"] {
        let mut ws = Ws::connect(&relay.ws_url(), Connect::Anonymous).await;
        let reply = resume(&mut ws, "news", cursor).await;
        assert_eq!(reply["ok"], true, "{reply}");
        assert_eq!(reply["recovered"], false, "{cursor}: {reply}");
        let reset = ws.recv_json().await;
        assert_eq!(reset["type"], "reset", "{reset}");
        assert_eq!(reset["channel"], "news", "{reset}");
        assert_eq!(reset["cursor"], reply["cursor"], "{reset}");
        publish(&db, "news", "live", &json!({"n": 3})).await;
        let live = ws.expect_message("news").await;
        assert_eq!(live["event"], "live", "nothing replayed after a reset: {live}");
        assert!(live.get("replayed").is_none(), "{live}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_missed_than_max_replay_gets_reset() {
    let options = RelayOptions { extra_args: vec!["--max-replay".into(), "2".into()], ..Default::default() };
    let (cluster, relay) = start_stack_with(options).await;
    let db = cluster.client().await;
    open_channel(&db, "busy").await;
    let mut ws1 = Ws::connect(&relay.ws_url(), Connect::Anonymous).await;
    let cursor = ws1.subscribe_ok("busy").await["cursor"].as_str().unwrap().to_string();
    drop(ws1);
    for n in 1..=3 {
        publish(&db, "busy", "tick", &json!({"n": n})).await;
    }
    let mut ws = Ws::connect(&relay.ws_url(), Connect::Anonymous).await;
    // The relay answers from its position: make sure it has dispatched all three.
    let mut probe = Ws::connect(&relay.ws_url(), Connect::Anonymous).await;
    probe.subscribe_ok("busy").await;
    publish(&db, "busy", "sync", &json!({})).await;
    probe.expect_message("busy").await;
    let reply = resume(&mut ws, "busy", &cursor).await;
    assert_eq!(reply["recovered"], false, "4 missed > --max-replay 2: {reply}");
    assert_eq!(ws.recv_json().await["type"], "reset");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_resume_cursor_is_invalid_request() {
    let (cluster, relay) = start_stack().await;
    let db = cluster.client().await;
    open_channel(&db, "c").await;
    let mut ws = Ws::connect(&relay.ws_url(), Connect::Anonymous).await;
    for bad in ["", "xyz", "00000016B374D848000000000000002A", "00000016b374d848000000000000002a0"] {
        let reply = ws.request(json!({"type": "subscribe", "channel": "c", "resume": {"cursor": bad}})).await;
        assert_eq!(reply["ok"], false, "{reply}");
        assert_eq!(reply["error"]["code"], "REALTIME_INVALID_REQUEST", "{bad:?}: {reply}");
    }
    ws.subscribe_ok("c").await;
}

/// `realtime_resumes_total` of `path` on the relay on `port`.
async fn resumes(port: u16, path: &str) -> f64 {
    scrape_metric(port, &format!("realtime_resumes_total{{path=\"{path}\"}}")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_from_the_last_message_is_answered_from_memory_and_one_that_missed_some_reads_the_log() {
    let (cluster, relay) = start_stack().await;
    let db = cluster.client().await;
    open_channel(&db, "room").await;
    // Another subscriber keeps the channel subscribed on this relay while the client is away
    // (the hub tracks the last message only of channels someone here listens to).
    let mut watcher = Ws::connect(&relay.ws_url(), Connect::Anonymous).await;
    watcher.subscribe_ok("room").await;
    let mut ws1 = Ws::connect(&relay.ws_url(), Connect::Anonymous).await;
    ws1.subscribe_ok("room").await;
    publish(&db, "room", "tick", &json!({"n": 1})).await;
    publish(&db, "room", "tick", &json!({"n": 2})).await;
    let first = ws1.expect_message("room").await["cursor"].as_str().unwrap().to_string();
    let last = ws1.expect_message("room").await["cursor"].as_str().unwrap().to_string();
    assert_eq!(watcher.expect_message("room").await["payload"]["n"], 1);
    assert_eq!(watcher.expect_message("room").await["payload"]["n"], 2);
    drop(ws1);

    let mut ws2 = Ws::connect(&relay.ws_url(), Connect::Anonymous).await;
    let reply = resume(&mut ws2, "room", &last).await;
    assert_eq!((reply["ok"].clone(), reply["recovered"].clone()), (json!(true), json!(true)), "{reply}");
    assert_eq!(resumes(relay.port(), "memory").await, 1.0, "nothing missed: no read of the log");
    assert_eq!(resumes(relay.port(), "log").await, 0.0);
    publish(&db, "room", "tick", &json!({"n": 3})).await;
    publish(&db, "room", "end", &json!({})).await;
    let after = until_end(&mut ws2, "room").await;
    let got: Vec<_> = after.iter().map(|m| (m["payload"]["n"].clone(), m.get("replayed").cloned())).collect();
    assert_eq!(got, [(json!(3), None)], "only what followed, live, once: {after:?}");

    // From the first message, ticks 2 and 3 (and the end) were missed: they come from the log.
    let mut ws3 = Ws::connect(&relay.ws_url(), Connect::Anonymous).await;
    let reply = resume(&mut ws3, "room", &first).await;
    assert_eq!(reply["recovered"], true, "{reply}");
    let replayed = until_end(&mut ws3, "room").await;
    let ns: Vec<_> = replayed.iter().map(|m| (m["payload"]["n"].clone(), m["replayed"].clone())).collect();
    assert_eq!(ns, [(json!(2), json!(true)), (json!(3), json!(true))], "{replayed:?}");
    assert_eq!(resumes(relay.port(), "log").await, 1.0);
    assert_eq!(resumes(relay.port(), "memory").await, 1.0);
}
