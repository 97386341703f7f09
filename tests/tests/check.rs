//! `realtime-relay check`: the self-check passes on a prepared cluster, and on a broken one it
//! fails with a `FAIL` line that names what is wrong and how to fix it.

use std::process::Command;

use realtime_e2e::relay::relay_bin;
use realtime_e2e::{unique_id, Cluster, JWT_SECRET};

/// Runs `realtime-relay check` against `cluster` (database `postgres`, superuser login) with
/// `extra` flags; returns the exit code and stdout.
fn run_check(cluster: &Cluster, extra: &[&str]) -> (Option<i32>, String) {
    run_check_as(&cluster.url("postgres"), extra)
}

/// [`run_check`] with the database and login of `url`.
fn run_check_as(url: &str, extra: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(relay_bin())
        .arg("check")
        .args(["--database-url", url, "--jwt-secret", JWT_SECRET])
        .args(["--relay-id", &unique_id("check")])
        .args(extra)
        .output()
        .expect("run realtime-relay check");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    (out.status.code(), format!("{stdout}{stderr}"))
}

/// The extension crate's version (what `make install-ext` installs as the default version).
fn extension_version() -> String {
    let manifest = include_str!("../../extension/Cargo.toml");
    let v = manifest.lines().find_map(|l| l.strip_prefix("version = \"")).expect("extension version");
    v.trim_end_matches('"').to_string()
}

