//! Wire protocol v1 robustness and lifecycle: malformed input is answered, not fatal; ping/pong;
//! health endpoints; graceful shutdown closes sockets with 1001.

use realtime_e2e::{http_get, start_stack, Connect, Ws};
use serde_json::{json, Value};

fn assert_invalid_request(reply: &Value, what: &str) {
    assert_eq!(reply["type"], "reply", "{what}: expected a reply frame, got {reply}");
    assert_eq!(reply["ok"], false, "{what}: {reply}");
    assert_eq!(reply["error"]["code"], "REALTIME_INVALID_REQUEST", "{what}: {reply}");
}

/// Text frames that are not valid requests get a `reply` with `REALTIME_INVALID_REQUEST` (echoing
/// `ref` when one could be read) and the connection stays usable. A binary frame (protocol v1 is
/// JSON text only) may be answered the same way or closed with 1003 (unsupported data), 1007 or
/// 1002 (DESIGN's malformed-frame codes); either way the relay keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_get_invalid_request_not_a_crash() {
    let (_cluster, relay) = start_stack().await;
    let mut ws = Ws::connect(&relay.ws_url(), Connect::Anonymous).await;

    ws.send_text("{this is not json").await;
    let reply = ws.recv_json().await;
    assert_invalid_request(&reply, "bad JSON");

    let reply = ws.request(json!({"type": "frobnicate", "ref": "u1"})).await;
    assert_invalid_request(&reply, "unknown type");
    assert_eq!(reply["ref"], "u1", "string ref echoed");

    let reply = ws.request(json!({"type": "subscribe", "ref": 2})).await;
    assert_invalid_request(&reply, "subscribe without channel");

    let long = "a".repeat(256);
    let reply = ws.request(json!({"type": "subscribe", "ref": 3, "channel": long})).await;
    assert_invalid_request(&reply, "channel name of 256 characters");

    let reply = ws.request(json!({"type": "subscribe", "ref": 4, "channel": 42})).await;
    assert_invalid_request(&reply, "channel that is not a string");

    let pong = ws.request(json!({"type": "ping", "ref": 99})).await;
    assert_eq!(pong, json!({"type": "pong", "ref": 99}), "the connection still works after the errors");

    ws.send_binary(&[0x00, 0xff, 0x10, 0x20]).await;
    match ws.next_frame_or_close().await {
        Ok(reply) => {
            assert_invalid_request(&reply, "binary frame");
            assert_eq!(ws.ping().await["type"], "pong", "the connection still works after a binary frame");
        }
        Err(code) => assert!(
            matches!(code, Some(1003) | Some(1007) | Some(1002)),
            "a binary frame is refused with close 1003, 1007 or 1002, got {code:?}"
        ),
    }

    assert!(relay.try_exit_status().is_none(), "the relay is still running");
    let mut fresh = Ws::connect(&relay.ws_url(), Connect::Anonymous).await;
    assert_eq!(fresh.ping().await["type"], "pong", "the relay still serves new connections");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_gets_pong_with_ref() {
    let (_cluster, relay) = start_stack().await;
    let mut ws = Ws::connect(&relay.ws_url(), Connect::Anonymous).await;
    assert_eq!(ws.request(json!({"type": "ping", "ref": 8})).await, json!({"type": "pong", "ref": 8}));
    assert_eq!(
        ws.request(json!({"type": "ping", "ref": "abc"})).await,
        json!({"type": "pong", "ref": "abc"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_and_healthz_respond_200_when_running() {
    let (_cluster, relay) = start_stack().await;
    for path in ["/healthz", "/readyz"] {
        let (status, body) = http_get(relay.port(), path).await.unwrap_or_else(|e| panic!("GET {path}: {e}"));
        assert_eq!(status, 200, "GET {path} answered {status}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_sends_close_frame() {
    let (_cluster, relay) = start_stack().await;
    let mut ws = Ws::connect(&relay.ws_url(), Connect::Anonymous).await;
    assert_eq!(ws.ping().await["type"], "pong", "session established");

    relay.terminate();
    let code = ws.expect_close().await;
    assert_eq!(code, Some(1001), "SIGTERM closes client sockets with 1001 (going away)");
    let status = relay.wait_exit(std::time::Duration::from_secs(20)).await;
    assert!(status.success(), "the relay exits 0 after SIGTERM, got {status}");
}
