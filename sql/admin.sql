-- realtime: the admin console's database side (docs/admin.md).
--
-- Runs after presence.sql and webhooks.sql (it adds policies to their tables). Grants are in
-- finalize.sql.
--
-- The relay serves the console (relay/src/transport/admin/, its statements in
-- relay/src/pg/admin/); every statement the console runs is run with
-- `SET LOCAL ROLE realtime_admin`, so the console can do exactly what this role may do and
-- nothing else, whatever the relay's own login may do. The relay's login must be a member
-- of it (`GRANT realtime_admin TO <login>`; `realtime-relay check` says when it is not).
--
-- realtime_admin may:
--   * read and write channel rows (every column; RLS policy below);
--   * read the message log, the cursor mapping, the settings, the webhook queue, presence and
--     the relays' heartbeats (RLS policies below where the table has RLS);
--   * publish and broadcast test messages (realtime.publish, realtime.broadcast);
--   * retry or discard one webhook delivery (realtime.retry_webhook_delivery,
--     realtime.discard_webhook_delivery), never edit the queue directly;
--   * append to realtime.admin_log and read it (no UPDATE or DELETE: the log is append-only).
--
-- A role is global to the cluster, not a member of the extension: it is created here when
-- missing and survives DROP EXTENSION (like the `anon` / `authenticated` roles policies use).

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'realtime_admin') THEN
        CREATE ROLE realtime_admin NOLOGIN;
    END IF;
END;
$$;

-- Every admin action that changed something: who (the name given at sign-in), on which relay,
-- what, on what, with which details. Written in the same transaction as the action, so an
-- action is logged exactly when it took effect.
CREATE TABLE realtime.admin_log (
    id       bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at       timestamptz NOT NULL DEFAULT now(),
    who      text        NOT NULL,
    relay_id text        NOT NULL,
    action   text        NOT NULL,
    target   text,
    detail   jsonb       NOT NULL DEFAULT '{}'
);
COMMENT ON TABLE realtime.admin_log IS
    'realtime admin console actions (append-only): who, on which relay, what, on what, when';

SELECT pg_catalog.pg_extension_config_dump('realtime.admin_log', '');
SELECT pg_catalog.pg_extension_config_dump('realtime.admin_log_id_seq', '');

-- Row-level security: the console sees and edits every row. Policies name realtime_admin only,
-- so no other role's view changes.
CREATE POLICY realtime_admin_all ON realtime.channels TO realtime_admin
    USING (true) WITH CHECK (true);
CREATE POLICY realtime_admin_read ON realtime.messages FOR SELECT TO realtime_admin
    USING (true);
CREATE POLICY realtime_admin_read ON realtime.presence FOR SELECT TO realtime_admin
    USING (true);
CREATE POLICY realtime_admin_read ON realtime.relays FOR SELECT TO realtime_admin
    USING (true);
