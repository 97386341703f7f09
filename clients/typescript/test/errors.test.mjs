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

test('a frame over maxFrameBytes is refused with REALTIME_PAYLOAD_TOO_LARGE before it is sent; the connection stays up', async () => {
  await alice.connect();
  const statuses = [];
  const off = alice.onStatusChange((s) => statuses.push(s));
  await assert.rejects(alice.channel('chat:huge').publish('big', { blob: 'x'.repeat(2 * 1024 * 1024) }), isCode('REALTIME_PAYLOAD_TOO_LARGE'));
  const res = await alice.channel('chat:huge').publish('small', { ok: true });
  assert.ok(res.id, 'the same connection still publishes');
  assert.deepEqual(statuses, [], 'no reconnect happened');
  off();
});

test("a frame over the relay's limit (client limit raised) ends in close 1009, reported as REALTIME_PAYLOAD_TOO_LARGE, and the client reconnects", async () => {
  const c = createClient({ url: stack.wsUrl, token: stack.token('alice'), WebSocket, maxFrameBytes: 8 * 1024 * 1024, reconnectBaseMs: 50, reconnectMaxMs: 200 });
  const errors = [];
  c.onError((e) => errors.push(e));
  try {
    // The relay refuses the frame from its header and closes with 1009 while the rest of the
    // frame is still unread, so its TCP close can be a reset that reaches the client before the
    // close frame does (then only the lost connection is seen). Up to three tries: at least one
    // must surface the 1009 as REALTIME_PAYLOAD_TOO_LARGE.
    for (let attempt = 0; attempt < 3 && !errors.some((e) => e.code === 'REALTIME_PAYLOAD_TOO_LARGE'); attempt++) {
      await c.connect();
      await assert.rejects(c.channel('chat:huge').publish('big', { blob: 'x'.repeat(2 * 1024 * 1024) }), isCode('REALTIME_CONNECTION_LOST'));
    }
    assert.ok(errors.some((e) => e.code === 'REALTIME_PAYLOAD_TOO_LARGE'), `1009 reported: ${errors.map((e) => e.code)}`);
    await c.connect();
    assert.ok((await c.channel('chat:huge').publish('small', {})).id);
  } finally {
    c.disconnect();
  }
});

test("a token refused at the handshake is reported as REALTIME_UNAUTHORIZED and getToken's next token connects", async () => {
  let n = 0;
  const c = createClient({ url: stack.wsUrl, WebSocket, getToken: () => (++n === 1 ? 'not-a-jwt' : stack.token('alice')), reconnectBaseMs: 50, reconnectMaxMs: 200 });
  const errors = [];
  c.onError((e) => errors.push(e));
  try {
    await c.connect();
    assert.equal(n, 2);
    assert.equal(errors[0]?.code, 'REALTIME_UNAUTHORIZED');
    assert.equal(c.userId, 'alice');
  } finally {
    c.disconnect();
  }
});
