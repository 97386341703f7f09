// The demo page in headless Chromium (Debian's /usr/bin/chromium driven by playwright-core),
// against a real relay and Postgres set up with sql/demo/setup.sql: two users chat, see each
// other typing and online, watch an SQL UPDATE land in the orders table, and a reload resumes
// the chat from history.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { chromium } from 'playwright-core';
import { freePort, repoRoot, startStack } from './stack.mjs';

const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const TIMEOUT = 20_000;

let stack;
let server;
let browser;
let base;

before(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} not found: apt-get install -y chromium (scripts/install-deps.sh does)`);
  stack = await startStack({ sqlFiles: [join(repoRoot, 'sql/demo/setup.sql')] });
  stack.sqlFile(join(repoRoot, 'sql/demo/seed.sql'));
  const config = join(stack.dir, 'config.js');
  const users = { alice: stack.token('alice'), bob: stack.token('bob') };
  writeFileSync(config, `window.REALTIME_DEMO = ${JSON.stringify({ url: stack.wsUrl, users })};\n`);
  const port = await freePort();
  server = spawn(process.execPath, [join(repoRoot, 'clients/typescript/demo/serve.mjs'), '--port', String(port), '--config', config], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await new Promise((resolve, reject) => {
    server.stdout.once('data', resolve);
    server.once('exit', (code) => reject(new Error(`demo server exited with ${code}`)));
  });
  base = `http://127.0.0.1:${port}/`;
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--headless', '--no-sandbox', '--disable-gpu'] });
});

after(async () => {
  await browser?.close();
  server?.kill('SIGTERM');
  await stack?.stop();
});

async function open(user) {
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e));
  await page.goto(`${base}?user=${user}`);
  await page.waitForSelector('body[data-ready="true"]', { timeout: TIMEOUT });
  assert.equal(await page.textContent('#status'), 'connected');
  assert.deepEqual(errors, [], 'no script errors');
  return page;
}

const text = (page, selector) => page.$$eval(selector, (els) => els.map((e) => e.textContent));

test('demo page: chat between two pages, typing indicator, live orders from SQL, reload resumes history', async () => {
  const alice = await open('alice');
  const bob = await open('bob');

  // The seed orders come from the channel's history.
  assert.deepEqual(await text(alice, '#orders tr td[data-col="customer"]'), ['Ada', 'Grace', 'Linus']);

  // A message typed in one page appears in the other.
  await alice.fill('#chat-input', 'hello from alice');
  await alice.press('#chat-input', 'Enter');
  await bob.waitForFunction(() => document.querySelector('#messages')?.textContent.includes('hello from alice'), null, { timeout: TIMEOUT });
  assert.deepEqual(await text(bob, '#messages li .from'), ['alice']);

  // Typing in one page shows the (ephemeral) indicator in the other.
  await bob.type('#chat-input', 'hi');
  await alice.waitForFunction(() => document.querySelector('#typing')?.textContent.includes('bob is typing'), null, { timeout: TIMEOUT });

  // An SQL UPDATE on the watched table appears live, and so does an INSERT.
  stack.sql(`UPDATE public.orders SET status = 'shipped' WHERE id = 1`);
  stack.sql(`INSERT INTO public.orders (id, customer, item, total) VALUES (4, 'Margaret', 'rocket', 1969.00)`);
  for (const page of [alice, bob]) {
    await page.waitForFunction(() => document.querySelector('#orders tr[data-id="1"] td[data-col="status"]')?.textContent === 'shipped', null, { timeout: TIMEOUT });
    await page.waitForSelector('#orders tr[data-id="4"]', { timeout: TIMEOUT });
  }

  // Reload resumes: the chat comes back from history.
  await bob.press('#chat-input', 'Enter');
  await alice.waitForFunction(() => document.querySelectorAll('#messages li').length === 2, null, { timeout: TIMEOUT });
  await bob.reload();
  await bob.waitForSelector('body[data-ready="true"]', { timeout: TIMEOUT });
  assert.deepEqual(await text(bob, '#messages li'), ['alicehello from alice', 'bobhi']);
  assert.equal(await bob.textContent('#orders tr[data-id="1"] td[data-col="status"]'), 'shipped', 'orders rebuilt from history');
  await alice.close();
  await bob.close();
});

