//! End-to-end test harness for `realtime`: a throwaway Postgres 15 cluster with the extension,
//! the `realtime-relay` binary as a child process, and a small WebSocket client that speaks wire
//! protocol v1 (see `DESIGN.md`).
//!
//! Every test builds its own [`Cluster`] and [`Relay`], so tests are independent and may run in
//! parallel. Both print their logs to the test output when they are dropped during a panic, so a
//! failing test shows what the relay and Postgres said.
//!
//! Prerequisites (the Makefile's `make test` arranges them):
//! - the extension is installed into the system Postgres 15 (`cargo pgrx install`);
//! - the relay binary is built (`REALTIME_RELAY_BIN`, or `<workspace>/target/debug/realtime-relay`);
//! - when the tests run as root, `runuser` is available to start Postgres as user `postgres`.

pub mod cluster;
pub mod http;
pub mod jwt;
pub mod relay;
pub mod sink;
pub mod sql;
pub mod sse;
pub mod tls;
pub mod ws;

pub use cluster::Cluster;
pub use http::{http_get, http_post_json, http_request, http_send, metric_sample, scrape_metric};
pub use jwt::{mint_token, mint_token_with_exp};
pub use relay::{Relay, RelayOptions};
pub use sink::{Captured, Reply, Sink};
pub use sql::{allow_everyone, assert_uuid, create_channel, open_channel, publish, try_publish};
pub use sse::{Sse, SseEvent, SseRefusal};
pub use ws::{Connect, Refusal, Ws};

use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};

/// The HS256 secret every test relay is started with unless a test picks another.
pub const JWT_SECRET: &str = "e2e-test-secret-that-is-long-enough-0123456789";

/// A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, read it, release it).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0 to find a free port");
    listener.local_addr().expect("local_addr").port()
}

/// A short identifier unique within this test process and across concurrent test processes,
/// made of `[a-z0-9_]` only (usable as a relay id, a slot name suffix, a directory name).
pub fn unique_id(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{}_{n}", std::process::id())
}

/// Starts a cluster with the extension created ([`Cluster::setup_db`]) and a relay on it with
/// default options, waits until the relay is ready, and returns both.
pub async fn start_stack() -> (Cluster, Relay) {
    start_stack_with(RelayOptions::default()).await
}

/// Like [`start_stack`], with relay options.
pub async fn start_stack_with(options: RelayOptions) -> (Cluster, Relay) {
    let cluster = Cluster::start().await;
    cluster.setup_db().await;
    let relay = Relay::start(&cluster, options).await;
    relay.wait_ready().await;
    (cluster, relay)
}

/// Runs `sql` (one or more statements, no parameters) as superuser on the `postgres` database,
/// panicking with the statement and the error when it fails.
pub async fn exec(client: &tokio_postgres::Client, sql: &str) {
    if let Err(e) = client.batch_execute(sql).await {
        panic!("SQL failed: {sql}\n  error: {}", pg_error_text(&e));
    }
}

/// The server's message for a Postgres error (tokio-postgres' `Display` only says "db error").
pub fn pg_error_text(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {} ({:?})", db.severity(), db.message(), db.code()),
        None => e.to_string(),
    }
}
