// The relay's admin console (/admin) in headless Chromium against a real relay and Postgres:
// sign in; create a channel (with an inline validation error first); subscribe and publish from
// the inspector and see the message there and in the message browser with its counts; the RLS
// check allows the owner and denies another user; a failing webhook shows as failed and is
// delivered after "retry" once the sink recovers; the overview chart moves while a publisher
// runs; a page on another origin cannot use the signed-in session; signing out ends it.
// Screenshots go to test-results/admin/ (and into docs/admin/ with REALTIME_UPDATE_SCREENSHOTS=1).

import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { chromium } from 'playwright-core';
import { WebSocket, freePort, mintToken, repoRoot, startStack, waitFor } from './stack.mjs';

const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const TIMEOUT = 20_000;
const TOKEN = 'admin-console-test-token-0123456789abcdef';
const SHOTS = join(repoRoot, 'clients/typescript/test-results/admin');
const DOCS = join(repoRoot, 'docs/admin');

let stack;
let browser;
let context;
let page;
let base;
let sink;
let sinkMode = 'fail';
const sinkHits = [];
let other;
const errors = [];

async function shot(name) {
  const file = join(SHOTS, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  if (process.env.REALTIME_UPDATE_SCREENSHOTS === '1') copyFileSync(file, join(DOCS, `${name}.png`));
}

before(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} not found: apt-get install -y chromium (scripts/install-deps.sh does)`);
  mkdirSync(SHOTS, { recursive: true });
  if (process.env.REALTIME_UPDATE_SCREENSHOTS === '1') mkdirSync(DOCS, { recursive: true });
  stack = await startStack({
    relayArgs: [
      '--admin-token', TOKEN,
      // The webhook sink below listens on loopback, which the relay refuses by default.
      '--webhook-allow-private',
      // Fail for good after two quick attempts instead of eight spread over minutes.
      '--webhook-max-attempts', '2', '--webhook-retry-base-ms', '100',
    ],
  });
  base = stack.httpUrl;
  const sinkPort = await freePort();
  sink = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => {
      sinkHits.push({ mode: sinkMode, body });
      res.writeHead(sinkMode === 'ok' ? 200 : 500).end(sinkMode);
    });
  });
  await new Promise((r) => sink.listen(sinkPort, '127.0.0.1', r));
  sink.url = `http://127.0.0.1:${sinkPort}/hook`;
  // A page of another origin (same site: only the port differs, so the SameSite cookie goes
  // along) that tries to use the signed-in console.
  const otherPort = await freePort();
  other = createServer((req, res) => {
    const secretOf = new URL(req.url, 'http://x').searchParams.get('channel');
    res.writeHead(200, { 'content-type': 'text/html' }).end(`<!doctype html><title>start</title><script>
      const ws = new WebSocket('ws://127.0.0.1:${stack.relayPort}/admin/api/inspect/socket?role=realtime_admin');
      ws.onopen = () => { document.title = 'opened'; };
      ws.onclose = (e) => { if (document.title !== 'opened') document.title = 'closed:' + e.code; };
      // a GET with a side effect (revealing a secret is logged): sent with the cookie, unreadable here
      fetch('http://127.0.0.1:${stack.relayPort}/admin/api/channels/${secretOf}/secret', { mode: 'no-cors', credentials: 'include' })
        .finally(() => { document.body.dataset.fetched = 'true'; });
    </script><body></body>`);
  });
  await new Promise((r) => other.listen(otherPort, '127.0.0.1', r));
  other.url = `http://127.0.0.1:${otherPort}/`;
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--headless', '--no-sandbox', '--disable-gpu'] });
  context = await browser.newContext({ viewport: { width: 1360, height: 860 } });
  page = await context.newPage();
  page.on('pageerror', (e) => errors.push(e));
});

after(async () => {
  await browser?.close();
  sink?.close();
  other?.close();
  await stack?.stop();
});

const text = (selector) => page.textContent(selector);
const waitText = (selector, needle) =>
  page.waitForFunction(([s, n]) => document.querySelector(s)?.textContent.includes(n), [selector, needle], { timeout: TIMEOUT });

test('admin console: sign in (a wrong token is refused)', async () => {
  const r = await page.goto(`${base}/admin`);
  assert.equal(r.status(), 401, 'the page without a session is the sign-in form, refused');
  await page.fill('#token', 'not-the-token');
  await page.click('#sign-in button[type=submit]');
  await waitText('.error', "not this relay's admin token");
  await page.fill('#token', TOKEN);
  await page.fill('#name', 'Ada');
  await shot('sign-in');
  await page.click('#sign-in button[type=submit]');
  await page.waitForSelector('body[data-ready="true"]', { timeout: TIMEOUT });
  assert.equal(await text('#who'), 'Ada');
});

