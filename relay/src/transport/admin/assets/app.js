// The console's shell: the hash router that mounts one page at a time (each page module
// exports `mount(main, ctx)` and returns a function that stops its timers and sockets), the
// header, sign-out. The shared toolkit is ui.js.

import { mount as overview } from './overview.js';
import { mount as channels } from './channels.js';
import { mount as messages } from './messages.js';
import { mount as inspector } from './inspector.js';
import { mount as webhooks } from './webhooks.js';
import { mount as relays } from './relays.js';
import { api, h } from './ui.js';

const PAGES = { overview, channels, messages, inspector, webhooks, relays };

/** The hash route: `#/messages?channel=x` → ['messages', URLSearchParams]. */
function route() {
  const [path, query] = location.hash.replace(/^#\/?/, '').split('?');
  return [PAGES[path] ? path : 'overview', new URLSearchParams(query ?? '')];
}

let unmount = null;

async function show(ctx) {
  const [name, params] = route();
  if (unmount) unmount();
  unmount = null;
  for (const a of document.querySelectorAll('#nav a')) a.classList.toggle('active', a.dataset.page === name);
  const main = document.getElementById('main');
  main.replaceChildren();
  main.dataset.page = name;
  unmount = (await PAGES[name](main, { ...ctx, params })) ?? null;
  document.body.dataset.ready = 'true';
}

async function start() {
  const meta = await api('/meta');
  document.getElementById('relay-id').textContent = `relay ${meta.relay_id} · v${meta.version}`;
  document.getElementById('who').textContent = meta.admin;
  document.getElementById('sign-out').addEventListener('click', async () => {
    await api('/session', { method: 'DELETE' });
    location.reload();
  });
  const ctx = { meta };
  window.addEventListener('hashchange', () => show(ctx));
  await show(ctx);
}

start().catch((e) => {
  document.getElementById('main').replaceChildren(h('p', { class: 'error' }, `The console could not start: ${e.message}`));
});
