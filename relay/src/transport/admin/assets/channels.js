// Channels: the realtime.channels rows with live subscriber counts; create, edit, disable,
// delete. The form is checked by the extension's own validators as you type (a dry run).

import { api, every, field, fill, fmt, h, showErrors } from './ui.js';

function form(row, onSaved, onCancel) {
  const editing = Boolean(row);
  const pattern = h('input', { name: 'pattern', value: row?.pattern ?? '', placeholder: 'chat:lobby or order:%', required: true, autocomplete: 'off' });
  const description = h('input', { name: 'description', value: row?.description ?? '', placeholder: 'what flows here' });
  const enabled = h('input', { name: 'enabled', type: 'checkbox', checked: row ? row.enabled : true });
  const urls = h('textarea', { name: 'webhook_urls', rows: 2, placeholder: 'https://example.com/hooks/realtime (one a line)' });
  urls.value = (row?.webhook_urls ?? []).join('\n');
  const secret = h('select', { name: 'secret_mode' },
    h('option', { value: 'keep' }, editing ? (row.has_secret ? 'keep the current secret' : 'no secret (keep)') : 'no secret'),
    h('option', { value: 'generate' }, 'generate a new secret'),
    h('option', { value: 'set' }, 'set this secret…'),
    editing && row.has_secret ? h('option', { value: 'clear' }, 'remove the secret') : null);
  const secretText = h('input', { name: 'webhook_secret', placeholder: 'whsec_… or any text', hidden: true, autocomplete: 'off' });
  secret.addEventListener('change', () => { secretText.hidden = secret.value !== 'set'; });
  const save = h('button', { type: 'submit' }, editing ? 'Save' : 'Create channel');
  const f = h('form', { class: 'card form', id: 'channel-form', novalidate: true },
    h('h2', {}, editing ? `Edit ${row.pattern}` : 'New channel'),
    h('div', { class: 'row' },
      field('Pattern', pattern, 'pattern', 'an exact name, or % as the one wildcard'),
      field('Description', description, 'description')),
    h('div', { class: 'row' },
      field('Webhook URLs', urls, 'webhook_urls'),
      field('Webhook secret', h('div', { class: 'stack' }, secret, secretText), 'webhook_secret')),
    h('label', { class: 'check' }, enabled, ' enabled'),
    h('div', { class: 'actions' }, save, h('button', { type: 'button', class: 'quiet', onclick: onCancel }, 'Cancel'), h('span', { class: 'field-error', 'data-for': 'form' })));

  const body = () => {
    const b = {
      pattern: pattern.value.trim(),
      description: description.value,
      enabled: enabled.checked,
      webhook_urls: urls.value.split('\n').map((u) => u.trim()).filter(Boolean),
    };
    if (secret.value === 'generate') b.generate_secret = true;
    if (secret.value === 'set') b.webhook_secret = secretText.value;
    if (secret.value === 'clear') b.webhook_secret = null;
    if (!editing && secret.value === 'keep') b.webhook_secret = null;
    return b;
  };
  let pending = null;
  const check = () => {
    clearTimeout(pending);
    pending = setTimeout(async () => {
      if (!pattern.value.trim()) return showErrors(f, null);
      try {
        await api('/channels/validate', { method: 'POST', body: { ...body(), id: row?.id } });
        showErrors(f, null);
        f.dataset.valid = 'true';
      } catch (e) {
        showErrors(f, e);
        f.dataset.valid = 'false';
      }
    }, 250);
  };
  for (const el of [pattern, urls, secretText, description]) el.addEventListener('input', check);
  f.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    save.disabled = true;
    try {
      const saved = editing
        ? await api(`/channels/${row.id}`, { method: 'PUT', body: body() })
        : await api('/channels', { method: 'POST', body: body() });
      showErrors(f, null);
      onSaved(saved);
    } catch (e) {
      showErrors(f, e);
    } finally {
      save.disabled = false;
    }
  });
  setTimeout(() => pattern.focus(), 0);
  return f;
}

