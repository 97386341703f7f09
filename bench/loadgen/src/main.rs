//! `realtime-loadgen`: drives our relay, or a peer in `bench/peers/`, with one workload
//! (WebSocket or SSE subscribers; open-loop publishing through `realtime.publish()` in Postgres)
//! and measures it: send-to-receive latency in HDR histograms, deliveries/s, errors, the server's
//! CPU seconds and peak RSS. Modes: `fanout` (src/fanout.rs), `idle` (src/idle.rs: connections
//! and RSS per connection), `churn` (src/churn.rs: RLS-checked subscribes per second), `soak`
//! (src/soak.rs: a long run with reconnects and resume, checked per connection), `changes`
//! (src/changes.rs: Supabase `postgres_changes` under row-level security, checked per
//! subscriber) and `merge` (src/merge.rs: one report from the JSON lines of a group of
//! processes, src/group.rs).
//! Connections are spread over source addresses 127.0.0.1..=127.0.0.K (`--source-ips`), so more
//! than ~60k fit on loopback, and over the servers of `--url` (several relays). Protocol adapters
//! per server: src/adapter/.

mod adapter;
mod changes;
mod churn;
mod fanout;
mod group;
mod idle;
mod merge;
mod procstat;
mod publisher;
mod report;
mod soak;
mod soak_conn;
mod soak_merge;
mod sse_conn;
mod stats;
mod subscribers;

use std::net::SocketAddr;

use clap::{Parser, ValueEnum};

use crate::adapter::Proto;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    Fanout,
    Idle,
    Churn,
    Soak,
    Changes,
    Merge,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Pattern {
    /// Every connection subscribes to `bench:shared`.
    Shared,
    /// Connection i subscribes to `bench:<i % channels>`; message s goes to `bench:<s % channels>`.
    PerUser,
}

#[derive(Parser, Debug)]
#[command(version, about = "Load generator for realtime-relay (WebSocket protocol v1)")]
pub struct Args {
    /// What to run: `fanout` (subscribe, publish on schedule, measure deliveries), `idle`
    /// (open idle subscribed connections in steps, read the server's RSS after each) or `churn`
    /// (authenticated clients subscribing and unsubscribing distinct channels).
    #[arg(long, value_enum, default_value_t = Mode::Fanout)]
    pub mode: Mode,
    /// The server under test, for its protocol adapter.
    #[arg(long, value_enum, default_value_t = Proto::Realtime)]
    pub target: Proto,
    /// Server WebSocket URL (Socket.IO peer: ws://HOST:PORT/socket.io/?EIO=4&transport=websocket;
    /// SSE: http://HOST:PORT/v1/sse; Phoenix: ws://HOST:PORT/realtime/v1/websocket?vsn=2.0.0);
    /// several, comma-separated, for several relays: connection i goes to the (i mod n)th.
    #[arg(long, value_delimiter = ',', default_value = "ws://127.0.0.1:4000/v1/socket")]
    pub url: Vec<String>,
    /// Postgres URL for the publishing connections.
    #[arg(long, env = "DATABASE_URL", default_value = "")]
    pub database_url: String,
    /// WebSocket connections (one subscription each).
    #[arg(long, short = 'n', default_value_t = 100)]
    pub connections: usize,
    #[arg(long, value_enum, default_value_t = Pattern::Shared)]
    pub pattern: Pattern,
    /// Channels for `--pattern per-user`.
    #[arg(long, default_value_t = 1000)]
    pub channels: u64,
    /// Messages published per second (open loop).
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Measured seconds of publishing.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds of publishing before the measurement (deliveries not measured).
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Messages per publish call (one transaction).
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Bytes of padding in each payload.
    #[arg(long, default_value_t = 100)]
    pub pad: i32,
    /// Publishing Postgres connections (calls are pipelined over them).
    #[arg(long, default_value_t = 4)]
    pub publishers: usize,
    /// Most publish calls in flight; past it the schedule slips (reported).
    #[arg(long, default_value_t = 1024)]
    pub max_in_flight: usize,
    /// Source addresses 127.0.0.1..=127.0.0.K used round-robin (about 28k connections each).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u8).range(1..=254))]
    pub source_ips: u8,
    /// Connections being set up at once.
    #[arg(long, default_value_t = 256)]
    pub connect_concurrency: usize,
    /// Seconds allowed for one connection's connect + handshake + subscribe.
    #[arg(long, default_value_t = 60.0)]
    pub connect_timeout: f64,
    /// Seconds to wait after the last publish for outstanding deliveries.
    #[arg(long, default_value_t = 5.0)]
    pub drain: f64,
    /// The server's pid (CPU and RSS), comma-separated for several; default: the newest process
    /// named realtime-relay.
    #[arg(long, value_delimiter = ',')]
    pub relay_pid: Vec<String>,
    /// Other processes whose CPU over the window is reported: `label=pid`, or `label=tree:pid`
    /// for a process and all its children (the postmaster: all of Postgres); comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub watch: Vec<procstat::Watch>,
    /// Run as one of several processes sharing this file (under /dev/shm; fresh per run): the
    /// process with `--group-index 0` publishes, all subscribe; `--mode merge` joins their lines.
    #[arg(long)]
    pub group: Option<std::path::PathBuf>,
    /// Processes in the group.
    #[arg(long, default_value_t = 1)]
    pub group_size: usize,
    /// This process's place in the group (0: the publisher).
    #[arg(long, default_value_t = 0)]
    pub group_index: usize,
    /// Seconds a group member waits for the others (setup of every process included).
    #[arg(long, default_value_t = 900.0)]
    pub group_wait: f64,
    /// Global index of this process's first connection (its channels and source addresses
    /// follow from it): the connections of the processes before it in the group.
    #[arg(long, default_value_t = 0)]
    pub conn_offset: usize,
    /// Tokio worker threads (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Write `top -b -n1` (first 20 lines) here half-way through the measured window.
    #[arg(long)]
    pub top_file: Option<std::path::PathBuf>,
    /// `--mode idle`: connection counts to step through, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1000,5000,10000")]
    pub steps: Vec<usize>,
    /// `--mode idle`: seconds to wait after each step before reading the server's RSS.
    #[arg(long, default_value_t = 3.0)]
    pub settle: f64,
    /// `--mode churn` and `changes`: users (JWT subjects u0..u<users-1>); connection i is user
    /// i % users.
    #[arg(long, default_value_t = 1000)]
    pub users: u64,
    /// `--mode churn`: rooms each user is a member of (room r belongs to user r % users, so
    /// user u subscribes to room:u, room:u+users, ...: always a distinct channel).
    #[arg(long, default_value_t = 100)]
    pub rooms_per_user: u64,
    /// `--mode churn`: every Nth subscribe goes to another user's room, which must be refused
    /// (0: never).
    #[arg(long, default_value_t = 0)]
    pub foreign_every: u64,
    /// `--mode churn` and `changes`: HS256 secret to mint the clients' tokens with (the relay's
    /// --jwt-secret).
    #[arg(long, env = "REALTIME_JWT_SECRET", default_value = "")]
    pub jwt_secret: String,
    /// `--mode soak`: share of the connections that reconnect each second (each closes its
    /// socket and subscribes again with `resume` from the last cursor it saw, on the next relay
    /// of `--url`).
    #[arg(long, default_value_t = 0.01)]
    pub reconnect_share: f64,
    /// `--mode soak`: seconds per reporting interval (latency percentiles, deliveries/s, the
    /// servers' RSS and CPU).
    #[arg(long, default_value_t = 10.0)]
    pub interval: f64,
    /// `--mode merge`: files with one JSON line per group member (default: read stdin).
    #[arg(long, value_delimiter = ',')]
    pub inputs: Vec<std::path::PathBuf>,
    /// `--mode changes`: the watched table rows are inserted into (`name` or `schema.name`;
    /// columns owner text, s bigint, t bigint, pad text).
    #[arg(long, default_value = "public.benchrows")]
    pub table: String,
    /// A label copied into the JSON line.
    #[arg(long, default_value = "")]
    pub label: String,
}

