//! Forged logical messages (issue 17, item 1): every login may call
//! `pg_logical_emit_message()`, so the relay must deliver only `realtime:` messages sealed by the
//! extension's own code (`realtime.emit_message`, with a key of `realtime.relay_keys`).
//!
//! A plain login `mallory` (member of `anon`, as any application login that may `SET ROLE anon`)
//! forges broadcasts into `private:alice`, a presence member, a re-check signal and a keys
//! signal, unsealed and with made-up seals. Each test then sends a genuine message of the same
//! kind: it arrives first (the forgeries before it were dropped, not delayed), and
//! `realtime_replication_forged_messages_total{prefix}` counts the forgeries. Key rotation:
//! a new key seals at once, and a deleted key stops verifying as soon as its DELETE commits.
//! A relay login that may not read the keys is not ready and names the missing grant.

use std::time::Duration;

use realtime_e2e::{
    allow_everyone, create_channel, exec, http_get, pg_error_text, scrape_metric, Cluster, Connect, Relay,
    RelayOptions, Ws,
};
use serde_json::{json, Value};
use tokio_postgres::{Client, NoTls};

const PRIVATE: &str = "private:alice";
const LOBBY: &str = "chat:lobby";

/// A cluster with `private:%` and `chat:lobby` (everyone may subscribe: the point is who may
/// write, and anon may not broadcast) and the login `mallory`, a member of `anon`.
async fn stack() -> (Cluster, Relay, Client) {
    let cluster = Cluster::start().await;
    cluster.setup_db().await;
    let db = cluster.client().await;
    create_channel(&db, "private:%").await;
    create_channel(&db, LOBBY).await;
    allow_everyone(&db).await;
    exec(&db, "CREATE ROLE mallory LOGIN; GRANT anon TO mallory").await;
    let relay = Relay::start(&cluster, Default::default()).await;
    relay.wait_ready().await;
    (cluster, relay, db)
}

/// A connection as `mallory`, already `SET ROLE anon`.
async fn mallory(cluster: &Cluster) -> Client {
    let url = format!("postgres://mallory@127.0.0.1:{}/postgres", cluster.port());
    let (client, conn) = tokio_postgres::connect(&url, NoTls).await.expect("connect as mallory");
    tokio::spawn(conn);
    exec(&client, "SET ROLE anon").await;
    client
}

async fn forged(relay: &Relay, prefix: &str) -> f64 {
    scrape_metric(relay.port(), &format!("realtime_replication_forged_messages_total{{prefix=\"{prefix}\"}}"))
        .await
}

