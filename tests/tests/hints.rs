//! Hint subscriptions end to end: a subscriber that asked for hints (`subscribe` with
//! `"hint": true`, `GET /v1/sse?hint=1`, `GET /v1/poll?hint=1`) gets each stored message's
//! channel, event, id and cursor but never its payload, also when the message is replayed on
//! resume; a full subscriber of the same channel (even on the same connection) still gets
//! everything; the hint's cursor is what the client pulls after.

use realtime_e2e::{http_send, open_channel, publish, start_stack, Connect, Sse, Ws};
use serde_json::{json, Value};

fn no_payload(frame: &Value) {
    for field in ["payload", "sender", "created_at"] {
        assert!(frame.get(field).is_none(), "a hint carries no {field}: {frame}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hint_subscriptions_get_no_payload_on_every_transport_and_pull_the_rest() {
    let (cluster, relay) = start_stack().await;
    let db = cluster.client().await;
    open_channel(&db, "room:%").await;
    let port = relay.port();

    // One connection: room:a as hints, room:b in full; another: room:a in full.
    let mut ws = Ws::connect(&relay.ws_url(), Connect::Anonymous).await;
    let reply = ws.request(json!({"type": "subscribe", "channel": "room:a", "hint": true})).await;
    assert_eq!(reply["ok"], true, "{reply}");
    let start = reply["cursor"].as_str().unwrap().to_string();
    ws.subscribe_ok("room:b").await;
    let mut full = Ws::connect(&relay.ws_url(), Connect::Anonymous).await;
    full.subscribe_ok("room:a").await;
    let mut sse = Sse::open(port, "/v1/sse?channel=room:a&hint=1", &[]).await.expect("hint stream");
    sse.until("ready").await;

    let id = publish(&db, "room:a", "said", &json!({"secret": "s1"})).await;
    publish(&db, "room:b", "said", &json!({"n": 2})).await;

    let hint = ws.recv_json().await;
    assert_eq!(
        (&hint["type"], &hint["channel"], &hint["event"], &hint["id"]),
        (&json!("hint"), &json!("room:a"), &json!("said"), &json!(id))
    );
    no_payload(&hint);
    let cursor = hint["cursor"].as_str().expect("a hint has the cursor").to_string();
    let b = ws.expect_message("room:b").await;
    assert_eq!(b["payload"], json!({"n": 2}), "the full subscription on the same connection is untouched");
    let a = full.expect_message("room:a").await;
    assert_eq!((&a["payload"], a["cursor"].as_str()), (&json!({"secret": "s1"}), Some(cursor.as_str())));

    let e = sse.until("hint").await;
    assert_eq!(e.id.as_deref(), Some(cursor.as_str()), "the SSE id is the cursor, as for messages");
    let v = e.json();
    assert_eq!((&v["type"], &v["id"]), (&json!("hint"), &json!(id)));
    no_payload(&v);

    // The pull: everything after the client's last cursor, in full.
    let r = http_send(port, "GET", &format!("/v1/poll?channel=room:a&cursor={start}&wait=0"), &[], b"")
        .await
        .unwrap();
    let pulled: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(pulled["messages"][0]["payload"], json!({"secret": "s1"}), "{pulled}");
    assert_eq!(pulled["messages"][0]["cursor"].as_str(), Some(cursor.as_str()));
    // A hint poll answers like a hint.
    let r =
        http_send(port, "GET", &format!("/v1/poll?channel=room:a&cursor={start}&wait=0&hint=1"), &[], b"")
            .await
            .unwrap();
    let hinted: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(hinted["messages"][0]["cursor"].as_str(), Some(cursor.as_str()), "{hinted}");
    no_payload(&hinted["messages"][0]);

    // Resume of a hint subscription replays hints.
    publish(&db, "room:a", "said", &json!({"secret": "s2"})).await;
    full.expect_message("room:a").await;
    let mut again = Ws::connect(&relay.ws_url(), Connect::Anonymous).await;
    let reply = again
        .request(
            json!({"type": "subscribe", "channel": "room:a", "hint": true, "resume": {"cursor": cursor}}),
        )
        .await;
    assert_eq!(reply["recovered"], true, "{reply}");
    let replayed = again.recv_json().await;
    assert_eq!((&replayed["type"], &replayed["replayed"]), (&json!("hint"), &json!(true)), "{replayed}");
    no_payload(&replayed);

    // Switching the subscription back to full.
    let reply = again.request(json!({"type": "unsubscribe", "channel": "room:a"})).await;
    assert_eq!(reply["ok"], true);
    again.subscribe_ok("room:a").await;
    publish(&db, "room:a", "said", &json!({"secret": "s3"})).await;
    assert_eq!(again.expect_message("room:a").await["payload"], json!({"secret": "s3"}));

    let bad = again.request(json!({"type": "subscribe", "channel": "room:c", "hint": "yes"})).await;
    assert_eq!(bad["error"]["code"], "REALTIME_INVALID_REQUEST", "{bad}");
}