test('demo page: who\'s online shows both users', async () => {
  const alice = await open('alice');
  const bob = await open('bob');
  for (const page of [alice, bob]) {
    await page.waitForFunction(() => document.querySelectorAll('#online li').length === 2, null, { timeout: TIMEOUT });
    assert.deepEqual((await page.$$eval('#online li', (els) => els.map((e) => e.dataset.user))).sort(), ['alice', 'bob']);
  }
  await bob.close();
  await alice.waitForFunction(() => document.querySelectorAll('#online li').length === 1, null, { timeout: TIMEOUT });
  await alice.close();
});

test('demo page on auto: WebSocket refused → Server-Sent Events; SSE refused too → long-poll; chat, orders and presence work on each', async () => {
  for (const [blockSse, expected] of [
    [false, 'sse'],
    [true, 'poll'],
  ]) {
    const page = await browser.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(e));
    // The browser's own WebSocket is cut by the test (as a proxy that strips Upgrade would);
    // and, the second time, its requests to /v1/sse too.
    await page.routeWebSocket(/\/v1\/socket/, (ws) => ws.close({ code: 1008, reason: 'blocked by the test' }));
    if (blockSse) await page.route(/\/v1\/sse/, (route) => route.abort('connectionrefused'));
    await page.goto(`${base}?user=alice`);
    await page.waitForSelector('body[data-ready="true"]', { timeout: TIMEOUT });
    assert.equal(await page.textContent('#status'), 'connected');
    assert.equal(await page.getAttribute('#status', 'data-transport'), expected);

    const line = `typed over ${expected}`;
    await page.fill('#chat-input', line);
    await page.press('#chat-input', 'Enter');
    await page.waitForFunction((t) => document.querySelector('#messages')?.textContent.includes(t), line, { timeout: TIMEOUT });

    stack.sql(`UPDATE public.orders SET status = 'packed-${expected}' WHERE id = 2`);
    await page.waitForFunction(
      (s) => [...document.querySelectorAll('#orders td[data-col="status"]')].some((td) => td.textContent === s),
      `packed-${expected}`,
      { timeout: TIMEOUT },
    );
    if (expected === 'sse') {
      // Presence over HTTP, tied to the stream: alice is online, as the stream's presence events say.
      await page.waitForFunction(() => document.querySelector('#online li[data-user="alice"]'), null, { timeout: TIMEOUT });
    } else {
      // Long-poll tracks through a lease (others see alice) but polls no presence events.
      await new Promise((r) => setTimeout(r, 1000));
    }
    assert.equal(await page.textContent('#presence-error'), '', 'track succeeded');
    assert.deepEqual(errors, [], 'no script errors');
    await page.close();
  }
});

test('a plain EventSource in Chromium streams a channel and resumes with Last-Event-ID after the relay is killed', async () => {
  const page = await browser.newPage();
  await page.goto(base);
  const url = `${stack.httpUrl}/v1/sse?channel=chat:eventsource&token=${stack.token('alice')}`;
  await page.evaluate(
    (u) =>
      new Promise((ready) => {
        window.got = [];
        const es = new EventSource(u);
        es.onmessage = (e) => window.got.push(JSON.parse(e.data).payload.i);
        es.addEventListener('ready', () => ready(), { once: true });
      }),
    url,
  );
  const got = () => page.evaluate(() => window.got);
  stack.sql(`SELECT realtime.publish('chat:eventsource', 'n', '{"i":1}')`);
  await page.waitForFunction(() => window.got.length === 1, null, { timeout: TIMEOUT });

  // The browser reconnects by itself (retry: 1 s) and sends the last id it saw.
  await stack.killRelay();
  stack.sql(`SELECT realtime.publish('chat:eventsource', 'n', jsonb_build_object('i', i)) FROM generate_series(2, 4) i`);
  await stack.startRelay();
  await page.waitForFunction(() => window.got.length >= 4, null, { timeout: 30_000 });
  stack.sql(`SELECT realtime.publish('chat:eventsource', 'n', '{"i":5}')`);
  await page.waitForFunction(() => window.got.length >= 5, null, { timeout: TIMEOUT });
  await new Promise((r) => setTimeout(r, 300));
  assert.deepEqual(await got(), [1, 2, 3, 4, 5], 'none lost, none doubled, in order');
  await page.close();
});
