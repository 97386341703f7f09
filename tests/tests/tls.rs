//! TLS to Postgres, against a local server with `ssl = on`, a CA and a server certificate made
//! for the test, and a `pg_hba.conf` that admits TCP logins over TLS only (`hostssl`): the relay
//! streams and serves with `verify-full`, `verify-ca` and `require`; a wrong CA, a wrong host
//! name and `sslmode=disable` fail with a clear reason; a client certificate logs in where
//! `pg_hba.conf` asks for one; `realtime-relay check` reports the TLS state.

use std::process::Command;
use std::time::Duration;

use realtime_e2e::relay::relay_bin;
use realtime_e2e::tls::{enable_tls, Certs};
use realtime_e2e::{exec, publish, Cluster, Connect, Relay, RelayOptions, Ws, JWT_SECRET};
use serde_json::json;

const HBA: &str = "hostssl all certuser 127.0.0.1/32 cert\n\
                   hostssl all all 127.0.0.1/32 trust\n\
                   hostssl replication all 127.0.0.1/32 trust";

/// `realtime-relay check` with `url`: exit code and output.
fn check(url: &str) -> (Option<i32>, String) {
    let out = Command::new(relay_bin())
        .args(["check", "--database-url", url, "--jwt-secret", JWT_SECRET])
        .output()
        .expect("run realtime-relay check");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code(), text)
}

fn line<'a>(out: &'a str, prefix: &str) -> &'a str {
    out.lines().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("no line {prefix:?} in\n{out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_streams_over_verified_tls_and_refuses_wrong_ca_name_or_plain() {
    let cluster = Cluster::start().await;
    cluster.setup_db().await;
    let certs = Certs::make();
    enable_tls(&cluster, &certs, HBA).await;
    let db = cluster.socket_client().await;
    exec(
        &db,
        "INSERT INTO realtime.channels (pattern) VALUES ('tls:%');
               CREATE POLICY everyone ON realtime.channels FOR SELECT USING (true)",
    )
    .await;
    let port = cluster.port();
    let ca = certs.path("ca.crt");
    let url = |host: &str, query: &str| format!("postgres://postgres@{host}:{port}/postgres?{query}");

    // verify-full: the pool, the slot's connection and the replication stream are all encrypted
    // and verified; a published message arrives.
    let full = url("localhost", &format!("sslmode=verify-full&sslrootcert={ca}"));
    let relay =
        Relay::start(&cluster, RelayOptions { database_url: Some(full.clone()), ..Default::default() }).await;
    relay.wait_ready().await;
    let mut ws = Ws::connect(&relay.ws_url(), Connect::Anonymous).await;
    ws.subscribe_ok("tls:1").await;
    publish(&db, "tls:1", "over-tls", &json!({"n": 1})).await;
    assert_eq!(ws.expect_message("tls:1").await["event"], "over-tls");
    let encrypted: i64 = db
        .query_one(
            "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
             WHERE s.ssl AND a.application_name LIKE 'realtime-relay%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(encrypted >= 2, "the relay's pool and stream connections use TLS ({encrypted})");
    let plain: i64 = db
        .query_one(
            "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
             WHERE NOT s.ssl AND a.application_name LIKE 'realtime-relay%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(plain, 0, "no relay connection is in clear");
    let (code, out) = check(&full);
    assert_eq!(code, Some(0), "{out}");
    let tls = line(&out, "ok   tls: TLSv1.3");
    assert!(tls.contains("sslmode=verify-full") && tls.contains("and the host name"), "{tls}");
    drop(relay);

    // verify-ca ignores the name (127.0.0.1 is not in the certificate); require checks nothing.
    for query in [format!("sslmode=verify-ca&sslrootcert={ca}"), "sslmode=require".to_string()] {
        let u = url("127.0.0.1", &query);
        let relay =
            Relay::start(&cluster, RelayOptions { database_url: Some(u), ..Default::default() }).await;
        relay.wait_ready().await;
    }

    // A wrong CA: the relay never becomes ready and says why.
    let wrong_ca =
        url("localhost", &format!("sslmode=verify-full&sslrootcert={}", certs.path("other-ca.crt")));
    let relay =
        Relay::start(&cluster, RelayOptions { database_url: Some(wrong_ca.clone()), ..Default::default() })
            .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !relay.log().contains("UnknownIssuer") {
        assert!(tokio::time::Instant::now() < deadline, "no certificate error logged:\n{}", relay.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Not ready: it does not even listen before it could claim its relay id over TLS.
    let readyz = realtime_e2e::http_get(relay.port(), "/readyz").await.map(|(status, _)| status);
    assert!(readyz.is_err() || readyz == Ok(503), "not ready without a verified connection: {readyz:?}");
    drop(relay);
    let (code, out) = check(&wrong_ca);
    assert_eq!(code, Some(1), "{out}");
    assert!(line(&out, "FAIL connection:").contains("invalid peer certificate: UnknownIssuer"), "{out}");

    // A name the certificate does not carry.
    let (code, out) = check(&url("127.0.0.1", &format!("sslmode=verify-full&sslrootcert={ca}")));
    assert_eq!(code, Some(1), "{out}");
    assert!(line(&out, "FAIL connection:").contains("not valid for name"), "{out}");

    // Plain against a TLS-only server: Postgres' own refusal, named.
    let (code, out) = check(&url("localhost", "sslmode=disable"));
    assert_eq!(code, Some(1), "{out}");
    assert!(line(&out, "FAIL connection:").contains("no encryption"), "{out}");
    // allow retries with TLS after that refusal; prefer takes the TLS the server offers.
    for mode in ["allow", "prefer"] {
        let (code, out) = check(&url("localhost", &format!("sslmode={mode}")));
        assert_eq!(code, Some(0), "{mode}: {out}");
        assert!(
            line(&out, "ok   tls: TLSv1.3 to this machine").contains(&format!("sslmode={mode}")),
            "{out}"
        );
    }

    // A client certificate where pg_hba.conf asks for one.
    let cert = format!(
        "sslmode=verify-full&sslrootcert={ca}&sslcert={}&sslkey={}",
        certs.path("client.crt"),
        certs.path("client.key")
    );
    let by_cert = format!("postgres://certuser@localhost:{port}/postgres?{cert}");
    let (code, out) = check(&by_cert);
    assert_eq!(code, Some(0), "{out}");
    let (code, out) =
        check(&format!("postgres://certuser@localhost:{port}/postgres?sslmode=verify-full&sslrootcert={ca}"));
    assert_eq!(code, Some(1), "no client certificate, no login:\n{out}");
}