fn fail_lines(output: &str) -> Vec<&str> {
    output.lines().filter(|l| l.starts_with("FAIL ")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_passes_on_a_prepared_cluster_with_ok_lines() {
    let cluster = Cluster::start().await;
    cluster.setup_db().await;
    let (code, out) = run_check(&cluster, &[]);
    eprintln!("{out}");
    assert_eq!(code, Some(0), "check should pass:\n{out}");
    assert!(fail_lines(&out).is_empty(), "{out}");
    for item in [
        "ok   connection:",
        "ok   server version: PostgreSQL 15",
        format!("ok   extension: realtime {} installed", extension_version()).as_str(),
        "ok   wal_level: logical",
        "ok   max_replication_slots:",
        "ok   max_wal_senders:",
        "ok   publication: realtime_messages publishes realtime.messages",
        "ok   replication privilege:",
        "ok   role anon:",
        "ok   role authenticated:",
        "ok   role service_role:",
        "ok   grants:",
        "ok   jwt: HS256 secret of",
    ] {
        assert!(out.lines().any(|l| l.starts_with(item)), "no line starting with {item:?} in\n{out}");
    }
    assert!(out.contains("does not exist yet; the relay creates it"), "slot line:\n{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_without_the_extension_fails_naming_it_with_a_fix() {
    let cluster = Cluster::start().await;
    let (code, out) = run_check(&cluster, &[]);
    assert_ne!(code, Some(0), "check should fail without the extension:\n{out}");
    let line = fail_lines(&out)
        .into_iter()
        .find(|l| l.starts_with("FAIL extension:"))
        .unwrap_or_else(|| panic!("no FAIL extension line in\n{out}"));
    assert!(line.contains("realtime is not installed"), "{line}");
    assert!(line.contains("— fix: CREATE EXTENSION realtime;"), "{line}");
    assert!(out.contains("ok   wal_level: logical"), "what is fine is still reported as ok:\n{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_with_an_unknown_role_in_roles_fails_naming_the_role() {
    let cluster = Cluster::start().await;
    cluster.setup_db().await;
    let (code, out) = run_check(&cluster, &["--roles", "anon,authenticated,no_such_role"]);
    assert_ne!(code, Some(0), "check should fail:\n{out}");
    let fails = fail_lines(&out);
    assert_eq!(fails.len(), 1, "only the role fails:\n{out}");
    assert!(
        fails[0].starts_with("FAIL role no_such_role: role 'no_such_role' (in --roles) does not exist"),
        "{out}"
    );
    assert!(fails[0].contains("— fix: CREATE ROLE \"no_such_role\" NOLOGIN;"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_against_an_unreachable_database_fails_on_the_connection() {
    let port = realtime_e2e::free_port();
    let out = Command::new(relay_bin())
        .args(["check", "--jwt-secret", JWT_SECRET, "--database-url"])
        .arg(format!("postgres://postgres@127.0.0.1:{port}/postgres"))
        .output()
        .expect("run realtime-relay check");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.starts_with("FAIL connection: database 'postgres' on 127.0.0.1:"), "{text}");
    assert!(text.contains("— fix: check --database-url"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_as_a_login_without_presence_table_rights_fails_with_the_grant() {
    let cluster = Cluster::start().await;
    cluster.setup_db().await;
    let db = cluster.client().await;
    db.batch_execute(
        "CREATE ROLE relay_login LOGIN REPLICATION; \
         GRANT anon, authenticated, service_role TO relay_login; \
         GRANT USAGE ON SCHEMA realtime TO relay_login; \
         GRANT SELECT, INSERT ON realtime.messages TO relay_login; \
         GRANT INSERT ON realtime.commits TO relay_login; \
         GRANT SELECT ON realtime.relay_keys TO relay_login; \
         GRANT EXECUTE ON FUNCTION realtime.publish(text, text, jsonb), \
             realtime.claim_webhook_deliveries(integer, double precision, text, text[]), \
             realtime.finish_webhook_deliveries(bigint[], integer[], text[], integer[], text[], double precision[]), \
             realtime.webhook_queue_depth(), realtime.add_ws_audience(text[], integer[]) TO relay_login;",
    )
    .await
    .expect("relay login");
    let url = format!("postgres://relay_login@127.0.0.1:{}/postgres", cluster.port());

    let (code, out) = run_check_as(&url, &[]);
    assert_eq!(code, Some(1), "{out}");
    let fails = fail_lines(&out);
    assert_eq!(fails.len(), 1, "only the grants line fails:\n{out}");
    assert!(fails[0].starts_with("FAIL grants: login 'relay_login' lacks SELECT, INSERT, UPDATE and DELETE on realtime.presence and realtime.relays"), "{out}");
    assert!(
        fails[0].contains(
            "GRANT SELECT, INSERT, UPDATE, DELETE ON realtime.presence, realtime.relays TO \"relay_login\";"
        ),
        "{out}"
    );

    // Only SELECT and INSERT is still not enough: every right is checked, not any of them.
    db.batch_execute("GRANT SELECT, INSERT ON realtime.presence, realtime.relays TO relay_login")
        .await
        .expect("partial grant");
    let (code, out) = run_check_as(&url, &[]);
    assert_eq!(code, Some(1), "{out}");

    db.batch_execute("GRANT UPDATE, DELETE ON realtime.presence, realtime.relays TO relay_login")
        .await
        .expect("grant");
    let (code, out) = run_check_as(&url, &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.lines().any(|l| l.starts_with("ok   grants:")), "{out}");

    // The relay keys: without SELECT the relay can neither verify nor seal logical messages.
    db.batch_execute("REVOKE SELECT ON realtime.relay_keys FROM relay_login").await.expect("revoke");
    let (code, out) = run_check_as(&url, &[]);
    assert_eq!(code, Some(1), "{out}");
    let fails = fail_lines(&out);
    assert_eq!(fails.len(), 1, "only the grants line fails:\n{out}");
    assert!(fails[0].contains("GRANT SELECT ON realtime.relay_keys TO \"relay_login\";"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_warns_about_unlimited_slot_wal_and_long_retention() {
    let cluster = Cluster::start().await;
    cluster.setup_db().await;
    let (code, out) = run_check(&cluster, &[]);
    assert_eq!(code, Some(0), "warnings do not fail the check:\n{out}");
    assert!(out.lines().any(|l| l.starts_with("warn max_slot_wal_keep_size: is -1 (unlimited)")), "{out}");
    assert!(out.lines().any(|l| l.starts_with("ok   retention: messages are kept 7 days")), "{out}");

    let db = cluster.client().await;
    for sql in [
        "UPDATE realtime.config SET retention = '400 days'",
        "ALTER SYSTEM SET max_slot_wal_keep_size = '1GB'",
        "SELECT pg_reload_conf()",
    ] {
        db.batch_execute(sql).await.unwrap();
    }
    let (code, out) = run_check(&cluster, &[]);
    assert_eq!(code, Some(0), "{out}");
    let line = out.lines().find(|l| l.starts_with("warn retention:")).unwrap_or_else(|| panic!("{out}"));
    assert!(
        line.contains("400 days") && line.contains("— fix: UPDATE realtime.config SET retention"),
        "{line}"
    );
    assert!(out.lines().any(|l| l.starts_with("ok   max_slot_wal_keep_size: 1024 MB")), "{out}");
}
