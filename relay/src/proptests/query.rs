//! Query parameters of the HTTP routes: `GET /v1/channels/{channel}/history?limit=&before=`
//! through axum's own `Query` extractor and the relay's checks.

use axum::extract::Query;
use axum::http::Uri;
use proptest::prelude::*;

use super::MAX_ERROR;
use crate::pg::history::{effective_limit, parse_before, Before};
use crate::transport::http::history::HistoryParams;

/// Query strings made of the routes' keys, other keys, and awkward characters.
fn query() -> impl Strategy<Value = String> {
    let key = prop_oneof![Just("limit"), Just("before"), Just("token"), Just("x"), Just("")];
    let value = prop_oneof![
        "[0-9]{0,25}",
        "-[0-9]{1,5}",
        "[0-9a-f]{32}",
        "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        "[A-Za-z0-9%+&=;._~-]{0,40}",
    ];
    proptest::collection::vec((key, value), 0..6)
        .prop_map(|pairs| pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&"))
}

proptest! {
    #[test]
    fn proptest_history_query_is_accepted_with_sane_values_or_refused_clearly(q in query()) {
        let uri: Uri = match format!("/v1/channels/c/history?{q}").parse() {
            Ok(u) => u,
            Err(_) => return Ok(()), // not a request axum would route
        };
        let Ok(Query(params)) = Query::<HistoryParams>::try_from_uri(&uri) else {
            return Ok(()); // axum answers 400 itself
        };
        match params.values() {
            Err(message) => prop_assert!(message.contains("'limit'")),
            Ok((limit, before)) => {
                match effective_limit(limit) {
                    Ok(n) => prop_assert!((1..=1000).contains(&n)),
                    Err(e) => prop_assert!(limit == Some(0) && e.contains("'limit'")),
                }
                if let Some(b) = before {
                    match parse_before(b) {
                        Ok(Before::Cursor(c)) => prop_assert_eq!(c.to_string(), b),
                        Ok(Before::Id(id)) => prop_assert_eq!(id.len(), 36),
                        Err(e) => prop_assert!(e.contains("'before'") && e.len() <= MAX_ERROR, "{}", e),
                    }
                }
            }
        }
    }
}
