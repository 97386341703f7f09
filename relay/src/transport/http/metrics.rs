//! `GET /metrics`: the relay's registry in the Prometheus text format. Open, unless the relay
//! runs with `--metrics-token`; then a scrape must send `Authorization: Bearer <token>`
//! (compared in constant time) and is refused with 401 otherwise.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::app::App;

/// Equal bytes, in time that depends only on the lengths.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether a scrape with these headers may read the metrics.
pub fn scrape_allowed(token: Option<&str>, headers: &HeaderMap) -> bool {
    let Some(token) = token else { return true };
    let sent = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")));
    sent.is_some_and(|sent| same_secret(sent.trim().as_bytes(), token.as_bytes()))
}

/// `GET /metrics`.
pub async fn handler(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if !scrape_allowed(app.config.metrics_token.as_deref(), &headers) {
        let challenge = [(header::WWW_AUTHENTICATE, "Bearer realm=\"metrics\"")];
        let body = "a bearer token is required (--metrics-token)\n";
        return (StatusCode::UNAUTHORIZED, challenge, body).into_response();
    }
    match app.metrics.render() {
        Ok(text) => {
            ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot render metrics");
            (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrapes_need_the_exact_bearer_token_only_when_one_is_set() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, v.parse().unwrap());
            h
        };
        let none = HeaderMap::new();
        assert!(scrape_allowed(None, &none));
        let token = Some("0123456789abcdef-scrape");
        assert!(!scrape_allowed(token, &none));
        assert!(scrape_allowed(token, &with("Bearer 0123456789abcdef-scrape")));
        assert!(!scrape_allowed(token, &with("Bearer 0123456789abcdef-scrapf")));
        assert!(!scrape_allowed(token, &with("Bearer 0123456789abcdef")));
        assert!(!scrape_allowed(token, &with("Basic 0123456789abcdef-scrape")));
    }
}