/// Waits until the forged counter of `prefix` reaches `want` (it is counted when the relay
/// decodes the forgery, just before the genuine message that follows it).
async fn wait_forged(relay: &Relay, prefix: &str, want: f64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let n = forged(relay, prefix).await;
        if n == want {
            return;
        }
        assert!(
            n < want && tokio::time::Instant::now() < deadline,
            "forged{{prefix={prefix}}} is {n}, want {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn body(channel: &str, event: &str) -> String {
    json!({"channel": channel, "event": event, "payload": {"from": "mallory"}}).to_string()
}

#[tokio::test]
async fn forged_broadcasts_are_dropped_and_counted_and_emit_message_needs_the_keys() {
    let (cluster, relay, db) = stack().await;
    let mut alice =
        Ws::connect(&relay.ws_url(), Connect::Bearer(relay.token(Some("alice"), "authenticated"))).await;
    alice.subscribe_ok(PRIVATE).await;
    let m = mallory(&cluster).await;

    // Unsealed, transactional and not; a made-up seal with the real key id; an unknown key id.
    let zeros = "0".repeat(64);
    for (transactional, content) in [
        (true, body(PRIVATE, "plain")),
        (false, body(PRIVATE, "plain-nontx")),
        (true, format!("rt1.1.{zeros}.{}", body(PRIVATE, "fake-seal"))),
        (true, format!("rt1.999.{zeros}.{}", body(PRIVATE, "unknown-key"))),
    ] {
        m.execute(
            "SELECT pg_logical_emit_message($1, 'realtime:broadcast', $2)",
            &[&transactional, &content],
        )
        .await
        .expect("any login may call pg_logical_emit_message");
    }
    // The sealing function is no way around it: anon may not read the keys.
    let err = m
        .execute("SELECT realtime.emit_message(true, 'realtime:broadcast', $1)", &[&body(PRIVATE, "emit")])
        .await
        .expect_err("anon must not be able to seal");
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
        "{}",
        pg_error_text(&err)
    );
    assert!(pg_error_text(&err).contains("relay_keys"), "{}", pg_error_text(&err));
    // Nor is broadcast (not granted to anon).
    let err =
        m.execute("SELECT realtime.broadcast($1, 'b', '{}')", &[&PRIVATE]).await.expect_err("no EXECUTE");
    assert_eq!(err.code(), Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE));

    // The genuine broadcast is the first message alice gets.
    exec(&db, "SELECT realtime.broadcast('private:alice', 'genuine', '{\"n\": 1}')").await;
    let msg = alice.expect_message(PRIVATE).await;
    assert_eq!((msg["event"].clone(), msg["payload"].clone()), (json!("genuine"), json!({"n": 1})), "{msg}");
    wait_forged(&relay, "broadcast", 4.0).await;
    assert!(relay.log().contains("without a valid seal dropped"), "the relay warns about forgeries");

    // A forged re-check signal and keys signal are dropped and counted too.
    m.execute("SELECT pg_logical_emit_message(true, 'realtime:channels', '')", &[]).await.unwrap();
    m.execute("SELECT pg_logical_emit_message(true, 'realtime:keys', '')", &[]).await.unwrap();
    exec(&db, "SELECT realtime.broadcast('private:alice', 'genuine', '{\"n\": 2}')").await;
    assert_eq!(alice.expect_message(PRIVATE).await["payload"], json!({"n": 2}));
    wait_forged(&relay, "channels", 1.0).await;
    wait_forged(&relay, "keys", 1.0).await;
    alice.expect_no_message(Duration::from_millis(300)).await;
}

