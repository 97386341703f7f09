// React bindings, rendered with react-test-renderer against a real relay.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { createElement as h, StrictMode, useState } from 'react';
import TestRenderer, { act } from 'react-test-renderer';
import { createClient } from '../dist/index.js';
import { RealtimeProvider, useChannel, usePresence, usePublish, useRealtimeStatus } from '../dist/react/index.js';
import { startStack, waitFor, WebSocket } from './stack.mjs';

globalThis.IS_REACT_ACT_ENVIRONMENT = true;

let stack;
const clients = [];
const renderers = [];
before(async () => {
  stack = await startStack();
});
after(async () => {
  renderers.forEach((r) => act(() => r.unmount()));
  clients.forEach((c) => c.disconnect());
  await stack?.stop();
});

function client(sub) {
  const c = createClient({ url: stack.wsUrl, WebSocket, token: sub ? stack.token(sub) : null, reconnectBaseMs: 100, reconnectMaxMs: 400 });
  clients.push(c);
  return c;
}

async function render(c, element) {
  let r;
  await act(async () => {
    r = TestRenderer.create(h(StrictMode, null, h(RealtimeProvider, { client: c }, element)));
  });
  renderers.push(r);
  return r;
}

/** Waits for `cond` while letting React flush state updates. */
async function until(cond, what) {
  await waitFor(async () => {
    await act(async () => {});
    return cond();
  }, what);
}

test('useChannel subscribes while mounted, calls handlers, and unsubscribes on unmount', async () => {
  const c = client();
  const seen = [];
  let last;
  function Chat() {
    const [count, setCount] = useState(0);
    last = useChannel('chat:react', {
      message: (m) => {
        seen.push(m.payload.text);
        setCount((n) => n + 1);
      },
    });
    return h('span', null, `messages: ${count}`);
  }
  const r = await render(c, h(Chat));
  await until(() => last.reply?.ok === true, 'subscribed');
  stack.sql(`SELECT realtime.publish('chat:react', 'message', '{"text":"from sql"}')`);
  await until(() => seen.length === 1, 'message delivered to the handler');
  assert.deepEqual(seen, ['from sql'], 'StrictMode double effects do not double the handler');
  assert.equal(r.root.findByType('span').children.join(''), 'messages: 1');
  assert.equal(c.channel('chat:react').state, 'joined');
  await act(async () => r.unmount());
  renderers.splice(renderers.indexOf(r), 1);
  assert.equal(c.channel('chat:react').state, 'closed', 'the last holder unsubscribes');
});

test('useChannel reports a refused subscription as error with the server code', async () => {
  const c = client('alice');
  let last;
  function Private() {
    last = useChannel('user:bob');
    return null;
  }
  await render(c, h(Private));
  await until(() => last.error !== null, 'error');
  assert.equal(last.error.code, 'REALTIME_UNAUTHORIZED');
});

test('usePublish publishes to a channel another client receives; useRealtimeStatus follows the connection', async () => {
  const c = client('alice');
  const listener = client();
  const got = [];
  listener.channel('chat:react-pub').on('message', (m) => got.push(m.payload));
  await listener.channel('chat:react-pub').subscribe();
  let publish;
  let status;
  function Sender() {
    publish = usePublish('chat:react-pub');
    status = useRealtimeStatus();
    return h('i', null, status);
  }
  const r = await render(c, h(Sender));
  assert.equal(status, 'idle');
  let res;
  await act(async () => {
    res = await publish('message', { text: 'from a hook' });
  });
  assert.ok(res.id);
  await until(() => status === 'connected', 'status connected');
  assert.equal(r.root.findByType('i').children.join(''), 'connected');
  await waitFor(() => got.length === 1, 'listener got it');
  assert.deepEqual(got[0], { text: 'from a hook' });
  await act(async () => c.disconnect());
  assert.equal(status, 'disconnected');
});

test('usePresence shows both users, others excludes self, update changes the state', async () => {
  const views = {};
  function Who({ name }) {
    views[name] = usePresence('chat:react-presence', { name });
    return null;
  }
  await render(client('alice'), h(Who, { name: 'alice' }));
  await render(client('bob'), h(Who, { name: 'bob' }));
  await until(() => views.alice.members.length === 2 && views.bob.members.length === 2, 'both see both');
  assert.deepEqual(views.alice.others.map((m) => m.presence_id), ['bob']);
  assert.deepEqual(views.bob.others.map((m) => m.presence_id), ['alice']);
  await act(async () => views.bob.update((s) => ({ ...s, typing: true })));
  await until(() => views.alice.others[0]?.state.typing === true, 'alice sees the update');
});
