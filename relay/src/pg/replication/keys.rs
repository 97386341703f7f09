//! The relay keys (`realtime.relay_keys`) and the check that a `realtime:` logical message was
//! sealed with one of them ([`realtime_core::seal`]): only the extension's own code
//! (`realtime.emit_message`) produces what the relay delivers. Child module of
//! [`crate::pg::replication`].
//!
//! * **Loading.** The keys are read over a normal connection ([`Database::connect`], so the
//!   `sslmode` of `--database-url` applies) at every session start (a failure ends the
//!   session, which reconnects with backoff), every [`REFRESH_EVERY`], and when a message names
//!   a key id this relay does not know and may be newer than the last load. A key deleted from
//!   the table is forgotten at the next load and stops verifying.
//! * **Newer keys without a race.** Each load first reads the server's WAL insert position
//!   (`as_of`), then the keys. `realtime.emit_message` can seal only with a key its snapshot
//!   sees, so the key committed before the message was written; a message whose LSN is below
//!   `as_of` was written before the keys were read, and its key (if it exists) was loaded. Only
//!   a message above `as_of` with an unknown key id causes another load, so a burst of forged
//!   messages costs at most one query.

use std::collections::HashMap;
use std::time::Duration;

use realtime_core::seal::{SealError, Sealed};
use tokio::time::Instant;

use crate::pg::db::{Connection, Database};

/// How often the keys are read again while a session runs.
pub const REFRESH_EVERY: Duration = Duration::from_secs(60);

const LOAD_POSITION: &str = "SELECT (pg_catalog.pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint";
const LOAD_KEYS: &str = "SELECT id, key FROM realtime.relay_keys";

/// Why a message was not delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Forged {
    #[error("{0}")]
    Seal(#[from] SealError),
    #[error("sealed with key {0}, which is not in realtime.relay_keys")]
    UnknownKey(i64),
}

/// The keys this relay accepts, by id.
#[derive(Default)]
pub struct KeyRing {
    keys: HashMap<i64, Vec<u8>>,
    /// WAL insert position read just before the keys (see the module docs).
    as_of: u64,
    loaded_at: Option<Instant>,
    conn: Option<Connection>,
}

impl KeyRing {
    /// Whether [`REFRESH_EVERY`] has passed since the last load (or there was none).
    pub fn is_stale(&self) -> bool {
        self.loaded_at.is_none_or(|t| t.elapsed() >= REFRESH_EVERY)
    }

    /// Number of keys loaded.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Reads the keys again (reconnecting when the kept connection broke).
    pub async fn load(&mut self, db: &Database) -> Result<(), tokio_postgres::Error> {
        let res = self.try_load(db).await;
        if res.is_err() {
            self.conn = None; // the next load connects afresh
        }
        res
    }

    async fn try_load(&mut self, db: &Database) -> Result<(), tokio_postgres::Error> {
        if self.conn.as_ref().is_none_or(|c| c.client.is_closed()) {
            self.conn = Some(db.connect().await?);
        }
        let client = &self.conn.as_ref().expect("connected above").client;
        let as_of: i64 = client.query_one(LOAD_POSITION, &[]).await?.get(0);
        let rows = client.query(LOAD_KEYS, &[]).await?;
        self.keys = rows.iter().map(|r| (r.get::<_, i64>(0), r.get::<_, Vec<u8>>(1))).collect();
        self.as_of = u64::try_from(as_of).unwrap_or(0);
        self.loaded_at = Some(Instant::now());
        Ok(())
    }

    /// Opens the sealed body of a logical message with `prefix` written at `lsn`: the content
    /// when the seal verifies with a known key. An unknown key id above the last load's
    /// position loads the keys again first; a failed load is returned as `Err` of the outer
    /// result (the message is then treated as unverifiable by the caller).
    pub async fn open<'a>(
        &mut self,
        db: &Database,
        prefix: &str,
        lsn: u64,
        body: &'a [u8],
    ) -> Result<Result<&'a [u8], Forged>, tokio_postgres::Error> {
        let sealed = match Sealed::parse(body) {
            Ok(s) => s,
            Err(e) => return Ok(Err(e.into())),
        };
        if !self.keys.contains_key(&sealed.key_id) && lsn >= self.as_of {
            self.load(db).await?;
        }
        Ok(match self.keys.get(&sealed.key_id) {
            Some(key) => sealed.verify(key, prefix).map_err(Forged::from),
            None => Err(Forged::UnknownKey(sealed.key_id)),
        })
    }
}
