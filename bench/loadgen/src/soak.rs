//! `--mode soak`: a long run at steady load, checked per connection. `--connections` logical
//! clients (src/soak_conn.rs), client i on `bench:<i % channels>` and at first on relay
//! `i % n` of `--url`, while `--rate` messages/s are published over the channels for `--warmup` +
//! `--duration` seconds; every second `--reconnect-share` of the clients drop their socket and
//! subscribe again on the next relay with `resume` from the last cursor they saw. Usually one
//! of a group of processes (src/group.rs: the file-descriptor limit caps one process near
//! 20,000 connections); the leader reads the servers' memory before any connection (baseline),
//! once all are subscribed and idle, and at every interval (with their CPU), and publishes.
//!
//! At the end each process checks every client: each published message of its channel received
//! exactly once (missing, duplicated), resets, failed reconnects. Its JSON line carries those
//! counts, per-interval latency histograms (live deliveries; replayed ones apart) and the
//! leader's samples; `--mode merge` combines the group's lines (src/soak_merge.rs).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch, Notify, Semaphore};

use crate::adapter::Proto;
use crate::group::{self, Group};
use crate::procstat::{self, Probe};
use crate::publisher::{self, ChannelOf, Outcome, Plan};
use crate::soak_conn::{self, ConnState, Spec};
use crate::stats::{self, buckets, summary, AckTimes, Events};
use crate::subscribers::Target;
use crate::Args;

/// Deliveries of one reporting interval.
struct Interval {
    live: Histogram<u64>,
    ack: Histogram<u64>,
    live_n: u64,
    replayed_n: u64,
    bytes: u64,
}

impl Interval {
    fn new() -> Self {
        Interval { live: stats::histogram(), ack: stats::histogram(), live_n: 0, replayed_n: 0, bytes: 0 }
    }
}

/// What the clients of this process share.
pub struct SoakShared {
    pub events: Events,
    pub reconnects: AtomicU64,
    acks: Arc<AckTimes>,
    /// Publishing start, µs since the epoch (0 until known).
    start_us: AtomicU64,
    interval_us: u64,
    unique: AtomicU64,
    intervals: Mutex<Vec<Interval>>,
    replayed: Mutex<Histogram<u64>>,
}

impl SoakShared {
    /// Records a first delivery of message `seq`.
    pub fn record(&self, seq: u64, sent_us: u64, now: u64, replayed: bool, bytes: usize) {
        self.unique.fetch_add(1, Ordering::Relaxed);
        let latency = now.saturating_sub(sent_us).max(1);
        if replayed {
            self.replayed.lock().expect("replayed").saturating_record(latency);
        }
        let start = self.start_us.load(Ordering::Relaxed);
        let k = if start == 0 { 0 } else { (now.saturating_sub(start) / self.interval_us) as usize };
        let ack = self.acks.get(seq).map_or(1, |a| now.saturating_sub(a).max(1));
        let mut iv = self.intervals.lock().expect("intervals");
        while iv.len() <= k {
            iv.push(Interval::new());
        }
        let i = &mut iv[k];
        i.bytes += bytes as u64;
        if replayed {
            i.replayed_n += 1;
        } else {
            i.live_n += 1;
            i.live.saturating_record(latency);
            i.ack.saturating_record(ack);
        }
    }
}

pub async fn run(args: Args) -> Result<(), String> {
    if args.target != Proto::Realtime {
        return Err("--mode soak speaks wire protocol v1 with resume: --target realtime only".into());
    }
    if args.rate <= 0.0 || args.duration <= 0.0 || args.channels == 0 || args.interval <= 0.0 {
        return Err("--rate, --duration, --channels and --interval must be positive".into());
    }
    if !(0.0..=1.0).contains(&args.reconnect_share) {
        return Err("--reconnect-share must lie in 0..=1".into());
    }
    let probe = Probe::of(&args);
    let target = Arc::new(Target::of(&args)?);
    let total_msgs = ((args.warmup + args.duration) * args.rate).round() as u64;
    let path = args
        .group
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("soak-{}", std::process::id())));
    let own_file = args.group.is_none();
    let g = Arc::new(Group::open(&path, args.group_size, args.group_index, total_msgs as usize)?);
    let res = run_in_group(&args, &probe, target, g.clone(), total_msgs).await;
    if res.is_err() {
        g.abort();
    }
    if own_file {
        let _ = std::fs::remove_file(&path);
    }
    res
}

