//! Delivery semantics end to end: a publish from SQL reaches WebSocket subscribers once the
//! transaction commits, in commit order, intact, and only while they are subscribed.
//!
//! Negative checks ("nothing else arrived") are anchored on a positive sync point: a marker
//! published after the thing that must not be delivered, on the same channel. Messages of one
//! channel arrive in commit order, so once the marker is in, anything that was going to be
//! delivered before it would already have arrived.

use std::time::{Duration, Instant};

use realtime_e2e::{
    assert_uuid, exec, open_channel, pg_error_text, publish, start_stack, start_stack_with, Connect,
    RelayOptions, Ws,
};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriber_receives_trigger_publish() {
    let (cluster, relay) = start_stack().await;
    let db = cluster.client().await;
    open_channel(&db, "orders").await;
    exec(
        &db,
        "CREATE TABLE public.orders (id int PRIMARY KEY, item text NOT NULL, qty int NOT NULL);
         CREATE FUNCTION public.orders_publish() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           PERFORM realtime.publish('orders', 'created', to_jsonb(NEW));
           RETURN NEW;
         END $$;
         CREATE TRIGGER orders_publish AFTER INSERT ON public.orders
           FOR EACH ROW EXECUTE FUNCTION public.orders_publish();",
    )
    .await;

    let mut ws = Ws::connect(&relay.ws_url(), Connect::Anonymous).await;
    let reply = ws.subscribe_ok("orders").await;
    assert!(
        reply["cursor"].is_string(),
        "subscribe reply carries the current position as a string cursor: {reply}"
    );

    exec(&db, "INSERT INTO public.orders (id, item, qty) VALUES (1, 'book', 2)").await;

    let msg = ws.expect_message("orders").await;
    assert_eq!(msg["event"], "created", "{msg}");
    assert_eq!(
        msg["payload"],
        json!({"id": 1, "item": "book", "qty": 2}),
        "payload is the inserted row: {msg}"
    );
    assert_eq!(msg["sender"], json!({"type": "system"}), "{msg}");
    let id = msg["id"].as_str().unwrap_or_else(|| panic!("message id is a string: {msg}"));
    assert_uuid(id);
    let cursor = msg["cursor"].as_str().unwrap_or_else(|| panic!("message cursor is a string: {msg}"));
    assert!(!cursor.is_empty(), "{msg}");
    assert!(
        msg["created_at"].as_str().is_some_and(|s| !s.is_empty()),
        "created_at is a timestamp string: {msg}"
    );
    let stored: String = db
        .query_one("SELECT id::text FROM realtime.messages WHERE channel = 'orders'", &[])
        .await
        .expect("the published message is stored in realtime.messages")
        .get(0);
    assert_eq!(id, stored, "the frame's id is the stored message's id");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_in_rolled_back_tx_is_not_delivered() {
    let (cluster, relay) = start_stack().await;
    let db = cluster.client().await;
    open_channel(&db, "room").await;
    let mut ws = Ws::connect(&relay.ws_url(), Connect::Anonymous).await;
    ws.subscribe_ok("room").await;

    exec(&db, "BEGIN; SELECT realtime.publish('room', 'rolled back', '{}'); ROLLBACK;").await;
    publish(&db, "room", "marker", &json!({})).await;

    let first = ws.expect_message("room").await;
    assert_eq!(
        first["event"], "marker",
        "the rolled-back publish must not be delivered before the marker: {first}"
    );
    ws.expect_no_message(Duration::from_millis(500)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_that_publishes_first_and_commits_last_is_delivered_in_commit_order() {
    let (cluster, relay) = start_stack().await;
    let setup = cluster.client().await;
    open_channel(&setup, "race").await;
    let mut ws = Ws::connect(&relay.ws_url(), Connect::Anonymous).await;
    ws.subscribe_ok("race").await;

    let a = cluster.client().await;
    let b = cluster.client().await;
    exec(&a, "BEGIN; SELECT realtime.publish('race', 'A', '{}');").await;
    exec(&b, "BEGIN; SELECT realtime.publish('race', 'B', '{}'); COMMIT;").await;
    exec(&a, "COMMIT").await;
    publish(&setup, "race", "marker", &json!({})).await;

    let mut events = Vec::new();
    let mut cursors = Vec::new();
    for _ in 0..3 {
        let msg = ws.expect_message("race").await;
        events.push(msg["event"].as_str().unwrap_or_default().to_string());
        cursors
            .push(msg["cursor"].as_str().unwrap_or_else(|| panic!("cursor is a string: {msg}")).to_string());
    }
    assert_eq!(events, ["B", "A", "marker"], "delivered in commit order, each once");
    assert!(
        cursors[0] < cursors[1] && cursors[1] < cursors[2],
        "cursors sort in commit order as strings: {cursors:?}"
    );
    ws.expect_no_message(Duration::from_millis(500)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payload_of_100kb_is_delivered_intact() {
    let (cluster, relay) = start_stack().await;
    let db = cluster.client().await;
    open_channel(&db, "big").await;
    let mut ws = Ws::connect(&relay.ws_url(), Connect::Anonymous).await;
    ws.subscribe_ok("big").await;

    // Varied content (not one repeated byte) so truncation or corruption anywhere shows.
    let blob: String = (0..100_000u32).map(|i| char::from(b'a' + (i * 7 % 26) as u8)).collect();
    let items: Vec<_> = (0..50)
        .map(|i| json!({"i": i, "name": format!("item-{i}"), "note": "é ü 中文 \"quoted\""}))
        .collect();
    let payload = json!({"blob": blob, "items": items});
    if let Err(e) = realtime_e2e::try_publish(&db, "big", "large", &payload).await {
        panic!("publishing a 100 KB payload failed: {}", pg_error_text(&e));
    }

    let msg = ws.expect_message("big").await;
    assert_eq!(msg["event"], "large");
    assert!(
        msg["payload"] == payload,
        "the 100 KB payload arrives byte for byte (got {} bytes of JSON)",
        msg["payload"].to_string().len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribe_stops_delivery() {
    let (cluster, relay) = start_stack().await;
    let db = cluster.client().await;
    open_channel(&db, "news").await;
    let mut leaver = Ws::connect(&relay.ws_url(), Connect::Anonymous).await;
    let mut observer = Ws::connect(&relay.ws_url(), Connect::Anonymous).await;
    leaver.subscribe_ok("news").await;
    observer.subscribe_ok("news").await;

    publish(&db, "news", "before", &json!({})).await;
    assert_eq!(leaver.expect_message("news").await["event"], "before");
    assert_eq!(observer.expect_message("news").await["event"], "before");

    let reply = leaver.unsubscribe("news").await;
    assert_eq!(reply["ok"], true, "unsubscribe is acknowledged: {reply}");

    publish(&db, "news", "after", &json!({})).await;
    // Sync point: the relay has fanned "after" out to the channel's remaining subscriber.
    assert_eq!(observer.expect_message("news").await["event"], "after");
    leaver.expect_no_message(Duration::from_millis(500)).await;
    let pong = leaver.ping().await;
    assert_eq!(pong["type"], "pong");
    assert!(
        leaver.pending().is_empty(),
        "no message was delivered after unsubscribing: {:?}",
        leaver.pending()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_to_a_socket_are_spaced_by_the_write_interval_but_replies_are_not_held() {
    // --write-interval-ms 1000 instead of the default few milliseconds, so the spacing is
    // measurable on a busy machine.
    let options =
        RelayOptions { extra_args: vec!["--write-interval-ms".into(), "1000".into()], ..Default::default() };
    let (cluster, relay) = start_stack_with(options).await;
    let db = cluster.client().await;
    open_channel(&db, "paced").await;
    let mut ws = Ws::connect(&relay.ws_url(), Connect::Anonymous).await;
    ws.subscribe_ok("paced").await;
    // Past the interval since the subscribe reply: the first message goes out at once.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    publish(&db, "paced", "one", &json!({})).await;
    ws.expect_message("paced").await;
    let first = Instant::now();
    // Queued after that write: it waits for the rest of the interval.
    publish(&db, "paced", "two", &json!({})).await;
    let m = ws.expect_message("paced").await;
    let spacing = first.elapsed();
    assert_eq!(m["event"], "two", "{m}");
    assert!(spacing >= Duration::from_millis(800), "the second write came {spacing:?} after the first");
    // A reply right after a write is not held back for the interval.
    let asked = Instant::now();
    let pong = ws.ping().await;
    assert_eq!(pong["type"], "pong", "{pong}");
    assert!(asked.elapsed() < Duration::from_millis(500), "the pong took {:?}", asked.elapsed());
}
