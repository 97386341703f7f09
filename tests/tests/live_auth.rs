//! Live authorisation: an `auth` frame swaps the token and re-checks every subscription; a
//! token's expiry closes the connection with 4001 unless a fresh token arrived; RS256/ES256
//! tokens verify against the JWKS file by `kid`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use realtime_e2e::{
    create_channel, exec, mint_token_with_exp, publish, start_stack, start_stack_with, Connect, Refusal,
    RelayOptions, Ws, JWT_SECRET,
};
use serde_json::json;

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

fn fixture(name: &str) -> String {
    format!("{}/../relay/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// `public` is open to all; `user:<sub>` only to that user.
async fn user_channels(db: &tokio_postgres::Client) {
    create_channel(db, "public").await;
    create_channel(db, "user:%").await;
    exec(
        db,
        "CREATE POLICY pub ON realtime.channels FOR SELECT USING (pattern = 'public');
         CREATE POLICY own ON realtime.channels FOR SELECT TO authenticated
           USING (pattern = 'user:%' AND realtime.channel_name() = 'user:' || realtime.user_id());",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_frame_revokes_subscriptions_no_longer_allowed() {
    let (cluster, relay) = start_stack().await;
    let db = cluster.client().await;
    user_channels(&db).await;
    let mut ws =
        Ws::connect(&relay.ws_url(), Connect::Bearer(relay.token(Some("alice"), "authenticated"))).await;
    ws.subscribe_ok("user:alice").await;
    ws.subscribe_ok("public").await;

    let reply = ws.request(json!({"type":"auth","token": relay.token(Some("bob"), "authenticated")})).await;
    assert_eq!(reply["ok"], true, "{reply}");
    let gone = ws.recv_json().await;
    assert_eq!(gone["type"], "unsubscribed", "{gone}");
    assert_eq!(
        (gone["channel"].as_str(), gone["reason"]["code"].as_str()),
        (Some("user:alice"), Some("REALTIME_UNAUTHORIZED"))
    );

    publish(&db, "user:alice", "secret", &json!({})).await;
    publish(&db, "public", "marker", &json!({})).await;
    let marker = ws.expect_message("public").await;
    assert_eq!(marker["event"], "marker", "nothing from user:alice arrives after revocation: {marker}");
    assert!(ws.pending().is_empty(), "no frame besides the marker: {}", ws.transcript());
    let reply = ws.subscribe("user:bob").await;
    assert_eq!(reply["ok"], true, "the new identity applies to new subscriptions: {reply}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_auth_frame_is_refused_and_keeps_the_connection() {
    let (cluster, relay) = start_stack().await;
    user_channels(&cluster.client().await).await;
    let mut ws =
        Ws::connect(&relay.ws_url(), Connect::Bearer(relay.token(Some("alice"), "authenticated"))).await;
    ws.subscribe_ok("user:alice").await;
    let reply = ws.request(json!({"type":"auth","token":"garbage"})).await;
    assert_eq!(reply["error"]["code"], "REALTIME_UNAUTHORIZED", "{reply}");
    let forged =
        mint_token_with_exp("another-secret-entirely-0123456789", Some("bob"), "authenticated", now() + 60);
    let reply = ws.request(json!({"type":"auth","token": forged})).await;
    assert_eq!(reply["error"]["code"], "REALTIME_UNAUTHORIZED", "{reply}");
    assert_eq!(ws.ping().await["type"], "pong");
    assert_eq!(ws.subscribe("user:alice").await["ok"], true, "still alice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_expiry_closes_with_4001_unless_refreshed() {
    let (cluster, relay) = start_stack().await;
    user_channels(&cluster.client().await).await;
    let short = mint_token_with_exp(JWT_SECRET, Some("alice"), "authenticated", now() + 2);
    let mut expiring = Ws::connect(&relay.ws_url(), Connect::Bearer(short.clone())).await;
    let mut refreshed = Ws::connect(&relay.ws_url(), Connect::Bearer(short)).await;
    let fresh = mint_token_with_exp(JWT_SECRET, Some("alice"), "authenticated", now() + 3600);
    assert_eq!(refreshed.request(json!({"type":"auth","token": fresh})).await["ok"], true);

    assert_eq!(expiring.expect_close_within(Duration::from_secs(10)).await, Some(4001));
    assert_eq!(refreshed.ping().await["type"], "pong", "the refreshed connection outlives the first token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_rs256_and_es256_tokens_are_accepted_by_kid() {
    let options = RelayOptions {
        extra_args: vec!["--jwks-file".into(), fixture("jwks.json")],
        allow_anon: Some(false),
        ..Default::default()
    };
    let (cluster, relay) = start_stack_with(options).await;
    user_channels(&cluster.client().await).await;
    let claims = json!({"role":"authenticated","sub":"carol","exp": now() + 600});
    for (alg, kid, pem) in [(Algorithm::RS256, "rsa-1", "rsa.pem"), (Algorithm::ES256, "ec-1", "ec.pem")] {
        let pem = std::fs::read(fixture(pem)).unwrap();
        let key = match alg {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem).unwrap(),
            _ => EncodingKey::from_ec_pem(&pem).unwrap(),
        };
        let mut header = Header::new(alg);
        header.kid = Some(kid.into());
        let token = encode(&header, &claims, &key).unwrap();
        let mut ws = Ws::connect(&relay.ws_url(), Connect::Bearer(token)).await;
        assert_eq!(ws.subscribe("user:carol").await["ok"], true, "{alg:?} token identifies carol");
    }
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("unknown".into());
    let pem = std::fs::read(fixture("rsa.pem")).unwrap();
    let token = encode(&header, &claims, &EncodingKey::from_rsa_pem(&pem).unwrap()).unwrap();
    let refusal = Ws::connect_expecting_refusal(&relay.ws_url(), Connect::Bearer(token)).await;
    assert!(matches!(refusal, Refusal::Http(401)), "unknown kid is refused: {refusal:?}");
}
