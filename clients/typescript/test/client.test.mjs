// Every method of the client and the channel, against a real relay and Postgres.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { createClient, RealtimeError } from '../dist/index.js';
import { createClient as createNodeClient } from '../dist/node.js';
import { collect, startStack, waitFor, WebSocket } from './stack.mjs';

let stack;
const clients = [];
function client(opts = {}) {
  const c = createClient({ url: stack.wsUrl, WebSocket, ...opts });
  clients.push(c);
  return c;
}

before(async () => {
  stack = await startStack();
});
after(async () => {
  clients.forEach((c) => c.disconnect());
  await stack?.stop();
});

test('connect reports connecting then connected, disconnect reports disconnected', async () => {
  const c = client({ token: stack.token('alice') });
  const seen = [];
  c.onStatusChange((s) => seen.push(s));
  assert.equal(c.status, 'idle');
  await c.connect();
  assert.equal(c.status, 'connected');
  c.disconnect();
  assert.deepEqual(seen, ['connecting', 'connected', 'disconnected']);
});

test('createClient without a WebSocket under Node 20 fails with REALTIME_NO_WEBSOCKET; the node entry brings ws', async () => {
  if (globalThis.WebSocket) return; // Node 22+ has one
  assert.throws(() => createClient({ url: stack.wsUrl }), (e) => e instanceof RealtimeError && e.code === 'REALTIME_NO_WEBSOCKET');
  const c = createNodeClient({ url: stack.wsUrl });
  clients.push(c);
  await c.connect();
  assert.equal(c.status, 'connected');
});

test('subscribe resolves ok with cursor and empty presence; on(event) and on(*) receive a SQL publish', async () => {
  const c = client();
  const ch = c.channel('chat:sub');
  const hits = collect(ch, 'hello');
  const all = collect(ch, '*');
  const other = collect(ch, 'other');
  const reply = await ch.subscribe();
  assert.equal(reply.ok, true);
  assert.match(reply.cursor, /^[0-9a-f]{32}$/);
  assert.deepEqual(reply.presence, { members: [] });
  assert.equal(c.status, 'connected', 'subscribe connects the client');
  stack.sql(`SELECT realtime.publish('chat:sub', 'hello', '{"n":1}')`);
  await waitFor(() => hits.length === 1, 'the hello message');
  assert.deepEqual(hits[0].payload, { n: 1 });
  assert.equal(hits[0].event, 'hello');
  assert.equal(hits[0].channel, 'chat:sub');
  assert.equal(hits[0].sender.type, 'system');
  assert.match(hits[0].cursor, /^[0-9a-f]{32}$/);
  assert.equal(all.length, 1);
  assert.equal(other.length, 0);
  assert.equal(ch.cursor, hits[0].cursor, 'the resume point follows delivered messages');
  assert.equal(ch.state, 'joined');
  assert.deepEqual(await ch.subscribe(), reply, 'subscribing again returns the same reply');
});

test('off removes a listener; unsubscribe stops delivery', async () => {
  const c = client();
  const ch = c.channel('chat:off');
  const kept = collect(ch, 'e');
  const removed = [];
  const cb = (m) => removed.push(m);
  ch.on('e', cb);
  await ch.subscribe();
  ch.off('e', cb);
  stack.sql(`SELECT realtime.publish('chat:off', 'e', '{"n":1}')`);
  await waitFor(() => kept.length === 1, 'first message');
  assert.equal(removed.length, 0);
  await ch.unsubscribe();
  assert.equal(ch.state, 'closed');
  // A second subscriber on another client anchors the negative check.
  const d = client();
  const anchor = collect(d.channel('chat:off'), 'e');
  await d.channel('chat:off').subscribe();
  stack.sql(`SELECT realtime.publish('chat:off', 'e', '{"n":2}')`);
  await waitFor(() => anchor.length === 1, 'anchor message');
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(kept.length, 1, 'no delivery after unsubscribe');
});

