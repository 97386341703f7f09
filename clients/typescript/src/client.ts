/**
 * The client: one WebSocket to the relay, its status, requests and their replies (by `ref`),
 * the bounded queue of sends made while offline, the heartbeat that detects dead sockets, and
 * reconnection with exponential backoff and full jitter, after which every channel is
 * resubscribed with `resume: {cursor}`.
 */

import { Channel, type ChannelHost, type Pulled } from './channel.js';
import { RealtimeError } from './errors.js';
import { HttpSocket, httpBase } from './http-socket.js';
import type { EventMap, Status, Transport, WebSocketConstructor, WebSocketLike } from './types.js';

export interface ClientOptions {
  /** The relay's socket URL, e.g. `ws://127.0.0.1:4000/v1/socket` (a bare `ws://host:port` gets `/v1/socket`). */
  url: string;
  /** A JWT. Omit for anonymous access (if the relay allows it). */
  token?: string | null;
  /** Called before every (re)connect for a fresh JWT; wins over `token`. */
  getToken?: () => string | null | undefined | Promise<string | null | undefined>;
  /** A WebSocket implementation; defaults to `globalThis.WebSocket` (pass the `ws` package under Node 20). */
  WebSocket?: WebSocketConstructor;
  /**
   * How to reach the relay (default `'websocket'`). `'sse'`: Server-Sent Events for what arrives,
   * HTTP for requests; `'poll'`: long-polling. `'auto'`: WebSocket, falling back to SSE and then
   * to long-poll when a transport cannot open or dies at once twice in a row, and trying
   * WebSocket again after `retryWebSocketMs`. Presence `track` and ephemeral publishes need a
   * WebSocket.
   */
  transport?: 'auto' | Transport;
  /** On `'auto'`, how long a fallback transport is used before WebSocket is tried again (default 60 s). */
  retryWebSocketMs?: number;
  /** Connect on the first subscribe or request (default true). */
  autoConnect?: boolean;
  /** Ping period (default 25 s); the socket is dropped when nothing arrives for `heartbeatIntervalMs + heartbeatTimeoutMs`. */
  heartbeatIntervalMs?: number;
  /** See `heartbeatIntervalMs` (default 10 s). */
  heartbeatTimeoutMs?: number;
  /** First backoff ceiling (default 1 s); doubles per failed attempt. */
  reconnectBaseMs?: number;
  /** Backoff cap (default 30 s). The delay is uniform in [0, min(cap, base·2^attempt)] (full jitter). */
  reconnectMaxMs?: number;
  /** How long a sent request waits for its reply (default 10 s), and a connection attempt for its handshake. */
  requestTimeoutMs?: number;
  /** Queue requests made while offline (default true); otherwise they fail with `REALTIME_OFFLINE`. */
  queueOffline?: boolean;
  /** Most requests queued while offline (default 100); beyond it they fail with `REALTIME_QUEUE_FULL`. */
  maxQueue?: number;
  /**
   * Largest frame sent, in bytes (default 1 MiB, the relay's `--max-frame-bytes` default). A bigger
   * request fails with `REALTIME_PAYLOAD_TOO_LARGE` before it is sent, instead of the relay
   * closing the connection (1009).
   */
  maxFrameBytes?: number;
}

type Pending = { onReply: (frame: any) => void; onLost: () => void; timer?: ReturnType<typeof setTimeout> };
type Queued = { body: string; type: string; ack: boolean; resolve: (v: any) => void; reject: (e: unknown) => void };

const OPEN = 1;

/** Reads the `sub` claim of a JWT without verifying it (the server verifies). */
export function tokenSubject(token: string | null | undefined): string | null {
  if (!token) return null;
  const part = token.split('.')[1];
  if (!part) return null;
  try {
    const b64 = part.replace(/-/g, '+').replace(/_/g, '/').padEnd(Math.ceil(part.length / 4) * 4, '=');
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const json = JSON.parse(new TextDecoder().decode(bytes));
    return typeof json.sub === 'string' ? json.sub : null;
  } catch {
    return null;
  }
}

