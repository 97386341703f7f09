//! In-database tests (`#[pg_test]`) of the relay keys and sealed logical messages:
//! `realtime.relay_keys` (one random key at install, no grants), `realtime.generate_relay_key`,
//! `realtime.seal_message` (checked with the relay's own code, `realtime_core::seal`) and
//! `realtime.emit_message` (permission, empty key table).
//!
//! Each test runs in its own transaction that is rolled back.

#[pgrx::pg_schema]
mod tests {
    use crate::pg_test_sql::{count, one, run, try_sql};
    use pgrx::prelude::*;
    use realtime_core::seal::Sealed;

    #[pg_test]
    fn install_makes_one_random_key_that_only_the_owner_may_read() {
        assert!(count("SELECT count(*) FROM realtime.relay_keys") >= 1);
        assert_eq!(count("SELECT count(*) FROM realtime.relay_keys WHERE octet_length(key) <> 32"), 0);
        run("CREATE ROLE rt_seal_anon NOLOGIN");
        assert_eq!(
            one::<bool>("SELECT has_table_privilege('rt_seal_anon', 'realtime.relay_keys', 'SELECT')"),
            Some(false)
        );
        assert_eq!(
            one::<bool>(
                "SELECT has_function_privilege('rt_seal_anon', 'realtime.signal_relays()', 'EXECUTE')"
            ),
            Some(false)
        );
        // A key shorter than 256 bits is refused by the table.
        assert!(try_sql("INSERT INTO realtime.relay_keys (key) VALUES ('\\x0102')").starts_with("23514:"));
    }

    #[pg_test]
    fn generated_keys_are_32_fresh_bytes() {
        assert_eq!(one::<i32>("SELECT octet_length(realtime.generate_relay_key())"), Some(32));
        assert_eq!(
            one::<bool>("SELECT realtime.generate_relay_key() <> realtime.generate_relay_key()"),
            Some(true)
        );
    }

    #[pg_test]
    fn seal_message_output_verifies_with_the_relays_code() {
        let key = one::<Vec<u8>>("SELECT key FROM realtime.relay_keys ORDER BY id DESC LIMIT 1").unwrap();
        let id = one::<i64>("SELECT id FROM realtime.relay_keys ORDER BY id DESC LIMIT 1").unwrap();
        let sealed = one::<String>(&format!(
            "SELECT realtime.seal_message(key, id, 'realtime:broadcast', '{{\"channel\":\"c\"}}') \
             FROM realtime.relay_keys WHERE id = {id}"
        ))
        .unwrap();
        let parsed = Sealed::parse(sealed.as_bytes()).expect("a sealed body");
        assert_eq!(parsed.key_id, id);
        assert_eq!(parsed.verify(&key, "realtime:broadcast").unwrap(), br#"{"channel":"c"}"#);
        assert!(parsed.verify(&key, "realtime:presence").is_err(), "bound to its prefix");
        assert_eq!(
            try_sql("SELECT realtime.seal_message('\\x01'::bytea, 1, 'p', 'c')"),
            "22023: realtime: key is 1 bytes; at least 32 are required"
        );
    }

    #[pg_test]
    fn emit_message_needs_select_on_the_keys() {
        run("CREATE ROLE rt_seal_login NOLOGIN");
        run("SET LOCAL ROLE rt_seal_login");
        assert_eq!(
            try_sql("SELECT realtime.emit_message(true, 'realtime:broadcast', '{}')"),
            "42501: permission denied for table relay_keys"
        );
        run("RESET ROLE");
        run("GRANT SELECT ON realtime.relay_keys TO rt_seal_login");
        run("SET LOCAL ROLE rt_seal_login");
        assert_eq!(try_sql("SELECT realtime.emit_message(true, 'realtime:broadcast', '{}')"), "ok");
        run("RESET ROLE");
    }

    #[pg_test]
    fn emit_message_without_any_key_fails_loudly() {
        // Deleting every key is allowed (the keys trigger emits nothing when none is left) ...
        run("DELETE FROM realtime.relay_keys");
        // ... but nothing can be sealed any more, so broadcast says so instead of going nowhere
        // (channel changes still work: their re-check signal is skipped).
        assert!(try_sql("SELECT realtime.emit_message(true, 'realtime:x', '')")
            .starts_with("55000: realtime: realtime.relay_keys is empty"));
        run("INSERT INTO realtime.channels (pattern) VALUES ('tseal:%')");
        assert!(try_sql("SELECT realtime.broadcast('tseal:x', 'e')").starts_with("55000:"));
        // A new key (with the default) makes it work again.
        run("INSERT INTO realtime.relay_keys DEFAULT VALUES");
        assert_eq!(try_sql("SELECT realtime.broadcast('tseal:x', 'e')"), "ok");
    }
}