async fn run_in_group(
    args: &Args,
    probe: &Probe,
    target: Arc<Target>,
    g: Arc<Group>,
    total_msgs: u64,
) -> Result<(), String> {
    let wait = Duration::from_secs_f64(args.group_wait);
    let rss = |p: &Probe| -> Vec<Option<u64>> {
        p.servers.iter().map(|s| procstat::status_kb(s, "VmRSS")).collect()
    };
    let acks = Arc::new(AckTimes::Group(g.clone()));
    let shared = Arc::new(SoakShared {
        events: Events::default(),
        reconnects: AtomicU64::new(0),
        acks: acks.clone(),
        start_us: AtomicU64::new(0),
        interval_us: (args.interval * 1e6) as u64,
        unique: AtomicU64::new(0),
        intervals: Mutex::new(Vec::new()),
        replayed: Mutex::new(stats::histogram()),
    });

    // Baseline memory of the servers, before any connection of the group.
    let baseline = if g.is_leader() {
        let b = rss(probe);
        g.announce_baseline();
        b
    } else {
        g.wait_baseline(wait).await?;
        Vec::new()
    };

    // Subscribe every client.
    let t0 = Instant::now();
    let (stop_tx, stop_rx) = watch::channel(false);
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
    let gate = Arc::new(Semaphore::new(args.connect_concurrency.max(1)));
    let bits = total_msgs.div_ceil(args.channels) as usize + 1;
    let mut notifies = Vec::with_capacity(args.connections);
    let mut tasks = Vec::with_capacity(args.connections);
    for index in args.conn_offset..args.conn_offset + args.connections {
        let reconnect = Arc::new(Notify::new());
        notifies.push(reconnect.clone());
        let spec = Spec {
            index,
            channels: args.channels,
            bits,
            reconnect,
            stop: stop_rx.clone(),
            ready: ready_tx.clone(),
            gate: gate.clone(),
        };
        tasks.push(tokio::spawn(soak_conn::run(spec, target.clone(), shared.clone())));
    }
    drop(ready_tx);
    let setup_events = Events::default();
    let (mut ok, mut failed) = (0usize, 0usize);
    while let Some(r) = ready_rx.recv().await {
        match r {
            Ok(()) => ok += 1,
            Err(why) => {
                failed += 1;
                setup_events.add(why);
            }
        }
    }
    let setup_secs = t0.elapsed().as_secs_f64();
    eprintln!("  soak: subscribed {ok}/{} ({failed} failed) in {setup_secs:.1} s", args.connections);
    if ok == 0 {
        return Err(format!("no client subscribed: {:?}", setup_events.snapshot()));
    }
    g.mark_ready();

    // Idle memory once every client of the group is subscribed, then publishing.
    let channel_of: ChannelOf = {
        let k = args.channels;
        Arc::new(move |s| format!("bench:{}", s % k))
    };
    let plan = Arc::new(Plan {
        call: publisher::Call::Publish,
        database_url: args.database_url.clone(),
        connections: args.publishers.max(1),
        rate: args.rate,
        batch: args.batch.max(1),
        total_msgs,
        pad: args.pad,
        channel_of,
        max_in_flight: args.max_in_flight.max(1),
    });
    let (start_us, idle, clients) = if g.is_leader() {
        g.wait_all_ready(wait).await?;
        tokio::time::sleep(Duration::from_secs_f64(args.settle)).await;
        let idle = rss(probe);
        let clients = publisher::connect(&plan).await.map_err(|e| format!("publisher connect: {e}"))?;
        let start_us = stats::now_us() + 300_000;
        g.announce_start(start_us);
        (start_us, idle, Some(clients))
    } else {
        (g.wait_start(wait).await?, Vec::new(), None)
    };
    shared.start_us.store(start_us, Ordering::Relaxed);
    let start = group::instant_at(start_us);
    let cpu_start = procstat::Cpu::read(probe);

    // The leader samples the servers at every interval boundary until told to stop.
    let (done_tx, done_rx) = watch::channel(false);
    let sampler =
        g.is_leader().then(|| tokio::spawn(sample(probe.clone(), start, args.interval, done_rx.clone())));
    let controller = tokio::spawn(reconnect_controller(
        notifies.clone(),
        args.reconnect_share,
        start,
        done_rx,
        args.group_index,
    ));

    let outcome = match clients {
        Some(c) => {
            let o = publisher::run(plan.clone(), c, acks.clone(), start).await;
            g.announce_done();
            o
        }
        None => {
            g.wait_done(wait + Duration::from_secs_f64(args.warmup + args.duration)).await?;
            Outcome::none()
        }
    };
    let _ = done_tx.send(true);
    let _ = controller.await;

    // Drain: every message of every client's channel, or `--drain` seconds.
    let mut subs = vec![0u64; args.channels as usize];
    for i in args.conn_offset..args.conn_offset + args.connections {
        subs[i % args.channels as usize] += 1;
    }
    let expected: u64 =
        (0..total_msgs).filter(|&s| acks.get(s).is_some()).map(|s| subs[(s % args.channels) as usize]).sum();
    let deadline = Instant::now() + Duration::from_secs_f64(args.drain);
    while shared.unique.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let end = Instant::now();
    let cpu = cpu_start.delta(&procstat::Cpu::read(probe));
    let _ = stop_tx.send(true);
    let mut states = Vec::with_capacity(tasks.len());
    for t in tasks {
        states.push(t.await.map_err(|e| format!("client task: {e}"))?);
    }
    let samples = match sampler {
        Some(s) => s.await.map_err(|e| format!("sampler: {e}"))?,
        None => Vec::new(),
    };

    let verdict = verdict(&states, &acks, total_msgs, args.channels);
    let n = target.endpoints.len();
    let mut by_server = vec![0u64; n];
    for i in args.conn_offset..args.conn_offset + args.connections {
        by_server[i % n] += 1;
    }
    let iv = shared.intervals.lock().expect("intervals");
    let intervals: Vec<Value> = iv
        .iter()
        .enumerate()
        .map(|(k, i)| {
            json!({"k": k, "live_n": i.live_n, "replayed_n": i.replayed_n, "bytes": i.bytes,
                   "live": buckets(&i.live), "ack": buckets(&i.ack)})
        })
        .collect();
    let r2 = |x: f64| (x * 100.0).round() / 100.0;
    let line = json!({
        "label": args.label,
        "mode": "soak",
        "target": args.target.name(),
        "group": {"index": g.index, "size": g.size},
        "connections": args.connections,
        "subscribed": ok,
        "channels": args.channels,
        "servers": n,
        "relay_pid": probe.servers.join(","),
        "rate": args.rate,
        "batch": args.batch,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "interval_s": args.interval,
        "reconnect_share": args.reconnect_share,
        "pad": args.pad,
        "setup_s": r2(setup_secs),
        "setup_errors": setup_events.snapshot(),
        "messages_scheduled": total_msgs,
        "messages_published": outcome.published,
        "publish_errors": outcome.errors.snapshot(),
        "publish_call_us": summary(&outcome.call_us),
        "late_calls": outcome.late_calls,
        "schedule_max_lag_us": outcome.max_lag_us,
        "verdict": verdict,
        "errors": shared.events.snapshot(),
        "conns_by_server": by_server,
        "intervals": intervals,
        "replayed_us": buckets(&shared.replayed.lock().expect("replayed")),
        "baseline_rss_kb": baseline,
        "idle_rss_kb": idle,
        "samples": samples,
        "run_s": r2(end.saturating_duration_since(start).as_secs_f64()),
        "cpu_s": {
            "loadgen": cpu.loadgen.map(r2),
            "relay": cpu.relay.map(r2),
            "machine_busy": cpu.machine_busy.map(r2),
            "machine_capacity": cpu.machine_total.map(r2),
        },
    });
    println!("{line}");
    eprintln!(
        "  soak {}: {} clients, verdict {}, errors {:?}",
        g.index,
        ok,
        line["verdict"],
        shared.events.snapshot()
    );
    Ok(())
}

