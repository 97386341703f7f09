// Relays and presence: every relay of the database with its slot and lag, slots no relay
// claims, who is present on which channel, and the audit log of admin actions.

import { api, every, fill, fmt, h } from './ui.js';

export function mount(main, { params }) {
  const relays = h('tbody');
  const orphans = h('div', { id: 'orphan-slots' });
  const channels = h('ul', { class: 'chips', id: 'presence-channels' });
  const members = h('div', { id: 'presence-members' });
  const audit = h('tbody');
  let chosen = params.get('channel') ?? '';
  main.append(
    h('h1', {}, 'Relays'),
    h('table', { class: 'grid', id: 'relays' },
      h('thead', {}, h('tr', {}, ['Relay', 'Heartbeat', 'Started', 'Slot', 'Slot lag', 'Stream lag', 'Connections', 'Subscriptions', 'Presence', 'Webhook queue', 'Version'].map((t) => h('th', {}, t)))),
      relays),
    orphans,
    h('h2', {}, 'Presence'),
    h('p', { class: 'muted' }, 'Channels with members (one view across relays); pick one to see its members.'),
    channels, members,
    h('h2', {}, 'Audit log'),
    h('table', { class: 'grid', id: 'audit' },
      h('thead', {}, h('tr', {}, ['When', 'Who', 'Relay', 'Action', 'Target', 'Details'].map((t) => h('th', {}, t)))),
      audit));

  const showMembers = async () => {
    if (!chosen) return fill(members);
    const r = await api(`/presence?channel=${encodeURIComponent(chosen)}`);
    fill(members, h('h3', {}, `Members of `, h('code', {}, chosen), ` (${r.members.length})`),
      h('table', { class: 'grid' },
        h('thead', {}, h('tr', {}, ['User', 'Presence id', 'Relay', 'State', 'Since'].map((t) => h('th', {}, t)))),
        h('tbody', {}, r.members.map((m) => h('tr', {},
          h('td', {}, m.user_id ?? '—'), h('td', {}, h('code', {}, m.presence_id)), h('td', {}, m.relay_id),
          h('td', {}, h('code', {}, JSON.stringify(m.state))), h('td', { class: 'muted' }, fmt.time(m.updated_at)))))));
  };

  async function refresh() {
    const r = await api('/relays');
    fill(relays, r.relays.map((x) => {
      const s = x.stats ?? {};
      const stale = x.heartbeat_age_s > r.relay_timeout_s;
      return h('tr', { 'data-relay': x.relay_id, class: stale ? 'stale' : '' },
        h('td', {}, h('code', {}, x.relay_id), x.this ? h('span', { class: 'badge' }, 'this relay') : null),
        h('td', { class: stale ? 'error-text' : '' }, fmt.ago(x.heartbeat_age_s)),
        h('td', { class: 'muted' }, fmt.time(x.started_at)),
        h('td', {}, x.slot ? [h('code', {}, x.slot), x.slot_active ? '' : ' (inactive)'] : h('span', { class: 'error-text' }, 'no slot')),
        h('td', { class: 'num' }, fmt.bytes(x.slot_lag_bytes)),
        h('td', { class: 'num' }, s.lag_bytes == null ? '—' : fmt.bytes(s.lag_bytes)),
        h('td', { class: 'num', 'data-col': 'connections' }, s.connections ?? '—'),
        h('td', { class: 'num' }, s.subscriptions ?? '—'),
        h('td', { class: 'num' }, s.presence_members ?? '—'),
        h('td', { class: 'num' }, s.webhook_queue ?? '—'),
        h('td', { class: 'muted' }, s.version ?? (x.report_age_s == null ? 'console off' : '—')));
    }));
    fill(orphans, r.orphan_slots.length ? [
      h('p', { class: 'error' }, 'Replication slots no live relay uses. They keep WAL on the server until dropped (SELECT pg_drop_replication_slot(name)) or claimed by a relay:'),
      h('ul', {}, r.orphan_slots.map((o) => h('li', {}, h('code', {}, o.slot), ` ${o.active ? 'active' : 'inactive'}, ${fmt.bytes(o.lag_bytes)} behind`))),
    ] : null);
    const p = await api('/presence');
    fill(channels, p.channels.length
      ? p.channels.map((c) => h('li', {}, h('button', { type: 'button', class: `chip ${c.channel === chosen ? 'active' : ''}`, onclick: () => { chosen = c.channel; refresh(); } }, c.channel, ' ', h('b', {}, String(c.members)))))
      : h('li', { class: 'muted' }, 'Nobody is present anywhere.'));
    await showMembers();
    const a = await api('/audit');
    fill(audit, a.entries.length ? a.entries.map((e) => h('tr', { 'data-action': e.action },
      h('td', { class: 'muted' }, fmt.time(e.at)), h('td', {}, e.who), h('td', {}, e.relay_id), h('td', {}, h('code', {}, e.action)),
      h('td', {}, e.target ?? ''), h('td', {}, h('code', { class: 'small' }, JSON.stringify(e.detail)))))
      : h('tr', {}, h('td', { colspan: 6, class: 'muted' }, 'No admin actions yet.')));
  }
  return every(3000, refresh);
}
