//! Publishing from clients and services: a client `publish` frame is an INSERT under the
//! client's role and claims (RLS `WITH CHECK` decides); `persist:false` is delivered live and
//! never stored; `POST /v1/publish` publishes one message or an all-or-nothing batch.

use realtime_e2e::{
    create_channel, exec, http_post_json, open_channel, start_stack, Cluster, Connect, Relay, Ws,
};
use serde_json::json;
use tokio_postgres::Client;

async fn stored_count(db: &Client, channel: &str) -> i64 {
    db.query_one("SELECT count(*) FROM realtime.messages WHERE channel = $1", &[&channel])
        .await
        .expect("count messages")
        .get(0)
}

/// A stack with channel `chat` open to every subscriber, where authenticated users may publish
/// as themselves.
async fn chat_stack() -> (Cluster, Relay, Client) {
    let (cluster, relay) = start_stack().await;
    let db = cluster.client().await;
    open_channel(&db, "chat").await;
    exec(
        &db,
        "CREATE POLICY chat_publish ON realtime.messages FOR INSERT TO authenticated
           WITH CHECK (channel = 'chat' AND sender_id = realtime.user_id())",
    )
    .await;
    (cluster, relay, db)
}

/// A connection as the authenticated user `alice`.
async fn alice(relay: &Relay) -> Ws {
    Ws::connect(&relay.ws_url(), Connect::Bearer(relay.token(Some("alice"), "authenticated"))).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_publish_allowed_by_rls_is_stored_and_delivered_with_id_and_cursor() {
    let (_cluster, relay, db) = chat_stack().await;
    let mut listener = Ws::connect(&relay.ws_url(), Connect::Anonymous).await;
    listener.subscribe_ok("chat").await;
    let mut alice = alice(&relay).await;

    let reply = alice
        .request(json!({"type":"publish","channel":"chat","event":"message","payload":{"text":"hi"}}))
        .await;
    assert_eq!(reply["ok"], true, "{reply}");
    let (id, cursor) = (reply["id"].as_str().unwrap(), reply["cursor"].as_str().unwrap());

    let msg = listener.expect_message("chat").await;
    assert_eq!(msg["id"], id, "{msg}");
    assert_eq!(msg["cursor"], cursor, "the reply's cursor is the delivered message's cursor: {msg}");
    assert_eq!(msg["payload"], json!({"text": "hi"}));
    assert_eq!(msg["sender"], json!({"type": "user", "id": "alice"}), "{msg}");
    let row = db
        .query_one("SELECT sender_type, sender_id FROM realtime.messages WHERE id::text = $1", &[&id])
        .await
        .expect("the published message is stored");
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, Option<String>>(1)),
        ("user".into(), Some("alice".into()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_publish_without_insert_policy_is_unauthorized_and_not_stored() {
    let (_cluster, relay, db) = chat_stack().await;
    create_channel(&db, "news").await;

    let mut anon = Ws::connect(&relay.ws_url(), Connect::Anonymous).await;
    let reply = anon.request(json!({"type":"publish","channel":"chat","event":"m","payload":{}})).await;
    assert_eq!(reply["error"]["code"], "REALTIME_UNAUTHORIZED", "anon has no insert policy: {reply}");
    let mut alice = alice(&relay).await;
    let reply = alice.request(json!({"type":"publish","channel":"news","event":"m"})).await;
    assert_eq!(reply["error"]["code"], "REALTIME_UNAUTHORIZED", "policy covers chat only: {reply}");
    let reply = alice.request(json!({"type":"publish","channel":"nomatch:1","event":"m"})).await;
    assert_eq!(reply["error"]["code"], "REALTIME_NOT_FOUND", "{reply}");
    assert_eq!(stored_count(&db, "chat").await + stored_count(&db, "news").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ephemeral_publish_is_delivered_but_never_stored() {
    let (_cluster, relay, db) = chat_stack().await;
    let mut listener = Ws::connect(&relay.ws_url(), Connect::Anonymous).await;
    listener.subscribe_ok("chat").await;
    let mut alice = alice(&relay).await;

    let reply = alice
        .request(
            json!({"type":"publish","channel":"chat","event":"typing","payload":{"on":true},"persist":false}),
        )
        .await;
    assert_eq!(reply["ok"], true, "{reply}");
    assert!(
        reply.get("cursor").is_none() && reply.get("id").is_none(),
        "ephemeral has no id/cursor: {reply}"
    );
    let msg = listener.expect_message("chat").await;
    assert_eq!((msg["event"].as_str(), &msg["payload"]), (Some("typing"), &json!({"on": true})), "{msg}");
    assert!(msg.get("cursor").is_none(), "ephemeral frames carry no cursor: {msg}");
    assert_eq!(msg["sender"], json!({"type": "user", "id": "alice"}));
    assert_eq!(stored_count(&db, "chat").await, 0, "ephemeral messages are never stored");

    let mut anon = Ws::connect(&relay.ws_url(), Connect::Anonymous).await;
    let reply =
        anon.request(json!({"type":"publish","channel":"chat","event":"typing","persist":false})).await;
    assert_eq!(reply["error"]["code"], "REALTIME_UNAUTHORIZED", "same check as persisted: {reply}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payload_over_configured_limit_is_payload_too_large() {
    let (_cluster, relay, db) = chat_stack().await;
    exec(&db, "UPDATE realtime.config SET max_payload_bytes = 100").await;
    let mut alice = alice(&relay).await;
    let big = "x".repeat(200);
    let reply =
        alice.request(json!({"type":"publish","channel":"chat","event":"m","payload":{"s": big}})).await;
    assert_eq!(reply["error"]["code"], "REALTIME_PAYLOAD_TOO_LARGE", "{reply}");
    let (status, body) = http_post_json(
        relay.port(),
        "/v1/publish",
        Some(&relay.token(None, "service_role")),
        &json!({"channel":"chat","event":"m","payload":{"s": big}}),
    )
    .await
    .unwrap();
    assert_eq!((status, &body["error"]["code"]), (413, &json!("REALTIME_PAYLOAD_TOO_LARGE")), "{body}");
    assert_eq!(stored_count(&db, "chat").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_publish_batch_returns_ids_in_order_and_is_all_or_nothing() {
    let (cluster, relay) = start_stack().await;
    let db = cluster.client().await;
    open_channel(&db, "feed").await;
    let service = relay.token(None, "service_role");
    let mut ws = Ws::connect(&relay.ws_url(), Connect::Anonymous).await;
    ws.subscribe_ok("feed").await;

    let batch = json!({"messages":[
        {"channel":"feed","event":"a","payload":{"n":1}},
        {"channel":"feed","event":"b","payload":{"n":2}}]});
    let (status, body) = http_post_json(relay.port(), "/v1/publish", Some(&service), &batch).await.unwrap();
    assert_eq!(status, 200, "{body}");
    let ids: Vec<&str> =
        body["messages"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    for (n, id) in ids.iter().enumerate() {
        let msg = ws.expect_message("feed").await;
        assert_eq!((msg["id"].as_str(), &msg["payload"]["n"]), (Some(*id), &json!(n + 1)), "{msg}");
        assert_eq!(msg["sender"], json!({"type": "system"}), "service publishes are system messages");
        assert_eq!(msg["cursor"], body["messages"][n]["cursor"]);
    }

    let bad = json!({"messages":[{"channel":"feed","event":"c"},{"channel":"nowhere","event":"d"}]});
    let (status, body) = http_post_json(relay.port(), "/v1/publish", Some(&service), &bad).await.unwrap();
    assert_eq!((status, &body["error"]["code"]), (404, &json!("REALTIME_NOT_FOUND")), "{body}");
    assert_eq!(stored_count(&db, "feed").await, 2, "the failed batch stored nothing");

    let (status, body) = http_post_json(
        relay.port(),
        "/v1/publish",
        Some(&relay.token(Some("bob"), "authenticated")),
        &json!({"channel":"feed","event":"x"}),
    )
    .await
    .unwrap();
    assert_eq!(
        (status, &body["error"]["code"]),
        (403, &json!("REALTIME_UNAUTHORIZED")),
        "RLS applies: {body}"
    );
    let (status, _) = http_post_json(
        relay.port(),
        "/v1/publish",
        Some("not-a-jwt"),
        &json!({"channel":"feed","event":"x"}),
    )
    .await
    .unwrap();
    assert_eq!(status, 401);
    let (status, body) =
        http_post_json(relay.port(), "/v1/publish", Some(&service), &json!({"event":"x"})).await.unwrap();
    assert_eq!((status, &body["error"]["code"]), (400, &json!("REALTIME_INVALID_REQUEST")), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ephemeral_and_persisted_publishes_reach_subscribers_on_every_relay() {
    let (cluster, relay_a, _db) = chat_stack().await;
    let relay_b = Relay::start(&cluster, Default::default()).await;
    relay_b.wait_ready().await;
    let mut on_a = Ws::connect(&relay_a.ws_url(), Connect::Anonymous).await;
    let mut on_b = Ws::connect(&relay_b.ws_url(), Connect::Anonymous).await;
    on_a.subscribe_ok("chat").await;
    on_b.subscribe_ok("chat").await;
    let mut alice = alice(&relay_a).await;

    alice.request(json!({"type":"publish","channel":"chat","event":"typing","persist":false})).await;
    let reply =
        alice.request(json!({"type":"publish","channel":"chat","event":"said","payload":{"t":1}})).await;
    for ws in [&mut on_a, &mut on_b] {
        let typing = ws.expect_message("chat").await;
        assert_eq!(typing["event"], "typing", "{typing}");
        let said = ws.expect_message("chat").await;
        assert_eq!((said["event"].as_str(), &said["cursor"]), (Some("said"), &reply["cursor"]), "{said}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_broadcast_is_delivered_at_commit_and_never_stored() {
    let (cluster, relay) = start_stack().await;
    let db = cluster.client().await;
    open_channel(&db, "room").await;
    let mut ws = Ws::connect(&relay.ws_url(), Connect::Anonymous).await;
    ws.subscribe_ok("room").await;

    exec(&db, "BEGIN; SELECT realtime.broadcast('room', 'rolled_back', '{}'); ROLLBACK;").await;
    exec(&db, r#"SELECT realtime.broadcast('room', 'cursor_moved', '{"x": 3}')"#).await;
    let msg = ws.expect_message("room").await;
    assert_eq!((msg["event"].as_str(), &msg["payload"]), (Some("cursor_moved"), &json!({"x": 3})), "{msg}");
    assert!(msg.get("cursor").is_none() && msg.get("id").is_none(), "ephemeral: {msg}");
    assert_eq!(msg["sender"], json!({"type": "system"}));
    assert_eq!(stored_count(&db, "room").await, 0, "broadcasts are never stored");
    realtime_e2e::publish(&db, "room", "marker", &json!({})).await;
    assert_eq!(ws.expect_message("room").await["event"], "marker", "the rolled-back broadcast never came");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ephemeral_publish_permission_is_remembered_per_connection_for_the_configured_time() {
    let (cluster, relay, db) = chat_stack().await;
    let options = realtime_e2e::RelayOptions {
        extra_args: vec!["--publish-check-ttl-secs".into(), "0".into()],
        ..Default::default()
    };
    let uncached = Relay::start(&cluster, options).await;
    uncached.wait_ready().await;
    let typing = json!({"type":"publish","channel":"chat","event":"typing","persist":false});
    let (mut cached_alice, mut uncached_alice) = (alice(&relay).await, alice(&uncached).await);
    assert_eq!(cached_alice.request(typing.clone()).await["ok"], true);
    assert_eq!(uncached_alice.request(typing.clone()).await["ok"], true);

    exec(&db, "DROP POLICY chat_publish ON realtime.messages").await;
    let reply = cached_alice.request(typing.clone()).await;
    assert_eq!(reply["ok"], true, "within the 10 s default the allowed decision is reused: {reply}");
    let reply = uncached_alice.request(typing.clone()).await;
    assert_eq!(
        reply["error"]["code"], "REALTIME_UNAUTHORIZED",
        "with a 0 s cache it is checked again: {reply}"
    );
    let reply = cached_alice.request(json!({"type":"publish","channel":"chat","event":"said"})).await;
    assert_eq!(
        reply["error"]["code"], "REALTIME_UNAUTHORIZED",
        "persisted publishes are never cached: {reply}"
    );
    let reply = alice(&relay).await.request(typing).await;
    assert_eq!(reply["error"]["code"], "REALTIME_UNAUTHORIZED", "the cache is per connection: {reply}");
}