export class RealtimeClient implements ChannelHost {
  private readonly url: string;
  private token: string | null;
  private readonly getTokenFn?: ClientOptions['getToken'];
  private readonly Ws?: WebSocketConstructor;
  private readonly opts: Required<Omit<ClientOptions, 'url' | 'token' | 'getToken' | 'WebSocket' | 'transport'>>;
  private readonly mode: 'auto' | Transport;
  /** The transport the next connection uses. */
  private candidate: Transport;
  /** Connections of `candidate` in a row that could not open or died at once. */
  private quickFailures = 0;
  private openedAt = 0;
  private transportValue: Transport | null = null;
  private retryWsTimer: ReturnType<typeof setTimeout> | null = null;
  private ws: WebSocketLike | null = null;
  private statusValue: Status = 'idle';
  private readonly statusListeners = new Set<(s: Status, transport: Transport | null) => void>();
  private readonly errorListeners = new Set<(e: RealtimeError) => void>();
  private readonly channels = new Map<string, Channel<any, any>>();
  private readonly pending = new Map<number, Pending>();
  private queue: Queued[] = [];
  private nextRef = 1;
  /** Failed attempts since the last successful open. */
  private attempt = 0;
  /** Bumped by every open attempt and by disconnect(): stale callbacks compare against it. */
  private generation = 0;
  /** The app wants a connection (connect() called, disconnect() not). */
  private wantOpen = false;
  private hasConnected = false;
  private reconnectTimer: ReturnType<typeof setTimeout> | null = null;
  private heartbeatTimer: ReturnType<typeof setInterval> | null = null;
  private handshakeTimer: ReturnType<typeof setTimeout> | null = null;
  private lastSeen = 0;
  private connectWaiters: Array<{ resolve: () => void; reject: (e: unknown) => void }> = [];

  constructor(options: ClientOptions) {
    this.url = socketUrl(options.url);
    this.token = options.token ?? null;
    this.getTokenFn = options.getToken;
    this.Ws = options.WebSocket ?? (globalThis as any).WebSocket;
    this.opts = {
      autoConnect: options.autoConnect ?? true,
      heartbeatIntervalMs: options.heartbeatIntervalMs ?? 25_000,
      heartbeatTimeoutMs: options.heartbeatTimeoutMs ?? 10_000,
      reconnectBaseMs: options.reconnectBaseMs ?? 1_000,
      reconnectMaxMs: options.reconnectMaxMs ?? 30_000,
      requestTimeoutMs: options.requestTimeoutMs ?? 10_000,
      queueOffline: options.queueOffline ?? true,
      maxQueue: options.maxQueue ?? 100,
      maxFrameBytes: options.maxFrameBytes ?? 1_048_576,
      retryWebSocketMs: options.retryWebSocketMs ?? 60_000,
    };
    this.mode = options.transport ?? 'websocket';
    this.candidate = this.mode === 'auto' ? (this.Ws ? 'websocket' : 'sse') : this.mode;
    if (!this.Ws && this.candidate === 'websocket') {
      throw new RealtimeError(
        'REALTIME_NO_WEBSOCKET',
        "no WebSocket implementation: pass createClient({WebSocket}) (e.g. `import WebSocket from 'ws'`) or use '@realtime/client/node'",
      );
    }
  }

  /** The connection status. */
  get status(): Status {
    return this.statusValue;
  }

  /** The transport of the live connection (`'websocket'`, `'sse'` or `'poll'`), or null when not connected. */
  get transport(): Transport | null {
    return this.transportValue;
  }

  /** The `sub` claim of the current token (the user id the server sees), if any. */
  get userId(): string | null {
    return tokenSubject(this.token);
  }

  /** Requests queued while offline. */
  get queuedCount(): number {
    return this.queue.length;
  }

  /** The channel named `name` (one instance per name). */
  channel<E extends EventMap = EventMap, S = Record<string, unknown>>(name: string): Channel<E, S> {
    let ch = this.channels.get(name);
    if (!ch) this.channels.set(name, (ch = new Channel(name, this)));
    return ch as Channel<E, S>;
  }

