// What both peer servers share: options, the Postgres side done the InsForge way, and /readyz.
//
// InsForge (backend/src/infra/realtime/realtime.manager.ts) keeps one dedicated pg connection
// doing `LISTEN realtime_message`; realtime.publish() sends `pg_notify('realtime_message', id)`
// with only the message id (to stay under NOTIFY's 8 KB limit); for each notification the
// server fetches the message row by id (and its channel, for the enabled flag) from a pool, then
// broadcasts it to the Socket.IO room of that channel. Here the notify comes from an AFTER INSERT
// trigger on realtime.messages (bench/peers/notify.sql), so the same realtime.publish() commits
// the load generator makes for our relay reach the peers. Unlike InsForge we fetch message and
// channel in one query and skip the delivery-stats UPDATE after each broadcast
// (PEER_DELIVERY_STATS=1 turns it on): both make the peers faster than InsForge, not slower.

import http from 'node:http';
import pg from 'pg';

export function options(argv = process.argv.slice(2)) {
  const o = {
    host: '127.0.0.1',
    port: 4100,
    databaseUrl: process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres',
    poolSize: 10,
    deliveryStats: process.env.PEER_DELIVERY_STATS === '1',
  };
  for (let i = 0; i < argv.length; i += 2) {
    const [k, v] = [argv[i], argv[i + 1]];
    if (v === undefined) throw new Error(`missing value for ${k}`);
    if (k === '--host') o.host = v;
    else if (k === '--port') o.port = Number(v);
    else if (k === '--database-url') o.databaseUrl = v;
    else if (k === '--pool-size') o.poolSize = Number(v);
    else throw new Error(`unknown option ${k} (expected --host, --port, --database-url, --pool-size)`);
  }
  return o;
}

const FETCH = `SELECT m.id::text, m.seq::text, m.channel, m.event, m.payload, m.sender_type, m.sender_id,
                      m.created_at, c.enabled
                 FROM realtime.messages m LEFT JOIN realtime.channels c ON c.id = m.channel_id
                WHERE m.id = $1`;

/// The frame sent to subscribers: the same fields (and so about the same size) as our relay's
/// `message` frame, serialised once per message and shared by every subscriber.
export function messageFrame(row) {
  const sender = row.sender_id ? { type: row.sender_type, id: row.sender_id } : { type: row.sender_type };
  return {
    type: 'message',
    channel: row.channel,
    id: row.id,
    // Our relay's cursor is 32 hex digits (commit LSN + position); the peers have none, so the
    // message's seq stands in, at the same width, to keep the frames the same size.
    cursor: BigInt(row.seq).toString(16).padStart(32, '0'),
    event: row.event,
    payload: row.payload,
    sender,
    created_at: row.created_at.toISOString(),
  };
}

/// Starts the Postgres side: LISTEN on a dedicated client, fetch each notified message from a
/// pool, call `deliver(channel, frameObject)` (returns the audience size). Resolves once LISTEN
/// is active.
export async function startRelay(o, deliver, log = console.error) {
  const pool = new pg.Pool({ connectionString: o.databaseUrl, max: o.poolSize });
  const listener = new pg.Client({ connectionString: o.databaseUrl });
  const stats = { notified: 0, delivered: 0, missing: 0, errors: 0 };
  await listener.connect();
  listener.on('error', (e) => {
    log(`listener error: ${e.message}`);
    process.exit(1);
  });
  listener.on('notification', (msg) => {
    if (msg.channel !== 'realtime_message' || !msg.payload) return;
    stats.notified++;
    void handle(msg.payload);
  });
  async function handle(id) {
    try {
      const { rows } = await pool.query(FETCH, [id]);
      const row = rows[0];
      if (!row || row.enabled === false) {
        stats.missing++;
        return;
      }
      const audience = deliver(row.channel, messageFrame(row));
      stats.delivered += audience;
      if (o.deliveryStats) {
        await pool.query('UPDATE realtime.messages SET ws_audience_count = $2 WHERE id = $1', [id, audience]);
      }
    } catch (e) {
      stats.errors++;
      log(`message ${id}: ${e.message}`);
    }
  }
  await listener.query('LISTEN realtime_message');
  return stats;
}

/// An HTTP server answering GET /readyz (200 once `ready()` is true); the WebSocket layer
/// attaches to it.
export function httpServer(ready) {
  return http.createServer((req, res) => {
    if (req.url === '/readyz') {
      res.writeHead(ready() ? 200 : 503).end();
    } else if (!res.headersSent && !req.url.startsWith('/socket.io/')) {
      res.writeHead(404).end();
    }
  });
}
