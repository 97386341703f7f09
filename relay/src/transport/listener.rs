//! The relay's listener: accepts sockets and serves HTTP on them, with the limits no route can
//! enforce.
//!
//! * **Every socket counts.** `--max-connections` counts each accepted socket from accept to
//!   close: plain HTTP requests, handshakes in progress, WebSockets and streams alike. A socket
//!   over the cap gets a fixed `503` with the usual JSON error body and is closed, without its
//!   request being read. A WebSocket keeps its place after the upgrade (the place travels with
//!   the request as a [`SocketPlace`] extension into the session).
//! * **No half-open handshakes.** A connection has `--header-timeout-secs` to send a request's
//!   headers, including the first one and each next request on a kept-alive connection: a client
//!   that sends half a request, or idles between requests, is dropped. (Upgraded WebSockets and
//!   streams then follow their own rules: pings, stalls, keep-alives.)
//! * **Event streams without hyper's buffers.** A connection whose first request is
//!   `GET /v1/sse` (peeked, see [`super::sse_conn`]) is served by `sse_conn`, which holds no
//!   buffer while the stream idles; every other connection by hyper (HTTP/1 and HTTP/2, with
//!   WebSocket upgrades).
//!
//! Shutdown stops accepting, lets requests in flight finish (5 s at most) and returns.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::Watcher;
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::sse_conn::{self, Opening};
use crate::app::App;

/// One of the `--max-connections` places, held by a socket until it closes. Shared by the
/// connection and, after an upgrade, by the session it became.
#[derive(Clone)]
pub struct SocketPlace {
    _held: Arc<Place>,
}

struct Place(Arc<App>);

impl Drop for Place {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::AcqRel);
    }
}

impl SocketPlace {
    /// A place, or None when every place is taken.
    fn acquire(app: &Arc<App>) -> Option<Self> {
        let before = app.connections.fetch_add(1, Ordering::AcqRel);
        if before >= app.config.max_connections {
            app.connections.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(SocketPlace { _held: Arc::new(Place(app.clone())) })
    }
}

/// Ends the socket a request came on: its connection is dropped, whatever it was doing. For
/// streams whose client stopped reading: hyper then stops polling the response body, so the
/// stream cannot end itself.
#[derive(Clone)]
pub struct ConnectionAbort(CancellationToken);

impl ConnectionAbort {
    pub fn abort(&self) {
        self.0.cancel();
    }
}

/// The address a request came from (the socket's peer).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub std::net::SocketAddr);

/// Serves `router` on `listener` until `shutdown`.
pub async fn serve(app: Arc<App>, listener: TcpListener, router: Router, shutdown: CancellationToken) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(app.config.header_timeout).keep_alive(true);
    builder.http2().timer(TokioTimer::new()).keep_alive_interval(Some(app.config.ping_interval));
    let builder = Arc::new(builder);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(s) => s,
                Err(e) => {
                    // Out of file descriptors and the like: keep serving what is open.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(place) = SocketPlace::acquire(&app) else {
            tokio::spawn(refuse(stream, app.config.max_connections));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let accepted = Accepted { stream, peer, place, watcher: graceful.watcher() };
        tokio::spawn(connection(accepted, router.clone(), builder.clone(), app.config.header_timeout));
    }
    drop(listener);
    if tokio::time::timeout(Duration::from_secs(5), graceful.shutdown()).await.is_err() {
        tracing::warn!("connections did not finish within 5 s");
    }
}

/// An accepted socket with its place, and the watcher that makes shutdown wait for it.
struct Accepted {
    stream: TcpStream,
    peer: std::net::SocketAddr,
    place: SocketPlace,
    watcher: Watcher,
}

/// Serves one accepted socket until it closes: by [`sse_conn`] when its first request is an
/// event stream, else by hyper.
async fn connection(
    accepted: Accepted,
    router: Router,
    builder: Arc<auto::Builder<TokioExecutor>>,
    header_timeout: Duration,
) {
    let Accepted { stream, peer, place, watcher } = accepted;
    let abort = CancellationToken::new();
    let aborter = ConnectionAbort(abort.clone());
    match sse_conn::opening(&stream, header_timeout).await {
        Opening::Gone => return,
        Opening::EventStream => {
            let mut extensions = axum::http::Extensions::new();
            extensions.insert(place.clone());
            extensions.insert(aborter);
            extensions.insert(ClientAddr(peer));
            let conn = sse_conn::Conn { stream, peer, extensions, aborted: abort };
            sse_conn::serve(conn, router, header_timeout).await;
            // Both held until here: the stream counts as a connection while it is open, and
            // shutdown waits for its close event to be written.
            drop((place, watcher));
            return;
        }
        Opening::Other => {}
    }
    let held = place.clone();
    let service = tower::service_fn(move |mut req: Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(held.clone());
        req.extensions_mut().insert(aborter.clone());
        req.extensions_mut().insert(ClientAddr(peer));
        router.clone().oneshot(req.map(axum::body::Body::new))
    });
    let connection =
        builder.serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(service));
    // Boxed: this task's size is that of its largest state, and a task that serves an event
    // stream instead must not carry room for hyper's connection.
    let connection = Box::pin(watcher.watch(connection.into_owned()));
    let _place = place;
    tokio::select! {
        ended = connection => if let Err(e) = ended {
            tracing::debug!(error = %e, "connection ended with an error");
        },
        _ = abort.cancelled() => tracing::debug!("connection aborted"),
    }
}

/// Answers a socket over the cap with 503 and closes it; what the client sent is read and
/// dropped for a moment first, so the close does not reset the connection before the client
/// has read the answer.
async fn refuse(mut stream: TcpStream, limit: usize) {
    use tokio::io::AsyncReadExt;
    let body = serde_json::json!({"error": {"code": "REALTIME_RATE_LIMITED", "message": format!("too many connections (limit {limit})")}})
        .to_string();
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(2), stream.write_all(response.as_bytes())).await;
    let _ = stream.shutdown().await;
    let mut sink = [0u8; 4096];
    let drain = async { while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {} };
    let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
}
