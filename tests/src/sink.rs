//! A real HTTP webhook endpoint for tests: an axum server on 127.0.0.1 that records every
//! request (path, headers, body, arrival time) and answers from a per-path script of replies
//! (then 200). Dropping the sink stops it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use tokio_util::sync::CancellationToken;

/// One answer of the sink.
#[derive(Debug, Clone)]
pub enum Reply {
    Status(u16),
    /// A status with a `Retry-After: <secs>` header.
    RetryAfter(u16, u64),
    /// Wait, then answer with the status (the request is recorded on arrival).
    Slow(Duration, u16),
}

/// A request as the sink received it.
#[derive(Debug, Clone)]
pub struct Captured {
    pub path: String,
    /// Header names in lower case.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    pub at: Instant,
}

impl Captured {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(String::as_str).unwrap_or("")
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("webhook body is JSON")
    }
}

#[derive(Default)]
struct State {
    requests: Vec<Captured>,
    scripts: HashMap<String, VecDeque<Reply>>,
    default: Option<Reply>,
}

/// See the module docs.
pub struct Sink {
    port: u16,
    state: Arc<Mutex<State>>,
    stop: CancellationToken,
}

impl Sink {
    /// Starts on a free port.
    pub async fn start() -> Sink {
        Sink::start_on(0).await
    }

    /// Starts on `port` (0: any free port).
    pub async fn start_on(port: u16) -> Sink {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("bind sink");
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State::default()));
        let stop = CancellationToken::new();
        let shared = state.clone();
        let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: Bytes| {
            let state = shared.clone();
            async move { handle(state, uri, headers, body).await }
        });
        let token = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).with_graceful_shutdown(token.cancelled_owned()).await;
        });
        Sink { port, state, stop }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Replies for the next requests to `path`, in order; 200 (or the default) afterwards.
    pub fn script(&self, path: &str, replies: Vec<Reply>) {
        self.state.lock().unwrap().scripts.insert(path.to_string(), replies.into());
    }

    /// The reply once a path's script is used up (200 unless set).
    pub fn set_default(&self, reply: Reply) {
        self.state.lock().unwrap().default = Some(reply);
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Captured> {
        self.state.lock().unwrap().requests.clone()
    }

    /// Requests to `path` so far.
    pub fn requests_to(&self, path: &str) -> Vec<Captured> {
        self.requests().into_iter().filter(|r| r.path == path).collect()
    }

    /// Waits until at least `n` requests arrived (panics after `limit`).
    pub async fn wait_for(&self, n: usize, limit: Duration) -> Vec<Captured> {
        let deadline = Instant::now() + limit;
        loop {
            let got = self.requests();
            if got.len() >= n {
                return got;
            }
            if Instant::now() > deadline {
                panic!("sink got {} requests, expected {n} within {limit:?}", got.len());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn handle(state: Arc<Mutex<State>>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let path = uri.path().to_string();
    let reply = {
        let mut s = state.lock().unwrap();
        s.requests.push(Captured {
            path: path.clone(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.as_str().to_ascii_lowercase(), v.to_str().unwrap_or("").to_string()))
                .collect(),
            body: body.to_vec(),
            at: Instant::now(),
        });
        let scripted = s.scripts.get_mut(&path).and_then(VecDeque::pop_front);
        scripted.or_else(|| s.default.clone()).unwrap_or(Reply::Status(200))
    };
    let status = |c: u16| StatusCode::from_u16(c).expect("valid status");
    match reply {
        Reply::Status(c) => (status(c), "sink").into_response(),
        Reply::RetryAfter(c, secs) => {
            (status(c), [("retry-after", secs.to_string())], "slow down").into_response()
        }
        Reply::Slow(wait, c) => {
            tokio::time::sleep(wait).await;
            (status(c), "late").into_response()
        }
    }
}
