//! Identical replicas: relays started with the same flags and no `--relay-id` each claim their
//! own slot from the pool, all become ready and all deliver; a replacement takes over the slot
//! of a killed relay (no slot growth over cycles); a live relay drops a slot abandoned for longer
//! than `--slot-abandon-secs`; an explicit `--relay-id` held by a running relay makes a second
//! process wait until it is free.

use std::time::{Duration, Instant};

use realtime_e2e::{open_channel, publish, Cluster, Connect, Relay, RelayOptions, Ws};
use serde_json::json;
use tokio_postgres::Client;

/// `(slot_name, active)` of every relay slot, by name.
async fn slots(db: &Client) -> Vec<(String, bool)> {
    let rows = db
        .query(
            "SELECT slot_name::text, active FROM pg_replication_slots \
             WHERE slot_name LIKE 'realtime\\_%' ORDER BY slot_name",
            &[],
        )
        .await
        .unwrap();
    rows.iter().map(|r| (r.get(0), r.get(1))).collect()
}

/// Waits until `cond(slots)` holds (20 s at most).
async fn wait_slots(
    db: &Client,
    what: &str,
    cond: impl Fn(&[(String, bool)]) -> bool,
) -> Vec<(String, bool)> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = slots(db).await;
        if cond(&now) {
            return now;
        }
        assert!(Instant::now() < deadline, "{what}: slots are {now:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn names(slots: &[(String, bool)]) -> Vec<&str> {
    slots.iter().map(|(n, _)| n.as_str()).collect()
}

/// A cluster with the extension and the open channel `fleet`, and a superuser client.
async fn fleet_cluster() -> (Cluster, Client) {
    let cluster = Cluster::start().await;
    cluster.setup_db().await;
    let db = cluster.client().await;
    open_channel(&db, "fleet").await;
    (cluster, db)
}

/// Every relay delivers a message published after its subscriber joined.
async fn all_deliver(db: &Client, relays: &[Relay], event: &str) {
    let mut clients = Vec::new();
    for relay in relays {
        let mut ws = Ws::connect(&relay.ws_url(), Connect::Anonymous).await;
        ws.subscribe_ok("fleet").await;
        clients.push(ws);
    }
    publish(db, "fleet", event, &json!({})).await;
    for ws in &mut clients {
        assert_eq!(ws.expect_message("fleet").await["event"], event);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_replicas_claim_their_own_slots_and_replacements_take_over_abandoned_ones() {
    let (cluster, db) = fleet_cluster().await;
    let same = RelayOptions { pooled: true, ..Default::default() };
    let mut relays = Vec::new();
    for _ in 0..3 {
        relays.push(Relay::start(&cluster, same.clone()).await);
    }
    for relay in &relays {
        relay.wait_ready().await;
    }
    let now = wait_slots(&db, "three streaming slots", |s| s.len() == 3 && s.iter().all(|(_, a)| *a)).await;
    assert_eq!(names(&now), ["realtime_relay", "realtime_relay_2", "realtime_relay_3"]);
    let ids: i64 =
        db.query_one("SELECT count(DISTINCT relay_id) FROM realtime.relays", &[]).await.unwrap().get(0);
    assert_eq!(ids, 3, "each replica has its own relay id for presence");
    all_deliver(&db, &relays, "three").await;

    for cycle in 0..2 {
        relays.remove(0).kill().await;
        let replacement = Relay::start(&cluster, same.clone()).await;
        replacement.wait_ready().await;
        relays.push(replacement);
        let now = wait_slots(&db, "the replacement streams from the abandoned slot", |s| {
            s.len() == 3 && s.iter().all(|(_, a)| *a)
        })
        .await;
        assert_eq!(names(&now), ["realtime_relay", "realtime_relay_2", "realtime_relay_3"], "cycle {cycle}");
        all_deliver(&db, &relays, &format!("cycle{cycle}")).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_slot_is_dropped_and_an_explicit_id_in_use_waits() {
    let (cluster, db) = fleet_cluster().await;
    // 2 s instead of the default 300 s, so the test sees the drop.
    let quick = RelayOptions {
        pooled: true,
        extra_args: vec!["--slot-abandon-secs".into(), "2".into()],
        ..Default::default()
    };
    let keeper = Relay::start(&cluster, quick.clone()).await;
    keeper.wait_ready().await;
    let gone = Relay::start(&cluster, quick).await;
    gone.wait_ready().await;
    wait_slots(&db, "two slots", |s| s.len() == 2).await;
    gone.kill().await;
    let now = wait_slots(&db, "the abandoned slot is dropped", |s| s.len() == 1).await;
    assert_eq!(names(&now), ["realtime_relay"], "the live relay's slot stays");
    // The drop is logged after it commits: wait for the line rather than race it.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !keeper.log().contains("dropped an abandoned replication slot") {
        assert!(Instant::now() < deadline, "the live relay says it dropped the slot:\n{}", keeper.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    all_deliver(&db, std::slice::from_ref(&keeper), "after-drop").await;

    let fixed = RelayOptions { relay_id: Some("fixed_one".into()), ..Default::default() };
    let first = Relay::start(&cluster, fixed.clone()).await;
    first.wait_ready().await;
    let second = Relay::start(&cluster, fixed).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !second.log().contains("relay id is held by another relay process") {
        assert!(Instant::now() < deadline, "the second process says why it waits:\n{}", second.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(realtime_e2e::http_get(second.port(), "/readyz").await.is_err(), "not serving while it waits");
    first.kill().await;
    second.wait_ready().await;
    all_deliver(&db, std::slice::from_ref(&second), "fixed").await;
}