export function mount(main) {
  const filter = h('input', { type: 'search', placeholder: 'filter patterns', id: 'channel-filter' });
  const slot = h('div', { id: 'form-slot' });
  const note = h('p', { class: 'muted', id: 'channels-note' });
  const tbody = h('tbody');
  const flash = h('p', { class: 'flash', id: 'channels-flash', role: 'status' });
  const newButton = h('button', { type: 'button', id: 'new-channel' }, 'New channel');
  main.append(
    h('div', { class: 'title' }, h('h1', {}, 'Channels'), filter, newButton),
    flash, slot,
    h('table', { class: 'grid', id: 'channels' },
      h('thead', {}, h('tr', {}, ...['Pattern', 'Description', 'Enabled', 'Webhooks', 'Subscribers', 'Updated', ''].map((t) => h('th', {}, t)))),
      tbody),
    note);

  const close = () => fill(slot);
  const saved = (row) => {
    close();
    flash.textContent = `Saved ${row.pattern}.`;
    refresh();
  };
  newButton.addEventListener('click', () => fill(slot, form(null, saved, close)));

  const toggle = async (row) => {
    await api(`/channels/${row.id}`, { method: 'PUT', body: { pattern: row.pattern, description: row.description, enabled: !row.enabled, webhook_urls: row.webhook_urls } });
    flash.textContent = `${row.enabled ? 'Disabled' : 'Enabled'} ${row.pattern}.`;
    refresh();
  };
  const remove = (row, button) => async () => {
    if (button.dataset.armed !== 'true') {
      button.dataset.armed = 'true';
      button.textContent = 'Really delete?';
      return;
    }
    await api(`/channels/${row.id}`, { method: 'DELETE' });
    flash.textContent = `Deleted ${row.pattern}.`;
    refresh();
  };
  const reveal = (row, cell) => async () => {
    const r = await api(`/channels/${row.id}/secret`);
    fill(cell, h('code', { class: 'secret' }, r.webhook_secret ?? '(none)'));
  };

  async function refresh() {
    const q = filter.value.trim();
    const r = await api(`/channels${q ? `?q=${encodeURIComponent(q)}` : ''}`);
    fill(tbody, r.channels.map((row) => {
      const del = h('button', { type: 'button', class: 'quiet danger' }, 'Delete');
      del.addEventListener('click', remove(row, del));
      const secretCell = h('span');
      if (row.has_secret) fill(secretCell, h('button', { type: 'button', class: 'link', onclick: reveal(row, secretCell) }, 'show secret'));
      return h('tr', { 'data-pattern': row.pattern, class: row.enabled ? '' : 'disabled' },
        h('td', {}, h('code', {}, row.pattern)),
        h('td', {}, row.description ?? ''),
        h('td', {}, h('button', { type: 'button', class: `pill ${row.enabled ? 'on' : 'off'}`, title: 'enable / disable', onclick: () => toggle(row) }, row.enabled ? 'enabled' : 'disabled')),
        h('td', {}, row.webhook_urls.length ? `${row.webhook_urls.length} URL${row.webhook_urls.length > 1 ? 's' : ''} ` : '—', secretCell),
        h('td', { class: 'num', 'data-col': 'subscribers' }, String(row.subscribers)),
        h('td', { class: 'muted' }, fmt.time(row.updated_at)),
        h('td', { class: 'actions' },
          h('button', { type: 'button', class: 'quiet', onclick: () => fill(slot, form(row, saved, close)) }, 'Edit'),
          h('a', { href: `#/messages?channel=${encodeURIComponent(row.pattern)}` }, 'messages'),
          del));
    }));
    if (!r.channels.length) fill(tbody, h('tr', {}, h('td', { colspan: 7, class: 'muted' }, 'No channel rows yet: create one.')));
    note.textContent = `Subscribers: live on this relay, plus ${r.other_relays_reporting} other relay(s) reporting.`
      + (r.truncated ? ' Only the first 1000 rows are shown; filter to see others.' : '')
      + (r.counts_cut ? ' Counts cover each relay\'s 5000 busiest channels.' : '');
  }
  let t;
  filter.addEventListener('input', () => { clearTimeout(t); t = setTimeout(refresh, 200); });
  return every(5000, refresh);
}