test('admin console: create a channel, with the validator\'s error shown inline first', async () => {
  await page.goto(`${base}/admin#/channels`);
  await page.waitForSelector('#channels tr[data-pattern="chat:%"]', { timeout: TIMEOUT });
  await page.click('#new-channel');
  await page.fill('#channel-form [name=pattern]', 'room_1');
  await waitText('.field-error[data-for="pattern"]', "contains '_'");
  await shot('channels-validation');
  await page.fill('#channel-form [name=pattern]', 'room:%');
  await page.fill('#channel-form [name=description]', 'chat rooms');
  await page.waitForFunction(() => document.querySelector('.field-error[data-for="pattern"]').textContent === '', null, { timeout: TIMEOUT });
  await page.click('#channel-form button[type=submit]');
  await page.waitForSelector('#channels tr[data-pattern="room:%"]', { timeout: TIMEOUT });
  // and one with a webhook to the (failing) sink
  await page.click('#new-channel');
  await page.fill('#channel-form [name=pattern]', 'hook:%');
  await page.fill('#channel-form [name=webhook_urls]', sink.url);
  await page.click('#channel-form button[type=submit]');
  await page.waitForSelector('#channels tr[data-pattern="hook:%"]', { timeout: TIMEOUT });
  assert.equal(stack.sql(`SELECT description FROM realtime.channels WHERE pattern = 'room:%'`).trim(), 'chat rooms');
  assert.equal(stack.sql(`SELECT who || ' ' || action FROM realtime.admin_log WHERE target LIKE 'channel %' ORDER BY id LIMIT 1`).trim(), 'Ada create_channel');
  await shot('channels');
});

let published;

test('admin console: the inspector subscribes, publishes and sees the message; the message browser shows it with its counts', async () => {
  await page.goto(`${base}/admin#/inspector`);
  await page.fill('#live-channel', 'room:1');
  await page.click('#live-subscribe');
  await page.waitForSelector('#live-log li[data-kind="subscribed"]', { timeout: TIMEOUT });
  // the live socket counts as a subscriber of room:% (and so does the count the hub gives)
  const counts = await page.evaluate(() => fetch('/admin/api/channels').then((r) => r.json()));
  assert.equal(counts.channels.find((c) => c.pattern === 'room:%').subscribers, 1);
  await page.fill('#publish-channel', 'room:1');
  await page.fill('#publish-event', 'greeting');
  await page.fill('#publish-payload', '{"text": "hello from the inspector"}');
  await page.click('#publish-send');
  await page.waitForSelector('#publish-link', { timeout: TIMEOUT });
  published = await text('#publish-link');
  await waitText('#live-log li[data-kind="message"]', 'room:1 · greeting');
  assert.match(await text('#live-log li[data-kind="message"] pre'), /hello from the inspector/);

  // who may subscribe? user:% rows are visible only to their own user (stack.mjs policies)
  await page.selectOption('#check-form [name=role]', 'authenticated');
  await page.fill('#check-claims', 'sub=alice');
  await page.fill('#check-channel', 'user:alice');
  await page.click('#check-run');
  await page.waitForSelector('#check-answer [data-outcome="allowed"]', { timeout: TIMEOUT });
  assert.equal(await text('#check-matched'), 'user:%');
  await shot('inspector');
  await page.fill('#check-claims', 'sub=bob');
  await page.click('#check-run');
  await page.waitForSelector('#check-answer [data-outcome="denied"]', { timeout: TIMEOUT });
  assert.equal(await text('#check-matched'), 'user:%');
  await shot('inspector-denied');

  // the message in the browser: the inspector's socket was its one WebSocket subscriber
  await page.click('#publish-link');
  await page.waitForSelector(`#messages tr[data-id="${published}"]`, { timeout: TIMEOUT });
  await waitFor(async () => {
    await page.click(`#messages tr[data-id="${published}"]`);
    await page.waitForSelector(`#message-detail[data-id="${published}"]`, { timeout: TIMEOUT });
    return (await text('#message-detail [data-count="ws"]')) === '1';
  }, 'ws_audience_count 1 in the message detail');
  assert.match(await text('#message-detail pre.json'), /hello from the inspector/);
  assert.match(await text('#message-detail'), /[0-9a-f]{32}/, 'the stream cursor is shown');
  await shot('messages');
});

test('admin console: a failing webhook shows as failed and is delivered after retry once the sink recovers', async () => {
  const r = await page.evaluate(() => fetch('/admin/api/inspect/publish', {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ channel: 'hook:1', event: 'order', payload: { n: 1 } }),
  }).then((x) => x.json()));
  await page.goto(`${base}/admin#/webhooks`);
  await page.click('#webhook-states [data-state="failed"]');
  await page.waitForSelector('#webhooks tr[data-state="failed"]', { timeout: TIMEOUT });
  assert.equal(sinkHits.length, 2, 'two attempts, both failed');
  assert.match(await text('#webhooks tr[data-state="failed"]'), /500/);
  await shot('webhooks-failed');
  sinkMode = 'ok';
  await page.click('#webhooks tr[data-state="failed"] button.retry');
  await page.click('#webhook-states [data-state="delivered"]');
  await page.waitForSelector('#webhooks tr[data-state="delivered"]', { timeout: TIMEOUT });
  assert.equal(sinkHits.at(-1).mode, 'ok');
  assert.equal(JSON.parse(sinkHits.at(-1).body).id, r.id, 'the retried delivery is that message');
  await shot('webhooks');
  assert.equal(stack.sql(`SELECT wh_delivered_count FROM realtime.messages WHERE id = '${r.id}'`).trim(), '1');
  assert.equal(stack.sql(`SELECT count(*) FROM realtime.admin_log WHERE action = 'retry_webhook' AND who = 'Ada'`).trim(), '1');
});

