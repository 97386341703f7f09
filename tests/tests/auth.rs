//! Who may connect and subscribe: JWT authentication at the socket, the role allowlist, and the
//! owner's RLS policies on `realtime.channels` deciding each subscribe.

use realtime_e2e::{
    create_channel, exec, http_post_json, http_request, mint_token, mint_token_with_exp, start_stack,
    start_stack_with, Connect, Refusal, RelayOptions, Ws, JWT_SECRET,
};

fn error_code(reply: &serde_json::Value) -> &str {
    assert_eq!(reply["ok"], false, "expected a refused subscribe: {reply}");
    reply["error"]["code"].as_str().unwrap_or_else(|| panic!("error reply carries error.code: {reply}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rls_policy_allows_one_user_and_denies_another() {
    let (cluster, relay) = start_stack().await;
    let db = cluster.client().await;
    create_channel(&db, "user:%").await;
    exec(
        &db,
        "CREATE POLICY own_user_channel ON realtime.channels FOR SELECT TO authenticated
           USING (realtime.channel_name() = 'user:' || realtime.user_id())",
    )
    .await;

    let alice_token = relay.token(Some("alice"), "authenticated");
    let mut alice = Ws::connect(&relay.ws_url(), Connect::Bearer(alice_token)).await;
    alice.subscribe_ok("user:alice").await;

    let bob_token = relay.token(Some("bob"), "authenticated");
    let mut bob = Ws::connect(&relay.ws_url(), Connect::Bearer(bob_token)).await;
    let reply = bob.subscribe("user:alice").await;
    assert_eq!(
        error_code(&reply),
        "REALTIME_UNAUTHORIZED",
        "bob may not subscribe to alice's channel: {reply}"
    );
    bob.subscribe_ok("user:bob").await;

    let mut anon = Ws::connect(&relay.ws_url(), Connect::Anonymous).await;
    let reply = anon.subscribe("user:alice").await;
    assert_eq!(
        error_code(&reply),
        "REALTIME_UNAUTHORIZED",
        "the policy is for role authenticated only: {reply}"
    );

    let reply = alice.subscribe("nomatch:1").await;
    assert_eq!(error_code(&reply), "REALTIME_NOT_FOUND", "no channel row matches nomatch:1: {reply}");
}

/// Refusal of a connection is asserted as exactly one of: HTTP 401 on the upgrade, or a close with
/// 4001 right after it (both are "unauthenticated" in DESIGN).
fn assert_unauthenticated(outcome: Refusal, what: &str) {
    assert!(
        matches!(outcome, Refusal::Http(401) | Refusal::Closed(Some(4001))),
        "{what}: expected HTTP 401 on upgrade or close 4001, got {outcome:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_connection_refused_when_anon_disabled() {
    let options = RelayOptions { allow_anon: Some(false), ..Default::default() };
    let (_cluster, relay) = start_stack_with(options).await;
    let url = relay.ws_url();

    assert_unauthenticated(Ws::connect_expecting_refusal(&url, Connect::Anonymous).await, "no token");

    let good = relay.token(Some("carol"), "authenticated");
    let mut ws = Ws::connect(&url, Connect::Bearer(good.clone())).await;
    assert_eq!(ws.ping().await["type"], "pong", "a valid token in the Authorization header is accepted");
    let mut ws = Ws::connect(&url, Connect::Query(good)).await;
    assert_eq!(ws.ping().await["type"], "pong", "a valid token in ?token= is accepted");

    let forged = mint_token("some-other-secret-some-other-secret", Some("carol"), "authenticated");
    assert_unauthenticated(
        Ws::connect_expecting_refusal(&url, Connect::Bearer(forged)).await,
        "token signed with another secret",
    );

    let past =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64 - 3600;
    let expired = mint_token_with_exp(JWT_SECRET, Some("carol"), "authenticated", past);
    assert_unauthenticated(
        Ws::connect_expecting_refusal(&url, Connect::Bearer(expired)).await,
        "expired token",
    );

    // `postgres` is a real role (the superuser) but not in the default allowlist.
    let superuser = relay.token(Some("mallory"), "postgres");
    let outcome = Ws::connect_expecting_refusal(&url, Connect::Bearer(superuser)).await;
    assert!(
        matches!(outcome, Refusal::Http(401) | Refusal::Http(403) | Refusal::Closed(Some(4001))),
        "a role outside the allowlist is refused (HTTP 401/403 or close 4001), got {outcome:?}"
    );
}

/// The permission check pipelines BEGIN, SET LOCAL ROLE, the settings, the check and ROLLBACK on
/// one pooled connection. With a pool of one connection, a policy that raises an error must leave
/// that connection outside any transaction and under its own role: the next checks on it still
/// decide correctly (allowed, then refused).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_policy_check_leaves_the_pooled_connection_clean() {
    let (cluster, relay) = start_stack_with(RelayOptions {
        extra_args: vec!["--pool-size".into(), "1".into()],
        ..RelayOptions::default()
    })
    .await;
    let db = cluster.client().await;
    create_channel(&db, "user:%").await;
    create_channel(&db, "boom:%").await;
    exec(
        &db,
        "CREATE POLICY own_user_channel ON realtime.channels FOR SELECT TO authenticated
           USING (CASE WHEN realtime.channel_name() LIKE 'boom:%' THEN length(realtime.channel_name()) / 0 = 1
                       ELSE realtime.channel_name() = 'user:' || realtime.user_id() END)",
    )
    .await;

    let mut alice =
        Ws::connect(&relay.ws_url(), Connect::Bearer(relay.token(Some("alice"), "authenticated"))).await;
    let reply = alice.subscribe("boom:1").await;
    assert_eq!(error_code(&reply), "INTERNAL_ERROR", "a policy error is an internal error: {reply}");
    for _ in 0..3 {
        alice.subscribe_ok("user:alice").await;
        let reply = alice.unsubscribe("user:alice").await;
        assert_eq!(reply["ok"], true, "unsubscribe: {reply}");
        let reply = alice.subscribe("user:bob").await;
        assert_eq!(error_code(&reply), "REALTIME_UNAUTHORIZED", "still checked as alice: {reply}");
    }
}

/// An `Authorization` header or `?token=` that is present but empty or malformed is refused with
/// 401 and a message saying what is wrong, on the socket and on the HTTP API, although anonymous
/// access is on: an unset `$TOKEN` in `Bearer $TOKEN` must not turn into role `anon`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_or_malformed_credentials_are_a_401_that_says_so_never_anonymous() {
    let (cluster, relay) = start_stack().await;
    let db = cluster.client().await;
    create_channel(&db, "demo").await;
    exec(&db, "CREATE POLICY everyone ON realtime.channels FOR SELECT USING (true)").await;
    let url = relay.ws_url();
    // anonymous access is on: no credentials at all still connect as anon
    Ws::connect(&url, Connect::Anonymous).await.subscribe_ok("demo").await;

    let cases = [
        (
            Connect::Authorization("Bearer ".into()),
            "the Authorization header says 'Bearer' but holds no token",
        ),
        (Connect::Authorization("".into()), "the Authorization header is empty"),
        (
            Connect::Authorization("Basic YWxpY2U6c2VjcmV0".into()),
            "the Authorization header must be 'Bearer <jwt>'",
        ),
        (Connect::Query("".into()), "the token parameter is empty"),
    ];
    for (auth, says) in cases {
        let (status, body) = Ws::refused_upgrade(&url, auth.clone()).await;
        assert_eq!(status, 401, "{auth:?}: {body}");
        assert_eq!(body["error"]["code"], "REALTIME_UNAUTHORIZED", "{auth:?}: {body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.starts_with(says), "{auth:?}: {message:?} should start with {says:?}");
    }

    let publish = r#"{"channel":"demo","event":"hi"}"#;
    for (header, says) in [
        ("Authorization: Bearer", "the Authorization header says 'Bearer' but holds no token"),
        ("Authorization: Token abc", "the Authorization header must be 'Bearer <jwt>'"),
    ] {
        let head = format!(
            "POST /v1/publish HTTP/1.1\r\n{header}\r\nContent-Type: application/json\r\nContent-Length: {}",
            publish.len()
        );
        let (status, body) = http_request(relay.port(), &head, publish.as_bytes()).await.unwrap();
        assert_eq!(status, 401, "{header}: {body}");
        assert!(body.contains(says), "{header}: {body} should say {says:?}");
    }
    let (status, body) =
        http_request(relay.port(), "GET /v1/channels/demo/history?token= HTTP/1.1", b"").await.unwrap();
    assert_eq!(status, 401, "empty ?token= on history: {body}");
    assert!(body.contains("the token parameter is empty"), "{body}");
}

/// Refusals say the fix: a missing channel names the INSERT that adds its row, a denied subscribe
/// or history read names the SELECT policy on realtime.channels, a denied publish the INSERT
/// policy on realtime.messages; the same texts over WebSocket and HTTP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_name_the_missing_channel_row_and_the_policy_to_write() {
    let (cluster, relay) = start_stack().await;
    let db = cluster.client().await;
    create_channel(&db, "user:%").await;
    let bob = relay.token(Some("bob"), "authenticated");
    let mut ws = Ws::connect(&relay.ws_url(), Connect::Bearer(bob.clone())).await;

    let reply = ws.subscribe("order:42").await;
    assert_eq!(error_code(&reply), "REALTIME_NOT_FOUND", "{reply}");
    assert_eq!(
        reply["error"]["message"],
        "no enabled row of realtime.channels matches 'order:42'; add one: INSERT INTO realtime.channels \
         (pattern) VALUES ('order:%'); (or 'order:42' for this channel alone; a disabled row matches nothing)",
    );
    let reply = ws.subscribe("user:alice").await;
    assert_eq!(error_code(&reply), "REALTIME_UNAUTHORIZED", "{reply}");
    assert_eq!(
        reply["error"]["message"],
        "role 'authenticated' (sub 'bob') may not subscribe to 'user:alice': no SELECT policy on \
         realtime.channels lets this role see the channel's row; add or fix one (docs/permissions.md)",
    );
    let reply = ws
        .request(
            serde_json::json!({"type": "publish", "channel": "user:alice", "event": "hi", "payload": {}}),
        )
        .await;
    assert_eq!(error_code(&reply), "REALTIME_UNAUTHORIZED", "{reply}");
    assert_eq!(
        reply["error"]["message"],
        "role 'authenticated' (sub 'bob') may not publish to 'user:alice': no INSERT policy on \
         realtime.messages allows this message; add or fix one (docs/permissions.md#publish-rules)",
    );

    let history = format!("GET /v1/channels/user%3Aalice/history HTTP/1.1\r\nAuthorization: Bearer {bob}");
    let (status, body) = http_request(relay.port(), &history, b"").await.unwrap();
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains(
            "may not read the history of 'user:alice' (it takes subscribe permission): no SELECT policy"
        ),
        "{body}"
    );
    let (status, body) = http_post_json(
        relay.port(),
        "/v1/publish",
        Some(&bob),
        &serde_json::json!({"channel": "lounge", "event": "hi"}),
    )
    .await
    .unwrap();
    assert_eq!(status, 404, "{body}");
    assert_eq!(
        body["error"]["message"],
        "no enabled row of realtime.channels matches 'lounge'; add one: INSERT INTO realtime.channels \
         (pattern) VALUES ('lounge'); (a disabled row matches nothing)",
    );
}
