//! `--mode changes`: Supabase `postgres_changes` under row-level security, checked per
//! subscriber. `--connections` Phoenix connections (`--target phoenix|phoenix-v1`); connection i
//! is user `u<i % --users>` with its own HS256 token (`?apikey=`, role `authenticated`) and
//! joins topic `realtime:bench-rows` with one binding `{event: "*", schema, table}` of
//! `--table`. The publisher inserts rows `(owner, s, t, pad)` into that table on the usual
//! open-loop schedule (row s belongs to `u<s % users>`, one row per transaction unless
//! `--batch`). The table's policy lets a user SELECT only its own rows, so every subscriber
//! must receive exactly its user's rows, each once.
//!
//! Per connection the run counts its user's measured rows received (each once), duplicates,
//! rows of other users (`extra`: what a relay that does not check rows per subscriber sends)
//! and own rows missing; latency of own rows goes to the usual histograms (send→recv includes
//! the INSERT's durable commit; ack→recv starts when it returned). CPU over the measured window
//! of the server and of `--watch` processes (`postgres=tree:<postmaster pid>`: the database),
//! each also per row changed. One JSON line on stdout, a summary on stderr.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::sync::{mpsc, Semaphore};
use tokio_tungstenite::tungstenite::Message;

use crate::adapter::{self, phoenix, short, Proto, Ws};
use crate::publisher::{self, Call, ChannelOf, Plan};
use crate::stats::{self, summary, AckTimes, Events};
use crate::subscribers::{self, Ready, Step, Target};
use crate::{churn, procstat, Args};

/// The topic every connection joins (no channel row: a topic that only carries table changes
/// needs none).
const TOPIC: &str = "bench-rows";

/// What one connection received.
struct Conn {
    user: u64,
    /// Own measured rows received (by seq).
    seen: Mutex<HashSet<u64>>,
    duplicates: AtomicU64,
    /// Rows of other users.
    extra: AtomicU64,
}

/// What the readers share.
struct Ctx {
    warmup_msgs: u64,
    acks: Arc<AckTimes>,
    events: Events,
    stopping: AtomicBool,
}

