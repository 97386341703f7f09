// The unmodified @supabase/supabase-js (pinned in package.json) against a real relay and
// Postgres with the realtime extension (the stack of the TypeScript SDK's tests), over both
// serializers: vsn 1.0.0 (JSON objects) and 2.0.0 (JSON arrays + binary broadcasts, the
// client's default).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createClient } from '@supabase/supabase-js';
import WebSocket from 'ws';
import { spawn } from 'node:child_process';
import { openSync } from 'node:fs';
import { join } from 'node:path';
import { startStack, mintToken, waitFor, sleep, freePort, relayBin, JWT_SECRET } from '../../../clients/typescript/test/stack.mjs';
import { subscribe } from './channels.mjs';

let stack;
// The project's "anon key": a JWT with role anon, signed with the relay's secret.
let anonKey;
const clients = [];

before(async () => {
  stack = await startStack();
  anonKey = mintToken({ role: 'anon' });
  // A table whose changes supabase-js subscribers may see when authenticated (docs/supabase.md).
  stack.sql(`
    CREATE TABLE public.todos (id int PRIMARY KEY, owner text NOT NULL, title text);
    SELECT realtime.watch_table('public.todos', 'changes:public.todos');
    INSERT INTO realtime.channels (pattern) VALUES ('changes:public.todos');
    CREATE POLICY todos_changes ON realtime.channels FOR SELECT TO authenticated
      USING (pattern = 'changes:public.todos');
    -- Subscribers' roles need SELECT on a table to receive its changes.
    GRANT SELECT ON public.todos TO authenticated;
    -- Tables under row-level security (docs/supabase.md#row-level-security-per-change): each
    -- user sees the rows it owns. Their change channels are open to authenticated users; the
    -- rows' policies decide per change.
    INSERT INTO realtime.channels (pattern) VALUES ('changes:public.%');
    CREATE POLICY table_changes ON realtime.channels FOR SELECT TO authenticated
      USING (pattern = 'changes:public.%');
    CREATE TABLE public.notes (id int PRIMARY KEY, owner text NOT NULL, body text);
    ALTER TABLE public.notes ENABLE ROW LEVEL SECURITY;
    CREATE POLICY own_notes ON public.notes FOR SELECT TO authenticated USING (owner = realtime.user_id());
    GRANT SELECT ON public.notes TO authenticated;
    SELECT realtime.watch_table('public.notes', 'changes:public.notes');
    -- A policy that fails (division by zero) on rows whose body has 4 characters.
    CREATE TABLE public.fragile (id int PRIMARY KEY, owner text NOT NULL, body text);
    ALTER TABLE public.fragile ENABLE ROW LEVEL SECURITY;
    CREATE POLICY fragile_rows ON public.fragile FOR SELECT TO authenticated
      USING (owner = realtime.user_id() AND 1 / (length(body) - 4) IS NOT NULL);
    GRANT SELECT ON public.fragile TO authenticated;
    SELECT realtime.watch_table('public.fragile', 'changes:public.fragile');
    -- No SELECT grant for anyone but the owner.
    CREATE TABLE public.ungranted (id int PRIMARY KEY, owner text);
    SELECT realtime.watch_table('public.ungranted', 'changes:public.ungranted');
    -- Under RLS without a primary key: its rows cannot be checked.
    CREATE TABLE public.keyless (owner text, body text);
    ALTER TABLE public.keyless ENABLE ROW LEVEL SECURITY;
    GRANT SELECT ON public.keyless TO authenticated;
    SELECT realtime.watch_table('public.keyless', 'changes:public.keyless');
    -- A policy written the Supabase way, with realtime.topic().
    INSERT INTO realtime.channels (pattern) VALUES ('team:%');
    CREATE POLICY own_team ON realtime.channels FOR SELECT TO authenticated
      USING (pattern = 'team:%' AND realtime.topic() = 'team:' || realtime.user_id());
  `);
});

let second;

after(async () => {
  for (const c of clients) await c.removeAllChannels();
  second?.kill('SIGKILL');
  await stack?.stop();
});

