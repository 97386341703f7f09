// Inspector: a live socket (protocol v1) as a role and claims you pick, a test publish, and
// "who may subscribe?" answered by the relay's own check.

import { api, field, fill, fmt, h, showErrors } from './ui.js';

const MAX_LOG = 200;

function roleSelect(roles, name, preferred) {
  const s = h('select', { name }, roles.map((r) => h('option', { value: r }, r)));
  s.value = roles.includes(preferred) ? preferred : roles[0];
  return s;
}

function liveSocket(meta) {
  const role = roleSelect(meta.roles, 'role', 'realtime_admin');
  const claims = h('textarea', { name: 'claims', rows: 2, placeholder: 'sub=alice (or a JSON object)' });
  const channel = h('input', { name: 'channel', id: 'live-channel', placeholder: 'channel to subscribe to' });
  const state = h('span', { class: 'badge', id: 'live-state' }, 'closed');
  const log = h('ol', { class: 'log', id: 'live-log' });
  const error = h('span', { class: 'field-error', 'data-for': 'form' });
  let ws = null;
  let ref = 0;
  const subs = new Set();
  const add = (kind, text, data) => {
    log.prepend(h('li', { class: kind, dataset: { kind } }, h('span', { class: 'muted' }, fmt.clock(Date.now())), ' ', h('b', {}, kind), ' ', text,
      data === undefined ? null : h('pre', { class: 'json' }, JSON.stringify(data, null, 1))));
    while (log.children.length > MAX_LOG) log.lastChild.remove();
  };
  const send = (frame) => ws?.readyState === WebSocket.OPEN && ws.send(JSON.stringify({ ...frame, ref: ++ref }));
  const connect = () => new Promise((resolve) => {
    if (ws) ws.close();
    const q = new URLSearchParams({ role: role.value, claims: claims.value });
    const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/admin/api/inspect/socket?${q}`;
    ws = new WebSocket(url);
    state.textContent = 'connecting';
    ws.onopen = () => { state.textContent = `open as ${role.value}`; state.className = 'badge delivered'; subs.clear(); resolve(true); };
    ws.onclose = (e) => { state.textContent = `closed${e.code ? ` (${e.code}${e.reason ? `: ${e.reason}` : ''})` : ''}`; state.className = 'badge'; resolve(false); };
    ws.onmessage = (e) => {
      const f = JSON.parse(e.data);
      if (f.type === 'message') add('message', `${f.channel} · ${f.event}${f.replayed ? ' (replayed)' : ''}`, f.payload);
      else if (f.type === 'presence') add('presence', `${f.channel} · ${f.event} ${f.member?.user_id ?? f.member?.presence_id ?? ''}`, f.member?.state);
      else if (f.type === 'reply' && !f.ok) add('refused', `${f.error?.code}: ${f.error?.message}`);
      else if (f.type === 'reply' && f.channel) add('subscribed', `${f.channel}${f.presence?.members?.length ? ` · ${f.presence.members.length} present` : ''}`);
      else if (f.type === 'unsubscribed' || f.type === 'reset') add(f.type, f.channel, f.reason);
    };
  });
  const subscribe = async (ev) => {
    ev.preventDefault();
    error.textContent = '';
    const name = channel.value.trim();
    if (!name) { error.textContent = 'Name a channel.'; return; }
    if (!ws || ws.readyState !== WebSocket.OPEN) {
      if (!(await connect())) { error.textContent = 'The socket did not open.'; return; }
    }
    subs.add(name);
    send({ type: 'subscribe', channel: name });
  };
  const form = h('form', { class: 'card form', id: 'live-form', onsubmit: subscribe },
    h('h2', {}, 'Live subscribe'),
    h('p', { class: 'muted' }, 'A WebSocket on this relay speaking protocol v1 as the role and claims below: subscribes are checked exactly as for a client. realtime_admin sees every channel.'),
    h('div', { class: 'row' }, field('Role', role, 'role'), field('Claims', claims, 'claims')),
    h('div', { class: 'row' }, field('Channel', channel, 'channel')),
    h('div', { class: 'actions' }, h('button', { type: 'submit', id: 'live-subscribe' }, 'Subscribe'),
      h('button', { type: 'button', class: 'quiet', onclick: () => { ws?.close(); } }, 'Disconnect'), state, error),
    log);
  return { form, close: () => ws?.close() };
}

function publisher(onPublished) {
  const channel = h('input', { name: 'channel', id: 'publish-channel', placeholder: 'channel' });
  const event = h('input', { name: 'event', id: 'publish-event', value: 'test' });
  const payload = h('textarea', { name: 'payload', id: 'publish-payload', rows: 3 });
  payload.value = '{"hello": "world"}';
  const persist = h('input', { type: 'checkbox', name: 'persist', checked: true });
  const result = h('p', { class: 'flash', id: 'publish-result', role: 'status' });
  const form = h('form', { class: 'card form', id: 'publish-form' },
    h('h2', {}, 'Publish a test message'),
    h('div', { class: 'row' }, field('Channel', channel, 'channel'), field('Event', event, 'event')),
    field('Payload (JSON)', payload, 'payload'),
    h('label', { class: 'check' }, persist, ' store it (realtime.publish; unchecked: realtime.broadcast, live only)'),
    h('div', { class: 'actions' }, h('button', { type: 'submit', id: 'publish-send' }, 'Publish'), h('span', { class: 'field-error', 'data-for': 'form' })),
    result);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    result.textContent = '';
    let body;
    try {
      body = JSON.parse(payload.value || '{}');
    } catch (e) {
      return showErrors(form, { field: 'payload', message: `not JSON: ${e.message}` });
    }
    try {
      const r = await api('/inspect/publish', { method: 'POST', body: { channel: channel.value.trim(), event: event.value.trim(), payload: body, persist: persist.checked } });
      showErrors(form, null);
      fill(result, r.id ? ['Stored as ', h('a', { href: `#/messages?channel=${encodeURIComponent(r.channel)}&id=${r.id}`, id: 'publish-link' }, r.id), '.'] : 'Broadcast (not stored).');
      onPublished?.(r);
    } catch (e) {
      showErrors(form, e);
    }
  });
  return form;
}

