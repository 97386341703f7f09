//! `--mode churn`: RLS-checked subscribes per second. `--connections` authenticated clients
//! (connection i has a token for user `u<i % users>`) each loop: subscribe to the next of its
//! user's rooms (`room:<r>`, r = user + users × j, cycling through `--rooms-per-user`; a member
//! room under the bench's membership table, and no other user's), wait for the reply,
//! unsubscribe, wait for that reply.
//! One request in flight per connection. With `--foreign-every N`, every Nth subscribe goes to a
//! room of another user instead, which the policy must refuse: the refusals (and the absence of
//! unexpected ones) show the permission check really ran. Measured over `--duration` seconds
//! after `--warmup`: subscribe replies per second (allowed and refused) and the reply latency
//! (send → reply read) in an HDR histogram.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::json;
use tokio::sync::Semaphore;

use crate::adapter::{self, Proto, Ws};
use crate::stats::{self, summary, Events};
use crate::subscribers::{self, Target};
use crate::{procstat, Args};

/// What one connection measured.
struct Tally {
    reply_us: Histogram<u64>,
    ok: u64,
    refused: BTreeMap<String, u64>,
    unsubscribe_errors: u64,
    warmup_subscribes: u64,
    /// Measured subscribes to another user's room (should all be refused).
    foreign: u64,
    /// Subscribes to another user's room that were allowed, or own rooms that were refused.
    wrong: u64,
}

impl Tally {
    fn new() -> Self {
        Tally {
            reply_us: stats::histogram(),
            ok: 0,
            refused: BTreeMap::new(),
            unsubscribe_errors: 0,
            warmup_subscribes: 0,
            foreign: 0,
            wrong: 0,
        }
    }
}

/// An HS256 token for `user` (role `authenticated`, valid for a day).
pub fn mint(secret: &str, user: &str) -> Result<String, String> {
    let exp = stats::now_us() / 1_000_000 + 24 * 3600;
    let claims = json!({"sub": user, "role": "authenticated", "exp": exp});
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .map_err(|e| format!("token: {e}"))
}

pub async fn run(args: Args) -> Result<(), String> {
    if args.jwt_secret.is_empty() {
        return Err("--mode churn needs --jwt-secret (the server's HS256 secret)".into());
    }
    if args.users == 0 || args.rooms_per_user == 0 {
        return Err("--users and --rooms-per-user must be positive".into());
    }
    let probe = procstat::Probe::of(&args);
    let pid = probe.first().map(str::to_string);
    let target = Arc::new(Target::of(&args)?);

    // Phase 1: connect every client (authenticated), nothing subscribed yet.
    let t0 = Instant::now();
    let gate = Arc::new(Semaphore::new(args.connect_concurrency.max(1)));
    let mut connecting = tokio::task::JoinSet::new();
    for i in 0..args.connections {
        let user = format!("u{}", i as u64 % args.users);
        let token = mint(&args.jwt_secret, &user)?;
        let ep = target.endpoint(i);
        let sep = if ep.url.contains('?') { '&' } else { '?' };
        let url = format!("{}{sep}token={token}", ep.url);
        let addr = ep.addr;
        let (target, gate) = (target.clone(), gate.clone());
        connecting.spawn(async move {
            let _permit = gate.acquire_owned().await.expect("gate open");
            let r =
                tokio::time::timeout(target.connect_timeout, subscribers::connect(i, &target, addr, &url))
                    .await;
            (i, r.unwrap_or_else(|_| Err("setup timeout".into())))
        });
    }
    let setup_events = Events::default();
    let mut clients = Vec::new();
    while let Some(r) = connecting.join_next().await {
        match r {
            Ok((i, Ok(ws))) => clients.push((i, ws)),
            Ok((_, Err(why))) => setup_events.add(why),
            Err(e) => setup_events.add(format!("task: {e}")),
        }
    }
    let setup_secs = t0.elapsed().as_secs_f64();
    eprintln!("  connected {}/{} in {setup_secs:.1} s", clients.len(), args.connections);
    if clients.is_empty() {
        return Err(format!("no client connected: {:?}", setup_events.snapshot()));
    }

    // Phase 2: churn until the end of the window.
    let start = Instant::now() + Duration::from_millis(100);
    let measure_start = start + Duration::from_secs_f64(args.warmup);
    let end = measure_start + Duration::from_secs_f64(args.duration);
    let before = {
        let (pid, probe) = (pid.clone(), probe.clone());
        tokio::spawn(async move {
            tokio::time::sleep_until(measure_start.into()).await;
            let reset = pid.as_deref().is_some_and(procstat::reset_peak_rss);
            (procstat::Cpu::read(&probe), reset)
        })
    };
    let connected = clients.len();
    let mut loops = tokio::task::JoinSet::new();
    let plan = Arc::new(Plan {
        proto: args.target,
        users: args.users,
        rooms: args.rooms_per_user,
        foreign_every: args.foreign_every,
        start,
        measure_start,
        end,
    });
    for (i, ws) in clients {
        loops.spawn(churn_one(plan.clone(), ws, i as u64 % args.users));
    }
    let (users, rooms) = (args.users, args.rooms_per_user);
    let mut total = Tally::new();
    let events = Events::default();
    while let Some(r) = loops.join_next().await {
        match r {
            Ok((t, err)) => {
                total.reply_us.add(&t.reply_us).expect("same bounds");
                total.ok += t.ok;
                for (k, v) in t.refused {
                    *total.refused.entry(k).or_default() += v;
                }
                total.unsubscribe_errors += t.unsubscribe_errors;
                total.warmup_subscribes += t.warmup_subscribes;
                total.foreign += t.foreign;
                total.wrong += t.wrong;
                if let Some(e) = err {
                    events.add(e);
                }
            }
            Err(e) => events.add(format!("task: {e}")),
        }
    }
    let (cpu_before, rss_reset) = before.await.map_err(|e| e.to_string())?;
    let cpu = cpu_before.delta(&procstat::Cpu::read(&probe));
    let refused: u64 = total.refused.values().sum();
    let r2 = |x: f64| (x * 100.0).round() / 100.0;
    let line = json!({
        "label": args.label,
        "mode": "churn",
        "target": args.target.name(),
        "connections": args.connections,
        "connected": connected,
        "users": users,
        "rooms_per_user": rooms,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "setup_s": r2(setup_secs),
        "setup_errors": setup_events.snapshot(),
        "subscribes_ok": total.ok,
        "subscribes_refused": total.refused,
        "subscribes_per_s": ((total.ok + refused) as f64 / args.duration).round(),
        "allowed_per_s": (total.ok as f64 / args.duration).round(),
        "reply_us": summary(&total.reply_us),
        "unsubscribe_errors": total.unsubscribe_errors,
        "foreign_every": args.foreign_every,
        "foreign_subscribes": total.foreign,
        "wrong_decisions": total.wrong,
        "errors": events.snapshot(),
        "cpu_s": {
            "relay": cpu.relay.map(r2),
            "loadgen": cpu.loadgen.map(r2),
            "machine_busy": cpu.machine_busy.map(r2),
            "machine_capacity": cpu.machine_total.map(r2),
        },
        "relay_pid": pid,
        "relay_rss_kb": {
            "peak": pid.as_deref().and_then(|p| procstat::status_kb(p, "VmHWM")),
            "peak_is_window": rss_reset,
        },
    });
    let h = &total.reply_us;
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    eprintln!(
        "== {} churn: {} subscribes/s ({} ok, refused {:?}) reply p50 {:.2} ms p99 {:.2} ms max {:.2} ms, relay cpu {:?} s",
        args.label,
        ((total.ok + refused) as f64 / args.duration).round(),
        total.ok,
        total.refused,
        ms(0.5),
        ms(0.99),
        h.max() as f64 / 1000.0,
        cpu.relay
    );
    println!("{line}");
    Ok(())
}

