/** Types shared by the client, channels and hooks: frames as the app sees them. */

import type { RealtimeError } from './errors.js';

/** Connection status, reported by `client.onStatusChange`. */
export type Status = 'idle' | 'connecting' | 'connected' | 'reconnecting' | 'disconnected';

/** How the client reaches the relay: a WebSocket, Server-Sent Events plus HTTP, or long-polling. */
export type Transport = 'websocket' | 'sse' | 'poll';

/** What a hint subscription delivers instead of a message: which one, never its payload. */
export interface Hint {
  channel: string;
  event: string;
  /** Absent for ephemeral messages (which cannot be pulled). */
  id?: string;
  cursor?: string;
  replayed?: boolean;
}

/** Options of `channel.subscribe()`. */
export interface SubscribeOptions {
  /** Receive hints (`{channel, event, id, cursor}`) instead of messages; fetch them with `channel.pull()`. */
  hint?: boolean;
}

/** Who sent a message. */
export interface Sender {
  type: 'user' | 'system' | string;
  id?: string;
}

/**
 * One message of a channel, live or from history. `id` and `cursor` are absent on ephemeral
 * messages (`persist: false`), which are never replayed or kept in history.
 */
export interface Message<P = unknown, E extends string = string> {
  channel: string;
  event: E;
  payload: P;
  id?: string;
  cursor?: string;
  sender?: Sender;
  created_at?: string;
  /** True when the message was replayed after a reconnect (it was missed while offline). */
  replayed?: boolean;
}

/** A presence member: one per `presence_id`. */
export interface PresenceMember<S = Record<string, unknown>> {
  presence_id: string;
  user_id: string | null;
  state: S;
}

/** What `presence:join` / `presence:update` / `presence:leave` listeners receive. */
export interface PresenceEvent<S = Record<string, unknown>> {
  event: 'join' | 'update' | 'leave';
  member: PresenceMember<S>;
  /** Every member after this event. */
  members: PresenceMember<S>[];
}

/** What `reset` listeners receive: resume was impossible; refetch state (e.g. with history). */
export interface ResetEvent {
  channel: string;
  cursor?: string;
}

/** What `dropped` listeners receive: ephemeral messages this subscriber missed while it was behind. */
export interface DroppedEvent {
  channel: string;
  count: number;
}

/** A page of history: `more` is true when the relay cut it short of `limit` (bytes bound). */
export interface HistoryPage<M> {
  messages: M[];
  more: boolean;
}

/** The resolved value of `channel.subscribe()`. */
export type SubscribeResult<S = Record<string, unknown>> =
  | {
      ok: true;
      channel: string;
      /** The channel's position at subscribe time: `history({before: cursor})` is what came before. */
      cursor?: string;
      /** On a resubscribe with a cursor: whether every missed message was replayed. */
      recovered?: boolean;
      presence: { members: PresenceMember<S>[] };
    }
  | { ok: false; error: RealtimeError };

/** The resolved value of `channel.publish()`: `id`/`cursor` of a persisted message. */
export interface PublishResult {
  id?: string;
  cursor?: string;
}

export interface PublishOptions {
  /** Store the message (default true): it gets an id and cursor, is replayed and kept in history. */
  persist?: boolean;
  /**
   * Wait for the server's reply (default true). With `ack: false` the promise resolves as soon as
   * the frame is written (or queued), and a refusal is only reported to `client.onError`.
   */
  ack?: boolean;
}

export interface HistoryOptions {
  /** At most this many messages (the relay caps it). */
  limit?: number;
  /** Only messages before this cursor or message id. */
  before?: string;
}

/** A map from event name to payload type, for typed channels: `channel<{message: {text: string}}>('chat:1')`. */
export type EventMap = Record<string, unknown>;

/** The events a channel emits besides its messages. */
export interface SystemEvents<S> {
  'presence:join': PresenceEvent<S>;
  'presence:update': PresenceEvent<S>;
  'presence:leave': PresenceEvent<S>;
  reset: ResetEvent;
  /** Ephemeral messages were missed while this subscriber fell behind (stored ones never are). */
  dropped: DroppedEvent;
  /** The server ended the subscription (access revoked after `setToken` or a re-check, channel disabled). */
  unsubscribed: RealtimeError;
  /** A message of a hint subscription arrived: `channel.pull()` fetches it. */
  hint: Hint;
}

/** A minimal WebSocket: the browser's, Node 22's global one, or the `ws` package's. */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: any) => void) | null;
  onclose: ((ev: any) => void) | null;
  onerror: ((ev: any) => void) | null;
  onmessage: ((ev: any) => void) | null;
}

export type WebSocketConstructor = new (url: string) => WebSocketLike;
