//! Channels page: the `realtime.channels` rows with their live subscriber counts, and create /
//! edit / disable / delete. Validation is the extension's own (the `channels` triggers call
//! `realtime.validate_pattern` and check webhook settings): `POST .../validate` runs the same
//! INSERT or UPDATE in a transaction that is rolled back, so the page shows the validators'
//! words inline as the person types. Secrets are never listed; revealing one is logged.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};

use super::console::Console;
use super::credential::Admin;
use super::error::{AdminError, Body};
use super::paging::{ask, split};
use super::report::local_channels;
use crate::pg::admin::begin;
use crate::pg::admin::channels::{self as db, ChannelRow, ChannelWrite, LocalCounts, Secret};

/// Most channel rows one list returns.
pub const MAX_ROWS: i64 = 1000;
/// Most webhook URLs one channel row may have (through the console).
pub const MAX_URLS: usize = 32;
/// Longest description accepted.
pub const MAX_DESCRIPTION_BYTES: usize = 2000;

#[derive(Deserialize)]
pub struct ListQuery {
    /// Only rows whose pattern contains this text.
    q: Option<String>,
}

/// `GET /admin/api/channels?q=`: the rows with their subscribers (this relay's, counted now,
/// plus those other relays reported within the last 30 s).
pub async fn list(
    State(c): State<Arc<Console>>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, AdminError> {
    let (names, counts, cut) = local_channels(&c.app);
    let here = LocalCounts { relay_id: &c.app.config.relay_id, names: &names, counts: &counts };
    let filter = q.q.as_deref().filter(|s| !s.is_empty());
    let list = db::list(&c.app.pool, here, filter, ask(MAX_ROWS)).await?;
    let (channels, truncated) = split(list.channels, MAX_ROWS);
    Ok(Json(json!({
        "channels": channels,
        "truncated": truncated,
        "other_relays_reporting": list.other_relays_reporting,
        "counts_cut": cut,
    })))
}

/// Missing → `None` (keep); `null` → `Some(None)` (clear); text → `Some(Some(text))` (set).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

fn yes() -> bool {
    true
}

/// The fields of a channel row the console writes.
#[derive(Debug, Deserialize)]
pub struct ChannelInput {
    pattern: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default = "yes")]
    enabled: bool,
    #[serde(default)]
    webhook_urls: Vec<String>,
    #[serde(default, deserialize_with = "present")]
    webhook_secret: Option<Option<String>>,
    /// Replace the secret by `realtime.generate_webhook_secret()`.
    #[serde(default)]
    generate_secret: bool,
    /// For `validate`: check as an edit of this row instead of a new one.
    #[serde(default)]
    id: Option<i64>,
}

impl ChannelInput {
    /// Checks what the database does not bound, and tidies the form's values.
    fn checked(mut self) -> Result<Self, AdminError> {
        if self.webhook_urls.len() > MAX_URLS {
            return Err(AdminError::invalid("webhook_urls", format!("at most {MAX_URLS} webhook URLs")));
        }
        self.webhook_urls.retain(|u| !u.trim().is_empty());
        for u in &mut self.webhook_urls {
            *u = u.trim().to_string();
        }
        self.description = self.description.map(|d| d.trim().to_string()).filter(|d| !d.is_empty());
        if self.description.as_ref().is_some_and(|d| d.len() > MAX_DESCRIPTION_BYTES) {
            return Err(AdminError::invalid(
                "description",
                format!("the description may be at most {MAX_DESCRIPTION_BYTES} bytes"),
            ));
        }
        Ok(self)
    }

    /// What happens to the secret.
    fn secret(&self) -> Secret<'_> {
        match (&self.webhook_secret, self.generate_secret) {
            (_, true) => Secret::Generate,
            (Some(Some(s)), _) => Secret::Set(s),
            (Some(None), _) => Secret::Clear,
            (None, _) => Secret::Keep,
        }
    }

    /// The write, as the statements take it.
    fn write(&self) -> ChannelWrite<'_> {
        ChannelWrite {
            pattern: &self.pattern,
            description: self.description.as_deref(),
            enabled: self.enabled,
            webhook_urls: &self.webhook_urls,
            secret: self.secret(),
        }
    }

    /// The audit log's detail: the fields, and what happened to the secret (never the secret).
    fn audit(&self, creating: bool) -> Value {
        let secret = match self.secret() {
            Secret::Keep | Secret::Clear if creating => "none",
            Secret::Keep => "kept",
            Secret::Clear => "cleared",
            Secret::Set(_) => "set",
            Secret::Generate => "generated",
        };
        json!({
            "pattern": self.pattern,
            "description": self.description,
            "enabled": self.enabled,
            "webhook_urls": self.webhook_urls,
            "webhook_secret": secret,
        })
    }
}

fn no_row(id: i64) -> AdminError {
    AdminError::NotFound(format!("no channel row with id {id}"))
}