/** A second relay on the same database (its own port and relay id); resolves its URL. */
async function secondRelay() {
  const port = await freePort();
  const log = openSync(join(stack.dir, 'relay2.log'), 'a');
  const args = ['--database-url', stack.dbUrl, '--bind', `127.0.0.1:${port}`, '--jwt-secret', JWT_SECRET, '--relay-id', `${stack.relayId}_b`];
  const env = { ...process.env, RUST_LOG: 'info' };
  for (const v of ['DATABASE_URL', 'REALTIME_BIND', 'REALTIME_JWT_SECRET', 'REALTIME_RELAY_ID']) delete env[v];
  second = spawn(relayBin(), args, { stdio: ['ignore', log, log], env });
  const url = `http://127.0.0.1:${port}`;
  await waitFor(async () => (await fetch(`${url}/readyz`).catch(() => null))?.status === 200, 'the second relay', 30_000);
  return url;
}

/**
 * A supabase-js client of user `sub` (anonymous without one) speaking `vsn`. As Supabase's docs
 * say for Realtime Authorization, `await realtime.setAuth()` before subscribing, so the first
 * join already carries the user's token (else it joins with the anon key's identity).
 */
async function client(vsn, sub) {
  const token = sub ? stack.token(sub) : anonKey;
  const c = createClient(stack.httpUrl, anonKey, {
    accessToken: async () => token,
    realtime: { transport: WebSocket, vsn, heartbeatIntervalMs: 5000 },
  });
  clients.push(c);
  await c.realtime.setAuth();
  return c;
}

/** Like `client`, for user `sub` on the relay at `url`. */
async function clientAt(url, vsn, sub) {
  const token = stack.token(sub);
  const c = createClient(url, anonKey, { accessToken: async () => token, realtime: { transport: WebSocket, vsn } });
  clients.push(c);
  await c.realtime.setAuth();
  return c;
}

