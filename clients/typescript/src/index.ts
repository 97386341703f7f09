/**
 * `@realtime/client`: the browser-safe entry (no runtime dependency). Under Node 20 pass a
 * WebSocket implementation (`createClient({url, WebSocket})` with the `ws` package) or import
 * `@realtime/client/node`, which does that for you.
 */
export { createClient, RealtimeClient, tokenSubject } from './client.js';
export type { ClientOptions } from './client.js';
export type { Pulled } from './channel.js';
export { Channel } from './channel.js';
export { RealtimeError } from './errors.js';
export type { ErrorCode, ServerErrorCode, ClientErrorCode } from './errors.js';
export type * from './types.js';
