// A postgres_changes subscriber under row-level security whose send queue cannot take a burst
// of changes is caught up from the stored log, not cut off (docs/supabase.md, "Row-level
// security"): the unmodified @supabase/supabase-js against a real relay and Postgres.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createClient } from '@supabase/supabase-js';
import WebSocket from 'ws';
import { startStack, mintToken, waitFor, sleep } from '../../../clients/typescript/test/stack.mjs';
import { subscribe } from './channels.mjs';

let stack;
const clients = [];

before(async () => {
  stack = await startStack();
  stack.sql(`
    INSERT INTO realtime.channels (pattern) VALUES ('changes:public.%');
    CREATE POLICY table_changes ON realtime.channels FOR SELECT TO authenticated
      USING (pattern = 'changes:public.%');
    CREATE TABLE public.notes (id int PRIMARY KEY, owner text NOT NULL, body text);
    ALTER TABLE public.notes ENABLE ROW LEVEL SECURITY;
    CREATE POLICY own_notes ON public.notes FOR SELECT TO authenticated USING (owner = realtime.user_id());
    GRANT SELECT ON public.notes TO authenticated;
    SELECT realtime.watch_table('public.notes', 'changes:public.notes');
    -- The same, with changes that are not stored (persist => false): they cannot be read back.
    CREATE TABLE public.pulses (id int PRIMARY KEY, owner text NOT NULL, body text);
    ALTER TABLE public.pulses ENABLE ROW LEVEL SECURITY;
    CREATE POLICY own_pulses ON public.pulses FOR SELECT TO authenticated USING (owner = realtime.user_id());
    GRANT SELECT ON public.pulses TO authenticated;
    SELECT realtime.watch_table('public.pulses', 'changes:public.pulses', persist => false);
  `);
});

after(async () => {
  for (const c of clients) {
    await c.removeAllChannels();
    c.realtime.disconnect();
  }
  for (const ws of Object.values(sockets)) ws.terminate();
  await stack?.stop();
});

/** The sockets supabase-js opened, by user: the `ws` transport, recorded so a test can stop reading one. */
const sockets = {};

/** A supabase-js client of user `sub` (vsn 2.0.0, the client's default). */
async function client(sub) {
  const token = stack.token(sub);
  class Transport extends WebSocket {
    constructor(...args) {
      super(...args);
      sockets[sub] = this;
    }
  }
  const c = createClient(stack.httpUrl, mintToken({ role: 'anon' }), {
    accessToken: async () => token,
    // Heartbeats every 60 s: a client that misses a heartbeat reply reconnects, and alice's
    // socket below is not read for a few seconds on purpose.
    realtime: { transport: Transport, heartbeatIntervalMs: 60_000 },
  });
  clients.push(c);
  await c.realtime.setAuth();
  return c;
}

async function metric(name) {
  const text = await (await fetch(`${stack.httpUrl}/metrics`)).text();
  return Number(text.split('\n').find((l) => l.startsWith(`${name} `))?.split(' ')[1] ?? 0);
}

test('a burst bigger than the send queue reaches each RLS subscriber whole, in order, with no system error', async () => {
  const users = ['alice', 'bob'];
  const seen = { alice: [], bob: [] };
  const system = { alice: [], bob: [] };
  for (const user of users) {
    const ch = (await client(user)).channel(`notes-${user}`)
      .on('postgres_changes', { event: '*', schema: 'public', table: 'notes' }, (p) => seen[user].push(p))
      .on('system', {}, (p) => system[user].push(p));
    assert.equal((await subscribe(ch)).status, 'SUBSCRIBED');
  }
  // Alice stops reading her socket: the relay's writes fill the kernel's socket buffers (a few
  // MB on loopback), then her send queue (1 MiB, the default).
  sockets.alice.pause();
  // One statement, one commit: 4,000 changes of ~3 KB each (~12 MB), two thirds of them
  // alice's (~8 MB), a third bob's.
  const n = 4000;
  const ownerOf = (i) => (i % 3 === 0 ? 'bob' : 'alice');
  stack.sql(`INSERT INTO notes SELECT i, CASE WHEN i % 3 = 0 THEN 'bob' ELSE 'alice' END, repeat('x', 3000)
             FROM generate_series(1, ${n}) i`);
  const ids = Array.from({ length: n }, (_, i) => i + 1);
  const want = { alice: ids.filter((i) => ownerOf(i) === 'alice'), bob: ids.filter((i) => ownerOf(i) === 'bob') };
  // Bob reads all along; once he has the whole burst, the relay has been through all of it.
  await waitFor(() => seen.bob.length >= want.bob.length, 'bob\'s part of the burst', 90_000);
  await sleep(500);
  assert.ok(seen.alice.length < want.alice.length, 'alice read nothing meanwhile');
  sockets.alice.resume();
  await waitFor(() => seen.alice.length >= want.alice.length || system.alice.some((p) => p.status === 'error'), 'alice\'s part of the burst', 90_000);
  const errors = (user) => system[user].filter((p) => p.status === 'error');
  assert.deepEqual(errors('alice'), [], 'alice was not cut off');
  // Live again afterwards: a later change comes after the caught-up ones.
  stack.sql(`INSERT INTO notes VALUES (${n + 1}, 'alice', 'after'), (${n + 2}, 'bob', 'after')`);
  await waitFor(() => seen.alice.length > want.alice.length && seen.bob.length > want.bob.length, 'the change after the burst');
  await sleep(500);
  for (const user of users) {
    const got = seen[user].map((p) => p.new.id);
    const expected = [...want[user], n + (user === 'alice' ? 1 : 2)];
    assert.equal(got.length, expected.length, `${user}: every row it may see, none twice`);
    assert.deepEqual(got, expected, `${user}: in commit order`);
    assert.ok(seen[user].every((p) => p.eventType === 'INSERT' && p.new.owner === user), `${user}: only its own rows`);
    assert.deepEqual(errors(user), [], `${user}: not cut off`);
  }
  assert.equal(await metric('realtime_visibility_bindings_ended_total'), 0);
  // The burst did overflow alice's queue: part of it came back from the log.
  assert.ok((await metric('realtime_messages_delivered_total{path="replay"}')) > 0, 'caught up from the log');
  assert.ok((await metric('realtime_catch_ups_total')) >= 1, 'and live again');
});