for (const vsn of ['1.0.0', '2.0.0']) {
  test(`broadcast between two clients with ack, order and self (vsn ${vsn})`, async () => {
    const room = `chat:room-${vsn}`;
    const alice = await client(vsn, 'alice');
    const bob = await client(vsn, 'bob');
    const seenByBob = [];
    const seenByAlice = [];
    const a = alice.channel(room, { config: { broadcast: { ack: true, self: false } } });
    a.on('broadcast', { event: 'msg' }, (m) => seenByAlice.push(m.payload));
    const b = bob.channel(room, { config: { broadcast: { self: true } } });
    b.on('broadcast', { event: 'msg' }, (m) => seenByBob.push(m.payload));
    assert.equal((await subscribe(a)).status, 'SUBSCRIBED');
    assert.equal((await subscribe(b)).status, 'SUBSCRIBED');
    for (let n = 0; n < 5; n++) {
      assert.equal(await a.send({ type: 'broadcast', event: 'msg', payload: { n, text: 'hé 👋' } }), 'ok');
    }
    await waitFor(() => seenByBob.length >= 5, 'bob receives alice\'s 5 broadcasts');
    assert.deepEqual(seenByBob, [0, 1, 2, 3, 4].map((n) => ({ n, text: 'hé 👋' })), 'in order, intact');
    // self: true echoes bob's own broadcast to bob; alice (self: false) hears it, not hers.
    await b.send({ type: 'broadcast', event: 'msg', payload: { from: 'bob' } });
    await waitFor(() => seenByBob.length === 6 && seenByAlice.length === 1, 'bob\'s echo and alice\'s copy');
    assert.deepEqual(seenByBob[5], { from: 'bob' });
    assert.deepEqual(seenByAlice, [{ from: 'bob' }], 'alice never hears her own broadcasts');
  });

  test(`realtime.publish from SQL reaches supabase-js as a broadcast (vsn ${vsn})`, async () => {
    const room = `chat:sql-${vsn}`;
    const c = await client(vsn);
    const got = [];
    const ch = c.channel(room).on('broadcast', { event: 'status_changed' }, (m) => got.push(m));
    assert.equal((await subscribe(ch)).status, 'SUBSCRIBED');
    stack.sql(`SELECT realtime.publish('${room}', 'status_changed', '{"status":"shipped"}')`);
    await waitFor(() => got.length === 1, 'the SQL publish');
    assert.equal(got[0].event, 'status_changed');
    assert.deepEqual(got[0].payload, { status: 'shipped' });
    // Supabase's realtime.send(payload, event, topic, private) publishes the same way.
    stack.sql(`SELECT realtime.send('{"status":"delivered"}', 'status_changed', '${room}', true)`);
    await waitFor(() => got.length === 2, 'the realtime.send');
    assert.deepEqual(got[1].payload, { status: 'delivered' });
    // Unlike Supabase's, a failing send raises (here: an empty event name).
    assert.throws(() => stack.sql(`SELECT realtime.send('{}', '', '${room}', true)`), /event/);
  });

  test(`channels are checked by RLS: own private channel allowed, another's refused (vsn ${vsn})`, async () => {
    const alice = await client(vsn, 'alice');
    const own = alice.channel('user:alice', { config: { private: true } });
    assert.equal((await subscribe(own)).status, 'SUBSCRIBED');
    const other = alice.channel('user:bob', { config: { private: true } });
    const { status, err } = await subscribe(other);
    assert.equal(status, 'CHANNEL_ERROR');
    assert.match(String(err?.message ?? err), /user:bob/, 'the reason names the channel');
    assert.equal((await subscribe(alice.channel('team:alice', { config: { private: true } }))).status, 'SUBSCRIBED');
    assert.equal((await subscribe(alice.channel('team:bob', { config: { private: true } }))).status, 'CHANNEL_ERROR');
    const missing = alice.channel('no-such-channel');
    const r = await subscribe(missing);
    assert.equal(r.status, 'CHANNEL_ERROR');
    // The refusals leave the connection and its other channel working.
    const got = [];
    own.on('broadcast', { event: 'ping' }, (m) => got.push(m.payload));
    stack.sql(`SELECT realtime.publish('user:alice', 'ping', '{"ok":1}')`);
    await waitFor(() => got.length === 1, 'a message on the allowed channel after the refusals');
  });

  test(`postgres_changes INSERT/UPDATE/DELETE, with a filter (vsn ${vsn})`, async () => {
    const base = vsn === '1.0.0' ? 100 : 200;
    const alice = await client(vsn, 'alice');
    const all = [];
    const mine = [];
    const deletes = [];
    const system = [];
    const ch = alice
      .channel(`todos-${vsn}`)
      .on('postgres_changes', { event: '*', schema: 'public', table: 'todos' }, (p) => all.push(p))
      .on('postgres_changes', { event: 'INSERT', schema: 'public', table: 'todos', filter: 'owner=eq.alice' }, (p) => mine.push(p))
      .on('postgres_changes', { event: 'DELETE', schema: 'public', table: 'todos', filter: `id=eq.${base + 2}` }, (p) => deletes.push(p))
      .on('system', {}, (p) => system.push(p));
    assert.equal((await subscribe(ch)).status, 'SUBSCRIBED', 'the join reply echoed the three bindings in order');
    stack.sql(`INSERT INTO todos VALUES (${base + 1}, 'alice', 'a'), (${base + 2}, 'bob', 'b');
      UPDATE todos SET title = 'a2' WHERE id = ${base + 1}; DELETE FROM todos WHERE id = ${base + 2};`);
    await waitFor(() => all.length === 4 && deletes.length === 1, 'four changes');
    assert.deepEqual(all.map((p) => [p.eventType, p.schema, p.table]), [
      ['INSERT', 'public', 'todos'], ['INSERT', 'public', 'todos'], ['UPDATE', 'public', 'todos'], ['DELETE', 'public', 'todos'],
    ]);
    assert.deepEqual(all[0].new, { id: base + 1, owner: 'alice', title: 'a' });
    assert.deepEqual([all[2].old.title, all[2].new.title], ['a', 'a2']);
    assert.deepEqual(all[3].old, { id: base + 2, owner: 'bob', title: 'b' });
    assert.ok(all[0].commit_timestamp, 'commit_timestamp is set');
    assert.deepEqual(mine.map((p) => p.new.id), [base + 1], 'the eq filter kept only alice\'s insert');
    assert.deepEqual(deletes.map((p) => p.old.id), [base + 2]);
    assert.deepEqual(system.map((p) => [p.status, p.message, p.extension]), [['ok', 'Subscribed to PostgreSQL', 'postgres_changes']]);
    // Anonymous clients have no policy on the change channel: the join is refused.
    const anon = await client(vsn);
    const refused = anon.channel(`todos-anon-${vsn}`).on('postgres_changes', { event: '*', schema: 'public', table: 'todos' }, () => {});
    const r = await subscribe(refused);
    assert.equal(r.status, 'CHANNEL_ERROR');
    assert.match(String(r.err?.message), /changes:public\.todos/);
  });

  test(`postgres_changes under RLS: each user gets only the rows it may SELECT, deletes with the key only (vsn ${vsn})`, async () => {
    const base = vsn === '1.0.0' ? 1000 : 2000;
    const seen = { alice: [], bob: [] };
    const sharedSeenByAlice = [];
    for (const user of ['alice', 'bob']) {
      const c = await client(vsn, user);
      const ch = c.channel(`notes-${user}-${vsn}`)
        .on('postgres_changes', { event: '*', schema: 'public', table: 'notes' }, (p) => seen[user].push(p));
      if (user === 'alice') {
        // Matches bob's row below: the filter never widens what the policy lets alice see.
        ch.on('postgres_changes', { event: 'INSERT', schema: 'public', table: 'notes', filter: 'body=eq.shared' }, (p) => sharedSeenByAlice.push(p));
      }
      assert.equal((await subscribe(ch)).status, 'SUBSCRIBED');
    }
    const brief = (p) => [p.eventType, p.new?.id ?? p.old?.id];
    // Rows are checked after each commit against the table, so each step commits on its own.
    stack.sql(`INSERT INTO notes VALUES (${base + 1}, 'alice', 'a1'), (${base + 2}, 'bob', 'b1'), (${base + 3}, 'bob', 'shared')`);
    await waitFor(() => seen.alice.length >= 1 && seen.bob.length >= 2, 'the inserts');
    stack.sql(`UPDATE notes SET body = body || '!' WHERE id IN (${base + 1}, ${base + 2})`);
    await waitFor(() => seen.alice.length >= 2 && seen.bob.length >= 3, 'the updates');
    stack.sql(`DELETE FROM notes WHERE id IN (${base + 1}, ${base + 2})`);
    await waitFor(() => seen.alice.length >= 4 && seen.bob.length >= 5, 'the deletes');
    await sleep(300);
    assert.deepEqual(seen.alice.map(brief), [['INSERT', base + 1], ['UPDATE', base + 1], ['DELETE', base + 1], ['DELETE', base + 2]]);
    assert.deepEqual(seen.bob.map(brief), [['INSERT', base + 2], ['INSERT', base + 3], ['UPDATE', base + 2], ['DELETE', base + 1], ['DELETE', base + 2]]);
    assert.deepEqual(sharedSeenByAlice, [], 'bob\'s row matched alice\'s filter but her policy hides it');
    assert.deepEqual(seen.alice[0].new, { id: base + 1, owner: 'alice', body: 'a1' });
    assert.deepEqual([seen.alice[1].new, seen.alice[1].old], [{ id: base + 1, owner: 'alice', body: 'a1!' }, { id: base + 1 }], 'under RLS the old row is the key only');
    assert.deepEqual(seen.alice[3].old, { id: base + 2 }, 'a delete reaches everyone allowed on the table, with the key only');
    const metrics = await (await fetch(`${stack.httpUrl}/metrics`)).text();
    const sample = (name) => Number(metrics.split('\n').find((l) => l.startsWith(`${name} `))?.split(' ')[1]);
    assert.ok(sample('realtime_visibility_rows_hidden_total') >= 3, metrics);
    assert.ok(sample('realtime_visibility_checks_total{outcome="ok"}') >= 2, metrics);
  });

  test(`broadcast.replay sends stored messages since a time, at most limit, oldest first (vsn ${vsn})`, async () => {
    stack.sql(`SELECT realtime.publish('user:alice', 'note', '{"n":0}')`);
    await sleep(300);
    const since = Date.now();
    await sleep(300);
    stack.sql(`SELECT realtime.publish('user:alice', 'note', json_build_object('n', n)::jsonb) FROM generate_series(1, 3) n`);
    const alice = await client(vsn, 'alice');
    const got = [];
    const ch = alice.channel('user:alice', { config: { private: true, broadcast: { replay: { since, limit: 2 } } } });
    ch.on('broadcast', { event: 'note' }, (m) => got.push(m));
    assert.equal((await subscribe(ch)).status, 'SUBSCRIBED');
    await waitFor(() => got.length >= 2, 'two replayed messages');
    await sleep(200);
    assert.deepEqual(got.map((m) => m.payload.n), [2, 3], 'the newest two since `since`, oldest first; n=0 is older');
    assert.ok(got.every((m) => m.meta?.replayed === true && m.meta.id), JSON.stringify(got));
  });

  test(`a new token re-checks the channels: one no longer allowed is closed (vsn ${vsn})`, async () => {
    const alice = await client(vsn, 'alice');
    const statuses = [];
    const own = alice.channel('user:alice', { config: { private: true } });
    const lobby = alice.channel(`chat:lobby-${vsn}`);
    const got = [];
    lobby.on('broadcast', { event: 'hello' }, (m) => got.push(m.payload));
    await new Promise((resolve) => own.subscribe((s) => { statuses.push(s); if (s === 'SUBSCRIBED') resolve(); }));
    assert.equal((await subscribe(lobby)).status, 'SUBSCRIBED');
    // The app signs in as another user: supabase-js sends the token on every joined channel.
    await alice.realtime.setAuth(stack.token('mallory'));
    await waitFor(() => statuses.includes('CLOSED'), 'user:alice closed for mallory');
    stack.sql(`SELECT realtime.publish('chat:lobby-${vsn}', 'hello', '{"still":true}')`);
    await waitFor(() => got.length === 1, 'the channel still allowed goes on');
  });

  test(`presence sync, join and leave (vsn ${vsn})`, async () => {
    const room = `chat:presence-${vsn}`;
    const alice = await client(vsn, 'alice');
    const bob = await client(vsn, 'bob');
    const joins = [];
    const leaves = [];
    const b = bob.channel(room, { config: { presence: { key: 'bob' } } });
    b.on('presence', { event: 'sync' }, () => {});
    b.on('presence', { event: 'join' }, ({ key, newPresences }) => joins.push([key, newPresences]));
    b.on('presence', { event: 'leave' }, ({ key }) => leaves.push(key));
    assert.equal((await subscribe(b)).status, 'SUBSCRIBED');
    const a = alice.channel(room);
    assert.equal((await subscribe(a)).status, 'SUBSCRIBED');
    assert.equal(await a.track({ name: 'Alice' }), 'ok');
    await waitFor(() => b.presenceState().alice, 'alice in bob\'s presence state');
    assert.equal(b.presenceState().alice[0].name, 'Alice');
    assert.equal(joins[0][0], 'alice');
    // A client joining later gets the current members in presence_state (its sync).
    const carol = await client(vsn, 'carol');
    const c = carol.channel(room);
    c.on('presence', { event: 'sync' }, () => {});
    assert.equal((await subscribe(c)).status, 'SUBSCRIBED');
    await waitFor(() => c.presenceState().alice, 'alice in the late joiner\'s state');
    assert.equal(await a.untrack(), 'ok');
    await waitFor(() => leaves.includes('alice') && !b.presenceState().alice, 'alice leaves');
  });
}

