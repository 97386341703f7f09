// Peer 2: a Node Socket.IO server relaying Postgres publishes the InsForge way (see
// relay-core.mjs): a socket joins the room `realtime:<channel>` on the event
// `realtime:subscribe` {channel} (acknowledged with {ok:true}), leaves it on
// `realtime:unsubscribe`, and each message is broadcast to its room with one
// `io.to(room).emit('message', frame)` (Socket.IO encodes it once per broadcast). InsForge emits
// the message's own event name with the payload; we emit `message` with the same frame object
// the ws peer and our relay send, so all three carry the same bytes. WebSocket transport only.
//
//   node socketio-server.mjs --port 4102 --database-url postgres://postgres@127.0.0.1:5432/postgres

import { Server } from 'socket.io';
import { options, startRelay, httpServer } from './relay-core.mjs';

const o = options();
let listening = false;
const server = httpServer(() => listening);
const io = new Server(server, {
  transports: ['websocket'],
  serveClient: false,
  perMessageDeflate: false,
  maxHttpBufferSize: 1 << 20,
});

io.on('connection', (socket) => {
  socket.on('realtime:subscribe', (req, ack) => {
    if (typeof req?.channel !== 'string') return ack?.({ ok: false, error: 'REALTIME_BAD_REQUEST' });
    socket.join(`realtime:${req.channel}`);
    ack?.({ ok: true });
  });
  socket.on('realtime:unsubscribe', (req, ack) => {
    if (typeof req?.channel !== 'string') return ack?.({ ok: false, error: 'REALTIME_BAD_REQUEST' });
    socket.leave(`realtime:${req.channel}`);
    ack?.({ ok: true });
  });
});

function deliver(channel, frame) {
  const room = `realtime:${channel}`;
  const audience = io.sockets.adapter.rooms.get(room)?.size ?? 0;
  if (audience > 0) io.to(room).emit('message', frame);
  return audience;
}

await startRelay(o, deliver);
server.listen(o.port, o.host, () => {
  listening = true;
  console.error(`socket.io peer listening on ${o.host}:${o.port}/socket.io/`);
});
