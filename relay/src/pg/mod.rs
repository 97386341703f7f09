//! Everything that talks to Postgres: the connection string and TLS ([`db`], [`tls`],
//! [`tls_postgres`], [`tls_bridge`]), the connection pool, permission checks run under the
//! client's role and claims (channels: [`authz`]; rows of watched tables: [`visibility`]),
//! history reads, publishes, presence and webhook queue writes, and the replication stream
//! that follows the message log; the admin console's statements ([`admin`]). Depends on
//! [`crate::core`] only.

use std::time::Duration;

pub mod admin;
pub mod audience;
pub mod authz;
pub mod authz_cache;
pub mod db;
pub mod history;
pub mod pool;
pub mod positions;
pub mod presence;
pub mod publish;
pub mod replication;
pub mod slots;
pub mod tls;
pub mod tls_bridge;
pub mod tls_postgres;
pub mod visibility;
pub mod webhooks;

/// Errors of the Postgres layer.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("no database connection available: {}", error_chain(.0))]
    Pool(#[from] deadpool_postgres::PoolError),
    /// Displayed with the server's message and SQLSTATE, for the relay's log only.
    #[error("database error: {}", describe_pg_error(.0))]
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
    /// What a client may be told. Never the server's error text, which can carry table and
    /// column names, row data from a constraint or trigger, or the message of an owner's policy
    /// function: a fixed sentence by SQLSTATE class, with the code, pointing at the relay's
    /// log (every caller logs the full error).
    pub fn client_message(&self) -> String {
        match self {
            PgError::Db(e) => match e.code() {
                Some(code) => {
                    let code = code.code();
                    let what = match code {
                        "42501" => "permission denied by the database",
                        "57014" => "the database cancelled the request",
                        "40001" | "40P01" => "the database could not serialise the request; try again",
                        _ if code.starts_with("08") || code.starts_with("57P") => {
                            "the database is unavailable; try again"
                        }
                        _ if code.starts_with("53") => "the database is out of resources; try again later",
                        _ => "the database refused the request",
                    };
                    format!("{what} (SQLSTATE {code}); details are in the relay's log")
                }
                None => "the database connection failed; try again".to_string(),
            },
            PgError::Pool(_) => "no database connection available; try again".to_string(),
            PgError::Write(_) => "the database write failed; details are in the relay's log".to_string(),
            PgError::BadRole(_) | PgError::Closed => self.to_string(),
        }
    }
}

/// tokio-postgres prints server errors as just "db error", and other errors without their
/// cause ("error performing TLS handshake"); include the server's message or the causes.
pub fn describe_pg_error(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => error_chain(e),
    }
}

/// An error with its causes, `outer: cause: cause` (each only when it adds text).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

/// A random delay in `[d/2, d]`.
pub fn jitter(d: Duration) -> Duration {
    use rand::Rng;
    d.mul_f64(rand::thread_rng().gen_range(0.5..=1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_half_to_full_delay() {
        for _ in 0..100 {
            let j = jitter(Duration::from_millis(100));
            assert!(j >= Duration::from_millis(50) && j <= Duration::from_millis(100));
        }
    }
}