function whoMay(meta) {
  const role = roleSelect(meta.roles, 'role', 'authenticated');
  const claims = h('textarea', { name: 'claims', id: 'check-claims', rows: 2, placeholder: 'sub=alice' });
  const channel = h('input', { name: 'channel', id: 'check-channel', placeholder: 'user:alice' });
  const answer = h('div', { id: 'check-answer' });
  const form = h('form', { class: 'card form', id: 'check-form' },
    h('h2', {}, 'Who may subscribe?'),
    h('p', { class: 'muted' }, 'The relay\'s own check (realtime.can_subscribe under SET LOCAL ROLE and these claims), and the channel row realtime.match_channel picked.'),
    h('div', { class: 'row' }, field('Role', role, 'role'), field('Claims', claims, 'claims'), field('Channel', channel, 'channel')),
    h('div', { class: 'actions' }, h('button', { type: 'submit', id: 'check-run' }, 'Check'), h('span', { class: 'field-error', 'data-for': 'form' })),
    answer);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    try {
      const r = await api('/inspect/check', { method: 'POST', body: { role: role.value, claims: claims.value, channel: channel.value.trim() } });
      showErrors(form, null);
      const label = { allowed: 'ALLOWED', denied: 'DENIED', not_found: 'NO CHANNEL' }[r.outcome];
      fill(answer, h('div', { class: `verdict ${r.outcome}`, 'data-outcome': r.outcome },
        h('b', {}, label), h('p', {}, r.explain),
        r.matched ? h('p', {}, 'Matched row: ', h('code', { id: 'check-matched' }, r.matched.pattern), ` (id ${r.matched.id})`) : null,
        h('p', { class: 'muted' }, 'Claims checked: ', h('code', {}, JSON.stringify(r.claims))),
        r.policies.length
          ? [h('p', {}, `SELECT policies on realtime.channels for ${r.role}:`),
            h('ul', { class: 'policies' }, r.policies.map((p) => h('li', {}, h('code', {}, p.name), ` ${p.permissive.toLowerCase()} ${p.cmd} to ${p.roles.join(', ')}: `, h('code', {}, p.using ?? 'true'))))]
          : h('p', {}, `No SELECT policy on realtime.channels applies to ${r.role}: it can subscribe to nothing.`)));
    } catch (e) {
      fill(answer);
      showErrors(form, e);
    }
  });
  return form;
}

export function mount(main, { meta }) {
  const live = liveSocket(meta);
  main.append(h('h1', {}, 'Inspector'), h('div', { class: 'columns' }, h('div', {}, live.form), h('div', {}, publisher(), whoMay(meta))));
  return live.close;
}
