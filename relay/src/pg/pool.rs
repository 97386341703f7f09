//! The pool of ordinary (non-replication) connections used for permission checks, history and
//! client publishes. Every connection is made by [`Database::connect`], so it honours `sslmode`.

use std::sync::Arc;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};

use super::db::{Database, PoolConnect};

/// Builds the pool; connections are opened lazily, so this never blocks on the database.
pub fn build(database_url: &str, size: usize) -> Result<Pool, String> {
    let mut db = Database::parse(database_url).map_err(|e| e.to_string())?;
    db.pg.application_name("realtime-relay");
    let pg = db.pg.clone();
    let connect = PoolConnect(Arc::new(db));
    let mgr = Manager::from_connect(pg, connect, ManagerConfig { recycling_method: RecyclingMethod::Fast });
    Pool::builder(mgr)
        .max_size(size)
        .wait_timeout(Some(std::time::Duration::from_secs(5)))
        .create_timeout(Some(std::time::Duration::from_secs(5)))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .map_err(|e| e.to_string())
}
