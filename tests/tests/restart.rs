//! Nothing is lost when Postgres restarts under a live stream: the relay reconnects by itself and
//! catches up from the log (its replication slot), and the WebSocket subscriber — which stays
//! connected to the relay throughout — receives every committed message exactly once, in order.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use realtime_e2e::{open_channel, pg_error_text, start_stack, Connect, Ws};
use serde_json::json;
use tokio::sync::watch;
use tokio_postgres::{Client, NoTls};

const N: u64 = 200;

/// What the publisher knows about each attempt: `committed` had its COMMIT return OK; `ambiguous`
/// lost its connection during COMMIT (it may or may not have committed). Attempts that failed
/// before COMMIT certainly did not commit and are not recorded.
#[derive(Default)]
struct Ledger {
    committed: Vec<(u64, u64)>,
    ambiguous: Vec<(u64, u64)>,
}

async fn connect_retrying(url: &str) -> Client {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match tokio_postgres::connect(url, NoTls).await {
            Ok((client, connection)) => {
                tokio::spawn(async move {
                    let _ = connection.await;
                });
                return client;
            }
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                // Retry back-off while the server is down, not synchronisation.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("publisher could not reconnect within 60 s: {e}"),
        }
    }
}

/// Publishes event `n` with payload `{n, attempt}` once per number, retrying each number (with a
/// fresh connection) until its COMMIT returns OK.
async fn publisher(
    url: String,
    numbers: std::ops::RangeInclusive<u64>,
    ledger: Arc<Mutex<Ledger>>,
    progress: watch::Sender<u64>,
) {
    let mut client: Option<Client> = None;
    for n in numbers {
        let mut attempt = 0;
        loop {
            attempt += 1;
            if client.as_ref().is_none_or(|c| c.is_closed()) {
                client = Some(connect_retrying(&url).await);
            }
            let payload = json!({"n": n, "attempt": attempt});
            match publish_once(client.as_mut().unwrap(), &payload).await {
                Attempt::Committed => {
                    ledger.lock().unwrap().committed.push((n, attempt));
                    progress.send_replace(n);
                    break;
                }
                Attempt::Ambiguous => {
                    ledger.lock().unwrap().ambiguous.push((n, attempt));
                    client = None;
                }
                Attempt::NotCommitted(error) => {
                    assert!(attempt < 200, "publish of {n} keeps failing; last error: {error}");
                    client = None;
                }
            }
        }
    }
}

enum Attempt {
    Committed,
    Ambiguous,
    NotCommitted(String),
}

