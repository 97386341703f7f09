-- realtime: tables, indexes, row-level security and the publication.
--
-- Runs first in the install script (pgrx `bootstrap`). The schema `realtime` itself is created
-- by CREATE EXTENSION from `schema = realtime` in realtime.control. Grants are in finalize.sql.
-- The relay depends on every name here; columns may be added, never renamed or removed.

-- Settings: exactly one row.
CREATE TABLE realtime.config (
    singleton         boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    retention         interval    NOT NULL DEFAULT '7 days',
    max_payload_bytes integer     NOT NULL DEFAULT 1048576 CHECK (max_payload_bytes > 0),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE realtime.config IS
    'realtime settings (one row): message retention and the maximum payload size';

INSERT INTO realtime.config DEFAULT VALUES;

-- Channel configuration. `pattern` is an exact channel name or a LIKE pattern with `%`.
-- Owners write SELECT policies here to decide who may subscribe (realtime.can_subscribe).
CREATE TABLE realtime.channels (
    id             bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    pattern        text        NOT NULL UNIQUE,
    description    text,
    enabled        boolean     NOT NULL DEFAULT true,
    webhook_urls   text[]      NOT NULL DEFAULT '{}',
    webhook_secret text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE realtime.channels IS
    'realtime channels: exact names or %-patterns; SELECT policies decide who may subscribe';

-- The enabled wildcard rows, read by realtime.match_channel when no exact row matches.
CREATE INDEX channels_enabled_wildcards_idx ON realtime.channels (pattern) INCLUDE (id)
    WHERE enabled AND strpos(pattern, '%') > 0;

ALTER TABLE realtime.channels ENABLE ROW LEVEL SECURITY;

-- Who sent a message: 'system' (SQL publish, triggers) or 'user' (a client through a relay).
-- A domain rather than a CHECK constraint on the column: Postgres 15 reads and plans a table's
-- CHECK expressions again for every INSERT statement, which was ~7% of a watched-table UPDATE;
-- a domain's check is planned once per backend (type cache).
CREATE DOMAIN realtime.sender_kind AS text
    CONSTRAINT sender_kind_check CHECK (VALUE IN ('system', 'user'));

-- The durable message log. No foreign key to channels on purpose: an FK would take a KEY SHARE
-- lock on the (hot) channel row for every publish.
CREATE TABLE realtime.messages (
    id                 uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    seq                bigint      GENERATED ALWAYS AS IDENTITY,
    channel            text        NOT NULL,
    channel_id         bigint,
    event              text        NOT NULL,
    payload            jsonb       NOT NULL DEFAULT '{}',
    sender_type        realtime.sender_kind NOT NULL DEFAULT 'system',
    sender_id          text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    ws_audience_count  integer     NOT NULL DEFAULT 0,
    wh_audience_count  integer     NOT NULL DEFAULT 0,
    wh_delivered_count integer     NOT NULL DEFAULT 0,
    xid                xid8        NOT NULL DEFAULT pg_current_xact_id()
);
COMMENT ON TABLE realtime.messages IS
    'realtime message log; INSERT policies decide client publishes; followed by logical replication';

-- One index serves both history paths: a channel's own rows (`channel = $1`) and the walk over
-- realtime.commits joined back by (channel, xid); `seq` last, so a page inside one large commit
-- (a 100,000-row UPDATE) is an ordered range scan, not a sort of the whole commit. Every index
-- is paid for on every publish.
CREATE INDEX messages_channel_xid_idx ON realtime.messages (channel, xid, seq);
CREATE INDEX messages_created_at_brin_idx ON realtime.messages USING brin (created_at);

ALTER TABLE realtime.messages ENABLE ROW LEVEL SECURITY;

-- Cursor mapping written back by relays: which commit LSN each publishing transaction got.
CREATE TABLE realtime.commits (
    xid          xid8        PRIMARY KEY,
    commit_lsn   pg_lsn      NOT NULL,
    committed_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE realtime.commits IS
    'realtime cursor mapping (xid -> commit LSN), written by relays off the publish path';

CREATE INDEX commits_commit_lsn_idx ON realtime.commits (commit_lsn);

-- What relays stream with pgoutput. Inserts only: retention deletes are not replicated.
-- A publication cannot be a member of an extension, so DROP EXTENSION leaves it behind (empty).
-- Adopt such a leftover instead of failing on CREATE PUBLICATION.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_publication WHERE pubname = 'realtime_messages') THEN
        ALTER PUBLICATION realtime_messages SET TABLE realtime.messages;
        ALTER PUBLICATION realtime_messages SET (publish = 'insert');
    ELSE
        CREATE PUBLICATION realtime_messages FOR TABLE realtime.messages WITH (publish = 'insert');
    END IF;
END;
$$;

-- User data is dumped by pg_dump (config is not: its row is recreated by CREATE EXTENSION).
SELECT pg_catalog.pg_extension_config_dump('realtime.channels', '');
SELECT pg_catalog.pg_extension_config_dump('realtime.channels_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('realtime.messages', '');
SELECT pg_catalog.pg_extension_config_dump('realtime.messages_seq_seq', '');
SELECT pg_catalog.pg_extension_config_dump('realtime.commits', '');
