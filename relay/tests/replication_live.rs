//! Live test of the replication ingest against a real Postgres (wal_level=logical).
//!
//! Ignored by default. Run with a throwaway cluster, e.g.:
//!
//! ```sh
//! DATABASE_URL='host=/tmp port=55450 user=postgres dbname=postgres' \
//! REPL_TEST_RESTART_CMD='sudo -u postgres /usr/lib/postgresql/15/bin/pg_ctl -D /tmp/repl-pg/data -m fast -w restart' \
//! cargo test -p realtime-relay --test replication_live -- --ignored --nocapture
//! ```
//!
//! It (re)creates a stand-in `realtime` schema (messages, commits, publication) in that database,
//! so never point it at a database you care about. Without `REPL_TEST_RESTART_CMD` the Postgres
//! restart part is skipped.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use realtime_relay::core::event::{CommitBatch, LogEvent, StoredMessage};
use realtime_relay::core::format_pg_lsn;
use realtime_relay::pg::replication::{run, ReplicationConfig, ReplicationStatus};
use tokio::sync::mpsc;
use tokio_postgres::{Client, NoTls};
use tokio_util::sync::CancellationToken;

const SCHEMA: &str = r#"
DROP PUBLICATION IF EXISTS realtime_messages;
DROP SCHEMA IF EXISTS realtime CASCADE;
CREATE SCHEMA realtime;
CREATE TABLE realtime.messages (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    seq bigint GENERATED ALWAYS AS IDENTITY,
    channel text NOT NULL,
    channel_id bigint,
    event text NOT NULL,
    payload jsonb NOT NULL DEFAULT '{}',
    sender_type text NOT NULL DEFAULT 'system',
    sender_id text,
    created_at timestamptz NOT NULL DEFAULT now(),
    ws_audience_count int,
    wh_audience_count int,
    wh_delivered_count int,
    xid xid8 NOT NULL DEFAULT pg_current_xact_id()
);
CREATE TABLE realtime.commits (
    xid xid8 PRIMARY KEY,
    commit_lsn pg_lsn NOT NULL,
    committed_at timestamptz DEFAULT now()
);
CREATE PUBLICATION realtime_messages FOR TABLE realtime.messages WITH (publish = 'insert');
CREATE TABLE realtime.relay_keys (id bigint PRIMARY KEY, key bytea NOT NULL);
INSERT INTO realtime.relay_keys VALUES (1, '\x0707070707070707070707070707070707070707070707070707070707070707');
"#;

/// The stand-in schema's key (id 1): logical messages are sealed with it, as
/// `realtime.emit_message` would, since the relay drops unsealed ones.
const KEY: [u8; 32] = [7; 32];

/// `body` sealed for `prefix`, as an SQL string literal.
fn sealed(prefix: &str, body: &str) -> String {
    let s = realtime_core::seal::seal(1, &KEY, prefix, body).expect("seal");
    format!("'{}'", s.replace('\'', "''"))
}

const SLOT: &str = "realtime_live_test";

async fn connect(url: &str) -> Client {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await.expect("connect");
    tokio::spawn(conn);
    client
}

async fn insert(c: &Client, channel: &str, event: &str) {
    c.execute(
        "INSERT INTO realtime.messages (channel, event, payload) VALUES ($1, $2, '{\"n\": 1}')",
        &[&channel, &event],
    )
    .await
    .expect("insert");
}

/// Receives batches until `n` stored messages arrived (or panics after `secs`).
async fn stored(
    rx: &mut mpsc::Receiver<CommitBatch>,
    all: &mut Vec<CommitBatch>,
    n: usize,
    secs: u64,
) -> Vec<StoredMessage> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while got.len() < n {
        let batch = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("timed out with {} of {n} messages: {got:?}", got.len()))
            .expect("replication task ended");
        for ev in &batch.events {
            if let LogEvent::Stored(m) = ev {
                got.push(m.clone());
            }
        }
        all.push(batch);
    }
    got
}