/// `POST /admin/api/channels/validate`: would this create (or edit, with `id`) be accepted?
/// The same INSERT or UPDATE in a transaction that is rolled back.
pub async fn validate(
    State(c): State<Arc<Console>>,
    Body(input): Body<ChannelInput>,
) -> Result<Json<Value>, AdminError> {
    let input = input.checked()?;
    let mut client = c.client().await?;
    let tx = begin(&mut client).await?;
    let row = db::write(&tx, input.id, &input.write()).await?.ok_or_else(|| no_row(input.id.unwrap_or(0)))?;
    tx.rollback().await?;
    Ok(Json(json!({"ok": true, "pattern": row.pattern})))
}

/// `POST /admin/api/channels`: creates a row.
pub async fn create(
    State(c): State<Arc<Console>>,
    Extension(who): Extension<Admin>,
    Body(input): Body<ChannelInput>,
) -> Result<(StatusCode, Json<ChannelRow>), AdminError> {
    let input = input.checked()?;
    let mut client = c.client().await?;
    let tx = begin(&mut client).await?;
    let row = db::write(&tx, None, &input.write())
        .await?
        .ok_or_else(|| AdminError::Db("the INSERT returned no row (a trigger skipped it)".into()))?;
    let target = format!("channel {}", row.id);
    c.finish(tx, &who, "create_channel", &target, input.audit(true)).await?;
    Ok((StatusCode::CREATED, Json(row)))
}

/// `PUT /admin/api/channels/{id}`: edits a row (also how it is disabled and enabled).
pub async fn update(
    State(c): State<Arc<Console>>,
    Extension(who): Extension<Admin>,
    Path(id): Path<i64>,
    Body(input): Body<ChannelInput>,
) -> Result<Json<ChannelRow>, AdminError> {
    let input = input.checked()?;
    let mut client = c.client().await?;
    let tx = begin(&mut client).await?;
    let row = db::write(&tx, Some(id), &input.write()).await?.ok_or_else(|| no_row(id))?;
    c.finish(tx, &who, "update_channel", &format!("channel {id}"), input.audit(false)).await?;
    Ok(Json(row))
}

/// `DELETE /admin/api/channels/{id}`.
pub async fn remove(
    State(c): State<Arc<Console>>,
    Extension(who): Extension<Admin>,
    Path(id): Path<i64>,
) -> Result<StatusCode, AdminError> {
    let mut client = c.client().await?;
    let tx = begin(&mut client).await?;
    let pattern = db::delete(&tx, id).await?.ok_or_else(|| no_row(id))?;
    c.finish(tx, &who, "delete_channel", &format!("channel {id}"), json!({"pattern": pattern})).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /admin/api/channels/{id}/secret`: the webhook secret (logged: who saw which one).
pub async fn reveal_secret(
    State(c): State<Arc<Console>>,
    Extension(who): Extension<Admin>,
    Path(id): Path<i64>,
) -> Result<Json<Value>, AdminError> {
    let mut client = c.client().await?;
    let tx = begin(&mut client).await?;
    let (pattern, secret) = db::secret(&tx, id).await?.ok_or_else(|| no_row(id))?;
    let target = format!("channel {id}");
    c.finish(tx, &who, "reveal_webhook_secret", &target, json!({"pattern": pattern})).await?;
    Ok(Json(json!({"webhook_secret": secret})))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(v: Value) -> ChannelInput {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn secret_is_kept_when_missing_cleared_when_null_and_set_when_given() {
        assert_eq!(input(json!({"pattern": "a"})).secret(), Secret::Keep);
        assert_eq!(input(json!({"pattern": "a", "webhook_secret": null})).secret(), Secret::Clear);
        assert_eq!(input(json!({"pattern": "a", "webhook_secret": "s"})).secret(), Secret::Set("s"));
        assert_eq!(input(json!({"pattern": "a", "generate_secret": true})).secret(), Secret::Generate);
        assert_eq!(
            input(json!({"pattern": "a", "webhook_secret": "s"})).audit(false)["webhook_secret"],
            "set"
        );
        assert_eq!(
            input(json!({"pattern": "a", "webhook_secret": null})).audit(true)["webhook_secret"],
            "none"
        );
        assert!(input(json!({"pattern": "a"})).enabled, "enabled unless said otherwise");
    }

    #[test]
    fn blank_urls_and_descriptions_are_dropped_and_limits_named() {
        let i = input(json!({"pattern": "a", "description": "  ", "webhook_urls": [" http://x/ ", ""]}));
        let i = i.checked().unwrap();
        assert_eq!((i.description, i.webhook_urls), (None, vec!["http://x/".to_string()]));
        let many = input(json!({"pattern": "a", "webhook_urls": vec!["http://x/"; MAX_URLS + 1]}));
        assert!(matches!(many.checked(), Err(AdminError::Invalid { field: Some("webhook_urls"), .. })));
        let long = input(json!({"pattern": "a", "description": "d".repeat(MAX_DESCRIPTION_BYTES + 1)}));
        assert!(matches!(long.checked(), Err(AdminError::Invalid { field: Some("description"), .. })));
    }
}
