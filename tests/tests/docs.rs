//! The documentation in `docs/` is exercised, so it cannot drift from the code:
//!
//! - every recipe of `docs/permissions.md` (a ```` ```sql ```` block after `<!-- recipe: NAME -->`)
//!   runs on a real database, and every row of its `<!-- expect: NAME -->` table is performed over
//!   a real WebSocket against a real relay, with the documented result;
//! - every flag and environment variable `realtime-relay --help` lists (and those of its
//!   subcommands) is in `docs/configuration.md` (webhook and presence ones may be in their pages);
//! - every error code and close code of `relay/src/core/error.rs` is in `docs/protocol.md`
//!   (or `docs/presence.md`);
//! - every function and table of a fresh `CREATE EXTENSION realtime` is in `docs/sql.md` (or in
//!   `docs/webhooks.md` / `docs/presence.md`, which document their own objects);
//! - every test a page cites as evidence (a backticked `snake_case_name_of_a_test`) exists;
//! - the quickstart's walkthrough (`<!-- walkthrough: orders -->`) runs and behaves as described;
//! - every `/metrics` series registered in `relay/src/metrics/mod.rs` and `relay/src/server.rs`
//!   is in `docs/operations.md` (or in
//!   `docs/webhooks.md` / `docs/presence.md`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use realtime_e2e::relay::relay_bin;
use realtime_e2e::{exec, start_stack, Cluster, Connect, Relay, Ws};
use serde_json::{json, Value};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize().expect("repository root")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

/// `docs/<name>` if it exists (documents other branches add), else empty.
fn read_optional(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_default()
}

/// A cookbook recipe: its SQL and its promised outcomes.
#[derive(Debug)]
struct Recipe {
    name: String,
    sql: String,
    expect: Vec<Expectation>,
}

#[derive(Debug, Clone)]
struct Expectation {
    who: String,
    does: String,
    channel: String,
    event: String,
    result: String,
}

/// The text after each `<!-- {kind}: {name} -->` marker that starts a line, by name, in
/// document order (markers quoted inside prose do not count).
fn marked_sections<'a>(doc: &'a str, kind: &str) -> Vec<(String, &'a str)> {
    let prefix = format!("\n<!-- {kind}: ");
    let mut out = Vec::new();
    for (at, _) in doc.match_indices(&prefix) {
        let rest = &doc[at + prefix.len()..];
        let end = rest.find(" -->").unwrap_or_else(|| panic!("unterminated {kind} marker"));
        out.push((rest[..end].trim().to_string(), &rest[end + 4..]));
    }
    out
}

/// The recipes of `docs/permissions.md`, each with its SQL block and its expectation table.
fn recipes(doc: &str) -> Vec<Recipe> {
    let tables: Vec<(String, Vec<Expectation>)> = marked_sections(doc, "expect")
        .into_iter()
        .map(|(name, after)| (name.clone(), expectation_table(&name, after)))
        .collect();
    let mut out = Vec::new();
    for (name, after) in marked_sections(doc, "recipe") {
        let body = after.trim_start();
        let sql = body
            .strip_prefix("```sql\n")
            .and_then(|b| b.split_once("\n```").map(|(sql, _)| sql.to_string()))
            .unwrap_or_else(|| panic!("recipe {name}: the marker must be followed by a ```sql block"));
        let expect = tables
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| t.clone())
            .unwrap_or_else(|| panic!("recipe {name} has no <!-- expect: {name} --> table"));
        out.push(Recipe { name, sql, expect });
    }
    for (name, _) in &tables {
        assert!(out.iter().any(|r| r.name == *name), "expect table {name} has no recipe");
    }
    out
}