fn main() {
    let args = Args::parse();
    if let Err(e) = check_target(&args) {
        eprintln!("realtime-loadgen: {e}");
        std::process::exit(2);
    }
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(t) = args.threads {
        rt.worker_threads(t);
    }
    let rt = rt.enable_all().build().expect("tokio runtime");
    let res = rt.block_on(async move {
        match args.mode {
            Mode::Fanout => fanout::run(args).await,
            Mode::Idle => idle::run(args).await,
            Mode::Churn => churn::run(args).await,
            Mode::Soak => soak::run(args).await,
            Mode::Changes => changes::run(args).await,
            Mode::Merge => merge::run(args),
        }
    });
    match res {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("realtime-loadgen: {e}");
            std::process::exit(1);
        }
    }
}

/// Which targets a mode can drive: SSE streams only subscribe (fanout, idle); `changes` is
/// Supabase's protocol.
fn check_target(args: &Args) -> Result<(), String> {
    let phoenix = matches!(args.target, Proto::Phoenix | Proto::PhoenixV1);
    match args.mode {
        Mode::Churn | Mode::Soak if args.target == Proto::Sse || phoenix => {
            Err(format!("--mode {:?} does not drive --target {}", args.mode, args.target.name())
                .to_lowercase())
        }
        Mode::Changes if !phoenix => Err("--mode changes needs --target phoenix or phoenix-v1".into()),
        _ => Ok(()),
    }
}

pub fn relay_socket_addr(url: &str) -> Result<SocketAddr, String> {
    let rest = url
        .strip_prefix("ws://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or("--url must start with ws:// (http:// for SSE)")?;
    let hostport = rest.split('/').next().unwrap_or(rest);
    let hostport = if hostport.contains(':') { hostport.to_string() } else { format!("{hostport}:80") };
    use std::net::ToSocketAddrs;
    hostport
        .to_socket_addrs()
        .map_err(|e| format!("--url host: {e}"))?
        .find(SocketAddr::is_ipv4)
        .ok_or_else(|| "--url host has no IPv4 address".to_string())
}
