/**
 * Protocol v1 over plain HTTP, behind the same socket interface as a WebSocket, so the client,
 * its channels and React hooks work unchanged on any transport:
 *
 * - `sse`: one Server-Sent Events stream (`GET /v1/sse`, read with `fetch`) per kind of
 *   subscription (full, hint), restarted with `Last-Event-ID` when its channel set changes or it
 *   drops, so nothing is lost or doubled;
 * - `poll`: long-polls (`GET /v1/poll`) per kind of subscription, each continuing at the last
 *   answer's cursor.
 *
 * Requests the client sends as v1 frames become HTTP calls: `publish` → `POST /v1/publish`
 * (stored messages only), `history` → `GET /v1/channels/{channel}/history`, and on SSE
 * `track`/`untrack` → `POST /v1/presence/{track,untrack}` naming the stream (its `ready` event
 * says which; presence is re-tracked on a new stream when the channel set changes). `ping` is
 * answered here. On long-poll, presence is a lease (`POST /v1/presence/track` without a stream)
 * kept alive by heartbeats while the socket is open. Ephemeral publishes need a WebSocket.
 */

import type { WebSocketLike } from './types.js';

export type HttpTransport = 'sse' | 'poll';

type Frame = Record<string, any>;
type Wanted = { hint: boolean; ref?: number; resume?: string };

const CONNECTING = 0;
const OPEN = 1;
const CLOSED = 3;
/** A stream that delivers nothing (not even a keep-alive) for this long is restarted. */
const SILENCE_MS = 45_000;
/** Failed starts in a row before the socket reports itself closed (the client then reconnects or falls back). */
const MAX_FAILURES = 3;

/** The relay's HTTP origin for a socket URL (`ws://h:p/v1/socket` → `http://h:p`). */
export function httpBase(url: string): string {
  const u = new URL(url);
  u.protocol = u.protocol === 'wss:' ? 'https:' : u.protocol === 'ws:' ? 'http:' : u.protocol;
  return u.origin;
}

export class HttpSocket implements WebSocketLike {
  readyState = CONNECTING;
  onopen: ((ev: any) => void) | null = null;
  onclose: ((ev: any) => void) | null = null;
  onerror: ((ev: any) => void) | null = null;
  onmessage: ((ev: any) => void) | null = null;
  private readonly wanted = new Map<string, Wanted>();
  private readonly runners = new Map<boolean, Runner>();
  /** Presence tracked through streams: channel → state, and the stream it is tracked on. */
  private readonly tracked = new Map<string, { state: unknown; on?: string }>();
  /** Long-poll presence: the lease and its heartbeat. */
  private lease: string | undefined;
  private heartbeat: ReturnType<typeof setInterval> | undefined;

  constructor(
    readonly transport: HttpTransport,
    /** @internal the relay's HTTP origin */
    readonly base: string,
    private token: string | null,
  ) {
    void this.probe();
  }

  /** The endpoint answers (a 400 for a request without channels): the socket is open. */
  private async probe(): Promise<void> {
    try {
      const res = await fetch(`${this.base}/v1/${this.transport}`, { headers: this.headers() });
      await res.body?.cancel();
      if (this.readyState !== CONNECTING) return;
      if (res.status === 400) {
        this.readyState = OPEN;
        this.onopen?.({});
      } else {
        this.fail(1006, `/v1/${this.transport} answered ${res.status}`);
      }
    } catch (e) {
      this.fail(1006, `/v1/${this.transport} unreachable: ${e instanceof Error ? e.message : String(e)}`);
    }
  }

