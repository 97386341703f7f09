// The real stack for the JS tests (SDK, React, browser): a throwaway Postgres 15 cluster with
// the realtime extension and the real relay binary, as in tests/src/cluster.rs and relay.rs.
//
// Postgres binaries come from $PG_BIN (the Makefile sets it; with PG_PREFIX it points at the
// private copy); the relay is $REALTIME_RELAY_BIN or <repo>/target/debug/realtime-relay
// ($CARGO_TARGET_DIR respected). Everything is torn down by `stack.stop()`.

import { execFileSync, spawn } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import { chownSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, chmodSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';

const here = dirname(fileURLToPath(import.meta.url));
export const repoRoot = resolve(here, '../../..');
export const JWT_SECRET = 'js-test-secret-0123456789abcdef0123';
export { WebSocket };

const PG_BIN = process.env.PG_BIN || '/usr/lib/postgresql/15/bin';
const isRoot = process.getuid?.() === 0;

export function relayBin() {
  if (process.env.REALTIME_RELAY_BIN) return process.env.REALTIME_RELAY_BIN;
  const target = process.env.CARGO_TARGET_DIR || join(repoRoot, 'target');
  const bin = join(target, 'debug/realtime-relay');
  if (!existsSync(bin)) throw new Error(`relay binary not found at ${bin}: run 'cargo build -p realtime-relay' (make build)`);
  return bin;
}

/** A free TCP port on 127.0.0.1. */
export function freePort() {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}

/** An HS256 JWT signed with `secret`. */
export function mintToken({ sub, role = 'authenticated', ttlSecs = 3600, secret = JWT_SECRET } = {}) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const now = Math.floor(Date.now() / 1000);
  const claims = { role, exp: now + ttlSecs, iat: now };
  if (sub) claims.sub = sub;
  const head = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}`;
  const sig = createHmac('sha256', secret).update(head).digest('base64url');
  return `${head}.${sig}`;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `cond` until truthy (default 20 s); throws `what` on timeout. */
export async function waitFor(cond, what = 'condition', timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

function asPg(cmd, args, opts = {}) {
  const [file, argv] = isRoot ? ['runuser', ['-u', 'postgres', '--', cmd, ...args]] : [cmd, args];
  return execFileSync(file, argv, { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
}

/** SQL every test stack gets: roles, the extension, test channels and policies. */
const BASE_SQL = `
DO $$ DECLARE r text; BEGIN
  FOREACH r IN ARRAY ARRAY['anon','authenticated','service_role'] LOOP
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN EXECUTE format('CREATE ROLE %I NOLOGIN', r); END IF;
  END LOOP; END $$;
CREATE EXTENSION IF NOT EXISTS realtime;
-- chat:% is open to every role; authenticated users publish as themselves.
INSERT INTO realtime.channels (pattern) VALUES ('chat:%') ON CONFLICT DO NOTHING;
CREATE POLICY test_chat_visible ON realtime.channels FOR SELECT USING (pattern = 'chat:%');
CREATE POLICY test_chat_publish ON realtime.messages FOR INSERT TO authenticated
  WITH CHECK (channel LIKE 'chat:%' AND sender_id = realtime.user_id());
-- user:<sub> is visible only to that user.
INSERT INTO realtime.channels (pattern) VALUES ('user:%') ON CONFLICT DO NOTHING;
CREATE POLICY test_user_private ON realtime.channels FOR SELECT TO authenticated
  USING (pattern = 'user:%' AND realtime.channel_name() = 'user:' || realtime.user_id());