test('a subscriber that cannot take a change that is not stored gets a system error, never a silent gap', async () => {
  const ended = await metric('realtime_visibility_bindings_ended_total');
  const seen = [];
  const system = [];
  const ch = (await client('carol')).channel('pulses-carol')
    .on('postgres_changes', { event: 'INSERT', schema: 'public', table: 'pulses' }, (p) => seen.push(p.new.id))
    .on('system', {}, (p) => system.push(p));
  assert.equal((await subscribe(ch)).status, 'SUBSCRIBED');
  sockets.carol.pause();
  // ~6 MB of changes, all carol's: more than her socket buffers and queue hold. In transactions
  // of ~100 KB: unstored changes are not kept anywhere, so the relay's own gate must take each
  // transaction whole (a burst larger than its queue would be lost before any subscriber).
  const n = 6000;
  try {
    for (let from = 1; from <= n; from += 100) {
      stack.sql(`INSERT INTO pulses SELECT i, 'carol', repeat('x', 1000) FROM generate_series(${from}, ${from + 99}) i`);
    }
    await waitFor(async () => (await metric('realtime_visibility_bindings_ended_total')) > ended, 'the binding to end', 60_000);
  } finally {
    sockets.carol.resume();
  }
  await waitFor(() => system.some((p) => p.status === 'error'), 'the system error');
  const error = system.find((p) => p.status === 'error');
  assert.equal(error.extension, 'postgres_changes');
  assert.match(error.message, /not stored .* cannot be read back; join again/);
  assert.ok(seen.length < n, 'it did miss changes');
  assert.deepEqual(seen, Array.from({ length: seen.length }, (_, i) => i + 1), 'what it got has no gap and nothing after one');
  stack.sql(`INSERT INTO pulses VALUES (${n + 1}, 'carol', 'after')`);
  await sleep(500);
  assert.ok(!seen.includes(n + 1), 'the binding is over');
});

test('changes that are not stored and overflow the relay\'s own gate end the bindings with a system error, never a silent gap', async () => {
  const ended = await metric('realtime_visibility_bindings_ended_total');
  const seen = [];
  const system = [];
  const ch = (await client('dave')).channel('pulses-dave')
    .on('postgres_changes', { event: 'INSERT', schema: 'public', table: 'pulses' }, (p) => seen.push(p.new.id))
    .on('system', {}, (p) => system.push(p));
  assert.equal((await subscribe(ch)).status, 'SUBSCRIBED');
  // Dave reads all along. One transaction of ~12 MB of unstored changes reaches the relay's
  // table gate at once: more than its queue (1 MiB, the default) holds, so part of it is
  // dropped before any check, and nothing can read it back.
  const base = 100_000;
  const n = 12_000;
  stack.sql(`INSERT INTO pulses SELECT i, 'dave', repeat('x', 1000) FROM generate_series(${base + 1}, ${base + n}) i`);
  await waitFor(() => system.some((p) => p.status === 'error'), 'the system error', 60_000);
  const error = system.find((p) => p.status === 'error');
  assert.equal(error.extension, 'postgres_changes');
  assert.match(error.message, /not stored .* were dropped; join again/);
  assert.ok((await metric('realtime_visibility_bindings_ended_total')) > ended);
  await sleep(500);
  assert.ok(seen.length < n, 'it did miss changes');
  assert.deepEqual(seen, Array.from({ length: seen.length }, (_, i) => base + i + 1), 'what it got has no gap and nothing after one');
});