  send(data: string): void {
    if (this.readyState !== OPEN) throw new Error('not open');
    const f: Frame = JSON.parse(data);
    const ref = f.ref;
    switch (f.type) {
      case 'ping':
        return this.deliver({ type: 'pong', ref });
      case 'subscribe':
        void this.admit(f.channel, { hint: f.hint === true, ref, resume: f.resume?.cursor });
        return;
      case 'unsubscribe': {
        const w = this.wanted.get(f.channel);
        this.wanted.delete(f.channel);
        this.deliver(w ? { type: 'reply', ref, ok: true, channel: f.channel } : refusal(ref, 'REALTIME_NOT_SUBSCRIBED', `not subscribed to '${f.channel}'`));
        if (w) this.restart(w.hint);
        return;
      }
      case 'publish':
        if (f.persist === false) {
          return this.deliver(refusal(ref, 'REALTIME_INVALID_REQUEST', `ephemeral publishes need the WebSocket transport (this client is on ${this.transport})`));
        }
        void this.call(ref, 'POST', '/v1/publish', { channel: f.channel, event: f.event, payload: f.payload ?? {} }, (body) => {
          const m = body.messages?.[0] ?? {};
          return { channel: f.channel, id: m.id, cursor: m.cursor ?? undefined };
        });
        return;
      case 'history': {
        const q = new URLSearchParams();
        if (f.limit !== undefined) q.set('limit', String(f.limit));
        if (f.before !== undefined) q.set('before', String(f.before));
        void this.call(ref, 'GET', `/v1/channels/${encodeURIComponent(f.channel)}/history?${q}`, undefined, (body) => ({
          messages: body.messages ?? [],
          more: body.more,
        }));
        return;
      }
      case 'track':
      case 'untrack':
        if (this.transport === 'poll') {
          if (!this.wanted.has(f.channel)) {
            return this.deliver(refusal(ref, 'REALTIME_NOT_SUBSCRIBED', `subscribe to '${f.channel}' before tracking presence on it`));
          }
          void this.leasePresence(ref, f.type, f.channel, f.state);
          return;
        }
        if (f.type === 'track') this.tracked.set(f.channel, { state: f.state ?? {} });
        else this.tracked.delete(f.channel);
        void this.presence(ref, f.type, f.channel, f.state);
        return;
      case 'auth':
        this.token = f.token ?? null;
        this.deliver({ type: 'reply', ref, ok: true });
        for (const hint of [...this.runners.keys()]) this.restart(hint);
        return;
    }
    this.deliver(refusal(ref, 'REALTIME_INVALID_REQUEST', `'${f.type}' needs the WebSocket transport (this client is on ${this.transport})`));
  }

  /**
   * Adds a channel to its group once the relay says this token may subscribe to it (a poll
   * without cursor asks exactly that, alone): a stream of several channels is refused as a whole,
   * so a refused channel must never join one.
   */
  private async admit(channel: string, w: Wanted): Promise<void> {
    try {
      const q = new URLSearchParams({ channel, wait: '0' });
      const res = await fetch(`${this.base}/v1/poll?${q}`, { headers: this.headers() });
      const body: any = await res.json().catch(() => ({}));
      if ([400, 401, 403, 404].includes(res.status)) {
        return this.deliver({ type: 'reply', ref: w.ref, ok: false, error: body.error ?? { code: 'INTERNAL_ERROR', message: `HTTP ${res.status}` } });
      }
    } catch {
      /* unreachable now: the stream's own start will tell */
    }
    if (this.readyState !== OPEN) return;
    this.wanted.set(channel, w);
    this.restart(w.hint);
  }

  /** Tracks or untracks presence on the stream that carries `channel`. */
  private async presence(ref: number | undefined, op: 'track' | 'untrack', channel: string, state?: unknown): Promise<void> {
    const w = this.wanted.get(channel);
    const runner = w && this.runners.get(w.hint);
    const stream = runner && (await runner.streamId());
    if (!stream) {
      if (ref !== undefined) this.deliver(refusal(ref, 'REALTIME_NOT_SUBSCRIBED', `subscribe to '${channel}' before tracking presence on it`));
      return;
    }
    const body = op === 'track' ? { stream, channel, state: state ?? {} } : { stream, channel };
    await this.call(ref, 'POST', `/v1/presence/${op}`, body, () => {
      const t = this.tracked.get(channel);
      if (t && op === 'track') t.on = stream;
      return { channel };
    });
  }

