// Reconnect, resume, the offline queue, token refresh and reset, against a relay that is really
// killed (SIGKILL), stopped (SIGSTOP) and restarted.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createClient, RealtimeError } from '../dist/index.js';
import { collect, mintToken, sleep, startStack, waitFor, WebSocket } from './stack.mjs';

const fast = { reconnectBaseMs: 100, reconnectMaxMs: 400, WebSocket };

describe('with a relay that goes away', () => {
  let stack;
  const clients = [];
  const client = (opts = {}) => {
    const c = createClient({ url: stack.wsUrl, ...fast, ...opts });
    clients.push(c);
    return c;
  };
  before(async () => {
    stack = await startStack();
  });
  after(async () => {
    clients.forEach((c) => c.disconnect());
    await stack?.stop();
  });

  test('relay killed and restarted: messages published from SQL meanwhile arrive once each, in order, marked replayed', async () => {
    const c = client();
    const statuses = [];
    c.onStatusChange((s) => statuses.push(s));
    const ch = c.channel('chat:outage');
    const got = collect(ch, 'n');
    assert.equal((await ch.subscribe()).ok, true);
    stack.sql(`SELECT realtime.publish('chat:outage', 'n', '{"i":1}')`);
    await waitFor(() => got.length === 1, 'message 1');

    await stack.killRelay();
    await waitFor(() => c.status === 'reconnecting', 'status reconnecting');
    stack.sql(`SELECT realtime.publish('chat:outage', 'n', jsonb_build_object('i', i)) FROM generate_series(2, 6) i`);
    await stack.startRelay();
    await waitFor(() => got.length >= 6, 'the 5 messages published during the outage');
    stack.sql(`SELECT realtime.publish('chat:outage', 'n', '{"i":7}')`);
    await waitFor(() => got.length >= 7, 'a live message after the resume');
    await sleep(200);
    assert.deepEqual(got.map((m) => m.payload.i), [1, 2, 3, 4, 5, 6, 7], 'no gap, no duplicate, commit order');
    assert.deepEqual(got.slice(1, 6).map((m) => m.replayed), [true, true, true, true, true]);
    assert.ok(!got[6].replayed);
    assert.deepEqual(statuses.slice(0, 4), ['connecting', 'connected', 'reconnecting', 'connected']);
  });

  test('publishes made while offline are queued and flushed in order; a full queue rejects with REALTIME_QUEUE_FULL', async () => {
    const listener = client();
    const got = collect(listener.channel('chat:queue'), 'q');
    await listener.channel('chat:queue').subscribe();
    const alice = client({ token: stack.token('alice'), maxQueue: 3 });
    await alice.connect();

    await stack.killRelay();
    await waitFor(() => alice.status !== 'connected', 'alice notices the outage');
    const sends = [1, 2, 3].map((i) => alice.channel('chat:queue').publish('q', { i }));
    assert.equal(alice.queuedCount, 3);
    await assert.rejects(alice.channel('chat:queue').publish('q', { i: 4 }), (e) => e instanceof RealtimeError && e.code === 'REALTIME_QUEUE_FULL');
    const strict = client({ token: stack.token('alice'), queueOffline: false });
    await assert.rejects(strict.channel('chat:queue').publish('q', { i: 5 }), (e) => e.code === 'REALTIME_OFFLINE');
    await stack.startRelay();

    const results = await Promise.all(sends);
    results.forEach((r) => assert.match(r.cursor, /^[0-9a-f]{32}$/));
    assert.ok(results[0].cursor < results[1].cursor && results[1].cursor < results[2].cursor, 'stored in send order');
    await waitFor(() => got.length === 3, 'the three queued publishes');
    assert.deepEqual(got.map((m) => m.payload.i), [1, 2, 3]);
  });

  test('disconnect rejects queued requests with REALTIME_DISCONNECTED', async () => {
    await stack.killRelay();
    const c = client({ token: stack.token('alice') });
    const p = c.channel('chat:disc').publish('x', {});
    assert.equal(c.queuedCount, 1);
    c.disconnect();
    await assert.rejects(p, (e) => e.code === 'REALTIME_DISCONNECTED');
    assert.equal(c.status, 'disconnected');
    await stack.startRelay();
  });

  test('getToken is called on every connect and the fresh token is used after a reconnect', async () => {
    let n = 0;
    const c = client({ getToken: async () => stack.token(`u${++n}`) });
    await c.connect();
    assert.equal(c.userId, 'u1');
    await stack.killRelay();
    await stack.startRelay();
    await waitFor(() => n >= 2 && c.status === 'connected', 'a reconnect with a new token');
    const reply = await c.channel(`user:u${n}`).subscribe();
    assert.equal(reply.ok, true, 'the server sees the new identity');
  });

  test('an expired token closes the socket (4001); getToken supplies a new one and the subscription continues', async () => {
    let n = 0;
    const c = client({ getToken: () => mintToken({ sub: 'exp', ttlSecs: ++n === 1 ? 2 : 3600 }) });
    const errors = [];
    c.onError((e) => errors.push(e));
    const ch = c.channel('chat:expiry');
    const got = collect(ch, 'e');
    await ch.subscribe();
    await waitFor(() => n >= 2 && c.status === 'connected', 'reconnect after the token expired', 30_000);
    assert.ok(errors.some((e) => e.code === 'REALTIME_UNAUTHORIZED'), 'the 4001 close is reported');
    stack.sql(`SELECT realtime.publish('chat:expiry', 'e', '{"after":"refresh"}')`);
    await waitFor(() => got.length === 1, 'message after the token refresh');
  });

  test('heartbeat: a relay that stops answering (SIGSTOP) is detected and the client reconnects when it resumes', async () => {
    const c = client({ heartbeatIntervalMs: 200, heartbeatTimeoutMs: 400 });
    const ch = c.channel('chat:hb');
    const got = collect(ch, 'h');
    await ch.subscribe();
    stack.relay.kill('SIGSTOP');
    try {
      await waitFor(() => c.status === 'reconnecting', 'heartbeat timeout');
    } finally {
      stack.relay.kill('SIGCONT');
    }
    await waitFor(() => c.status === 'connected', 'reconnected');
    stack.sql(`SELECT realtime.publish('chat:hb', 'h', '{}')`);
    await waitFor(() => got.length === 1, 'delivery after reconnect');
  });
});