test('two relays: presence and client broadcasts cross between supabase-js clients on each', async () => {
  const url = await secondRelay();
  const room = 'chat:two-relays';
  const alice = await clientAt(stack.httpUrl, '2.0.0', 'alice');
  const bob = await clientAt(url, '1.0.0', 'bob');
  const heard = [];
  const b = bob.channel(room).on('presence', { event: 'sync' }, () => {});
  b.on('broadcast', { event: 'hi' }, (m) => heard.push(m.payload));
  assert.equal((await subscribe(b)).status, 'SUBSCRIBED');
  const a = alice.channel(room);
  assert.equal((await subscribe(a)).status, 'SUBSCRIBED');
  assert.equal(await a.track({ on: 'relay-a' }), 'ok');
  await waitFor(() => b.presenceState().alice?.[0]?.on === 'relay-a', 'alice (relay A) in bob\'s state (relay B)');
  await a.send({ type: 'broadcast', event: 'hi', payload: { from: 'a' } });
  await waitFor(() => heard.length === 1, 'alice\'s broadcast on the other relay');
  assert.equal(await a.untrack(), 'ok');
  await waitFor(() => !b.presenceState().alice, 'alice leaves on relay B');
});

test('REST broadcast: send() before subscribing and httpSend() reach subscribers; refusals are errors', async () => {
  const room = 'chat:rest';
  const listener = await client('2.0.0');
  const got = [];
  const ch = listener.channel(room).on('broadcast', { event: '*' }, (m) => got.push([m.event, m.payload]));
  assert.equal((await subscribe(ch)).status, 'SUBSCRIBED');
  const sender = await client('2.0.0', 'dave');
  // A channel not subscribed: supabase-js falls back to POST /realtime/v1/api/broadcast.
  const viaBatch = sender.channel(room);
  assert.equal(await viaBatch.send({ type: 'broadcast', event: 'batch', payload: { n: 1 } }), 'ok');
  assert.deepEqual(await viaBatch.httpSend('single', { n: 2 }), { success: true });
  await waitFor(() => got.length === 2, 'both REST broadcasts');
  assert.deepEqual(got, [['batch', { n: 1 }], ['single', { n: 2 }]]);
  // Anonymous callers may not publish to chat:% (only authenticated users may): refused by RLS.
  const anon = (await client('2.0.0')).channel(room);
  await assert.rejects(anon.httpSend('nope', { n: 3 }), /anon/);
  assert.equal(await anon.send({ type: 'broadcast', event: 'nope', payload: {} }), 'error');
});

