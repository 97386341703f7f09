//! Cross-origin access for the HTTP API that browser clients call from their own pages (SSE,
//! long-poll, publish, history): any origin may call it, since these requests carry their
//! credential in the `Authorization` header (or `?token=`), never in a cookie, so a page can
//! only act with a token it already holds. Preflights (`OPTIONS`) are answered here. The admin
//! console and the WebSocket endpoints are not covered (the console is same-origin only).

use axum::extract::Request;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Headers a cross-origin request may send.
const ALLOW_HEADERS: &str = "authorization, content-type, last-event-id";

/// The middleware: answers preflights, adds `Access-Control-Allow-Origin: *` to every answer.
pub async fn cors(req: Request, next: Next) -> Response {
    let mut res = if req.method() == Method::OPTIONS {
        let mut r = StatusCode::NO_CONTENT.into_response();
        let h = r.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST"));
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static(ALLOW_HEADERS));
        h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
        r
    } else {
        next.run(req).await
    };
    res.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    res
}