  /** Calls `cb` on every status change, with the live transport (when connected); returns a function that stops it. */
  onStatusChange(cb: (status: Status, transport: Transport | null) => void): () => void {
    this.statusListeners.add(cb);
    return () => this.statusListeners.delete(cb);
  }

  /** Errors nobody awaits: `unsubscribed` frames, refused `ack: false` publishes, failed re-tracks. */
  onError(cb: (error: RealtimeError) => void): () => void {
    this.errorListeners.add(cb);
    return () => this.errorListeners.delete(cb);
  }

  /** Opens the connection (and keeps reconnecting). Resolves once connected; rejects with `REALTIME_DISCONNECTED` if `disconnect()` comes first. */
  connect(): Promise<void> {
    if (this.statusValue === 'connected') return Promise.resolve();
    const p = new Promise<void>((resolve, reject) => this.connectWaiters.push({ resolve, reject }));
    if (!this.wantOpen) {
      this.wantOpen = true;
      this.hasConnected = false;
      this.attempt = 0;
      void this.open();
    }
    return p;
  }

  /**
   * Closes the connection and stops reconnecting. Queued and in-flight requests fail with
   * `REALTIME_DISCONNECTED`. Channels stay wanted: `connect()` restores them, resuming from their cursors.
   */
  disconnect(): void {
    this.wantOpen = false;
    this.generation++;
    if (this.retryWsTimer) clearTimeout(this.retryWsTimer);
    this.retryWsTimer = null;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    const ws = this.ws;
    this.dropSocket();
    if (ws) {
      try {
        ws.close(1000, 'client disconnect');
      } catch {
        /* already closed */
      }
    }
    const err = () => new RealtimeError('REALTIME_DISCONNECTED', 'the client was disconnected');
    const queued = this.queue;
    this.queue = [];
    queued.forEach((q) => q.reject(err()));
    const waiters = this.connectWaiters;
    this.connectWaiters = [];
    waiters.forEach((w) => w.reject(err()));
    this.setStatus('disconnected');
  }

  /**
   * Replaces the token. When connected it is sent at once (`auth` frame) and the promise
   * rejects with `REALTIME_UNAUTHORIZED` if the server refuses it; otherwise it is used on the
   * next connect (unless `getToken` is set, which always wins).
   */
  async setToken(token: string | null): Promise<void> {
    this.token = token;
    if (this.statusValue === 'connected' && token) {
      await this.request({ type: 'auth', token }, { queue: false });
    }
  }

  // ---- ChannelHost ----

  /** @internal */
  isConnected(): boolean {
    return this.statusValue === 'connected' && !!this.ws;
  }

  /** @internal */
  reportError(error: RealtimeError): void {
    for (const cb of [...this.errorListeners]) cb(error);
  }

  /** @internal a hint channel's pull: the stored messages after `cursor`, in full, over HTTP. */
  async pull(channel: string, cursor: string | undefined, limit?: number): Promise<Pulled> {
    const q = new URLSearchParams({ channel, wait: '0' });
    if (cursor) q.set('cursor', cursor);
    if (limit !== undefined) q.set('limit', String(limit));
    const headers: Record<string, string> = this.token ? { Authorization: `Bearer ${this.token}` } : {};
    const res = await fetch(`${httpBase(this.url)}/v1/poll?${q}`, { headers });
    const body: any = await res.json().catch(() => ({}));
    if (!res.ok) throw RealtimeError.fromServer(body.error ?? { code: 'INTERNAL_ERROR', message: `HTTP ${res.status}` });
    return { messages: body.messages ?? [], cursor: body.cursor, more: !!body.more, reset: !!body.reset };
  }

  /** @internal */
  join(channel: Channel<any, any>): void {
    if (this.isConnected()) this.sendSubscribe(channel);
    else this.ensureConnecting();
  }

