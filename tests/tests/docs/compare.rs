//! Does what the reader got match what the page shows? `…` in the page stands for whatever
//! differs from run to run (ids, cursors, times): in text it matches any run of characters on
//! one line; a JSON string that is exactly `"…"` matches any value, one that contains `…` any
//! string of that shape. Everything else must be equal: JSON objects have exactly the keys shown.

use serde_json::Value;

/// `actual` matches the text `expected`, where `…` matches any characters (within one line).
pub fn text_matches(expected: &str, actual: &str) -> bool {
    let parts: Vec<&str> = expected.split('…').collect();
    if parts.len() == 1 {
        return expected == actual;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !actual.starts_with(first) || actual.len() < first.len() + last.len() || !actual.ends_with(last) {
        return false;
    }
    let mut rest = &actual[first.len()..actual.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

/// `actual` matches the JSON pattern `expected` (see the module docs).
pub fn json_matches(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::String(e), _) if e == "…" => true,
        (Value::String(e), Value::String(a)) => text_matches(e, a),
        (Value::Object(e), Value::Object(a)) => {
            e.len() == a.len() && e.iter().all(|(k, v)| a.get(k).is_some_and(|av| json_matches(v, av)))
        }
        (Value::Array(e), Value::Array(a)) => {
            e.len() == a.len() && e.iter().zip(a).all(|(e, a)| json_matches(e, a))
        }
        (e, a) => e == a,
    }
}

/// One line of output against one line of the page: as JSON when the page's line is JSON.
pub fn line_matches(expected: &str, actual: &str) -> bool {
    let (expected, actual) = (expected.trim_end(), actual.trim_end());
    match (serde_json::from_str::<Value>(expected), serde_json::from_str::<Value>(actual)) {
        (Ok(e), Ok(a)) if e.is_object() || e.is_array() => json_matches(&e, &a),
        _ => text_matches(expected, actual),
    }
}

/// A command's whole output against a block: one JSON document when the block is one (even
/// spread over several lines), else line by line.
pub fn output_matches(expected: &str, actual: &str) -> bool {
    if let (Ok(e), Ok(a)) = (serde_json::from_str::<Value>(expected), serde_json::from_str::<Value>(actual)) {
        return json_matches(&e, &a);
    }
    let want: Vec<&str> = expected.trim_end().lines().collect();
    let got: Vec<&str> = actual.trim_end().lines().collect();
    want.len() == got.len() && want.iter().zip(&got).all(|(e, a)| line_matches(e, a))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn ellipsis_matches_what_varies_and_nothing_else() {
        assert!(text_matches("id …, at …", "id 7, at noon"));
        assert!(text_matches("eyJ…", "eyJhbGciOi.x.y"));
        assert!(!text_matches("eyJ…", "xeyJ"));
        assert!(!text_matches("a…b…c", "a-c-b"));
        assert!(text_matches("…", ""));
        assert!(json_matches(&json!({"id": "…", "n": 1}), &json!({"id": 42, "n": 1})));
        assert!(!json_matches(&json!({"id": "…"}), &json!({"id": 1, "extra": true})), "no extra keys");
        assert!(!json_matches(&json!({"n": 1}), &json!({"n": 2})));
        assert!(line_matches(r#"{"a":"x…"}"#, r#"{"a": "xyz"}"#));
        assert!(output_matches("{\"m\":[\n 1,\n 2]}", "{\"m\":[1,2]}"));
        assert!(output_matches("a\nb…", "a\nbc\n"));
        assert!(!output_matches("a\nb", "a\nb\nc"));
    }
}
