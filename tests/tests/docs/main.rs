//! The documentation is tested where the reader stands.
//!
//! [`reader_path_runs_every_block_as_written_on_the_make_run_database`] starts `make run` (the
//! real `scripts/run.sh`: Postgres, the extension, the demo, the relay, the demo page), then reads
//! the pages of [`READER_PATH`] in order, as a new user would after cloning: every shell, SQL,
//! WebSocket and client block is run on that one database and what it prints is compared with
//! the page; every allow/deny table of the permissions cookbook is performed; client snippets
//! run in Node and in headless Chromium. Blocks not meant to run must say so visibly (a first
//! line `-- not run: ...`). At the end the demo must still work and Ctrl-C must stop `make run`
//! cleanly. How each kind of block is run: `reader.rs`; the directives a page may carry:
//! `markdown.rs`; what "matches" means: `compare.rs`.
//!
//! `reference.rs` checks that pages name everything the code has (flags, codes, SQL objects,
//! metrics, cited tests).

mod compare;
mod markdown;
mod reader;
mod reference;
mod stack;

use std::path::{Path, PathBuf};

use markdown::Item;
use realtime_e2e::{Connect, Ws};

/// Every page, in the order a reader meets them: the README, the quickstart, the permissions
/// cookbook, the HTTP API, the TypeScript client, then the references. A new page joins the test
/// by being added here (pages not written yet are skipped until they exist).
pub const READER_PATH: &[&str] = &[
    "README.md",
    "docs/quickstart.md",
    "docs/permissions.md",
    "docs/http.md",
    "clients/typescript/README.md",
    "docs/concepts.md",
    "docs/sql.md",
    "docs/protocol.md",
    "docs/presence.md",
    "docs/transports.md",
    "docs/supabase.md",
    "docs/webhooks.md",
    "docs/configuration.md",
    "docs/security.md",
    "docs/operations.md",
    "docs/scaling.md",
    "docs/admin.md",
    "docs/comparison.md",
    "docs/ARCHITECTURE.md",
    "docs/README.md",
];

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize().expect("repository root")
}

pub fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

/// `rel` if it exists (pages other branches add), else empty.
pub fn read_optional(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_default()
}

/// The pages of [`READER_PATH`] that exist, with their items.
fn pages() -> Vec<(&'static str, Vec<Item>)> {
    READER_PATH
        .iter()
        .filter(|p| repo().join(p).exists())
        .map(|p| (*p, markdown::parse(p, &read(p))))
        .collect()
}

#[test]
fn every_docs_page_is_on_the_reader_path() {
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(repo().join("docs")).expect("docs/") {
        let name = format!("docs/{}", entry.expect("entry").file_name().to_string_lossy());
        if name.ends_with(".md") && !READER_PATH.contains(&name.as_str()) {
            missing.push(name);
        }
    }
    assert!(missing.is_empty(), "add these pages to READER_PATH in tests/tests/docs/main.rs: {missing:?}");
}

