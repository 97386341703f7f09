//! Webhooks end to end: a real Postgres with the extension, the real relay binary and a real
//! HTTP sink on loopback (so relays run with `--webhook-allow-private`, except where the test is
//! about refusing private addresses). Signatures are checked by an independent Python
//! implementation of the Standard Webhooks spec (`tests/verify_webhook.py`).

use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use realtime_e2e::{
    allow_everyone, exec, free_port, http_get, publish, start_stack_with, Cluster, Connect, Relay,
    RelayOptions, Reply, Sink, Ws,
};
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio_postgres::Client;

const WAIT: Duration = Duration::from_secs(60);

/// Relay flags for tests: private addresses allowed, fast retries, short lease.
/// `extra` flags replace the defaults of the same name.
fn fast(extra: &[&str]) -> RelayOptions {
    let defaults =
        [("--webhook-retry-base-ms", "100"), ("--webhook-timeout-secs", "5"), ("--webhook-lease-secs", "8")];
    let mut args = vec!["--webhook-allow-private".to_string()];
    for (flag, value) in defaults {
        if !extra.contains(&flag) {
            args.extend([flag.to_string(), value.to_string()]);
        }
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    RelayOptions { extra_args: args, ..Default::default() }
}

async fn webhook_channel(db: &Client, pattern: &str, urls: &[String], secret: Option<&str>) {
    db.execute(
        "INSERT INTO realtime.channels (pattern, webhook_urls, webhook_secret) VALUES ($1, $2, $3)",
        &[&pattern, &urls, &secret],
    )
    .await
    .unwrap_or_else(|e| panic!("create channel {pattern}: {e:?}"));
}

/// Waits until `sql` (one row, one bigint/int column cast to bigint) returns `want`.
async fn wait_value(db: &Client, sql: &str, want: i64) {
    let deadline = Instant::now() + WAIT;
    let mut last = -1;
    while Instant::now() < deadline {
        last = db.query_one(sql, &[]).await.unwrap().get::<_, i64>(0);
        if last == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{sql} returned {last}, expected {want} within {WAIT:?}");
}

/// `(status, attempts, last_status, last_error)` of the one delivery of `message_id` to `url`.
async fn delivery(db: &Client, message_id: &str, url: &str) -> (String, i32, Option<i32>, Option<String>) {
    let r = db
        .query_one(
            "SELECT status, attempts, last_status, last_error FROM realtime.webhook_deliveries \
             WHERE message_id = $1::text::uuid AND url = $2",
            &[&message_id, &url],
        )
        .await
        .unwrap();
    (r.get(0), r.get(1), r.get(2), r.get(3))
}

async fn message_counts(db: &Client, id: &str) -> (i32, i32, i32) {
    let r = db
        .query_one(
            "SELECT wh_audience_count, wh_delivered_count, ws_audience_count FROM realtime.messages \
             WHERE id = $1::text::uuid",
            &[&id],
        )
        .await
        .unwrap();
    (r.get(0), r.get(1), r.get(2))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs the independent verifier; Ok(()) or the reason it refused.
async fn python_verify(secret: &str, req: &realtime_e2e::Captured, body: &[u8]) -> Result<(), String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/verify_webhook.py");
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let input = json!({"secret": secret, "headers": req.headers, "body_hex": hex(body), "now": now});
    let mut child = tokio::process::Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    child.stdin.take().unwrap().write_all(input.to_string().as_bytes()).await.unwrap();
    let out = child.wait_with_output().await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if out.status.success() && text == "ok" {
        Ok(())
    } else {
        Err(text)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_delivery_verifies_with_an_independent_standard_webhooks_implementation() {
    let (cluster, _relay) = start_stack_with(fast(&[])).await;
    let db = cluster.client().await;
    let sink = Sink::start().await;
    let whsec: String = db.query_one("SELECT realtime.generate_webhook_secret()", &[]).await.unwrap().get(0);
    assert!(whsec.starts_with("whsec_"), "{whsec}");
    webhook_channel(&db, "orders:%", &[sink.url("/std")], Some(&whsec)).await;
    webhook_channel(&db, "plain", &[sink.url("/plain")], Some("my plain secret")).await;

    let id = publish(&db, "orders:42", "created", &json!({"total": 12.5, "items": ["a"]})).await;
    let plain_id = publish(&db, "plain", "ping", &json!({})).await;
    sink.wait_for(2, WAIT).await;

    let req = sink.requests_to("/std").pop().unwrap();
    assert_eq!(req.header("webhook-id"), id);
    assert_eq!(req.header("x-realtime-event"), "created");
    assert_eq!(req.header("x-realtime-channel"), "orders:42");
    assert_eq!(req.header("content-type"), "application/json");
    assert!(req.header("webhook-signature").starts_with("v1,"), "{:?}", req.headers);
    let body = req.json();
    assert_eq!(body["id"], id.as_str());
    assert_eq!(body["channel"], "orders:42");
    assert_eq!(body["event"], "created");
    assert_eq!(body["payload"], json!({"total": 12.5, "items": ["a"]}));
    assert_eq!(body["sender"], json!({"type": "system"}));
    assert!(body["created_at"].as_str().unwrap().ends_with('Z'), "{body}");
    python_verify(&whsec, &req, &req.body).await.expect("whsec_ signature verifies");

    let plain = sink.requests_to("/plain").pop().unwrap();
    assert_eq!(plain.header("webhook-id"), plain_id);
    python_verify("my plain secret", &plain, &plain.body).await.expect("plain secret signature verifies");

    // The verifier is not a rubber stamp: a changed body or a wrong secret is refused.
    let mut tampered = req.body.clone();
    tampered.push(b' ');
    assert!(python_verify(&whsec, &req, &tampered).await.is_err());
    assert!(python_verify("my plain secret", &req, &req.body).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_500_then_200_is_delivered_once_and_counts_are_exact() {
    let (cluster, relay) = start_stack_with(fast(&[])).await;
    let db = cluster.client().await;
    let sink = Sink::start().await;
    sink.script("/a", vec![Reply::Status(500)]);
    let urls = [sink.url("/a"), sink.url("/b")];
    webhook_channel(&db, "counts", &urls, None).await;

    let id = publish(&db, "counts", "e", &json!({"n": 1})).await;
    wait_value(&db, "SELECT count(*) FROM realtime.webhook_deliveries WHERE status = 'delivered'", 2).await;
    let a = delivery(&db, &id, &urls[0]).await;
    assert_eq!((a.0.as_str(), a.1, a.2), ("delivered", 2, Some(200)), "{a:?}");
    let b = delivery(&db, &id, &urls[1]).await;
    assert_eq!((b.0.as_str(), b.1, b.2), ("delivered", 1, Some(200)), "{b:?}");
    assert_eq!(sink.requests_to("/a").len(), 2);
    assert_eq!(sink.requests_to("/b").len(), 1);
    assert!(sink.requests().iter().all(|r| r.header("webhook-signature").is_empty()), "no secret: unsigned");
    let (wh_audience, wh_delivered, _) = message_counts(&db, &id).await;
    assert_eq!((wh_audience, wh_delivered), (2, 2));
    let stats = db
        .query_one(
            "SELECT delivered, failed, pending, p50_latency_ms IS NOT NULL FROM realtime.webhook_stats",
            &[],
        )
        .await
        .unwrap();
    assert_eq!((stats.get::<_, i64>(0), stats.get::<_, i64>(1), stats.get::<_, i64>(2)), (2, 0, 0));
    assert!(stats.get::<_, bool>(3));

    let (status, metrics) = http_get(relay.port(), "/metrics").await.unwrap();
    assert_eq!(status, 200);
    for line in [
        "realtime_webhook_attempts_total{outcome=\"succeeded\"} 2",
        "realtime_webhook_attempts_total{outcome=\"retried\"} 1",
        "realtime_webhook_attempts_total{outcome=\"failed\"} 0",
        "realtime_webhook_attempt_duration_seconds_count 3",
    ] {
        assert!(metrics.lines().any(|l| l == line), "missing {line:?} in\n{metrics}");
    }
    assert!(metrics.contains("realtime_webhook_queue_depth "), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_from_a_429_is_honoured() {
    let (cluster, _relay) = start_stack_with(fast(&[])).await;
    let db = cluster.client().await;
    let sink = Sink::start().await;
    sink.script("/r", vec![Reply::RetryAfter(429, 3)]);
    webhook_channel(&db, "limited", &[sink.url("/r")], None).await;
    let id = publish(&db, "limited", "e", &json!({})).await;
    let reqs = sink.wait_for(2, WAIT).await;
    // the backoff alone would be 50-100 ms; Retry-After asks for 3 s
    let gap = reqs[1].at - reqs[0].at;
    assert!(gap >= Duration::from_millis(2900), "second attempt after {gap:?}");
    wait_value(&db, "SELECT count(*) FROM realtime.webhook_deliveries WHERE status = 'delivered'", 1).await;
    assert_eq!(delivery(&db, &id, &sink.url("/r")).await.1, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_down_for_a_while_then_up_gets_every_message() {
    let (cluster, _relay) = start_stack_with(fast(&[])).await;
    let db = cluster.client().await;
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/down");
    webhook_channel(&db, "outage", &[url], None).await;
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(publish(&db, "outage", "e", &json!({"n": n})).await);
    }
    // every delivery failed at least twice (connection refused) before the endpoint comes up
    wait_value(
        &db,
        "SELECT count(*) FROM realtime.webhook_deliveries WHERE status = 'pending' AND attempts >= 2",
        5,
    )
    .await;
    let sink = Sink::start_on(port).await;
    wait_value(&db, "SELECT count(*) FROM realtime.webhook_deliveries WHERE status = 'delivered'", 5).await;
    let mut got: Vec<String> = sink.requests().iter().map(|r| r.header("webhook-id").to_string()).collect();
    got.sort();
    ids.sort();
    assert_eq!(got, ids, "each message exactly once after the endpoint came back");
    let err: Option<String> =
        db.query_one("SELECT last_error FROM realtime.webhook_deliveries LIMIT 1", &[]).await.unwrap().get(0);
    assert_eq!(err, None, "a delivered row keeps no error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_killed_mid_delivery_delivers_after_restart_within_the_at_least_once_bound() {
    let cluster = Cluster::start().await;
    cluster.setup_db().await;
    let db = cluster.client().await;
    let sink = Sink::start().await;
    sink.script("/slow", vec![Reply::Slow(Duration::from_secs(60), 200)]);
    webhook_channel(&db, "crash", &[sink.url("/slow")], None).await;
    let options = fast(&[]);
    let relay = Relay::start(&cluster, options.clone()).await;
    relay.wait_ready().await;
    let id = publish(&db, "crash", "e", &json!({})).await;
    sink.wait_for(1, WAIT).await;
    relay.kill().await; // SIGKILL while the request is in flight
    drop(relay);

    let relay = Relay::start(&cluster, options).await;
    relay.wait_ready().await;
    wait_value(&db, "SELECT count(*) FROM realtime.webhook_deliveries WHERE status = 'delivered'", 1).await;
    let reqs = sink.requests();
    // at-least-once bound: one extra request per attempt lost with a crashed relay
    assert_eq!(reqs.len(), 2, "the lost attempt is redone once");
    assert!(reqs.iter().all(|r| r.header("webhook-id") == id));
    let d = delivery(&db, &id, &sink.url("/slow")).await;
    assert_eq!((d.0.as_str(), d.1), ("delivered", 2));
    assert_eq!(message_counts(&db, &id).await.1, 1, "delivered once counted once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_send_each_delivery_once() {
    let (cluster, relay_a) = start_stack_with(fast(&[])).await;
    let relay_b = Relay::start(&cluster, fast(&[])).await;
    relay_b.wait_ready().await;
    let db = cluster.client().await;
    let sink = Sink::start().await;
    webhook_channel(&db, "shared", &[sink.url("/x"), sink.url("/y")], None).await;
    let mut ids = Vec::new();
    for n in 0..40 {
        ids.push(publish(&db, "shared", "e", &json!({"n": n})).await);
    }
    wait_value(&db, "SELECT count(*) FROM realtime.webhook_deliveries WHERE status = 'delivered'", 80).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let reqs = sink.requests();
    assert_eq!(reqs.len(), 80, "one request per message and URL");
    let mut pairs: Vec<(String, String)> =
        reqs.iter().map(|r| (r.header("webhook-id").to_string(), r.path.clone())).collect();
    pairs.sort();
    pairs.dedup();
    assert_eq!(pairs.len(), 80, "no duplicates");
    let attempts: i64 = db
        .query_one("SELECT sum(attempts)::bigint FROM realtime.webhook_deliveries", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(attempts, 80);
    drop((relay_a, relay_b));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolled_back_publish_enqueues_nothing_and_a_committed_one_waits_for_a_relay() {
    let cluster = Cluster::start().await;
    cluster.setup_db().await;
    let mut db = cluster.client().await;
    let sink = Sink::start().await;
    webhook_channel(&db, "tx", &[sink.url("/tx")], None).await;

    let tx = db.transaction().await.unwrap();
    tx.query_one("SELECT realtime.publish('tx', 'rolled-back', '{}')", &[]).await.unwrap();
    let queued: i64 =
        tx.query_one("SELECT count(*) FROM realtime.webhook_deliveries", &[]).await.unwrap().get(0);
    assert_eq!(queued, 1, "enqueued inside the transaction");
    tx.rollback().await.unwrap();
    let queued: i64 =
        db.query_one("SELECT count(*) FROM realtime.webhook_deliveries", &[]).await.unwrap().get(0);
    assert_eq!(queued, 0, "a rolled-back publish enqueues nothing");

    // committed while no relay runs: kept, then delivered when a relay starts
    let id = publish(&db, "tx", "committed", &json!({})).await;
    let relay = Relay::start(&cluster, fast(&[])).await;
    relay.wait_ready().await;
    let reqs = sink.wait_for(1, WAIT).await;
    wait_value(&db, "SELECT count(*) FROM realtime.webhook_deliveries WHERE status = 'delivered'", 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sink.requests().len(), 1);
    assert_eq!(reqs[0].header("webhook-id"), id);
    assert_eq!(reqs[0].header("x-realtime-event"), "committed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_addresses_are_refused_without_the_flag() {
    let (cluster, _relay) = start_stack_with(RelayOptions::default()).await;
    let db = cluster.client().await;
    let sink = Sink::start().await;
    let by_ip = sink.url("/ip");
    let by_name = format!("http://localhost:{}/name", sink.port());
    webhook_channel(&db, "private", &[by_ip.clone(), by_name.clone()], None).await;
    let id = publish(&db, "private", "e", &json!({})).await;
    wait_value(&db, "SELECT count(*) FROM realtime.webhook_deliveries WHERE status = 'failed'", 2).await;
    for url in [&by_ip, &by_name] {
        let (status, attempts, last_status, error) = delivery(&db, &id, url).await;
        assert_eq!((status.as_str(), attempts, last_status), ("failed", 1, None), "{url}");
        let error = error.unwrap();
        assert!(error.contains("loopback") && error.contains("--webhook-allow-private"), "{url}: {error}");
    }
    assert!(sink.requests().is_empty(), "nothing reached the private address");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserved_and_special_purpose_addresses_are_refused_without_the_flag() {
    let (cluster, _relay) = start_stack_with(RelayOptions::default()).await;
    let db = cluster.client().await;
    // Documentation, benchmarking and reserved IPv4 blocks; NAT64 and 6to4 forms of loopback.
    let urls: Vec<String> = [
        "192.0.2.10",
        "198.18.0.1",
        "198.51.100.7",
        "203.0.113.5",
        "240.0.0.1",
        "[64:ff9b::7f00:1]",
        "[2002:7f00:1::1]",
    ]
    .iter()
    .map(|host| format!("http://{host}:9/hook"))
    .collect();
    webhook_channel(&db, "reserved", &urls, None).await;
    let id = publish(&db, "reserved", "e", &json!({})).await;
    let n = urls.len() as i64;
    wait_value(&db, "SELECT count(*) FROM realtime.webhook_deliveries WHERE status = 'failed'", n).await;
    for url in &urls {
        let (status, attempts, _, error) = delivery(&db, &id, url).await;
        assert_eq!((status.as_str(), attempts), ("failed", 1), "{url}: refused at once, never retried");
        let error = error.unwrap();
        assert!(error.starts_with("refused:") && error.contains("--webhook-allow-private"), "{url}: {error}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_error_fails_at_once_shows_in_failures_and_is_requeued_by_retry_failed_webhooks() {
    let (cluster, _relay) = start_stack_with(fast(&["--webhook-max-attempts", "3"])).await;
    let db = cluster.client().await;
    let sink = Sink::start().await;
    sink.script("/gone", vec![Reply::Status(404)]);
    sink.set_default(Reply::Status(200));
    sink.script("/busy", vec![Reply::Status(503), Reply::Status(503), Reply::Status(503)]);
    webhook_channel(&db, "fails", &[sink.url("/gone"), sink.url("/busy")], None).await;
    let id = publish(&db, "fails", "e", &json!({})).await;
    wait_value(&db, "SELECT count(*) FROM realtime.webhook_deliveries WHERE status = 'failed'", 2).await;

    let gone = delivery(&db, &id, &sink.url("/gone")).await;
    assert_eq!((gone.1, gone.2), (1, Some(404)), "4xx fails at once: {gone:?}");
    let busy = delivery(&db, &id, &sink.url("/busy")).await;
    assert_eq!((busy.1, busy.2), (3, Some(503)), "5xx retried up to max attempts: {busy:?}");
    assert!(busy.3.unwrap().contains("gave up after 3 attempts"));
    let failures: i64 = db
        .query_one("SELECT count(*) FROM realtime.webhook_failures WHERE last_status IN (404, 503)", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(failures, 2);
    assert_eq!(message_counts(&db, &id).await.1, 0);

    let requeued: i32 = db
        .query_one("SELECT realtime.retry_failed_webhooks(url => $1)", &[&sink.url("/gone")])
        .await
        .unwrap()
        .get(0);
    assert_eq!(requeued, 1);
    wait_value(&db, "SELECT count(*) FROM realtime.webhook_deliveries WHERE status = 'delivered'", 1).await;
    assert_eq!(message_counts(&db, &id).await.1, 1);
    let requeued: i32 = db.query_one("SELECT realtime.retry_failed_webhooks()", &[]).await.unwrap().get(0);
    assert_eq!(requeued, 1, "the other failed delivery");
    wait_value(&db, "SELECT count(*) FROM realtime.webhook_deliveries WHERE status = 'delivered'", 2).await;
    assert_eq!(message_counts(&db, &id).await.1, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_endpoint_does_not_stall_other_endpoints() {
    let (cluster, _relay) = start_stack_with(fast(&[
        "--webhook-endpoint-concurrency",
        "2",
        "--webhook-concurrency",
        "4",
        "--webhook-timeout-secs",
        "50",
        "--webhook-lease-secs",
        "60",
    ]))
    .await;
    let db = cluster.client().await;
    let sink = Sink::start().await;
    sink.script("/slow", (0..20).map(|_| Reply::Slow(Duration::from_secs(40), 200)).collect());
    webhook_channel(&db, "slow", &[sink.url("/slow")], None).await;
    webhook_channel(&db, "fast", &[sink.url("/fast")], None).await;
    for n in 0..10 {
        publish(&db, "slow", "e", &json!({"n": n})).await;
    }
    for n in 0..10 {
        publish(&db, "fast", "e", &json!({"n": n})).await;
    }
    wait_value(
        &db,
        "SELECT count(*) FROM realtime.webhook_deliveries WHERE status = 'delivered' AND channel = 'fast'",
        10,
    )
    .await;
    assert!(sink.requests_to("/slow").len() <= 2, "the slow endpoint never had more than its 2 slots");
    let slow_delivered: i64 = db
        .query_one(
            "SELECT count(*) FROM realtime.webhook_deliveries WHERE status = 'delivered' AND channel = 'slow'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(slow_delivered, 0, "the fast endpoint finished while the slow one was still busy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_publish_through_the_relay_enqueues_webhooks_and_ws_audience_is_counted() {
    let (cluster, relay) = start_stack_with(fast(&[])).await;
    let db = cluster.client().await;
    let sink = Sink::start().await;
    webhook_channel(&db, "chat", &[sink.url("/chat")], None).await;
    allow_everyone(&db).await;
    exec(
        &db,
        "CREATE POLICY chat_publish ON realtime.messages FOR INSERT TO authenticated
           WITH CHECK (channel = 'chat' AND sender_id = realtime.user_id())",
    )
    .await;
    let mut l1 = Ws::connect(&relay.ws_url(), Connect::Anonymous).await;
    l1.subscribe_ok("chat").await;
    let mut l2 = Ws::connect(&relay.ws_url(), Connect::Anonymous).await;
    l2.subscribe_ok("chat").await;
    let mut alice =
        Ws::connect(&relay.ws_url(), Connect::Bearer(relay.token(Some("alice"), "authenticated"))).await;
    let reply =
        alice.request(json!({"type":"publish","channel":"chat","event":"said","payload":{"t":"hi"}})).await;
    assert_eq!(reply["ok"], true, "{reply}");
    let id = reply["id"].as_str().unwrap().to_string();
    l1.expect_message("chat").await;
    l2.expect_message("chat").await;

    let req = sink.wait_for(1, WAIT).await.remove(0);
    assert_eq!(req.header("webhook-id"), id);
    assert_eq!(req.json()["sender"], json!({"type": "user", "id": "alice"}));
    wait_value(
        &db,
        &format!("SELECT (wh_audience_count * 100 + wh_delivered_count * 10 + ws_audience_count)::bigint FROM realtime.messages WHERE id = '{id}'"),
        112,
    )
    .await;
}
