//! Revocation: access granted at subscribe time ends when it is taken away. Disabling or
//! deleting a channel row ends its subscriptions at once; policies that read other data are
//! checked again on a schedule (`--recheck-secs`); a re-check that fails is not an "allowed".
//! A grant remembered to spare reconnects a check never outlives a change to the channel rows.

use std::time::{Duration, Instant};

use realtime_e2e::{
    create_channel, exec, open_channel, publish, scrape_metric, start_stack, start_stack_with, Connect,
    RelayOptions, Sse, Ws,
};
use serde_json::{json, Value};

/// Reads frames until an `unsubscribed` one for `channel`, failing on any message of it first.
async fn expect_unsubscribed(ws: &mut Ws, channel: &str, limit: Duration) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = ws.recv_json_within(left).await;
        if frame["channel"] == channel && frame["type"] == "unsubscribed" {
            return frame;
        }
        assert_ne!(frame["type"], "message", "a message arrived before the revocation: {frame}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabling_or_deleting_a_channel_row_ends_its_subscriptions_at_once() {
    // The default re-check interval (60 s): the ending must come from the change itself.
    let (cluster, relay) = start_stack().await;
    let db = cluster.client().await;
    open_channel(&db, "room:a").await;
    create_channel(&db, "room:b").await;
    create_channel(&db, "lobby").await;
    let mut ws =
        Ws::connect(&relay.ws_url(), Connect::Bearer(relay.token(Some("alice"), "authenticated"))).await;
    for channel in ["room:a", "room:b", "lobby"] {
        ws.subscribe_ok(channel).await;
    }

    let started = Instant::now();
    exec(&db, "UPDATE realtime.channels SET enabled = false WHERE pattern = 'room:a'").await;
    let gone = expect_unsubscribed(&mut ws, "room:a", Duration::from_secs(10)).await;
    assert_eq!(gone["reason"]["code"], "REALTIME_NOT_FOUND", "{gone}");
    exec(&db, "DELETE FROM realtime.channels WHERE pattern = 'room:b'").await;
    let gone = expect_unsubscribed(&mut ws, "room:b", Duration::from_secs(10)).await;
    assert_eq!(gone["reason"]["code"], "REALTIME_NOT_FOUND", "{gone}");
    assert!(started.elapsed() < Duration::from_secs(20), "ended by the change, not the 60 s schedule");

    publish(&db, "lobby", "marker", &json!({})).await;
    assert_eq!(ws.expect_message("lobby").await["event"], "marker");
    assert!(ws.pending().is_empty(), "nothing else arrived: {}", ws.transcript());
    let again = ws.unsubscribe("room:a").await;
    assert_eq!(again["error"]["code"], "REALTIME_NOT_SUBSCRIBED", "the session forgot it: {again}");
    assert_eq!(ws.subscribe("lobby").await["ok"], true, "the other subscription is untouched");
    assert_eq!(
        scrape_metric(relay.port(), "realtime_subscriptions_revoked_total{reason=\"not_found\"}").await,
        2.0
    );
}

