//! Inspector page: "who may subscribe?" (a role, claims and a channel name → the relay's own
//! subscribe check, [`check_subscribe`], and why: the channel row `realtime.match_channel`
//! picked, disabled rows that would have matched, the SELECT policies on `realtime.channels`
//! that apply to the role); a live socket speaking protocol v1 as a role and claims the admin
//! picks (the relay's own v1 session through [`crate::transport::ws::upgrade`]; role
//! `realtime_admin` may subscribe to every channel); and test publishes through
//! `realtime.publish` / `realtime.broadcast`. Also `GET /admin/api/meta`, what the page needs
//! to know of the relay.

use std::sync::Arc;

use axum::extract::{Query, State, WebSocketUpgrade};
use axum::response::Response;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::console::Console;
use super::credential::Admin;
use super::error::{AdminError, Body};
use crate::app::App;
use crate::core::Identity;
use crate::pg::admin::inspect as db;
use crate::pg::admin::{begin, ROLE as ADMIN_ROLE};
use crate::pg::authz::{check_subscribe, Access};
use crate::protocol::v1::V1;
use crate::transport::listener::SocketPlace;
use crate::transport::ws::upgrade;

/// Largest claims object accepted (its JSON text).
pub const MAX_CLAIMS_BYTES: usize = 4096;
/// Most disabled rows named in an answer.
const MAX_DISABLED: i64 = 5;

/// `GET /admin/api/meta`.
pub async fn meta(
    State(c): State<Arc<Console>>,
    Extension(who): Extension<Admin>,
) -> Result<Json<Value>, AdminError> {
    let cfg = &c.app.config;
    Ok(Json(json!({
        "relay_id": cfg.relay_id,
        "version": env!("CARGO_PKG_VERSION"),
        "roles": inspector_roles(&c.app),
        "admin": who.name,
        "session_expires": who.expires,
        "webhooks": c.app.webhooks.is_some(),
        "max_payload_bytes": db::max_payload_bytes(&c.app.pool).await?,
    })))
}

/// Roles the inspector may act as: the relay's allowlist, then `realtime_admin`.
fn inspector_roles(app: &App) -> Vec<String> {
    let mut roles = app.config.roles.clone();
    roles.push(ADMIN_ROLE.into());
    roles
}

/// Claims as the page sends them: a JSON object, or `key=value` lines (`sub=alice`).
pub fn parse_claims(text: &str) -> Result<Map<String, Value>, AdminError> {
    let bad = |m: &str| AdminError::invalid("claims", m);
    if text.len() > MAX_CLAIMS_BYTES {
        return Err(bad("claims may be at most 4096 bytes"));
    }
    let text = text.trim();
    if text.starts_with('{') {
        return match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(m)) => Ok(m),
            _ => Err(bad("claims must be a JSON object, or key=value lines")),
        };
    }
    let mut claims = Map::new();
    for line in text.lines().flat_map(|l| l.split(',')).map(str::trim).filter(|l| !l.is_empty()) {
        let (k, v) = line.split_once('=').ok_or_else(|| bad("write claims as key=value, one a line"))?;
        let v = v.trim();
        // numbers and booleans keep their JSON type (exp=..., admin=true)
        let value = serde_json::from_str::<Value>(v)
            .ok()
            .filter(|j| j.is_number() || j.is_boolean())
            .unwrap_or_else(|| Value::String(v.to_string()));
        claims.insert(k.trim().to_string(), value);
    }
    Ok(claims)
}

/// The identity a role and claims stand for, as the relay would make it from a token.
pub fn identity(app: &App, role: &str, claims: &str, expires: Option<u64>) -> Result<Identity, AdminError> {
    if !inspector_roles(app).iter().any(|r| r == role) {
        return Err(AdminError::invalid("role", format!("'{role}' is not one of --roles (or {ADMIN_ROLE})")));
    }
    let mut claims = parse_claims(claims)?;
    claims.insert("role".into(), Value::String(role.into()));
    let user_id = match claims.get("sub") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    Ok(Identity { role: role.into(), user_id, claims: Value::Object(claims).to_string(), exp: expires })
}

#[derive(Deserialize)]
pub struct CheckRequest {
    role: String,
    #[serde(default)]
    claims: String,
    channel: String,
}

