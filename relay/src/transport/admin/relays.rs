//! Relays page: every relay of this database with its heartbeat age, what it last reported
//! (this relay's figures are read now), its slot and the slot's lag; replication slots no relay
//! claims; presence (channels with members, and one channel's members); the audit log.
//! Statements in [`crate::pg::admin::relays`].

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::console::Console;
use super::error::AdminError;
use super::paging::{ask, split};
use super::report::figures;
use crate::pg::admin::relays as db;

/// Most relays, orphan slots, presence channels and audit rows listed.
pub const MAX_ROWS: i64 = 200;
/// Most members of one channel listed.
pub const MAX_MEMBERS: i64 = 500;

/// `GET /admin/api/relays`.
pub async fn list(State(c): State<Arc<Console>>) -> Result<Json<Value>, AdminError> {
    let me = &c.app.config.relay_id;
    let relays: Vec<Value> = db::relays(&c.app.pool, MAX_ROWS)
        .await?
        .into_iter()
        .map(|mut r| {
            let this = r.relay_id == *me;
            if this {
                r.stats = Some(figures(&c.app));
                r.report_age_s = Some(0.0);
            }
            let mut v = json!(r);
            v["this"] = this.into();
            v
        })
        .collect();
    let orphans = db::orphan_slots(&c.app.pool, MAX_ROWS).await?;
    Ok(Json(json!({
        "relays": relays,
        "orphan_slots": orphans,
        "relay_timeout_s": c.app.config.presence.relay_timeout.as_secs_f64(),
    })))
}

#[derive(Deserialize)]
pub struct PresenceQuery {
    channel: Option<String>,
}

/// `GET /admin/api/presence` (channels with members) or `?channel=` (that channel's members).
pub async fn presence(
    State(c): State<Arc<Console>>,
    Query(q): Query<PresenceQuery>,
) -> Result<Json<Value>, AdminError> {
    match q.channel.filter(|c| !c.is_empty()) {
        None => Ok(Json(json!({"channels": db::presence_channels(&c.app.pool, MAX_ROWS).await?}))),
        Some(channel) => {
            let members = db::members(&c.app.pool, &channel, MAX_MEMBERS).await?;
            Ok(Json(json!({"channel": channel, "members": members})))
        }
    }
}

#[derive(Deserialize)]
pub struct AuditQuery {
    before: Option<i64>,
}

/// `GET /admin/api/audit?before=`: the newest admin actions first.
pub async fn audit(
    State(c): State<Arc<Console>>,
    Query(q): Query<AuditQuery>,
) -> Result<Json<Value>, AdminError> {
    let (entries, more) = split(db::audit_log(&c.app.pool, q.before, ask(MAX_ROWS)).await?, MAX_ROWS);
    let next = if more { entries.last().map(|e| e.id) } else { None };
    Ok(Json(json!({"entries": entries, "next": next})))
}
