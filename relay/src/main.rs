//! `realtime-relay`: parse flags, set up logging, run the server until SIGINT/SIGTERM.
//! Subcommands: `token` (mint a development JWT), `check` (self-check of the database, login and
//! settings), `healthcheck` (GET /healthz of a running relay, for containers).

use clap::Parser;
use realtime_relay::config::{Cli, Command, Config, ServeArgs};
use tokio_util::sync::CancellationToken;

/// jemalloc, not glibc's malloc. Under reconnect churn (connections replaced all the time, their
/// buffers and tasks freed on one worker thread and made on another) glibc's arenas fragment:
/// in `bench/soak/run.sh --smoke` with one relay and 5% of 3,000 connections reconnecting per
/// second, the relay's RSS grew 15% after warm-up with glibc and 8.5% with jemalloc, at the
/// same CPU per delivery (docs/operations.md, "Memory"). jemalloc also hands freed pages back
/// to the system over time (dirty-page decay), which the mallopt thresholds this replaces did
/// for glibc after spikes of large blocks.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Token(t)) => {
            println!(
                "{}",
                realtime_relay::core::auth::mint(&t.jwt_secret, &t.role, t.sub.as_deref(), t.ttl_secs)
            );
            return Ok(());
        }
        Some(Command::Check(args)) => std::process::exit(check(*args)?),
        Some(Command::Healthcheck(h)) => {
            let timeout = std::time::Duration::from_secs(h.timeout_secs.max(1));
            match realtime_relay::ops::healthcheck::check(h.bind, timeout) {
                Ok(()) => return Ok(()),
                Err(e) => {
                    eprintln!("realtime-relay healthcheck: {e}");
                    std::process::exit(1);
                }
            }
        }
        None => {}
    }
    let config = match Config::try_from(cli.serve) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("realtime-relay: {e}");
            std::process::exit(2);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    if config.log_json {
        tracing_subscriber::fmt().json().with_env_filter(filter).init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        realtime_relay::shutdown::on_signals(shutdown.clone());
        if let Err(e) = realtime_relay::server::run(config, shutdown).await {
            eprintln!("realtime-relay: {e}");
            std::process::exit(1);
        }
        Ok(())
    })
}

/// `realtime-relay check`: prints one line per item and returns the exit code (0: nothing
/// failed, 1: something failed, 2: the settings themselves are invalid).
fn check(args: ServeArgs) -> anyhow::Result<i32> {
    use realtime_relay::ops::check;
    let config = match Config::try_from(args) {
        Ok(c) => c,
        Err(e) => {
            println!(
                "FAIL configuration: {e} — fix: correct that setting (realtime-relay --help lists them)"
            );
            return Ok(2);
        }
    };
    let items =
        tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(check::run(&config));
    for item in &items {
        println!("{item}");
    }
    println!("{}", check::summary(&items));
    Ok(if check::passed(&items) { 0 } else { 1 })
}
