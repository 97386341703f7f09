//! Postgres error text never reaches clients: an owner's policy function or trigger that fails
//! with a message naming internals gets the client a fixed sentence with the SQLSTATE, on
//! subscribe, history (frame and HTTP) and publish (client frame and HTTP), while the relay's
//! log keeps the full error for the operator.

use realtime_e2e::{exec, http_get, http_post_json, start_stack, Connect, Ws};
use serde_json::{json, Value};

/// What the failing functions raise; must not appear in anything a client receives.
const SECRET: &str = "internal_table_payroll";

fn assert_hidden(what: &str, message: &str) {
    assert!(!message.contains(SECRET), "{what} leaks the database's error text: {message}");
    assert!(message.contains("SQLSTATE P0001"), "{what} names the SQLSTATE: {message}");
}

fn error_message(reply: &Value) -> String {
    assert_eq!(reply["ok"], false, "expected a refusal: {reply}");
    assert_eq!(reply["error"]["code"], "INTERNAL_ERROR", "{reply}");
    reply["error"]["message"].as_str().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_error_text_never_reaches_clients() {
    let (cluster, relay) = start_stack().await;
    let db = cluster.client().await;
    exec(
        &db,
        &format!(
            "CREATE FUNCTION public.policy_check() RETURNS boolean LANGUAGE plpgsql AS
               $$ BEGIN RAISE EXCEPTION 'lookup in {SECRET} failed'; END $$;
             GRANT EXECUTE ON FUNCTION public.policy_check() TO PUBLIC;
             CREATE FUNCTION public.reject_insert() RETURNS trigger LANGUAGE plpgsql AS
               $$ BEGIN IF NEW.channel = 'guarded' THEN RAISE EXCEPTION 'row for {SECRET} refused'; END IF;
                  RETURN NEW; END $$;
             CREATE TRIGGER reject_insert BEFORE INSERT ON realtime.messages
               FOR EACH ROW EXECUTE FUNCTION public.reject_insert();
             INSERT INTO realtime.channels (pattern) VALUES ('broken'), ('guarded');
             CREATE POLICY broken ON realtime.channels FOR SELECT
               USING (CASE WHEN pattern = 'broken' THEN public.policy_check() ELSE true END);
             CREATE POLICY publish_all ON realtime.messages FOR INSERT WITH CHECK (true);"
        ),
    )
    .await;

    let token = relay.token(Some("alice"), "authenticated");
    let mut ws = Ws::connect(&relay.ws_url(), Connect::Bearer(token)).await;
    let reply = ws.subscribe("broken").await;
    assert_hidden("subscribe reply", &error_message(&reply));
    let reply = ws.request(json!({"type": "history", "channel": "broken"})).await;
    assert_hidden("history reply", &error_message(&reply));
    let (status, body) = http_get(relay.port(), "/v1/channels/broken/history").await.unwrap();
    assert_eq!(status, 500, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_hidden("HTTP history", body["error"]["message"].as_str().unwrap_or_default());

    let publish = json!({"type": "publish", "channel": "guarded", "event": "e", "payload": {}});
    let reply = ws.request(publish).await;
    assert_hidden("publish reply", &error_message(&reply));
    let service = relay.token(None, "service_role");
    let message = json!({"channel": "guarded", "event": "e", "payload": {}});
    let (status, body) = http_post_json(relay.port(), "/v1/publish", Some(&service), &message).await.unwrap();
    assert_eq!(status, 500, "{body}");
    assert_hidden("HTTP publish", body["error"]["message"].as_str().unwrap_or_default());

    assert!(relay.log().contains(SECRET), "the operator's log keeps the database's message");
}
