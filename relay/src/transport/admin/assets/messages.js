// Messages: realtime.messages by channel and time, newest first, a page at a time; one message
// in full with its counts, cursor and webhook deliveries.

import { api, fill, fmt, h } from './ui.js';

const RANGES = [['900', 'last 15 minutes'], ['3600', 'last hour'], ['86400', 'last 24 hours'], ['604800', 'last 7 days'], ['', 'any time']];

function counts(m) {
  return h('span', { class: 'counts', title: 'WebSocket subscribers · webhook URLs · webhooks delivered' },
    h('span', { 'data-count': 'ws' }, `${m.ws_audience_count} ws`), ' · ',
    h('span', { 'data-count': 'wh' }, `${m.wh_audience_count} wh`), ' · ',
    h('span', { 'data-count': 'whd' }, `${m.wh_delivered_count} delivered`));
}

function detail(m) {
  const rows = [
    ['id', h('code', {}, m.id)],
    ['channel', h('span', {}, h('code', {}, m.channel), m.channel_pattern ? ` (row ${m.channel_pattern})` : '')],
    ['event', h('code', {}, m.event)],
    ['sender', m.sender.id ? `${m.sender.type}: ${m.sender.id}` : m.sender.type],
    ['created', fmt.time(m.created_at)],
    ['cursor', m.cursor ? h('code', {}, m.cursor) : h('span', { class: 'muted' }, 'not mapped yet (no relay has dispatched its commit)')],
    ['ws_audience_count', h('b', { 'data-count': 'ws' }, String(m.ws_audience_count))],
    ['wh_audience_count', h('b', { 'data-count': 'wh' }, String(m.wh_audience_count))],
    ['wh_delivered_count', h('b', { 'data-count': 'whd' }, String(m.wh_delivered_count))],
  ];
  return h('section', { class: 'card', id: 'message-detail', 'data-id': m.id },
    h('h2', {}, 'Message'),
    h('dl', { class: 'facts' }, rows.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)])),
    h('h3', {}, 'Payload'),
    h('pre', { class: 'json' }, JSON.stringify(m.payload, null, 2)),
    m.deliveries.length ? [
      h('h3', {}, 'Webhook deliveries'),
      h('table', { class: 'grid' },
        h('thead', {}, h('tr', {}, ['URL', 'State', 'Attempts', 'Last status', 'Last error', 'Delivered'].map((t) => h('th', {}, t)))),
        h('tbody', {}, m.deliveries.map((d) => h('tr', {},
          h('td', {}, h('code', {}, d.url)), h('td', {}, h('span', { class: `badge ${d.status}` }, d.status)),
          h('td', { class: 'num' }, String(d.attempts)), h('td', {}, d.last_status ?? '—'),
          h('td', { class: 'muted' }, d.last_error ?? ''), h('td', {}, fmt.time(d.delivered_at)))))),
    ] : null);
}

export function mount(main, { params }) {
  const channel = h('input', { name: 'channel', id: 'messages-channel', placeholder: 'channel name or pattern (room:%)', value: params.get('channel') ?? '' });
  const range = h('select', { name: 'range', id: 'messages-range' }, RANGES.map(([v, t]) => h('option', { value: v }, t)));
  range.value = params.get('range') ?? '3600';
  const error = h('p', { class: 'error', role: 'alert' });
  const tbody = h('tbody');
  const more = h('button', { type: 'button', class: 'quiet', id: 'messages-more', hidden: true }, 'Older messages');
  const side = h('div', { id: 'message-side' });
  const search = h('form', { class: 'filters', id: 'messages-search' }, channel, range, h('button', { type: 'submit' }, 'Show'), h('button', { type: 'button', class: 'quiet', id: 'messages-refresh' }, 'Refresh'));
  main.append(h('h1', {}, 'Messages'), search, error,
    h('div', { class: 'split' },
      h('div', {}, h('table', { class: 'grid', id: 'messages' },
        h('thead', {}, h('tr', {}, ['Time', 'Channel', 'Event', 'Sender', 'Payload', 'Counts'].map((t) => h('th', {}, t)))),
        tbody), more),
      side));

  let next = null;
  const open = async (id) => {
    try {
      fill(side, detail(await api(`/messages/${id}`)));
      for (const tr of tbody.querySelectorAll('tr')) tr.classList.toggle('selected', tr.dataset.id === id);
    } catch (e) { error.textContent = e.message; }
  };
  const load = async (append) => {
    const q = new URLSearchParams();
    if (channel.value.trim()) q.set('channel', channel.value.trim());
    if (range.value) q.set('from', String(Date.now() - Number(range.value) * 1000));
    if (append && next) q.set('before', next);
    try {
      const r = await api(`/messages?${q}`);
      error.textContent = '';
      const rows = r.messages.map((m) => h('tr', { 'data-id': m.id, class: 'clickable', onclick: () => open(m.id) },
        h('td', { class: 'muted' }, fmt.time(m.created_at)), h('td', {}, h('code', {}, m.channel)),
        h('td', {}, m.event), h('td', {}, m.sender.id ? `${m.sender.type}: ${m.sender.id}` : m.sender.type),
        h('td', { class: 'preview' }, m.preview, m.payload_bytes > m.preview.length ? '…' : ''), h('td', {}, counts(m))));
      if (append) tbody.append(...rows);
      else fill(tbody, rows.length ? rows : h('tr', {}, h('td', { colspan: 6, class: 'muted' }, 'No messages in this range.')));
      next = r.next;
      more.hidden = !next;
    } catch (e) {
      error.textContent = e.message;
    }
  };
  search.addEventListener('submit', (ev) => { ev.preventDefault(); fill(side); load(false); });
  search.querySelector('#messages-refresh').addEventListener('click', () => load(false));
  more.addEventListener('click', () => load(true));
  load(false);
  if (params.get('id')) open(params.get('id'));
}
