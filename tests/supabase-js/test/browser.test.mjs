// The unmodified supabase-js browser bundle (its UMD build from npm) in headless Chromium
// (Debian's /usr/bin/chromium driven by playwright-core) against a real relay and Postgres:
// the browser's own WebSocket, binary frames arriving as ArrayBuffers (vsn 2.0.0) beside a
// vsn 1.0.0 page, broadcast with ack and self, a SQL publish, presence.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';
import { startStack, mintToken } from '../../../clients/typescript/test/stack.mjs';

const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const require = createRequire(import.meta.url);
const UMD = require.resolve('@supabase/supabase-js').replace(/dist\/.*$/, 'dist/umd/supabase.js');

let stack;
let server;
let browser;
let base;

before(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} not found: apt-get install -y chromium (scripts/install-deps.sh does)`);
  stack = await startStack();
  const bundle = readFileSync(UMD);
  server = createServer((req, res) => {
    if (req.url === '/supabase.js') return res.writeHead(200, { 'content-type': 'text/javascript' }).end(bundle);
    res.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><script src="/supabase.js"></script>');
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${server.address().port}/`;
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--headless', '--no-sandbox', '--disable-gpu'] });
});

after(async () => {
  await browser?.close();
  server?.close();
  await stack?.stop();
});

/** A page whose supabase-js client (user `sub`, serializer `vsn`) has joined `room`. */
async function join(sub, vsn, room) {
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e));
  await page.goto(base);
  const args = { url: stack.httpUrl, key: mintToken({ role: 'anon' }), token: stack.token(sub), vsn, room };
  await page.evaluate(async ({ url, key, token, vsn, room }) => {
    const c = window.supabase.createClient(url, key, { accessToken: async () => token, realtime: { vsn } });
    await c.realtime.setAuth();
    window.got = [];
    const ch = c.channel(room, { config: { broadcast: { self: true, ack: true } } });
    ch.on('broadcast', { event: '*' }, (m) => window.got.push([m.event, m.payload]));
    ch.on('presence', { event: 'sync' }, () => {});
    await new Promise((resolve, reject) =>
      ch.subscribe((s, e) => (s === 'SUBSCRIBED' ? resolve() : s !== 'CLOSED' && reject(new Error(`${s}: ${e}`)))),
    );
    window.ch = ch;
  }, args);
  assert.deepEqual(errors, [], 'no script errors');
  return page;
}

const got = (page) => page.evaluate(() => window.got);

test('Chromium: two pages (vsn 2.0.0 and 1.0.0) broadcast with ack and self, hear SQL, see presence', async () => {
  const room = 'chat:browser';
  const alice = await join('alice', '2.0.0', room);
  const bob = await join('bob', '1.0.0', room);
  assert.equal(await alice.evaluate(() => window.ch.send({ type: 'broadcast', event: 'hi', payload: { from: 'alice' } })), 'ok');
  await bob.waitForFunction(() => window.got.length === 1, null, { timeout: 20_000 });
  assert.deepEqual(await got(bob), [['hi', { from: 'alice' }]]);
  await alice.waitForFunction(() => window.got.length === 1, null, { timeout: 20_000 });
  assert.deepEqual(await got(alice), [['hi', { from: 'alice' }]], 'self: true echoes to the sender (a kind 4 frame)');
  stack.sql(`SELECT realtime.publish('${room}', 'from_sql', '{"n":1}')`);
  for (const page of [alice, bob]) await page.waitForFunction(() => window.got.length === 2, null, { timeout: 20_000 });
  assert.deepEqual((await got(alice))[1], ['from_sql', { n: 1 }]);
  assert.deepEqual((await got(bob))[1], ['from_sql', { n: 1 }]);
  assert.equal(await alice.evaluate(() => window.ch.track({ where: 'chromium' })), 'ok');
  await bob.waitForFunction(() => window.ch.presenceState().alice?.[0]?.where === 'chromium', null, { timeout: 20_000 });
});