/// What every client loop shares.
struct Plan {
    proto: Proto,
    users: u64,
    rooms: u64,
    foreign_every: u64,
    start: Instant,
    measure_start: Instant,
    end: Instant,
}

/// One client's loop; returns its tally and the error that ended it early, if any.
async fn churn_one(plan: Arc<Plan>, mut ws: Ws, user: u64) -> (Tally, Option<String>) {
    let p = &*plan;
    let mut t = Tally::new();
    tokio::time::sleep_until(p.start.into()).await;
    let mut j = 0u64;
    while Instant::now() < p.end {
        j += 1;
        let foreign = p.foreign_every > 0 && j.is_multiple_of(p.foreign_every);
        // Own rooms: user + users × k. A foreign room belongs to the next user.
        let owner = if foreign { (user + 1) % p.users } else { user };
        let channel = format!("room:{}", owner + p.users * (j % p.rooms));
        let sent = Instant::now();
        let r = adapter::request(p.proto, &mut ws, p.proto.subscribe(&channel, 2 * j)).await;
        let took = sent.elapsed().as_micros() as u64;
        let measured = sent >= p.measure_start && Instant::now() <= p.end;
        match r {
            Ok(()) => {
                if measured {
                    t.ok += 1;
                    t.foreign += u64::from(foreign);
                    t.wrong += u64::from(foreign && p.users > 1);
                    t.reply_us.saturating_record(took.max(1));
                } else {
                    t.warmup_subscribes += 1;
                }
                let unsub = p.proto.unsubscribe(&channel, 2 * j + 1);
                if adapter::request(p.proto, &mut ws, unsub).await.is_err() {
                    t.unsubscribe_errors += 1;
                }
            }
            // The socket failed: this client is done.
            Err(e)
                if e.starts_with("close") || e.starts_with("read") || e.starts_with("send") || e == "eof" =>
            {
                return (t, Some(e));
            }
            Err(code) => {
                if measured {
                    t.foreign += u64::from(foreign);
                    t.wrong += u64::from(!foreign);
                    *t.refused.entry(code).or_default() += 1;
                    t.reply_us.saturating_record(took.max(1));
                }
            }
        }
    }
    (t, None)
}
