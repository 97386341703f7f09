//! [`Console`]: the state every console route shares (the relay's [`App`], the credential,
//! the Overview's samples), and how an action ends: committed together with its entry in
//! `realtime.admin_log`, and written to the relay's log.

use std::sync::Arc;

use deadpool_postgres::{Object, Transaction};
use serde_json::Value;

use super::credential::{Admin, Credential};
use super::error::AdminError;
use super::sampler::Ring;
use crate::app::App;
use crate::pg::admin::{commit_logged, Audit};

/// State of the console's routes.
pub struct Console {
    pub app: Arc<App>,
    pub credential: Credential,
    pub samples: Arc<Ring>,
}

impl Console {
    /// A pooled connection, for a transaction of [`crate::pg::admin::begin`].
    pub async fn client(&self) -> Result<Object, AdminError> {
        Ok(self.app.pool.get().await?)
    }

    /// Logs the action `what` on `target` by `who` in `tx` (`realtime.admin_log`), commits, and
    /// writes it to the relay's log: the action is logged exactly when it took effect.
    pub async fn finish(
        &self,
        tx: Transaction<'_>,
        who: &Admin,
        what: &str,
        target: &str,
        detail: Value,
    ) -> Result<(), AdminError> {
        let entry =
            Audit { who: &who.name, relay_id: &self.app.config.relay_id, action: what, target, detail };
        commit_logged(tx, &entry).await?;
        tracing::info!(who = %who.name, action = what, target, detail = %entry.detail, "admin action");
        Ok(())
    }
}
