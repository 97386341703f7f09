//! Authentication as an axum extractor: [`Authenticated`] verifies the request's token
//! (`Authorization: Bearer <jwt>`, else `?token=<jwt>`, else none: `anon` when allowed) and
//! yields the caller's [`Identity`]; a refusal is an [`ApiError`] (401 with a JSON body).
//!
//! [`ApiKey`] is the same for Supabase clients, which send their key as `?apikey=<jwt>` or in
//! an `apikey` / `x-api-key` header (an `Authorization: Bearer` header still wins).
//!
//! A header or parameter that is present but empty or malformed is refused with a reason, never
//! taken as anonymous: an unset shell variable in `-H "Authorization: Bearer $TOKEN"` should
//! read as "the token is empty", not as a permission error about role `anon`.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use serde::Deserialize;

use super::error::ApiError;
use crate::app::App;
use crate::core::{AuthError, Identity};

/// The identity of an authenticated request.
#[derive(Debug, Clone)]
pub struct Authenticated(pub Identity);

#[derive(Deserialize)]
struct TokenParam {
    token: Option<String>,
}

/// The token of a WebSocket upgrade or HTTP request, `None` when it carries none at all.
pub fn token_from<'a>(
    headers: &'a HeaderMap,
    query_token: Option<&'a str>,
) -> Result<Option<&'a str>, AuthError> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        return bearer(
            value.to_str().map_err(|_| malformed("the Authorization header is not plain ASCII text"))?,
        )
        .map(Some);
    }
    match query_token {
        Some(t) if t.trim().is_empty() => Err(malformed(
            "the token parameter is empty (is the variable that should hold the token set?); \
             pass ?token=<jwt>, or leave the parameter out to connect anonymously",
        )),
        other => Ok(other),
    }
}

/// The token of an `Authorization` header value.
fn bearer(value: &str) -> Result<&str, AuthError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(malformed(
            "the Authorization header is empty; send 'Authorization: Bearer <jwt>', or no header to \
             connect anonymously",
        ));
    }
    let (scheme, token) = value.split_once(char::is_whitespace).unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(malformed("the Authorization header must be 'Bearer <jwt>'"));
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(malformed(
            "the Authorization header says 'Bearer' but holds no token (is the variable that should \
             hold the token set?)",
        ));
    }
    Ok(token)
}

fn malformed(why: &str) -> AuthError {
    AuthError::Malformed(why.to_string())
}

impl FromRequestParts<Arc<App>> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        let query = Query::<TokenParam>::try_from_uri(&parts.uri).ok();
        let query_token = query.as_ref().and_then(|q| q.0.token.as_deref());
        let token = token_from(&parts.headers, query_token)?;
        let identity = app.auth.authenticate(token)?;
        Ok(Authenticated(identity))
    }
}

/// The identity of a Supabase client's request, and the token it came from.
#[derive(Debug, Clone)]
pub struct ApiKey(pub Identity, pub Option<String>);

#[derive(Deserialize)]
struct ApiKeyParam {
    apikey: Option<String>,
}

/// A Supabase client's token: `Authorization: Bearer`, else the `apikey` or `x-api-key`
/// header, else `?apikey=`.
pub fn api_key_from<'a>(
    headers: &'a HeaderMap,
    query_key: Option<&'a str>,
) -> Result<Option<&'a str>, AuthError> {
    if headers.contains_key(header::AUTHORIZATION) {
        return token_from(headers, None);
    }
    for name in ["apikey", "x-api-key"] {
        if let Some(value) = headers.get(name) {
            let key = value
                .to_str()
                .map_err(|_| malformed(&format!("the {name} header is not plain ASCII text")))?;
            if key.trim().is_empty() {
                return Err(malformed(&format!("the {name} header is empty")));
            }
            return Ok(Some(key.trim()));
        }
    }
    match query_key {
        Some(k) if k.trim().is_empty() => {
            Err(malformed("the apikey parameter is empty (is the variable that should hold the key set?)"))
        }
        other => Ok(other),
    }
}

impl FromRequestParts<Arc<App>> for ApiKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        let query = Query::<ApiKeyParam>::try_from_uri(&parts.uri).ok();
        let query_key = query.as_ref().and_then(|q| q.0.apikey.as_deref());
        let token = api_key_from(&parts.headers, query_key)?;
        let identity = app.auth.authenticate(token)?;
        Ok(ApiKey(identity, token.map(str::to_string)))
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn with_header(value: &[u8]) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_bytes(value).unwrap());
        h
    }

    fn refusal(r: Result<Option<&str>, AuthError>) -> String {
        r.expect_err("refused").to_string()
    }

    #[test]
    fn bearer_header_wins_over_the_query_parameter_and_any_case_of_the_scheme_works() {
        assert_eq!(token_from(&with_header(b"Bearer abc"), Some("zzz")).unwrap(), Some("abc"));
        assert_eq!(token_from(&with_header(b"bearer  abc "), None).unwrap(), Some("abc"));
        assert_eq!(token_from(&with_header(b"BEARER abc"), None).unwrap(), Some("abc"));
        assert_eq!(token_from(&HeaderMap::new(), Some("q")).unwrap(), Some("q"));
        assert_eq!(token_from(&HeaderMap::new(), None).unwrap(), None);
    }

    #[test]
    fn empty_or_malformed_credentials_are_refused_with_the_reason_never_anonymous() {
        let empty = refusal(token_from(&with_header(b""), None));
        assert!(empty.starts_with("the Authorization header is empty"), "{empty}");
        let no_token = refusal(token_from(&with_header(b"Bearer "), None));
        assert!(no_token.contains("says 'Bearer' but holds no token"), "{no_token}");
        assert_eq!(
            refusal(token_from(&with_header(b"Basic dXNlcjpwYXNz"), None)),
            "the Authorization header must be 'Bearer <jwt>'"
        );
        assert_eq!(
            refusal(token_from(&with_header(b"eyJhbGciOiJIUzI1NiJ9.e30.x"), None)),
            "the Authorization header must be 'Bearer <jwt>'"
        );
        assert!(refusal(token_from(&with_header(b"Bearer \xff"), None)).contains("not plain ASCII"));
        let query = refusal(token_from(&HeaderMap::new(), Some("")));
        assert!(query.starts_with("the token parameter is empty"), "{query}");
        // an empty header is refused even when a query token is present
        assert!(token_from(&with_header(b"Bearer"), Some("abc")).is_err());
    }

    #[test]
    fn supabase_keys_come_from_bearer_then_headers_then_the_query() {
        let mut h = with_header(b"Bearer abc");
        h.insert("apikey", HeaderValue::from_static("key"));
        assert_eq!(api_key_from(&h, Some("q")).unwrap(), Some("abc"));
        let mut h = HeaderMap::new();
        h.insert("x-api-key", HeaderValue::from_static("x"));
        assert_eq!(api_key_from(&h, Some("q")).unwrap(), Some("x"));
        h.insert("apikey", HeaderValue::from_static("k"));
        assert_eq!(api_key_from(&h, Some("q")).unwrap(), Some("k"));
        assert_eq!(api_key_from(&HeaderMap::new(), Some("q")).unwrap(), Some("q"));
        assert_eq!(api_key_from(&HeaderMap::new(), None).unwrap(), None);
        assert!(refusal(api_key_from(&HeaderMap::new(), Some(" "))).contains("apikey parameter is empty"));
        let mut h = HeaderMap::new();
        h.insert("apikey", HeaderValue::from_static(""));
        assert!(refusal(api_key_from(&h, None)).contains("apikey header is empty"));
    }
}