  /** Long-poll presence through a lease: made by the first track, kept by heartbeats, made again if it lapsed. */
  private async leasePresence(ref: number | undefined, op: 'track' | 'untrack', channel: string, state?: unknown): Promise<void> {
    if (op === 'untrack') {
      this.tracked.delete(channel);
      if (!this.lease) return this.deliver({ type: 'reply', ref, ok: true, channel });
      return this.call(ref, 'POST', '/v1/presence/untrack', { lease: this.lease, channel }, () => ({ channel }));
    }
    this.tracked.set(channel, { state: state ?? {} });
    const body: Record<string, unknown> = { channel, state: state ?? {} };
    if (this.lease) body.lease = this.lease;
    await this.call(ref, 'POST', '/v1/presence/track', body, (answer) => {
      if (answer.lease) this.startLease(answer.lease, Number(answer.expires_in) || 30);
      return { channel };
    });
  }

  private startLease(lease: string, expiresIn: number): void {
    this.lease = lease;
    clearInterval(this.heartbeat);
    this.heartbeat = setInterval(async () => {
      if (this.readyState !== OPEN) return clearInterval(this.heartbeat);
      try {
        const res = await fetch(`${this.base}/v1/presence/heartbeat`, {
          method: 'POST',
          headers: { ...this.headers(), 'content-type': 'application/json' },
          body: JSON.stringify({ lease }),
        });
        if (res.status === 404 && this.lease === lease) {
          // Lapsed (or the relay restarted): track everything again on a new lease.
          this.lease = undefined;
          clearInterval(this.heartbeat);
          for (const [ch, t] of this.tracked) await this.leasePresence(undefined, 'track', ch, t.state);
        }
      } catch {
        /* the next beat tries again */
      }
    }, (expiresIn * 1000) / 3);
  }

  /** @internal a stream of one kind is live as `stream`: presence tracked on an earlier one moves to it. */
  onReady(hint: boolean, stream: string): void {
    for (const [channel, t] of this.tracked) {
      if (t.on && t.on !== stream && this.wanted.get(channel)?.hint === hint) void this.presence(undefined, 'track', channel, t.state);
    }
  }

  close(code = 1000, reason = ''): void {
    this.fail(code, reason, false);
  }

  /** @internal */
  headers(): Record<string, string> {
    return this.token ? { Authorization: `Bearer ${this.token}` } : {};
  }

  /** @internal hands a v1 frame to the client. */
  deliver(frame: Frame): void {
    if (this.readyState === OPEN) this.onmessage?.({ data: JSON.stringify(frame) });
  }

  /** @internal ends the socket. */
  fail(code: number, reason: string, notify = true): void {
    if (this.readyState === CLOSED) return;
    this.readyState = CLOSED;
    clearInterval(this.heartbeat);
    if (this.lease) {
      // The client leaves: end the lease's presence now rather than when it lapses.
      const headers = { ...this.headers(), 'content-type': 'application/json' };
      for (const channel of this.tracked.keys()) {
        const body = JSON.stringify({ lease: this.lease, channel });
        fetch(`${this.base}/v1/presence/untrack`, { method: 'POST', headers, body }).catch(() => {});
      }
    }
    for (const r of this.runners.values()) r.stop();
    this.runners.clear();
    if (notify) this.onclose?.({ code, reason });
  }

  /** @internal the channels of one kind, with their pending subscribe refs. */
  group(hint: boolean): Array<[string, Wanted]> {
    return [...this.wanted].filter(([, w]) => w.hint === hint);
  }

  /** @internal a refused subscription: drop the channels whose subscribe is pending, then carry on. */
  refusePending(hint: boolean, error: { code: string; message: string }): void {
    const pending = this.group(hint).some(([, w]) => w.ref !== undefined);
    for (const [name, w] of this.group(hint)) {
      if (pending && w.ref === undefined) continue;
      this.wanted.delete(name);
      // Nothing new was asked for: access to the group itself ended.
      if (pending) this.deliver({ type: 'reply', ref: w.ref, ok: false, error });
      else this.deliver({ type: 'unsubscribed', channel: name, reason: error });
    }
    this.restart(hint);
  }