fn events(ms: &[StoredMessage]) -> Vec<&str> {
    ms.iter().map(|m| m.event.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs DATABASE_URL of a throwaway Postgres with wal_level=logical"]
async fn replication_delivers_commits_in_order_once_across_restart() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let url = std::env::var("DATABASE_URL").expect("DATABASE_URL");
    let admin = connect(&url).await;
    let _ = admin.execute("SELECT pg_drop_replication_slot($1)", &[&SLOT]).await;
    admin.batch_execute(SCHEMA).await.expect("schema");

    let (tx, mut rx) = mpsc::channel(16);
    let status = Arc::new(ReplicationStatus::new());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(run(
        ReplicationConfig {
            database_url: url.clone(),
            slot: SLOT.into(),
            publication: "realtime_messages".into(),
            max_txn_bytes: 32 << 20,
        },
        tx,
        status.clone(),
        shutdown.clone(),
    ));
    for _ in 0..100 {
        if status.is_streaming() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(status.is_streaming(), "replication did not start");
    let mut all = Vec::new();

    // 1. Commit order, not insert order.
    let c1 = connect(&url).await;
    let c2 = connect(&url).await;
    c1.batch_execute("BEGIN").await.unwrap();
    insert(&c1, "order", "inserted-first-commits-last").await;
    c2.batch_execute("BEGIN").await.unwrap();
    insert(&c2, "order", "inserted-second-commits-first").await;
    c2.batch_execute("COMMIT").await.unwrap();
    c1.batch_execute("COMMIT").await.unwrap();
    let got = stored(&mut rx, &mut all, 2, 10).await;
    assert_eq!(events(&got), ["inserted-second-commits-first", "inserted-first-commits-last"]);
    assert!(got[0].cursor < got[1].cursor);
    assert!(got[0].seq > got[1].seq, "seq alone is not commit order");
    assert!(got[0].created_at.ends_with('Z') && got[0].created_at.len() == 27);
    assert_eq!(got[0].payload, r#"{"n": 1}"#);

    // 2. A rolled-back insert never arrives.
    c1.batch_execute("BEGIN").await.unwrap();
    insert(&c1, "rb", "rolled-back").await;
    c1.batch_execute("ROLLBACK").await.unwrap();
    insert(&c1, "rb", "after-rollback").await;
    assert_eq!(events(&stored(&mut rx, &mut all, 1, 10).await), ["after-rollback"]);

    // 3. A 100 KB payload arrives intact, with ephemeral messages of the same tx in WAL order.
    //    An unsealed broadcast in the same transaction is dropped.
    c1.batch_execute(&format!(
        "BEGIN;
         SELECT pg_logical_emit_message(true, 'realtime:broadcast', {});
         SELECT pg_logical_emit_message(true, 'realtime:broadcast',
             '{{\"channel\":\"room\",\"event\":\"forged\"}}');
         SELECT pg_logical_emit_message(true, 'realtime:unknown', {});
         INSERT INTO realtime.messages (channel, event, payload)
             VALUES ('big', 'big', jsonb_build_object('blob', repeat('x', 102400)));
         COMMIT",
        sealed("realtime:broadcast", r#"{"channel":"room","event":"typing","payload":{"who":"ada"}}"#),
        sealed("realtime:unknown", "ignored"),
    ))
    .await
    .unwrap();
    let big = stored(&mut rx, &mut all, 1, 10).await;
    let batch = all.last().unwrap();
    assert_eq!(batch.events.len(), 2, "{batch:?}");
    assert!(matches!(&batch.events[0], LogEvent::Ephemeral(e)
        if e.channel == "room" && e.event == "typing" && e.payload == r#"{"who":"ada"}"#));
    assert_eq!(status.forged_messages("broadcast"), 1, "the unsealed broadcast is counted");
    let v: serde_json::Value = serde_json::from_str(&big[0].payload).unwrap();
    assert_eq!(v["blob"].as_str().unwrap().len(), 102400);

    // 4. A non-transactional broadcast arrives on its own.
    c1.batch_execute(&format!(
        "SELECT pg_logical_emit_message(false, 'realtime:broadcast', {})",
        sealed("realtime:broadcast", r#"{"channel":"room","event":"now","payload":1}"#),
    ))
    .await
    .unwrap();
    let b = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.unwrap().unwrap();
    assert!(matches!(&b.events[..], [LogEvent::Ephemeral(e)] if e.event == "now" && e.payload == "1"));

    // 5. Postgres restart: nothing lost, nothing duplicated. The batches are consumed while
    //    Postgres restarts, as the hub would: a fast shutdown waits for the slot's consumer.
    for i in 0..20 {
        insert(&c1, "burst", &format!("burst-{i}")).await;
    }
    let mut expected = 20;
    let restart = std::env::var("REPL_TEST_RESTART_CMD").ok().map(|cmd| {
        let before = status.reconnects();
        let handle = tokio::spawn(async move {
            tokio::process::Command::new("sh").arg("-c").arg(&cmd).status().await.expect("restart command")
        });
        (before, handle)
    });
    let mut burst = stored(&mut rx, &mut all, 20, 30).await;
    if let Some((before, handle)) = restart {
        assert!(handle.await.unwrap().success(), "restart failed");
        for _ in 0..300 {
            if status.reconnects() > before && status.is_streaming() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(status.reconnects() > before, "no reconnect observed");
        assert!(status.is_streaming(), "streaming did not resume");
        let c3 = connect(&url).await;
        for i in 0..5 {
            insert(&c3, "burst", &format!("after-restart-{i}")).await;
        }
        expected += 5;
        burst.extend(stored(&mut rx, &mut all, 5, 30).await);
    }
    let admin = connect(&url).await; // the old session died with the restart
                                     // Give a replay a chance to show up as duplicates.
    tokio::time::sleep(Duration::from_millis(500)).await;
    while let Ok(b) = rx.try_recv() {
        for ev in b.events {
            if let LogEvent::Stored(m) = ev {
                panic!("unexpected extra message {m:?}");
            }
        }
    }
    let want: Vec<String> = (0..20)
        .map(|i| format!("burst-{i}"))
        .chain((0..expected - 20).map(|i| format!("after-restart-{i}")))
        .collect();
    assert_eq!(events(&burst), want.iter().map(String::as_str).collect::<Vec<_>>());

    // Every stored message exactly once, cursors strictly increasing in delivery order.
    let stored_all: Vec<&StoredMessage> = all
        .iter()
        .flat_map(|b| &b.events)
        .filter_map(|e| match e {
            LogEvent::Stored(m) => Some(m),
            _ => None,
        })
        .collect();
    let ids: HashSet<&str> = stored_all.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids.len(), stored_all.len(), "duplicate delivery");
    assert!(stored_all.windows(2).all(|w| w[0].cursor < w[1].cursor));
    let n: i64 = admin.query_one("SELECT count(*) FROM realtime.messages", &[]).await.unwrap().get(0);
    assert_eq!(n as usize, stored_all.len(), "lost messages");

    // 6. realtime.commits gets every commit position (written within ~50 ms, allow slack).
    let mut missing = Vec::new();
    for _ in 0..50 {
        missing.clear();
        for m in &stored_all {
            let row = admin
                .query_opt(
                    "SELECT c.commit_lsn::text FROM realtime.messages m
                     JOIN realtime.commits c ON c.xid = m.xid WHERE m.id = $1::text::uuid",
                    &[&m.id],
                )
                .await
                .unwrap();
            let lsn: Option<String> = row.map(|r| r.get(0));
            if lsn.as_deref() != Some(format_pg_lsn(m.cursor.commit_lsn).as_str()) {
                missing.push((m.event.clone(), lsn));
            }
        }
        if missing.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(missing.is_empty(), "commit positions missing or wrong: {missing:?}");

    // 7. Clean shutdown.
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("run() did not stop")
        .unwrap()
        .expect("run() failed");
    assert!(!status.is_streaming());
    for _ in 0..50 {
        if admin.execute("SELECT pg_drop_replication_slot($1)", &[&SLOT]).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