test('postgres_changes refusals: no SELECT on the table, RLS without a primary key, the change channel as a topic', async () => {
  const alice = await client('2.0.0', 'alice');
  const join = (table) => subscribe(alice.channel(`refused-${table}`).on('postgres_changes', { event: '*', schema: 'public', table }, () => {}));
  const noGrant = await join('ungranted');
  assert.equal(noGrant.status, 'CHANNEL_ERROR');
  assert.match(String(noGrant.err?.message), /may not SELECT public\.ungranted.*GRANT SELECT ON public\.ungranted TO authenticated/);
  const keyless = await join('keyless');
  assert.equal(keyless.status, 'CHANNEL_ERROR');
  assert.match(String(keyless.err?.message), /public\.keyless has row-level security but no primary key/);
  const missing = await join('nosuchtable');
  assert.equal(missing.status, 'CHANNEL_ERROR');
  assert.match(String(missing.err?.message), /table public\.nosuchtable does not exist/);
  // The change channel itself carries every row: it cannot be joined as a plain topic.
  const direct = await subscribe(alice.channel('changes:public.notes'));
  assert.equal(direct.status, 'CHANNEL_ERROR');
  assert.match(String(direct.err?.message), /delivered only through postgres_changes bindings/);
});

test('a failing row check ends the binding with a system error and delivers nothing unchecked', async () => {
  const alice = await client('2.0.0', 'alice');
  const got = [];
  const system = [];
  const ch = alice.channel('fragile')
    .on('postgres_changes', { event: 'INSERT', schema: 'public', table: 'fragile' }, (p) => got.push(p.new.body))
    .on('system', {}, (p) => system.push(p));
  assert.equal((await subscribe(ch)).status, 'SUBSCRIBED');
  stack.sql(`INSERT INTO fragile VALUES (1, 'alice', 'first')`);
  await waitFor(() => got.length === 1, 'the first row');
  stack.sql(`INSERT INTO fragile VALUES (2, 'alice', 'boom')`); // the policy divides by zero
  await waitFor(() => system.some((p) => p.status === 'error'), 'the system error');
  stack.sql(`INSERT INTO fragile VALUES (3, 'alice', 'after')`);
  await sleep(500);
  assert.deepEqual(got, ['first'], 'neither the row that failed its check nor later ones');
  const error = system.find((p) => p.status === 'error');
  assert.equal(error.extension, 'postgres_changes');
  assert.match(error.message, /row visibility check failed/);
});

