// The demo page: chat with history and a typing indicator, who's online (presence), and a live
// orders table fed by `realtime.watch_table('public.orders')`. Plain JS on the SDK's ESM build.
import { createClient } from './sdk/index.js';

const config = window.REALTIME_DEMO;
const params = new URLSearchParams(location.search);
const user = params.get('user') && config.users[params.get('user')] ? params.get('user') : Object.keys(config.users)[0];
const $ = (id) => document.getElementById(id);

$('whoami').textContent = `signed in as ${user}`;
$('users').innerHTML = Object.keys(config.users)
  .map((u) => `<a href="?user=${encodeURIComponent(u)}">${u}</a>`)
  .join('');

// `auto`: WebSocket, else Server-Sent Events, else long-poll (?transport= picks one).
const transport = ['websocket', 'sse', 'poll'].includes(params.get('transport')) ? params.get('transport') : 'auto';
const client = createClient({ url: config.url, token: config.users[user], transport });
client.onStatusChange((s, via) => {
  $('status').textContent = s;
  $('status').className = `status ${s}`;
  $('status').title = via ? `over ${via}` : '';
  $('status').dataset.transport = via ?? '';
});

// ---- chat ----
const chat = client.channel('chat:lobby');
const messages = new Map(); // id -> message, rendered in cursor order

function renderMessages() {
  const list = [...messages.values()].sort((a, b) => (a.cursor < b.cursor ? -1 : 1));
  const ul = $('messages');
  ul.replaceChildren(
    ...list.map((m) => {
      const li = document.createElement('li');
      li.dataset.id = m.id;
      const from = document.createElement('span');
      from.className = 'from';
      from.textContent = m.sender?.id ?? 'system';
      li.append(from, document.createTextNode(String(m.payload?.text ?? '')));
      return li;
    }),
  );
  ul.scrollTop = ul.scrollHeight;
}

async function loadChatHistory(before) {
  const page = await chat.history({ limit: 50, before });
  page.forEach((m) => messages.set(m.id, m));
  renderMessages();
}

chat.on('message', (m) => {
  messages.set(m.id, m);
  renderMessages();
});

// Typing indicator: ephemeral messages, never stored.
const typing = new Map(); // user -> timer
function renderTyping() {
  const names = [...typing.keys()];
  $('typing').textContent = names.length ? `${names.join(', ')} ${names.length > 1 ? 'are' : 'is'} typing…` : '';
}
chat.on('typing', (m) => {
  const who = m.sender?.id;
  if (!who || who === user) return;
  clearTimeout(typing.get(who));
  typing.set(who, setTimeout(() => {
    typing.delete(who);
    renderTyping();
  }, 3000));
  renderTyping();
});
let lastTyping = 0;
$('chat-input').addEventListener('input', () => {
  if (Date.now() - lastTyping < 1000) return;
  lastTyping = Date.now();
  chat.publish('typing', {}, { persist: false, ack: false }).catch(() => {});
});
$('chat-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const input = $('chat-input');
  const text = input.value.trim();
  if (!text) return;
  input.value = '';
  $('chat-error').textContent = '';
  try {
    await chat.publish('message', { text });
  } catch (err) {
    $('chat-error').textContent = `${err.code}: ${err.message}`;
  }
});
// Resume was impossible (too much missed): refetch instead of showing a gap.
chat.on('reset', () => {
  messages.clear();
  loadChatHistory().catch(showChatError);
});
function showChatError(err) {
  $('chat-error').textContent = `${err.code ?? 'error'}: ${err.message}`;
}

// ---- who's online ----
function renderOnline() {
  const members = chat.presence();
  $('online').replaceChildren(
    ...members.map((m) => {
      const li = document.createElement('li');
      li.dataset.user = m.presence_id;
      li.textContent = `${m.state?.name ?? m.presence_id}${m.presence_id === user ? ' (you)' : ''}`;
      return li;
    }),
  );
}
['presence:join', 'presence:update', 'presence:leave'].forEach((e) => chat.on(e, renderOnline));

// ---- orders ----
const orders = client.channel('orders');
const rows = new Map(); // id -> row

function applyChange(m, flash) {
  const p = m.payload ?? {};
  if (p.operation === 'DELETE') rows.delete(p.old_record?.id);
  else if (p.record) rows.set(p.record.id, { ...p.record, flash });
}
function renderOrders() {
  const sorted = [...rows.values()].sort((a, b) => a.id - b.id);
  $('orders').replaceChildren(
    ...sorted.map((r) => {
      const tr = document.createElement('tr');
      tr.dataset.id = r.id;
      if (r.flash) tr.className = 'flash';
      for (const [key, v] of [['id', r.id], ['customer', r.customer], ['item', r.item], ['status', r.status], ['total', Number(r.total).toFixed(2)]]) {
        const td = document.createElement('td');
        td.dataset.col = key;
        td.textContent = String(v ?? '');
        tr.append(td);
      }
      return tr;
    }),
  );
}
async function loadOrders(before) {
  rows.clear();
  const changes = await orders.history({ limit: 1000, before });
  changes.reverse().forEach((m) => applyChange(m, false));
  renderOrders();
}
orders.on('*', (m) => {
  applyChange(m, true);
  renderOrders();
});
orders.on('reset', () => loadOrders().catch(() => {}));

// ---- start: subscribe first, then read what came before the subscription ----
(async () => {
  const [chatReply, ordersReply] = await Promise.all([chat.subscribe(), orders.subscribe()]);
  if (!chatReply.ok) return showChatError(chatReply.error);
  await loadChatHistory(chatReply.cursor);
  renderOnline();
  chat.track({ name: user }).catch((err) => {
    $('presence-error').textContent = `presence unavailable (${err.code}): ${err.message}`;
  });
  if (ordersReply.ok) await loadOrders(ordersReply.cursor);
  document.body.dataset.ready = 'true';
})().catch(showChatError);
