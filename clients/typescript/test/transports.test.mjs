// The SDK on every transport against a real relay: Server-Sent Events and long-poll carry the
// same channel API (subscribe, messages from SQL, publish, history, resume after the relay is
// killed), `auto` falls back WebSocket → SSE → long-poll behind a real HTTP proxy that refuses
// what a corporate proxy refuses, and hint subscriptions pull what they were told about.

import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { createClient } from '../dist/index.js';
import { collect, freePort, sleep, startStack, waitFor, WebSocket } from './stack.mjs';

const fast = { reconnectBaseMs: 100, reconnectMaxMs: 400 };

/**
 * A forwarding HTTP proxy in front of the relay that refuses WebSocket upgrades while
 * `proxy.upgrades` is false (as proxies that strip `Upgrade` do) and answers 403 to any path
 * starting with one of `block`.
 */
async function startProxy(targetPort, { block = [] } = {}) {
  const server = http.createServer((req, res) => {
    if (block.some((p) => req.url.startsWith(p))) {
      res.writeHead(403, { 'content-type': 'text/plain' });
      res.end('blocked by the proxy');
      return;
    }
    const up = http.request({ host: '127.0.0.1', port: targetPort, path: req.url, method: req.method, headers: req.headers }, (r) => {
      res.writeHead(r.statusCode, r.headers);
      r.pipe(res);
    });
    up.on('error', () => res.destroy());
    res.on('close', () => up.destroy());
    req.pipe(up);
  });
  const proxy = { upgrades: false };
  server.on('upgrade', (req, socket, head) => {
    if (!proxy.upgrades) {
      socket.end('HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
      return;
    }
    const up = net.connect(targetPort, '127.0.0.1', () => {
      const lines = [`${req.method} ${req.url} HTTP/1.1`];
      for (let i = 0; i < req.rawHeaders.length; i += 2) lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
      up.write(lines.join('\r\n') + '\r\n\r\n');
      up.write(head);
      socket.pipe(up).pipe(socket);
    });
    up.on('error', () => socket.destroy());
    socket.on('error', () => up.destroy());
  });
  const port = await freePort();
  await new Promise((r) => server.listen(port, '127.0.0.1', r));
  return Object.assign(proxy, {
    url: `ws://127.0.0.1:${port}/v1/socket`,
    close: () => {
      server.closeAllConnections();
      server.close();
    },
  });
}

describe('transports', () => {
  let stack;
  const clients = [];
  const proxies = [];
  const client = (opts) => {
    const c = createClient({ url: stack.wsUrl, ...fast, ...opts });
    clients.push(c);
    return c;
  };
  before(async () => {
    // Keep-alives every second (default 15 s), so the relay notices a closed stream quickly.
    stack = await startStack({ relayArgs: ['--sse-keepalive-secs', '1'] });
  });
  after(async () => {
    clients.forEach((c) => c.disconnect());
    proxies.forEach((p) => p.close());
    await stack?.stop();
  });

  for (const transport of ['sse', 'poll']) {
    test(`${transport}: messages from SQL and from the client, history, and resume after the relay is killed`, async () => {
      const c = client({ transport, token: stack.token(`ada-${transport}`) });
      const statuses = [];
      c.onStatusChange((s, t) => statuses.push(`${s}:${t}`));
      const ch = c.channel(`chat:${transport}`);
      const got = collect(ch, 'n');
      const reply = await ch.subscribe();
      assert.equal(reply.ok, true, JSON.stringify(reply));
      assert.equal(c.transport, transport);
      assert.ok(statuses.includes(`connected:${transport}`), statuses.join());

      stack.sql(`SELECT realtime.publish('chat:${transport}', 'n', '{"i":1}')`);
      await waitFor(() => got.length === 1, 'a message from SQL');
      const published = await ch.publish('n', { i: 2 });
      assert.match(published.cursor, /^[0-9a-f]{32}$/);
      await waitFor(() => got.length === 2, 'the client publish, delivered back');
      const history = await ch.history({ limit: 5 });
      assert.deepEqual(history.map((m) => m.payload.i), [2, 1], 'history newest first');

      await stack.killRelay();
      stack.sql(`SELECT realtime.publish('chat:${transport}', 'n', jsonb_build_object('i', i)) FROM generate_series(3, 5) i`);
      await stack.startRelay();
      await waitFor(() => got.length >= 5, 'the messages published while the relay was down');
      stack.sql(`SELECT realtime.publish('chat:${transport}', 'n', '{"i":6}')`);
      await waitFor(() => got.length >= 6, 'a live message after the resume');
      await sleep(300);
      assert.deepEqual(got.map((m) => m.payload.i), [1, 2, 3, 4, 5, 6], 'no gap, no duplicate, commit order');

      {
        // Presence over HTTP (tied to the stream on SSE, a lease kept by heartbeats on
        // long-poll): a WebSocket client sees it come and go.
        const watcher = client({ WebSocket });
        const wch = watcher.channel(`chat:${transport}`);
        const joins = collect(wch, 'presence:join');
        const leaves = collect(wch, 'presence:leave');
        await wch.subscribe();
        await ch.track({ name: 'ada' });
        await waitFor(() => joins.some((j) => j.member.user_id === `ada-${transport}`), 'the watcher sees ada join');
        assert.deepEqual(joins.find((j) => j.member.user_id === `ada-${transport}`).member.state, { name: 'ada' });
        // Another channel subscribed on the same client restarts the stream (or the poll):
        // presence follows it.
        assert.equal((await c.channel(`chat:${transport}-2`).subscribe()).ok, true);
        await sleep(500);
        await waitFor(() => wch.presence().some((m) => m.user_id === `ada-${transport}`), 'ada still online after the restart');
        c.disconnect();
        await waitFor(() => !wch.presence().some((m) => m.user_id === `ada-${transport}`), 'ada leaves when the stream ends', 10_000);
        assert.ok(leaves.length >= 1);
        c.connect();
      }
      const refused = await c.channel('secret').subscribe();
      assert.equal(refused.ok, false);
      assert.equal(refused.error.code, 'REALTIME_UNAUTHORIZED');
      stack.sql(`SELECT realtime.publish('chat:${transport}', 'n', '{"i":7}')`);
      await waitFor(() => got.length >= 7, 'the other channel still flows after a refused subscribe');
    });
  }

  test('auto: WebSocket refused by a proxy → SSE; SSE refused too → long-poll; the same code works on each', async () => {
    const noWs = await startProxy(stack.relayPort);
    const noStreams = await startProxy(stack.relayPort, { block: ['/v1/sse'] });
    proxies.push(noWs, noStreams);
    for (const [proxy, expected] of [
      [noWs, 'sse'],
      [noStreams, 'poll'],
    ]) {
      const c = client({ url: proxy.url, transport: 'auto', WebSocket, token: stack.token('bob') });
      const seen = [];
      c.onStatusChange((s, t) => seen.push(`${s}:${t}`));
      const ch = c.channel(`chat:auto-${expected}`);
      const got = collect(ch, 'n');
      assert.equal((await ch.subscribe()).ok, true);
      assert.equal(c.transport, expected, seen.join());
      await ch.publish('n', { i: 1 });
      stack.sql(`SELECT realtime.publish('chat:auto-${expected}', 'n', '{"i":2}')`);
      await waitFor(() => got.length === 2, `messages over ${expected}`);
      assert.deepEqual(got.map((m) => m.payload.i), [1, 2]);
    }
  });

  test('auto: back to WebSocket once the proxy lets it through, resuming without a gap', async () => {
    const proxy = await startProxy(stack.relayPort);
    proxies.push(proxy);
    // retryWebSocketMs 1.5 s instead of 60 s, so the test does not wait a minute.
    const c = client({ url: proxy.url, transport: 'auto', WebSocket, retryWebSocketMs: 1_500 });
    const ch = c.channel('chat:back');
    const got = collect(ch, 'n');
    assert.equal((await ch.subscribe()).ok, true);
    assert.equal(c.transport, 'sse');
    stack.sql(`SELECT realtime.publish('chat:back', 'n', '{"i":1}')`);
    await waitFor(() => got.length === 1, 'a message over SSE');
    proxy.upgrades = true;
    await waitFor(() => c.transport === 'websocket', 'back on WebSocket', 10_000);
    stack.sql(`SELECT realtime.publish('chat:back', 'n', '{"i":2}')`);
    await waitFor(() => got.length === 2, 'a message over WebSocket');
    assert.deepEqual(got.map((m) => m.payload.i), [1, 2]);
  });

  for (const transport of ['websocket', 'sse', 'poll']) {
    test(`hint subscription on ${transport}: hints without payload, then pull() fetches the messages`, async () => {
      const c = client({ transport, WebSocket });
      const ch = c.channel(`chat:hint-${transport}`);
      const hints = collect(ch, 'hint');
      assert.equal((await ch.subscribe({ hint: true })).ok, true);
      stack.sql(`SELECT realtime.publish('chat:hint-${transport}', 'n', jsonb_build_object('i', i)) FROM generate_series(1, 3) i`);
      await waitFor(() => hints.length === 3, 'three hints');
      assert.ok(hints.every((h) => h.payload === undefined && /^[0-9a-f]{32}$/.test(h.cursor) && h.event === 'n'), JSON.stringify(hints));
      const first = await ch.pull({ limit: 2 });
      const rest = await ch.pull();
      assert.deepEqual([...first, ...rest].map((m) => m.payload.i), [1, 2, 3]);
      assert.equal(rest[rest.length - 1].cursor, hints[2].cursor);
      assert.deepEqual(await ch.pull(), [], 'nothing pulled twice');
    });
  }
});
