//! Who may use the console, and from where: the guard every `/admin` request passes, and the
//! sign-in form.
//!
//! The credential is the admin token ([`super::credential`]). A script sends it as
//! `Authorization: Bearer <token>`; a person signs in once with a form, which sets an HttpOnly,
//! `SameSite=Strict` cookie holding a signed session, never the token itself.
//!
//! Same origin only ([`origin_check`]): a request a browser marks as coming from another origin
//! (`Sec-Fetch-Site` other than `same-origin`, or an `Origin` that is neither this relay's
//! address nor one of `--admin-origin`) is refused with 403, credential or not. An API call
//! made with the cookie must carry that proof (every current browser sends `Sec-Fetch-Site`);
//! one made with the bearer header need not (a browser cannot add that header to a request of
//! another origin by itself). The page and its assets need no proof: they are static.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Form, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::console::Console;
use super::credential::{unix_now, Admin, API_NAME, SESSION_TTL_SECS};
use super::error::AdminError;

/// The session cookie's name.
pub const COOKIE: &str = "realtime_admin";
/// Longest name a person may give at sign-in (it goes into the audit log).
pub const MAX_NAME_BYTES: usize = 64;
/// Pause before answering a wrong token (slows guessing; the token is 32+ bytes anyway).
const WRONG_TOKEN_PAUSE: Duration = Duration::from_millis(300);

/// Whether the request provably comes from the console's own origin: `Ok(true)` when the
/// browser says so (`Sec-Fetch-Site: same-origin`, or an allowed `Origin`), `Ok(false)` when
/// there is no such header (not a browser, or a very old one), `Err` when it comes from
/// elsewhere. `navigation`: a GET of the page itself, which a person may type or bookmark
/// (`Sec-Fetch-Site: none`).
pub fn origin_check(headers: &HeaderMap, allowed: &[String], navigation: bool) -> Result<bool, &'static str> {
    let text = |name: header::HeaderName| headers.get(name).map(|v| v.to_str().unwrap_or("?"));
    match headers.get("sec-fetch-site").map(|v| v.to_str().unwrap_or("?")) {
        Some("same-origin") => return Ok(true),
        Some("none") if navigation => return Ok(true),
        Some(_) => return Err("the admin console refuses requests from other origins (Sec-Fetch-Site)"),
        None => {}
    }
    let Some(origin) = text(header::ORIGIN) else { return Ok(false) };
    let origin = origin.trim_end_matches('/').to_ascii_lowercase();
    let authority = origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://"));
    let host = text(header::HOST).map(str::to_ascii_lowercase);
    if authority.is_some() && authority == host.as_deref() || allowed.contains(&origin) {
        Ok(true)
    } else {
        Err("the admin console refuses requests from other origins (Origin)")
    }
}

/// The bearer token of the `Authorization` header.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")).map(str::trim)
}

/// The session cookie's value.
fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(COOKIE)?.strip_prefix('='))
}

/// Every `/admin` request passes here: the origin rule, then the credential. Lets through a
/// signed-in request with its [`Admin`] in the request extensions, and the sign-in form. Every
/// answer gets the console's security headers.
pub async fn guard(State(console): State<Arc<Console>>, req: Request, next: Next) -> Response {
    super::assets::harden(admit(&console, req, next).await)
}

async fn admit(console: &Console, mut req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let method = req.method().clone();
    let navigation = matches!(method, Method::GET | Method::HEAD) && matches!(path, "/admin" | "/admin/");
    let sign_in = method == Method::POST && path == "/admin/api/session";
    let vouched = match origin_check(req.headers(), &console.app.config.admin.origins, navigation) {
        Ok(v) => v,
        Err(reason) => {
            tracing::warn!(%path, %method, origin = ?req.headers().get(header::ORIGIN), "admin: {reason}");
            return AdminError::Forbidden(reason).into_response();
        }
    };
    if sign_in {
        if !vouched {
            return AdminError::Forbidden("sign in from the console's own page").into_response();
        }
        return next.run(req).await;
    }
    let now = unix_now();
    let who = match bearer(req.headers()) {
        Some(t) if console.credential.token_matches(t) => {
            Some((Admin { name: API_NAME.into(), expires: now + SESSION_TTL_SECS }, false))
        }
        Some(_) => None,
        None => cookie(req.headers()).and_then(|c| console.credential.verify(c, now)).map(|a| (a, true)),
    };
    let Some((admin, by_cookie)) = who else {
        return if navigation {
            super::assets::sign_in_page(StatusCode::UNAUTHORIZED, None)
        } else {
            AdminError::Unauthenticated.into_response()
        };
    };
    if by_cookie && !vouched && path.starts_with("/admin/api/") {
        return AdminError::Forbidden(
            "the API answers the console's own page only: Sec-Fetch-Site or Origin is missing (use a current browser)",
        )
        .into_response();
    }
    req.extensions_mut().insert(admin);
    next.run(req).await
}