pub async fn run(args: Args) -> Result<(), String> {
    if !matches!(args.target, Proto::Phoenix | Proto::PhoenixV1) {
        return Err("--mode changes needs --target phoenix or phoenix-v1".into());
    }
    if args.jwt_secret.is_empty() {
        return Err("--mode changes needs --jwt-secret (the relay's HS256 secret)".into());
    }
    if args.users == 0 || args.rate <= 0.0 || args.duration <= 0.0 || args.batch == 0 {
        return Err("--users, --rate, --duration and --batch must be positive".into());
    }
    let table = publisher::table_name(&args.table)?;
    let (schema, name) = table.split_once('.').unwrap_or(("public", &table));
    let bindings = json!([{"event": "*", "schema": schema, "table": name}]);
    let probe = procstat::Probe::of(&args);
    let relay_pid = probe.first().map(str::to_string);
    let target = Arc::new(Target::of(&args)?);
    let warmup_msgs = (args.warmup * args.rate).round() as u64;
    let measured_msgs = (args.duration * args.rate).round() as u64;
    let total_msgs = warmup_msgs + measured_msgs;
    let ctx = Arc::new(Ctx {
        warmup_msgs,
        acks: Arc::new(AckTimes::new(total_msgs as usize)),
        events: Events::default(),
        stopping: AtomicBool::new(false),
    });

    // Phase 1: connect and join, each connection with its user's token.
    let t0 = Instant::now();
    let gate = Arc::new(Semaphore::new(args.connect_concurrency.max(1)));
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
    let mut conns = Vec::with_capacity(args.connections);
    for i in 0..args.connections {
        let user = i as u64 % args.users;
        let token = churn::mint(&args.jwt_secret, &format!("u{user}"))?;
        let ep = target.endpoint(i);
        let sep = if ep.url.contains('?') { '&' } else { '?' };
        let url = format!("{}{sep}apikey={token}", ep.url);
        let join = phoenix::join(args.target == Proto::Phoenix, TOPIC, 1, bindings.clone());
        let conn = Arc::new(Conn {
            user,
            seen: Mutex::new(HashSet::new()),
            duplicates: AtomicU64::new(0),
            extra: AtomicU64::new(0),
        });
        conns.push(conn.clone());
        let (target, ctx, gate, tx) = (target.clone(), ctx.clone(), gate.clone(), ready_tx.clone());
        tokio::spawn(async move {
            let permit = gate.acquire_owned().await.expect("gate open");
            let setup = tokio::time::timeout(target.connect_timeout, async {
                let addr = target.endpoint(i).addr;
                let mut ws = subscribers::connect(i, &target, addr, &url).await?;
                adapter::request(target.proto, &mut ws, join.clone())
                    .await
                    .map_err(|e| format!("join: {e}"))?;
                Ok::<_, String>(ws)
            })
            .await
            .unwrap_or_else(|_| Err("setup timeout".into()));
            drop(permit);
            match setup {
                Ok(ws) => {
                    let _ = tx.send((i, Ready::Ok));
                    drop(tx);
                    read_loop(ws, target.proto, &conn, &ctx).await;
                }
                Err(why) => {
                    let _ = tx.send((i, Ready::Failed(why)));
                }
            }
        });
    }
    drop(ready_tx);
    let setup_events = Events::default();
    let mut subscribed = vec![false; args.connections];
    let mut ok = 0usize;
    for _ in 0..args.connections {
        let Some((i, r)) = ready_rx.recv().await else { break };
        match r {
            Ready::Ok => {
                subscribed[i] = true;
                ok += 1;
            }
            Ready::Failed(why) => setup_events.add(why),
        }
    }
    let setup_secs = t0.elapsed().as_secs_f64();
    eprintln!("  joined {ok}/{} in {setup_secs:.1} s", args.connections);
    if ok == 0 {
        return Err(format!("no connection joined: {:?}", setup_events.snapshot()));
    }

    // Phase 2: insert rows on schedule.
    let users = args.users;
    let owner_of: ChannelOf = Arc::new(move |s| format!("u{}", s % users));
    let plan = Arc::new(Plan {
        call: Call::Insert(table.clone()),
        database_url: args.database_url.clone(),
        connections: args.publishers.max(1),
        rate: args.rate,
        batch: args.batch,
        total_msgs,
        pad: args.pad,
        channel_of: owner_of,
        max_in_flight: args.max_in_flight.max(1),
    });
    let clients = publisher::connect(&plan).await.map_err(|e| format!("publisher connect: {e}"))?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let start = Instant::now() + Duration::from_millis(50);
    let measure_start = start + Duration::from_secs_f64(args.warmup);
    let before = {
        let (pid, p) = (relay_pid.clone(), probe.clone());
        tokio::spawn(async move {
            tokio::time::sleep_until(measure_start.into()).await;
            let reset = pid.as_deref().is_some_and(procstat::reset_peak_rss);
            (procstat::Cpu::read(&p), reset, Instant::now())
        })
    };
    let outcome = publisher::run(plan, clients, ctx.acks.clone(), start).await;
    let (cpu_before, rss_reset, window_start) = before.await.map_err(|e| e.to_string())?;

    // Phase 3: drain until every subscriber has its rows, or --drain seconds.
    let mut own_rows = vec![0u64; users as usize];
    let mut rows_published = 0u64;
    for s in (warmup_msgs..total_msgs).filter(|&s| ctx.acks.get(s).is_some()) {
        own_rows[(s % users) as usize] += 1;
        rows_published += 1;
    }
    let expected: u64 =
        conns.iter().zip(&subscribed).filter(|(_, s)| **s).map(|(c, _)| own_rows[c.user as usize]).sum();
    let deadline = Instant::now() + Duration::from_secs_f64(args.drain);
    while stats::deliveries() < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let window_secs = window_start.elapsed().as_secs_f64();
    let cpu = cpu_before.delta(&procstat::Cpu::read(&probe));
    ctx.stopping.store(true, Ordering::Relaxed);
    let rec = stats::merged();

    // Per connection: own rows received among those published, duplicates, others' rows.
    let (mut received, mut missing, mut duplicates, mut extra) = (0u64, 0u64, 0u64, 0u64);
    let (mut exact, mut with_missing, mut with_extra) = (0usize, 0usize, 0usize);
    for (c, _) in conns.iter().zip(&subscribed).filter(|(_, s)| **s) {
        let got = c.seen.lock().expect("seen").iter().filter(|&&s| ctx.acks.get(s).is_some()).count() as u64;
        let (miss, dup, ext) = (
            own_rows[c.user as usize].saturating_sub(got),
            c.duplicates.load(Ordering::Relaxed),
            c.extra.load(Ordering::Relaxed),
        );
        received += got;
        missing += miss;
        duplicates += dup;
        extra += ext;
        with_missing += usize::from(miss > 0);
        with_extra += usize::from(ext + dup > 0);
        exact += usize::from(miss == 0 && dup == 0 && ext == 0);
    }
    let per_change = |secs: Option<f64>| {
        secs.filter(|_| rows_published > 0).map(|s| (s * 1e6 / rows_published as f64 * 10.0).round() / 10.0)
    };
    let (servers, watched) = cpu.maps(&probe);
    let watched_per_change: serde_json::Map<String, serde_json::Value> = probe
        .watched
        .iter()
        .zip(&cpu.watched)
        .map(|(w, c)| (w.label.clone(), json!(per_change(*c))))
        .collect();
    let r2 = |x: Option<f64>| x.map(|v| (v * 100.0).round() / 100.0);
    let rss = |key: &str| relay_pid.as_deref().and_then(|p| procstat::status_kb(p, key));
    let all = received + duplicates + extra;
    let line = json!({
        "label": args.label,
        "mode": "changes",
        "target": args.target.name(),
        "table": table,
        "connections": args.connections,
        "subscribed": ok,
        "users": users,
        "rate": args.rate,
        "batch": args.batch,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "pad": args.pad,
        "setup_s": (setup_secs * 100.0).round() / 100.0,
        "setup_errors": setup_events.snapshot(),
        "rows_scheduled": measured_msgs,
        "rows_published": rows_published,
        "publish_errors": outcome.errors.snapshot(),
        "publish_call_us": summary(&outcome.call_us),
        "schedule_max_lag_us": outcome.max_lag_us,
        "late_calls": outcome.late_calls,
    });
    let measured = json!({
        "expected": expected,
        "received": received,
        "missing": missing,
        "duplicates": duplicates,
        "extra": extra,
        "connections_exact": exact,
        "connections_missing": with_missing,
        "connections_extra": with_extra,
        "deliveries_per_s": (rec.deliveries as f64 / args.duration).round(),
        "all_deliveries_per_s": (all as f64 / args.duration).round(),
        "latency_us": summary(&rec.send_to_recv),
        "ack_to_recv_us": summary(&rec.ack_to_recv),
        "delivered_before_ack": rec.before_ack,
        "frame_bytes_mean": rec.bytes.checked_div(rec.deliveries).unwrap_or(0),
        "errors": ctx.events.snapshot(),
        "window_s": (window_secs * 100.0).round() / 100.0,
        "cpu_s": {
            "relay": r2(cpu.relay),
            "loadgen": r2(cpu.loadgen),
            "machine_busy": r2(cpu.machine_busy),
            "machine_capacity": r2(cpu.machine_total),
            "servers": servers,
            "watched": watched,
        },
        "relay_us_per_change": per_change(cpu.relay),
        "relay_us_per_delivery": cpu.relay.filter(|_| all > 0).map(|s| (s * 1e6 / all as f64 * 100.0).round() / 100.0),
        "watched_us_per_change": watched_per_change,
        "relay_pid": probe.servers.join(","),
        "relay_rss_kb": {"peak": rss("VmHWM"), "end": rss("VmRSS"), "peak_is_window": rss_reset},
    });
    // Two objects: one json! of every field exceeds the macro's recursion limit.
    let mut line = line;
    if let (Some(a), serde_json::Value::Object(b)) = (line.as_object_mut(), measured) {
        a.extend(b);
    }
    println!("{line}");
    let p99 = if rec.send_to_recv.is_empty() { 0 } else { rec.send_to_recv.value_at_quantile(0.99) };
    eprintln!(
        "  {rows_published} rows; own rows received {received}/{expected} (missing {missing}, duplicates {duplicates}), \
         others' rows {extra}; {exact}/{ok} connections exact; p99 send→recv {p99} µs"
    );
    Ok(())
}

