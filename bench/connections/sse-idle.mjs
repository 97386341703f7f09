// Idle Server-Sent Events streams and the relay's RSS per stream (issue 16: ≤ 16 KB).
//
//   node bench/connections/sse-idle.mjs --url http://127.0.0.1:4000 --pid <relay pid> \
//     --steps 1000,2000 [--channels 1] [--settle 3] [--concurrency 64]
//
// Opens the steps' streams (`GET /v1/sse?channel=bench:<i % channels>`, one TCP connection
// each, like EventSource), waits for each stream's `ready` event, then --settle seconds, and reads
// the relay's VmRSS: KB per stream = (RSS − RSS before the first stream) / open streams.
// Without --channels each stream has a channel of its own. Prints one JSON line.
import http from 'node:http';
import fs from 'node:fs';

const argv = process.argv.slice(2);
const arg = (name, dflt) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : dflt;
};
const url = new URL(arg('url', 'http://127.0.0.1:4000'));
const pid = arg('pid');
const steps = arg('steps', '1000').split(',').map(Number);
const channels = Number(arg('channels', steps[steps.length - 1]));
const settle = Number(arg('settle', '3'));
const concurrency = Number(arg('concurrency', '64'));
if (!pid) throw new Error('--pid <relay pid> is required');

const rssKb = () => Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);
const open = []; // kept so the streams stay open

function stream(i) {
  return new Promise((resolve, reject) => {
    const req = http.get(
      { host: url.hostname, port: url.port, path: `/v1/sse?channel=bench:${i % channels}`, agent: false,
        headers: { accept: 'text/event-stream' } },
      (res) => {
        if (res.statusCode !== 200) return reject(new Error(`HTTP ${res.statusCode}`));
        let seen = '';
        const onData = (chunk) => {
          seen += chunk;
          if (seen.includes('event: ready')) {
            res.off('data', onData);
            res.on('data', () => {}); // keep-alives, read and dropped
            resolve();
          }
        };
        res.setEncoding('utf8');
        res.on('data', onData);
      },
    );
    req.on('error', reject);
    open.push(req);
  });
}

const baseline = rssKb();
const out = { mode: 'sse-idle', baseline_rss_kb: baseline, channels, steps: [] };
let opened = 0;
let failed = 0;
for (const step of steps) {
  const started = Date.now();
  let next = opened;
  const worker = async () => {
    while (next < step) {
      const i = next++;
      await stream(i).catch(() => { failed += 1; });
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  opened = step;
  await new Promise((r) => setTimeout(r, settle * 1000));
  const rss = rssKb();
  const ok = opened - failed;
  out.steps.push({ streams: step, open: ok, failed_total: failed, setup_s: (Date.now() - started) / 1000,
    rss_kb: rss, kb_per_stream: Math.round(((rss - baseline) / ok) * 10) / 10 });
  console.error(`  step ${step}: ${ok} open, RSS ${rss} kB, ${out.steps.at(-1).kb_per_stream} kB per stream`);
}
console.log(JSON.stringify(out));
process.exit(0);