test('admin console: the overview chart moves while a publisher runs', async () => {
  const service = mintToken({ role: 'service_role' });
  const listener = new WebSocket(stack.wsUrl, { headers: { authorization: `Bearer ${stack.token('alice')}` } });
  await new Promise((r) => listener.once('open', r));
  listener.send(JSON.stringify({ type: 'subscribe', ref: 1, channel: 'chat:load' }));
  listener.send(JSON.stringify({ type: 'subscribe', ref: 2, channel: 'chat:lobby' }));
  listener.send(JSON.stringify({ type: 'track', ref: 3, channel: 'chat:lobby', state: { name: 'Alice' } }));
  let running = true;
  const publisher = (async () => {
    for (let n = 0; running; n++) {
      await fetch(`${base}/v1/publish`, {
        method: 'POST', headers: { authorization: `Bearer ${service}`, 'content-type': 'application/json' },
        body: JSON.stringify({ channel: 'chat:load', event: 'tick', payload: { n } }),
      });
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  try {
    await page.goto(`${base}/admin#/overview`);
    const latest = (id) => page.$eval(`#chart-${id}`, (el) => JSON.parse(el.dataset.latest ?? '{}'));
    await waitFor(async () => (await latest('throughput')).dispatched > 5, 'messages per second above 5 in the chart');
    await waitFor(async () => (await latest('throughput')).frames > 5, 'frames per second above 5 in the chart');
    await waitFor(async () => (await latest('latency')).latency_p99_ms != null, 'a latency percentile');
    const before = await page.$eval('#chart-throughput canvas', (c) => c.toDataURL());
    await page.waitForTimeout(2500);
    const after = await page.$eval('#chart-throughput canvas', (c) => c.toDataURL());
    assert.notEqual(after, before, 'the chart was redrawn with new samples');
    // `realtime_connections` counts every open socket (the listener's WebSocket, this page's own
    // HTTP connections, the publisher's), so the exact figure depends on the browser's pooling.
    assert.ok((await latest('connections')).connections >= 2, 'the listener and at least this page are counted');
    await shot('overview');
  } finally {
    running = false;
    await publisher;
  }
  await page.goto(`${base}/admin#/relays`);
  await page.waitForSelector(`#relays tr[data-relay="${stack.relayId}"]`, { timeout: TIMEOUT });
  assert.ok(Number(await text(`#relays tr[data-relay="${stack.relayId}"] td[data-col="connections"]`)) >= 1, "the listener at least");
  await page.click('#presence-channels button');
  await waitText('#presence-members', 'alice');
  await page.waitForSelector('#audit tr[data-action="create_channel"]', { timeout: TIMEOUT });
  await shot('relays');
  listener.close();
});

test('admin console: a page of another origin cannot use the signed-in session', async () => {
  const hook = stack.sql(`SELECT id FROM realtime.channels WHERE pattern = 'hook:%'`).trim();
  // the same request from the console's own page works (and is logged), so the refusal below is the origin's doing
  const own = await page.evaluate((id) => fetch(`/admin/api/channels/${id}/secret`).then((r) => r.status), hook);
  assert.equal(own, 200);
  const reveals = () => Number(stack.sql(`SELECT count(*) FROM realtime.admin_log WHERE action = 'reveal_webhook_secret'`).trim());
  assert.equal(reveals(), 1);
  const evil = await context.newPage();
  await evil.goto(`${other.url}?channel=${hook}`);
  await evil.waitForFunction(() => (document.title.startsWith('closed:') || document.title === 'opened') && document.body.dataset.fetched, null, { timeout: TIMEOUT });
  assert.match(await evil.title(), /^closed:/, 'the inspector socket refused the cross-origin handshake');
  await evil.close();
  assert.equal(reveals(), 1, 'the cross-origin request with the session cookie did nothing');
  assert.deepEqual(errors, [], 'no script errors in the console');
});

test('admin console: signing out ends the session', async () => {
  await page.goto(`${base}/admin#/overview`);
  await page.waitForSelector('body[data-ready="true"]', { timeout: TIMEOUT });
  await page.click('#sign-out');
  await page.waitForSelector('#sign-in', { timeout: TIMEOUT });
  const status = await page.evaluate(() => fetch('/admin/api/meta').then((r) => r.status));
  assert.equal(status, 401);
});