/// Reads frames until the socket ends, sending the heartbeat on schedule.
async fn read_loop(mut ws: Ws, proto: Proto, conn: &Conn, ctx: &Ctx) {
    let (every, beat) = proto.heartbeat().expect("phoenix has a heartbeat");
    let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        let step = tokio::select! {
            next = ws.next() => Step::Frame(next),
            _ = interval.tick() => Step::Heartbeat,
        };
        let next = match step {
            Step::Heartbeat => {
                let _ = ws.send(Message::text(beat)).await;
                continue;
            }
            Step::Frame(next) => next,
        };
        let why = match next {
            Some(Ok(Message::Text(t))) => {
                on_text(t.as_str(), conn, ctx);
                continue;
            }
            Some(Ok(Message::Binary(_))) => {
                ctx.events.add("binary frame");
                continue;
            }
            Some(Ok(Message::Close(c))) => format!("close {}", c.map_or(1005, |f| u16::from(f.code))),
            Some(Ok(_)) => continue,
            Some(Err(e)) => format!("read error: {}", short(&e.to_string())),
            None => "eof".to_string(),
        };
        if !ctx.stopping.load(Ordering::Relaxed) {
            ctx.events.add(why);
        }
        return;
    }
}

/// Accounts one text frame.
fn on_text(text: &str, conn: &Conn, ctx: &Ctx) {
    let Some(p) = phoenix::parse(text) else {
        ctx.events.add("unparsable frame");
        return;
    };
    let change = match phoenix::row_change(&p) {
        Some(Ok(c)) => c,
        Some(Err(why)) => return ctx.events.add(why),
        None => {
            match p.event.as_str() {
                "system" if p.payload["status"] != "ok" => {
                    ctx.events.add(format!("system: {}", short(&p.payload["message"].to_string())))
                }
                "system" | "phx_reply" | "presence_state" | "presence_diff" => {}
                other => ctx.events.add(format!("frame {other}")),
            }
            return;
        }
    };
    let now = stats::now_us();
    if change.seq < ctx.warmup_msgs {
        return;
    }
    let owner = change.owner.strip_prefix('u').and_then(|n| n.parse::<u64>().ok());
    if owner != Some(conn.user) {
        conn.extra.fetch_add(1, Ordering::Relaxed);
        return;
    }
    if !conn.seen.lock().expect("seen").insert(change.seq) {
        conn.duplicates.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let ack = ctx.acks.get(change.seq);
    stats::with_local(|r| {
        r.deliveries += 1;
        r.bytes += text.len() as u64;
        r.send_to_recv.saturating_record(now.saturating_sub(change.sent_us).max(1));
        match ack {
            Some(a) => r.ack_to_recv.saturating_record(now.saturating_sub(a).max(1)),
            None => {
                r.before_ack += 1;
                r.ack_to_recv.saturating_record(1);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(owner: &str, s: u64) -> String {
        format!(
            r#"[null,null,"realtime:{TOPIC}","postgres_changes",{{"data":{{"columns":[],"commit_timestamp":null,"errors":null,"old_record":null,"record":{{"id":{s},"owner":"{owner}","pad":"x","s":{s},"t":1}},"schema":"public","table":"benchrows","type":"INSERT"}},"ids":[1]}}]"#
        )
    }

    #[test]
    fn own_rows_count_once_and_other_users_rows_are_extra() {
        let conn = Conn {
            user: 3,
            seen: Mutex::new(HashSet::new()),
            duplicates: AtomicU64::new(0),
            extra: AtomicU64::new(0),
        };
        let ctx = Ctx {
            warmup_msgs: 2,
            acks: Arc::new(AckTimes::new(10)),
            events: Events::default(),
            stopping: AtomicBool::new(false),
        };
        for f in
            [frame("u3", 1), frame("u3", 3), frame("u3", 3), frame("u4", 4), frame("x", 5), frame("u3", 7)]
        {
            on_text(&f, &conn, &ctx);
        }
        // Seq 1 is warm-up; 3 and 7 are own rows, 3 came twice; u4's row and "x" are not u3's.
        let mut seen: Vec<u64> = conn.seen.lock().unwrap().iter().copied().collect();
        seen.sort_unstable();
        assert_eq!(seen, [3, 7]);
        assert_eq!(conn.duplicates.load(Ordering::Relaxed), 1);
        assert_eq!(conn.extra.load(Ordering::Relaxed), 2);
        on_text(
            r#"[null,null,"realtime:bench-rows","system",{"status":"error","message":"denied"}]"#,
            &conn,
            &ctx,
        );
        on_text(r#"[null,null,"realtime:bench-rows","broadcast",{}]"#, &conn, &ctx);
        let events = ctx.events.snapshot();
        assert_eq!(events.get("system: \"denied\""), Some(&1), "{events:?}");
        assert_eq!(events.get("frame broadcast"), Some(&1), "{events:?}");
    }
}
