//! The admin console's gate and its database side, against a real relay and Postgres (the
//! browser test in clients/typescript/test/admin.test.mjs drives the pages):
//!
//! - without `--admin-token` every `/admin` path is a 404;
//! - with it, every page, asset and API route refuses a request without the credential (401),
//!   with a wrong one (401), and with the right one from another origin (403), and a
//!   cookie-signed change without origin headers (403); none of them changed anything;
//! - console actions run as `realtime_admin` (a right revoked from that role fails the action,
//!   whatever the relay's login may do) and are logged with who did them;
//! - `realtime-relay check` fails when the login is not a member of `realtime_admin`.

use std::process::Command;

use realtime_e2e::relay::relay_bin;
use realtime_e2e::{exec, http_send, start_stack_with, unique_id, Cluster, Relay, RelayOptions, JWT_SECRET};
use serde_json::{json, Value};

const TOKEN: &str = "e2e-admin-token-0123456789abcdef0123456789";

fn with_console() -> RelayOptions {
    RelayOptions { extra_args: vec!["--admin-token".into(), TOKEN.into()], ..RelayOptions::default() }
}

/// Every route of the console (method, path, JSON body).
fn routes() -> Vec<(&'static str, &'static str, &'static str)> {
    vec![
        ("GET", "/admin", ""),
        ("GET", "/admin/", ""),
        ("GET", "/admin/assets/app.js", ""),
        ("GET", "/admin/assets/style.css", ""),
        ("GET", "/admin/api/meta", ""),
        ("GET", "/admin/api/overview", ""),
        ("GET", "/admin/api/channels", ""),
        ("POST", "/admin/api/channels", r#"{"pattern":"sneaky:%"}"#),
        ("POST", "/admin/api/channels/validate", r#"{"pattern":"sneaky:%"}"#),
        ("PUT", "/admin/api/channels/1", r#"{"pattern":"renamed","enabled":false}"#),
        ("DELETE", "/admin/api/channels/1", ""),
        ("GET", "/admin/api/channels/1/secret", ""),
        ("GET", "/admin/api/messages", ""),
        ("GET", "/admin/api/messages/0190a5b2-7c3d-7e4f-8a9b-0c1d2e3f4a5b", ""),
        ("POST", "/admin/api/inspect/check", r#"{"role":"anon","channel":"open"}"#),
        ("POST", "/admin/api/inspect/publish", r#"{"channel":"open","event":"e"}"#),
        ("GET", "/admin/api/inspect/socket?role=realtime_admin", ""),
        ("GET", "/admin/api/webhooks", ""),
        ("POST", "/admin/api/webhooks/1/retry", ""),
        ("POST", "/admin/api/webhooks/1/discard", ""),
        ("GET", "/admin/api/relays", ""),
        ("GET", "/admin/api/presence", ""),
        ("GET", "/admin/api/audit", ""),
        ("DELETE", "/admin/api/session", ""),
        ("GET", "/admin/api/no-such-thing", ""),
    ]
}

async fn call(relay: &Relay, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, Value) {
    let mut h = headers.to_vec();
    if !body.is_empty() {
        h.push(("Content-Type", "application/json"));
    }
    let r = http_send(relay.port(), method, path, &h, body.as_bytes())
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    (r.status, serde_json::from_str(&r.body).unwrap_or(Value::Null))
}

/// Header lines of a request.
type Headers<'a> = Vec<(&'a str, &'a str)>;

fn bearer() -> String {
    format!("Bearer {TOKEN}")
}

/// Signs in with the form as a browser on the console's own page would; the cookie value.
async fn sign_in(relay: &Relay, name: &str) -> String {
    let body = format!("token={TOKEN}&name={name}");
    let r = http_send(
        relay.port(),
        "POST",
        "/admin/api/session",
        &[("Content-Type", "application/x-www-form-urlencoded"), ("Sec-Fetch-Site", "same-origin")],
        body.as_bytes(),
    )
    .await
    .expect("sign in");
    assert_eq!(r.status, 303, "{r:?}");
    let cookie = r.header("set-cookie").expect("a session cookie");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/admin"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert!(!cookie.contains(TOKEN), "the cookie is a signed session, not the token");
    cookie.split(';').next().expect("name=value").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_is_off_without_an_admin_token() {
    let (_cluster, relay) = start_stack_with(RelayOptions::default()).await;
    for (method, path, body) in routes() {
        let (status, _) = call(&relay, method, path, &[("Authorization", &bearer())], body).await;
        assert_eq!(status, 404, "{method} {path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_admin_route_refuses_a_missing_wrong_or_cross_origin_credential() {
    let (cluster, relay) = start_stack_with(with_console()).await;
    let db = cluster.client().await;
    exec(&db, "INSERT INTO realtime.channels (pattern) VALUES ('open')").await;
    let cookie = sign_in(&relay, "Ada").await;
    let right = bearer();
    let wrong = format!("Bearer {}", TOKEN.replace('0', "1"));
    let cases: [(&str, Headers, u16); 8] = [
        ("no credential", vec![], 401),
        ("a wrong token", vec![("Authorization", &wrong)], 401),
        ("a forged cookie", vec![("Cookie", "realtime_admin=v1.9999999999.QWRh.AAAA")], 401),
        (
            "the token from another Origin",
            vec![("Authorization", &right), ("Origin", "http://evil.example")],
            403,
        ),
        ("the token, Origin null", vec![("Authorization", &right), ("Origin", "null")], 403),
        (
            "the token, cross-site fetch",
            vec![("Authorization", &right), ("Sec-Fetch-Site", "cross-site")],
            403,
        ),
        ("the cookie from a same-site page", vec![("Cookie", &cookie), ("Sec-Fetch-Site", "same-site")], 403),
        ("the cookie from another Origin", vec![("Cookie", &cookie), ("Origin", "http://127.0.0.1:1")], 403),
    ];
    for (what, headers, want) in &cases {
        for (method, path, body) in routes() {
            let (status, reply) = call(&relay, method, path, headers, body).await;
            assert_eq!(status, *want, "{method} {path} with {what}: {reply}");
        }
    }
    // An API call signed in by cookie must say where it comes from; the static page need not.
    for (method, path, body) in routes().into_iter().filter(|(_, p, _)| p.starts_with("/admin/api/")) {
        let (status, _) = call(&relay, method, path, &[("Cookie", &cookie)], body).await;
        assert_eq!(status, 403, "{method} {path} by cookie without Origin or Sec-Fetch-Site");
    }
    let (status, _) = call(&relay, "GET", "/admin", &[("Cookie", &cookie)], "").await;
    assert_eq!(status, 200);
    let (status, _) =
        call(&relay, "GET", "/admin", &[("Cookie", &cookie), ("Sec-Fetch-Site", "none")], "").await;
    assert_eq!(status, 200, "a typed URL of the page itself");
    // Nothing of the refused requests took effect.
    let row = db.query_one("SELECT count(*) FROM realtime.admin_log", &[]).await.unwrap();
    assert_eq!(row.get::<_, i64>(0), 0);
    let row = db
        .query_one("SELECT string_agg(pattern || ':' || enabled, ',') FROM realtime.channels", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "open:true");
    // The same credentials from the console's own origin do work (the refusals above are the rule's).
    let own = format!("http://127.0.0.1:{}", relay.port());
    let (status, reply) =
        call(&relay, "GET", "/admin/api/channels", &[("Authorization", &right), ("Origin", &own)], "").await;
    assert_eq!((status, reply["channels"][0]["pattern"].as_str()), (200, Some("open")));
    let headers = [("Cookie", cookie.as_str()), ("Sec-Fetch-Site", "same-origin")];
    let (status, _) = call(&relay, "POST", "/admin/api/channels", &headers, r#"{"pattern":"mine"}"#).await;
    assert_eq!(status, 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_actions_run_as_realtime_admin_and_are_logged() {
    let (cluster, relay) = start_stack_with(with_console()).await;
    let db = cluster.client().await;
    let auth = bearer();
    let h = [("Authorization", auth.as_str())];

    let (status, made) =
        call(&relay, "POST", "/admin/api/channels", &h, r#"{"pattern":"room:%","generate_secret":true}"#)
            .await;
    assert_eq!(status, 201, "{made}");
    assert_eq!((made["pattern"].as_str(), made["has_secret"].as_bool()), (Some("room:%"), Some(true)));
    let id = made["id"].as_i64().unwrap();

    // The extension's validators answer, naming the field.
    let (status, e) = call(&relay, "POST", "/admin/api/channels", &h, r#"{"pattern":"a_b"}"#).await;
    assert_eq!((status, e["error"]["field"].as_str()), (422, Some("pattern")), "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("contains '_'"), "{e}");
    let (status, e) = call(
        &relay,
        "POST",
        "/admin/api/channels/validate",
        &h,
        r#"{"pattern":"x","webhook_urls":["ftp://x"]}"#,
    )
    .await;
    assert_eq!((status, e["error"]["field"].as_str()), (422, Some("webhook_urls")), "{e}");
    let (status, e) = call(&relay, "POST", "/admin/api/channels", &h, r#"{"pattern":"room:%"}"#).await;
    assert_eq!((status, e["error"]["field"].as_str()), (409, Some("pattern")), "{e}");
    let (status, _) =
        call(&relay, "POST", "/admin/api/channels/validate", &h, r#"{"pattern":"fine:%"}"#).await;
    assert_eq!(status, 200);
    let exists =
        db.query_one("SELECT count(*) FROM realtime.channels WHERE pattern = 'fine:%'", &[]).await.unwrap();
    assert_eq!(exists.get::<_, i64>(0), 0, "validation is a dry run");

    // Bad bodies answer in the console's error format; the body is bounded.
    let (status, e) = call(&relay, "POST", "/admin/api/channels", &h, "{not json").await;
    assert_eq!((status, e["error"]["code"].as_str()), (400, Some("INVALID")), "{e}");
    let (status, e) =
        call(&relay, "POST", "/admin/api/channels", &h, r#"{"description":"no pattern"}"#).await;
    assert_eq!(status, 422, "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("pattern"), "{e}");
    let big =
        json!({"channel": "room:1", "event": "e", "payload": {"x": "y".repeat(1024 * 1024)}}).to_string();
    let (status, e) = call(&relay, "POST", "/admin/api/inspect/publish", &h, &big).await;
    assert_eq!((status, e["error"]["code"].as_str()), (413, Some("INVALID")), "{e}");

    // Disable (secret kept), publish refused then, reveal the secret, delete.
    let path = format!("/admin/api/channels/{id}");
    let (status, row) = call(&relay, "PUT", &path, &h, r#"{"pattern":"room:%","enabled":false}"#).await;
    assert_eq!(
        (status, row["enabled"].as_bool(), row["has_secret"].as_bool()),
        (200, Some(false), Some(true))
    );
    let (status, e) =
        call(&relay, "POST", "/admin/api/inspect/publish", &h, r#"{"channel":"room:1","event":"e"}"#).await;
    assert_eq!((status, e["error"]["field"].as_str()), (422, Some("channel")), "{e}");
    let (status, secret) = call(&relay, "GET", &format!("{path}/secret"), &h, "").await;
    assert!(status == 200 && secret["webhook_secret"].as_str().unwrap().starts_with("whsec_"), "{secret}");
    let (status, _) = call(&relay, "DELETE", &path, &h, "").await;
    assert_eq!(status, 204);

    let log = db
        .query("SELECT who, relay_id, action, target FROM realtime.admin_log ORDER BY id", &[])
        .await
        .unwrap();
    let log: Vec<(String, String, String, String)> =
        log.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3))).collect();
    let target = format!("channel {id}");
    let want = ["create_channel", "update_channel", "reveal_webhook_secret", "delete_channel"];
    assert_eq!(log.len(), want.len(), "refused actions are not logged: {log:?}");
    for ((who, relay_id, action, t), want) in log.iter().zip(want) {
        assert_eq!(
            (who.as_str(), relay_id.as_str(), action.as_str(), t),
            ("api", relay.relay_id(), want, &target)
        );
    }

    // The relay's login is a superuser here; the action still fails once realtime_admin loses the right.
    exec(&db, "REVOKE DELETE ON realtime.channels FROM realtime_admin").await;
    let (status, made) = call(&relay, "POST", "/admin/api/channels", &h, r#"{"pattern":"gone"}"#).await;
    assert_eq!(status, 201);
    let (status, e) = call(&relay, "DELETE", &format!("/admin/api/channels/{}", made["id"]), &h, "").await;
    assert_eq!(status, 500, "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("permission denied"), "{e}");
    let left =
        db.query_one("SELECT count(*) FROM realtime.channels WHERE pattern = 'gone'", &[]).await.unwrap();
    assert_eq!(left.get::<_, i64>(0), 1);
    let (status, e) = call(
        &relay,
        "POST",
        "/admin/api/inspect/check",
        &h,
        &json!({"role": "postgres", "channel": "gone"}).to_string(),
    )
    .await;
    assert_eq!(
        (status, e["error"]["field"].as_str()),
        (422, Some("role")),
        "only --roles and realtime_admin: {e}"
    );
}

/// `realtime-relay check` with the console on, as `url`'s login.
fn check_as(url: &str) -> (Option<i32>, String) {
    let out = Command::new(relay_bin())
        .arg("check")
        .args(["--database-url", url, "--jwt-secret", JWT_SECRET, "--admin-token", TOKEN])
        .args(["--relay-id", &unique_id("check")])
        .output()
        .expect("run realtime-relay check");
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_fails_when_the_login_is_not_a_member_of_realtime_admin_and_the_console_says_so() {
    let cluster = Cluster::start().await;
    cluster.setup_db().await;
    let db = cluster.client().await;
    exec(
        &db,
        "CREATE ROLE relay_login LOGIN REPLICATION; \
         GRANT anon, authenticated, service_role TO relay_login; \
         GRANT SELECT, INSERT ON realtime.messages TO relay_login; \
         GRANT INSERT ON realtime.commits TO relay_login; \
         GRANT SELECT, INSERT, UPDATE, DELETE ON realtime.presence, realtime.relays TO relay_login; \
         GRANT SELECT ON realtime.relay_keys TO relay_login; \
         GRANT EXECUTE ON FUNCTION realtime.publish(text, text, jsonb), \
             realtime.claim_webhook_deliveries(integer, double precision, text, text[]), \
             realtime.finish_webhook_deliveries(bigint[], integer[], text[], integer[], text[], double precision[]), \
             realtime.webhook_queue_depth(), realtime.add_ws_audience(text[], integer[]) TO relay_login;",
    )
    .await;
    let url = format!("postgres://relay_login@127.0.0.1:{}/postgres", cluster.port());
    let (code, out) = check_as(&url);
    assert_eq!(code, Some(1), "{out}");
    let fails: Vec<&str> = out.lines().filter(|l| l.starts_with("FAIL ")).collect();
    assert_eq!(
        fails,
        ["FAIL admin console: login 'relay_login' is not a member of realtime_admin, so every console action \
          would fail — fix: GRANT realtime_admin TO \"relay_login\";"],
        "{out}"
    );

    // A relay running as that login answers console actions with the same fix.
    let relay =
        Relay::start(&cluster, RelayOptions { database_url: Some(url.clone()), ..with_console() }).await;
    relay.wait_ready().await;
    let (status, e) = call(&relay, "GET", "/admin/api/channels", &[("Authorization", &bearer())], "").await;
    assert_eq!((status, e["error"]["code"].as_str()), (500, Some("NOT_MEMBER")), "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("GRANT realtime_admin TO"), "{e}");

    exec(&db, "GRANT realtime_admin TO relay_login").await;
    let (code, out) = check_as(&url);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.lines().any(|l| l.starts_with("ok   admin console: on at /admin; login 'relay_login'")),
        "{out}"
    );
    let (status, _) = call(&relay, "GET", "/admin/api/channels", &[("Authorization", &bearer())], "").await;
    assert_eq!(status, 200);
}
