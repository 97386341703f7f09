//! Limits and slow consumers: publish rate (REALTIME_RATE_LIMITED, then close 4008), the
//! connection cap (HTTP 503), and a subscriber that stops reading (closed after the stall
//! timeout, while everyone else gets every message and the relay's memory stays bounded).

use std::time::Duration;

use futures_util::StreamExt;
use realtime_e2e::{exec, open_channel, scrape_metric, start_stack_with, Connect, Refusal, RelayOptions, Ws};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

fn flags(args: &[&str]) -> RelayOptions {
    RelayOptions { extra_args: args.iter().map(|s| s.to_string()).collect(), ..Default::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_past_the_rate_limit_is_refused_then_closed_with_4008() {
    let (cluster, relay) = start_stack_with(flags(&["--max-publish-rate", "2"])).await;
    open_channel(&cluster.client().await, "room").await;
    let mut ws = Ws::connect(&relay.ws_url(), Connect::Anonymous).await;
    let frame = json!({"type":"publish","channel":"room","event":"e","persist":false});
    let mut codes = Vec::new();
    let close = loop {
        ws.send_json(&frame).await;
        match ws.next_frame_or_close().await {
            Ok(reply) => codes.push(reply["error"]["code"].as_str().unwrap_or("ok").to_string()),
            Err(code) => break code,
        }
        assert!(codes.len() < 50, "never closed: {codes:?}");
    };
    assert_eq!(close, Some(4008), "replies before the close: {codes:?}");
    assert!(codes.iter().any(|c| c == "REALTIME_RATE_LIMITED"), "{codes:?}");
    assert!(
        codes.iter().take(2).all(|c| c != "REALTIME_RATE_LIMITED"),
        "the first two (the burst) pass the limiter: {codes:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_are_refused_with_503() {
    let (_cluster, relay) = start_stack_with(flags(&["--max-connections", "2"])).await;
    let mut a = Ws::connect(&relay.ws_url(), Connect::Anonymous).await;
    let _b = Ws::connect(&relay.ws_url(), Connect::Anonymous).await;
    assert_eq!(a.ping().await["type"], "pong");
    let refusal = Ws::connect_expecting_refusal(&relay.ws_url(), Connect::Anonymous).await;
    assert!(matches!(refusal, Refusal::Http(503)), "{refusal:?}");
    drop(a);
    // The freed place is released as soon as the relay notices the close (a reconnecting
    // client must not be refused for seconds by its own old socket); retry for a second.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    let mut accepted = false;
    while tokio::time::Instant::now() < deadline {
        if let Ok(mut c) = Ws::try_connect(&relay.ws_url(), Connect::Anonymous).await {
            assert_eq!(c.ping().await["type"], "pong");
            accepted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(accepted, "a place frees up within a second of a connection closing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_subscriber_is_closed_while_others_get_everything_and_memory_stays_bounded() {
    // A 3 s stall timeout instead of the default 30 s keeps the test short; the queues keep
    // their default byte budget.
    let (cluster, relay) = start_stack_with(flags(&["--stall-timeout-secs", "3"])).await;
    let db = cluster.client().await;
    open_channel(&db, "firehose").await;
    // Messages are published in bursts of 50 commits of 100 KB while the fast subscriber keeps
    // reading: each burst is more than its queue holds, so it falls behind and catches up from
    // the log (never cut off), while the stalled one is closed for reading nothing.

    // The stalled client subscribes, then never reads again.
    let url = format!("{}?", relay.ws_url());
    let (mut stalled, _) = tokio_tungstenite::connect_async(url.as_str()).await.expect("connect");
    futures_util::SinkExt::send(
        &mut stalled,
        Message::text(r#"{"type":"subscribe","ref":1,"channel":"firehose"}"#),
    )
    .await
    .unwrap();
    let mut fast = Ws::connect(&relay.ws_url(), Connect::Anonymous).await;
    fast.subscribe_ok("firehose").await;
    let rss_before = relay.rss_kib();

    const N: usize = 600;
    let reader = tokio::spawn(async move {
        for n in 0..N {
            let m = fast.expect_message("firehose").await;
            assert_eq!(m["payload"]["n"], n, "in order, none missing");
        }
    });
    for chunk in 0..(N / 50) {
        let first = chunk * 50;
        exec(
            &db,
            &format!(
                "DO $$ BEGIN FOR i IN {first} .. {} LOOP
                   PERFORM realtime.publish('firehose', 'blob',
                     jsonb_build_object('n', i, 'blob', repeat(md5(i::text), 3200)));
                   COMMIT; END LOOP; END $$;",
                first + 49
            ),
        )
        .await;
    }
    tokio::time::timeout(Duration::from_secs(120), reader)
        .await
        .expect("the fast subscriber gets all")
        .unwrap();
    let rss_growth_mib = relay.rss_kib().saturating_sub(rss_before) / 1024;
    let flood_mib = N * 100 / 1024;
    assert!(
        rss_growth_mib < 48,
        "relay memory grew {rss_growth_mib} MiB while {flood_mib} MiB went to a stalled client"
    );

    // The stalled client has read nothing since it subscribed: within the stall timeout (plus
    // the 1 s check) the relay closes it. Drain only then, or reading would count as progress.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while scrape_metric(relay.port(), "realtime_slow_consumer_closes_total").await < 1.0 {
        assert!(tokio::time::Instant::now() < deadline, "the stalled client was not closed as too slow");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Now drain what the stalled client's socket holds: it ends before all N messages.
    let mut received = 0;
    let ended = loop {
        match tokio::time::timeout(Duration::from_secs(10), stalled.next()).await {
            Ok(Some(Ok(Message::Text(t)))) if t.contains(r#""type":"message""#) => received += 1,
            Ok(Some(Ok(Message::Close(frame)))) => break frame.map(|f| u16::from(f.code)),
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(_))) | Ok(None) => break None,
            Err(_) => panic!("the stalled connection was neither closed nor ended ({received} received)"),
        }
    };
    assert!(received < N, "the stalled client was cut off, not buffered for: {received} of {N}");
    assert!(ended.is_none() || ended == Some(4009), "closed as too slow (4009) or dropped: {ended:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frame_over_the_size_limit_is_closed_with_1009() {
    let (_cluster, relay) = start_stack_with(flags(&["--max-frame-bytes", "1024"])).await;
    let mut ws = Ws::connect(&relay.ws_url(), Connect::Anonymous).await;
    let big = json!({"type":"publish","channel":"room","event":"e","payload":{"s":"x".repeat(2000)}});
    ws.send_json(&big).await;
    assert_eq!(ws.expect_close().await, Some(1009));
    let mut again = Ws::connect(&relay.ws_url(), Connect::Anonymous).await;
    assert_eq!(again.ping().await["type"], "pong", "the relay keeps serving others");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_past_the_per_connection_cap_are_refused() {
    let (cluster, relay) = start_stack_with(flags(&["--max-subscriptions", "2"])).await;
    open_channel(&cluster.client().await, "room:%").await;
    let mut ws = Ws::connect(&relay.ws_url(), Connect::Anonymous).await;
    ws.subscribe_ok("room:1").await;
    ws.subscribe_ok("room:2").await;
    let reply = ws.subscribe("room:3").await;
    assert_eq!(reply["error"]["code"], "REALTIME_INVALID_REQUEST", "{reply}");
    assert!(reply["error"]["message"].as_str().unwrap().contains("limit 2"), "{reply}");
    ws.unsubscribe("room:1").await;
    ws.subscribe_ok("room:3").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_handshakes_count_against_the_cap_and_are_dropped_after_the_header_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // A 2 s header timeout instead of the default 10 s keeps the test short.
    let (_cluster, relay) =
        start_stack_with(flags(&["--max-connections", "20", "--header-timeout-secs", "2"])).await;
    // 20 clients send half a request and wait: each takes a place.
    let mut half_open = Vec::new();
    for _ in 0..20 {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", relay.port())).await.unwrap();
        s.write_all(b"GET /v1/socket HTTP/1.1\r\nHost: x\r\nUpgrade: websock").await.unwrap();
        half_open.push(s);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let refusal = Ws::connect_expecting_refusal(&relay.ws_url(), Connect::Anonymous).await;
    assert!(matches!(refusal, Refusal::Http(503)), "every place is held by a half-open socket: {refusal:?}");
    // After the header timeout the relay has dropped them all, and serves again.
    for s in &mut half_open {
        let mut buf = [0u8; 512];
        let read = tokio::time::timeout(Duration::from_secs(6), s.read(&mut buf)).await;
        assert!(matches!(read, Ok(Ok(_)) | Ok(Err(_))), "a half-open socket is closed by the relay");
    }
    let mut ws = Ws::connect(&relay.ws_url(), Connect::Anonymous).await;
    assert_eq!(ws.ping().await["type"], "pong");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_publish_and_history_and_history_and_auth_frames_are_rate_limited() {
    // Rates lowered from their defaults (100, 20 and 2 per second) so a few requests show them.
    let (cluster, relay) = start_stack_with(flags(&[
        "--max-publish-rate",
        "2",
        "--max-history-rate",
        "2",
        "--max-auth-rate",
        "1",
    ]))
    .await;
    open_channel(&cluster.client().await, "room").await;
    let service = relay.token(None, "service_role");
    let body = json!({"channel": "room", "event": "e", "payload": {}});
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let (status, reply) =
            realtime_e2e::http_post_json(relay.port(), "/v1/publish", Some(&service), &body).await.unwrap();
        if status == 429 {
            assert_eq!(reply["error"]["code"], "REALTIME_RATE_LIMITED", "{reply}");
        }
        statuses.push(status);
    }
    assert_eq!(&statuses[..2], [200, 200], "the burst passes: {statuses:?}");
    assert!(statuses.contains(&429), "HTTP publishes past the rate: {statuses:?}");
    let history = "/v1/channels/room/history";
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(realtime_e2e::http_get(relay.port(), history).await.unwrap().0);
    }
    assert!(statuses.contains(&200) && statuses.contains(&429), "HTTP history past the rate: {statuses:?}");

    let mut ws = Ws::connect(&relay.ws_url(), Connect::Anonymous).await;
    let mut codes = Vec::new();
    for _ in 0..6 {
        let reply = ws.request(json!({"type": "history", "channel": "room"})).await;
        codes.push(reply["error"]["code"].as_str().unwrap_or("ok").to_string());
    }
    assert!(codes.contains(&"ok".into()) && codes.contains(&"REALTIME_RATE_LIMITED".into()), "{codes:?}");
    let token = relay.token(Some("alice"), "authenticated");
    let mut codes = Vec::new();
    for _ in 0..4 {
        let reply = ws.request(json!({"type": "auth", "token": token})).await;
        codes.push(reply["error"]["code"].as_str().unwrap_or("ok").to_string());
    }
    assert_eq!(codes[0], "ok", "{codes:?}");
    assert!(codes.contains(&"REALTIME_RATE_LIMITED".into()), "auth frames past the rate: {codes:?}");
    assert_eq!(ws.ping().await["type"], "pong", "refusals do not close the connection");
}