  /** (Re)starts the runner of one kind with the current channel set, from where it was. */
  private restart(hint: boolean): void {
    const old = this.runners.get(hint);
    old?.stop();
    this.runners.delete(hint);
    if (this.readyState !== OPEN || this.group(hint).length === 0) return;
    const resumes = this.group(hint).map(([, w]) => w.resume).filter((c): c is string => !!c);
    // One cursor for the group: the oldest a channel asked for (channels drop what they already had).
    const from = old?.cursor ?? (resumes.length ? resumes.sort()[0] : undefined);
    const runner = new Runner(this, hint, from, old?.failures ?? 0);
    this.runners.set(hint, runner);
    void runner.run();
  }

  /** An HTTP request answered as a v1 reply. */
  private async call(ref: number | undefined, method: string, path: string, body: unknown, ok: (b: any) => Frame): Promise<void> {
    try {
      const headers: Record<string, string> = { ...this.headers() };
      if (body !== undefined) headers['content-type'] = 'application/json';
      const res = await fetch(`${this.base}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
      const json: any = await res.json().catch(() => ({}));
      if (ref === undefined) return;
      if (res.ok) this.deliver({ type: 'reply', ref, ok: true, ...ok(json) });
      else this.deliver({ type: 'reply', ref, ok: false, error: json.error ?? { code: 'INTERNAL_ERROR', message: `HTTP ${res.status}` } });
    } catch (e) {
      if (ref !== undefined) this.deliver(refusal(ref, 'REALTIME_CONNECTION_LOST', `request failed: ${e instanceof Error ? e.message : String(e)}`));
    }
  }
}

function refusal(ref: unknown, code: string, message: string): Frame {
  return { type: 'reply', ref, ok: false, error: { code, message } };
}

/** One stream or poll loop for one kind of subscription. */
class Runner {
  private readonly abort = new AbortController();
  private stopped = false;
  /** The SSE stream's id (from its `ready` event), for presence requests. */
  private liveId: string | undefined;
  private readyWaiters: Array<(id: string | undefined) => void> = [];

  constructor(
    private readonly socket: HttpSocket,
    private readonly hint: boolean,
    /** Where the group is: the last event id (SSE) or the last answer's cursor (poll). */
    public cursor: string | undefined,
    public failures: number,
  ) {}

  stop(): void {
    this.stopped = true;
    this.abort.abort();
    this.readyWaiters.splice(0).forEach((w) => w(undefined));
  }

  /** The live stream's id, once it is ready (undefined if it stops first or takes over 10 s). */
  streamId(): Promise<string | undefined> {
    if (this.liveId || this.stopped) return Promise.resolve(this.liveId);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(undefined), 10_000);
      this.readyWaiters.push((id) => {
        clearTimeout(timer);
        resolve(id);
      });
    });
  }

  async run(): Promise<void> {
    const mode = this.socket.transport;
    while (!this.stopped) {
      let delivered = false;
      try {
        delivered = mode === 'sse' ? await this.stream() : await this.poll();
      } catch (e) {
        if (this.stopped) return;
        if (e instanceof Refused) {
          if (e.status === 401) return this.socket.fail(4001, e.error.message);
          return this.socket.refusePending(this.hint, e.error);
        }
      }
      if (this.stopped) return;
      this.failures = delivered ? 0 : this.failures + 1;
      if (this.failures >= MAX_FAILURES) return this.socket.fail(1006, `${mode} failed ${this.failures} times in a row`);
      await new Promise((r) => setTimeout(r, delivered ? 0 : 250 * 2 ** this.failures));
    }
  }

  private url(path: string, extra: Record<string, string | undefined>): string {
    const q = new URLSearchParams();
    for (const [name] of this.socket.group(this.hint)) q.append('channel', name);
    if (this.hint) q.set('hint', '1');
    for (const [k, v] of Object.entries(extra)) if (v !== undefined) q.set(k, v);
    return `${path}?${q}`;
  }

  private async fetchOk(path: string, headers: Record<string, string> = {}): Promise<Response> {
    const res = await fetch(`${this.socket.base}${path}`, { headers: { ...this.socket.headers(), ...headers }, signal: this.abort.signal });
    if (res.status !== 200) {
      const body: any = await res.json().catch(() => ({}));
      throw new Refused(res.status, body.error ?? { code: 'INTERNAL_ERROR', message: `HTTP ${res.status}` });
    }
    return res;
  }

  /** Pending subscribe refs are answered by the first `subscribed` (SSE) or answer (poll). */
  private reply(channel: string, frame: Frame): void {
    const w = this.socket.group(this.hint).find(([name]) => name === channel)?.[1];
    if (!w || w.ref === undefined) return;
    const ref = w.ref;
    w.ref = undefined;
    this.socket.deliver({ ...frame, type: 'reply', ref, channel });
  }

  /** One SSE stream until it ends; true if it delivered anything. */
  private async stream(): Promise<boolean> {
    this.liveId = undefined;
    const headers: Record<string, string> = { Accept: 'text/event-stream' };
    if (this.cursor) headers['Last-Event-ID'] = this.cursor;
    const res = await this.fetchOk(this.url('/v1/sse', {}), headers);
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let text = '';
    let delivered = false;
    let silence: ReturnType<typeof setTimeout> | undefined;
    const arm = () => {
      clearTimeout(silence);
      silence = setTimeout(() => this.abort.abort(), SILENCE_MS);
    };
    try {
      arm();
      for (;;) {
        const { value, done } = await reader.read();
        if (done || this.stopped) return delivered;
        arm();
        text += decoder.decode(value, { stream: true });
        let end: number;
        while ((end = text.indexOf('\n\n')) >= 0) {
          const block = text.slice(0, end);
          text = text.slice(end + 2);
          const e = parseEvent(block);
          if (!e) continue;
          if (e.id) this.cursor = e.id;
          const data = e.data ? JSON.parse(e.data) : {};
          if (e.event === 'subscribed') this.reply(data.channel, data);
          else if (e.event === 'close') {
            if (data.code === 4001) this.socket.fail(4001, data.reason);
            return true; // 1011, 1001, 4009: reconnect at once from the last id
          } else if (e.event === 'ready') {
            const changed = this.liveId !== data.stream;
            this.liveId = data.stream;
            this.readyWaiters.splice(0).forEach((w) => w(this.liveId));
            if (changed && this.liveId) this.socket.onReady(this.hint, this.liveId);
          } else this.socket.deliver(data);
          delivered = true;
        }
      }
    } finally {
      clearTimeout(silence);
      reader.cancel().catch(() => {});
    }
  }

  /** One long-poll; true if it was answered. */
  private async poll(): Promise<boolean> {
    const first = this.socket.group(this.hint).some(([, w]) => w.ref !== undefined);
    const wait = first ? '0' : '25';
    const res = await this.fetchOk(this.url('/v1/poll', { cursor: this.cursor, wait }));
    const body: any = await res.json();
    const resumed = this.cursor !== undefined;
    for (const [name] of this.socket.group(this.hint)) {
      this.reply(name, { ok: true, cursor: body.cursor, recovered: resumed ? !body.reset : undefined, presence: { members: [] } });
      if (body.reset) this.socket.deliver({ type: 'reset', channel: name, cursor: body.cursor });
    }
    for (const m of body.messages ?? []) {
      this.socket.deliver({ type: this.hint ? 'hint' : 'message', ...m, ...(first && resumed ? { replayed: true } : {}) });
    }
    this.cursor = body.cursor;
    return true;
  }
}

class Refused extends Error {
  constructor(
    readonly status: number,
    readonly error: { code: string; message: string },
  ) {
    super(error.message);
  }
}

/** One SSE block: its id, event name and data (comments and `retry:` blocks give null). */
function parseEvent(block: string): { id?: string; event: string; data: string } | null {
  let id: string | undefined;
  let event = 'message';
  const data: string[] = [];
  for (const line of block.split('\n')) {
    if (line.startsWith(':')) continue;
    const at = line.indexOf(':');
    const field = at < 0 ? line : line.slice(0, at);
    let value = at < 0 ? '' : line.slice(at + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'id') id = value;
    else if (field === 'event') event = value;
    else if (field === 'data') data.push(value);
  }
  if (!data.length && !id) return null;
  return { id, event, data: data.join('\n') };
}
