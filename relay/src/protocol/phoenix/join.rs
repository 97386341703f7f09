//! The `phx_join` payload Supabase clients send, read into what the relay honours:
//! `{config: {broadcast: {self, ack, replay}, presence: {key, enabled}, postgres_changes: [..],
//! private}, access_token}`.

use serde_json::Value;

/// A join's options.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JoinConfig {
    /// `broadcast.self`: the sender receives its own broadcasts.
    pub echo: bool,
    /// `broadcast.ack`: each broadcast gets an `ok` reply.
    pub ack: bool,
    /// `presence.enabled`: `presence_state` / `presence_diff` are sent.
    pub presence: bool,
    /// `postgres_changes` bindings, as sent.
    pub postgres_changes: Vec<Value>,
    /// `access_token`, when given.
    pub access_token: Option<String>,
    /// `broadcast.replay`: stored messages to send after the join.
    pub replay: Option<Replay>,
}

/// `broadcast.replay {since, limit}`: the stored messages created at or after `since`
/// (milliseconds since the epoch), at most `limit` ([`MAX_REPLAY`], Supabase's cap), the
/// newest ones when there are more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replay {
    pub since_ms: u64,
    pub limit: u64,
}

/// The most messages a replay sends.
pub const MAX_REPLAY: u64 = 25;

fn replay(config: &Value) -> Result<Option<Replay>, String> {
    let Some(r) = config.get("broadcast").and_then(|b| b.get("replay")).filter(|r| !r.is_null()) else {
        return Ok(None);
    };
    let since = r
        .get("since")
        .and_then(Value::as_u64)
        .ok_or("config.broadcast.replay.since must be milliseconds since the epoch")?;
    let limit = match r.get("limit") {
        None | Some(Value::Null) => MAX_REPLAY,
        Some(v) => v
            .as_u64()
            .filter(|l| (1..=MAX_REPLAY).contains(l))
            .ok_or(format!("config.broadcast.replay.limit must be 1 to {MAX_REPLAY}"))?,
    };
    Ok(Some(Replay { since_ms: since, limit }))
}

/// `ms` since the epoch as `created_at` prints times (`2026-11-23T10:50:00.123000Z`), so the
/// two compare as text.
pub fn rfc3339_of_millis(ms: u64) -> String {
    let (secs, millis) = (ms / 1000, ms % 1000);
    let (days, rest) = ((secs / 86_400) as i64, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let (h, mi, s) = (rest / 3600, rest % 3600 / 60, rest % 60);
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{millis:03}000Z")
}

fn flag(v: &Value, path: &[&str]) -> Result<bool, String> {
    let mut at = v;
    for p in path {
        match at.get(p) {
            Some(next) => at = next,
            None => return Ok(false),
        }
    }
    match at {
        Value::Bool(b) => Ok(*b),
        Value::Null => Ok(false),
        _ => Err(format!("config.{} must be a boolean", path.join("."))),
    }
}

/// Reads a `phx_join` payload; a wrongly typed field is an error naming it.
pub fn parse(payload: &Value) -> Result<JoinConfig, String> {
    let config = payload.get("config").cloned().unwrap_or(Value::Null);
    if !(config.is_object() || config.is_null()) {
        return Err("config must be an object".into());
    }
    let postgres_changes = match config.get("postgres_changes") {
        None | Some(Value::Null) => vec![],
        Some(Value::Array(a)) => a.clone(),
        Some(_) => return Err("config.postgres_changes must be an array".into()),
    };
    let access_token = match payload.get("access_token") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err("access_token must be a string".into()),
    };
    Ok(JoinConfig {
        echo: flag(&config, &["broadcast", "self"])?,
        ack: flag(&config, &["broadcast", "ack"])?,
        presence: flag(&config, &["presence", "enabled"])?,
        postgres_changes,
        access_token,
        replay: replay(&config)?,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_supabase_js_join_payload() {
        let p = json!({"config": {"broadcast": {"ack": true, "self": false}, "presence": {"key": "", "enabled": true},
            "postgres_changes": [], "private": false}, "access_token": "t", "version": "realtime-js/2.119.0"});
        let c = parse(&p).unwrap();
        assert_eq!(
            c,
            JoinConfig {
                echo: false,
                ack: true,
                presence: true,
                postgres_changes: vec![],
                access_token: Some("t".into()),
                replay: None,
            }
        );
        assert_eq!(parse(&json!({})).unwrap(), JoinConfig::default());
    }

    #[test]
    fn wrongly_typed_fields_are_named() {
        assert_eq!(parse(&json!({"config": 1})).unwrap_err(), "config must be an object");
        assert_eq!(
            parse(&json!({"config": {"broadcast": {"self": "yes"}}})).unwrap_err(),
            "config.broadcast.self must be a boolean"
        );
        assert_eq!(
            parse(&json!({"config": {"postgres_changes": {}}})).unwrap_err(),
            "config.postgres_changes must be an array"
        );
        assert_eq!(parse(&json!({"access_token": 5})).unwrap_err(), "access_token must be a string");
    }

    #[test]
    fn replay_options_and_their_time_as_created_at_text() {
        let r = |v: Value| parse(&json!({"config": {"broadcast": {"replay": v}}}));
        assert_eq!(r(json!({"since": 5})).unwrap().replay, Some(Replay { since_ms: 5, limit: MAX_REPLAY }));
        assert_eq!(
            r(json!({"since": 5, "limit": 3})).unwrap().replay,
            Some(Replay { since_ms: 5, limit: 3 })
        );
        assert!(r(json!({"limit": 3})).unwrap_err().contains("since"));
        assert!(r(json!({"since": 1, "limit": 26})).unwrap_err().contains("1 to 25"));
        assert_eq!(r(Value::Null).unwrap().replay, None);
        assert_eq!(rfc3339_of_millis(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(rfc3339_of_millis(951_782_400_123), "2000-02-29T00:00:00.123000Z");
        assert_eq!(rfc3339_of_millis(1_796_387_544_007), "2026-12-04T12:32:24.007000Z");
    }
}
