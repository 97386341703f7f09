// Overview: the relay's counters of the last five minutes, one sample a second, as charts.

import { api, every, fmt, h } from './ui.js';
import { Chart } from './chart.js';

const CHARTS = [
  { id: 'connections', title: 'Connections and subscriptions', series: [
    { key: 'connections', label: 'connections', color: '#2f6fed' },
    { key: 'subscriptions', label: 'subscriptions', color: '#12a37f' },
    { key: 'channels', label: 'channels', color: '#f59f00' },
  ] },
  { id: 'throughput', title: 'Messages', unit: 'per second', series: [
    { key: 'dispatched', label: 'dispatched', color: '#2f6fed' },
    { key: 'frames', label: 'frames delivered', color: '#12a37f' },
  ] },
  { id: 'publishes', title: 'Publishes by outcome', unit: 'per second', series: [
    { key: 'publish_ok', label: 'ok', color: '#12a37f' },
    { key: 'publish_refused', label: 'refused', color: '#f59f00' },
    { key: 'publish_error', label: 'error', color: '#d92d20' },
  ] },
  { id: 'latency', title: 'Commit → send latency', unit: 'ms', series: [
    { key: 'latency_p50_ms', label: 'p50', color: '#12a37f' },
    { key: 'latency_p90_ms', label: 'p90', color: '#f59f00' },
    { key: 'latency_p99_ms', label: 'p99', color: '#d92d20' },
  ] },
  { id: 'lag', title: 'Replication lag', series: [
    { key: 'lag_bytes', label: 'behind', color: '#7a5af8' },
  ], format: fmt.bytes },
  { id: 'webhooks', title: 'Webhooks', series: [
    { key: 'webhook_queue', label: 'queue depth', color: '#2f6fed' },
    { key: 'webhook_failed', label: 'failed /s', color: '#d92d20' },
  ] },
];

const TILES = [
  ['connections', 'Connections', (v) => fmt.num(v, 0)],
  ['subscriptions', 'Subscriptions', (v) => fmt.num(v, 0)],
  ['dispatched', 'Messages / s', (v) => fmt.num(v)],
  ['frames', 'Frames / s', (v) => fmt.num(v)],
  ['latency_p99_ms', 'p99 latency', (v) => (v == null ? '—' : `${fmt.num(v)} ms`)],
  ['lag_bytes', 'Replication lag', fmt.bytes],
  ['webhook_queue', 'Webhook queue', (v) => fmt.num(v, 0)],
];

export function mount(main) {
  const tiles = h('div', { class: 'tiles' });
  const status = h('p', { class: 'muted', id: 'stream-status' });
  const grid = h('div', { class: 'charts' });
  main.append(h('h1', {}, 'Overview'), status, tiles, grid);
  const charts = CHARTS.map((c) => {
    const box = h('section', { class: 'card', id: `chart-${c.id}` });
    grid.append(box);
    return new Chart(box, { ...c, format: c.format ?? ((v) => fmt.num(v)) });
  });
  let cols = null;
  let last = 0;
  let span = 300;
  const stop = every(1000, async () => {
    const r = await api(`/overview?after=${last}`);
    span = r.window;
    const s = r.samples;
    if (!cols) cols = Object.fromEntries(Object.keys(s).map((k) => [k, []]));
    for (const k of Object.keys(s)) {
      cols[k].push(...s[k]);
      if (cols[k].length > span) cols[k].splice(0, cols[k].length - span);
    }
    if (cols.seq.length) last = cols.seq[cols.seq.length - 1];
    for (const c of charts) c.update(cols);
    const latest = (k) => (cols[k].length ? cols[k][cols[k].length - 1] : null);
    tiles.replaceChildren(...TILES.map(([k, label, f]) => h('div', { class: 'tile', 'data-key': k }, h('span', {}, label), h('b', {}, f(latest(k))))));
    const streaming = latest('streaming');
    status.textContent = streaming === false
      ? 'Replication stream disconnected: no messages are delivered until it reconnects.'
      : `Relay ${r.relay_id}: one sample a second, the last ${Math.round(span / 60)} minutes.`;
    status.className = streaming === false ? 'error' : 'muted';
  });
  const redraw = () => charts.forEach((c) => c.draw());
  globalThis.addEventListener('resize', redraw);
  return () => { stop(); globalThis.removeEventListener('resize', redraw); };
}
