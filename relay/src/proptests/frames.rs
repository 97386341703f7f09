//! The v1 client frame parser (`protocol::parse_client_frame`).

use proptest::prelude::*;
use serde_json::{json, Value};

use super::{mutated, MAX_ERROR};
use crate::protocol::v1::parse::{parse_client_frame, Request};

const TYPES: &[&str] =
    &["subscribe", "unsubscribe", "publish", "track", "untrack", "history", "auth", "ping", "nope"];
const KEYS: &[&str] =
    &["type", "ref", "channel", "event", "payload", "persist", "state", "limit", "before", "token", "resume"];

/// Any JSON value, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>().prop_filter("JSON numbers are finite", |f| f.is_finite()).prop_map(|f| json!(f)),
        ".{0,40}".prop_map(Value::String),
        proptest::sample::select(TYPES).prop_map(|s| json!(s)),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(
                prop_oneof![proptest::sample::select(KEYS).prop_map(String::from), ".{0,8}"],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A frame-shaped object: a known `type` and any mix of known keys with any values.
fn frame_like() -> impl Strategy<Value = Value> {
    (
        proptest::sample::select(TYPES),
        proptest::collection::btree_map(proptest::sample::select(KEYS), json_value(), 0..7),
    )
        .prop_map(|(t, rest)| {
            let mut m: serde_json::Map<String, Value> =
                rest.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
            m.insert("type".into(), json!(t));
            Value::Object(m)
        })
}

fn valid_frames() -> impl Strategy<Value = String> {
    let channel = "[a-z]{1,12}(:[a-z0-9]{1,8})?";
    prop_oneof![
        channel.prop_map(|c| json!({"type": "subscribe", "ref": 1, "channel": c}).to_string()),
        (channel, "[a-z_]{1,10}").prop_map(|(c, e)| {
            json!({"type": "publish", "ref": 2, "channel": c, "event": e, "payload": {"n": 1}}).to_string()
        }),
        (channel, 1u64..2000)
            .prop_map(|(c, l)| json!({"type": "history", "channel": c, "limit": l}).to_string()),
        Just(json!({"type": "ping", "ref": "x"}).to_string()),
        Just(json!({"type": "auth", "token": "a.b.c"}).to_string()),
    ]
}

/// What every outcome must satisfy: accepted frames carry valid names, refusals a short reason.
fn check(text: &str) {
    match parse_client_frame(text) {
        Ok(frame) => match frame.request {
            Request::Subscribe { channel, .. }
            | Request::Unsubscribe { channel }
            | Request::Publish { channel, .. }
            | Request::Track { channel, .. }
            | Request::Untrack { channel }
            | Request::History { channel, .. } => {
                assert!(
                    crate::core::names::validate_channel(Some(&channel)).is_ok(),
                    "{channel:?} from {text}"
                )
            }
            Request::Auth { .. } | Request::Ping => {}
        },
        Err(e) => {
            assert!(!e.message.is_empty(), "empty error for {text}");
            assert!(e.message.len() <= MAX_ERROR, "{} byte error for {text}", e.message.len());
        }
    }
}

proptest! {
    #[test]
    fn proptest_any_text_is_parsed_or_refused_clearly(text in ".{0,300}") {
        check(&text);
    }

    #[test]
    fn proptest_any_json_value_is_parsed_or_refused_clearly(value in json_value()) {
        check(&value.to_string());
    }

    #[test]
    fn proptest_frame_shaped_objects_are_parsed_or_refused_clearly(value in frame_like()) {
        check(&value.to_string());
    }

    #[test]
    fn proptest_mutated_valid_frames_are_parsed_or_refused_clearly(text in valid_frames().prop_flat_map(mutated)) {
        check(&text);
    }

    #[test]
    fn proptest_long_names_are_refused_with_their_length(len in 256usize..5000) {
        let text = json!({"type": "subscribe", "channel": "c".repeat(len)}).to_string();
        let e = parse_client_frame(&text).unwrap_err();
        prop_assert!(e.message.contains("limit is 255"), "{}", e.message);
    }

    #[test]
    fn proptest_valid_subscribes_keep_their_channel(channel in "[a-z]{1,12}(:[a-z0-9]{1,8})?") {
        let frame = parse_client_frame(&json!({"type": "subscribe", "ref": 7, "channel": channel}).to_string()).unwrap();
        prop_assert_eq!(frame.reference, Some(json!(7)));
        prop_assert_eq!(frame.request, Request::Subscribe { channel, resume_cursor: None, hint: false });
    }
}
