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
                access_token: Some("t".into())
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
}
