//! `realtime-presence-bench`: M members join one channel across one or more relays; measures
//! the time until every subscriber's view holds all M members, and the presence frames each
//! join cost.
//!
//! Phases: (1) connect M member and W watcher connections (anonymous: each connection is its
//! own member), round-robin over the `--url`s, subscribe each to `--channel`; (2) at t0 every
//! member sends `track` at once; every connection keeps its view (snapshot + join / update /
//! leave) and notes when it first holds M members; (3) after the last connection converged (or
//! `--timeout`), a short linger counts any extra presence frames. Prints one JSON line on stdout.
//!
//! A join must cost one frame per subscriber: `frames_per_join_per_subscriber` (join and
//! update frames, per join, per subscriber) should be 1.0 (a design that resent the member list
//! would show M/2 or more). Leave frames are reported apart (`leave_frames`): connections that
//! close at the end make the others see leaves.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::{watch, Semaphore};
use tokio_tungstenite::tungstenite::Message;

#[derive(Parser, Debug)]
#[command(version, about = "Presence benchmark for realtime-relay: M members join one channel")]
struct Args {
    /// Relay WebSocket URLs, comma-separated (connections are spread round-robin).
    #[arg(long, default_value = "ws://127.0.0.1:4000/v1/socket", value_delimiter = ',')]
    url: Vec<String>,
    /// Connections that track (members).
    #[arg(long, default_value_t = 1000)]
    members: usize,
    /// Connections that only subscribe and watch.
    #[arg(long, default_value_t = 10)]
    watchers: usize,
    #[arg(long, default_value = "bench:presence")]
    channel: String,
    /// Connections being set up at once.
    #[arg(long, default_value_t = 128)]
    connect_concurrency: usize,
    /// Seconds to wait for convergence.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
    /// Seconds to keep counting frames after convergence.
    #[arg(long, default_value_t = 1.0)]
    linger: f64,
    /// Label copied into the JSON line.
    #[arg(long, default_value = "presence")]
    label: String,
}

#[derive(Default)]
struct Totals {
    /// `join` and `update` frames (what the joins cost).
    frames: AtomicU64,
    /// `leave` frames (none expected before the teardown).
    leaves: AtomicU64,
    bytes: AtomicU64,
    errors: AtomicU64,
    track_errors: AtomicU64,
}

