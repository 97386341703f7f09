/**
 * `@realtime/client/node`: the same API, using the `ws` package as the WebSocket when none is
 * passed and Node has no global one (Node 20). Needs `npm install ws`.
 */
import WebSocket from 'ws';
import { createClient as createBase, type ClientOptions, type RealtimeClient } from './client.js';
import type { WebSocketConstructor } from './types.js';

export * from './index.js';

export function createClient(options: ClientOptions): RealtimeClient {
  const Ws = options.WebSocket ?? (globalThis as any).WebSocket ?? (WebSocket as unknown as WebSocketConstructor);
  return createBase({ ...options, WebSocket: Ws });
}
