//! Pages that must name everything the code has: every relay flag and variable, every error
//! and close code, every extension function and table, every `/metrics` series, and every test
//! a page cites as evidence.

use std::collections::BTreeSet;
use std::process::Command;

use realtime_e2e::relay::relay_bin;
use realtime_e2e::{exec, Cluster};

use super::{read, read_optional, repo};

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
    for page in ["docs/comparison.md", "docs/concepts.md", "docs/admin.md"] {
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
    for opener in [
        "gauge(",
        "counter(",
        "counter_vec(",
        "latency(",
        "pull_gauge(",
        "pull_counter(",
        "pull_labeled_counter(",
    ] {
        series.extend(literals_after(&code, opener));
    }
    assert!(series.len() >= 25, "parsed only {series:?} from the metrics registry");
    assert!(series.contains(&"commit_to_send_seconds"), "{series:?}");
    let missing: Vec<&&str> = series.iter().filter(|s| !docs.contains(&format!("`{s}"))).collect();
    assert!(missing.is_empty(), "metrics not documented in docs/operations.md: {missing:?}");
}
