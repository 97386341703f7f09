// Presence with two clients.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createClient } from '../dist/index.js';
import { collect, startStack, waitFor, WebSocket } from './stack.mjs';

describe('presence', () => {
  let stack;
  let alice;
  let bob;
  before(async () => {
    stack = await startStack();
    const opts = { url: stack.wsUrl, WebSocket, reconnectBaseMs: 100, reconnectMaxMs: 400 };
    alice = createClient({ ...opts, token: stack.token('alice') });
    bob = createClient({ ...opts, token: stack.token('bob') });
  });
  after(async () => {
    alice?.disconnect();
    bob?.disconnect();
    await stack?.stop();
  });

  test('two clients see each other join, update and leave; the subscribe reply carries the members', async () => {
    const a = alice.channel('chat:presence');
    const joins = collect(a, 'presence:join');
    const updates = collect(a, 'presence:update');
    const leaves = collect(a, 'presence:leave');
    assert.equal((await a.subscribe()).ok, true);
    await a.track({ name: 'Alice' });
    await waitFor(() => joins.some((e) => e.member.presence_id === 'alice'), 'alice sees her own join');

    const b = bob.channel('chat:presence');
    const reply = await b.subscribe();
    assert.equal(reply.ok, true);
    assert.deepEqual(reply.presence.members.map((m) => [m.presence_id, m.user_id, m.state]), [['alice', 'alice', { name: 'Alice' }]]);
    await b.track({ name: 'Bob' });
    await waitFor(() => joins.some((e) => e.member.presence_id === 'bob'), 'alice sees bob join');
    assert.deepEqual(a.presence().map((m) => m.presence_id).sort(), ['alice', 'bob']);

    await b.track({ name: 'Bob', typing: true });
    await waitFor(() => updates.some((e) => e.member.state.typing === true), 'alice sees bob update');
    await b.untrack();
    await waitFor(() => leaves.some((e) => e.member.presence_id === 'bob'), 'alice sees bob leave');
    assert.deepEqual(a.presence().map((m) => m.presence_id), ['alice']);
    await waitFor(() => b.presence().length === 1, 'bob sees his own leave');
    assert.deepEqual(b.presence().map((m) => m.presence_id), ['alice']);
  });

  test('after a reconnect the snapshot is diffed: a member that left meanwhile is reported as a leave, trackers re-track', async () => {
    const a = alice.channel('chat:presence2');
    const b = bob.channel('chat:presence2');
    const leaves = collect(a, 'presence:leave');
    await a.subscribe();
    await b.subscribe();
    await a.track({ name: 'Alice' });
    await b.track({ name: 'Bob' });
    await waitFor(() => a.presence().length === 2, 'both tracked');

    await stack.killRelay();
    await waitFor(() => bob.status === 'reconnecting', 'bob offline');
    bob.disconnect(); // bob never comes back
    await stack.startRelay();
    await waitFor(() => alice.status === 'connected', 'alice reconnected');
    await waitFor(() => leaves.some((e) => e.member.presence_id === 'bob'), 'leave of bob from the snapshot diff');
    await waitFor(() => a.presence().map((m) => m.presence_id).join() === 'alice', 'alice re-tracked herself');
  });

  test('track with a non-object state is refused with REALTIME_INVALID_REQUEST', async () => {
    const a = alice.channel('chat:presence3');
    await a.subscribe();
    await assert.rejects(a.track('not an object'), (e) => e.code === 'REALTIME_INVALID_REQUEST');
  });
});
