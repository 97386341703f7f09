//! `--mode idle`: how much memory an idle subscribed connection costs the server. Opens
//! connections in steps (`--steps 1000,5000,...`), each subscribed to its channel and then left
//! idle; after each step waits `--settle` seconds and reads the server's RSS. Stops early when
//! most of a step's connections fail (usually the file descriptor limit of one side: the JSON
//! line says which error). Prints one JSON line on stdout and a table on stderr.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::{mpsc, Semaphore};

use crate::fanout::channel_of_sub;
use crate::stats::{AckTimes, Events};
use crate::subscribers::{self, Ready, Shared, Target};
use crate::{procstat, Args};

pub async fn run(args: Args) -> Result<(), String> {
    let pid = procstat::Probe::of(&args).first().map(str::to_string);
    let rss = |key: &str| pid.as_deref().and_then(|p| procstat::status_kb(p, key));
    let target = Arc::new(Target::of(&args)?);
    let shared = Arc::new(Shared {
        events: Events::default(),
        acks: Arc::new(AckTimes::new(0)),
        warmup_msgs: 0,
        stopping: AtomicBool::new(false),
    });
    let gate = Arc::new(Semaphore::new(args.connect_concurrency.max(1)));
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
    let setup_events = Events::default();
    let baseline = rss("VmRSS");
    let cpu_start = pid.as_deref().and_then(procstat::cpu_seconds);
    let (mut opened, mut ok, mut failed) = (0usize, 0usize, 0usize);
    let mut steps = Vec::new();
    let mut stopped = None;
    eprintln!(
        "== {} idle steps {:?} ({}): baseline RSS {:?} kB",
        args.label,
        args.steps,
        args.target.name(),
        baseline
    );
    for &step in &args.steps {
        if step <= opened {
            continue;
        }
        let t = Instant::now();
        for i in opened..step {
            let channel = channel_of_sub(args.pattern, args.channels, i as u64);
            let (target, shared, gate, tx) = (target.clone(), shared.clone(), gate.clone(), ready_tx.clone());
            tokio::spawn(subscribers::run_one(i, channel, target, shared, gate, tx));
        }
        let want = step - opened;
        let mut step_failed = 0;
        for _ in 0..want {
            match ready_rx.recv().await {
                Some((_, Ready::Ok)) => ok += 1,
                Some((_, Ready::Failed(why))) => {
                    failed += 1;
                    step_failed += 1;
                    setup_events.add(why);
                }
                None => break,
            }
        }
        opened = step;
        let setup_s = t.elapsed().as_secs_f64();
        tokio::time::sleep(Duration::from_secs_f64(args.settle)).await;
        let now = rss("VmRSS");
        let per_conn = match (now, baseline) {
            (Some(n), Some(b)) if ok > 0 => Some(((n as f64 - b as f64) / ok as f64 * 10.0).round() / 10.0),
            _ => None,
        };
        eprintln!(
            "  step {step}: {ok} open, {failed} failed in total, setup {setup_s:.1} s, server RSS {now:?} kB, {per_conn:?} kB per connection"
        );
        steps.push(json!({
            "connections": step,
            "open": ok,
            "failed_total": failed,
            "setup_s": (setup_s * 100.0).round() / 100.0,
            "rss_kb": now,
            "kb_per_connection": per_conn,
            "dropped_so_far": shared.events.snapshot().values().sum::<u64>(),
        }));
        if step_failed * 2 > want {
            stopped = Some(format!("{step_failed} of {want} connections of step {step} failed"));
            break;
        }
    }
    let cpu = match (cpu_start, pid.as_deref().and_then(procstat::cpu_seconds)) {
        (Some(a), Some(b)) => Some(((b - a) * 100.0).round() / 100.0),
        _ => None,
    };
    let line = json!({
        "label": args.label,
        "mode": "idle",
        "target": args.target.name(),
        "pattern": format!("{:?}", args.pattern).to_lowercase(),
        "steps_requested": args.steps,
        "baseline_rss_kb": baseline,
        "steps": steps,
        "stopped_early": stopped,
        "setup_errors": setup_events.snapshot(),
        "errors": shared.events.snapshot(),
        "server_peak_rss_kb": rss("VmHWM"),
        "server_cpu_s": cpu,
        "relay_pid": pid,
    });
    shared.stopping.store(true, Ordering::Relaxed);
    println!("{line}");
    Ok(())
}
