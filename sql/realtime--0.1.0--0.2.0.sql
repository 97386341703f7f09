-- Upgrade realtime 0.1.0 → 0.2.0 (`ALTER EXTENSION realtime UPDATE TO '0.2.0'`).
--
-- Until 0.2.0 is released this file may still change; once released it is frozen like every
-- released script (its checksum goes into sql/released.sha256, and later changes go into
-- realtime--0.2.0--<next>.sql).
--
-- What belongs here: every object that a fresh 0.2.0 install (the script pgrx generates from
-- extension/src and sql/*.sql) has and 0.1.0 lacks, or has differently, written so that the
-- result is identical to a fresh install. tests/tests/upgrade.rs proves it by comparing catalog
-- snapshots of `CREATE EXTENSION realtime VERSION '0.1.0'; ALTER EXTENSION realtime UPDATE` and
-- `CREATE EXTENSION realtime`. The simplest way to get the statements right: copy them from the
-- generated script (`cargo pgrx schema` in extension/, or the realtime--0.2.0.sql that
-- `make install-ext` writes), in that script's order, keeping the grants/revokes of
-- sql/finalize.sql that apply to the new objects.
--
-- Rules for upgrade scripts:
-- - It runs as one transaction, inside the extension's script context: new objects become
--   extension members automatically; use `ALTER EXTENSION realtime DROP ...` before dropping one.
-- - C functions are served by the newly installed realtime.so: a Rust `#[pg_extern]` that was
--   renamed, removed or got a new signature needs `CREATE OR REPLACE FUNCTION` / `DROP FUNCTION`
--   here; symbols (`<name>_wrapper`) used by 0.1.0's functions must stay exported.
-- - Tables keep their data: `ALTER TABLE ... ADD COLUMN`, never drop-and-recreate. The test
--   compares column positions, so a new column goes at the END of its CREATE TABLE in
--   sql/schema.sql (or wherever the fresh install creates it), matching where ADD COLUMN puts it.
-- - Everything the fresh install does must be repeated: new tables with their indexes, RLS,
--   policies, COMMENTs, `pg_extension_config_dump(...)` calls (extconfig is compared), seed rows,
--   publication changes, and the GRANT/REVOKE lines of sql/finalize.sql for new objects.
-- - A changed function body (SQL, PL/pgSQL or a Rust #[pg_extern]'s attributes) needs
--   `CREATE OR REPLACE FUNCTION` with the text of the generated script: bodies are compared
--   character for character (pg_get_functiondef).
-- - Do not use `\echo`, psql variables or `CREATE EXTENSION` here; `@extschema@` is `realtime`.
--
-- 0.2.0: presence (sql/presence.sql). The relay's new metrics and the docs need nothing from the
-- extension; the same C symbols are exported.

-- ---- presence (from sql/presence.sql) ----

-- One row per connection tracking a channel.
CREATE UNLOGGED TABLE realtime.presence (
    channel     text        NOT NULL,
    conn_id     text        NOT NULL,
    presence_id text        NOT NULL,
    relay_id    text        NOT NULL,
    user_id     text,
    state       jsonb       NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(state) = 'object'),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (channel, conn_id)
);
COMMENT ON TABLE realtime.presence IS
    'realtime presence: one row per connection tracking a channel; written by relays only';

-- Removing every row of a relay (it died, restarted or stopped).
CREATE INDEX presence_relay_idx ON realtime.presence (relay_id);

-- Live relays and their heartbeats; a relay whose heartbeat is older than the timeout is
-- declared dead by another relay, which deletes its row and its presence rows.
CREATE UNLOGGED TABLE realtime.relays (
    relay_id     text        PRIMARY KEY,
    epoch        text        NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE realtime.relays IS
    'realtime relays serving this database, with heartbeats (presence failure detection)';

-- No policies and no grants (see finalize.sql): only the owner, superusers and roles the owner
-- grants (the relay's login) see or change rows.
ALTER TABLE realtime.presence ENABLE ROW LEVEL SECURITY;
ALTER TABLE realtime.relays ENABLE ROW LEVEL SECURITY;
