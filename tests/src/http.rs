//! Minimal HTTP/1.1 over a plain TCP socket: enough for `/healthz`, `/readyz`, history and
//! `POST /v1/publish` in tests.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends one request (`head` without the blank line, then `body`) with `Connection: close` and
/// returns the status code and the body as text. Errors (connection refused, no answer within
/// `limit`, unparsable response) come back as `Err`.
async fn exchange(port: u16, head: &str, body: &[u8], limit: Duration) -> Result<(u16, String), String> {
    exchange_full(port, head, body, limit).await.map(|r| (r.status, r.body))
}

/// A response: status, header lines (`name: value`, names lowercase) and body text.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    /// The first value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// `method path` with extra header lines and a body; the whole response, headers included.
pub async fn http_send(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Response, String> {
    let mut head = format!("{method} {path} HTTP/1.1");
    for (name, value) in headers {
        head.push_str(&format!("\r\n{name}: {value}"));
    }
    if !body.is_empty() {
        head.push_str(&format!("\r\nContent-Length: {}", body.len()));
    }
    exchange_full(port, &head, body, Duration::from_secs(10)).await
}

async fn exchange_full(port: u16, head: &str, body: &[u8], limit: Duration) -> Result<Response, String> {
    let what = head.lines().next().unwrap_or_default().to_string();
    let request = async {
        let mut stream =
            TcpStream::connect(("127.0.0.1", port)).await.map_err(|e| format!("connect: {e}"))?;
        let head = format!("{head}\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
        stream.write_all(head.as_bytes()).await.map_err(|e| format!("write: {e}"))?;
        stream.write_all(body).await.map_err(|e| format!("write: {e}"))?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.map_err(|e| format!("read: {e}"))?;
        Ok::<_, String>(raw)
    };
    let raw = tokio::time::timeout(limit, request)
        .await
        .map_err(|_| format!("{what}: no response within {limit:?}"))??;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status_line = text.lines().next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("{what}: unparsable status line {status_line:?}"))?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let headers = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok(Response { status, headers, body: body.to_string() })
}

/// `GET http://127.0.0.1:{port}{path}`: returns the status code and the body (as text).
pub async fn http_get(port: u16, path: &str) -> Result<(u16, String), String> {
    exchange(port, &format!("GET {path} HTTP/1.1"), b"", Duration::from_secs(5)).await
}

/// `POST http://127.0.0.1:{port}{path}` with a JSON body and an optional bearer token: returns
/// the status code and the body parsed as JSON (`Value::Null` when the body is not JSON).
pub async fn http_post_json(
    port: u16,
    path: &str,
    token: Option<&str>,
    body: &serde_json::Value,
) -> Result<(u16, serde_json::Value), String> {
    let body = body.to_string();
    let auth = token.map(|t| format!("\r\nAuthorization: Bearer {t}")).unwrap_or_default();
    let head = format!(
        "POST {path} HTTP/1.1{auth}\r\nContent-Type: application/json\r\nContent-Length: {}",
        body.len()
    );
    let (status, text) = exchange(port, &head, body.as_bytes(), Duration::from_secs(10)).await?;
    Ok((status, serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)))
}

/// Any request: `head` is the request line and header lines (without the blank line). Returns
/// the status code and the body as text.
pub async fn http_request(port: u16, head: &str, body: &[u8]) -> Result<(u16, String), String> {
    exchange(port, head, body, Duration::from_secs(10)).await
}

/// The value of the sample line `series value` in a Prometheus text exposition (`series` with
/// its labels exactly as rendered); panics when it is missing.
pub fn metric_sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no sample {series} in\n{text}"))
}

/// [`metric_sample`] of the relay on `port`, scraped now.
pub async fn scrape_metric(port: u16, series: &str) -> f64 {
    let (_, text) = http_get(port, "/metrics").await.expect("GET /metrics");
    metric_sample(&text, series)
}
