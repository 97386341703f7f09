// Refusals surface as RealtimeError with the server's code.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { createClient, RealtimeError } from '../dist/index.js';
import { startStack, WebSocket } from './stack.mjs';

let stack;
let alice;
let anon;
before(async () => {
  stack = await startStack();
  alice = createClient({ url: stack.wsUrl, token: stack.token('alice'), WebSocket });
  anon = createClient({ url: stack.wsUrl, WebSocket });
});
after(async () => {
  alice?.disconnect();
  anon?.disconnect();
  await stack?.stop();
});

const isCode = (code) => (e) => {
  assert.ok(e instanceof RealtimeError, `a RealtimeError, got ${e}`);
  assert.equal(e.code, code);
  assert.ok(e.message.length > 0);
  return true;
};

test('subscribe to a channel the role may not see resolves {ok:false} with REALTIME_UNAUTHORIZED', async () => {
  const reply = await alice.channel('user:bob').subscribe();
  assert.equal(reply.ok, false);
  assert.ok(reply.error instanceof RealtimeError);
  assert.equal(reply.error.code, 'REALTIME_UNAUTHORIZED');
  assert.equal(alice.channel('user:bob').state, 'closed', 'a refused channel is not retried');
});

test('subscribe to a channel no row matches resolves {ok:false} with REALTIME_NOT_FOUND', async () => {
  const reply = await alice.channel('nowhere').subscribe();
  assert.equal(reply.ok, false);
  assert.equal(reply.error.code, 'REALTIME_NOT_FOUND');
});

test('publish with an invalid event name rejects with REALTIME_INVALID_REQUEST', async () => {
  await assert.rejects(alice.channel('chat:err').publish('', { a: 1 }), isCode('REALTIME_INVALID_REQUEST'));
});

test('publish over max_payload_bytes rejects with REALTIME_PAYLOAD_TOO_LARGE and nothing is stored', async () => {
  await assert.rejects(alice.channel('chat:big').publish('big', { blob: 'x'.repeat(5000) }), isCode('REALTIME_PAYLOAD_TOO_LARGE'));
  assert.equal(stack.sql(`SELECT count(*) FROM realtime.messages WHERE channel = 'chat:big'`).trim(), '0');
});

test('publish the role is not allowed to make rejects with REALTIME_UNAUTHORIZED', async () => {
  await assert.rejects(anon.channel('chat:err').publish('message', { text: 'anon' }), isCode('REALTIME_UNAUTHORIZED'));
});

test('publish to a channel no row matches rejects with REALTIME_NOT_FOUND', async () => {
  await assert.rejects(alice.channel('nowhere').publish('message', {}), isCode('REALTIME_NOT_FOUND'));
});

test('history of a channel the role may not see rejects with REALTIME_UNAUTHORIZED', async () => {
  await assert.rejects(alice.channel('secret').history(), isCode('REALTIME_UNAUTHORIZED'));
});

test('the client keeps working after refusals', async () => {
  const reply = await alice.channel('chat:ok').subscribe();
  assert.equal(reply.ok, true);
  const res = await alice.channel('chat:ok').publish('message', { text: 'fine' });
  assert.ok(res.id);
});
