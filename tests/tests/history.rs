//! History end to end: the `history` frame and `GET /v1/channels/{channel}/history` return a
//! channel's stored messages newest first, paged by `before` (a cursor or a message id), each
//! exactly as its live `message` frame carried it, and only to clients allowed to subscribe.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use realtime_e2e::{create_channel, exec, http_get, open_channel, publish, start_stack, Connect, Ws};
use serde_json::{json, Value};

/// Sends a `history` frame and returns the reply.
async fn history(ws: &mut Ws, channel: &str, limit: Option<u64>, before: Option<&str>) -> Value {
    let mut frame = json!({"type": "history", "channel": channel});
    if let Some(l) = limit {
        frame["limit"] = json!(l);
    }
    if let Some(b) = before {
        frame["before"] = json!(b);
    }
    ws.request(frame).await
}

/// Sends a `history` frame and returns the `messages` of its ok reply.
async fn history_ok(ws: &mut Ws, channel: &str, limit: Option<u64>, before: Option<&str>) -> Vec<Value> {
    let reply = history(ws, channel, limit, before).await;
    if reply["ok"] != true {
        ws.fail(&format!("history was not ok: {reply}"));
    }
    reply["messages"].as_array().unwrap_or_else(|| ws.fail(&format!("no messages array: {reply}"))).clone()
}

/// Waits until the live message with payload `n` arrives on `channel`: the relay has then
/// dispatched everything before it, which is what history without `before` answers from.
async fn seen(ws: &mut Ws, channel: &str, n: i64) {
    while ws.expect_message(channel).await["payload"]["n"] != n {}
}