  /** @internal */
  request(frame: Record<string, unknown>, opts: { queue?: boolean; ack?: boolean } = {}): Promise<any> {
    const ack = opts.ack ?? true;
    const type = String(frame.type);
    // Encoded once: the queue and the socket get this text (the ref is spliced in at send time).
    const body = JSON.stringify(frame);
    const max = this.opts.maxFrameBytes;
    if (body.length * 3 + 32 > max) {
      const bytes = new TextEncoder().encode(body).length + 32;
      if (bytes > max) {
        return Promise.reject(
          new RealtimeError('REALTIME_PAYLOAD_TOO_LARGE', `'${type}' frame is about ${bytes} bytes; the limit (maxFrameBytes) is ${max}`),
        );
      }
    }
    if (this.isConnected()) return this.send(body, type, ack);
    if (!opts.queue) {
      return Promise.reject(new RealtimeError('REALTIME_OFFLINE', `not connected: cannot send '${String(frame.type)}' now`));
    }
    if (!this.opts.queueOffline) {
      return Promise.reject(new RealtimeError('REALTIME_OFFLINE', `not connected (status ${this.statusValue}) and queueOffline is false`));
    }
    if (this.queue.length >= this.opts.maxQueue) {
      return Promise.reject(
        new RealtimeError('REALTIME_QUEUE_FULL', `offline send queue is full (${this.opts.maxQueue} requests); '${String(frame.type)}' was not queued`),
      );
    }
    const p = new Promise<any>((resolve, reject) => this.queue.push({ body, type, ack, resolve, reject }));
    this.ensureConnecting();
    return p;
  }

  // ---- socket ----

  private ensureConnecting(): void {
    if (!this.wantOpen && this.opts.autoConnect) this.connect().catch(() => {});
  }

  private setStatus(s: Status): void {
    const transport = s === 'connected' ? this.candidate : null;
    if (this.statusValue === s && this.transportValue === transport) return;
    this.statusValue = s;
    this.transportValue = transport;
    for (const cb of [...this.statusListeners]) cb(s, transport);
  }

  /** On `'auto'`: after a connection of `candidate` ended, whether to fall back to the next transport. */
  private noteEnded(opened: boolean): void {
    if (this.mode !== 'auto') return;
    const atOnce = !opened || Date.now() - this.openedAt < 2_000;
    this.quickFailures = atOnce ? this.quickFailures + 1 : 0;
    if (this.quickFailures >= 2 && this.candidate !== 'poll') {
      this.candidate = this.candidate === 'websocket' ? 'sse' : 'poll';
      this.quickFailures = 0;
    }
  }

  private async open(): Promise<void> {
    const gen = ++this.generation;
    this.setStatus(this.hasConnected ? 'reconnecting' : 'connecting');
    let token = this.token;
    if (this.getTokenFn) {
      try {
        token = (await this.getTokenFn()) ?? null;
      } catch (e) {
        if (gen !== this.generation) return;
        this.reportError(new RealtimeError('REALTIME_UNAUTHORIZED', `getToken failed: ${e instanceof Error ? e.message : String(e)}`));
        this.scheduleReconnect();
        return;
      }
      if (gen !== this.generation) return;
      this.token = token;
    }
    const url = token ? `${this.url}${this.url.includes('?') ? '&' : '?'}token=${encodeURIComponent(token)}` : this.url;
    let ws: WebSocketLike;
    try {
      ws = this.candidate === 'websocket' ? new this.Ws!(url) : new HttpSocket(this.candidate, httpBase(this.url), token);
    } catch (e) {
      this.noteEnded(false);
      this.reportError(new RealtimeError('REALTIME_CONNECTION_LOST', `cannot open ${this.url}: ${String(e)}`));
      this.scheduleReconnect();
      return;
    }
    this.ws = ws;
    ws.onopen = () => this.onOpen(ws);
    ws.onmessage = (ev: { data: unknown }) => this.onData(ws, ev.data);
    ws.onclose = (ev: { code?: number; reason?: string }) => this.onClose(ws, ev?.code, ev?.reason);
    ws.onerror = (ev: { message?: string; error?: { message?: string } }) => {
      // A close event follows. Node's `ws` says why a handshake failed; browsers do not.
      const why = ev?.message ?? ev?.error?.message ?? '';
      if (/\b401\b/.test(why)) this.reportError(new RealtimeError('REALTIME_UNAUTHORIZED', `the relay refused the token: ${why}`));
    };
    this.handshakeTimer = setTimeout(() => {
      if (this.ws === ws && ws.readyState !== OPEN) this.onClose(ws, 1006, 'handshake timed out');
    }, this.opts.requestTimeoutMs);
  }

