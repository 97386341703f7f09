//! What an idle connection costs the relay in heap memory: a WebSocket subscribed to a channel
//! of its own, and a Server-Sent Events stream of one channel (issue 19's and issue 16's goal:
//! at most 16 KiB each).
//!
//! Counted, not sampled: the relay runs in this process on a runtime of its own, and this test
//! binary's global allocator counts the bytes (and blocks) allocated and freed on that
//! runtime's threads only, so the clients' memory (same process, another runtime) is left out
//! and the figure does not move with the machine's load, as RSS would. It leaves out what
//! malloc adds per block (about 16 bytes; reported beside) and the kernel's socket buffers.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use clap::Parser;
use futures_util::future::join_all;
use realtime_e2e::{free_port, open_channel, unique_id, Cluster, Connect, Sse, Ws, JWT_SECRET};
use realtime_relay::config::{Cli, Config};
use tokio_util::sync::CancellationToken;

/// The goal per idle connection.
const GOAL_BYTES: isize = 16 * 1024;
/// Connections per measurement: enough that one-off growth (maps doubling) averages out.
const CONNECTIONS: usize = 200;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);
static LIVE_BLOCKS: AtomicIsize = AtomicIsize::new(0);

thread_local! {
    /// Set on the relay's threads: their allocations are counted.
    static COUNTED: Cell<bool> = const { Cell::new(false) };
}

fn counted() -> bool {
    COUNTED.try_with(Cell::get).unwrap_or(false)
}

struct Counting;

// SAFETY: every call is passed to the system allocator unchanged; the counters are a side note.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() && counted() {
            LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
            LIVE_BLOCKS.fetch_add(1, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        if counted() {
            LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
            LIVE_BLOCKS.fetch_sub(1, Ordering::Relaxed);
        }
        unsafe { System.dealloc(p, layout) }
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let q = unsafe { System.realloc(p, layout, new_size) };
        if !q.is_null() && counted() {
            LIVE_BYTES.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        }
        q
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Live heap of the relay's threads: (bytes, blocks).
fn live() -> (isize, isize) {
    (LIVE_BYTES.load(Ordering::Relaxed), LIVE_BLOCKS.load(Ordering::Relaxed))
}

/// The relay, running in this process on its own counted runtime.
struct InProcessRelay {
    port: u16,
    shutdown: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl InProcessRelay {
    fn start(cluster: &Cluster) -> Self {
        let port = free_port();
        let args = [
            "realtime-relay".to_string(),
            "--database-url".into(),
            cluster.url("postgres"),
            "--bind".into(),
            format!("127.0.0.1:{port}"),
            "--jwt-secret".into(),
            JWT_SECRET.into(),
            "--relay-id".into(),
            unique_id("mem"),
        ];
        let config = Config::try_from(Cli::try_parse_from(args).expect("flags").serve).expect("config");
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        let thread = std::thread::spawn(move || {
            COUNTED.with(|c| c.set(true));
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .on_thread_start(|| COUNTED.with(|c| c.set(true)))
                .build()
                .expect("relay runtime");
            runtime.block_on(async move {
                realtime_relay::server::run(config, stop).await.expect("relay runs");
            });
        });
        InProcessRelay { port, shutdown, thread: Some(thread) }
    }

    async fn wait_ready(&self) {
        for _ in 0..300 {
            if let Ok((200, _)) = realtime_e2e::http_get(self.port, "/readyz").await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the in-process relay was not ready within 30 s");
    }
}

impl Drop for InProcessRelay {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Bytes and blocks per connection held between `before` and now, after a moment to settle.
async fn per_connection(before: (isize, isize), n: usize) -> (isize, isize) {
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = live();
    ((after.0 - before.0) / n as isize, (after.1 - before.1) / n as isize)
}

async fn websocket(port: u16, channel: String) -> Ws {
    let mut ws = Ws::connect(&format!("ws://127.0.0.1:{port}/v1/socket"), Connect::Anonymous).await;
    ws.subscribe_ok(&channel).await;
    ws
}

async fn stream(port: u16, channel: String) -> Sse {
    let mut s = Sse::open(port, &format!("/v1/sse?channel={channel}"), &[]).await.expect("stream opens");
    // Up to `ready` (opening a stream may wait for the replication stream's next status,
    // which comes every 10 s at worst: more than `next_event`'s own limit).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::time::Instant::now() < deadline {
        match s.next_within(Duration::from_secs(1)).await {
            Some(e) if e.event == "ready" => return s,
            _ => {}
        }
    }
    panic!("stream {channel} not ready within 30 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_websocket_or_event_stream_holds_at_most_16_kib() {
    let cluster = Cluster::start().await;
    cluster.setup_db().await;
    open_channel(&cluster.client().await, "room:%").await;
    let relay = InProcessRelay::start(&cluster);
    relay.wait_ready().await;
    let port = relay.port;

    // Warm-up: what the first connections make once (pooled database connections and their
    // statement caches, maps, metric series) is not a connection's cost. Connections open
    // concurrently (as many as the pool has connections, and more), as clients do.
    let warm_ws = join_all((0..20).map(|i| websocket(port, format!("room:warm{i}")))).await;
    let warm_sse = join_all((0..20).map(|i| stream(port, format!("room:warmsse{i}")))).await;

    // Each WebSocket subscribed to a channel of its own (the per-user shape: the hub holds a
    // channel per connection too).
    let before = live();
    let sockets = join_all((0..CONNECTIONS).map(|i| websocket(port, format!("room:ws{i}")))).await;
    let (ws_bytes, ws_blocks) = per_connection(before, CONNECTIONS).await;

    let before = live();
    let mut streams = join_all((0..CONNECTIONS).map(|i| stream(port, format!("room:sse{i}")))).await;
    let (sse_bytes, sse_blocks) = per_connection(before, CONNECTIONS).await;

    eprintln!(
        "idle WebSocket: {ws_bytes} bytes in {ws_blocks} blocks per connection; \
         idle SSE stream: {sse_bytes} bytes in {sse_blocks} blocks per stream \
         (malloc adds about 16 bytes per block)"
    );
    assert!(ws_bytes <= GOAL_BYTES, "an idle WebSocket holds {ws_bytes} bytes, over {GOAL_BYTES}");
    assert!(sse_bytes <= GOAL_BYTES, "an idle SSE stream holds {sse_bytes} bytes, over {GOAL_BYTES}");

    // The streams are still served after all that (nothing above broke them).
    let db = cluster.client().await;
    realtime_e2e::publish(&db, "room:ws7", "e", &serde_json::json!({"n": 1})).await;
    realtime_e2e::publish(&db, "room:sse7", "e", &serde_json::json!({"n": 2})).await;
    let mut sockets = sockets;
    assert_eq!(sockets[7].expect_message("room:ws7").await["payload"]["n"], 1);
    let e = streams[7].next_event().await;
    assert_eq!((e.event.as_str(), e.json()["payload"]["n"].as_i64()), ("message", Some(2)), "{e:?}");
    drop((warm_ws, warm_sse, sockets, streams));
}
