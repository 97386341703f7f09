//! Table change events end to end: a table watched with `realtime.watch_table` publishes its
//! INSERT / UPDATE / DELETE through the same path as `realtime.publish`, so subscribers get them
//! when (and only if) the transaction commits, in commit order, under the channel's RLS policies.
//!
//! Negative checks are anchored on a positive sync point (a later change on the same channel), as
//! in `delivery.rs`.

use std::time::Duration;

use realtime_e2e::{
    create_channel, exec, open_channel, start_stack, start_stack_with, Connect, RelayOptions, Ws,
};
use serde_json::{json, Value};

fn error_code(reply: &Value) -> &str {
    assert_eq!(reply["ok"], false, "expected a refused subscribe: {reply}");
    reply["error"]["code"].as_str().unwrap_or_else(|| panic!("error reply carries error.code: {reply}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watched_table_delivers_insert_update_delete_frames_with_row_payload() {
    let (cluster, relay) = start_stack().await;
    let db = cluster.client().await;
    open_channel(&db, "orders").await;
    exec(
        &db,
        "CREATE TABLE public.orders (id int PRIMARY KEY, item text NOT NULL, price numeric, tags text[],
                                     placed_at timestamptz, secret text);
         SELECT realtime.watch_table('public.orders', exclude => '{secret}');",
    )
    .await;

    let mut ws = Ws::connect(&relay.ws_url(), Connect::Anonymous).await;
    ws.subscribe_ok("orders").await;

    exec(
        &db,
        "SET timezone = 'UTC';
         INSERT INTO orders VALUES (1, 'book', 12.50, '{gift,red}', '2024-05-06 07:08:09+00', 's3cret');
         UPDATE orders SET item = 'pen' WHERE id = 1;
         DELETE FROM orders WHERE id = 1;",
    )
    .await;

    let row_before = json!({"id": 1, "item": "book", "price": 12.50, "tags": ["gift", "red"],
                            "placed_at": "2024-05-06T07:08:09+00:00"});
    let row_after = json!({"id": 1, "item": "pen", "price": 12.50, "tags": ["gift", "red"],
                           "placed_at": "2024-05-06T07:08:09+00:00"});
    let expected = [
        ("INSERT", row_before.clone(), Value::Null),
        ("UPDATE", row_after.clone(), row_before),
        ("DELETE", Value::Null, row_after),
    ];
    let mut cursors = Vec::new();
    for (op, record, old_record) in expected {
        let msg = ws.expect_message("orders").await;
        assert_eq!(msg["event"], op, "{msg}");
        assert_eq!(
            msg["payload"],
            json!({"operation": op, "schema": "public", "table": "orders",
                   "record": record, "old_record": old_record}),
            "{op} payload (the excluded column `secret` is absent): {msg}"
        );
        assert_eq!(msg["sender"], json!({"type": "system"}), "{msg}");
        cursors.push(
            msg["cursor"].as_str().unwrap_or_else(|| panic!("persisted: has a cursor {msg}")).to_owned(),
        );
    }
    assert!(cursors.windows(2).all(|w| w[0] < w[1]), "cursors in commit order: {cursors:?}");
    ws.expect_no_message(Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolled_back_change_is_not_delivered() {
    let (cluster, relay) = start_stack().await;
    let db = cluster.client().await;
    open_channel(&db, "items").await;
    exec(&db, "CREATE TABLE public.items (id int PRIMARY KEY); SELECT realtime.watch_table('items');").await;
    let mut ws = Ws::connect(&relay.ws_url(), Connect::Anonymous).await;
    ws.subscribe_ok("items").await;

    exec(&db, "BEGIN; INSERT INTO items VALUES (1); ROLLBACK;").await;
    exec(&db, "INSERT INTO items VALUES (2)").await;

    let first = ws.expect_message("items").await;
    assert_eq!(
        first["payload"]["record"]["id"], 2,
        "the rolled-back insert must not be delivered before the committed one: {first}"
    );
    ws.expect_no_message(Duration::from_millis(500)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_row_channels_follow_rls_and_writers_need_no_realtime_grant() {
    let (cluster, relay) = start_stack().await;
    let db = cluster.client().await;
    create_channel(&db, "order:%").await;
    exec(
        &db,
        "CREATE TABLE public.orders (id bigint PRIMARY KEY, owner text NOT NULL, status text NOT NULL);
         CREATE POLICY customers_see_their_orders ON realtime.channels FOR SELECT TO authenticated
           USING (pattern = 'order:%' AND EXISTS (
             SELECT 1 FROM public.orders o
             WHERE 'order:' || o.id = realtime.channel_name() AND o.owner = realtime.user_id()));
         GRANT SELECT, UPDATE ON public.orders TO authenticated;
         INSERT INTO orders VALUES (1, 'alice', 'new'), (2, 'bob', 'new');
         SELECT realtime.watch_table('public.orders', 'order:{id}');",
    )
    .await;

    let token = relay.token(Some("alice"), "authenticated");
    let mut alice = Ws::connect(&relay.ws_url(), Connect::Bearer(token)).await;
    alice.subscribe_ok("order:1").await;
    let reply = alice.subscribe("order:2").await;
    assert_eq!(error_code(&reply), "REALTIME_UNAUTHORIZED", "bob's order is not alice's: {reply}");

    // Written by a role with no grant on any realtime function: the trigger publishes anyway.
    exec(
        &db,
        "SET ROLE authenticated;
         UPDATE orders SET status = 'shipped';
         UPDATE orders SET status = 'delivered' WHERE id = 1;
         RESET ROLE;",
    )
    .await;

    for status in ["shipped", "delivered"] {
        let msg = alice.expect_message("order:1").await;
        assert_eq!(msg["event"], "UPDATE", "{msg}");
        assert_eq!(msg["payload"]["record"], json!({"id": 1, "owner": "alice", "status": status}), "{msg}");
    }
    alice.expect_no_message(Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_row_update_is_delivered_completely_and_in_order() {
    const ROWS: i64 = 10_000;
    // Default settings: the burst arrives at once, more than a session's queue holds; the
    // subscriber catches up from the log instead of being closed.
    let (cluster, relay) = start_stack_with(RelayOptions::default()).await;
    let db = cluster.client().await;
    open_channel(&db, "bulk").await;
    exec(
        &db,
        &format!(
            "CREATE TABLE public.bulk (id int PRIMARY KEY, n int NOT NULL);
             INSERT INTO bulk SELECT g, 0 FROM generate_series(1, {ROWS}) g;
             SELECT realtime.watch_table('bulk', events => '{{UPDATE}}');"
        ),
    )
    .await;
    let mut ws = Ws::connect(&relay.ws_url(), Connect::Anonymous).await;
    ws.subscribe_ok("bulk").await;

    exec(&db, "UPDATE bulk SET n = n + 1").await;
    let stored: i64 = db
        .query_one("SELECT count(*) FROM realtime.messages WHERE channel = 'bulk'", &[])
        .await
        .expect("count stored messages")
        .get(0);
    assert_eq!(stored, ROWS, "one stored message per updated row");

    let mut last_cursor = String::new();
    for expected_id in 1..=ROWS {
        let msg = ws.expect_message("bulk").await;
        let id = msg["payload"]["record"]["id"].as_i64();
        if id != Some(expected_id) || msg["payload"]["record"]["n"] != 1 {
            ws.fail(&format!("message {expected_id} of {ROWS} is out of order or wrong: {msg}"));
        }
        let cursor = msg["cursor"].as_str().unwrap_or_default().to_owned();
        if cursor <= last_cursor {
            ws.fail(&format!("cursor {cursor:?} does not sort after {last_cursor:?}"));
        }
        last_cursor = cursor;
    }
    ws.expect_no_message(Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpersisted_changes_arrive_as_ephemeral_frames_without_cursor() {
    let (cluster, relay) = start_stack().await;
    let db = cluster.client().await;
    open_channel(&db, "cursors").await;
    exec(
        &db,
        "CREATE TABLE public.cursors (id int PRIMARY KEY, x int, y int);
         SELECT realtime.watch_table('cursors', persist => false, event => 'moved');",
    )
    .await;
    let mut ws = Ws::connect(&relay.ws_url(), Connect::Anonymous).await;
    ws.subscribe_ok("cursors").await;

    exec(&db, "INSERT INTO cursors VALUES (1, 10, 20)").await;
    let msg = ws.expect_message("cursors").await;
    assert_eq!(msg["event"], "moved", "{msg}");
    assert_eq!(msg["payload"]["operation"], "INSERT", "{msg}");
    assert_eq!(msg["payload"]["record"], json!({"id": 1, "x": 10, "y": 20}), "{msg}");
    assert!(msg["cursor"].is_null(), "ephemeral frames carry no cursor: {msg}");
    let stored: i64 = db
        .query_one("SELECT count(*) FROM realtime.messages", &[])
        .await
        .expect("count stored messages")
        .get(0);
    assert_eq!(stored, 0, "nothing stored for persist => false");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_channels_are_read_only_through_postgres_changes_bindings() {
    // `changes:<schema>.<table>` carries whole rows; Supabase `postgres_changes` bindings check
    // each against the table's RLS (docs/supabase.md). A plain subscribe or a history read
    // would hand every row to anyone allowed on the channel, so both are refused, even with
    // the channel open to everyone.
    let (cluster, relay) = start_stack().await;
    let db = cluster.client().await;
    open_channel(&db, "changes:public.notes").await;
    create_channel(&db, "notes").await;
    let mut ws =
        Ws::connect(&relay.ws_url(), Connect::Bearer(relay.token(Some("alice"), "authenticated"))).await;
    let refused = ws.subscribe("changes:public.notes").await;
    assert_eq!(error_code(&refused), "REALTIME_INVALID_REQUEST");
    assert!(
        refused["error"]["message"].as_str().unwrap_or_default().contains("postgres_changes"),
        "the refusal says how to read it: {refused}"
    );
    let history = ws.request(json!({"type": "history", "channel": "changes:public.notes"})).await;
    assert_eq!(error_code(&history), "REALTIME_INVALID_REQUEST");
    assert_eq!(ws.subscribe("notes").await["ok"], true, "other channels are unaffected");
}