test('publish persisted resolves with id and cursor and reaches another client; ephemeral has neither', async () => {
  const alice = client({ token: stack.token('alice') });
  const bob = client({ token: stack.token('bob') });
  const got = collect(bob.channel('chat:pub'), '*');
  await bob.channel('chat:pub').subscribe();
  const res = await alice.channel('chat:pub').publish('message', { text: 'hi' });
  assert.match(res.id, /^[0-9a-f-]{36}$/);
  assert.match(res.cursor, /^[0-9a-f]{32}$/);
  await waitFor(() => got.length === 1, 'persisted message');
  assert.equal(got[0].id, res.id);
  assert.deepEqual(got[0].sender, { type: 'user', id: 'alice' });
  const eph = await alice.channel('chat:pub').publish('typing', { on: true }, { persist: false });
  assert.deepEqual(eph, {});
  await waitFor(() => got.length === 2, 'ephemeral message');
  assert.equal(got[1].event, 'typing');
  assert.equal(got[1].cursor, undefined);
  assert.equal(got[1].id, undefined);
  const noAck = await alice.channel('chat:pub').publish('message', { text: 'fire and forget' }, { ack: false });
  assert.equal(noAck.id, undefined, 'ack:false resolves without waiting for the reply');
  await waitFor(() => got.length === 3, 'ack:false message');
  assert.deepEqual(got[2].payload, { text: 'fire and forget' });
});

test('a typed channel round-trips its payload (its compile-time checks are in test/types)', async () => {
  /** @type {import('../dist/index.js').Channel<{message: {text: string}}>} */
  const ch = client({ token: stack.token('alice') }).channel('chat:typed');
  const got = collect(ch, 'message');
  await ch.subscribe();
  await ch.publish('message', { text: 'typed' });
  await waitFor(() => got.length === 1, 'typed message');
  assert.equal(got[0].payload.text, 'typed');
});

test('history returns stored messages newest first and pages with before', async () => {
  const c = client({ token: stack.token('alice') });
  const ch = c.channel('chat:hist');
  for (let i = 1; i <= 5; i++) await ch.publish('message', { i });
  const page1 = await ch.history({ limit: 3 });
  assert.deepEqual(page1.map((m) => m.payload.i), [5, 4, 3]);
  const page2 = await ch.history({ limit: 3, before: page1[2].cursor });
  assert.deepEqual(page2.map((m) => m.payload.i), [2, 1]);
  const all = await ch.history();
  assert.equal(all.length, 5);
});

test('setToken sends an auth frame: the new identity applies on the live connection', async () => {
  const c = client({ token: stack.token('alice') });
  await c.connect();
  const before = await c.channel('user:bob').subscribe();
  assert.equal(before.ok, false);
  assert.equal(before.error.code, 'REALTIME_UNAUTHORIZED');
  await c.setToken(stack.token('bob'));
  assert.equal(c.userId, 'bob');
  assert.equal(c.status, 'connected', 'no reconnect needed');
  const afterReply = await c.channel('user:bob').subscribe();
  assert.equal(afterReply.ok, true);
  await assert.rejects(c.setToken('not-a-jwt'), (e) => e instanceof RealtimeError && e.code === 'REALTIME_UNAUTHORIZED');
});

test('setToken revoking access ends the subscription with an unsubscribed event', async () => {
  const c = client({ token: stack.token('carol') });
  const ch = c.channel('user:carol');
  const ended = collect(ch, 'unsubscribed');
  const errors = [];
  c.onError((e) => errors.push(e));
  assert.equal((await ch.subscribe()).ok, true);
  await c.setToken(stack.token('dave'));
  await waitFor(() => ended.length === 1, 'unsubscribed event');
  assert.equal(ended[0].code, 'REALTIME_UNAUTHORIZED');
  assert.equal(ch.state, 'closed');
  assert.equal(errors[0].code, 'REALTIME_UNAUTHORIZED');
});

test('track without a subscription is refused with REALTIME_NOT_SUBSCRIBED before anything is sent', async () => {
  const c = client({ token: stack.token('alice') });
  await assert.rejects(c.channel('chat:nosub').track({ name: 'A' }), (e) => e.code === 'REALTIME_NOT_SUBSCRIBED');
});

test('unsubscribe while the subscribe is in flight resolves it {ok:false} and leaves no subscription on the relay', async () => {
  const subscriptions = async () => {
    const text = await (await fetch(`${stack.httpUrl}/metrics`)).text();
    return Number(/^realtime_subscriptions (\d+)/m.exec(text)?.[1]);
  };
  const c = client();
  await c.connect();
  const baseline = await subscriptions();
  const ch = c.channel('chat:inflight');
  const pending = ch.subscribe();
  await ch.unsubscribe();
  const reply = await pending;
  assert.equal(reply.ok, false);
  assert.equal(reply.error.code, 'REALTIME_NOT_SUBSCRIBED');
  // The relay answered the subscribe; the client then ends it there too.
  const probe = client();
  await probe.channel('chat:inflight-probe').subscribe(); // a round trip on another connection
  await waitFor(async () => (await subscriptions()) === baseline + 1, 'only the probe subscription remains');
  assert.equal(ch.state, 'closed');
});