/// The sign-in form's fields.
#[derive(Deserialize)]
pub struct SignIn {
    token: String,
    #[serde(default)]
    name: String,
}

/// The name a person signs in with: trimmed, printable, at most [`MAX_NAME_BYTES`]; `admin`
/// when empty.
pub fn clean_name(name: &str) -> Result<String, &'static str> {
    let name = name.trim();
    if name.is_empty() {
        return Ok("admin".into());
    }
    if name.len() > MAX_NAME_BYTES {
        return Err("Your name may be at most 64 bytes long.");
    }
    if name.chars().any(char::is_control) {
        return Err("Your name may not contain control characters.");
    }
    Ok(name.to_string())
}

fn session_cookie(value: &str, max_age: u64, headers: &HeaderMap) -> HeaderValue {
    let https = headers.get("x-forwarded-proto").is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
    let secure = if https { "; Secure" } else { "" };
    let text = format!("{COOKIE}={value}; Path=/admin; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}");
    HeaderValue::from_str(&text).expect("cookie values are base64 and digits")
}

/// `POST /admin/api/session` (the sign-in form): sets the session cookie and goes to the
/// console, or shows the form again with the reason.
pub async fn sign_in(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Form(form): Form<SignIn>,
) -> Response {
    let name = match clean_name(&form.name) {
        Ok(n) => n,
        Err(reason) => return super::assets::sign_in_page(StatusCode::UNPROCESSABLE_ENTITY, Some(reason)),
    };
    if !console.credential.token_matches(form.token.trim()) {
        tracing::warn!(%name, "admin: sign-in with a wrong token");
        tokio::time::sleep(WRONG_TOKEN_PAUSE).await;
        return super::assets::sign_in_page(
            StatusCode::UNAUTHORIZED,
            Some("That is not this relay's admin token."),
        );
    }
    tracing::info!(%name, "admin: signed in");
    let value = console.credential.issue(&name, unix_now() + SESSION_TTL_SECS);
    let cookie = session_cookie(&value, SESSION_TTL_SECS, &headers);
    (
        StatusCode::SEE_OTHER,
        [(header::SET_COOKIE, cookie), (header::LOCATION, HeaderValue::from_static("/admin"))],
    )
        .into_response()
}

/// `DELETE /admin/api/session`: signs out (clears the cookie).
pub async fn sign_out(headers: HeaderMap, axum::Extension(admin): axum::Extension<Admin>) -> Response {
    tracing::info!(name = %admin.name, "admin: signed out");
    (StatusCode::NO_CONTENT, [(header::SET_COOKIE, session_cookie("", 0, &headers))]).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn same_origin_requests_pass_and_other_origins_are_refused() {
        let allowed = vec!["https://admin.example.com".to_string()];
        let check = |pairs: &[(&'static str, &str)], nav| origin_check(&headers(pairs), &allowed, nav);
        assert_eq!(check(&[("sec-fetch-site", "same-origin")], false), Ok(true));
        assert_eq!(check(&[("sec-fetch-site", "none")], true), Ok(true), "a typed URL of the page");
        assert!(check(&[("sec-fetch-site", "none")], false).is_err(), "not for the API");
        assert!(check(&[("sec-fetch-site", "same-site")], false).is_err());
        assert!(check(&[("sec-fetch-site", "cross-site"), ("origin", "http://h:1")], true).is_err());
        assert_eq!(check(&[("host", "h:1"), ("origin", "http://H:1")], false), Ok(true));
        assert_eq!(
            check(&[("host", "10.0.0.5:4000"), ("origin", "https://admin.example.com")], false),
            Ok(true)
        );
        assert!(check(&[("host", "h:1"), ("origin", "http://h:2")], false).is_err());
        assert!(check(&[("host", "h:1"), ("origin", "null")], false).is_err());
        assert_eq!(check(&[("host", "h:1")], false), Ok(false), "no browser headers: not vouched");
    }

    #[test]
    fn credentials_are_read_from_the_bearer_header_and_the_cookie() {
        let h = headers(&[("authorization", "Bearer abc "), ("cookie", "x=1; realtime_admin=v1.2.3.4; y=2")]);
        assert_eq!(bearer(&h), Some("abc"));
        assert_eq!(cookie(&h), Some("v1.2.3.4"));
        assert_eq!(cookie(&headers(&[("cookie", "realtime_admin_other=1")])), None);
    }

    #[test]
    fn sign_in_names_are_cleaned() {
        assert_eq!(clean_name("  Ada "), Ok("Ada".into()));
        assert_eq!(clean_name(""), Ok("admin".into()));
        assert!(clean_name(&"x".repeat(65)).is_err());
        assert!(clean_name("a\u{7}b").is_err());
    }
}
