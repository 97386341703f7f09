-- The peers' half of the InsForge design: every row realtime.publish() inserts is announced with
-- pg_notify('realtime_message', <message id>) by an AFTER INSERT trigger. Created DISABLED: the
-- benchmark scripts enable it only around peer runs, so our relay's runs publish without NOTIFY
-- (NOTIFY takes a database-wide lock at commit).
CREATE FUNCTION public.bench_peers_notify() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('realtime_message', NEW.id::text);
    RETURN NEW;
END $$;
CREATE TRIGGER bench_peers_notify AFTER INSERT ON realtime.messages
    FOR EACH ROW EXECUTE FUNCTION public.bench_peers_notify();
ALTER TABLE realtime.messages DISABLE TRIGGER bench_peers_notify;
