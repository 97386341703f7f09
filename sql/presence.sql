-- realtime: presence (who is online), shared by every relay of the database.
--
-- Written and read only by relays (their login owns or is granted these tables); clients never
-- touch them: they go through a relay, and presence permission is subscribe permission.
-- Both tables are UNLOGGED: presence is soft state, rebuilt as clients reconnect, and its
-- churn should not cost WAL. Every change to realtime.presence is written in the same
-- transaction as a `realtime:presence` logical message carrying the change, which is how the
-- other relays learn of it (in commit order); the table itself is read only when a relay starts.

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
