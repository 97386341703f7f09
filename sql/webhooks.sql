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