/// One publish in its own transaction.
async fn publish_once(client: &mut Client, payload: &serde_json::Value) -> Attempt {
    let tx = match client.transaction().await {
        Ok(tx) => tx,
        Err(e) => return Attempt::NotCommitted(pg_error_text(&e)),
    };
    if let Err(e) = tx.query_one("SELECT realtime.publish('counter', 'n', $1::jsonb)", &[payload]).await {
        return Attempt::NotCommitted(pg_error_text(&e));
    }
    match tx.commit().await {
        Ok(()) => Attempt::Committed,
        Err(_) => Attempt::Ambiguous,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restart_mid_stream_loses_nothing() {
    let (cluster, relay) = start_stack().await;
    open_channel(&cluster.client().await, "counter").await;
    let mut ws = Ws::connect(&relay.ws_url(), Connect::Anonymous).await;
    ws.subscribe_ok("counter").await;

    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let (progress_tx, mut progress) = watch::channel(0u64);
    let task = tokio::spawn(publisher(cluster.url("postgres"), 1..=N, ledger.clone(), progress_tx));

    // Restart once half the numbers have committed.
    progress.wait_for(|&n| n >= N / 2).await.expect("publisher alive until half way");
    cluster.restart().await;
    task.await.expect("publisher task");

    // Final marker (number N + 1), published the same careful way: the subscriber reads until it.
    let (marker_tx, _) = watch::channel(0u64);
    publisher(cluster.url("postgres"), N + 1..=N + 1, ledger.clone(), marker_tx).await;

    let ledger = std::mem::take(&mut *ledger.lock().unwrap());
    eprintln!(
        "publisher: {} committed, {} ambiguous commits (connection lost during COMMIT)",
        ledger.committed.len(),
        ledger.ambiguous.len()
    );
    let committed_numbers: Vec<u64> = ledger.committed.iter().map(|&(n, _)| n).collect();
    assert_eq!(
        committed_numbers,
        (1..=N + 1).collect::<Vec<_>>(),
        "the publisher committed every number once"
    );

    let mut received: Vec<(u64, u64)> = Vec::new();
    let mut cursors: Vec<String> = Vec::new();
    loop {
        let msg = ws.recv_json_within(Duration::from_secs(60)).await;
        if msg["type"] != "message" || msg["channel"] != "counter" {
            ws.fail(&format!("expected only messages on counter, got {msg}"));
        }
        let n = msg["payload"]["n"].as_u64().unwrap_or_else(|| ws.fail(&format!("payload.n: {msg}")));
        let attempt =
            msg["payload"]["attempt"].as_u64().unwrap_or_else(|| ws.fail(&format!("payload.attempt: {msg}")));
        received.push((n, attempt));
        cursors
            .push(msg["cursor"].as_str().unwrap_or_else(|| ws.fail(&format!("cursor: {msg}"))).to_string());
        if n == N + 1 {
            break;
        }
    }

    // Publishes were sequential, so commit order is (n, attempt) order: strictly increasing means
    // in order and no duplicates.
    for pair in received.windows(2) {
        assert!(
            pair[0] < pair[1],
            "delivered out of order or twice: {:?} then {:?}\nall: {received:?}",
            pair[0],
            pair[1]
        );
    }
    for pair in cursors.windows(2) {
        assert!(pair[0] < pair[1], "cursors not strictly increasing: {:?} then {:?}", pair[0], pair[1]);
    }
    for m in &received {
        assert!(
            ledger.committed.contains(m) || ledger.ambiguous.contains(m),
            "delivered {m:?}, which the publisher never committed (not even ambiguously)"
        );
    }
    let delivered_committed: Vec<(u64, u64)> =
        received.iter().copied().filter(|m| ledger.committed.contains(m)).collect();
    assert_eq!(
        delivered_committed, ledger.committed,
        "every committed message delivered exactly once, in commit order"
    );
    ws.expect_no_message(Duration::from_millis(500)).await;
    assert!(relay.try_exit_status().is_none(), "the relay survived the restart");
}

/// Polls `/readyz` until it answers `want`, for at most `limit`; returns the last status seen.
async fn readyz_becomes(port: u16, want: u16, limit: Duration) -> Option<u16> {
    let deadline = Instant::now() + limit;
    let mut last = None;
    while Instant::now() < deadline {
        last = realtime_e2e::http_get(port, "/readyz").await.ok().map(|(status, _)| status);
        if last == Some(want) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_not_ready_while_postgres_is_down_and_ready_again_after() {
    let (cluster, relay) = start_stack().await;
    assert_eq!(readyz_becomes(relay.port(), 200, Duration::from_secs(5)).await, Some(200));
    cluster.stop().await;
    assert_eq!(
        readyz_becomes(relay.port(), 503, Duration::from_secs(30)).await,
        Some(503),
        "not ready once the replication stream is gone"
    );
    assert_eq!(
        realtime_e2e::http_get(relay.port(), "/healthz").await.map(|(s, _)| s),
        Ok(200),
        "the process is up"
    );
    cluster.start_again().await;
    assert_eq!(
        readyz_becomes(relay.port(), 200, Duration::from_secs(60)).await,
        Some(200),
        "ready again after reconnecting"
    );
    let db = cluster.client().await;
    open_channel(&db, "after").await;
    let mut ws = Ws::connect(&relay.ws_url(), Connect::Anonymous).await;
    ws.subscribe_ok("after").await;
    realtime_e2e::publish(&db, "after", "back", &json!({})).await;
    assert_eq!(ws.expect_message("after").await["event"], "back");
}
