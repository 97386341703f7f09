//! `realtime-relay`: parse flags, set up logging, run the server until SIGINT/SIGTERM.

use clap::Parser;
use realtime_relay::config::{Cli, Command, Config};
use tokio_util::sync::CancellationToken;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::Token(t)) = cli.command {
        println!("{}", realtime_relay::auth::mint(&t.jwt_secret, &t.role, t.sub.as_deref(), t.ttl_secs));
        return Ok(());
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