-- secret exists but no role may see it.
INSERT INTO realtime.channels (pattern) VALUES ('secret') ON CONFLICT DO NOTHING;
UPDATE realtime.config SET max_payload_bytes = 4096;
`;

/**
 * Starts Postgres + extension + relay. `relayArgs`: extra relay flags. `sqlFiles`: files run
 * after the base SQL (e.g. sql/demo/setup.sql).
 */
export async function startStack({ relayArgs = [], sqlFiles = [] } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'realtime-js-'));
  chmodSync(dir, 0o755);
  if (isRoot) {
    const uid = Number(execFileSync('id', ['-u', 'postgres']).toString().trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres']).toString().trim());
    chownSync(dir, uid, gid);
  }
  const data = join(dir, 'data');
  asPg(join(PG_BIN, 'initdb'), ['-D', data, '-A', 'trust', '--no-sync', '-U', 'postgres', '-E', 'UTF8', '--locale=C']);
  let pgPort;
  for (let attempt = 1; ; attempt++) {
    pgPort = await freePort();
    const opts = `-p ${pgPort} -c listen_addresses=127.0.0.1 -k ${dir} -c wal_level=logical -c max_replication_slots=20 -c max_wal_senders=20 -c fsync=off`;
    try {
      asPg(join(PG_BIN, 'pg_ctl'), ['start', '-w', '-t', '60', '-D', data, '-l', join(dir, 'postgres.log'), '-o', opts]);
      break;
    } catch (e) {
      if (attempt >= 5) throw new Error(`could not start Postgres: ${e.stderr ?? e}`);
    }
  }
  const dbUrl = `postgres://postgres@127.0.0.1:${pgPort}/postgres`;
  const psqlBin = existsSync(join(PG_BIN, 'psql')) ? join(PG_BIN, 'psql') : 'psql';

  /** Runs SQL (several statements allowed); returns stdout (unaligned, tuples only). */
  const sql = (text) =>
    execFileSync(psqlBin, ['-X', '-q', '-At', '-v', 'ON_ERROR_STOP=1', dbUrl, '-c', text], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, PGOPTIONS: '-c client_min_messages=warning' },
    }).toString();
  const sqlFile = (file) =>
    execFileSync(psqlBin, ['-X', '-q', '-v', 'ON_ERROR_STOP=1', dbUrl, '-f', file], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, PGOPTIONS: '-c client_min_messages=warning' },
    });

  const stack = {
    dir,
    dbUrl,
    sql,
    sqlFile,
    relayPort: 0,
    relay: null,
    relayId: `js_${randomBytes(4).toString('hex')}`,
    relayArgs,
    get wsUrl() {
      return `ws://127.0.0.1:${this.relayPort}/v1/socket`;
    },
    get httpUrl() {
      return `http://127.0.0.1:${this.relayPort}`;
    },
    token: (sub, role = 'authenticated', ttlSecs = 3600) => mintToken({ sub, role, ttlSecs }),
    /** Starts the relay (same port and relay id as before, if it ran already) and waits for /readyz. */
    async startRelay() {
      if (!this.relayPort) this.relayPort = await freePort();
      const log = openSync(join(dir, 'relay.log'), 'a');
      const args = ['--database-url', dbUrl, '--bind', `127.0.0.1:${this.relayPort}`, '--jwt-secret', JWT_SECRET, '--relay-id', this.relayId, ...this.relayArgs];
      const env = { ...process.env, RUST_LOG: process.env.RUST_LOG || 'info' };
      for (const v of ['DATABASE_URL', 'REALTIME_BIND', 'REALTIME_JWT_SECRET', 'REALTIME_RELAY_ID', 'REALTIME_ALLOW_ANON', 'REALTIME_ROLES']) delete env[v];
      const child = spawn(relayBin(), args, { stdio: ['ignore', log, log], env });
      this.relay = child;
      const deadline = Date.now() + 30_000;
      for (;;) {
        if (child.exitCode !== null) throw new Error(`relay exited with ${child.exitCode}\n${this.relayLog()}`);
        try {
          const r = await fetch(`${this.httpUrl}/readyz`);
          if (r.status === 200) return;
        } catch {
          /* not listening yet */
        }
        if (Date.now() > deadline) throw new Error(`relay not ready in 30 s\n${this.relayLog()}`);
        await sleep(50);
      }
    },
    /** Kills the relay with SIGKILL and waits for it to exit. */
    async killRelay() {
      const child = this.relay;
      if (!child || child.exitCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGKILL');
      await exited;
    },
    relayLog() {
      try {
        return readFileSync(join(dir, 'relay.log'), 'utf8').split('\n').slice(-60).join('\n');
      } catch {
        return '';
      }
    },
    async stop() {
      await this.killRelay();
      try {
        asPg(join(PG_BIN, 'pg_ctl'), ['stop', '-m', 'immediate', '-w', '-D', data]);
      } catch {
        /* already stopped */
      }
      if (!process.env.REALTIME_E2E_KEEP) rmSync(dir, { recursive: true, force: true });
    },
  };

  try {
    sql(BASE_SQL);
    for (const f of sqlFiles) sqlFile(f);
    await stack.startRelay();
  } catch (e) {
    const pgLog = existsSync(join(dir, 'postgres.log')) ? readFileSync(join(dir, 'postgres.log'), 'utf8').slice(-3000) : '';
    await stack.stop();
    throw new Error(`${e.message}\n${e.stderr ?? ''}\n${pgLog}`);
  }
  return stack;
}

/** Collects events of a channel into an array, for assertions. */
export function collect(channel, event) {
  const seen = [];
  channel.on(event, (m) => seen.push(m));
  return seen;
}