/** A raw socket to the relay's Supabase endpoint; resolves open or with the refusal. */
function raw(query) {
  return new Promise((resolve) => {
    const ws = new WebSocket(`ws://127.0.0.1:${stack.relayPort}/realtime/v1/websocket?${query}`);
    const frames = [];
    ws.on('message', (d, isBinary) => frames.push(isBinary ? d : JSON.parse(d.toString())));
    ws.on('open', () => resolve({ ws, frames }));
    ws.on('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode, body: JSON.parse(body) }));
    });
  });
}

test('handshake refusals are HTTP errors with a JSON body', async () => {
  const bad = await raw('apikey=not-a-jwt&vsn=2.0.0');
  assert.equal(bad.status, 401);
  assert.equal(bad.body.error.code, 'REALTIME_UNAUTHORIZED');
  const badVsn = await raw(`apikey=${anonKey}&vsn=9.9.9`);
  assert.equal(badVsn.status, 400);
  assert.match(badVsn.body.error.message, /unsupported serializer vsn/);
});

test('malformed frames get Phoenix error replies; the connection and its channels go on', async () => {
  const { ws, frames } = await raw(`apikey=${anonKey}&vsn=2.0.0`);
  ws.send(JSON.stringify(['1', '1', 'realtime:chat:raw', 'phx_join', { config: {} }]));
  await waitFor(() => frames.find((f) => f[1] === '1'), 'the join reply');
  assert.deepEqual(frames.find((f) => f[1] === '1'), ['1', '1', 'realtime:chat:raw', 'phx_reply', { status: 'ok', response: { postgres_changes: [] } }]);
  ws.send('not json');
  ws.send(JSON.stringify(['1', '2', 'realtime:chat:raw', 'dance', {}]));
  ws.send(Buffer.from([3, 0, 1, 3, 1, 0, 7, 0x33, 0x61, 0x62, 0x63, 0x65])); // unknown payload encoding 7
  ws.send(JSON.stringify(['1', '4', 'realtime:chat:raw', 'phx_join', { config: { postgres_changes: [{ event: '*', schema: 'public', table: 'todos', filter: 'id=like.1' }] } }]));
  ws.send(JSON.stringify([null, '5', 'phoenix', 'heartbeat', {}]));
  await waitFor(() => frames.find((f) => f[1] === '5'), 'the heartbeat reply');
  const errors = frames.filter((f) => f[3] === 'phx_reply' && f[4].status === 'error').map((f) => f[4].response.reason);
  assert.equal(errors.length, 4, JSON.stringify(frames));
  assert.match(errors[0], /not JSON/);
  assert.match(errors[1], /unknown event 'dance'/);
  assert.match(errors[2], /encoding 7/);
  assert.match(errors[3], /filter 'id=like.1' is not column=op.value/);
  assert.deepEqual(frames.find((f) => f[1] === '5'), [null, '5', 'phoenix', 'phx_reply', { status: 'ok', response: {} }]);
  // The channel joined before the bad frames still receives its messages (a kind 4 frame).
  stack.sql(`SELECT realtime.publish('chat:raw', 'after', '{"n":1}')`);
  await waitFor(() => frames.find((f) => Buffer.isBuffer(f)), 'a binary broadcast');
  const b = frames.find((f) => Buffer.isBuffer(f));
  assert.equal(b[0], 4, 'kind 4 user_broadcast');
  const topicLen = b[1], eventLen = b[2], metaLen = b[3];
  assert.equal(b[4], 1, 'JSON payload encoding');
  assert.equal(b.subarray(5, 5 + topicLen).toString(), 'realtime:chat:raw');
  assert.equal(b.subarray(5 + topicLen, 5 + topicLen + eventLen).toString(), 'after');
  assert.deepEqual(JSON.parse(b.subarray(5 + topicLen + eventLen + metaLen).toString()), { n: 1 });
  ws.close();
});

// Last: it restarts the relay every other test uses.
test('after a relay restart supabase-js reconnects and rejoins on its own', async () => {
  const c = await client('2.0.0', 'alice');
  const got = [];
  const ch = c.channel('chat:restart').on('broadcast', { event: 'after' }, (m) => got.push(m.payload));
  assert.equal((await subscribe(ch)).status, 'SUBSCRIBED');
  await stack.killRelay();
  await stack.startRelay();
  // Publish until the rejoined channel hears one (the client backs off 1 s, 2 s, 5 s, ...).
  await waitFor(() => {
    stack.sql(`SELECT realtime.publish('chat:restart', 'after', '{"back":true}')`);
    return got.length > 0;
  }, 'a message after the restart', 40_000);
  assert.deepEqual(got[0], { back: true });
});
