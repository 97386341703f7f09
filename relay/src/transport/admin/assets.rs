//! The console's page, scripts and styles, embedded in the binary (`assets/`: plain HTML, CSS
//! and JavaScript modules, no build step, nothing fetched from elsewhere), the sign-in page, and
//! the security headers every console response carries.

use std::collections::HashMap;
use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::AdminError;

/// Name, content type and bytes of every asset.
const FILES: &[(&str, &str, &str)] = &[
    ("app.js", "text/javascript; charset=utf-8", include_str!("assets/app.js")),
    ("ui.js", "text/javascript; charset=utf-8", include_str!("assets/ui.js")),
    ("chart.js", "text/javascript; charset=utf-8", include_str!("assets/chart.js")),
    ("overview.js", "text/javascript; charset=utf-8", include_str!("assets/overview.js")),
    ("channels.js", "text/javascript; charset=utf-8", include_str!("assets/channels.js")),
    ("messages.js", "text/javascript; charset=utf-8", include_str!("assets/messages.js")),
    ("inspector.js", "text/javascript; charset=utf-8", include_str!("assets/inspector.js")),
    ("webhooks.js", "text/javascript; charset=utf-8", include_str!("assets/webhooks.js")),
    ("relays.js", "text/javascript; charset=utf-8", include_str!("assets/relays.js")),
    ("style.css", "text/css; charset=utf-8", include_str!("assets/style.css")),
];

const INDEX: &str = include_str!("assets/index.html");
const SIGN_IN: &str = include_str!("assets/signin.html");

/// The console's policy: its own scripts, styles and connections only; never framed.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// ETags of the assets (a hash of their bytes), computed once.
static ETAGS: LazyLock<HashMap<&'static str, String>> = LazyLock::new(|| {
    FILES
        .iter()
        .map(|(name, _, body)| {
            let hash = Sha256::digest(body.as_bytes());
            (*name, format!("\"{}\"", hex(&hash[..12])))
        })
        .collect()
});

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The sign-in page's inline `<style>`, allowed by its hash.
static SIGN_IN_CSP: LazyLock<String> = LazyLock::new(|| {
    let style = SIGN_IN
        .split_once("<style>")
        .and_then(|(_, rest)| rest.split_once("</style>"))
        .map_or("", |(s, _)| s);
    let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(style.as_bytes()));
    CSP.replace("style-src 'self'", &format!("style-src 'sha256-{hash}'"))
});

/// Adds the headers every console response carries (unless the handler set its own).
pub fn harden(mut response: Response) -> Response {
    let h = response.headers_mut();
    let set = |h: &mut HeaderMap, name: header::HeaderName, value: &'static str| {
        h.entry(name).or_insert(HeaderValue::from_static(value));
    };
    set(h, header::CONTENT_SECURITY_POLICY, CSP);
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(h, header::REFERRER_POLICY, "no-referrer");
    set(h, header::CACHE_CONTROL, "no-store");
    response
}

/// `GET /admin`: the console (the guard already checked the session).
pub async fn page() -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], INDEX).into_response()
}

/// `GET /admin/assets/{name}`.
pub async fn asset(Path(name): Path<String>, headers: HeaderMap) -> Response {
    let Some((name, kind, body)) = FILES.iter().find(|(n, _, _)| *n == name) else {
        return AdminError::NotFound(format!("no asset {name}")).into_response();
    };
    let etag = &ETAGS[name];
    let cache = (header::CACHE_CONTROL, HeaderValue::from_static("private, no-cache"));
    let tag = (header::ETAG, HeaderValue::from_str(etag).expect("hex etag"));
    if headers.get(header::IF_NONE_MATCH).is_some_and(|v| v.as_bytes() == etag.as_bytes()) {
        return (StatusCode::NOT_MODIFIED, [cache, tag]).into_response();
    }
    (StatusCode::OK, [(header::CONTENT_TYPE, HeaderValue::from_static(kind)), cache, tag], *body)
        .into_response()
}

/// The sign-in form, with `status` (401 when not signed in) and an error to show.
pub fn sign_in_page(status: StatusCode, error: Option<&str>) -> Response {
    let error =
        error.map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(e))).unwrap_or_default();
    let html = SIGN_IN.replace("<!--error-->", &error);
    let csp = HeaderValue::from_str(&SIGN_IN_CSP).expect("ASCII policy");
    (
        status,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8")),
            (header::CONTENT_SECURITY_POLICY, csp),
        ],
        html,
    )
        .into_response()
}

/// HTML text escaping.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_refers_only_to_embedded_assets() {
        for src in INDEX.split(['"', '\'']).filter(|s| s.starts_with("/admin/assets/")) {
            let name = &src["/admin/assets/".len()..];
            assert!(FILES.iter().any(|(n, _, _)| *n == name), "{src} is not embedded");
        }
        for (name, _, body) in FILES.iter().filter(|(n, _, _)| n.ends_with(".js")) {
            for line in body.lines().filter(|l| l.starts_with("import ")) {
                let target = line.rsplit_once("'./").map(|(_, t)| t.trim_end_matches("';")).unwrap_or("");
                assert!(FILES.iter().any(|(n, _, _)| *n == target), "{name}: {line}");
            }
        }
        let external = [
            "fetch('http",
            "fetch(\"http",
            "fetch(`http",
            "from 'http",
            "url(http",
            "src=\"http",
            "href=\"http",
        ];
        for (name, _, body) in FILES.iter().chain([&("index.html", "", INDEX), &("signin.html", "", SIGN_IN)])
        {
            for e in external {
                assert!(!body.contains(e), "{name} loads something from elsewhere: {e}");
            }
        }
    }

    #[test]
    fn the_sign_in_page_allows_exactly_its_own_style() {
        let r = sign_in_page(StatusCode::UNAUTHORIZED, Some("<b>wrong</b>"));
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let csp = r.headers()[header::CONTENT_SECURITY_POLICY].to_str().unwrap().to_string();
        assert!(csp.contains("style-src 'sha256-") && !csp.contains("unsafe-inline"), "{csp}");
        assert_eq!(escape("<b>\"&"), "&lt;b&gt;&quot;&amp;");
    }
}
