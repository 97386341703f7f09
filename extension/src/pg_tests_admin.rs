//! In-database tests (`#[pg_test]`) of the admin console's side (`sql/admin.sql`, the grants in
//! `sql/finalize.sql`, the delivery functions in `sql/webhooks.sql`): `realtime_admin` has
//! exactly the console's rights, sees every row through its own policies while other roles'
//! views do not change, and one webhook delivery can be retried or discarded.
//!
//! Each test runs in its own transaction that is rolled back; each uses its own channel prefix.

#[pgrx::pg_schema]
mod tests {
    use crate::pg_test_sql::{count, one, run, try_sql};
    use pgrx::prelude::*;

    fn can(privilege_check: &str) -> bool {
        one::<bool>(&format!("SELECT {privilege_check}")).unwrap()
    }

    #[pg_test]
    fn realtime_admin_has_exactly_the_console_rights() {
        let table = |t: &str, p: &str| can(&format!("has_table_privilege('realtime_admin', '{t}', '{p}')"));
        let function = |f: &str| can(&format!("has_function_privilege('realtime_admin', '{f}', 'EXECUTE')"));
        for p in ["SELECT", "INSERT", "UPDATE", "DELETE"] {
            assert!(table("realtime.channels", p), "channels {p}");
        }
        for t in [
            "realtime.messages",
            "realtime.commits",
            "realtime.config",
            "realtime.presence",
            "realtime.relays",
            "realtime.webhook_deliveries",
        ] {
            assert!(table(t, "SELECT"), "{t} SELECT");
            for p in ["INSERT", "UPDATE", "DELETE", "TRUNCATE"] {
                // every role may try an INSERT into messages (client publishes; RLS decides)
                if (t, p) != ("realtime.messages", "INSERT") {
                    assert!(!table(t, p), "{t} {p}");
                }
            }
        }
        assert!(table("realtime.admin_log", "SELECT") && table("realtime.admin_log", "INSERT"));
        assert!(
            !table("realtime.admin_log", "UPDATE") && !table("realtime.admin_log", "DELETE"),
            "the log is append-only"
        );
        for f in [
            "realtime.publish(text, text, jsonb)",
            "realtime.broadcast(text, text, jsonb)",
            "realtime.retry_webhook_delivery(bigint)",
            "realtime.discard_webhook_delivery(bigint)",
        ] {
            assert!(function(f), "{f}");
        }
        for f in [
            "realtime.claim_webhook_deliveries(integer, double precision, text, text[])",
            "realtime.finish_webhook_deliveries(bigint[], integer[], text[], integer[], text[], double precision[])",
            "realtime.add_ws_audience(text[], integer[])",
            "realtime.retry_failed_webhooks(bigint, text, timestamptz)",
            "realtime.cleanup_messages(integer)",
        ] {
            assert!(!function(f), "{f}");
        }
        assert!(!can(
            "(SELECT rolcanlogin OR rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = 'realtime_admin')"
        ));
        for f in ["realtime.retry_webhook_delivery(bigint)", "realtime.discard_webhook_delivery(bigint)"] {
            assert!(!can(&format!("has_function_privilege('public', '{f}', 'EXECUTE')")), "PUBLIC {f}");
        }
    }

    #[pg_test]
    fn realtime_admin_sees_every_row_and_other_roles_views_do_not_change() {
        run("DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'rt_test_user') THEN \
             CREATE ROLE rt_test_user NOLOGIN; END IF; END $$");
        run("INSERT INTO realtime.channels (pattern, webhook_urls) VALUES ('a01:%', ARRAY['http://a.example/'])");
        let id = one::<String>("SELECT realtime.publish('a01:x', 'e')::text").unwrap();
        run("SET LOCAL ROLE realtime_admin");
        assert_eq!(count("SELECT count(*) FROM realtime.channels WHERE pattern = 'a01:%'"), 1);
        assert_eq!(count(&format!("SELECT count(*) FROM realtime.messages WHERE id = '{id}'")), 1);
        assert_eq!(
            count(&format!("SELECT count(*) FROM realtime.webhook_deliveries WHERE message_id = '{id}'")),
            1
        );
        run("UPDATE realtime.channels SET enabled = false WHERE pattern = 'a01:%'");
        run("INSERT INTO realtime.admin_log (who, relay_id, action) VALUES ('t', 'r', 'update_channel')");
        assert!(try_sql("DELETE FROM realtime.admin_log").starts_with("42501:"), "append-only");
        assert!(try_sql("UPDATE realtime.webhook_deliveries SET status = 'delivered'").starts_with("42501:"));
        run("RESET ROLE");
        run("SET LOCAL ROLE rt_test_user");
        assert_eq!(
            count("SELECT count(*) FROM realtime.channels WHERE pattern = 'a01:%'"),
            0,
            "no policy of its own"
        );
        run("RESET ROLE");
    }

    #[pg_test]
    fn one_failed_delivery_is_retried_or_discarded() {
        run("INSERT INTO realtime.channels (pattern, webhook_urls) VALUES ('a02', ARRAY['http://a.example/', 'http://b.example/'])");
        run("SELECT realtime.publish('a02', 'e')");
        let a = one::<i64>(
            "SELECT id FROM realtime.webhook_deliveries WHERE channel = 'a02' AND url = 'http://a.example/'",
        )
        .unwrap();
        let b = one::<i64>(
            "SELECT id FROM realtime.webhook_deliveries WHERE channel = 'a02' AND url = 'http://b.example/'",
        )
        .unwrap();
        let state = |id: i64| {
            one::<String>(&format!(
                "SELECT status || '/' || attempts FROM realtime.webhook_deliveries WHERE id = {id}"
            ))
            .unwrap()
        };
        assert_eq!(
            one::<bool>(&format!("SELECT realtime.retry_webhook_delivery({a})")),
            Some(false),
            "pending: nothing to retry"
        );
        run(&format!(
            "UPDATE realtime.webhook_deliveries SET status = 'failed', attempts = 8, next_attempt_at = now() + interval '1 hour', \
             locked_by = 'r' WHERE id IN ({a}, {b})"
        ));
        assert_eq!(one::<bool>(&format!("SELECT realtime.retry_webhook_delivery({a})")), Some(true));
        assert_eq!(state(a), "pending/0");
        assert_eq!(count(&format!("SELECT count(*) FROM realtime.webhook_deliveries WHERE id = {a} AND next_attempt_at <= now() AND locked_by IS NULL")), 1, "due now");
        assert_eq!(state(b), "failed/8", "only that one");
        assert_eq!(one::<bool>(&format!("SELECT realtime.discard_webhook_delivery({b})")), Some(true));
        assert_eq!(state(b), "discarded/8");
        assert_eq!(
            one::<bool>(&format!("SELECT realtime.discard_webhook_delivery({b})")),
            Some(false),
            "once"
        );
        assert_eq!(
            one::<bool>(&format!("SELECT realtime.retry_webhook_delivery({b})")),
            Some(true),
            "a discarded one can come back"
        );
        assert_eq!(one::<bool>("SELECT realtime.retry_webhook_delivery(-1)"), Some(false));
        // a relay that was still sending the discarded delivery cannot write it back
        run(&format!("SELECT realtime.discard_webhook_delivery({a})"));
        run(&format!(
            "SELECT realtime.finish_webhook_deliveries(ARRAY[{a}]::bigint[], ARRAY[0], ARRAY['delivered'], ARRAY[200], ARRAY[NULL]::text[], ARRAY[0]::float8[])"
        ));
        assert_eq!(state(a), "discarded/0");
    }
}