/// Every client checked against the published messages of its channel.
fn verdict(states: &[ConnState], acks: &AckTimes, total_msgs: u64, channels: u64) -> Value {
    let (mut expected, mut missing, mut unexpected) = (0u64, 0u64, 0u64);
    let (mut conns_missing, mut conns_dup) = (0u64, 0u64);
    let sum = |f: fn(&ConnState) -> u64| states.iter().map(f).sum::<u64>();
    let (duplicates, received, replayed) = (sum(|s| s.duplicates), sum(|s| s.received), sum(|s| s.replayed));
    let (resets, not_recovered, reconnects) =
        (sum(|s| s.resets), sum(|s| s.not_recovered), sum(|s| s.reconnects));
    let (failed, foreign) = (sum(|s| s.failed_attempts), sum(|s| s.foreign));
    for st in states {
        let ch = st.index as u64 % channels;
        let mut m = 0;
        let mut s = ch;
        while s < total_msgs {
            let bit = (s / channels) as usize;
            match (acks.get(s).is_some(), st.has(bit)) {
                (true, true) => expected += 1,
                (true, false) => {
                    expected += 1;
                    m += 1;
                }
                (false, true) => unexpected += 1,
                (false, false) => {}
            }
            s += channels;
        }
        missing += m;
        conns_missing += u64::from(m > 0);
        conns_dup += u64::from(st.duplicates > 0);
    }
    json!({
        "clients": states.len(),
        "expected": expected,
        "received": received,
        "missing": missing,
        "duplicates": duplicates,
        "clients_missing": conns_missing,
        "clients_duplicated": conns_dup,
        "unexpected": unexpected,
        "replayed": replayed,
        "resets": resets,
        "not_recovered": not_recovered,
        "reconnects": reconnects,
        "failed_reconnect_attempts": failed,
        "foreign": foreign,
    })
}

