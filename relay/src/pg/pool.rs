//! The pool of ordinary (non-replication) connections used for permission checks, history and
//! client publishes.

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;

/// Builds the pool; connections are opened lazily, so this never blocks on the database.
pub fn build(database_url: &str, size: usize) -> Result<Pool, String> {
    let mut cfg: tokio_postgres::Config = database_url.parse().map_err(|e| format!("{e}"))?;
    cfg.application_name("realtime-relay");
    let mgr = Manager::from_config(cfg, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
    Pool::builder(mgr)
        .max_size(size)
        .wait_timeout(Some(std::time::Duration::from_secs(5)))
        .create_timeout(Some(std::time::Duration::from_secs(5)))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .map_err(|e| e.to_string())
}