/// Rows of the markdown table right after an expect marker (header names the columns).
fn expectation_table(name: &str, after: &str) -> Vec<Expectation> {
    let lines: Vec<&str> = after.trim_start().lines().take_while(|l| l.starts_with('|')).collect();
    assert!(lines.len() > 2, "expect table {name} is empty");
    let cells = |l: &str| -> Vec<String> {
        l.trim().trim_matches('|').split('|').map(|c| c.trim().to_string()).collect()
    };
    let header = cells(lines[0]);
    let col = |h: &str| header.iter().position(|c| c == h);
    let (who, does, channel, result) = (col("who"), col("does"), col("channel"), col("result"));
    let (Some(who), Some(does), Some(channel), Some(result)) = (who, does, channel, result) else {
        panic!("expect table {name} needs columns who, does, channel, result: {header:?}");
    };
    let event = col("event");
    lines[2..]
        .iter()
        .map(|l| {
            let c = cells(l);
            Expectation {
                who: c[who].clone(),
                does: c[does].clone(),
                channel: c[channel].clone(),
                event: event
                    .map(|e| c[e].clone())
                    .filter(|e| !e.is_empty())
                    .unwrap_or_else(|| "message".into()),
                result: c[result].clone(),
            }
        })
        .collect()
}

fn connect_as(relay: &Relay, who: &str) -> Connect {
    match who {
        "anonymous" => Connect::Anonymous,
        "service" => Connect::Bearer(relay.token(None, "service_role")),
        "alice" | "bob" | "carol" => Connect::Bearer(relay.token(Some(who), "authenticated")),
        other => panic!("unknown actor {other:?} in an expect table (anonymous, alice, bob, carol, service)"),
    }
}

