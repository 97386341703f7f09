//! `GET /metrics` (Prometheus text) after real traffic, and `realtime-relay healthcheck`.

use std::process::Command;

use realtime_e2e::metric_sample as sample;
use realtime_e2e::relay::relay_bin;
use realtime_e2e::{
    free_port, http_get, http_post_json, http_request, open_channel, publish, start_stack, start_stack_with,
    Connect, RelayOptions, Ws,
};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_connections_dispatch_and_streaming_after_traffic() {
    let (cluster, relay) = start_stack().await;
    let client = cluster.client().await;
    open_channel(&client, "metrics:room").await;
    let mut ws = Ws::connect(&relay.ws_url(), Connect::Anonymous).await;
    ws.subscribe_ok("metrics:room").await;
    let denied = ws.subscribe("no:such:channel").await;
    assert_eq!(denied["ok"], false, "{denied}");
    publish(&client, "metrics:room", "hello", &json!({"n": 1})).await;
    ws.expect_message("metrics:room").await;
    let service = relay.token(None, "service_role");
    let body = json!({"channel": "metrics:room", "event": "http", "payload": {}});
    let (status, reply) = http_post_json(relay.port(), "/v1/publish", Some(&service), &body).await.unwrap();
    assert_eq!(status, 200, "{reply}");
    ws.expect_message("metrics:room").await;

    let (status, text) = http_get(relay.port(), "/metrics").await.expect("GET /metrics");
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("# TYPE realtime_connections gauge"), "{text}");
    assert!(sample(&text, "realtime_connections") >= 1.0);
    assert!(sample(&text, "realtime_channels") >= 1.0);
    assert!(sample(&text, "realtime_subscriptions") >= 1.0);
    assert!(sample(&text, "realtime_messages_dispatched_total{kind=\"stored\"}") >= 2.0);
    assert!(sample(&text, "realtime_frames_queued_total") >= 2.0);
    assert_eq!(sample(&text, "realtime_replication_streaming"), 1.0);
    assert!(sample(&text, "realtime_replication_last_commit_lsn") > 0.0);
    assert!(sample(&text, "realtime_subscribe_checks_total{outcome=\"allowed\"}") >= 1.0);
    assert!(sample(&text, "realtime_subscribe_checks_total{outcome=\"not_found\"}") >= 1.0);
    assert!(sample(&text, "realtime_publishes_total{kind=\"stored\",outcome=\"ok\"}") >= 1.0);
    assert_eq!(sample(&text, "realtime_replication_decode_errors_total"), 0.0);
    assert_eq!(sample(&text, "realtime_slow_consumer_closes_total"), 0.0);
    assert!(sample(&text, "realtime_messages_delivered_total{path=\"persisted\"}") >= 2.0);
    assert!(
        sample(&text, "realtime_subscribe_check_seconds_count") >= 2.0,
        "allowed + not_found checks timed"
    );
    assert!(sample(&text, "realtime_replication_lag_bytes") >= 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_to_send_histogram_counts_every_delivered_frame_and_replays_are_counted_by_path() {
    let (cluster, relay) = start_stack().await;
    let client = cluster.client().await;
    open_channel(&client, "latency:room").await;
    let scrape = || async {
        let (status, text) = http_get(relay.port(), "/metrics").await.expect("GET /metrics");
        assert_eq!(status, 200, "{text}");
        text
    };
    let before = scrape().await;
    assert!(before.contains("# TYPE realtime_commit_to_send_seconds histogram"), "{before}");
    assert_eq!(sample(&before, "realtime_commit_to_send_seconds_count"), 0.0, "nothing delivered yet");

    let mut a = Ws::connect(&relay.ws_url(), Connect::Anonymous).await;
    let mut b = Ws::connect(&relay.ws_url(), Connect::Anonymous).await;
    a.subscribe_ok("latency:room").await;
    b.subscribe_ok("latency:room").await;
    publish(&client, "latency:room", "one", &json!({"n": 1})).await;
    let first = a.expect_message("latency:room").await;
    b.expect_message("latency:room").await;
    publish(&client, "latency:room", "two", &json!({"n": 2})).await;
    a.expect_message("latency:room").await;
    b.expect_message("latency:room").await;

    let after = scrape().await;
    // two messages, each queued to two subscribers: four observations, all within the +Inf
    // bucket, with a positive sum (the commit happened before the frame was queued)
    assert_eq!(sample(&after, "realtime_commit_to_send_seconds_count"), 4.0, "{after}");
    assert_eq!(sample(&after, "realtime_commit_to_send_seconds_bucket{le=\"+Inf\"}"), 4.0);
    assert!(sample(&after, "realtime_commit_to_send_seconds_sum") > 0.0);
    assert!(
        sample(&after, "realtime_commit_to_send_seconds_bucket{le=\"60\"}") >= 4.0,
        "local delivery under 60 s"
    );
    assert_eq!(sample(&after, "realtime_messages_delivered_total{path=\"persisted\"}"), 4.0);
    assert_eq!(sample(&after, "realtime_messages_delivered_total{path=\"replay\"}"), 0.0);

    // a client resuming from the first cursor gets the second message replayed from the table
    let cursor = first["cursor"].as_str().expect("stored messages carry a cursor").to_string();
    let mut c = Ws::connect(&relay.ws_url(), Connect::Anonymous).await;
    let reply = c
        .request(json!({"type": "subscribe", "channel": "latency:room", "resume": {"cursor": cursor}}))
        .await;
    assert_eq!(reply["ok"], true, "{reply}");
    let replayed = c.expect_message("latency:room").await;
    assert_eq!(replayed["replayed"], true, "{replayed}");
    let text = scrape().await;
    assert_eq!(sample(&text, "realtime_messages_delivered_total{path=\"replay\"}"), 1.0, "{text}");
    assert_eq!(sample(&text, "realtime_commit_to_send_seconds_count"), 4.0, "replays are not live sends");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_subcommand_exits_0_for_a_running_relay_and_1_otherwise() {
    let (_cluster, relay) = start_stack().await;
    let status = Command::new(relay_bin())
        .args(["healthcheck", "--bind", &format!("0.0.0.0:{}", relay.port())])
        .status()
        .expect("run realtime-relay healthcheck");
    assert_eq!(status.code(), Some(0), "a running relay is healthy (wildcard bind goes to loopback)");
    let out = Command::new(relay_bin())
        .args(["healthcheck", "--bind", &format!("127.0.0.1:{}", free_port())])
        .output()
        .expect("run realtime-relay healthcheck");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("realtime-relay healthcheck: 127.0.0.1:"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_token_is_required_when_configured() {
    let token = "scrape-token-0123456789";
    let options =
        RelayOptions { extra_args: vec!["--metrics-token".into(), token.into()], ..Default::default() };
    let (_cluster, relay) = start_stack_with(options).await;
    let (status, body) = http_get(relay.port(), "/metrics").await.unwrap();
    assert_eq!(status, 401, "no token: {body}");
    assert!(!body.contains("realtime_"), "nothing of the metrics without the token: {body}");
    let get = |token: &str| format!("GET /metrics HTTP/1.1\r\nAuthorization: Bearer {token}");
    let (status, _) = http_request(relay.port(), &get("scrape-token-wrong-0000"), b"").await.unwrap();
    assert_eq!(status, 401, "wrong token");
    let (status, body) = http_request(relay.port(), &get(token), b"").await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("realtime_replication_streaming 1"), "{body}");
    let (status, _) = http_get(relay.port(), "/healthz").await.unwrap();
    assert_eq!(status, 200, "health stays open");
}
