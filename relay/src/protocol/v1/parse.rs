//! Parsing and validating client frames of protocol v1 (sans-IO). Names are checked with the
//! rules the extension applies too (`realtime_core::names`).

use serde_json::Value;

use crate::core::{names, ErrorCode};

/// A parsed client frame: its `ref` (echoed in the reply) and the request.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientFrame {
    pub reference: Option<Value>,
    pub request: Request,
}

/// The requests of protocol v1.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    Subscribe { channel: String, resume_cursor: Option<String>, hint: bool },
    Unsubscribe { channel: String },
    Publish { channel: String, event: String, payload: Value, persist: bool },
    Track { channel: String, state: Value },
    Untrack { channel: String },
    History { channel: String, limit: Option<u64>, before: Option<String> },
    Auth { token: String },
    Ping,
}

/// A frame that could not be accepted; `reference` is echoed when the frame had one.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ProtocolError {
    pub reference: Option<Value>,
    pub code: ErrorCode,
    pub message: String,
}

fn invalid(reference: &Option<Value>, message: impl Into<String>) -> ProtocolError {
    ProtocolError { reference: reference.clone(), code: ErrorCode::InvalidRequest, message: message.into() }
}

/// Parses one text frame.
pub fn parse_client_frame(text: &str) -> Result<ClientFrame, ProtocolError> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| invalid(&None, format!("frame is not valid JSON: {e}")))?;
    let Value::Object(obj) = value else {
        return Err(invalid(&None, "frame must be a JSON object"));
    };
    let reference = match obj.get("ref") {
        None | Some(Value::Null) => None,
        Some(r @ (Value::Number(_) | Value::String(_))) => Some(r.clone()),
        Some(_) => return Err(invalid(&None, "'ref' must be a number or a string")),
    };
    let r = &reference;
    let str_field = |name: &str| -> Result<String, ProtocolError> {
        match obj.get(name) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(invalid(r, format!("'{name}' must be a string"))),
            None => Err(invalid(r, format!("'{name}' is required"))),
        }
    };
    let channel = || -> Result<String, ProtocolError> {
        let c = str_field("channel")?;
        names::validate_channel(Some(&c)).map_err(|e| invalid(r, e.to_string()))?;
        Ok(c)
    };
    let kind = match obj.get("type") {
        Some(Value::String(t)) => t.as_str(),
        Some(_) => return Err(invalid(r, "'type' must be a string")),
        None => return Err(invalid(r, "'type' is required")),
    };
    let request = match kind {
        "subscribe" => {
            let resume_cursor = match obj.get("resume") {
                None | Some(Value::Null) => None,
                Some(Value::Object(o)) => match o.get("cursor") {
                    Some(Value::String(c)) => Some(c.clone()),
                    None | Some(Value::Null) => None,
                    Some(_) => return Err(invalid(r, "'resume.cursor' must be a string")),
                },
                Some(_) => return Err(invalid(r, "'resume' must be an object")),
            };
            let hint = match obj.get("hint") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(b)) => *b,
                Some(_) => return Err(invalid(r, "'hint' must be a boolean")),
            };
            Request::Subscribe { channel: channel()?, resume_cursor, hint }
        }
        "unsubscribe" => Request::Unsubscribe { channel: channel()? },
        "publish" => {
            let event = str_field("event")?;
            names::validate_event(Some(&event)).map_err(|e| invalid(r, e.to_string()))?;
            let persist = match obj.get("persist") {
                None | Some(Value::Null) => true,
                Some(Value::Bool(b)) => *b,
                Some(_) => return Err(invalid(r, "'persist' must be a boolean")),
            };
            let payload = obj.get("payload").cloned().unwrap_or_else(|| Value::Object(Default::default()));
            Request::Publish { channel: channel()?, event, payload, persist }
        }
        "track" => {
            let state = obj.get("state").cloned().unwrap_or_else(|| Value::Object(Default::default()));
            if !state.is_object() {
                return Err(invalid(r, "'state' must be an object"));
            }
            Request::Track { channel: channel()?, state }
        }
        "untrack" => Request::Untrack { channel: channel()? },
        "history" => {
            let limit = match obj.get("limit") {
                None | Some(Value::Null) => None,
                Some(v) => Some(v.as_u64().ok_or_else(|| invalid(r, "'limit' must be a positive integer"))?),
            };
            let before = match obj.get("before") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(_) => return Err(invalid(r, "'before' must be a string")),
            };
            Request::History { channel: channel()?, limit, before }
        }
        "auth" => Request::Auth { token: str_field("token")? },
        "ping" => Request::Ping,
        other => return Err(invalid(r, format!("unknown frame type '{other}'"))),
    };
    Ok(ClientFrame { reference, request })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn subscribe_with_resume_cursor_parses() {
        let f = parse_client_frame(
            r#"{"type":"subscribe","ref":1,"channel":"order:42","resume":{"cursor":"abc"}}"#,
        )
        .unwrap();
        assert_eq!(f.reference, Some(json!(1)));
        assert_eq!(
            f.request,
            Request::Subscribe { channel: "order:42".into(), resume_cursor: Some("abc".into()), hint: false }
        );
    }

    #[test]
    fn string_ref_is_kept() {
        let f = parse_client_frame(r#"{"type":"ping","ref":"a-1"}"#).unwrap();
        assert_eq!(f.reference, Some(json!("a-1")));
        assert_eq!(f.request, Request::Ping);
    }

    #[test]
    fn bad_json_is_invalid_request_without_ref() {
        let e = parse_client_frame("{not json").unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest);
        assert_eq!(e.reference, None);
        assert!(e.message.contains("not valid JSON"));
    }

    #[test]
    fn unknown_type_echoes_ref() {
        let e = parse_client_frame(r#"{"type":"dance","ref":7}"#).unwrap_err();
        assert_eq!(e.reference, Some(json!(7)));
        assert!(e.message.contains("unknown frame type 'dance'"));
    }

    #[test]
    fn missing_channel_is_named() {
        let e = parse_client_frame(r#"{"type":"subscribe","ref":2}"#).unwrap_err();
        assert_eq!(e.message, "'channel' is required");
    }

    #[test]
    fn over_long_channel_is_refused() {
        let frame = json!({"type":"subscribe","channel":"x".repeat(256)}).to_string();
        let e = parse_client_frame(&frame).unwrap_err();
        assert!(e.message.contains("256 bytes"), "{}", e.message);
        let ok = json!({"type":"subscribe","channel":"x".repeat(255)}).to_string();
        assert!(parse_client_frame(&ok).is_ok());
    }

    #[test]
    fn non_object_frames_are_refused() {
        assert!(parse_client_frame("[1,2]").unwrap_err().message.contains("object"));
        assert!(parse_client_frame(r#"{"type":5}"#).unwrap_err().message.contains("'type'"));
    }

    #[test]
    fn publish_defaults_persist_true_and_payload_empty() {
        let f = parse_client_frame(r#"{"type":"publish","channel":"c","event":"e"}"#).unwrap();
        assert_eq!(
            f.request,
            Request::Publish { channel: "c".into(), event: "e".into(), payload: json!({}), persist: true }
        );
    }

    #[test]
    fn names_follow_the_shared_rules() {
        let e = parse_client_frame(r#"{"type":"subscribe","ref":1,"channel":"a\nb"}"#).unwrap_err();
        assert_eq!(e.message, "channel 'a\\nb' contains a control character at byte 1; channels cannot contain control characters");
        let e = parse_client_frame(r#"{"type":"subscribe","channel":""}"#).unwrap_err();
        assert_eq!(e.message, "channel must not be empty");
        let e = parse_client_frame(r#"{"type":"publish","channel":"c","event":""}"#).unwrap_err();
        assert_eq!(e.message, "event must not be empty");
    }
}
