//! Server-Sent Events end to end (`GET /v1/sse`): a stream of several channels whose events
//! carry their cursor as `id:`; a reconnect with `Last-Event-ID` (or `?last_event_id=`) gets
//! exactly the missed messages of every channel, merged in cursor order, then live ones; a
//! cursor it cannot honour gets `reset`; refusals are HTTP errors; idle streams get keep-alive
//! comments; an expired token ends the stream with a `close` event; a client that reads
//! nothing is dropped without holding up anyone else; a stream asked for on a connection that
//! served other requests first (hyper's, not the relay's own stream writer) is the same.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use realtime_e2e::{
    exec, http_get, http_post_json, http_send, mint_token_with_exp, open_channel, publish, start_stack,
    start_stack_with, Connect, Relay, RelayOptions, Sse, SseEvent, Ws, JWT_SECRET,
};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TWO: &str = "/v1/sse?channel=room:a&channel=room:b";

/// Reads the opening of a stream: one `subscribed` per channel (in the order asked), any
/// `reset`s, then the replayed messages up to `ready`; returns (subscribed, resets, replayed,
/// ready).
async fn opening(s: &mut Sse, channels: &[&str]) -> (Vec<Value>, Vec<Value>, Vec<Value>, SseEvent) {
    let mut subscribed = Vec::new();
    for channel in channels {
        let e = s.next_event().await;
        assert_eq!(e.event, "subscribed", "{e:?}");
        let v = e.json();
        assert_eq!((v["ok"].as_bool(), v["channel"].as_str()), (Some(true), Some(*channel)), "{v}");
        assert!(e.id.is_none(), "a subscribed event moves no cursor");
        subscribed.push(v);
    }
    let (mut resets, mut replayed) = (Vec::new(), Vec::new());
    loop {
        let e = s.next_event().await;
        match e.event.as_str() {
            "reset" => resets.push(e.json()),
            "message" => {
                let v = e.json();
                assert_eq!(v["replayed"], true, "only replayed messages come before ready: {v}");
                assert_eq!(e.id.as_deref(), v["cursor"].as_str(), "id is the cursor");
                replayed.push(v);
            }
            "ready" => return (subscribed, resets, replayed, e),
            other => panic!("unexpected {other} event before ready: {e:?}"),
        }
    }
}

/// Reads `n` live message events; asserts each id is its cursor and ids increase.
async fn messages(s: &mut Sse, n: usize) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    while out.len() < n {
        let e = s.next_event().await;
        assert_eq!(e.event, "message", "{e:?}");
        let v = e.json();
        assert_eq!(e.id.as_deref(), v["cursor"].as_str(), "id is the cursor: {e:?}");
        if let Some(prev) = out.last() {
            assert!(prev["cursor"].as_str() < v["cursor"].as_str(), "ids increase: {prev} then {v}");
        }
        out.push(v);
    }
    out
}