/// The presence_ids of a subscribe reply's snapshot, sorted.
fn member_ids(reply: &Value) -> Vec<String> {
    let members = reply["presence"]["members"].as_array().unwrap_or_else(|| panic!("no members: {reply}"));
    let mut ids: Vec<String> =
        members.iter().map(|m| m["presence_id"].as_str().unwrap().to_string()).collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn a_forged_presence_op_adds_no_member() {
    let (cluster, relay, _db) = stack().await;
    let mut bob =
        Ws::connect(&relay.ws_url(), Connect::Bearer(relay.token(Some("bob"), "authenticated"))).await;
    assert_eq!(member_ids(&bob.subscribe_ok(LOBBY).await), Vec::<String>::new());
    let m = mallory(&cluster).await;
    let op = json!({"op": "track", "channel": LOBBY, "conn": "ghost-conn", "relay": relay.relay_id(),
                    "presence_id": "ghost", "user_id": "ghost", "state": {}})
    .to_string();
    m.execute("SELECT pg_logical_emit_message(true, 'realtime:presence', $1)", &[&op]).await.unwrap();

    // A genuine member joins: bob's next presence frame is carol's join, never the ghost's.
    let mut carol =
        Ws::connect(&relay.ws_url(), Connect::Bearer(relay.token(Some("carol"), "authenticated"))).await;
    carol.subscribe_ok(LOBBY).await;
    let reply = carol.request(json!({"type": "track", "channel": LOBBY, "state": {}})).await;
    assert_eq!(reply["ok"], true, "{reply}");
    let f = bob.recv_json_within(Duration::from_secs(20)).await;
    assert_eq!((f["type"].clone(), f["event"].clone()), (json!("presence"), json!("join")), "{f}");
    assert_eq!(f["member"]["presence_id"], "carol", "{f}");
    wait_forged(&relay, "presence", 1.0).await;

    // A new subscriber's snapshot has carol only.
    let mut dave = Ws::connect(&relay.ws_url(), Connect::Anonymous).await;
    assert_eq!(member_ids(&dave.subscribe_ok(LOBBY).await), vec!["carol".to_string()]);
}

#[tokio::test]
async fn a_new_key_seals_at_once_and_a_deleted_key_stops_verifying() {
    let (_cluster, relay, db) = stack().await;
    let mut alice =
        Ws::connect(&relay.ws_url(), Connect::Bearer(relay.token(Some("alice"), "authenticated"))).await;
    alice.subscribe_ok(PRIVATE).await;
    let old: (i64, Vec<u8>) = {
        let r = db.query_one("SELECT id, key FROM realtime.relay_keys", &[]).await.unwrap();
        (r.get(0), r.get(1))
    };
    // Rotation: a new key; broadcasts seal with it at once and are delivered.
    exec(&db, "INSERT INTO realtime.relay_keys DEFAULT VALUES").await;
    exec(&db, "SELECT realtime.broadcast('private:alice', 'after-insert', '{}')").await;
    assert_eq!(alice.expect_message(PRIVATE).await["event"], "after-insert");
    // Sealed with the old key by hand (what a holder of the old key could do): still accepted
    // while the old key exists.
    let by_old_key = "SELECT pg_logical_emit_message(true, 'realtime:broadcast', \
                      realtime.seal_message($1, $2, 'realtime:broadcast', $3))";
    db.execute(by_old_key, &[&old.1, &old.0, &body(PRIVATE, "old-key")]).await.unwrap();
    assert_eq!(alice.expect_message(PRIVATE).await["event"], "old-key");
    // The old key is deleted: from that commit on, its seal no longer verifies.
    db.execute("DELETE FROM realtime.relay_keys WHERE id = $1", &[&old.0]).await.unwrap();
    db.execute(by_old_key, &[&old.1, &old.0, &body(PRIVATE, "old-key-deleted")]).await.unwrap();
    exec(&db, "SELECT realtime.broadcast('private:alice', 'after-delete', '{}')").await;
    assert_eq!(alice.expect_message(PRIVATE).await["event"], "after-delete");
    wait_forged(&relay, "broadcast", 1.0).await;
    // The last key cannot silently disappear: with none left, emitting fails loudly.
    exec(&db, "DELETE FROM realtime.relay_keys").await;
    let err =
        db.execute("SELECT realtime.broadcast('private:alice', 'e', '{}')", &[]).await.expect_err("no key");
    assert!(pg_error_text(&err).contains("relay_keys is empty"), "{}", pg_error_text(&err));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_login_that_may_not_read_the_keys_is_not_ready_and_says_which_grant() {
    let cluster = Cluster::start().await;
    cluster.setup_db().await;
    let db = cluster.client().await;
    // Every right `realtime-relay check` asks for, except SELECT on realtime.relay_keys.
    exec(
        &db,
        "CREATE ROLE relay_login LOGIN REPLICATION; \
         GRANT anon, authenticated, service_role TO relay_login; \
         GRANT SELECT, INSERT ON realtime.messages TO relay_login; \
         GRANT INSERT ON realtime.commits TO relay_login; \
         GRANT SELECT, INSERT, UPDATE, DELETE ON realtime.presence, realtime.relays TO relay_login; \
         GRANT EXECUTE ON FUNCTION realtime.publish(text, text, jsonb), \
             realtime.claim_webhook_deliveries(integer, double precision, text, text[]), \
             realtime.finish_webhook_deliveries(bigint[], integer[], text[], integer[], text[], double precision[]), \
             realtime.webhook_queue_depth(), realtime.add_ws_audience(text[], integer[]) TO relay_login;",
    )
    .await;
    let url = format!("postgres://relay_login@127.0.0.1:{}/postgres", cluster.port());
    let relay = Relay::start(&cluster, RelayOptions { database_url: Some(url), ..Default::default() }).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !relay.log().contains("GRANT SELECT ON realtime.relay_keys TO <login>") {
        assert!(tokio::time::Instant::now() < deadline, "no hint about the grant:\n{}", relay.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, _) = http_get(relay.port(), "/readyz").await.expect("GET /readyz");
    assert_ne!(status, 200, "a relay that cannot verify messages is not ready");
    // With the grant, it streams (the session is retried with backoff).
    exec(&db, "GRANT SELECT ON realtime.relay_keys TO relay_login").await;
    relay.wait_ready().await;
}