  private onOpen(ws: WebSocketLike): void {
    if (this.ws !== ws) return;
    if (this.handshakeTimer) clearTimeout(this.handshakeTimer);
    this.attempt = 0;
    this.hasConnected = true;
    this.lastSeen = this.openedAt = Date.now();
    this.setStatus('connected');
    if (this.mode === 'auto' && this.candidate !== 'websocket' && this.Ws && !this.retryWsTimer) {
      // Try WebSocket again later: a reconnect on it resumes every channel where it was.
      this.retryWsTimer = setTimeout(() => {
        this.retryWsTimer = null;
        if (this.ws !== ws || !this.wantOpen) return;
        this.candidate = 'websocket';
        this.quickFailures = 0;
        this.dropSocket();
        try {
          ws.close(1000, 'trying WebSocket again');
        } catch {
          /* already closed */
        }
        void this.open();
      }, this.opts.retryWebSocketMs);
    }
    this.startHeartbeat(ws);
    // Order matters: subscriptions first (the relay handles frames in order, so a resumed
    // channel is live again before any queued publish or track reaches it), then the queue.
    for (const ch of this.channels.values()) {
      if (ch._wanted()) this.sendSubscribe(ch);
    }
    const queued = this.queue;
    this.queue = [];
    for (const q of queued) this.send(q.body, q.type, q.ack).then(q.resolve, q.reject);
    const waiters = this.connectWaiters;
    this.connectWaiters = [];
    waiters.forEach((w) => w.resolve());
  }

  private onData(ws: WebSocketLike, data: unknown): void {
    if (this.ws !== ws) return;
    this.lastSeen = Date.now();
    let frame: any;
    try {
      frame = JSON.parse(typeof data === 'string' ? data : String(data));
    } catch {
      return;
    }
    if (frame.type === 'reply' || frame.type === 'pong') {
      const p = typeof frame.ref === 'number' ? this.pending.get(frame.ref) : undefined;
      if (p) {
        this.pending.delete(frame.ref);
        if (p.timer) clearTimeout(p.timer);
        p.onReply(frame);
      } else if (frame.type === 'reply' && frame.ok === false) {
        this.reportError(RealtimeError.fromServer(frame.error));
      }
      return;
    }
    if (typeof frame.channel === 'string') this.channels.get(frame.channel)?._onFrame(frame);
  }

  private onClose(ws: WebSocketLike, code?: number, reason?: string): void {
    if (this.ws !== ws) return;
    this.noteEnded(this.statusValue === 'connected');
    this.dropSocket();
    const closeCodes: Record<number, string> = {
      4001: 'REALTIME_UNAUTHORIZED',
      4008: 'REALTIME_RATE_LIMITED',
      4009: 'REALTIME_CONNECTION_LOST',
      1009: 'REALTIME_PAYLOAD_TOO_LARGE',
    };
    if (code !== undefined && closeCodes[code]) {
      this.reportError(new RealtimeError(closeCodes[code], `the relay closed the connection (${code}): ${reason || 'no reason given'}`));
    }
    if (this.wantOpen) this.scheduleReconnect();
  }