describe('with --max-replay 1', () => {
  let stack;
  let c;
  before(async () => {
    stack = await startStack({ relayArgs: ['--max-replay', '1'] });
  });
  after(async () => {
    c?.disconnect();
    await stack?.stop();
  });

  test('when more messages were missed than the relay replays, the channel emits reset and goes on live', async () => {
    c = createClient({ url: stack.wsUrl, ...fast });
    const ch = c.channel('chat:reset');
    const got = collect(ch, 'r');
    const resets = collect(ch, 'reset');
    await ch.subscribe();
    stack.sql(`SELECT realtime.publish('chat:reset', 'r', '{"i":1}')`);
    await waitFor(() => got.length === 1, 'message 1');
    await stack.killRelay();
    stack.sql(`SELECT realtime.publish('chat:reset', 'r', jsonb_build_object('i', i)) FROM generate_series(2, 4) i`);
    await stack.startRelay();
    await waitFor(() => resets.length === 1, 'reset event');
    assert.equal(resets[0].channel, 'chat:reset');
    assert.match(resets[0].cursor, /^[0-9a-f]{32}$/);
    assert.equal(ch.cursor, resets[0].cursor, 'the resume point moves to the reset position');
    stack.sql(`SELECT realtime.publish('chat:reset', 'r', '{"i":5}')`);
    await waitFor(() => got.length === 2, 'live message after reset');
    assert.deepEqual(got.map((m) => m.payload.i), [1, 5], 'the missed messages are not replayed: the app refetches');
    const history = await ch.history({ limit: 10 });
    assert.deepEqual(history.map((m) => m.payload.i), [5, 4, 3, 2, 1], 'history has what the reset skipped');
  });
});