/// `POST /admin/api/inspect/check`: may this role with these claims subscribe to this channel?
pub async fn check(
    State(c): State<Arc<Console>>,
    Body(req): Body<CheckRequest>,
) -> Result<Json<Value>, AdminError> {
    let who = identity(&c.app, &req.role, &req.claims, None)?;
    let matched = db::matched(&c.app.pool, &req.channel).await?;
    let access = check_subscribe(&c.app.pool, &who, &req.channel).await?;
    let disabled = db::disabled_matches(&c.app.pool, &req.channel, MAX_DISABLED).await?;
    let policies = db::policies(&c.app.pool, &req.role).await?;
    let pattern = matched.as_ref().map_or("", |m| m.pattern.as_str());
    let (outcome, explain) = match access {
        Access::Allowed => (
            "allowed",
            format!("Allowed: row '{pattern}' matches, and a SELECT policy on realtime.channels lets role {} see it with these claims.", req.role),
        ),
        Access::Denied => (
            "denied",
            format!("Denied: row '{pattern}' matches, but no SELECT policy on realtime.channels lets role {} see it with these claims.", req.role),
        ),
        Access::NotFound if disabled.is_empty() => (
            "not_found",
            format!("No enabled channel row matches '{}': add one (Channels page).", req.channel),
        ),
        Access::NotFound => (
            "not_found",
            format!("No enabled channel row matches '{}'; disabled rows that would: {}.", req.channel, disabled.join(", ")),
        ),
    };
    Ok(Json(json!({
        "outcome": outcome,
        "allowed": access == Access::Allowed,
        "explain": explain,
        "role": req.role,
        "claims": serde_json::from_str::<Value>(&who.claims).unwrap_or(Value::Null),
        "channel": req.channel,
        "matched": matched,
        "disabled_matches": disabled,
        "policies": policies,
    })))
}

#[derive(Deserialize)]
pub struct PublishRequest {
    channel: String,
    event: String,
    #[serde(default)]
    payload: Value,
    /// false: ephemeral (`realtime.broadcast`), delivered live and never stored.
    #[serde(default = "stored")]
    persist: bool,
}

fn stored() -> bool {
    true
}

/// `POST /admin/api/inspect/publish`: a test message as the system (`realtime.publish`, or
/// `realtime.broadcast` when not persisted); refused when no enabled channel matches.
pub async fn publish(
    State(c): State<Arc<Console>>,
    Extension(who): Extension<Admin>,
    Body(req): Body<PublishRequest>,
) -> Result<Json<Value>, AdminError> {
    let payload = if req.payload.is_null() { json!({}) } else { req.payload };
    let mut client = c.client().await?;
    let tx = begin(&mut client).await?;
    let id = db::publish(&tx, &req.channel, &req.event, &payload, req.persist).await?;
    let detail = json!({"event": req.event, "persist": req.persist, "id": id});
    c.finish(tx, &who, "publish", &req.channel, detail).await?;
    Ok(Json(json!({"id": id, "channel": req.channel})))
}

#[derive(Deserialize)]
pub struct SocketQuery {
    role: String,
    #[serde(default)]
    claims: String,
}

/// `GET /admin/api/inspect/socket?role=&claims=`: a protocol v1 WebSocket (the relay's own
/// session, as `/v1/socket` runs it) acting as that role and those claims until the admin's
/// session ends; it takes one of the `--max-connections` places like any client.
pub async fn socket(
    State(c): State<Arc<Console>>,
    Extension(who): Extension<Admin>,
    Query(q): Query<SocketQuery>,
    place: Option<Extension<SocketPlace>>,
    ws: WebSocketUpgrade,
) -> Result<Response, AdminError> {
    let identity = identity(&c.app, &q.role, &q.claims, Some(who.expires))?;
    tracing::info!(who = %who.name, role = %identity.role, claims = %identity.claims, "admin: inspector socket");
    Ok(upgrade(c.app.clone(), identity, place.map(|p| p.0), ws, V1::default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_are_a_json_object_or_key_value_lines() {
        let m = parse_claims("sub=alice\nteam = red, level=3\nadmin=true").unwrap();
        assert_eq!(Value::Object(m), json!({"sub": "alice", "team": "red", "level": 3, "admin": true}));
        let m = parse_claims(r#" {"sub": "bob", "groups": ["a"]} "#).unwrap();
        assert_eq!(Value::Object(m), json!({"sub": "bob", "groups": ["a"]}));
        assert!(parse_claims("").unwrap().is_empty());
        for bad in ["[1]", "{not json", "justtext"] {
            assert!(
                matches!(parse_claims(bad), Err(AdminError::Invalid { field: Some("claims"), .. })),
                "{bad}"
            );
        }
        assert!(parse_claims(&format!("sub={}", "x".repeat(MAX_CLAIMS_BYTES))).is_err());
    }
}
