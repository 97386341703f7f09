//! Everything that talks to Postgres: the connection pool, permission checks run under the
//! client's role and claims, and the replication stream that follows the message log.

pub mod audience;
pub mod authz;
pub mod cursor;
pub mod history;
pub mod pgoutput;
pub mod pool;
pub mod positions;
pub mod presence;
pub mod publish;
pub mod replication;
pub mod webhooks;

/// Errors of the Postgres layer.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("no database connection available: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("database error: {0}")]
    Db(#[from] tokio_postgres::Error),
    #[error("role '{0}' is not an allowed identifier")]
    BadRole(String),
    /// A batched write failed (the batch's error, shared by every write in it).
    #[error("database write failed: {0}")]
    Write(String),
    /// The relay is shutting down.
    #[error("the relay is shutting down")]
    Closed,
}

impl PgError {
    /// The Postgres error message, when there is one, for replies to clients.
    pub fn client_message(&self) -> String {
        match self {
            PgError::Db(e) => {
                e.as_db_error().map(|d| d.message().to_string()).unwrap_or_else(|| e.to_string())
            }
            other => other.to_string(),
        }
    }
}
