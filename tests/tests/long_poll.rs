//! Long-poll end to end (`GET /v1/poll`): it answers at once with what lies after the cursor
//! (merged across channels in cursor order, cut by `limit` with `more`), else waits for the next
//! message or times out empty; a cursor outside the replay window gets `reset`; refusals are
//! HTTP errors; a poll the client abandons leaves no subscription behind.

use std::time::{Duration, Instant};

use realtime_e2e::{
    exec, http_get, http_post_json, http_send, open_channel, publish, start_stack, start_stack_with, Connect,
    RelayOptions, Ws,
};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

/// `GET path`: status and JSON body.
async fn poll(port: u16, path: &str) -> (u16, Value) {
    let r = http_send(port, "GET", path, &[], b"").await.expect("poll answered");
    let body = serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", r.body));
    (r.status, body)
}

fn ns(body: &Value) -> Vec<(String, i64)> {
    body["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| (m["channel"].as_str().unwrap().to_string(), m["payload"]["n"].as_i64().unwrap()))
        .collect()
}

/// `realtime_subscriptions` now.
async fn subscriptions(port: u16) -> f64 {
    let (_, text) = http_get(port, "/metrics").await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("realtime_subscriptions "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poll_returns_at_once_what_lies_after_the_cursor_in_order_and_pages_by_limit() {
    let (cluster, relay) = start_stack().await;
    let db = cluster.client().await;
    open_channel(&db, "room:%").await;
    let port = relay.port();

    let (status, start) = poll(port, "/v1/poll?channel=room:a&channel=room:b").await;
    assert_eq!((status, start["messages"].as_array().map(Vec::len)), (200, Some(0)), "{start}");
    let p0 = start["cursor"].as_str().expect("a starting cursor").to_string();

    // One commit, so one answer holds all of it whether the poll comes before or after the
    // relay dispatched it.
    let mut sql = String::from("BEGIN;");
    for (ch, n) in
        [("room:a", 1), ("room:b", 2), ("room:other", 0), ("room:a", 3), ("room:b", 4), ("room:a", 5)]
    {
        sql.push_str(&format!("SELECT realtime.publish('{ch}', 'said', '{{\"n\": {n}}}');"));
    }
    exec(&db, &(sql + "COMMIT;")).await;
    let t = Instant::now();
    let (_, all) = poll(port, &format!("/v1/poll?channel=room:a&channel=room:b&cursor={p0}&wait=20")).await;
    assert!(t.elapsed() < Duration::from_secs(5), "answered at once, not after the wait");
    let expected: Vec<(String, i64)> =
        [("room:a", 1), ("room:b", 2), ("room:a", 3), ("room:b", 4), ("room:a", 5)]
            .map(|(c, n)| (c.into(), n))
            .to_vec();
    assert_eq!(ns(&all), expected);
    let last_cursor = all["messages"][4]["cursor"].as_str().unwrap();
    assert!(all["cursor"].as_str().unwrap() >= last_cursor && all.get("more").is_none(), "{all}");
    assert!(all["messages"][0].get("type").is_none(), "history objects, without type");

    // Paged by limit: each page continues exactly where the last stopped.
    let mut cursor = p0.clone();
    let mut paged = Vec::new();
    loop {
        let (_, page) =
            poll(port, &format!("/v1/poll?channel=room:a&channel=room:b&cursor={cursor}&limit=2&wait=0"))
                .await;
        let got = ns(&page);
        assert!(got.len() <= 2, "{page}");
        paged.extend(got);
        cursor = page["cursor"].as_str().unwrap().to_string();
        if page.get("more").is_none() {
            break;
        }
        assert_eq!(
            cursor,
            page["messages"][1]["cursor"].as_str().unwrap(),
            "a cut page continues after its last"
        );
    }
    assert_eq!(paged, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poll_waits_for_the_next_message_or_times_out_empty() {
    let (cluster, relay) = start_stack().await;
    let db = cluster.client().await;
    open_channel(&db, "room:%").await;
    let port = relay.port();
    let (_, start) = poll(port, "/v1/poll?channel=room:a").await;
    let p0 = start["cursor"].as_str().unwrap().to_string();

    // Nothing comes: an empty answer after about `wait`, with a cursor to continue from.
    let t = Instant::now();
    let (status, empty) = poll(port, &format!("/v1/poll?channel=room:a&cursor={p0}&wait=1")).await;
    let took = t.elapsed();
    assert_eq!((status, ns(&empty).len()), (200, 0), "{empty}");
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(5), "waited {took:?}");
    let p1 = empty["cursor"].as_str().unwrap().to_string();
    assert!(p1 >= p0);

    // A message on another channel does not answer it; the next one on its channel does.
    let waiting = tokio::spawn(async move {
        let t = Instant::now();
        let r = poll(port, &format!("/v1/poll?channel=room:a&cursor={p1}&wait=8")).await;
        (r, t.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(800)).await;
    publish(&db, "room:b", "said", &json!({"n": 0})).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    publish(&db, "room:a", "said", &json!({"n": 1})).await;
    let ((status, got), took) = waiting.await.unwrap();
    assert_eq!((status, ns(&got)), (200, vec![("room:a".to_string(), 1)]), "{got}");
    assert!(
        took >= Duration::from_millis(1400) && took < Duration::from_secs(6),
        "answered at the message: {took:?}"
    );

    // Polling on from its cursor: nothing doubled.
    let c = got["cursor"].as_str().unwrap();
    let (_, next) = poll(port, &format!("/v1/poll?channel=room:a&cursor={c}&wait=0")).await;
    assert_eq!(ns(&next), vec![]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_cursors_reset_refusals_are_http_errors_and_an_abandoned_poll_leaves_nothing() {
    let (cluster, relay) = start_stack().await;
    let db = cluster.client().await;
    exec(
        &db,
        "INSERT INTO realtime.channels (pattern) VALUES ('public'), ('private');
         CREATE POLICY everyone_public ON realtime.channels FOR SELECT USING (pattern = 'public');",
    )
    .await;
    publish(&db, "public", "said", &json!({"n": 1})).await;
    let port = relay.port();

    let (status, reset) = poll(port, "/v1/poll?channel=public&cursor=00000000000000010000000000000001").await;
    assert_eq!((status, &reset["reset"], ns(&reset).len()), (200, &json!(true), 0), "{reset}");
    let (_, after) =
        poll(port, &format!("/v1/poll?channel=public&cursor={}&wait=0", reset["cursor"].as_str().unwrap()))
            .await;
    assert_eq!(ns(&after), vec![], "the reset cursor is the current position");

    let (status, body) = poll(port, "/v1/poll?channel=public&channel=private&cursor=").await;
    assert_eq!((status, &body["error"]["code"]), (403, &json!("REALTIME_UNAUTHORIZED")), "{body}");
    let (status, body) = poll(port, "/v1/poll?channel=nowhere").await;
    assert_eq!((status, &body["error"]["code"]), (404, &json!("REALTIME_NOT_FOUND")), "{body}");
    let (status, body) = poll(port, "/v1/poll?channel=public&cursor=nope").await;
    assert_eq!((status, &body["error"]["code"]), (400, &json!("REALTIME_INVALID_REQUEST")), "{body}");
    let (status, _) = poll(port, "/v1/poll?channel=public&token=garbage").await;
    assert_eq!(status, 401);

    // A poll left waiting holds a subscription; once its client goes away, it holds none.
    let (_, start) = poll(port, "/v1/poll?channel=public").await;
    let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let request = format!(
        "GET /v1/poll?channel=public&cursor={}&wait=30 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        start["cursor"].as_str().unwrap()
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while subscriptions(port).await < 1.0 {
        assert!(Instant::now() < deadline, "the waiting poll never registered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(socket);
    let deadline = Instant::now() + Duration::from_secs(5);
    while subscriptions(port).await > 0.0 {
        assert!(Instant::now() < deadline, "the abandoned poll is still subscribed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_of_a_poll_client_lives_while_it_heartbeats_and_ends_when_it_stops() {
    // Leases of 2 s (default 30) so the test sees one lapse quickly.
    let options =
        RelayOptions { extra_args: vec!["--presence-lease-secs".into(), "2".into()], ..Default::default() };
    let (cluster, relay) = start_stack_with(options).await;
    let db = cluster.client().await;
    open_channel(&db, "room:%").await;
    let port = relay.port();
    let (alice, bob) =
        (relay.token(Some("alice"), "authenticated"), relay.token(Some("bob"), "authenticated"));
    let mut watcher = Ws::connect(&relay.ws_url(), Connect::Bearer(bob.clone())).await;
    watcher.subscribe_ok("room:a").await;

    let track = json!({"channel": "room:a", "state": {"name": "Alice"}});
    let (status, body) = http_post_json(port, "/v1/presence/track", Some(&alice), &track).await.unwrap();
    assert_eq!((status, &body["ok"], &body["expires_in"]), (200, &json!(true), &json!(2)), "{body}");
    let lease = body["lease"].as_str().expect("a lease").to_string();
    let join = watcher.recv_json().await;
    assert_eq!((&join["event"], &join["member"]["user_id"]), (&json!("join"), &json!("alice")), "{join}");

    // Heartbeats keep it (three lease lengths), and only alice may send them.
    let beat = json!({"lease": lease});
    let (status, _) = http_post_json(port, "/v1/presence/heartbeat", Some(&bob), &beat).await.unwrap();
    assert_eq!(status, 403, "bob may not keep alice's lease");
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (status, _) = http_post_json(port, "/v1/presence/heartbeat", Some(&alice), &beat).await.unwrap();
        assert_eq!(status, 200);
    }
    watcher.expect_no_message(Duration::from_millis(100)).await;

    // An unknown channel is refused as a subscribe would be, and leaves the lease as it was.
    let (status, body) = http_post_json(
        port,
        "/v1/presence/track",
        Some(&alice),
        &json!({"lease": lease, "channel": "nowhere"}),
    )
    .await
    .unwrap();
    assert_eq!((status, &body["error"]["code"]), (404, &json!("REALTIME_NOT_FOUND")), "{body}");

    // No more heartbeats: the member leaves once the lease lapses.
    let t = Instant::now();
    let leave = watcher.recv_json_within(Duration::from_secs(10)).await;
    assert_eq!((&leave["event"], &leave["member"]["user_id"]), (&json!("leave"), &json!("alice")), "{leave}");
    assert!(t.elapsed() >= Duration::from_millis(1500), "not before the lease lapsed: {:?}", t.elapsed());
    let (status, _) = http_post_json(port, "/v1/presence/heartbeat", Some(&alice), &beat).await.unwrap();
    assert_eq!(status, 404, "the lease is gone");
}