  /** Forgets the current socket: stops timers, fails in-flight requests, marks channels for resubscribe. */
  private dropSocket(): void {
    const ws = this.ws;
    this.ws = null;
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    if (this.handshakeTimer) clearTimeout(this.handshakeTimer);
    this.heartbeatTimer = this.handshakeTimer = null;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = null;
      ws.onerror = () => {};
    }
    const pending = [...this.pending.values()];
    this.pending.clear();
    for (const p of pending) {
      if (p.timer) clearTimeout(p.timer);
      p.onLost();
    }
    for (const ch of this.channels.values()) ch._onSocketLost();
  }

  private scheduleReconnect(): void {
    if (!this.wantOpen) return;
    this.setStatus(this.hasConnected ? 'reconnecting' : 'connecting');
    const ceiling = Math.min(this.opts.reconnectMaxMs, this.opts.reconnectBaseMs * 2 ** this.attempt);
    this.attempt = Math.min(this.attempt + 1, 30);
    const delay = Math.random() * ceiling;
    const gen = this.generation;
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      if (gen === this.generation && this.wantOpen) void this.open();
    }, delay);
  }

  private startHeartbeat(ws: WebSocketLike): void {
    const { heartbeatIntervalMs: every, heartbeatTimeoutMs: grace } = this.opts;
    this.heartbeatTimer = setInterval(() => {
      if (this.ws !== ws) return;
      if (Date.now() - this.lastSeen >= every + grace) {
        // Nothing (not even a pong) for too long: the socket is dead even if TCP has not noticed.
        const terminate = (ws as any).terminate;
        try {
          if (typeof terminate === 'function') terminate.call(ws);
          else ws.close(4000, 'heartbeat timeout');
        } catch {
          /* ignore */
        }
        this.onClose(ws, 1006, 'heartbeat timeout');
        return;
      }
      try {
        ws.send(JSON.stringify({ type: 'ping', ref: this.nextRef++ }));
      } catch {
        /* the close event follows */
      }
    }, every);
  }

  private sendSubscribe(ch: Channel<any, any>): void {
    const body = JSON.stringify(ch._subscribeFrame());
    // A lost subscribe is simply sent again on the next socket.
    this.sendRaw(body, {
      onReply: (reply) => ch._onSubscribeReply(reply),
      onLost: () => {},
      timeoutMs: this.opts.requestTimeoutMs,
      onTimeout: () => ch._onSubscribeReply({ ok: false, error: { code: 'REALTIME_TIMEOUT', message: `no reply to subscribe '${ch.name}'` } }),
    });
  }

  /** Sends a request on the open socket; resolves with the reply (or at once when `ack` is false). */
  private send(body: string, type: string, ack: boolean): Promise<any> {
    return new Promise((resolve, reject) => {
      this.sendRaw(body, {
        onReply: (reply) => {
          if (reply.ok === false) {
            const e = RealtimeError.fromServer(reply.error);
            if (ack) reject(e);
            else this.reportError(e);
          } else if (ack) resolve(reply);
        },
        onLost: () => {
          if (ack) reject(new RealtimeError('REALTIME_CONNECTION_LOST', `connection lost before the reply to '${type}'; it may or may not have been applied`));
        },
        timeoutMs: this.opts.requestTimeoutMs,
        onTimeout: () => {
          const e = new RealtimeError('REALTIME_TIMEOUT', `no reply to '${type}' within ${this.opts.requestTimeoutMs} ms`);
          if (ack) reject(e);
          else this.reportError(e);
        },
      });
      if (!ack) resolve(undefined);
    });
  }

  /** Sends `body` (a JSON object's text) with a fresh `ref`, and routes the reply to `h`. */
  private sendRaw(
    body: string,
    h: { onReply: (f: any) => void; onLost: () => void; timeoutMs: number; onTimeout: () => void },
  ): void {
    const ws = this.ws!;
    const ref = this.nextRef++;
    const entry: Pending = { onReply: h.onReply, onLost: h.onLost };
    entry.timer = setTimeout(() => {
      if (this.pending.delete(ref)) h.onTimeout();
    }, h.timeoutMs);
    this.pending.set(ref, entry);
    try {
      ws.send(`{"ref":${ref},${body.slice(1)}`);
    } catch {
      // The socket is closing; its close event fails the request through onLost.
    }
  }
}

function socketUrl(url: string): string {
  const u = new URL(url);
  if (u.protocol === 'http:') u.protocol = 'ws:';
  if (u.protocol === 'https:') u.protocol = 'wss:';
  if (u.pathname === '/' || u.pathname === '') u.pathname = '/v1/socket';
  return u.toString();
}

/** Creates a client. Nothing connects until `connect()`, a `subscribe()` or a request. */
export function createClient(options: ClientOptions): RealtimeClient {
  return new RealtimeClient(options);
}
