// The console's toolkit, shared by every page: the API client, a small DOM builder (text only,
// never HTML from data), formatters, form error display and a polling helper.

/** An error answer of the admin API: status, code, message, and the form field it is about. */
export class ApiError extends Error {
  constructor(status, body) {
    const e = body?.error ?? {};
    super(e.message || `HTTP ${status}`);
    this.status = status;
    this.code = e.code;
    this.field = e.field;
    this.hint = e.hint;
  }
}

/** Calls the admin API; JSON in and out. A lost session reloads the page (to the sign-in form). */
export async function api(path, { method = 'GET', body } = {}) {
  const init = { method, credentials: 'same-origin', headers: {} };
  if (body !== undefined) {
    init.headers['content-type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const r = await fetch(`/admin/api${path}`, init);
  if (r.status === 401) {
    location.reload();
    throw new ApiError(401, { error: { message: 'signed out' } });
  }
  const data = r.status === 204 ? null : await r.json().catch(() => null);
  if (!r.ok) throw new ApiError(r.status, data);
  return data;
}

/** `h('div', {class: 'x', onclick: f}, 'text', child)`: an element; strings become text nodes. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'value') el.value = v;
    else if (k === 'checked') el.checked = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** Replaces the children of `el`. */
export function fill(el, ...children) {
  el.replaceChildren();
  for (const c of children.flat(Infinity)) if (c) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

export const fmt = {
  time: (ms) => (ms == null ? '—' : new Date(ms).toLocaleString(undefined, { hour12: false })),
  clock: (ms) => (ms == null ? '—' : new Date(ms).toLocaleTimeString(undefined, { hour12: false })),
  ago(secs) {
    if (secs == null) return '—';
    if (secs < 1) return 'now';
    if (secs < 90) return `${Math.round(secs)} s ago`;
    if (secs < 5400) return `${Math.round(secs / 60)} min ago`;
    return `${Math.round(secs / 3600)} h ago`;
  },
  bytes(n) {
    if (n == null) return '—';
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (Math.abs(n) >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return `${i ? n.toFixed(1) : Math.round(n)} ${units[i]}`;
  },
  num(n, digits = 1) {
    if (n == null || Number.isNaN(n)) return '—';
    const a = Math.abs(n);
    if (a >= 1e6) return `${(n / 1e6).toFixed(digits)}M`;
    if (a >= 1e4) return `${(n / 1e3).toFixed(digits)}k`;
    return Number.isInteger(n) ? String(n) : n.toFixed(a < 10 ? 2 : digits);
  },
};

/** Shows an API error next to the form field it names (or in the form's general slot). */
export function showErrors(form, err) {
  for (const el of form.querySelectorAll('.field-error')) el.textContent = '';
  for (const el of form.querySelectorAll('.invalid')) el.classList.remove('invalid');
  if (!err) return;
  const slot = (err.field && form.querySelector(`.field-error[data-for="${err.field}"]`)) || form.querySelector('.field-error[data-for="form"]');
  if (slot) slot.textContent = err.hint ? `${err.message} — ${err.hint}` : err.message;
  const input = err.field && form.querySelector(`[name="${err.field}"]`);
  if (input) input.classList.add('invalid');
}

/** A field: label, control, and its inline error slot. */
export function field(label, control, name, note) {
  return h('label', { class: 'field' }, h('span', { class: 'label' }, label), control, note ? h('small', { class: 'muted' }, note) : null, h('span', { class: 'field-error', 'data-for': name }));
}

/** Runs `fn` now and every `ms` until the returned stop function is called. */
export function every(ms, fn) {
  let stopped = false;
  let timer;
  const tick = async () => {
    try { await fn(); } catch (e) { if (!(e instanceof ApiError && e.status === 401)) console.warn(e); }
    if (!stopped) timer = setTimeout(tick, ms);
  };
  tick();
  return () => { stopped = true; clearTimeout(timer); };
}
