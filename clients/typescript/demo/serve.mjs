#!/usr/bin/env node
// A small static server for the demo page: demo/ at `/`, the SDK build (dist/) at `/sdk/`, and
// the config file given with --config (tokens and relay URL, written by scripts/run.sh) at
// `/config.js`. Files under `/sdk/` carry `access-control-allow-origin: *`, so pages of your own
// (even file:// ones) can import the SDK from `/sdk/index.js`, as docs/quickstart.md does; the
// config (which holds tokens) is never offered to other origins.
// Usage: node demo/serve.mjs --port 4001 --config path/to/config.js
import { createServer } from 'node:http';
import { readFile } from 'node:fs/promises';
import { dirname, extname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const arg = (name, fallback) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : fallback;
};
const port = Number(arg('port', process.env.DEMO_PORT || 4001));
const host = arg('host', '127.0.0.1');
const configPath = arg('config', join(here, 'config.js'));
const roots = { '/sdk/': join(here, '..', 'dist'), '/': here };
const types = { '.html': 'text/html', '.js': 'text/javascript', '.mjs': 'text/javascript', '.css': 'text/css', '.map': 'application/json' };

const server = createServer(async (req, res) => {
  const path = decodeURIComponent(new URL(req.url, 'http://x').pathname);
  let file;
  if (path === '/config.js') file = configPath;
  else {
    const prefix = path.startsWith('/sdk/') ? '/sdk/' : '/';
    const rel = normalize(path.slice(prefix.length) || 'index.html');
    if (rel.startsWith('..')) return void res.writeHead(400).end('bad path');
    file = join(roots[prefix], rel);
  }
  try {
    const body = await readFile(file);
    const headers = { 'content-type': types[extname(file)] ?? 'application/octet-stream', 'cache-control': 'no-store' };
    if (path.startsWith('/sdk/')) headers['access-control-allow-origin'] = '*';
    res.writeHead(200, headers);
    res.end(body);
  } catch {
    res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
  }
});
server.listen(port, host, () => console.log(`demo page on http://${host}:${port}/`));
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => server.close(() => process.exit(0)));
