-- Demo setup for `make run`: roles, the extension, two channels and their RLS policies,
-- and a table whose inserts publish through a trigger. Safe to run again.

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'anon') THEN CREATE ROLE anon NOLOGIN; END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'authenticated') THEN CREATE ROLE authenticated NOLOGIN; END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'service_role') THEN CREATE ROLE service_role NOLOGIN BYPASSRLS; END IF;
END $$;

CREATE EXTENSION IF NOT EXISTS realtime;

-- A public channel everyone may subscribe to.
INSERT INTO realtime.channels (pattern, description) VALUES ('demo', 'public demo channel')
ON CONFLICT (pattern) DO NOTHING;
-- One private channel per user: user:<sub>.
INSERT INTO realtime.channels (pattern, description) VALUES ('user:%', 'private channel of each signed-in user')
ON CONFLICT (pattern) DO NOTHING;

DROP POLICY IF EXISTS demo_is_public ON realtime.channels;
CREATE POLICY demo_is_public ON realtime.channels FOR SELECT
    USING (pattern = 'demo');

DROP POLICY IF EXISTS user_channel_is_private ON realtime.channels;
CREATE POLICY user_channel_is_private ON realtime.channels FOR SELECT TO authenticated
    USING (pattern = 'user:%' AND realtime.channel_name() = 'user:' || realtime.user_id());

-- Publishing from a trigger: every new note is announced on `demo`.
CREATE TABLE IF NOT EXISTS public.notes (id bigint generated always as identity primary key, body text not null);
CREATE OR REPLACE FUNCTION public.announce_note() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM realtime.publish('demo', 'note_created', to_jsonb(NEW));
    RETURN NEW;
END $$;
DROP TRIGGER IF EXISTS announce_note ON public.notes;
CREATE TRIGGER announce_note AFTER INSERT ON public.notes FOR EACH ROW EXECUTE FUNCTION public.announce_note();

-- ---------------------------------------------------------------------------------------------
-- The demo page (clients/typescript/demo, served by `make run`).

-- Chat rooms chat:<room>: every signed-in user may subscribe, read history, publish (stored or
-- ephemeral, e.g. typing) as themselves, and share presence.
INSERT INTO realtime.channels (pattern, description) VALUES ('chat:%', 'demo chat rooms')
ON CONFLICT (pattern) DO NOTHING;
DROP POLICY IF EXISTS chat_rooms_for_users ON realtime.channels;
CREATE POLICY chat_rooms_for_users ON realtime.channels FOR SELECT TO authenticated
    USING (pattern = 'chat:%');
DROP POLICY IF EXISTS chat_publish_as_self ON realtime.messages;
CREATE POLICY chat_publish_as_self ON realtime.messages FOR INSERT TO authenticated
    WITH CHECK (channel LIKE 'chat:%' AND sender_id = realtime.user_id());

-- A live orders table: every change is published on channel `orders`, readable by signed-in users.
INSERT INTO realtime.channels (pattern, description) VALUES ('orders', 'changes of public.orders')
ON CONFLICT (pattern) DO NOTHING;
DROP POLICY IF EXISTS orders_for_users ON realtime.channels;
CREATE POLICY orders_for_users ON realtime.channels FOR SELECT TO authenticated
    USING (pattern = 'orders');
CREATE TABLE IF NOT EXISTS public.orders (
    id       int PRIMARY KEY,
    customer text NOT NULL,
    item     text NOT NULL,
    status   text NOT NULL DEFAULT 'new',
    total    numeric(10, 2) NOT NULL
);
SELECT realtime.watch_table('public.orders', channel => 'orders');
-- Seed rows are in seed.sql, run once the relay is up: history is read through the relay's
-- cursor mapping, which only covers what committed after the relay's slot existed.
