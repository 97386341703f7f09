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
//!
//! Shutdown stops accepting, lets requests in flight finish (5 s at most) and returns.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

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
        let router = router.clone();
        let held = place.clone();
        let abort = CancellationToken::new();
        let aborter = ConnectionAbort(abort.clone());
        let service = tower::service_fn(move |mut req: Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(held.clone());
            req.extensions_mut().insert(aborter.clone());
            req.extensions_mut().insert(ClientAddr(peer));
            router.clone().oneshot(req.map(axum::body::Body::new))
        });
        let connection =
            builder.serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(service));
        let connection = graceful.watch(connection.into_owned());
        tokio::spawn(async move {
            let _place = place;
            tokio::select! {
                ended = connection => if let Err(e) = ended {
                    tracing::debug!(error = %e, "connection ended with an error");
                },
                _ = abort.cancelled() => tracing::debug!("connection aborted"),
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(Duration::from_secs(5), graceful.shutdown()).await.is_err() {
        tracing::warn!("connections did not finish within 5 s");
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