/// `ok` or the error code of a reply.
fn outcome(reply: &Value) -> String {
    if reply["ok"] == true {
        "ok".into()
    } else {
        reply["error"]["code"].as_str().unwrap_or("<no code>").to_string()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permissions_cookbook_recipes_allow_and_deny_as_documented() {
    let doc = read("docs/permissions.md");
    let recipes = recipes(&doc);
    assert!(
        recipes.len() >= 4,
        "the cookbook lost recipes: {:?}",
        recipes.iter().map(|r| &r.name).collect::<Vec<_>>()
    );
    let (cluster, relay) = start_stack().await;
    let db = cluster.client().await;
    for r in &recipes {
        if let Err(e) = db.batch_execute(&r.sql).await {
            panic!("recipe {} does not run: {}\n{}", r.name, realtime_e2e::pg_error_text(&e), r.sql);
        }
    }
    let mut failures = Vec::new();
    for r in &recipes {
        for x in &r.expect {
            let mut ws = Ws::connect(&relay.ws_url(), connect_as(&relay, &x.who)).await;
            let reply = match x.does.as_str() {
                "subscribe" => ws.subscribe(&x.channel).await,
                "publish" | "publish-ephemeral" => {
                    let persist = x.does == "publish";
                    ws.request(json!({"type": "publish", "channel": x.channel, "event": x.event,
                                      "payload": {"from": x.who}, "persist": persist}))
                        .await
                }
                other => panic!("unknown action {other:?} in expect table {}", r.name),
            };
            let got = outcome(&reply);
            if got != x.result {
                failures.push(format!(
                    "[{}] {} {} {} ({}): documented {}, got {reply}",
                    r.name, x.who, x.does, x.channel, x.event, x.result
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "docs/permissions.md promises what the system does not do:\n{}",
        failures.join("\n")
    );
}

/// Flags (`--name`) and variables (`[env: NAME`) of one `--help` text.
fn flags_and_env(help: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for word in help.split(|c: char| c.is_whitespace() || c == ',' || c == '[' || c == ']') {
        if let Some(flag) = word.strip_prefix("--") {
            let flag: String = flag.chars().take_while(|c| c.is_ascii_lowercase() || *c == '-').collect();
            if !flag.is_empty() && flag != "help" && flag != "version" {
                out.insert(format!("--{flag}"));
            }
        }
    }
    for (at, _) in help.match_indices("[env: ") {
        let name: String =
            help[at + 6..].chars().take_while(|c| c.is_ascii_uppercase() || *c == '_').collect();
        out.insert(name);
    }
    out
}

#[test]
fn every_relay_flag_and_variable_is_in_the_configuration_reference() {
    // webhook and presence settings may be documented on their own pages
    let doc = format!(
        "{}\n{}\n{}",
        read("docs/configuration.md"),
        read_optional("docs/webhooks.md"),
        read_optional("docs/presence.md")
    );
    let mut missing = Vec::new();
    let mut seen = 0;
    for sub in [None, Some("check"), Some("token"), Some("healthcheck")] {
        let out =
            Command::new(relay_bin()).args(sub).arg("--help").output().expect("run realtime-relay --help");
        assert!(out.status.success(), "realtime-relay {sub:?} --help failed");
        for item in flags_and_env(&String::from_utf8_lossy(&out.stdout)) {
            seen += 1;
            if !doc.contains(&format!("`{item}`")) {
                missing.push(format!("{item} (realtime-relay {} --help)", sub.unwrap_or("")));
            }
        }
    }
    assert!(seen > 40, "parsed only {seen} flags and variables from --help");
    assert!(missing.is_empty(), "docs/configuration.md does not document: {missing:?}");
}

#[test]
fn every_error_and_close_code_is_in_the_protocol_reference() {
    let doc = format!("{}\n{}", read("docs/protocol.md"), read_optional("docs/presence.md"));
    let codes = read("relay/src/core/error.rs");
    let mut wanted: Vec<String> =
        codes.split('"').filter(|s| s.starts_with("REALTIME_")).map(|s| format!("`{s}`")).collect();
    // variants serialised by rename_all = SCREAMING_SNAKE_CASE rather than an explicit rename
    assert!(codes.contains("InternalError,"), "error.rs changed shape; update this test");
    wanted.push("`INTERNAL_ERROR`".into());
    for line in codes.lines().map(str::trim).filter(|l| l.starts_with("pub const") && l.contains(": u16 =")) {
        let n = line.rsplit('=').next().unwrap().trim().trim_end_matches(';');
        wanted.push(format!("| {n} |"));
    }
    assert!(wanted.len() >= 15, "parsed too few codes from error.rs: {wanted:?}");
    let missing: Vec<&String> = wanted.iter().filter(|w| !doc.contains(w.as_str())).collect();
    assert!(missing.is_empty(), "docs/protocol.md does not document: {missing:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_extension_function_and_table_is_in_the_sql_reference() {
    let docs = format!(
        "{}\n{}\n{}",
        read("docs/sql.md"),
        read_optional("docs/webhooks.md"),
        read_optional("docs/presence.md")
    );
    let cluster = Cluster::start().await;
    cluster.setup_db().await;
    let db = cluster.client().await;
    exec(&db, "SELECT 1").await;
    let rows = db
        .query(
            "SELECT p.proname FROM pg_proc p WHERE p.pronamespace = 'realtime'::regnamespace
             UNION
             SELECT c.relname FROM pg_class c
              WHERE c.relnamespace = 'realtime'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm')",
            &[],
        )
        .await
        .expect("list extension objects");
    let names: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert!(names.iter().any(|n| n == "publish") && names.iter().any(|n| n == "messages"), "{names:?}");
    let missing: Vec<&String> = names.iter().filter(|n| !docs.contains(&format!("realtime.{n}"))).collect();
    assert!(missing.is_empty(), "not documented in docs/sql.md (or webhooks.md / presence.md): {missing:?}");
}

#[test]
fn every_test_the_docs_cite_as_evidence_exists() {
    let mut tests = String::new();
    for entry in std::fs::read_dir(repo().join("tests/tests")).expect("tests/tests") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "rs") {
            tests.push_str(&std::fs::read_to_string(&path).expect("read test file"));
        }
    }
    let mut cited = 0;
    let mut missing = Vec::new();
    for page in ["docs/comparison.md", "docs/concepts.md"] {
        let doc = read(page);
        for (i, part) in doc.split('`').enumerate() {
            // odd parts are inside backticks; test names are long snake_case identifiers
            let is_name = i % 2 == 1
                && part.matches('_').count() >= 3
                && part.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if is_name {
                cited += 1;
                if !tests.contains(&format!("fn {part}(")) {
                    missing.push(format!("{page}: {part}"));
                }
            }
        }
    }
    assert!(cited >= 20, "found only {cited} cited tests");
    assert!(missing.is_empty(), "the docs cite tests that do not exist: {missing:?}");
}

/// The string literal right after each occurrence of `opener` (whitespace, and a first
/// argument `&r,` naming the registry, allowed in between).
fn literals_after<'a>(code: &'a str, opener: &str) -> Vec<&'a str> {
    code.match_indices(opener)
        .filter_map(|(at, _)| {
            let rest = code[at + opener.len()..].trim_start();
            let rest = rest.strip_prefix("&r,").unwrap_or(rest).trim_start().strip_prefix('"')?;
            rest.split_once('"').map(|(lit, _)| lit)
        })
        .collect()
}

#[test]
fn every_metrics_series_is_in_the_operations_guide() {
    let code = format!("{}\n{}", read("relay/src/metrics/mod.rs"), read("relay/src/server.rs"));
    let docs = format!(
        "{}\n{}\n{}",
        read("docs/operations.md"),
        read_optional("docs/webhooks.md"),
        read_optional("docs/presence.md")
    );
    let mut series: Vec<&str> = Vec::new();
    for opener in ["gauge(", "counter(", "counter_vec(", "latency(", "pull_gauge(", "pull_counter("] {
        series.extend(literals_after(&code, opener));
    }
    assert!(series.len() >= 25, "parsed only {series:?} from the metrics registry");
    assert!(series.contains(&"commit_to_send_seconds"), "{series:?}");
    let missing: Vec<&&str> = series.iter().filter(|s| !docs.contains(&format!("`{s}"))).collect();
    assert!(missing.is_empty(), "metrics not documented in docs/operations.md: {missing:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quickstart_walkthrough_delivers_order_changes_to_the_owner_only() {
    let doc = read("docs/quickstart.md");
    let (_, after) = marked_sections(&doc, "walkthrough")
        .into_iter()
        .find(|(name, _)| name == "orders")
        .expect("docs/quickstart.md has no <!-- walkthrough: orders --> block");
    let sql = after
        .trim_start()
        .strip_prefix("```sql\n")
        .and_then(|b| b.split_once("\n```").map(|(sql, _)| sql))
        .expect("the walkthrough marker must be followed by a ```sql block");
    let (cluster, relay) = start_stack().await;
    let db = cluster.client().await;
    exec(&db, sql).await;

    let mut alice = Ws::connect(&relay.ws_url(), connect_as(&relay, "alice")).await;
    alice.subscribe_ok("order:42").await;
    let mut bob = Ws::connect(&relay.ws_url(), connect_as(&relay, "bob")).await;
    assert_eq!(outcome(&bob.subscribe("order:42").await), "REALTIME_UNAUTHORIZED");

    exec(&db, "UPDATE orders SET status = 'shipped' WHERE id = 42").await;
    let m = alice.expect_message("order:42").await;
    assert_eq!(m["event"], "UPDATE", "{m}");
    assert_eq!(m["payload"]["record"]["status"], "shipped", "{m}");
    assert_eq!(m["payload"]["old_record"]["status"], "new", "{m}");
    let cursor = m["cursor"].as_str().expect("stored change has a cursor").to_string();

    // step 5: a reconnecting client resumes from its last cursor and misses nothing
    drop(alice);
    exec(&db, "UPDATE orders SET status = 'delivered' WHERE id = 42").await;
    let mut again = Ws::connect(&relay.ws_url(), connect_as(&relay, "alice")).await;
    let reply = again
        .request(json!({"type": "subscribe", "channel": "order:42", "resume": {"cursor": cursor}}))
        .await;
    assert_eq!(reply["recovered"], true, "{reply}");
    let missed = again.expect_message("order:42").await;
    // Replayed when the relay had decoded the UPDATE before the resume, live (no `replayed`)
    // when it commits through the stream just after: either way exactly the missed message.
    assert_eq!(missed["payload"]["record"]["status"], json!("delivered"), "{missed}");
    assert!(missed["replayed"] == json!(true) || missed["replayed"].is_null(), "{missed}");
}