struct Outcome {
    /// Microseconds from t0 until this connection's view held every member.
    converged_us: Option<u64>,
    /// Microseconds from t0 to the track reply (members only).
    track_us: Option<u64>,
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[allow(clippy::too_many_arguments)]
async fn connection(
    url: String,
    channel: String,
    member: bool,
    want: usize,
    totals: Arc<Totals>,
    setup: Arc<Semaphore>,
    ready: tokio::sync::mpsc::Sender<()>,
    mut go: watch::Receiver<Option<Instant>>,
    mut stop: watch::Receiver<bool>,
) -> Result<Outcome, String> {
    let permit = setup.acquire_owned().await.map_err(|e| e.to_string())?;
    let (mut ws, _) =
        tokio_tungstenite::connect_async(url.as_str()).await.map_err(|e| format!("connect: {e}"))?;
    let sub = json!({"type": "subscribe", "ref": 1, "channel": channel}).to_string();
    ws.send(Message::text(sub)).await.map_err(|e| e.to_string())?;
    let mut view: HashSet<String> = HashSet::new();
    loop {
        let Some(msg) = ws.next().await else { return Err("closed during subscribe".into()) };
        let Message::Text(t) = msg.map_err(|e| e.to_string())? else { continue };
        let v: Value = serde_json::from_str(t.as_str()).map_err(|e| e.to_string())?;
        if v["type"] == "reply" && v["ref"] == 1 {
            if v["ok"] != true {
                return Err(format!("subscribe refused: {v}"));
            }
            for m in v["presence"]["members"].as_array().into_iter().flatten() {
                view.insert(m["presence_id"].as_str().unwrap_or_default().to_string());
            }
            break;
        }
    }
    drop(permit);
    let _ = ready.send(()).await;
    let t0 = loop {
        if let Some(t0) = *go.borrow() {
            break t0;
        }
        go.changed().await.map_err(|e| e.to_string())?;
    };
    if member {
        let track =
            json!({"type": "track", "ref": 2, "channel": channel, "state": {"bench": true}}).to_string();
        ws.send(Message::text(track)).await.map_err(|e| e.to_string())?;
    }
    let mut out = Outcome { converged_us: (view.len() >= want).then_some(0), track_us: None };
    loop {
        let msg = tokio::select! {
            m = ws.next() => m,
            _ = stop.changed() => break,
        };
        let Some(msg) = msg else { return Err("connection closed".into()) };
        let Message::Text(t) = msg.map_err(|e| e.to_string())? else { continue };
        let text = t.as_str();
        if text.starts_with(r#"{"type":"presence""#) {
            let v: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
            let pid = v["member"]["presence_id"].as_str().unwrap_or_default().to_string();
            match v["event"].as_str() {
                Some("join") | Some("update") => {
                    totals.frames.fetch_add(1, Ordering::Relaxed);
                    totals.bytes.fetch_add(text.len() as u64, Ordering::Relaxed);
                    view.insert(pid);
                }
                Some("leave") => {
                    // Counted apart: other connections' teardown overlaps the linger's end.
                    totals.leaves.fetch_add(1, Ordering::Relaxed);
                    view.remove(&pid);
                }
                _ => {}
            }
            if out.converged_us.is_none() && view.len() >= want {
                out.converged_us = Some(t0.elapsed().as_micros() as u64);
            }
        } else if text.starts_with(r#"{"type":"reply""#) {
            let v: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
            if v["ref"] == 2 {
                out.track_us = Some(t0.elapsed().as_micros() as u64);
                if v["ok"] != true {
                    totals.track_errors.fetch_add(1, Ordering::Relaxed);
                    eprintln!("track refused: {v}");
                }
            }
        }
    }
    let _ = ws.close(None).await;
    Ok(out)
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let total = args.members + args.watchers;
    let totals = Arc::new(Totals::default());
    let setup = Arc::new(Semaphore::new(args.connect_concurrency.max(1)));
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(total.max(1));
    let (go_tx, go_rx) = watch::channel(None);
    let (stop_tx, stop_rx) = watch::channel(false);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(total);
    for i in 0..total {
        let url = args.url[i % args.url.len()].clone();
        tasks.push(tokio::spawn(connection(
            url,
            args.channel.clone(),
            i < args.members,
            args.members,
            totals.clone(),
            setup.clone(),
            ready_tx.clone(),
            go_rx.clone(),
            stop_rx.clone(),
        )));
    }
    drop(ready_tx);
    let mut ready = 0;
    while ready < total {
        match tokio::time::timeout(Duration::from_secs(args.timeout), ready_rx.recv()).await {
            Ok(Some(())) => ready += 1,
            _ => break,
        }
    }
    let setup_s = started.elapsed().as_secs_f64();
    eprintln!("{ready}/{total} connections subscribed in {setup_s:.1} s; {} members track now", args.members);
    let t0 = Instant::now();
    go_tx.send(Some(t0)).expect("go");
    // Poll for convergence through the frames counter: every subscriber needs `members` joins.
    let deadline = t0 + Duration::from_secs(args.timeout);
    let expected_frames = (args.members * total) as u64;
    while totals.frames.load(Ordering::Relaxed) < expected_frames && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_secs_f64(args.linger)).await;
    let _ = stop_tx.send(true);
    let mut converged = Vec::new();
    let mut tracks = Vec::new();
    for t in tasks {
        match t.await {
            Ok(Ok(o)) => {
                if let Some(c) = o.converged_us {
                    converged.push(c);
                }
                if let Some(t) = o.track_us {
                    tracks.push(t);
                }
            }
            Ok(Err(e)) => {
                totals.errors.fetch_add(1, Ordering::Relaxed);
                eprintln!("connection failed: {e}");
            }
            Err(e) => {
                totals.errors.fetch_add(1, Ordering::Relaxed);
                eprintln!("task failed: {e}");
            }
        }
    }
    converged.sort_unstable();
    tracks.sort_unstable();
    let frames = totals.frames.load(Ordering::Relaxed);
    let joins = args.members.max(1) as f64;
    let line = json!({
        "label": args.label,
        "relays": args.url.len(),
        "members": args.members,
        "watchers": args.watchers,
        "subscribers": total,
        "subscribed": ready,
        "setup_s": setup_s,
        "converged_subscribers": converged.len(),
        "all_converged": converged.len() == total,
        "converge_ms": {
            "p50": percentile(&converged, 0.5) as f64 / 1000.0,
            "p99": percentile(&converged, 0.99) as f64 / 1000.0,
            "max": converged.last().copied().unwrap_or(0) as f64 / 1000.0,
        },
        "track_reply_ms": {
            "p50": percentile(&tracks, 0.5) as f64 / 1000.0,
            "p99": percentile(&tracks, 0.99) as f64 / 1000.0,
            "max": tracks.last().copied().unwrap_or(0) as f64 / 1000.0,
        },
        "presence_frames": frames,
        "leave_frames": totals.leaves.load(Ordering::Relaxed),
        "presence_bytes": totals.bytes.load(Ordering::Relaxed),
        "frames_per_join": frames as f64 / joins,
        "frames_per_join_per_subscriber": frames as f64 / joins / total.max(1) as f64,
        "track_errors": totals.track_errors.load(Ordering::Relaxed),
        "errors": totals.errors.load(Ordering::Relaxed),
    });
    println!("{line}");
    eprintln!(
        "converged {}/{} subscribers; view complete after {:.1} ms (p50 {:.1} ms); {:.3} frames per join per subscriber",
        converged.len(),
        total,
        line["converge_ms"]["max"].as_f64().unwrap_or(0.0),
        line["converge_ms"]["p50"].as_f64().unwrap_or(0.0),
        line["frames_per_join_per_subscriber"].as_f64().unwrap_or(0.0)
    );
    if converged.len() != total || totals.errors.load(Ordering::Relaxed) > 0 {
        std::process::exit(1);
    }
}
