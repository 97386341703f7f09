// Peer 1: a Node `ws` broadcast server relaying Postgres publishes the InsForge way (see
// relay-core.mjs). Speaks the subset of our wire protocol v1 the load generator uses, at
// /v1/socket: {"type":"subscribe"|"unsubscribe","ref":R,"channel":C} answered by
// {"type":"reply","ref":R,"ok":true,"channel":C}; deliveries are {"type":"message",...} frames.
// No auth and no permission check (the load generator's subscribers are anonymous).
//
//   node ws-server.mjs --port 4101 --database-url postgres://postgres@127.0.0.1:5432/postgres

import { WebSocketServer } from 'ws';
import { options, startRelay, httpServer } from './relay-core.mjs';

const o = options();
/** channel -> Set of sockets */
const rooms = new Map();
let listening = false;

function deliver(channel, frame) {
  const subs = rooms.get(channel);
  if (!subs || subs.size === 0) return 0;
  const text = JSON.stringify(frame);
  for (const ws of subs) ws.send(text);
  return subs.size;
}

const server = httpServer(() => listening);
const wss = new WebSocketServer({ server, path: '/v1/socket', perMessageDeflate: false, maxPayload: 1 << 20 });
wss.on('connection', (ws) => {
  const mine = new Set();
  ws.on('message', (data, isBinary) => {
    let req;
    try {
      req = isBinary ? null : JSON.parse(data.toString());
    } catch {
      req = null;
    }
    if (!req || typeof req.channel !== 'string') {
      ws.send(JSON.stringify({ type: 'reply', ref: req?.ref ?? null, ok: false, error: { code: 'REALTIME_BAD_REQUEST', message: 'bad frame' } }));
      return;
    }
    if (req.type === 'subscribe') {
      let subs = rooms.get(req.channel);
      if (!subs) rooms.set(req.channel, (subs = new Set()));
      subs.add(ws);
      mine.add(req.channel);
    } else if (req.type === 'unsubscribe') {
      rooms.get(req.channel)?.delete(ws);
      mine.delete(req.channel);
    }
    ws.send(JSON.stringify({ type: 'reply', ref: req.ref ?? null, ok: true, channel: req.channel }));
  });
  ws.on('close', () => {
    for (const c of mine) {
      const subs = rooms.get(c);
      subs?.delete(ws);
      if (subs?.size === 0) rooms.delete(c);
    }
  });
  ws.on('error', () => {});
});

await startRelay(o, deliver);
server.listen(o.port, o.host, () => {
  listening = true;
  console.error(`ws peer listening on ${o.host}:${o.port}/v1/socket`);
});
