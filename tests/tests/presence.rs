//! Presence end to end: two relays on one database, real clients. Snapshots in subscribe
//! replies, join / update / leave in order, tabs of one user as one member, untrack and
//! unsubscribe, abrupt disconnects, silent clients, killed and restarted relays, permissions
//! and limits.

use std::time::Duration;

use realtime_e2e::{create_channel, exec, Cluster, Connect, Relay, RelayOptions, Ws};
use serde_json::{json, Value};

const LOBBY: &str = "chat:lobby";

/// Short heartbeats and dead-relay timeout so the suite stays fast.
fn presence_flags(extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> =
        ["--presence-heartbeat-ms", "300", "--presence-relay-timeout-secs", "3"].map(String::from).to_vec();
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

async fn relay(cluster: &Cluster, extra: &[&str]) -> Relay {
    let r =
        Relay::start(cluster, RelayOptions { extra_args: presence_flags(extra), ..Default::default() }).await;
    r.wait_ready().await;
    r
}

/// A cluster with `chat:lobby` open to everyone and two relays on it.
async fn two_relays(extra: &[&str]) -> (Cluster, Relay, Relay) {
    let cluster = Cluster::start().await;
    cluster.setup_db().await;
    let db = cluster.client().await;
    create_channel(&db, LOBBY).await;
    exec(&db, "CREATE POLICY everyone ON realtime.channels FOR SELECT USING (true)").await;
    let a = relay(&cluster, extra).await;
    let b = relay(&cluster, extra).await;
    (cluster, a, b)
}

/// A client of `relay` as user `sub` (role authenticated), or anonymous.
async fn client(relay: &Relay, sub: Option<&str>) -> Ws {
    let auth = match sub {
        Some(sub) => Connect::Bearer(relay.token(Some(sub), "authenticated")),
        None => Connect::Anonymous,
    };
    Ws::connect(&relay.ws_url(), auth).await
}

/// A client subscribed to the lobby; returns it with its subscribe reply.
async fn subscriber(relay: &Relay, sub: Option<&str>) -> (Ws, Value) {
    let mut ws = client(relay, sub).await;
    let reply = ws.subscribe_ok(LOBBY).await;
    (ws, reply)
}

async fn track(ws: &mut Ws, state: Value) -> Value {
    ws.request(json!({"type": "track", "channel": LOBBY, "state": state})).await
}

async fn track_ok(ws: &mut Ws, state: Value) {
    let reply = track(ws, state).await;
    if reply["ok"] != true || reply["channel"] != LOBBY {
        ws.fail(&format!("track was not ok: {reply}"));
    }
}

fn error_code(reply: &Value) -> &str {
    assert_eq!(reply["ok"], false, "expected an error reply: {reply}");
    reply["error"]["code"].as_str().unwrap_or_default()
}

/// The next frame, asserted to be a presence `event` of member `pid` on the lobby.
async fn expect_presence(ws: &mut Ws, event: &str, pid: &str) -> Value {
    let f = ws.recv_json_within(Duration::from_secs(20)).await;
    if f["type"] != "presence"
        || f["channel"] != LOBBY
        || f["event"] != event
        || f["member"]["presence_id"] != pid
    {
        ws.fail(&format!("expected presence {event} of {pid}, got {f}"));
    }
    f
}

/// The presence_ids of a subscribe reply's snapshot, sorted.
fn snapshot_ids(reply: &Value) -> Vec<String> {
    let members =
        reply["presence"]["members"].as_array().unwrap_or_else(|| panic!("no presence.members: {reply}"));
    let mut ids: Vec<String> =
        members.iter().map(|m| m["presence_id"].as_str().unwrap().to_string()).collect();
    ids.sort();
    ids
}

/// Asserts nothing more arrives, after a ping round trip as sync point.
async fn expect_quiet(ws: &mut Ws) {
    ws.ping().await;
    ws.expect_no_message(Duration::from_millis(500)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_reply_carries_members_tracked_on_either_relay() {
    let (_cluster, a, b) = two_relays(&[]).await;
    let (mut watcher_b, first) = subscriber(&b, Some("watcher")).await;
    assert_eq!(first["presence"], json!({"members": []}), "an empty channel has an empty snapshot: {first}");
    let (mut watcher_a, _) = subscriber(&a, Some("watcher")).await;

    let (mut alice, _) = subscriber(&a, Some("alice")).await;
    track_ok(&mut alice, json!({"name": "Ada"})).await;
    let (mut bob, _) = subscriber(&b, Some("bob")).await;
    track_ok(&mut bob, json!({"name": "Bob"})).await;
    // Both changes reached both relays once the watchers saw them.
    for w in [&mut watcher_a, &mut watcher_b] {
        expect_presence(w, "join", "alice").await;
        expect_presence(w, "join", "bob").await;
    }
    let (_, on_a) = subscriber(&a, None).await;
    let (_, on_b) = subscriber(&b, None).await;
    for reply in [&on_a, &on_b] {
        assert_eq!(snapshot_ids(reply), ["alice", "bob"], "{reply}");
        let members = reply["presence"]["members"].as_array().unwrap();
        let alice = members.iter().find(|m| m["presence_id"] == "alice").unwrap();
        assert_eq!(alice, &json!({"presence_id": "alice", "user_id": "alice", "state": {"name": "Ada"}}));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_update_leave_arrive_in_order_and_an_update_is_not_a_leave_and_join() {
    let (_cluster, a, b) = two_relays(&[]).await;
    let (mut watcher, _) = subscriber(&b, Some("watcher")).await;
    let (mut alice, _) = subscriber(&a, Some("alice")).await;

    track_ok(&mut alice, json!({"status": "online"})).await;
    let join = expect_presence(&mut watcher, "join", "alice").await;
    assert_eq!(
        join["member"],
        json!({"presence_id": "alice", "user_id": "alice", "state": {"status": "online"}})
    );
    track_ok(&mut alice, json!({"status": "away"})).await;
    let update = expect_presence(&mut watcher, "update", "alice").await;
    assert_eq!(update["member"]["state"], json!({"status": "away"}));
    let reply = alice.request(json!({"type": "untrack", "channel": LOBBY})).await;
    assert_eq!((reply["ok"].as_bool(), reply["channel"].as_str()), (Some(true), Some(LOBBY)), "{reply}");
    let leave = expect_presence(&mut watcher, "leave", "alice").await;
    assert_eq!(leave["member"]["state"], json!({"status": "away"}), "leave carries the last state");
    expect_quiet(&mut watcher).await;

    // The member itself received its own join, update and leave, in the same order.
    expect_presence(&mut alice, "join", "alice").await;
    expect_presence(&mut alice, "update", "alice").await;
    expect_presence(&mut alice, "leave", "alice").await;
    let again = alice.request(json!({"type": "untrack", "channel": LOBBY})).await;
    assert_eq!(again["ok"], true, "untracking twice is harmless: {again}");
    expect_quiet(&mut alice).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tabs_of_one_user_are_one_member_that_leaves_after_the_last_tab() {
    let (_cluster, a, b) = two_relays(&[]).await;
    let (mut watcher, _) = subscriber(&b, Some("watcher")).await;
    let (mut tab1, _) = subscriber(&a, Some("alice")).await;
    let (mut tab2, _) = subscriber(&b, Some("alice")).await;

    track_ok(&mut tab1, json!({"tab": 1})).await;
    expect_presence(&mut watcher, "join", "alice").await;
    track_ok(&mut tab2, json!({"tab": 2})).await;
    let update = expect_presence(&mut watcher, "update", "alice").await;
    assert_eq!(update["member"]["state"], json!({"tab": 2}), "the latest track of any tab wins");
    let (_, reply) = subscriber(&b, None).await;
    assert_eq!(snapshot_ids(&reply), ["alice"], "one member for two tabs: {reply}");

    drop(tab2); // the newest tab goes: the member stays, with the other tab's state
    let update = expect_presence(&mut watcher, "update", "alice").await;
    assert_eq!(update["member"]["state"], json!({"tab": 1}));
    tab1.unsubscribe(LOBBY).await;
    let leave = expect_presence(&mut watcher, "leave", "alice").await;
    assert_eq!(leave["member"]["state"], json!({"tab": 1}));
    expect_quiet(&mut watcher).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribe_untracks_and_anonymous_members_are_keyed_by_connection() {
    let (_cluster, a, b) = two_relays(&[]).await;
    let (mut watcher, _) = subscriber(&b, Some("watcher")).await;
    let (mut anon1, _) = subscriber(&a, None).await;
    let (mut anon2, _) = subscriber(&a, None).await;
    track_ok(&mut anon1, json!({})).await;
    let j1 = watcher.recv_json_within(Duration::from_secs(20)).await;
    track_ok(&mut anon2, json!({})).await;
    let j2 = watcher.recv_json_within(Duration::from_secs(20)).await;
    for j in [&j1, &j2] {
        assert_eq!((j["type"].as_str(), j["event"].as_str()), (Some("presence"), Some("join")), "{j}");
        assert_eq!(j["member"]["user_id"], Value::Null, "anonymous members have no user_id: {j}");
    }
    let id1 = j1["member"]["presence_id"].as_str().unwrap().to_string();
    assert_ne!(
        id1,
        j2["member"]["presence_id"].as_str().unwrap(),
        "two anonymous connections are two members"
    );

    let reply = anon1.unsubscribe(LOBBY).await;
    assert_eq!(reply["ok"], true, "{reply}");
    expect_presence(&mut watcher, "leave", &id1).await;
    expect_quiet(&mut watcher).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abrupt_disconnect_without_close_frame_leaves() {
    let (_cluster, a, b) = two_relays(&[]).await;
    let (mut watcher, _) = subscriber(&b, Some("watcher")).await;
    let (mut alice, _) = subscriber(&a, Some("alice")).await;
    track_ok(&mut alice, json!({"x": 1})).await;
    expect_presence(&mut watcher, "join", "alice").await;
    drop(alice); // the TCP socket goes away, no close frame
    let leave = expect_presence(&mut watcher, "leave", "alice").await;
    assert_eq!(leave["member"]["state"], json!({"x": 1}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_that_stops_answering_pings_is_disconnected_and_leaves() {
    let (_cluster, a, b) = two_relays(&["--ping-interval-secs", "1", "--ping-timeout-secs", "3"]).await;
    let (mut watcher, _) = subscriber(&b, Some("watcher")).await;
    let (mut silent, _) = subscriber(&a, Some("silent")).await;
    track_ok(&mut silent, json!({})).await;
    expect_presence(&mut watcher, "join", "silent").await;
    // `silent` is never read from again, so it never answers a ping; its TCP connection stays
    // open. The watcher keeps reading (and so answering pings) while it waits.
    expect_presence(&mut watcher, "leave", "silent").await;
    // The silent client's socket was closed by the relay.
    assert!(matches!(silent.expect_close_within(Duration::from_secs(5)).await, Some(1001) | None));
    // The watcher sent nothing for longer than the timeout too, but its pongs kept it connected.
    watcher.ping().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_relay_members_leave_on_the_other_relay() {
    let (_cluster, a, b) = two_relays(&[]).await;
    let (mut watcher, _) = subscriber(&b, Some("watcher")).await;
    let (mut alice, _) = subscriber(&a, Some("alice")).await;
    track_ok(&mut alice, json!({"on": "a"})).await;
    expect_presence(&mut watcher, "join", "alice").await;
    // carol has a tab on each relay: she must stay.
    let (mut carol_a, _) = subscriber(&a, Some("carol")).await;
    track_ok(&mut carol_a, json!({"on": "a"})).await;
    expect_presence(&mut watcher, "join", "carol").await;
    let (mut carol_b, _) = subscriber(&b, Some("carol")).await;
    track_ok(&mut carol_b, json!({"on": "b"})).await;
    expect_presence(&mut watcher, "update", "carol").await;

    a.kill().await; // SIGKILL: no goodbye, no close frames, rows left behind
    let leave = expect_presence(&mut watcher, "leave", "alice").await;
    assert_eq!(leave["member"]["state"], json!({"on": "a"}));
    expect_quiet(&mut watcher).await;
    let (_, reply) = subscriber(&b, None).await;
    assert_eq!(snapshot_ids(&reply), ["carol"], "{reply}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_relay_removes_the_members_its_previous_run_left() {
    // A dead-relay timeout far longer than the test: only the restart can remove alice.
    let cluster = Cluster::start().await;
    cluster.setup_db().await;
    let db = cluster.client().await;
    create_channel(&db, LOBBY).await;
    exec(&db, "CREATE POLICY everyone ON realtime.channels FOR SELECT USING (true)").await;
    let flags =
        ["--presence-heartbeat-ms", "300", "--presence-relay-timeout-secs", "600"].map(String::from).to_vec();
    let opts = |id: &str| RelayOptions {
        relay_id: Some(id.into()),
        extra_args: flags.clone(),
        ..Default::default()
    };
    let a = Relay::start(&cluster, opts("presence_a")).await;
    a.wait_ready().await;
    let b = Relay::start(&cluster, opts("presence_b")).await;
    b.wait_ready().await;
    let (mut watcher, _) = subscriber(&b, Some("watcher")).await;
    let (mut alice, _) = subscriber(&a, Some("alice")).await;
    track_ok(&mut alice, json!({})).await;
    expect_presence(&mut watcher, "join", "alice").await;
    a.kill().await;
    drop(alice);
    let a2 = Relay::start(&cluster, opts("presence_a")).await;
    a2.wait_ready().await;
    expect_presence(&mut watcher, "leave", "alice").await;
    let rows: i64 = db.query_one("SELECT count(*) FROM realtime.presence", &[]).await.unwrap().get(0);
    assert_eq!(rows, 0, "the leftover row is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthorised_user_sees_no_presence_and_cannot_track() {
    let (cluster, a, b) = two_relays(&[]).await;
    let db = cluster.client().await;
    create_channel(&db, "room:secret").await;
    exec(
        &db,
        "DROP POLICY everyone ON realtime.channels;
         CREATE POLICY lobby ON realtime.channels FOR SELECT USING (pattern = 'chat:lobby');
         CREATE POLICY secret ON realtime.channels FOR SELECT TO authenticated
           USING (pattern = 'room:secret' AND realtime.user_id() = 'alice');",
    )
    .await;
    let mut mallory = client(&b, Some("mallory")).await;
    let reply = mallory.subscribe("room:secret").await;
    assert_eq!(error_code(&reply), "REALTIME_UNAUTHORIZED");
    assert!(reply.get("presence").is_none(), "a refused subscribe carries no snapshot: {reply}");
    let reply = mallory.request(json!({"type": "track", "channel": "room:secret", "state": {}})).await;
    assert_eq!(error_code(&reply), "REALTIME_NOT_SUBSCRIBED");

    let mut alice = client(&a, Some("alice")).await;
    alice.subscribe_ok("room:secret").await;
    alice.request(json!({"type": "track", "channel": "room:secret", "state": {"here": true}})).await;
    let join = alice.recv_json_within(Duration::from_secs(20)).await;
    assert_eq!((join["type"].as_str(), join["event"].as_str()), (Some("presence"), Some("join")), "{join}");
    expect_quiet(&mut mallory).await;
    let rows: i64 = db.query_one("SELECT count(*) FROM realtime.presence", &[]).await.unwrap().get(0);
    assert_eq!(rows, 1);
    // clients cannot read the presence table directly either
    let denied = db.batch_execute("SET ROLE authenticated; SELECT * FROM realtime.presence").await;
    assert!(denied.is_err(), "authenticated may not read realtime.presence");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn track_and_untrack_without_a_subscription_are_refused() {
    let (_cluster, a, _b) = two_relays(&[]).await;
    let mut ws = client(&a, Some("alice")).await;
    let reply = track(&mut ws, json!({})).await;
    assert_eq!(error_code(&reply), "REALTIME_NOT_SUBSCRIBED");
    let reply = ws.request(json!({"type": "untrack", "channel": LOBBY})).await;
    assert_eq!(error_code(&reply), "REALTIME_NOT_SUBSCRIBED");
    ws.subscribe_ok(LOBBY).await;
    track_ok(&mut ws, json!({})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_limits_answer_with_their_named_errors() {
    let (_cluster, a, b) =
        two_relays(&["--presence-max-members", "2", "--presence-max-state-bytes", "64"]).await;
    let (mut watcher, _) = subscriber(&a, Some("watcher")).await;

    let (mut alice, _) = subscriber(&a, Some("alice")).await;
    let big = json!({"text": "x".repeat(100)});
    assert_eq!(error_code(&track(&mut alice, big).await), "REALTIME_PAYLOAD_TOO_LARGE");
    let not_object = alice.request(json!({"type": "track", "channel": LOBBY, "state": [1, 2]})).await;
    assert_eq!(error_code(&not_object), "REALTIME_INVALID_REQUEST");
    let nul = track(&mut alice, json!({"text": "a\u{0}b"})).await;
    assert_eq!(error_code(&nul), "REALTIME_INVALID_REQUEST", "jsonb cannot store NUL: {nul}");
    track_ok(&mut alice, json!({"n": 1})).await;
    expect_presence(&mut watcher, "join", "alice").await;

    let (mut bob, _) = subscriber(&b, Some("bob")).await;
    track_ok(&mut bob, json!({})).await;
    expect_presence(&mut watcher, "join", "bob").await; // relay A now counts two members
    let (mut carol, _) = subscriber(&a, Some("carol")).await;
    let refused = track(&mut carol, json!({})).await;
    assert_eq!(error_code(&refused), "REALTIME_PRESENCE_LIMIT", "{refused}");
    let (mut alice2, _) = subscriber(&a, Some("alice")).await;
    track_ok(&mut alice2, json!({"n": 2})).await; // a member's second tab is not a new member
    expect_presence(&mut watcher, "update", "alice").await;
    expect_quiet(&mut watcher).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_clients_cannot_fill_a_channel_and_lock_signed_in_users_out() {
    // The anonymous limit is lowered from its default (100) to 3 so four connections show it.
    let (_cluster, a, b) = two_relays(&["--presence-max-anonymous", "3"]).await;
    let (mut watcher, _) = subscriber(&a, Some("watcher")).await;
    let mut anonymous = Vec::new();
    for relay in [&a, &b, &a] {
        let (mut ws, _) = subscriber(relay, None).await;
        track_ok(&mut ws, json!({})).await;
        let join = watcher.recv_json_within(Duration::from_secs(20)).await;
        assert_eq!((&join["event"], &join["member"]["user_id"]), (&json!("join"), &Value::Null), "{join}");
        anonymous.push(ws);
    }
    let (mut fourth, reply) = subscriber(&b, None).await;
    // Relay b's view learns of members tracked on a through the log: wait until it has all three.
    let mut members = reply["presence"]["members"].as_array().map_or(0, Vec::len);
    while members < 3 {
        let join = fourth.recv_json_within(Duration::from_secs(20)).await;
        assert_eq!(join["event"], "join", "{join}");
        members += 1;
    }
    let refused = track(&mut fourth, json!({})).await;
    assert_eq!(error_code(&refused), "REALTIME_PRESENCE_LIMIT", "{refused}");
    assert!(refused["error"]["message"].as_str().unwrap().contains("anonymous"), "{refused}");
    let (mut alice, _) = subscriber(&b, Some("alice")).await;
    track_ok(&mut alice, json!({})).await; // signed-in users still fit
    expect_presence(&mut watcher, "join", "alice").await;
    track_ok(&mut anonymous[0], json!({"again": true})).await; // a member may re-track
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auth_frame_of_another_user_ends_the_previous_users_presence() {
    let (_cluster, a, _b) = two_relays(&[]).await;
    let (mut watcher, _) = subscriber(&a, Some("watcher")).await;
    let (mut ws, _) = subscriber(&a, Some("alice")).await;
    track_ok(&mut ws, json!({"name": "Alice"})).await;
    expect_presence(&mut watcher, "join", "alice").await;
    let reply = ws.request(json!({"type": "auth", "token": a.token(Some("bob"), "authenticated")})).await;
    assert_eq!(reply["ok"], true, "{reply}");
    expect_presence(&mut watcher, "leave", "alice").await;
    track_ok(&mut ws, json!({"name": "Bob"})).await;
    let join = expect_presence(&mut watcher, "join", "bob").await;
    assert_eq!(join["member"]["user_id"], "bob", "{join}");
    // the same user with a fresh token keeps its presence
    let reply = ws.request(json!({"type": "auth", "token": a.token(Some("bob"), "authenticated")})).await;
    assert_eq!(reply["ok"], true, "{reply}");
    expect_quiet(&mut watcher).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn track_rate_limit_is_a_reply_error_not_a_close() {
    let (_cluster, a, _b) = two_relays(&["--presence-track-rate", "1"]).await;
    let (mut alice, _) = subscriber(&a, Some("alice")).await;
    // One call per second with bursts of one: six calls in under five seconds cannot all pass.
    let started = std::time::Instant::now();
    let mut codes = Vec::new();
    for n in 0..6 {
        let reply = track(&mut alice, json!({"n": n})).await;
        codes.push(if reply["ok"] == true { "ok".to_string() } else { error_code(&reply).to_string() });
    }
    if started.elapsed() < Duration::from_secs(5) {
        assert!(codes.iter().any(|c| c == "REALTIME_RATE_LIMITED"), "{codes:?}");
    }
    assert!(codes.iter().all(|c| c == "ok" || c == "REALTIME_RATE_LIMITED"), "{codes:?}");
    assert_eq!(codes[0], "ok");
    alice.ping().await; // still connected
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_started_later_builds_its_view_from_the_table() {
    let cluster = Cluster::start().await;
    cluster.setup_db().await;
    let db = cluster.client().await;
    create_channel(&db, LOBBY).await;
    exec(&db, "CREATE POLICY everyone ON realtime.channels FOR SELECT USING (true)").await;
    let a = relay(&cluster, &[]).await;
    let (mut alice, _) = subscriber(&a, Some("alice")).await;
    track_ok(&mut alice, json!({"early": true})).await;
    expect_presence(&mut alice, "join", "alice").await;

    let late = relay(&cluster, &[]).await;
    let (mut watcher, reply) = subscriber(&late, Some("watcher")).await;
    // Either the snapshot has her (view already loaded) or she arrives as a join when it loads.
    let member = match reply["presence"]["members"].as_array().unwrap().first() {
        Some(m) => m.clone(),
        None => expect_presence(&mut watcher, "join", "alice").await["member"].clone(),
    };
    assert_eq!(member, json!({"presence_id": "alice", "user_id": "alice", "state": {"early": true}}));
    // Later changes from the other relay arrive once each.
    track_ok(&mut alice, json!({"early": false})).await;
    let update = expect_presence(&mut watcher, "update", "alice").await;
    assert_eq!(update["member"]["state"], json!({"early": false}));
    expect_quiet(&mut watcher).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_revoked_by_an_auth_frame_untracks() {
    let (cluster, a, b) = two_relays(&[]).await;
    let db = cluster.client().await;
    exec(
        &db,
        "DROP POLICY everyone ON realtime.channels;
         CREATE POLICY named ON realtime.channels FOR SELECT TO authenticated
           USING (realtime.user_id() IN ('alice', 'watcher'));",
    )
    .await;
    let (mut watcher, _) = subscriber(&b, Some("watcher")).await;
    let (mut alice, _) = subscriber(&a, Some("alice")).await;
    track_ok(&mut alice, json!({})).await;
    expect_presence(&mut watcher, "join", "alice").await;
    let reply =
        alice.request(json!({"type": "auth", "token": a.token(Some("mallory"), "authenticated")})).await;
    assert_eq!(reply["ok"], true, "{reply}");
    expect_presence(&mut watcher, "leave", "alice").await;
    expect_quiet(&mut watcher).await;
}
