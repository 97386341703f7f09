//! Authentication as an axum extractor: [`Authenticated`] verifies the request's token
//! (`Authorization: Bearer <jwt>`, else `?token=<jwt>`, else none: `anon` when allowed) and
//! yields the caller's [`Identity`]; a refusal is an [`ApiError`] (401 with a JSON body).

use std::sync::Arc;

use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use serde::Deserialize;

use super::error::ApiError;
use crate::app::App;
use crate::core::Identity;

/// The identity of an authenticated request.
#[derive(Debug, Clone)]
pub struct Authenticated(pub Identity);

#[derive(Deserialize)]
struct TokenParam {
    token: Option<String>,
}

/// The bearer token from `Authorization: Bearer <jwt>`, else from the `?token=` parameter.
pub fn token_from<'a>(headers: &'a HeaderMap, query_token: Option<&'a str>) -> Option<&'a str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .or(query_token)
}

impl FromRequestParts<Arc<App>> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        let query = Query::<TokenParam>::try_from_uri(&parts.uri).ok();
        let query_token = query.as_ref().and_then(|q| q.0.token.as_deref());
        let identity = app.auth.authenticate(token_from(&parts.headers, query_token))?;
        Ok(Authenticated(identity))
    }
}