fn numbers(msgs: &[Value]) -> Vec<i64> {
    msgs.iter().map(|m| m["payload"]["n"].as_i64().unwrap_or(-1)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_pages_newest_first_by_cursor_and_by_message_id() {
    let (cluster, relay) = start_stack().await;
    let db = cluster.client().await;
    open_channel(&db, "room").await;
    create_channel(&db, "elsewhere").await;
    let mut ws = Ws::connect(&relay.ws_url(), Connect::Anonymous).await;
    ws.subscribe_ok("room").await;
    let mut ids = Vec::new();
    for n in 1..=7 {
        ids.push(publish(&db, "room", "said", &json!({"n": n})).await);
    }
    publish(&db, "elsewhere", "said", &json!({"n": 99})).await;
    seen(&mut ws, "room", 7).await;

    let all = history_ok(&mut ws, "room", None, None).await;
    assert_eq!(numbers(&all), [7, 6, 5, 4, 3, 2, 1], "default limit, newest first, only this channel");

    let first = history_ok(&mut ws, "room", Some(3), None).await;
    assert_eq!(numbers(&first), [7, 6, 5]);
    let oldest = first[2]["cursor"].as_str().unwrap().to_string();
    let second = history_ok(&mut ws, "room", Some(3), Some(&oldest)).await;
    assert_eq!(numbers(&second), [4, 3, 2], "before is exclusive");
    let by_id = history_ok(&mut ws, "room", Some(3), Some(&ids[1])).await;
    assert_eq!(numbers(&by_id), [1], "before by message id (of n=2)");
    let none = history_ok(&mut ws, "room", Some(3), Some(&ids[0])).await;
    assert!(none.is_empty(), "nothing before the first message: {none:?}");

    for m in &all {
        let keys: Vec<&str> = m.as_object().unwrap().keys().map(String::as_str).collect();
        let mut keys = keys;
        keys.sort_unstable();
        assert_eq!(keys, ["channel", "created_at", "cursor", "event", "id", "payload", "sender"], "{m}");
    }
    let cursors: Vec<&str> = all.iter().map(|m| m["cursor"].as_str().unwrap()).collect();
    assert!(cursors.windows(2).all(|w| w[0] > w[1]), "cursors strictly descending: {cursors:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_limit_is_capped_at_1000_and_zero_is_refused() {
    let (cluster, relay) = start_stack().await;
    let db = cluster.client().await;
    open_channel(&db, "bulk").await;
    let mut ws = Ws::connect(&relay.ws_url(), Connect::Anonymous).await;
    ws.subscribe_ok("bulk").await;
    exec(
        &db,
        "SELECT realtime.publish('bulk', 'e', jsonb_build_object('n', g)) FROM generate_series(1, 1005) g",
    )
    .await;
    seen(&mut ws, "bulk", 1005).await;
    let capped = history_ok(&mut ws, "bulk", Some(5000), None).await;
    assert_eq!(capped.len(), 1000, "limit over 1000 is capped silently");
    assert_eq!(capped[0]["payload"]["n"], 1005);
    assert_eq!(capped[999]["payload"]["n"], 6);
    let zero = history(&mut ws, "bulk", Some(0), None).await;
    assert_eq!(zero["error"]["code"], "REALTIME_INVALID_REQUEST", "{zero}");
    let bad = history(&mut ws, "bulk", None, Some("not-a-cursor")).await;
    assert_eq!(bad["error"]["code"], "REALTIME_INVALID_REQUEST", "{bad}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_requires_subscribe_permission() {
    let (cluster, relay) = start_stack().await;
    let db = cluster.client().await;
    create_channel(&db, "private").await; // no policy: nobody but the owner sees it
    publish(&db, "private", "secret", &json!({"n": 1})).await;
    let mut ws = Ws::connect(&relay.ws_url(), Connect::Anonymous).await;
    let denied = history(&mut ws, "private", None, None).await;
    assert_eq!(denied["error"]["code"], "REALTIME_UNAUTHORIZED", "{denied}");
    let missing = history(&mut ws, "nowhere", None, None).await;
    assert_eq!(missing["error"]["code"], "REALTIME_NOT_FOUND", "{missing}");

    let (status, body) = http_get(relay.port(), "/v1/channels/private/history").await.unwrap();
    assert_eq!(status, 403, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], "REALTIME_UNAUTHORIZED", "{body}");
    let (status, body) = http_get(relay.port(), "/v1/channels/nowhere/history").await.unwrap();
    assert_eq!(status, 404, "{body}");
    let (status, body) = http_get(relay.port(), "/v1/channels/private/history?token=garbage").await.unwrap();
    assert_eq!(status, 401, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], "REALTIME_UNAUTHORIZED", "{body}");
    let (status, body) = http_get(relay.port(), "/v1/channels/private/history?limit=x").await.unwrap();
    assert_eq!(status, 400, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_history_equals_frame_history() {
    let (cluster, relay) = start_stack().await;
    let db = cluster.client().await;
    open_channel(&db, "chat:lobby").await;
    let mut ws = Ws::connect(&relay.ws_url(), Connect::Anonymous).await;
    ws.subscribe_ok("chat:lobby").await;
    for n in 1..=5 {
        publish(&db, "chat:lobby", "said", &json!({"n": n, "text": "hé \"quoted\""})).await;
    }
    seen(&mut ws, "chat:lobby", 5).await;
    let frame = history_ok(&mut ws, "chat:lobby", Some(4), None).await;
    let token = relay.token(Some("u1"), "authenticated");
    let path = format!("/v1/channels/chat:lobby/history?limit=4&token={token}");
    let (status, body) = http_get(relay.port(), &path).await.unwrap();
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["messages"], Value::Array(frame.clone()));
    let before = frame[1]["cursor"].as_str().unwrap();
    let (status, body) =
        http_get(relay.port(), &format!("/v1/channels/chat:lobby/history?before={before}")).await.unwrap();
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(numbers(v["messages"].as_array().unwrap()), [3, 2, 1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_frame_equals_its_history_entry() {
    let (cluster, relay) = start_stack().await;
    let db = cluster.client().await;
    open_channel(&db, "feed").await;
    let mut ws = Ws::connect(&relay.ws_url(), Connect::Anonymous).await;
    ws.subscribe_ok("feed").await;
    publish(&db, "feed", "sys", &json!({"a": [1, 2.5, "x"], "nested": {"k": null}})).await;
    exec(
        &db,
        "INSERT INTO realtime.messages (channel, event, payload, sender_type, sender_id) \
         VALUES ('feed', 'usr', '{\"t\": \"hi\"}', 'user', 'alice')",
    )
    .await;
    let mut live = vec![ws.expect_message("feed").await, ws.expect_message("feed").await];
    for m in &mut live {
        m.as_object_mut().unwrap().remove("type");
    }
    let mut hist = history_ok(&mut ws, "feed", None, None).await;
    hist.reverse();
    assert_eq!(hist, live, "history entries equal the live frames' bodies");
    assert_eq!(live[1]["sender"], json!({"type": "user", "id": "alice"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_cursor_splits_history_and_live_without_gap_or_overlap() {
    let (cluster, relay) = start_stack().await;
    let db = cluster.client().await;
    open_channel(&db, "ticker").await;
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = {
        let (stop, client) = (stop.clone(), cluster.client().await);
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                publish(&client, "ticker", "tick", &json!({"n": n})).await;
            }
            n
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut ws = Ws::connect(&relay.ws_url(), Connect::Anonymous).await;
    let reply = ws.subscribe_ok("ticker").await;
    let cursor = reply["cursor"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let total = publisher.await.unwrap();
    publish(&db, "ticker", "tick", &json!({"n": total + 1})).await;

    let mut live = Vec::new();
    loop {
        let m = ws.expect_message("ticker").await;
        let n = m["payload"]["n"].as_i64().unwrap();
        assert!(
            m["cursor"].as_str().unwrap() > cursor.as_str(),
            "live message at or below the reply cursor: {m}"
        );
        live.push(n);
        if n == total + 1 {
            break;
        }
    }
    let mut before = Vec::new();
    let mut page_before = cursor.clone();
    loop {
        let page = history_ok(&mut ws, "ticker", Some(1000), Some(&page_before)).await;
        if page.is_empty() {
            break;
        }
        page_before = page.last().unwrap()["cursor"].as_str().unwrap().to_string();
        before.extend(numbers(&page));
    }
    before.reverse();
    assert!(!before.is_empty() && !live.is_empty(), "both sides have messages: {before:?} / {live:?}");
    let joined: Vec<i64> = before.iter().chain(live.iter()).copied().collect();
    let expected: Vec<i64> = (1..=total + 1).collect();
    assert_eq!(joined, expected, "history before the cursor + live = everything, once, in order");
}