/// Tells `share` of the clients per second, at random, to reconnect, from `start` until `done`.
async fn reconnect_controller(
    clients: Vec<Arc<Notify>>,
    share: f64,
    start: Instant,
    mut done: watch::Receiver<bool>,
    seed: usize,
) {
    if clients.is_empty() || share <= 0.0 {
        return;
    }
    tokio::time::sleep_until(start.into()).await;
    let tick = Duration::from_millis(100);
    let per_tick = share * clients.len() as f64 * tick.as_secs_f64();
    let mut owed = 0.0;
    let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ (seed as u64 + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let mut ticker = tokio::time::interval_at(start.into(), tick);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = done.changed() => return,
        }
        owed += per_tick;
        while owed >= 1.0 {
            // xorshift64*: uniform enough to pick clients.
            rng ^= rng >> 12;
            rng ^= rng << 25;
            rng ^= rng >> 27;
            let pick = (rng.wrapping_mul(0x2545_F491_4F6C_DD1D) % clients.len() as u64) as usize;
            clients[pick].notify_one();
            owed -= 1.0;
        }
    }
}

/// The servers' RSS and cumulative CPU (and the watched processes' CPU) at `start` and every
/// `interval` after it, until `done` (one last sample then).
async fn sample(probe: Probe, start: Instant, interval: f64, mut done: watch::Receiver<bool>) -> Vec<Value> {
    let mut out = Vec::new();
    let mut k = 0u32;
    loop {
        let at = start + Duration::from_secs_f64(interval * f64::from(k));
        let finished = tokio::select! {
            _ = tokio::time::sleep_until(at.into()) => false,
            _ = done.changed() => true,
        };
        let cpu = procstat::Cpu::read(&probe);
        let (_, watched) = cpu.maps(&probe);
        let rss: Vec<Option<u64>> = probe.servers.iter().map(|s| procstat::status_kb(s, "VmRSS")).collect();
        let t = Instant::now().saturating_duration_since(start).as_secs_f64();
        out.push(json!({"t_s": (t * 100.0).round() / 100.0, "rss_kb": rss, "cpu_s": cpu.servers, "watched_cpu_s": watched}));
        if finished {
            return out;
        }
        k += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_verdict_counts_missing_doubled_and_unexpected_per_client() {
        // Two channels, six messages: channel 0 gets 0, 2, 4 and channel 1 gets 1, 3, 5; the
        // publish call of message 4 failed (no ack).
        let acks = AckTimes::new(6);
        for s in [0, 1, 2, 3, 5] {
            acks.set(s, 10);
        }
        let mut a = ConnState::new(0, 3, 0);
        a.mark(0); // message 0; message 2 never came
        a.mark(2); // message 4: delivered although its publish call failed
        let mut b = ConnState::new(1, 3, 1);
        for bit in [0, 1, 2] {
            b.mark(bit);
        }
        b.duplicates = 1;
        let v = verdict(&[a, b], &acks, 6, 2);
        assert_eq!(v["expected"], 5);
        assert_eq!(v["missing"], 1);
        assert_eq!(v["clients_missing"], 1);
        assert_eq!(v["duplicates"], 1);
        assert_eq!(v["clients_duplicated"], 1);
        assert_eq!(v["unexpected"], 1);
    }
}
