//! Token edge cases at the socket: a fractional `exp` expires an open connection, an `exp` near
//! `u64::MAX` (handshake or `auth` frame) keeps the session healthy, `nbf` is checked,
//! `--jwt-audience` / `--jwt-issuer` are enforced, and a token without `role` is refused unless
//! `--default-role` names one.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{encode, EncodingKey, Header};
use realtime_e2e::{
    exec, open_channel, publish, start_stack, start_stack_with, Connect, RelayOptions, Ws, JWT_SECRET,
};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite;

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

fn sign(claims: &Value) -> String {
    encode(&Header::default(), claims, &EncodingKey::from_secret(JWT_SECRET.as_bytes())).unwrap()
}

/// The HTTP status and error message of a refused upgrade; panics when it was accepted.
async fn refused(url: &str, token: &str) -> (u16, String) {
    match Ws::try_connect(url, Connect::Bearer(token.to_string())).await {
        Err(tungstenite::Error::Http(response)) => {
            let body: Value =
                serde_json::from_slice(response.body().as_deref().unwrap_or_default()).unwrap_or(Value::Null);
            let message = body["error"]["message"].as_str().unwrap_or_default().to_string();
            (response.status().as_u16(), message)
        }
        Err(e) => panic!("expected an HTTP refusal, got {e}"),
        Ok(_) => panic!("token was accepted: {token}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fractional_exp_expires_an_open_connection() {
    let (_cluster, relay) = start_stack().await;
    // What issuers using `Date.now() / 1000` write.
    let token = sign(&json!({"role": "anon", "exp": now() + 2.5}));
    let mut ws = Ws::connect(&relay.ws_url(), Connect::Bearer(token)).await;
    assert_eq!(ws.ping().await["type"], "pong");
    assert_eq!(ws.expect_close_within(Duration::from_secs(10)).await, Some(4001), "token expired");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exp_near_u64_max_keeps_sessions_subscriptions_and_presence_sound() {
    let (cluster, relay) = start_stack().await;
    let db = cluster.client().await;
    open_channel(&db, "room").await;
    let far = json!({"role": "authenticated", "sub": "alice", "exp": u64::MAX});

    // In an auth frame: the session keeps working, and its presence entry leaves when it closes.
    let token = relay.token(Some("alice"), "authenticated");
    let mut alice = Ws::connect(&relay.ws_url(), Connect::Bearer(token)).await;
    alice.subscribe_ok("room").await;
    let tracked = alice.request(json!({"type": "track", "channel": "room", "state": {"n": 1}})).await;
    assert_eq!(tracked["ok"], true, "{tracked}");
    assert_eq!(alice.recv_json().await["event"], "join", "alice sees her own join");
    let reply = alice.request(json!({"type": "auth", "token": sign(&far)})).await;
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(alice.ping().await["type"], "pong", "the session outlives the auth frame");

    // In the handshake.
    let far_bob = json!({"role": "authenticated", "sub": "bob", "exp": u64::MAX - 1});
    let mut bob = Ws::connect(&relay.ws_url(), Connect::Bearer(sign(&far_bob))).await;
    let joined = bob.subscribe_ok("room").await;
    let members = joined["presence"]["members"].as_array().cloned().unwrap_or_default();
    assert_eq!(members.len(), 1, "alice is a member: {joined}");

    publish(&db, "room", "hello", &json!({})).await;
    assert_eq!(alice.expect_message("room").await["event"], "hello");
    assert_eq!(bob.expect_message("room").await["event"], "hello");

    drop(alice);
    let left = bob.recv_json().await;
    assert_eq!((left["type"].as_str(), left["event"].as_str()), (Some("presence"), Some("leave")), "{left}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nbf_in_the_future_and_token_without_role_are_refused_by_default() {
    let (_cluster, relay) = start_stack().await;
    let url = relay.ws_url();
    let later = sign(&json!({"role": "anon", "exp": now() + 600.0, "nbf": now() + 300.0}));
    let (status, message) = refused(&url, &later).await;
    assert_eq!(status, 401);
    assert!(message.contains("not valid yet"), "{message}");
    let earlier = sign(&json!({"role": "anon", "exp": now() + 600.0, "nbf": now() - 1.0}));
    let mut ws = Ws::connect(&url, Connect::Bearer(earlier)).await;
    assert_eq!(ws.ping().await["type"], "pong", "an nbf in the past is fine");

    let roleless = sign(&json!({"sub": "dave", "exp": now() + 600.0}));
    let (status, message) = refused(&url, &roleless).await;
    assert_eq!(status, 401);
    assert!(message.contains("no 'role' claim"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audience_issuer_and_default_role_flags_are_enforced() {
    let issuer = "https://issuer.test/auth/v1";
    let options = RelayOptions {
        extra_args: [
            "--jwt-audience",
            "authenticated",
            "--jwt-issuer",
            issuer,
            "--default-role",
            "authenticated",
        ]
        .map(String::from)
        .to_vec(),
        ..Default::default()
    };
    let (cluster, relay) = start_stack_with(options).await;
    let db = cluster.client().await;
    exec(&db, "INSERT INTO realtime.channels (pattern) VALUES ('members')").await;
    exec(&db, "CREATE POLICY members ON realtime.channels FOR SELECT TO authenticated USING (true)").await;
    let url = relay.ws_url();
    let exp = now() + 600.0;

    // No role claim: the default role applies (the policy is for authenticated only).
    let good = sign(&json!({"sub": "erin", "exp": exp, "aud": "authenticated", "iss": issuer}));
    let mut ws = Ws::connect(&url, Connect::Bearer(good)).await;
    let reply = ws.subscribe("members").await;
    assert_eq!(reply["ok"], true, "role authenticated from --default-role: {reply}");

    for (claims, want) in [
        (json!({"role": "authenticated", "exp": exp, "iss": issuer}), "audience ('aud') is missing"),
        (
            json!({"role": "authenticated", "exp": exp, "aud": "other", "iss": issuer}),
            "audience ('aud') is not accepted",
        ),
        (json!({"role": "authenticated", "exp": exp, "aud": "authenticated"}), "issuer ('iss') is missing"),
        (
            json!({"role": "authenticated", "exp": exp, "aud": "authenticated", "iss": "https://evil.test"}),
            "issuer ('iss') is not accepted",
        ),
    ] {
        let (status, message) = refused(&url, &sign(&claims)).await;
        assert_eq!(status, 401, "{claims}");
        assert!(message.contains(want), "{claims}: {message}");
    }
}
