//! `realtime-relay`: parse flags, set up logging, run the server until SIGINT/SIGTERM.
//! Subcommands: `token` (mint a development JWT), `check` (self-check of the database, login and
//! settings), `healthcheck` (GET /healthz of a running relay, for containers).

use clap::Parser;
use realtime_relay::config::{Cli, Command, Config, ServeArgs};
use tokio_util::sync::CancellationToken;

fn main() -> anyhow::Result<()> {
    return_memory_after_spikes();
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

/// glibc's malloc raises its mmap threshold to the size of every large block freed, so after a
/// spike (large payloads, replies) big blocks come from the heap and the process keeps their
/// memory. A fixed threshold keeps blocks over 128 KiB in their own mappings, returned to the
/// system when freed, and a trim threshold returns free heap tops.
fn return_memory_after_spikes() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; it is called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1024 * 1024);
    }
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
