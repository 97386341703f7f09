//! The fan-out run (latency and fanout scenarios): (1) subscribe — open N connections, subscribe
//! each to its channel, wait for every reply; (2) publish — `--rate` messages/s through
//! `realtime.publish()` for `--warmup` + `--duration` seconds on a fixed schedule; (3) drain —
//! wait until every expected delivery arrived or `--drain` seconds passed. Prints one JSON line
//! on stdout and a table on stderr. As one of a group of processes (`--group`, src/group.rs)
//! only the leader publishes; the others subscribe their share of the connections, start
//! measuring when the leader starts publishing and read its commit acknowledgements from the
//! group file.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, Semaphore};

use crate::group::{self, Group};
use crate::publisher::{self, ChannelOf, Outcome, Plan};
use crate::stats::{self, AckTimes, Events};
use crate::subscribers::{self, Ready, Shared, Target};
use crate::{procstat, report, Args, Pattern};

pub fn channel_of_sub(pattern: Pattern, channels: u64, i: u64) -> String {
    match pattern {
        Pattern::Shared => "bench:shared".to_string(),
        Pattern::PerUser => format!("bench:{}", i % channels),
    }
}

pub async fn run(args: Args) -> Result<(), String> {
    if args.rate <= 0.0 || args.duration <= 0.0 || args.batch == 0 || args.channels == 0 {
        return Err("--rate, --duration, --batch and --channels must be positive".into());
    }
    let probe = procstat::Probe::of(&args);
    let relay_pid = probe.first().map(str::to_string);
    let target = Arc::new(Target::of(&args)?);
    let warmup_msgs = (args.warmup * args.rate).round() as u64;
    let measured_msgs = (args.duration * args.rate).round() as u64;
    let total_msgs = warmup_msgs + measured_msgs;
    let group = match &args.group {
        Some(path) => {
            Some(Arc::new(Group::open(path, args.group_size, args.group_index, total_msgs as usize)?))
        }
        None => None,
    };
    let leader = group.as_ref().is_none_or(|g| g.is_leader());
    let group_wait = Duration::from_secs_f64(args.group_wait);
    let acks = Arc::new(match &group {
        Some(g) => AckTimes::Group(g.clone()),
        None => AckTimes::new(total_msgs as usize),
    });
    let shared = Arc::new(Shared {
        events: Events::default(),
        acks: acks.clone(),
        warmup_msgs,
        stopping: AtomicBool::new(false),
    });

    // Phase 1: subscribe.
    let t0 = Instant::now();
    let gate = Arc::new(Semaphore::new(args.connect_concurrency.max(1)));
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
    for i in args.conn_offset..args.conn_offset + args.connections {
        let channel = channel_of_sub(args.pattern, args.channels, i as u64);
        let tx = ready_tx.clone();
        let (target, shared, gate) = (target.clone(), shared.clone(), gate.clone());
        tokio::spawn(subscribers::run_one(i, channel, target, shared, gate, tx));
    }
    drop(ready_tx);
    let setup_events = Events::default();
    let mut subs_per_channel: Vec<u64> = match args.pattern {
        Pattern::Shared => vec![0],
        Pattern::PerUser => vec![0; args.channels as usize],
    };
    let (mut ok, mut failed, mut last_note) = (0usize, 0usize, Instant::now());
    while ok + failed < args.connections {
        let Some((i, r)) = ready_rx.recv().await else { break };
        match r {
            Ready::Ok => {
                ok += 1;
                let idx = match args.pattern {
                    Pattern::Shared => 0,
                    Pattern::PerUser => (i as u64 % args.channels) as usize,
                };
                subs_per_channel[idx] += 1;
            }
            Ready::Failed(why) => {
                failed += 1;
                setup_events.add(why);
            }
        }
        if last_note.elapsed() > Duration::from_secs(5) {
            eprintln!(
                "  subscribed {ok}/{} ({failed} failed) after {:.1} s",
                args.connections,
                t0.elapsed().as_secs_f64()
            );
            last_note = Instant::now();
        }
    }
    let setup_secs = t0.elapsed().as_secs_f64();
    eprintln!("  subscribed {ok}/{} ({failed} failed) in {setup_secs:.1} s", args.connections);
    if ok == 0 {
        if let Some(g) = &group {
            g.abort();
        }
        return Err(format!("no connection subscribed: {:?}", setup_events.snapshot()));
    }
    if let Some(g) = &group {
        g.mark_ready();
    }

    // Phase 2: publish on schedule (the leader), or wait for the leader's start.
    let channels = args.channels;
    let channel_of: ChannelOf = match args.pattern {
        Pattern::Shared => Arc::new(|_| "bench:shared".to_string()),
        Pattern::PerUser => Arc::new(move |s| format!("bench:{}", s % channels)),
    };
    let plan = Arc::new(Plan {
        call: publisher::Call::Publish,
        database_url: args.database_url.clone(),
        connections: args.publishers.max(1),
        rate: args.rate,
        batch: args.batch,
        total_msgs,
        pad: args.pad,
        channel_of,
        max_in_flight: args.max_in_flight.max(1),
    });
    let (start, clients) = if leader {
        let clients = match publisher::connect(&plan).await {
            Ok(c) => c,
            Err(e) => {
                if let Some(g) = &group {
                    g.abort();
                }
                return Err(format!("publisher connect: {e}"));
            }
        };
        if let Some(g) = &group {
            g.wait_all_ready(group_wait).await?;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let start_us = stats::now_us() + 50_000;
        if let Some(g) = &group {
            g.announce_start(start_us);
        }
        (group::instant_at(start_us), Some(clients))
    } else {
        let g = group.as_ref().expect("followers are in a group");
        (group::instant_at(g.wait_start(group_wait).await?), None)
    };
    let measure_start = start + Duration::from_secs_f64(args.warmup);

    // CPU and peak RSS over the measured window only (warm-up excluded).
    let (pid, p) = (relay_pid.clone(), probe.clone());
    let before = tokio::spawn(async move {
        tokio::time::sleep_until(measure_start.into()).await;
        let rss_reset = pid.as_deref().is_some_and(procstat::reset_peak_rss);
        (procstat::Cpu::read(&p), rss_reset, Instant::now())
    });
    if let Some(path) = args.top_file.clone() {
        let at = measure_start + Duration::from_secs_f64(args.duration / 2.0);
        tokio::spawn(async move {
            tokio::time::sleep_until(at.into()).await;
            let top = tokio::process::Command::new("top").args(["-b", "-n1", "-w", "160"]).output().await;
            if let Ok(out) = top {
                let text = String::from_utf8_lossy(&out.stdout);
                let head: Vec<&str> = text.lines().take(20).collect();
                let _ = std::fs::write(path, head.join("\n") + "\n");
            }
        });
    }
    let outcome = match clients {
        Some(clients) => {
            let o = publisher::run(plan.clone(), clients, acks.clone(), start).await;
            if let Some(g) = &group {
                g.announce_done();
            }
            o
        }
        None => {
            group.as_ref().expect("followers are in a group").wait_done(group_wait).await?;
            Outcome::none()
        }
    };
    let (cpu_before, rss_reset, window_start) = before.await.map_err(|e| e.to_string())?;

    // Phase 3: drain.
    let expected: u64 = (warmup_msgs..total_msgs)
        .filter(|&s| acks.get(s).is_some())
        .map(|s| match args.pattern {
            Pattern::Shared => subs_per_channel[0],
            Pattern::PerUser => subs_per_channel[(s % args.channels) as usize],
        })
        .sum();
    let deadline = Instant::now() + Duration::from_secs_f64(args.drain);
    while stats::deliveries() < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let window_secs = window_start.elapsed().as_secs_f64();
    let cpu = cpu_before.delta(&procstat::Cpu::read(&probe));
    shared.stopping.store(true, Ordering::Relaxed);
    let rec = stats::merged();
    let relay_rss =
        relay_pid.as_deref().map(|p| (procstat::status_kb(p, "VmHWM"), procstat::status_kb(p, "VmRSS")));

    let r = report::Report {
        label: &args.label,
        target: args.target.name(),
        pattern: match args.pattern {
            Pattern::Shared => "shared",
            Pattern::PerUser => "per-user",
        },
        connections: args.connections,
        subscribed: ok,
        channels: subs_per_channel.iter().filter(|&&n| n > 0).count(),
        channel_space: args.channels,
        rate: args.rate,
        batch: args.batch,
        duration: args.duration,
        warmup: args.warmup,
        pad: args.pad,
        publishers: plan.connections,
        setup_secs,
        setup_errors: setup_events.snapshot(),
        measured_msgs,
        outcome: &outcome,
        expected,
        rec: &rec,
        events: shared.events.snapshot(),
        window_secs,
        cpu,
        probe: &probe,
        group: group.as_ref().map(|g| (g.index, g.size)),
        relay_rss,
        rss_reset,
    };
    println!("{}", r.json());
    eprintln!("{}", r.table());
    Ok(())
}