/// Waits until the relay on `port` has dispatched the message `{n}` of `channel` (a long-poll
/// answers up to the relay's position).
async fn wait_dispatched(port: u16, channel: &str, after: &str, n: i64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = http_send(
            port,
            "GET",
            &format!("/v1/poll?channel={channel}&cursor={after}&wait=0&limit=1000"),
            &[],
            b"",
        )
        .await
        .unwrap();
        let body: Value = serde_json::from_str(&r.body).unwrap();
        if body["messages"].as_array().unwrap().iter().any(|m| m["payload"]["n"] == n) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "message {n} of {channel} not dispatched: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn ns(ms: &[Value]) -> Vec<(String, i64)> {
    ms.iter()
        .map(|m| (m["channel"].as_str().unwrap().to_string(), m["payload"]["n"].as_i64().unwrap()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_resumes_from_last_event_id_with_every_channel_merged_in_cursor_order() {
    let (cluster, relay) = start_stack().await;
    let db = cluster.client().await;
    open_channel(&db, "room:%").await;

    let mut s = Sse::open(relay.port(), TWO, &[]).await.expect("stream opens");
    assert_eq!(s.header("cache-control"), Some("no-cache, no-transform"));
    let (subscribed, resets, replayed, ready) = opening(&mut s, &["room:a", "room:b"]).await;
    assert!(resets.is_empty() && replayed.is_empty());
    assert!(subscribed.iter().all(|v| v.get("recovered").is_none()), "a fresh stream recovers nothing");
    assert_eq!(ready.id.as_deref(), ready.json()["cursor"].as_str(), "ready carries the floor as its id");

    for n in 1..=6 {
        let ch = if n % 2 == 1 { "room:a" } else { "room:b" };
        publish(&db, ch, "said", &json!({"n": n})).await;
    }
    publish(&db, "room:other", "said", &json!({"n": 0})).await;
    let got = messages(&mut s, 6).await;
    assert_eq!(
        ns(&got),
        (1..=6).map(|n| (if n % 2 == 1 { "room:a" } else { "room:b" }.to_string(), n)).collect::<Vec<_>>()
    );
    let last = s.last_event_id.clone().expect("an id");
    drop(s);

    // Missed while away: separate commits, and one commit holding both channels (b before a).
    for n in 7..=10 {
        let ch = if n % 2 == 1 { "room:a" } else { "room:b" };
        publish(&db, ch, "said", &json!({"n": n})).await;
    }
    exec(
        &db,
        "BEGIN; SELECT realtime.publish('room:b', 'said', '{\"n\": 11}'); \
         SELECT realtime.publish('room:other', 'said', '{\"n\": 0}'); \
         SELECT realtime.publish('room:a', 'said', '{\"n\": 12}'); COMMIT",
    )
    .await;

    // Only once the relay has dispatched all of it is all of it "missed" (anything later
    // would arrive live, after ready).
    wait_dispatched(relay.port(), "room:a", &last, 12).await;
    let mut s = Sse::open(relay.port(), TWO, &[("Last-Event-ID", &last)]).await.expect("stream reopens");
    let (subscribed, resets, replayed, ready) = opening(&mut s, &["room:a", "room:b"]).await;
    assert!(resets.is_empty(), "{resets:?}");
    assert!(subscribed.iter().all(|v| v["recovered"] == true), "{subscribed:?}");
    assert_eq!(
        ns(&replayed),
        [("room:a", 7), ("room:b", 8), ("room:a", 9), ("room:b", 10), ("room:b", 11), ("room:a", 12)]
            .map(|(c, n)| (c.to_string(), n))
            .to_vec(),
        "exactly the missed messages of both channels, merged in commit order"
    );
    let cursors: Vec<&str> = replayed.iter().map(|m| m["cursor"].as_str().unwrap()).collect();
    assert!(
        cursors.windows(2).all(|w| w[0] < w[1]) && cursors[0] > last.as_str(),
        "{cursors:?} after {last}"
    );
    assert!(ready.id.as_deref().unwrap() >= *cursors.last().unwrap(), "ready never moves the id back");

    publish(&db, "room:b", "said", &json!({"n": 13})).await;
    let live = messages(&mut s, 1).await;
    assert_eq!((ns(&live), live[0].get("replayed")), (vec![("room:b".to_string(), 13)], None));
    let last = s.last_event_id.clone().unwrap();
    drop(s);

    // The query parameter works too (for clients that cannot set headers); nothing was missed.
    let path = format!("{TWO}&last_event_id={last}");
    let mut s = Sse::open(relay.port(), &path, &[]).await.expect("stream reopens");
    let (subscribed, _, replayed, _) = opening(&mut s, &["room:a", "room:b"]).await;
    assert!(replayed.is_empty() && subscribed.iter().all(|v| v["recovered"] == true));
    publish(&db, "room:a", "said", &json!({"n": 14})).await;
    assert_eq!(ns(&messages(&mut s, 1).await), vec![("room:a".to_string(), 14)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_outside_the_replay_window_gets_reset_and_garbage_is_refused() {
    let (cluster, relay) = start_stack().await;
    let db = cluster.client().await;
    open_channel(&db, "room:%").await;

    // An old cursor of this database (its commit is not in the log): nothing to replay from.
    let old = "00000000000000010000000000000001";
    let mut s = Sse::open(relay.port(), TWO, &[("Last-Event-ID", old)]).await.expect("stream opens");
    let (subscribed, resets, replayed, ready) = opening(&mut s, &["room:a", "room:b"]).await;
    assert!(subscribed.iter().all(|v| v["recovered"] == false), "{subscribed:?}");
    assert_eq!(
        resets.iter().map(|r| r["channel"].as_str().unwrap()).collect::<Vec<_>>(),
        ["room:a", "room:b"]
    );
    assert!(replayed.is_empty());
    assert_eq!(resets[0]["cursor"].as_str(), ready.id.as_deref(), "reset at the floor the ready id names");
    publish(&db, "room:a", "said", &json!({"n": 2})).await;
    assert_eq!(ns(&messages(&mut s, 1).await), vec![("room:a".to_string(), 2)]);

    let refused =
        Sse::open(relay.port(), TWO, &[("Last-Event-ID", "not-a-cursor")]).await.err().expect("refused");
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(refused.body.contains("REALTIME_INVALID_REQUEST") && refused.body.contains("not-a-cursor"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_http_errors_and_the_token_parameter_works() {
    let (cluster, relay) = start_stack().await;
    let db = cluster.client().await;
    exec(
        &db,
        "INSERT INTO realtime.channels (pattern) VALUES ('public'), ('private');
         CREATE POLICY everyone_public ON realtime.channels FOR SELECT USING (pattern = 'public');
         CREATE POLICY members_private ON realtime.channels FOR SELECT TO authenticated USING (true);",
    )
    .await;
    let port = relay.port();
    let refusal =
        |path: &'static str| async move { Sse::open(port, path, &[]).await.err().expect("refused") };

    let r = refusal("/v1/sse?channel=public&channel=private").await;
    assert_eq!(r.status, 403, "one refused channel refuses the stream: {}", r.body);
    assert!(r.body.contains("REALTIME_UNAUTHORIZED") && r.body.contains("private"), "{}", r.body);
    let r = refusal("/v1/sse?channel=nowhere").await;
    assert_eq!((r.status, r.body.contains("REALTIME_NOT_FOUND")), (404, true), "{}", r.body);
    let r = refusal("/v1/sse").await;
    assert_eq!((r.status, r.body.contains("at least one channel")), (400, true), "{}", r.body);
    let r = refusal("/v1/sse?channel=public&token=garbage").await;
    assert_eq!(r.status, 401, "{}", r.body);
    let r = refusal("/v1/sse?channels=public").await;
    assert_eq!((r.status, r.body.contains("unknown query parameter 'channels'")), (400, true), "{}", r.body);

    // Pages of any origin may call it (the token is a header or a parameter, never a cookie).
    let preflight = http_send(
        port,
        "OPTIONS",
        "/v1/sse?channel=public",
        &[
            ("Origin", "http://app.example"),
            ("Access-Control-Request-Headers", "authorization,last-event-id"),
        ],
        b"",
    )
    .await
    .unwrap();
    assert_eq!(preflight.status, 204);
    assert_eq!(preflight.header("access-control-allow-origin"), Some("*"));
    assert!(preflight.header("access-control-allow-headers").unwrap().contains("last-event-id"));
    let stream =
        Sse::open(port, "/v1/sse?channel=public", &[("Origin", "http://app.example")]).await.unwrap();
    assert_eq!(stream.header("access-control-allow-origin"), Some("*"));
    drop(stream);

    // EventSource sets no headers: the token rides in the query; a Bearer header works too.
    let token = relay.token(Some("ada"), "authenticated");
    let mut s =
        Sse::open(port, &format!("/v1/sse?channel=private&token={token}"), &[]).await.expect("member");
    opening(&mut s, &["private"]).await;
    let bearer = format!("Bearer {token}");
    let mut s2 =
        Sse::open(port, "/v1/sse?channel=private", &[("Authorization", &bearer)]).await.expect("member");
    opening(&mut s2, &["private"]).await;
    publish(&db, "private", "said", &json!({"n": 1})).await;
    assert_eq!(ns(&messages(&mut s, 1).await), vec![("private".to_string(), 1)]);
    assert_eq!(ns(&messages(&mut s2, 1).await), vec![("private".to_string(), 1)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_streams_get_keep_alives_and_an_expired_token_ends_the_stream() {
    // Keep-alives every second instead of 15, so the test sees one quickly.
    let options =
        RelayOptions { extra_args: vec!["--sse-keepalive-secs".into(), "1".into()], ..Default::default() };
    let (cluster, relay) = start_stack_with(options).await;
    let db = cluster.client().await;
    open_channel(&db, "room:%").await;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    let token = mint_token_with_exp(JWT_SECRET, Some("ada"), "authenticated", now + 4);
    let mut s = Sse::open(relay.port(), &format!("/v1/sse?channel=room:a&token={token}"), &[]).await.unwrap();
    opening(&mut s, &["room:a"]).await;
    let first = s.next_within(Duration::from_millis(2500)).await.expect("something within 2.5 s");
    assert_eq!(first.comment.as_deref(), Some("keep-alive"), "{first:?}");

    let rest = s.read_to_end(Duration::from_secs(10)).await;
    let close =
        rest.iter().find(|e| e.event == "close").unwrap_or_else(|| panic!("no close event in {rest:?}"));
    assert_eq!(close.json(), json!({"type": "close", "code": 4001, "reason": "token expired"}));
    assert!(s.ended, "the body ends after the close event");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_dropped_and_a_reading_one_gets_everything() {
    // A short stall timeout (default 30 s) so the test does not wait long.
    let options =
        RelayOptions { extra_args: vec!["--stall-timeout-secs".into(), "2".into()], ..Default::default() };
    let (cluster, relay) = start_stack_with(options).await;
    let db = cluster.client().await;
    open_channel(&db, "room:%").await;

    // The silent client: a small receive buffer, a request, then never a read.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut silent = socket.connect(([127, 0, 0, 1], relay.port()).into()).await.unwrap();
    let port = relay.port();
    silent
        .write_all(
            format!("GET /v1/sse?channel=room:a HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let mut reader = Sse::open(port, "/v1/sse?channel=room:a", &[]).await.unwrap();
    opening(&mut reader, &["room:a"]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    // 10 MB: more than the kernel's socket buffers, hyper's and the 1 MiB queue hold together,
    // so the silent client's stream can no longer even take its close event.
    let big = "x".repeat(20_000);
    let total = 500;
    let publishing = {
        let url = cluster.url("postgres");
        let big = big.clone();
        tokio::spawn(async move {
            let (c, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(conn);
            // Paced, so the reader keeps up and the silent client's socket buffers fill before
            // its queue does (a burst that fills the queue first ends the stream at once).
            for n in 1..=total {
                publish(&c, "room:a", "big", &json!({"n": n, "pad": big})).await;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let mut got = Vec::new();
    while got.len() < total as usize {
        let e = reader.next_event().await;
        match e.event.as_str() {
            "message" => got.push(e.json()["payload"]["n"].as_i64().unwrap()),
            "close" => panic!("the reading client was closed: {e:?}"),
            _ => {}
        }
    }
    publishing.await.unwrap();
    assert_eq!(got, (1..=total).collect::<Vec<_>>(), "every message once, in order");

    // The silent client is dropped by the relay after the stall timeout and counted (read its
    // socket only then: reading would let its stream move again).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, metrics) = http_get(port, "/metrics").await.unwrap();
        let closes = metrics
            .lines()
            .find_map(|l| l.strip_prefix("realtime_slow_consumer_closes_total "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap();
        if closes >= 1.0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the silent client was not closed within 20 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let closed = async {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match silent.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), closed).await.expect("its socket is closed");
    // The reader is still live.
    publish(&db, "room:a", "small", &json!({"n": 0})).await;
    assert_eq!(reader.until("message").await.json()["payload"]["n"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_tracked_through_a_stream_is_seen_by_others_and_ends_with_the_stream() {
    // Keep-alives every second (default 15), so the relay notices the closed stream quickly.
    let options =
        RelayOptions { extra_args: vec!["--sse-keepalive-secs".into(), "1".into()], ..Default::default() };
    let (cluster, relay) = start_stack_with(options).await;
    let db = cluster.client().await;
    open_channel(&db, "room:%").await;
    let port = relay.port();
    let (alice, bob) =
        (relay.token(Some("alice"), "authenticated"), relay.token(Some("bob"), "authenticated"));
    let mut ws = Ws::connect(&relay.ws_url(), Connect::Bearer(bob.clone())).await;
    ws.subscribe_ok("room:a").await;

    let bearer = format!("Bearer {alice}");
    let mut s = Sse::open(port, "/v1/sse?channel=room:a", &[("Authorization", &bearer)]).await.unwrap();
    let (_, _, _, ready) = opening(&mut s, &["room:a"]).await;
    let stream = ready.json()["stream"].as_str().expect("ready names the stream").to_string();
    let track = json!({"stream": stream, "channel": "room:a", "state": {"name": "Alice"}});

    let (status, body) = http_post_json(port, "/v1/presence/track", Some(&bob), &track).await.unwrap();
    assert_eq!(
        (status, &body["error"]["code"]),
        (403, &json!("REALTIME_UNAUTHORIZED")),
        "not bob's stream: {body}"
    );
    let (status, body) = http_post_json(port, "/v1/presence/track", Some(&alice), &track).await.unwrap();
    assert_eq!((status, body), (200, json!({"ok": true})));

    let join = ws.recv_json().await;
    assert_eq!((&join["type"], &join["event"]), (&json!("presence"), &json!("join")), "{join}");
    assert_eq!(
        (&join["member"]["user_id"], &join["member"]["state"]),
        (&json!("alice"), &json!({"name": "Alice"}))
    );
    let own = s.until("presence").await.json();
    assert_eq!((&own["event"], &own["member"]["user_id"]), (&json!("join"), &json!("alice")), "{own}");

    let elsewhere = json!({"stream": stream, "channel": "room:b", "state": {}});
    let (status, body) = http_post_json(port, "/v1/presence/track", Some(&alice), &elsewhere).await.unwrap();
    assert_eq!((status, &body["error"]["code"]), (400, &json!("REALTIME_NOT_SUBSCRIBED")), "{body}");
    let unknown = json!({"stream": "0", "channel": "room:a"});
    let (status, _) = http_post_json(port, "/v1/presence/track", Some(&alice), &unknown).await.unwrap();
    assert_eq!(status, 404);

    // The stream ends: its presence ends with it.
    drop(s);
    let leave = ws.recv_json_within(Duration::from_secs(10)).await;
    assert_eq!((&leave["event"], &leave["member"]["user_id"]), (&json!("leave"), &json!("alice")), "{leave}");
    let (status, _) = http_post_json(
        port,
        "/v1/presence/untrack",
        Some(&alice),
        &json!({"stream": stream, "channel": "room:a"}),
    )
    .await
    .unwrap();
    assert_eq!(status, 404, "the stream is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_cut_by_a_killed_relay_resumes_on_another_relay_without_gap_or_duplicate() {
    let (cluster, relay_a) = start_stack().await;
    let relay_b = Relay::start(&cluster, RelayOptions::default()).await;
    relay_b.wait_ready().await;
    let db = cluster.client().await;
    open_channel(&db, "room:%").await;

    let mut s = Sse::open(relay_a.port(), TWO, &[]).await.expect("stream on relay A");
    opening(&mut s, &["room:a", "room:b"]).await;
    for n in 1..=4 {
        publish(&db, if n % 2 == 1 { "room:a" } else { "room:b" }, "said", &json!({"n": n})).await;
    }
    let before = messages(&mut s, 4).await;
    relay_a.kill().await;
    let rest = s.read_to_end(Duration::from_secs(10)).await;
    assert!(rest.iter().all(|e| e.event != "message"), "nothing more came from the killed relay: {rest:?}");
    let last = s.last_event_id.clone().unwrap();

    for n in 5..=8 {
        publish(&db, if n % 2 == 1 { "room:a" } else { "room:b" }, "said", &json!({"n": n})).await;
    }
    let mut s = Sse::open(relay_b.port(), TWO, &[("Last-Event-ID", &last)]).await.expect("stream on relay B");
    let (subscribed, _, replayed, _) = opening(&mut s, &["room:a", "room:b"]).await;
    assert!(subscribed.iter().all(|v| v["recovered"] == true), "{subscribed:?}");
    publish(&db, "room:a", "said", &json!({"n": 9})).await;
    // Relay B may not have dispatched all of 5..=8 when the stream opened: those come live.
    let mut live = Vec::new();
    while live.last().is_none_or(|m: &Value| m["payload"]["n"] != 9) {
        live.extend(messages(&mut s, 1).await);
    }
    let all: Vec<i64> =
        [before, replayed, live].concat().iter().map(|m| m["payload"]["n"].as_i64().unwrap()).collect();
    assert_eq!(all, (1..=9).collect::<Vec<_>>(), "every message once, in order, across the two relays");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_falls_behind_catches_up_in_place_in_cursor_order() {
    // The smallest queue (default 1 MiB), so a burst overflows it at once.
    let options =
        RelayOptions { extra_args: vec!["--send-queue-bytes".into(), "65536".into()], ..Default::default() };
    let (cluster, relay) = start_stack_with(options).await;
    let db = cluster.client().await;
    open_channel(&db, "room:%").await;
    let mut s = Sse::open(relay.port(), TWO, &[]).await.unwrap();
    opening(&mut s, &["room:a", "room:b"]).await;

    // 600 messages of 2 KB over both channels, 50 per commit: far more than 64 KiB at once.
    exec(
        &db,
        "DO $$ BEGIN FOR i IN 1 .. 600 LOOP
           PERFORM realtime.publish(CASE WHEN i % 3 = 0 THEN 'room:b' ELSE 'room:a' END, 'burst',
             jsonb_build_object('n', i, 'pad', repeat('x', 2000)));
           IF i % 50 = 0 THEN COMMIT; END IF;
         END LOOP; END $$;",
    )
    .await;
    let mut got = Vec::new();
    let mut cursors: Vec<String> = Vec::new();
    while got.len() < 600 {
        let e = s.next_event().await;
        match e.event.as_str() {
            "message" => {
                let v = e.json();
                let c = v["cursor"].as_str().unwrap().to_string();
                if let Some(prev) = cursors.last() {
                    assert!(*prev < c, "cursor order across channels: {prev} then {c}");
                }
                assert_eq!(e.id.as_deref(), Some(c.as_str()));
                cursors.push(c);
                got.push(v["payload"]["n"].as_i64().unwrap());
            }
            "close" => panic!("the stream was closed instead of catching up: {e:?}"),
            _ => {}
        }
    }
    assert_eq!(got, (1..=600).collect::<Vec<_>>(), "every message once, in order");
    let (_, metrics) = http_get(relay.port(), "/metrics").await.unwrap();
    let catch_ups = metrics
        .lines()
        .find_map(|l| l.strip_prefix("realtime_catch_ups_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap();
    assert!(catch_ups >= 1.0, "the burst made the stream catch up from the log: {catch_ups}");
    publish(&db, "room:b", "after", &json!({"n": 601})).await;
    assert_eq!(s.until("message").await.json()["payload"]["n"], 601, "live again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_asked_for_after_other_requests_on_a_kept_alive_connection_is_the_same() {
    let (cluster, relay) = start_stack().await;
    let db = cluster.client().await;
    open_channel(&db, "room:%").await;
    let port = relay.port();

    // A fresh connection whose first request is the stream: the relay's own stream writer.
    let mut fresh = Sse::open(port, TWO, &[]).await.expect("stream opens");
    opening(&mut fresh, &["room:a", "room:b"]).await;

    // The same request after a health check on one kept-alive connection: served by hyper.
    let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    socket
        .write_all(format!("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut answer = Vec::new();
    while !answer.ends_with(b"\r\n\r\nok\n") {
        let mut buf = [0u8; 1024];
        let n = tokio::time::timeout(Duration::from_secs(5), socket.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "the connection stays open after /healthz");
        answer.extend_from_slice(&buf[..n]);
    }
    let mut kept = Sse::open_on(socket, port, TWO, &[]).await.expect("stream opens");
    opening(&mut kept, &["room:a", "room:b"]).await;

    // Both answer alike: the same headers (the date aside) and the same events.
    let mut heads: Vec<Vec<(String, String)>> = [&fresh, &kept]
        .iter()
        .map(|s| {
            let mut h: Vec<_> = s.headers.iter().filter(|(n, _)| n != "date").cloned().collect();
            h.sort();
            h
        })
        .collect();
    assert_eq!(heads.pop(), heads.pop(), "same headers on both paths");
    assert!(fresh.header("date").is_some() && kept.header("date").is_some());
    assert_eq!(fresh.header("transfer-encoding"), Some("chunked"));
    publish(&db, "room:b", "said", &json!({"n": 1})).await;
    publish(&db, "room:a", "said", &json!({"n": 2})).await;
    let want = vec![("room:b".to_string(), 1), ("room:a".to_string(), 2)];
    assert_eq!(ns(&messages(&mut fresh, 2).await), want);
    assert_eq!(ns(&messages(&mut kept, 2).await), want);
}
