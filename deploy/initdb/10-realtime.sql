-- First start of the deploy/postgres.Dockerfile image: the roles client tokens select
-- (the relay's default --roles) and the extension. The relay logs in as POSTGRES_USER (a
-- superuser); a dedicated login needs REPLICATION and GRANT anon, authenticated, service_role
-- (and GRANT realtime_admin for the admin console, docs/admin.md).
CREATE ROLE anon NOLOGIN;
CREATE ROLE authenticated NOLOGIN;
CREATE ROLE service_role NOLOGIN BYPASSRLS;
CREATE EXTENSION realtime;