/// Cheap and without a database: every code block either runs or says `not run`, and the
/// permissions cookbook keeps its allow/deny tables.
#[test]
fn every_code_block_runs_or_is_visibly_marked_not_run() {
    let mut unmarked = Vec::new();
    for (page, items) in pages() {
        for item in &items {
            let Item::Block(b) = item else { continue };
            let runnable = matches!(b.lang.as_str(), "sh" | "bash" | "sql") || b.directive("file").is_some();
            if b.is_code() && !b.not_run() && !runnable {
                unmarked.push(format!("{page}:{} ({})", b.line, b.lang));
            }
        }
    }
    assert!(unmarked.is_empty(), "blocks that neither run (file=...) nor say `not run`: {unmarked:?}");
    let tables = pages()
        .into_iter()
        .filter(|(p, _)| *p == "docs/permissions.md")
        .flat_map(|(_, items)| items)
        .filter(|i| matches!(i, Item::Table(_)))
        .count();
    assert!(tables >= 4, "docs/permissions.md lost its allow/deny tables ({tables} left)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reader_path_runs_every_block_as_written_on_the_make_run_database() {
    let mut stack = stack::Stack::start(&repo()).await;

    // make run keeps the JWT secret, the admin token (and the tokens file) to their owner, off
    // the relay's command line and out of what it prints
    for file in ["jwt-secret", "admin-token", "env"] {
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(stack.data.join(file)).expect(file).permissions(),
        );
        assert_eq!(mode & 0o777, 0o600, ".data/{file} must be readable by its owner only");
    }
    let relay = stack.relay_pid().expect("the relay make run started");
    let cmdline = std::fs::read(format!("/proc/{relay}/cmdline")).expect("relay cmdline");
    for (file, what) in [("jwt-secret", "the JWT secret"), ("admin-token", "the admin token")] {
        let secret = std::fs::read_to_string(stack.data.join(file)).expect(file);
        assert!(secret.trim().len() >= 32, "{what} is too short: {} bytes", secret.trim().len());
        assert!(
            !String::from_utf8_lossy(&cmdline).contains(secret.trim()),
            "{what} is on the relay's command line"
        );
        assert!(!stack.log_text().contains(secret.trim()), "make run printed {what}");
    }
    assert!(
        stack.log_text().contains("ok   admin console: on at /admin"),
        "make run's check has the admin console's line:\n{}",
        stack.log_tail()
    );

    let mut reader = reader::Reader::new(&stack);
    for (page, items) in pages() {
        reader.read_page(page, &items).await;
    }
    assert!(reader.ran > 40, "the reader ran only {} blocks and tables", reader.ran);
    eprintln!("reader path: {} blocks and tables run, {} marked not run", reader.ran, reader.skipped);
    drop(reader);

    demo_still_works(&stack).await;

    // Ctrl-C ends make run quietly: exit 0 (make then prints no "Error 130"), Postgres stopped.
    assert_eq!(stack.interrupt().await, Some(0), "Ctrl-C: scripts/run.sh must exit 0\n{}", stack.log_tail());
    assert!(!stack.data.join("pg/postmaster.pid").exists(), "Ctrl-C left Postgres running");
}

/// After every page, the demo still works: its channels still admit who they admit, and the demo
/// page in Chromium shows an SQL UPDATE of `orders` live.
async fn demo_still_works(stack: &stack::Stack) {
    let url = format!("ws://127.0.0.1:{}/v1/socket", stack.relay_port);
    let alice = std::fs::read_to_string(stack.data.join("env")).expect(".data/env");
    let alice = alice
        .lines()
        .find_map(|l| l.strip_prefix("export ALICE_JWT='").and_then(|t| t.strip_suffix('\'')))
        .expect("ALICE_JWT in .data/env")
        .to_string();
    let mut ws = Ws::connect(&url, Connect::Bearer(alice)).await;
    for channel in ["demo", "user:alice", "chat:lobby", "orders"] {
        ws.subscribe_ok(channel).await;
    }
    let reply = ws
        .request(serde_json::json!({"type": "publish", "channel": "chat:lobby", "event": "message", "payload": {"text": "still here"}}))
        .await;
    assert_eq!(reply["ok"], true, "alice may still post in the demo chat: {reply}");

    let mut page = tokio::process::Command::new("node")
        .arg(repo().join("tests/reader/browser.mjs"))
        .arg(format!("http://127.0.0.1:{}/?user=alice", stack.demo_port))
        .args(["--watch", "#orders"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the browser");
    let mut lines =
        tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(page.stdout.take().expect("stdout")));
    let mut seen = Vec::new();
    let mut wait_for = async |needle: &str, seen: &mut Vec<String>| {
        let found = tokio::time::timeout(std::time::Duration::from_secs(30), async {
            while let Ok(Some(line)) = lines.next_line().await {
                seen.push(line.clone());
                assert!(!line.starts_with("pageerror:"), "the demo page failed: {line}");
                if line.contains(needle) {
                    return;
                }
            }
        })
        .await;
        assert!(found.is_ok(), "the demo page never showed {needle:?}; it printed:\n{}", seen.join("\n"));
    };
    wait_for("keyboard", &mut seen).await;
    let db = tokio_postgres::connect(
        &format!("host=127.0.0.1 port={} user=postgres dbname=postgres", stack.pg_port),
        tokio_postgres::NoTls,
    )
    .await
    .expect("connect to the make run database");
    tokio::spawn(db.1);
    db.0.batch_execute("UPDATE orders SET status = 'delivered-by-docs-test' WHERE id = 1")
        .await
        .expect("update orders");
    wait_for("delivered-by-docs-test", &mut seen).await;
    let _ = page.kill().await;
    // alice's socket gets the change too (after her chat message and the page's presence events)
    loop {
        let frame = ws.recv_json().await;
        if frame["type"] == "message" && frame["channel"] == "orders" {
            assert_eq!(frame["event"], "UPDATE", "{frame}");
            break;
        }
    }
}