/// `team:%` is open to members listed in `e2e_members` only.
async fn member_channels(db: &tokio_postgres::Client) {
    create_channel(db, "team:%").await;
    exec(
        db,
        "CREATE TABLE public.e2e_members (user_id text PRIMARY KEY);
         GRANT SELECT ON public.e2e_members TO authenticated;
         INSERT INTO public.e2e_members VALUES ('alice'), ('bob');
         CREATE POLICY members ON realtime.channels FOR SELECT TO authenticated
           USING (pattern = 'team:%' AND EXISTS (
             SELECT 1 FROM public.e2e_members m WHERE m.user_id = realtime.user_id()));",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_are_checked_again_on_a_schedule_and_presence_ends_with_access() {
    // A 2 s interval instead of the default 60 s so the test does not wait a minute.
    let options =
        RelayOptions { extra_args: vec!["--recheck-secs".into(), "2".into()], ..Default::default() };
    let (cluster, relay) = start_stack_with(options).await;
    let db = cluster.client().await;
    member_channels(&db).await;
    let mut alice =
        Ws::connect(&relay.ws_url(), Connect::Bearer(relay.token(Some("alice"), "authenticated"))).await;
    let mut bob =
        Ws::connect(&relay.ws_url(), Connect::Bearer(relay.token(Some("bob"), "authenticated"))).await;
    alice.subscribe_ok("team:x").await;
    let reply = alice.request(json!({"type":"track","channel":"team:x","state":{"name":"Alice"}})).await;
    assert_eq!(reply["ok"], true, "{reply}");
    let joined = bob.subscribe_ok("team:x").await;
    // The track's op reaches the relay's presence view through the log, maybe after the reply.
    if joined["presence"]["members"].as_array().is_none_or(Vec::is_empty) {
        let join = bob.recv_json().await;
        assert_eq!(
            (join["event"].as_str(), join["member"]["user_id"].as_str()),
            (Some("join"), Some("alice")),
            "{join}"
        );
    }

    exec(&db, "DELETE FROM public.e2e_members WHERE user_id = 'alice'").await;
    let gone = expect_unsubscribed(&mut alice, "team:x", Duration::from_secs(10)).await;
    assert_eq!(gone["reason"]["code"], "REALTIME_UNAUTHORIZED", "{gone}");
    let leave = bob.recv_json().await;
    assert_eq!(
        (leave["type"].as_str(), leave["event"].as_str()),
        (Some("presence"), Some("leave")),
        "{leave}"
    );

    publish(&db, "team:x", "after", &json!({})).await;
    assert_eq!(bob.expect_message("team:x").await["event"], "after", "bob is still a member");
    alice.expect_no_message(Duration::from_millis(500)).await;
    let denied = alice.subscribe("team:x").await;
    assert_eq!(denied["error"]["code"], "REALTIME_UNAUTHORIZED", "{denied}");
}

/// Subscribe checks run in Postgres that allowed, and subscribes allowed by a remembered grant.
async fn checks(port: u16) -> (f64, f64) {
    let allowed = scrape_metric(port, "realtime_subscribe_checks_total{outcome=\"allowed\"}").await;
    (allowed, scrape_metric(port, "realtime_subscribe_checks_cached_total").await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remembered_grant_spares_a_check_and_ends_with_a_change_to_the_channel_rows() {
    // The default re-check interval (60 s): no scheduled round forgets the grants mid-test.
    let (cluster, relay) = start_stack().await;
    let db = cluster.client().await;
    member_channels(&db).await;
    let alice_token = relay.token(Some("alice"), "authenticated");
    let mut alice = Ws::connect(&relay.ws_url(), Connect::Bearer(alice_token.clone())).await;
    alice.subscribe_ok("team:x").await;
    assert_eq!(checks(relay.port()).await, (1.0, 0.0));
    // A second tab (or a reconnect) with the same token: remembered, no check in Postgres.
    let mut tab = Ws::connect(&relay.ws_url(), Connect::Bearer(alice_token)).await;
    tab.subscribe_ok("team:x").await;
    assert_eq!(checks(relay.port()).await, (1.0, 1.0));
    // Other claims are other grants.
    let mut bob =
        Ws::connect(&relay.ws_url(), Connect::Bearer(relay.token(Some("bob"), "authenticated"))).await;
    bob.subscribe_ok("team:x").await;
    assert_eq!(checks(relay.port()).await, (2.0, 1.0));

    exec(&db, "UPDATE realtime.channels SET enabled = false WHERE pattern = 'team:%'").await;
    for ws in [&mut alice, &mut tab, &mut bob] {
        let gone = expect_unsubscribed(ws, "team:x", Duration::from_secs(10)).await;
        assert_eq!(gone["reason"]["code"], "REALTIME_NOT_FOUND", "{gone}");
    }
    let again = tab.subscribe("team:x").await;
    assert_eq!(again["error"]["code"], "REALTIME_NOT_FOUND", "the grant went with the change: {again}");
    assert_eq!(checks(relay.port()).await.1, 1.0, "checked in Postgres, not remembered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recheck_that_fails_is_not_an_allowed() {
    // A 1 s interval instead of the default 60 s: the subscription ends after two failing ones.
    let options =
        RelayOptions { extra_args: vec!["--recheck-secs".into(), "1".into()], ..Default::default() };
    let (cluster, relay) = start_stack_with(options).await;
    let db = cluster.client().await;
    create_channel(&db, "vault:%").await;
    exec(
        &db,
        "CREATE TABLE public.e2e_broken (on_ boolean);
         GRANT SELECT ON public.e2e_broken TO authenticated;
         CREATE FUNCTION public.e2e_gate() RETURNS boolean LANGUAGE plpgsql AS $$
         BEGIN
           IF EXISTS (SELECT 1 FROM public.e2e_broken) THEN RAISE EXCEPTION 'gate is broken'; END IF;
           RETURN true;
         END $$;
         CREATE POLICY gate ON realtime.channels FOR SELECT TO authenticated
           USING (pattern = 'vault:%' AND public.e2e_gate());",
    )
    .await;
    let mut ws =
        Ws::connect(&relay.ws_url(), Connect::Bearer(relay.token(Some("alice"), "authenticated"))).await;
    ws.subscribe_ok("vault:1").await;
    ws.expect_no_message(Duration::from_millis(2500)).await;

    exec(&db, "INSERT INTO public.e2e_broken VALUES (true)").await;
    let gone = expect_unsubscribed(&mut ws, "vault:1", Duration::from_secs(10)).await;
    assert_eq!(gone["reason"]["code"], "INTERNAL_ERROR", "{gone}");
    assert!(
        scrape_metric(relay.port(), "realtime_permission_rechecks_total{outcome=\"error\"}").await >= 2.0
    );
    assert_eq!(
        scrape_metric(relay.port(), "realtime_subscriptions_revoked_total{reason=\"unverified\"}").await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sse_stream_loses_a_disabled_channel_and_keeps_the_others() {
    // A 64 KiB queue instead of the default 1 MiB, so a 1.2 MB burst makes the stream catch up.
    let options =
        RelayOptions { extra_args: vec!["--send-queue-bytes".into(), "65536".into()], ..Default::default() };
    let (cluster, relay) = start_stack_with(options).await;
    let db = cluster.client().await;
    open_channel(&db, "room:a").await;
    create_channel(&db, "room:b").await;
    let mut s =
        Sse::open(relay.port(), "/v1/sse?channel=room:a&channel=room:b", &[]).await.expect("stream opens");
    s.until("ready").await;

    exec(&db, "UPDATE realtime.channels SET enabled = false WHERE pattern = 'room:a'").await;
    let gone = s.until("unsubscribed").await.json();
    assert_eq!(
        (gone["channel"].as_str(), gone["reason"]["code"].as_str()),
        (Some("room:a"), Some("REALTIME_NOT_FOUND"))
    );
    publish(&db, "room:b", "still", &json!({})).await;
    let next = s.next_event().await;
    assert_eq!((next.event.as_str(), next.json()["event"].as_str()), ("message", Some("still")), "{next:?}");
    // A burst makes the stream fall behind: it catches up with the channels that remain.
    exec(
        &db,
        "SELECT realtime.publish('room:b', 'burst', jsonb_build_object('n', n, 'pad', repeat('x', 4000)))
         FROM generate_series(1, 300) AS n",
    )
    .await;
    for n in 1..=300 {
        let e = s.until("message").await.json();
        assert_eq!((e["event"].as_str(), e["payload"]["n"].as_i64()), (Some("burst"), Some(n)), "{e}");
    }
}
