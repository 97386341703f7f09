//! Bursts and memory, with the relay's default settings: a burst larger than any queue never
//! closes a healthy subscriber (it catches up from `realtime.messages`, in order, nothing lost
//! or doubled); ephemeral messages a lagging subscriber misses are reported, never silent; and
//! replies are bounded in bytes, so clients that never read and concurrent large history reads
//! leave the relay's memory bounded.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use realtime_e2e::{exec, http_get, open_channel, start_stack, Relay};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A raw protocol v1 socket subscribed to `channel` (the reply read).
async fn subscribed(relay: &Relay, channel: &str) -> Socket {
    let (mut ws, _) = tokio_tungstenite::connect_async(relay.ws_url()).await.expect("connect");
    let frame = json!({"type": "subscribe", "ref": 1, "channel": channel}).to_string();
    ws.send(Message::text(frame)).await.expect("send subscribe");
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) if t.contains(r#""type":"reply""#) => {
                assert!(t.contains(r#""ok":true"#), "subscribe refused: {t}");
                return ws;
            }
            Some(Ok(_)) => {}
            other => panic!("no subscribe reply: {other:?}"),
        }
    }
}

/// The `record.id` of a table change `message` frame (`"record": {"n": 1, "id": 7}`, as
/// `jsonb` prints it), read without parsing the whole frame.
fn record_id(frame: &str) -> Option<i64> {
    let record = &frame[frame.find(r#""record": {"#)?..];
    let record = &record[..record.find('}')?];
    let at = record.find(r#""id": "#)? + r#""id": "#.len();
    let digits: String = record[at..].chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

/// Reads `rows` change messages and checks they are ids 1..=rows in order, each once. A slow
/// reader pauses 20 ms after every 500 messages (steady, never stalled). Returns the cursors'
/// count of frames that were replays.
async fn read_all(mut ws: Socket, rows: i64, slow: bool, who: usize) -> usize {
    let mut next = 1;
    let mut replayed = 0;
    while next <= rows {
        let frame = match tokio::time::timeout(Duration::from_secs(60), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => t,
            Ok(Some(Ok(Message::Close(c)))) => panic!("subscriber {who} closed at {next} of {rows}: {c:?}"),
            Ok(Some(Ok(_))) => continue,
            other => panic!("subscriber {who} lost its socket at {next} of {rows}: {other:?}"),
        };
        if !frame.contains(r#""type":"message""#) {
            continue;
        }
        let id = record_id(&frame).unwrap_or_else(|| panic!("subscriber {who}: no record id in {frame}"));
        assert_eq!(id, next, "subscriber {who}: out of order, missing or doubled");
        replayed += usize::from(frame.contains(r#""replayed":true"#));
        next += 1;
        if slow && next % 500 == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    replayed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100000_row_update_reaches_50_subscribers_in_order_and_closes_none() {
    const ROWS: i64 = 100_000;
    const SUBSCRIBERS: usize = 50;
    let (cluster, relay) = start_stack().await;
    let db = cluster.client().await;
    open_channel(&db, "bulk").await;
    exec(
        &db,
        &format!(
            "CREATE TABLE public.bulk (id int PRIMARY KEY, n int NOT NULL);
             INSERT INTO bulk SELECT g, 0 FROM generate_series(1, {ROWS}) g;
             SELECT realtime.watch_table('bulk', events => '{{UPDATE}}');"
        ),
    )
    .await;
    let mut readers = Vec::new();
    for who in 0..SUBSCRIBERS {
        let ws = subscribed(&relay, "bulk").await;
        readers.push(tokio::spawn(read_all(ws, ROWS, who == 0, who)));
    }
    let rss_before = relay.rss_kib();
    exec(&db, "UPDATE bulk SET n = n + 1").await;
    let mut replayed = 0;
    for r in readers {
        replayed += tokio::time::timeout(Duration::from_secs(600), r).await.expect("readers finish").unwrap();
    }
    assert!(replayed > 0, "the burst outran the queues, so subscribers caught up from the log");
    let growth_mib = relay.rss_kib().saturating_sub(rss_before) / 1024;
    assert!(growth_mib < 200, "relay memory grew {growth_mib} MiB for a 100,000-row burst to 50 subscribers");
    let log = relay.log();
    assert!(!log.contains("too slow"), "no subscriber was closed:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ephemeral_messages_a_lagging_subscriber_misses_are_reported_never_silent() {
    let (cluster, relay) = start_stack().await;
    let db = cluster.client().await;
    open_channel(&db, "mixed").await;
    let mut ws = subscribed(&relay, "mixed").await;
    // While the subscriber reads nothing: more stored messages in one commit than its queue and
    // its socket hold (it falls behind and replays them from the log), then 2 MB of ephemeral
    // ones, more than it may hold aside while it replays.
    exec(
        &db,
        "SELECT realtime.publish('mixed', 'stored', jsonb_build_object('n', g, 'pad', repeat('x', 500)))
           FROM generate_series(1, 20000) g",
    )
    .await;
    for n in 1..=20 {
        let sql = format!(
            "SELECT realtime.broadcast('mixed', 'typing', jsonb_build_object('n', {n}, 'pad', repeat('y', 100000)))"
        );
        exec(&db, &sql).await;
    }
    exec(&db, "SELECT realtime.publish('mixed', 'end', '{}')").await;
    let (mut stored, mut typing, mut dropped, mut ended) = (0, 0, 0, false);
    // The notice may come after the replayed end (it is sent when the subscription turns live).
    while !(ended && typing + dropped >= 20) {
        let frame = match tokio::time::timeout(Duration::from_secs(60), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => t,
            Ok(Some(Ok(_))) => continue,
            other => panic!("socket ended: {other:?} (stored {stored}, typing {typing}, dropped {dropped}, ended {ended})"),
        };
        let v: Value = serde_json::from_str(&frame).unwrap();
        match (v["type"].as_str(), v["event"].as_str()) {
            (Some("message"), Some("stored")) => {
                stored += 1;
                assert_eq!(v["payload"]["n"], stored, "stored messages in order, none missing");
            }
            (Some("message"), Some("typing")) => typing += 1,
            (Some("dropped"), _) => {
                assert_eq!(v["channel"], "mixed", "{v}");
                dropped += v["count"].as_u64().unwrap();
            }
            (Some("message"), Some("end")) => ended = true,
            _ => {}
        }
    }
    assert_eq!(stored, 20000);
    assert_eq!(typing + dropped, 20, "every ephemeral message delivered or counted as dropped");
    assert!(dropped > 0, "the lagging subscriber could not hold 2 MB aside: some were dropped, and said so");
}

/// Inserts `n` messages of about `bytes` each on `channel`, and waits until the relay has
/// dispatched them (history reads before the relay's position).
async fn fill(relay: &Relay, db: &tokio_postgres::Client, channel: &str, n: usize, bytes: usize) {
    exec(
        db,
        &format!(
            "SELECT realtime.publish('{channel}', 'big', jsonb_build_object('n', g, 'blob', repeat('x', {bytes})))
               FROM generate_series(1, {n}) g"
        ),
    )
    .await;
    for _ in 0..100 {
        let (status, body) =
            http_get(relay.port(), &format!("/v1/channels/{channel}/history?limit=1")).await.unwrap();
        if status == 200 && body.contains(&format!("\"n\": {n},")) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the relay never showed the newest message of {channel}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_request_history_and_never_read_leave_memory_bounded() {
    let (cluster, relay) = start_stack().await;
    let db = cluster.client().await;
    open_channel(&db, "big").await;
    fill(&relay, &db, "big", 64, 900_000).await;
    let rss_before = relay.rss_kib();
    // Four clients each ask for the whole history many times and never read an answer: a
    // history page is bounded in bytes, and a connection whose queue is over its budget reads no
    // more requests (its client is held back by TCP).
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (mut ws, _) = tokio_tungstenite::connect_async(relay.ws_url()).await.expect("connect");
        for r in 0..40 {
            let frame = json!({"type": "history", "ref": r, "channel": "big", "limit": 1000}).to_string();
            if tokio::time::timeout(Duration::from_secs(2), ws.send(Message::text(frame))).await.is_err() {
                break; // the relay stopped reading: TCP pushes back
            }
        }
        clients.push(ws);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let growth_mib = relay.rss_kib().saturating_sub(rss_before) / 1024;
    assert!(growth_mib < 64, "relay memory grew {growth_mib} MiB for four clients that never read");
    drop(clients);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_http_history_reads_are_bounded_and_memory_returns_after() {
    let (cluster, relay) = start_stack().await;
    let db = cluster.client().await;
    open_channel(&db, "big").await;
    fill(&relay, &db, "big", 64, 900_000).await;
    let (status, body) = http_get(relay.port(), "/v1/channels/big/history?limit=1000").await.unwrap();
    assert_eq!(status, 200, "{body}");
    let page: Value = serde_json::from_str(&body).unwrap();
    let got = page["messages"].as_array().unwrap().len();
    assert!((1..64).contains(&got), "a page is cut by bytes, not only by limit: {got} messages");
    assert_eq!(page["more"], true, "the page says more may follow");
    let rss_before = relay.rss_kib();
    let port = relay.port();
    let reads: Vec<_> = (0..12)
        .map(|_| tokio::spawn(async move { http_get(port, "/v1/channels/big/history?limit=1000").await }))
        .collect();
    let mut peak = relay.rss_kib();
    for r in reads {
        let (status, _) = r.await.unwrap().unwrap();
        assert_eq!(status, 200);
        peak = peak.max(relay.rss_kib());
    }
    let peak_mib = peak.saturating_sub(rss_before) / 1024;
    assert!(peak_mib < 96, "twelve concurrent history reads grew the relay by {peak_mib} MiB");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after_mib = relay.rss_kib().saturating_sub(rss_before) / 1024;
    assert!(after_mib < 32, "the relay kept {after_mib} MiB after the reads ended");
}
