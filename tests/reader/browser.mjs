#!/usr/bin/env node
// Opens a page in headless Chromium (Debian's /usr/bin/chromium driven by playwright-core, from
// the TypeScript SDK's dev dependencies) and prints, one line each, what a reader would see:
// the page's console messages, its uncaught errors (`pageerror: ...`) and, with --watch SEL,
// the text of the element SEL each time it changes (`[SEL] text`). Runs until killed.
// Used by tests/tests/docs (the reader-path test) for the browser snippets and the demo page.
//
// Usage: node tests/reader/browser.mjs URL [--watch SELECTOR]
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const sdk = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'clients', 'typescript');
const { chromium } = createRequire(join(sdk, 'package.json'))('playwright-core');

const [url, ...rest] = process.argv.slice(2);
const watch = rest[0] === '--watch' ? rest[1] : null;
if (!url) {
  console.error('usage: browser.mjs URL [--watch SELECTOR]');
  process.exit(2);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu'],
});
const close = () => browser.close().finally(() => process.exit(0));
process.on('SIGTERM', close);
process.on('SIGINT', close);

const page = await browser.newPage();
page.on('console', (m) => console.log(m.text()));
page.on('pageerror', (e) => console.log(`pageerror: ${e.message}`));
if (watch) {
  await page.exposeFunction('__docsWatch', (text) => console.log(`[${watch}] ${text}`));
  await page.addInitScript((selector) => {
    let last = null;
    const report = () => {
      const el = document.querySelector(selector);
      const text = el ? el.textContent.replace(/\s+/g, ' ').trim() : null;
      if (text !== null && text !== last) {
        last = text;
        window.__docsWatch(text);
      }
    };
    new MutationObserver(report).observe(document, { subtree: true, childList: true, characterData: true });
  }, watch);
}
await page.goto(url);
