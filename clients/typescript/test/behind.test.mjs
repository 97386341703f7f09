// A subscriber that falls behind (its socket stops reading while 32 MB are published): stored
// messages are caught up from the log, in order, none lost or doubled; the ephemeral ones it
// missed are counted by `dropped`, so received + dropped is exactly what was sent; presence it
// missed meanwhile is right once it reads again.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { createClient } from '../dist/index.js';
import { collect, startStack, waitFor, WebSocket } from './stack.mjs';

/** The `ws` WebSocket, remembering the last one made so the test can pause its TCP socket. */
class PausableWebSocket extends WebSocket {
  static last = null;
  constructor(...args) {
    super(...args);
    PausableWebSocket.last = this;
  }
}

let stack;
const clients = [];
before(async () => {
  stack = await startStack();
});
after(async () => {
  clients.forEach((c) => c.disconnect());
  await stack?.stop();
});

test('a subscriber that falls behind gets every stored message, a dropped count for ephemeral ones, and current presence', async () => {
  const N = 4000;
  const reader = createClient({ url: stack.wsUrl, WebSocket: PausableWebSocket, token: stack.token('reader') });
  clients.push(reader);
  const ch = reader.channel('chat:behind');
  const stored = collect(ch, 's');
  const ephemeral = collect(ch, 'e');
  const dropped = collect(ch, 'dropped');
  assert.equal((await ch.subscribe()).ok, true);
  const socket = PausableWebSocket.last._socket;
  socket.pause();

  // 4 KB each, 16 MB of each kind: far past the relay's 1 MiB per-connection queue and the loopback socket buffers.
  stack.sql(`SELECT realtime.broadcast('chat:behind', 'e', jsonb_build_object('i', i, 'pad', repeat('x', 4000))) FROM generate_series(1, ${N}) i`);
  stack.sql(`SELECT realtime.publish('chat:behind', 's', jsonb_build_object('i', i, 'pad', repeat('x', 4000))) FROM generate_series(1, ${N}) i`);
  const bob = createClient({ url: stack.wsUrl, WebSocket, token: stack.token('bob') });
  clients.push(bob);
  const bobCh = bob.channel('chat:behind');
  assert.equal((await bobCh.subscribe()).ok, true);
  await bobCh.track({ name: 'Bob' });
  await new Promise((r) => setTimeout(r, 1000));
  socket.resume();

  await waitFor(() => stored.length >= N, `${N} stored messages`, 60_000);
  assert.deepEqual(stored.map((m) => m.payload.i), Array.from({ length: N }, (_, k) => k + 1), 'in order, none lost or doubled');
  await waitFor(() => ch.presence().some((m) => m.user_id === 'bob'), 'bob present');
  const missed = dropped.reduce((sum, d) => sum + d.count, 0);
  assert.ok(missed > 0, 'the reader fell behind on ephemeral messages');
  assert.ok(dropped.every((d) => d.channel === 'chat:behind'));
  assert.equal(ephemeral.length + missed, N, `received ${ephemeral.length} + dropped ${missed}`);
});
