// Webhooks: deliveries by state, with attempts and last outcome; retry or discard one.

import { api, every, fill, fmt, h } from './ui.js';

const STATES = ['all', 'pending', 'retrying', 'failed', 'delivered', 'discarded'];

export function mount(main, { params }) {
  let state = STATES.includes(params.get('state')) ? params.get('state') : 'all';
  const tabs = h('div', { class: 'tabs', id: 'webhook-states' });
  const tbody = h('tbody');
  const flash = h('p', { class: 'flash', id: 'webhooks-flash', role: 'status' });
  const note = h('p', { class: 'muted' });
  main.append(h('h1', {}, 'Webhooks'), tabs, flash,
    h('table', { class: 'grid', id: 'webhooks' },
      h('thead', {}, h('tr', {}, ['#', 'Channel', 'URL', 'State', 'Attempts', 'Last status', 'Last error', 'Next / done', ''].map((t) => h('th', {}, t)))),
      tbody),
    note);

  const act = (d, what) => async () => {
    try {
      await api(`/webhooks/${d.id}/${what}`, { method: 'POST' });
      flash.textContent = what === 'retry' ? `Delivery ${d.id} is queued again.` : `Delivery ${d.id} was discarded.`;
      flash.className = 'flash';
    } catch (e) {
      flash.textContent = e.message;
      flash.className = 'flash error';
    }
    refresh();
  };

  async function refresh() {
    const r = await api(`/webhooks?state=${state}`);
    const c = r.counts ?? {};
    const total = Object.values(c).reduce((a, b) => a + b, 0);
    fill(tabs, STATES.map((s) => h('button', {
      type: 'button', class: `tab ${s === state ? 'active' : ''} ${s}`, 'data-state': s,
      onclick: () => { state = s; refresh(); },
    }, s, ' ', h('b', {}, String(s === 'all' ? total : c[s] ?? 0)))));
    fill(tbody, r.deliveries.map((d) => h('tr', { 'data-id': d.id, 'data-state': d.state },
      h('td', { class: 'num' }, String(d.id)),
      h('td', {}, h('a', { href: `#/messages?channel=${encodeURIComponent(d.channel)}&id=${d.message_id}` }, d.channel)),
      h('td', {}, h('code', {}, d.url)),
      h('td', {}, h('span', { class: `badge ${d.state}` }, d.state)),
      h('td', { class: 'num' }, String(d.attempts)),
      h('td', {}, d.last_status ?? '—'),
      h('td', { class: 'muted error-text' }, d.last_error ?? ''),
      h('td', { class: 'muted' }, d.state === 'delivered' ? fmt.time(d.delivered_at) : ['pending', 'retrying'].includes(d.state) ? fmt.time(d.next_attempt_at) : fmt.time(d.updated_at)),
      h('td', { class: 'actions' },
        ['failed', 'discarded'].includes(d.state) ? h('button', { type: 'button', class: 'retry', onclick: act(d, 'retry') }, 'Retry') : null,
        ['failed', 'pending', 'retrying'].includes(d.state) ? h('button', { type: 'button', class: 'quiet danger discard', onclick: act(d, 'discard') }, 'Discard') : null))));
    if (!r.deliveries.length) fill(tbody, h('tr', {}, h('td', { colspan: 9, class: 'muted' }, `No ${state === 'all' ? '' : `${state} `}deliveries.`)));
    note.textContent = r.worker ? 'This relay sends webhooks; every relay of the database shares the queue.' : 'This relay does not send webhooks (--webhook-concurrency 0); others may.';
  }
  return every(3000, refresh);
}
