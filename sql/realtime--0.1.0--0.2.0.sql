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
-- 0.2.0: presence (sql/presence.sql), webhooks (sql/webhooks.sql, cleanup_messages also trims
-- webhook deliveries), the admin console's role, log and policies (sql/admin.sql). The relay's
-- new metrics and the docs need nothing from the extension; the same C symbols are exported.
-- Changes to realtime.channels signal relays to re-check subscriptions (sql/api.sql).
-- realtime: logical messages are sealed with a key of realtime.relay_keys (issue 17).
-- realtime.visible_rows: the per-subscriber row-level security of Supabase postgres_changes
-- (sql/changes.sql; the relay calls it, docs/supabase.md).

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
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    -- What the relay last reported for the admin console (connections, subscriptions, its slot,
    -- replication lag, subscribers per channel row), every few seconds while its console is on
    -- (relay/src/transport/admin/report.rs); NULL when it never reported.
    stats        jsonb
);
COMMENT ON TABLE realtime.relays IS
    'realtime relays serving this database, with heartbeats (presence failure detection)';

-- No policies and no grants (see finalize.sql): only the owner, superusers and roles the owner
-- grants (the relay's login) see or change rows.
ALTER TABLE realtime.presence ENABLE ROW LEVEL SECURITY;
ALTER TABLE realtime.relays ENABLE ROW LEVEL SECURITY;

-- ---- webhooks (from sql/webhooks.sql) ----

-- realtime: durable webhook deliveries.
--
-- Runs after api.sql (it uses realtime.match_channel). Grants are in finalize.sql.
--
-- One row per stored message x webhook URL of the channel it matched, inserted in the publishing
-- transaction by the row trigger below: a rolled-back publish enqueues nothing, a committed one
-- is never lost. Relays claim due rows with FOR UPDATE SKIP LOCKED, send them (signed, Standard
-- Webhooks) and write the outcome back. Ephemeral messages (realtime.broadcast, persist:false)
-- are not stored and get no webhooks.
--
-- Why a trigger with a WHEN clause: every insert path (realtime.publish, the broadcast_changes
-- trigger through publish, the relay's client publish) sets messages.wh_audience_count to the
-- channel's webhook count, so messages of channels without webhooks never call the function:
-- Postgres evaluates the WHEN clause inline and queues nothing.

CREATE TABLE realtime.webhook_deliveries (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id      uuid        NOT NULL,
    channel_id      bigint      NOT NULL,
    channel         text        NOT NULL,
    url             text        NOT NULL,
    status          text        NOT NULL DEFAULT 'pending'
                                CHECK (status IN ('pending', 'delivered', 'failed', 'discarded')),
    attempts        integer     NOT NULL DEFAULT 0,
    -- when the next attempt is due; while a relay holds the delivery, the end of its lease
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    locked_by       text,
    last_status     integer,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    UNIQUE (message_id, url)
);
COMMENT ON TABLE realtime.webhook_deliveries IS
    'realtime webhook queue: one row per stored message and webhook URL (status, attempts, lease, last outcome)';

-- What relays claim: pending rows by due time.
CREATE INDEX webhook_deliveries_due_idx ON realtime.webhook_deliveries (next_attempt_at)
    WHERE status = 'pending';
-- Retention (realtime.cleanup_messages) deletes by age.
CREATE INDEX webhook_deliveries_created_at_brin_idx ON realtime.webhook_deliveries
    USING brin (created_at);

SELECT pg_catalog.pg_extension_config_dump('realtime.webhook_deliveries', '');
SELECT pg_catalog.pg_extension_config_dump('realtime.webhook_deliveries_id_seq', '');

------------------------------------------------------------------------------------------------
-- Channel webhook settings are checked when written, with a clear error (SQLSTATE 22023):
-- every URL is http(s)://host..., at most 2048 bytes, without whitespace; a whsec_ secret is
-- valid base64. (Whether the host is a private address is decided by the relay, at send time.)

CREATE FUNCTION realtime.check_webhook_settings() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_url text;
BEGIN
    FOREACH v_url IN ARRAY COALESCE(NEW.webhook_urls, '{}'::text[]) LOOP
        IF v_url IS NULL OR v_url !~* '^https?://[^/?#[:space:]]+' OR v_url ~ '[[:space:]]'
           OR octet_length(v_url) > 2048 THEN
            RAISE EXCEPTION 'realtime: webhook URL % is not valid', COALESCE(quote_literal(v_url), 'NULL')
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Use absolute http:// or https:// URLs without spaces, at most 2048 bytes.';
        END IF;
    END LOOP;
    IF NEW.webhook_secret LIKE 'whsec\_%' THEN
        BEGIN
            PERFORM decode(substr(NEW.webhook_secret, 7), 'base64');
        EXCEPTION WHEN OTHERS THEN
            RAISE EXCEPTION 'realtime: webhook_secret starts with whsec_ but the rest is not valid base64'
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Use realtime.generate_webhook_secret(), or a secret without the whsec_ prefix.';
        END;
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER channels_check_webhooks
    BEFORE INSERT OR UPDATE OF webhook_urls, webhook_secret ON realtime.channels
    FOR EACH ROW EXECUTE FUNCTION realtime.check_webhook_settings();

------------------------------------------------------------------------------------------------
-- Enqueue: AFTER INSERT on messages, only for rows whose wh_audience_count > 0.
--
-- The URLs come from the channel the message's name matches now (realtime.match_channel), never
-- from the row's channel_id, which a direct INSERT could set to another channel. When the
-- number of distinct URLs differs from wh_audience_count (a stale count), the row is corrected.

CREATE FUNCTION realtime.enqueue_webhooks() RETURNS trigger
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_channel bigint;
    v_urls    text[];
    v_count   integer := 0;
BEGIN
    v_channel := realtime.match_channel(NEW.channel);
    IF v_channel IS NOT NULL THEN
        SELECT c.webhook_urls INTO v_urls FROM realtime.channels c WHERE c.id = v_channel;
        INSERT INTO realtime.webhook_deliveries (message_id, channel_id, channel, url, created_at)
        SELECT DISTINCT NEW.id, v_channel, NEW.channel, u.url, NEW.created_at
          FROM unnest(v_urls) AS u(url)
         WHERE u.url IS NOT NULL AND u.url <> '';
        GET DIAGNOSTICS v_count = ROW_COUNT;
    END IF;
    IF v_count <> NEW.wh_audience_count THEN
        UPDATE realtime.messages m SET wh_audience_count = v_count WHERE m.id = NEW.id;
    END IF;
    RETURN NULL;
END;
$$;
COMMENT ON FUNCTION realtime.enqueue_webhooks() IS
    'Trigger: enqueue one webhook delivery per URL of the channel a new message matched';

CREATE TRIGGER enqueue_webhooks
    AFTER INSERT ON realtime.messages
    FOR EACH ROW
    WHEN (NEW.wh_audience_count > 0)
    EXECUTE FUNCTION realtime.enqueue_webhooks();

------------------------------------------------------------------------------------------------
-- channel_webhook_count: what a client publish (the relay's INSERT under the client's role, who
-- may not read webhook_urls) stores in wh_audience_count. Reveals a count, never a URL.

CREATE FUNCTION realtime.channel_webhook_count(channel_id bigint) RETURNS integer
LANGUAGE sql STABLE PARALLEL SAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT COALESCE((SELECT pg_catalog.cardinality(c.webhook_urls)
                       FROM realtime.channels c
                      WHERE c.id = channel_id AND c.enabled), 0)
$$;
COMMENT ON FUNCTION realtime.channel_webhook_count(bigint) IS
    'Number of webhook URLs of an enabled channel row (0 when none or not found)';

------------------------------------------------------------------------------------------------
-- generate_webhook_secret: a Standard Webhooks secret, whsec_ + base64 of 32 random bytes
-- (from gen_random_uuid, i.e. pg_strong_random; 244 random bits).

CREATE FUNCTION realtime.generate_webhook_secret() RETURNS text
LANGUAGE sql VOLATILE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT 'whsec_' || pg_catalog.encode(
        pg_catalog.uuid_send(pg_catalog.gen_random_uuid())
        || pg_catalog.uuid_send(pg_catalog.gen_random_uuid()), 'base64')
$$;
COMMENT ON FUNCTION realtime.generate_webhook_secret() IS
    'A new webhook secret in the Standard Webhooks format (whsec_ + base64 of 32 random bytes)';

------------------------------------------------------------------------------------------------
-- Operations: delivery stats per channel row, the failed deliveries, and re-queueing them.

CREATE VIEW realtime.webhook_stats AS
SELECT d.channel_id,
       c.pattern,
       count(*) FILTER (WHERE d.status = 'delivered') AS delivered,
       count(*) FILTER (WHERE d.status = 'failed')    AS failed,
       count(*) FILTER (WHERE d.status = 'pending')   AS pending,
       percentile_cont(0.5) WITHIN GROUP (
           ORDER BY extract(epoch FROM d.delivered_at - d.created_at) * 1000)
           FILTER (WHERE d.status = 'delivered')      AS p50_latency_ms,
       percentile_cont(0.99) WITHIN GROUP (
           ORDER BY extract(epoch FROM d.delivered_at - d.created_at) * 1000)
           FILTER (WHERE d.status = 'delivered')      AS p99_latency_ms
  FROM realtime.webhook_deliveries d
  LEFT JOIN realtime.channels c ON c.id = d.channel_id
 GROUP BY d.channel_id, c.pattern;
COMMENT ON VIEW realtime.webhook_stats IS
    'Webhook deliveries per channel row: delivered / failed / pending and p50/p99 latency (message created -> delivered, ms)';

CREATE VIEW realtime.webhook_failures AS
SELECT d.id,
       d.message_id,
       d.channel_id,
       d.channel,
       d.url,
       d.attempts,
       d.last_status,
       d.last_error,
       d.created_at,
       d.updated_at AS failed_at
  FROM realtime.webhook_deliveries d
 WHERE d.status = 'failed';
COMMENT ON VIEW realtime.webhook_failures IS
    'Webhook deliveries that failed for good, with the last HTTP status and error';

CREATE FUNCTION realtime.retry_failed_webhooks(
    channel_id bigint DEFAULT NULL,
    url text DEFAULT NULL,
    failed_since timestamptz DEFAULT NULL
) RETURNS integer
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_count integer;
BEGIN
    UPDATE realtime.webhook_deliveries d
       SET status = 'pending', attempts = 0, next_attempt_at = pg_catalog.now(),
           locked_by = NULL, updated_at = pg_catalog.now()
     WHERE d.status = 'failed'
       AND (retry_failed_webhooks.channel_id IS NULL
            OR d.channel_id = retry_failed_webhooks.channel_id)
       AND (retry_failed_webhooks.url IS NULL OR d.url = retry_failed_webhooks.url)
       AND (failed_since IS NULL OR d.updated_at >= failed_since);
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END;
$$;
COMMENT ON FUNCTION realtime.retry_failed_webhooks(bigint, text, timestamptz) IS
    'Re-queue failed webhook deliveries (all, or of one channel row / URL / since a time); returns how many';

-- One delivery at a time, for the admin console (docs/admin.md) and operators: retry puts a
-- failed or discarded delivery back in the queue with fresh attempts (due now); discard gives up
-- on a failed or still pending one (status 'discarded', kept for the record; retention removes
-- it). A relay still sending a discarded delivery cannot write its outcome back
-- (finish_webhook_deliveries only writes pending rows). Both return whether the row changed.

CREATE FUNCTION realtime.retry_webhook_delivery(delivery_id bigint) RETURNS boolean
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE realtime.webhook_deliveries d
       SET status = 'pending', attempts = 0, next_attempt_at = pg_catalog.now(),
           locked_by = NULL, updated_at = pg_catalog.now()
     WHERE d.id = delivery_id AND d.status IN ('failed', 'discarded');
    RETURN FOUND;
END;
$$;
COMMENT ON FUNCTION realtime.retry_webhook_delivery(bigint) IS
    'Re-queue one failed or discarded webhook delivery (attempts start again); true if it was re-queued';

CREATE FUNCTION realtime.discard_webhook_delivery(delivery_id bigint) RETURNS boolean
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE realtime.webhook_deliveries d
       SET status = 'discarded', locked_by = NULL, updated_at = pg_catalog.now()
     WHERE d.id = delivery_id AND d.status IN ('failed', 'pending');
    RETURN FOUND;
END;
$$;
COMMENT ON FUNCTION realtime.discard_webhook_delivery(bigint) IS
    'Give up one failed or pending webhook delivery (status discarded); true if it was discarded';

------------------------------------------------------------------------------------------------
-- The relay's side of the queue. SECURITY DEFINER, so the relay's login needs only EXECUTE on
-- these (revoked from PUBLIC in finalize.sql), not RLS-bypassing reads of messages and secrets.

-- Claims up to max_rows due deliveries for lease_ms, skipping busy_urls (URLs at their
-- concurrency limit on this relay): attempts + 1, next_attempt_at = end of the lease. Returns
-- what the request needs; message_exists / channel_exists are false when retention or the owner
-- deleted them.
CREATE FUNCTION realtime.claim_webhook_deliveries(
    max_rows integer,
    lease_ms double precision,
    relay text,
    busy_urls text[] DEFAULT '{}'
) RETURNS TABLE (
    id bigint, attempt integer, url text, message_id text, message_exists boolean,
    channel_exists boolean, channel text, event text, payload text, created_at text,
    sender_type text, sender_id text, secret text
)
LANGUAGE sql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    WITH due AS (
        SELECT d.id, d.message_id, d.channel_id FROM realtime.webhook_deliveries d
         WHERE d.status = 'pending' AND d.next_attempt_at <= now()
           AND d.url <> ALL(COALESCE(busy_urls, '{}'))
         ORDER BY d.next_attempt_at
         LIMIT max_rows
         FOR UPDATE OF d SKIP LOCKED)
    UPDATE realtime.webhook_deliveries d
       SET attempts = d.attempts + 1,
           next_attempt_at = now() + lease_ms * interval '1 millisecond',
           locked_by = relay, updated_at = now()
      FROM due
      LEFT JOIN realtime.messages m ON m.id = due.message_id
      LEFT JOIN realtime.channels c ON c.id = due.channel_id
     WHERE d.id = due.id
    RETURNING d.id, d.attempts, d.url, d.message_id::text, m.id IS NOT NULL, c.id IS NOT NULL,
              m.channel, m.event, m.payload::text,
              to_char(m.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
              m.sender_type::text, m.sender_id, c.webhook_secret
$$;
COMMENT ON FUNCTION realtime.claim_webhook_deliveries(integer, double precision, text, text[]) IS
    'Relay: claim due webhook deliveries under a lease (FOR UPDATE SKIP LOCKED)';

-- Writes attempt outcomes ('delivered' | 'retry' | 'failed' | 'release'). attempts[i] is the
-- claim's attempt number: a retry/failure/release is written only if nobody re-claimed the row
-- since; a success whenever the row is still pending. wh_delivered_count is raised only by the
-- write that moves a row to delivered, so each delivery counts once.
CREATE FUNCTION realtime.finish_webhook_deliveries(
    ids bigint[], attempts integer[], outcomes text[], http_statuses integer[], errors text[],
    delays_ms double precision[]
) RETURNS void
LANGUAGE sql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    WITH r AS (
        SELECT * FROM unnest(ids, attempts, outcomes, http_statuses, errors, delays_ms)
            AS r(id, attempt, outcome, http_status, error, delay_ms)),
    upd AS (
        UPDATE realtime.webhook_deliveries d SET
            status = CASE r.outcome WHEN 'delivered' THEN 'delivered' WHEN 'failed' THEN 'failed'
                     ELSE 'pending' END,
            attempts = CASE WHEN r.outcome = 'release' THEN d.attempts - 1 ELSE d.attempts END,
            next_attempt_at = CASE WHEN r.outcome IN ('retry', 'release')
                              THEN now() + r.delay_ms * interval '1 millisecond'
                              ELSE d.next_attempt_at END,
            locked_by = NULL,
            last_status = CASE WHEN r.outcome = 'release' THEN d.last_status ELSE r.http_status END,
            last_error = CASE WHEN r.outcome = 'release' THEN d.last_error ELSE r.error END,
            delivered_at = CASE WHEN r.outcome = 'delivered' THEN now() ELSE d.delivered_at END,
            updated_at = now()
          FROM r
         WHERE d.id = r.id AND d.status = 'pending'
           AND (r.outcome = 'delivered' OR d.attempts = r.attempt)
        RETURNING d.message_id, r.outcome)
    UPDATE realtime.messages m SET wh_delivered_count = m.wh_delivered_count + s.n
      FROM (SELECT upd.message_id, count(*)::integer AS n FROM upd
             WHERE upd.outcome = 'delivered' GROUP BY upd.message_id) s
     WHERE m.id = s.message_id
$$;
COMMENT ON FUNCTION realtime.finish_webhook_deliveries(bigint[], integer[], text[], integer[], text[], double precision[]) IS
    'Relay: write webhook attempt outcomes and count successes on the messages';

CREATE FUNCTION realtime.webhook_queue_depth() RETURNS bigint
LANGUAGE sql STABLE PARALLEL SAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT count(*) FROM realtime.webhook_deliveries d WHERE d.status = 'pending'
$$;
COMMENT ON FUNCTION realtime.webhook_queue_depth() IS 'Relay: pending webhook deliveries';

-- Adds WebSocket audience counts (message id, subscribers) to realtime.messages.ws_audience_count;
-- each relay adds its own.
CREATE FUNCTION realtime.add_ws_audience(ids text[], counts integer[]) RETURNS void
LANGUAGE sql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE realtime.messages m SET ws_audience_count = m.ws_audience_count + u.n
      FROM (SELECT a.id::uuid AS id, sum(a.n)::integer AS n
              FROM unnest(ids, counts) AS a(id, n) GROUP BY 1) u
     WHERE m.id = u.id
$$;
COMMENT ON FUNCTION realtime.add_ws_audience(text[], integer[]) IS
    'Relay: add per-message WebSocket subscriber counts';

-- ---- cleanup_messages also trims webhook deliveries (sql/api.sql) ----

CREATE OR REPLACE FUNCTION realtime.cleanup_messages(batch integer DEFAULT 1000) RETURNS integer
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_cutoff  timestamptz;
    v_deleted integer;
BEGIN
    IF batch IS NULL OR batch < 1 THEN
        RAISE EXCEPTION 'realtime: cleanup_messages batch must be at least 1, got %',
                        COALESCE(batch::text, 'NULL')
              USING ERRCODE = 'invalid_parameter_value';
    END IF;

    SELECT pg_catalog.now() - cfg.retention INTO v_cutoff FROM realtime.config cfg;
    IF v_cutoff IS NULL THEN
        RETURN 0;
    END IF;

    DELETE FROM realtime.messages m
     WHERE m.id IN (SELECT o.id FROM realtime.messages o
                     WHERE o.created_at < v_cutoff
                     ORDER BY o.created_at
                     LIMIT batch
                     FOR UPDATE SKIP LOCKED);
    GET DIAGNOSTICS v_deleted = ROW_COUNT;

    DELETE FROM realtime.commits k
     WHERE k.xid IN (SELECT o.xid FROM realtime.commits o
                      WHERE o.committed_at < v_cutoff
                      ORDER BY o.commit_lsn
                      LIMIT batch
                      FOR UPDATE SKIP LOCKED);

    -- Webhook deliveries (sql/webhooks.sql) follow their messages' retention.
    DELETE FROM realtime.webhook_deliveries w
     WHERE w.id IN (SELECT o.id FROM realtime.webhook_deliveries o
                     WHERE o.created_at < v_cutoff
                     LIMIT batch
                     FOR UPDATE SKIP LOCKED);

    RETURN v_deleted;
END;
$$;
COMMENT ON FUNCTION realtime.cleanup_messages(integer) IS
    'Delete up to batch messages (and cursor-mapping rows) older than realtime.config.retention';

-- ---- grants for the webhook functions (sql/finalize.sql) ----

GRANT EXECUTE ON FUNCTION realtime.channel_webhook_count(bigint) TO PUBLIC;
REVOKE EXECUTE ON FUNCTION
    realtime.enqueue_webhooks(),
    realtime.check_webhook_settings(),
    realtime.claim_webhook_deliveries(integer, double precision, text, text[]),
    realtime.finish_webhook_deliveries(bigint[], integer[], text[], integer[], text[], double precision[]),
    realtime.webhook_queue_depth(),
    realtime.add_ws_audience(text[], integer[]),
    realtime.retry_failed_webhooks(bigint, text, timestamptz)
FROM PUBLIC;

-- The message log keeps three indexes instead of four (publish pays for each): (channel, xid,
-- seq) serves what (channel, seq) and (xid) served, see sql/schema.sql.
DROP INDEX realtime.messages_channel_seq_idx;
DROP INDEX realtime.messages_xid_idx;
CREATE INDEX messages_channel_xid_idx ON realtime.messages (channel, xid, seq);

-- sender_type: a domain instead of the column's CHECK constraint (see sql/schema.sql). The
-- column's type changes, so Postgres rewrites realtime.messages once, checking every row.
CREATE DOMAIN realtime.sender_kind AS text
    CONSTRAINT sender_kind_check CHECK (VALUE IN ('system', 'user'));
ALTER TABLE realtime.messages
    DROP CONSTRAINT messages_sender_type_check,
    ALTER COLUMN sender_type TYPE realtime.sender_kind,
    ALTER COLUMN sender_type SET DEFAULT 'system';

-- can_subscribe in PL/pgSQL, which keeps its plan for the session (see sql/api.sql).
CREATE OR REPLACE FUNCTION realtime.can_subscribe(channel text) RETURNS boolean
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM pg_catalog.set_config('realtime.channel_name', COALESCE($1, ''), true);
    RETURN EXISTS (
        SELECT 1 FROM realtime.channels c
        WHERE c.id OPERATOR(pg_catalog.=) realtime.match_channel($1)
    );
END;
$$;

-- ---- admin console (sql/admin.sql; webhook delivery retry/discard in sql/webhooks.sql) ----

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

-- grants (sql/finalize.sql)
REVOKE EXECUTE ON FUNCTION
    realtime.retry_webhook_delivery(bigint),
    realtime.discard_webhook_delivery(bigint)
FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE ON realtime.channels TO realtime_admin;
GRANT SELECT ON realtime.messages, realtime.commits, realtime.config, realtime.presence,
    realtime.relays, realtime.webhook_deliveries TO realtime_admin;
GRANT SELECT, INSERT ON realtime.admin_log TO realtime_admin;
GRANT EXECUTE ON FUNCTION
    realtime.publish(text, text, jsonb),
    realtime.broadcast(text, text, jsonb),
    realtime.retry_webhook_delivery(bigint),
    realtime.discard_webhook_delivery(bigint)
TO realtime_admin;

-- ---- sealed logical messages (sql/api.sql, extension/src/api/seal.rs; issue 17) ----
-- Relays deliver only realtime: messages sealed with a key of realtime.relay_keys; broadcast
-- and the channels trigger emit through realtime.emit_message from now on.

CREATE  FUNCTION realtime."generate_relay_key"() RETURNS bytea /* Vec < u8 > */
STRICT VOLATILE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'generate_relay_key_wrapper';

CREATE  FUNCTION realtime."seal_message"(
	"key" bytea, /* & [u8] */
	"key_id" bigint, /* i64 */
	"prefix" TEXT, /* & str */
	"content" TEXT /* & str */
) RETURNS TEXT /* String */
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'seal_message_wrapper';

CREATE TABLE realtime.relay_keys (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key        bytea       NOT NULL DEFAULT realtime.generate_relay_key()
                           CHECK (pg_catalog.octet_length(key) >= 32),
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE realtime.relay_keys IS
    'realtime: keys that seal logical messages for relays; the newest seals, every row verifies';

INSERT INTO realtime.relay_keys DEFAULT VALUES;

-- emit_message: pg_logical_emit_message with the body sealed by the newest key. SECURITY
-- INVOKER: a caller who may not read realtime.relay_keys gets "permission denied for table
-- relay_keys". broadcast and signal_relays (SECURITY DEFINER) and the relay's own
-- writes emit through it.
CREATE FUNCTION realtime.emit_message(transactional boolean, prefix text, content text)
RETURNS pg_lsn
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_id  bigint;
    v_key bytea;
BEGIN
    SELECT k.id, k.key INTO v_id, v_key FROM realtime.relay_keys k ORDER BY k.id DESC LIMIT 1;
    IF v_id IS NULL THEN
        RAISE EXCEPTION 'realtime: realtime.relay_keys is empty; relays would drop this message'
              USING ERRCODE = 'object_not_in_prerequisite_state',
                    HINT = 'Add a key: INSERT INTO realtime.relay_keys DEFAULT VALUES;';
    END IF;
    RETURN pg_catalog.pg_logical_emit_message(
        transactional, prefix, realtime.seal_message(v_key, v_id, prefix, content));
END;
$$;
COMMENT ON FUNCTION realtime.emit_message(boolean, text, text) IS
    'pg_logical_emit_message with the body sealed for relays (needs SELECT on realtime.relay_keys)';

-- Signals to relays, in commit order: a statement trigger emits an empty sealed logical message
-- whose prefix is the trigger's argument. `realtime:keys` (on relay_keys) makes every relay read
-- the keys again at once, so a deleted key stops verifying right after its DELETE commits;
-- `realtime:channels` (on channels, below) makes it re-check open subscriptions. SECURITY
-- DEFINER: whoever may change those tables needs no right to read the keys. Nothing is emitted
-- once no key is left (nothing could be sealed; the scheduled re-check still runs).
CREATE FUNCTION realtime.signal_relays() RETURNS trigger
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM realtime.relay_keys) THEN
        PERFORM realtime.emit_message(true, TG_ARGV[0], '');
    END IF;
    RETURN NULL;
END;
$$;
COMMENT ON FUNCTION realtime.signal_relays() IS
    'Trigger: tells relays, by an empty sealed logical message with prefix TG_ARGV[0], that the table changed';

CREATE TRIGGER relay_keys_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON realtime.relay_keys
    FOR EACH STATEMENT EXECUTE FUNCTION realtime.signal_relays('realtime:keys');
ALTER TABLE realtime.relay_keys ENABLE ALWAYS TRIGGER relay_keys_changed;

CREATE OR REPLACE FUNCTION realtime.broadcast(channel text, event text, payload jsonb DEFAULT '{}')
RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    v_limit   integer;
    v_size    integer;
    v_chan_id bigint;
BEGIN
    channel := realtime.validate_channel(channel);
    event := realtime.validate_event(event);
    payload := COALESCE(payload, '{}'::jsonb);
    v_chan_id := realtime.match_channel_invoker(channel);

    SELECT cfg.max_payload_bytes INTO v_limit FROM realtime.config cfg;

    v_size := pg_catalog.octet_length(payload::text);
    IF v_size > v_limit THEN
        RAISE EXCEPTION 'realtime: payload is % bytes, over the limit of % bytes (realtime.config.max_payload_bytes)',
                        v_size, v_limit
              USING ERRCODE = 'program_limit_exceeded',
                    HINT = 'Send a smaller payload, or raise realtime.config.max_payload_bytes.';
    END IF;

    IF v_chan_id IS NULL THEN
        IF COALESCE(pg_catalog.current_setting('realtime.strict_publish', true), 'off')
           IN ('on', 'true', 'yes', '1') THEN
            RAISE EXCEPTION 'realtime: no enabled channel matches ''%''', channel
                  USING ERRCODE = 'undefined_object',
                        HINT = 'Add a realtime.channels row whose pattern matches it, or enable the matching one.';
        END IF;
        RAISE WARNING 'realtime: no enabled channel matches ''%''; broadcast not sent', channel
              USING HINT = 'Add a realtime.channels row whose pattern matches it, or enable the matching one.';
        RETURN;
    END IF;

    PERFORM realtime.emit_message(
        true,
        'realtime:broadcast',
        pg_catalog.jsonb_build_object('channel', channel, 'event', event, 'payload', payload)::text
    );
END;
$$;

-- ---- permission re-checks after changes to realtime.channels (sql/api.sql) ----

CREATE TRIGGER channels_recheck_subscriptions
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON realtime.channels
    FOR EACH STATEMENT EXECUTE FUNCTION realtime.signal_relays('realtime:channels');
ALTER TABLE realtime.channels ENABLE ALWAYS TRIGGER channels_recheck_subscriptions;
REVOKE EXECUTE ON FUNCTION realtime.signal_relays() FROM PUBLIC;

-- ---- Supabase names: realtime.topic() and realtime.send() (sql/api.sql) ----

CREATE FUNCTION realtime.topic() RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT NULLIF(pg_catalog.current_setting('realtime.channel_name', true), '')
$$;
COMMENT ON FUNCTION realtime.topic() IS
    'Supabase''s name for realtime.channel_name(): the channel being checked; NULL when unset';

CREATE FUNCTION realtime.send(payload jsonb, event text, topic text, private boolean DEFAULT true)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- Every channel is checked by RLS here, so `private` changes nothing. Unlike Supabase's,
    -- errors are raised, not swallowed: a failed send aborts the caller's transaction.
    PERFORM realtime.publish(topic, event, payload);
END;
$$;
COMMENT ON FUNCTION realtime.send(jsonb, text, text, boolean) IS
    'Supabase''s realtime.send(): realtime.publish(topic, event, payload), raising its errors';
GRANT EXECUTE ON FUNCTION realtime.topic() TO PUBLIC;
REVOKE EXECUTE ON FUNCTION realtime.send(jsonb, text, text, boolean) FROM PUBLIC;

-- ---- row-level security of postgres_changes subscribers (sql/changes.sql) ----

CREATE FUNCTION realtime.visible_rows(schema_name text, table_name text, keys jsonb, identities jsonb,
                                       messages uuid[] DEFAULT '{}')
RETURNS TABLE (who integer, selectable boolean, row_security boolean, visible integer[], pk text[])
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off
AS $$
DECLARE
    v_tbl   oid;
    v_cols  text;
    v_match text;
    v_query text;
    v_stmt  text;
    v_ident jsonb;
    v_n     integer := 0;
    v_keys  integer := pg_catalog.jsonb_array_length(keys);
    v_role  text := pg_catalog.current_setting('role');
    v_claims text := pg_catalog.current_setting('request.jwt.claims', true);
BEGIN
    -- The relay learns of a commit from the WAL, a moment before the committing transaction
    -- may be visible to other snapshots: wait (at most a second) until the messages of the
    -- changes to check are visible, and with them the rows those transactions wrote.
    IF pg_catalog.cardinality(messages) > 0 THEN
        FOR v_try IN 1..1000 LOOP
            EXIT WHEN (SELECT pg_catalog.count(*) FROM realtime.messages m WHERE m.id = ANY (messages))
                      >= pg_catalog.cardinality(messages);
            PERFORM pg_catalog.pg_sleep(0.001);
        END LOOP;
    END IF;

    SELECT c.oid INTO v_tbl
      FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace s ON s.oid = c.relnamespace
     WHERE s.nspname = schema_name AND c.relname = table_name AND c.relkind IN ('r', 'p');
    IF v_tbl IS NULL THEN
        RAISE EXCEPTION 'realtime: table %.% does not exist',
                        pg_catalog.quote_ident(schema_name), pg_catalog.quote_ident(table_name)
              USING ERRCODE = 'undefined_table';
    END IF;

    -- The keys are cast to the columns' types in a subquery, so each comparison with a key
    -- column is a plain (leakproof) equality that may use the primary-key index under RLS.
    -- Each key is looked up on its own (LATERAL ... LIMIT 1: a nested loop over the keys) and
    -- sequential scans are off in this function, so the plan is an index probe per key
    -- whatever the table's statistics say. A plan made while the table was small (a new table:
    -- a hash join over a scan of the table, or a scan per key) would otherwise be kept as the
    -- generic plan while the table grows, and each check would read the whole table once per
    -- identity.
    SELECT pg_catalog.array_agg(a.attname::text ORDER BY k.ord),
           pg_catalog.string_agg(pg_catalog.format('(e.key ->> %L)::%s AS c%s', a.attname,
                                                   pg_catalog.format_type(a.atttypid, a.atttypmod), k.ord),
                                 ', ' ORDER BY k.ord),
           pg_catalog.string_agg(pg_catalog.format('r.%I = k.c%s', a.attname, k.ord), ' AND ' ORDER BY k.ord)
      INTO pk, v_cols, v_match
      FROM pg_catalog.pg_index x
     CROSS JOIN LATERAL pg_catalog.unnest(x.indkey::pg_catalog.int2[]) WITH ORDINALITY AS k(attnum, ord)
      JOIN pg_catalog.pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum
     WHERE x.indrelid = v_tbl AND x.indisprimary;
    IF v_match IS NOT NULL THEN
        v_query := pg_catalog.format(
            'SELECT pg_catalog.array_agg(k.n::integer ORDER BY k.n) '
            'FROM (SELECT e.n, %s FROM pg_catalog.jsonb_array_elements($1) WITH ORDINALITY AS e(key, n) '
            'OFFSET 0) AS k CROSS JOIN LATERAL (SELECT 1 FROM %I.%I AS r WHERE %s LIMIT 1) AS r',
            v_cols, schema_name, table_name, v_match);
        -- Prepared once per connection and statement text, so identities of one role share
        -- one plan (Postgres plans again for another role; claims are read when it runs).
        v_stmt := 'realtime_visible_' || pg_catalog.md5(v_query);
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_prepared_statements p WHERE p.name = v_stmt) THEN
            EXECUTE pg_catalog.format('PREPARE %I(jsonb) AS %s', v_stmt, v_query);
        END IF;
        v_query := pg_catalog.format('EXECUTE %I(%L)', v_stmt, keys);
    END IF;

    FOR v_ident IN SELECT i.elem FROM pg_catalog.jsonb_array_elements(identities) AS i(elem) LOOP
        v_n := v_n + 1;
        who := v_n;
        PERFORM pg_catalog.set_config('role', v_ident ->> 0, true),
                pg_catalog.set_config('request.jwt.claims', v_ident ->> 1, true);
        selectable := pg_catalog.has_schema_privilege(schema_name, 'USAGE')
                      AND pg_catalog.has_table_privilege(v_tbl, 'SELECT');
        row_security := pg_catalog.row_security_active(v_tbl::pg_catalog.regclass);
        visible := NULL;
        IF selectable AND row_security AND v_keys > 0 THEN
            IF v_query IS NULL THEN
                RAISE EXCEPTION 'realtime: %.% has row-level security but no primary key, so its changes cannot be checked per row',
                                pg_catalog.quote_ident(schema_name), pg_catalog.quote_ident(table_name)
                      USING ERRCODE = 'object_not_in_prerequisite_state',
                            HINT = 'Add a primary key to the table.';
            END IF;
            EXECUTE v_query INTO visible;
            visible := COALESCE(visible, '{}');
        END IF;
        RETURN NEXT;
    END LOOP;
    PERFORM pg_catalog.set_config('role', v_role, true),
            pg_catalog.set_config('request.jwt.claims', COALESCE(v_claims, ''), true);
END;
$$;
COMMENT ON FUNCTION realtime.visible_rows(text, text, jsonb, jsonb, uuid[]) IS
    'For each [role, claims] identity: may it SELECT the table, does RLS apply, which keyed rows it may see';
GRANT EXECUTE ON FUNCTION realtime.visible_rows(text, text, jsonb, jsonb, uuid[]) TO PUBLIC;
