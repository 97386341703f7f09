/**
 * One channel of a client: its listeners, its subscription state (wanted / joined), the cursor
 * of the last message delivered (used to resume after a reconnect without gap or duplicate), and
 * its presence members. The socket and requests belong to the client; a channel asks the client
 * to send frames and the client hands it the frames of its name.
 */

import { RealtimeError } from './errors.js';
import type {
  EventMap,
  HistoryOptions,
  HistoryPage,
  Message,
  PresenceEvent,
  PresenceMember,
  PublishOptions,
  PublishResult,
  SubscribeOptions,
  SubscribeResult,
  SystemEvents,
} from './types.js';

/** What a pull answers: the stored messages after the cursor, and where the next pull starts. */
export interface Pulled {
  messages: any[];
  cursor: string;
  more: boolean;
  reset: boolean;
}

/** What a channel needs from its client (implemented by `RealtimeClient`). */
export interface ChannelHost {
  /** Sends a subscribe frame now, or once the socket is open. */
  join(channel: Channel<any, any>): void;
  /** A request that waits for its reply; queued while offline when `queue` is true. */
  request(frame: Record<string, unknown>, opts?: { queue?: boolean; ack?: boolean }): Promise<any>;
  /** True when the socket is open. */
  isConnected(): boolean;
  /** Reports an error nobody awaits (e.g. an `unsubscribed` frame). */
  reportError(error: RealtimeError): void;
  /** The stored messages of `channel` after `cursor` (over HTTP, whatever the transport). */
  pull(channel: string, cursor: string | undefined, limit?: number): Promise<Pulled>;
}

type Listener = (arg: any) => void;
type Deferred<T> = { resolve: (v: T) => void; reject: (e: unknown) => void };

/** A channel: `client.channel(name)`. `E` maps event names to payload types, `S` is the presence state. */
export class Channel<E extends EventMap = EventMap, S = Record<string, unknown>> {
  readonly name: string;
  private readonly host: ChannelHost;
  private readonly listeners = new Map<string, Set<Listener>>();
  /** The app wants this channel subscribed (restored after every reconnect). */
  private wanted = false;
  /** The server confirmed the subscription on the current socket. */
  private joined = false;
  /** A subscribe frame is out on the current socket. */
  private joining = false;
  private lastReply: SubscribeResult<S> | null = null;
  private subscribeWaiters: Array<(r: SubscribeResult<S>) => void> = [];
  /** Cursor of the last persisted message delivered (or the subscribe position): resume point. */
  private cursorValue: string | undefined;
  /** A hint subscription (`subscribe({hint: true})`). */
  private hintMode = false;
  /** Where the next `pull()` starts. */
  private pulledCursor: string | undefined;
  private readonly members = new Map<string, PresenceMember<S>>();
  /** State tracked by the app: sent again after every resubscribe. */
  private trackState: S | null = null;
  private trackWaiters: Deferred<void>[] = [];

  /** @internal use `client.channel(name)` */
  constructor(name: string, host: ChannelHost) {
    this.name = name;
    this.host = host;
  }

  /** The resume point: cursor of the last persisted message delivered, else the subscribe position. */
  get cursor(): string | undefined {
    return this.cursorValue;
  }

  /** `joined` (confirmed on the open socket), `joining` (wanted, waiting for the server) or `closed`. */
  get state(): 'joined' | 'joining' | 'closed' {
    if (this.wanted && this.joined) return 'joined';
    return this.wanted ? 'joining' : 'closed';
  }

  /** Listens to an event: a message event name, `'*'` (every message), `presence:*`, `reset`, `dropped` or `unsubscribed`. */
  on<K extends keyof SystemEvents<S>>(event: K, cb: (e: SystemEvents<S>[K]) => void): this;
  on<K extends keyof E & string>(event: K, cb: (msg: Message<E[K], K>) => void): this;
  on(event: '*', cb: (msg: Message<E[keyof E], keyof E & string>) => void): this;
  on(event: string, cb: Listener): this {
    let set = this.listeners.get(event);
    if (!set) this.listeners.set(event, (set = new Set()));
    set.add(cb);
    return this;
  }

  /** Removes one listener, or every listener of `event` when `cb` is omitted. */
  off(event: string, cb?: (...args: any[]) => void): this {
    if (!cb) this.listeners.delete(event);
    else this.listeners.get(event)?.delete(cb);
    return this;
  }

  /**
   * Subscribes (connecting the client if needed). Resolves with the server's reply:
   * `{ok: true, cursor, presence: {members}}` or `{ok: false, error}` (a `RealtimeError` with the
   * server's code). Never rejects. Once subscribed, the channel is restored after every reconnect.
   */
  subscribe(opts: SubscribeOptions = {}): Promise<SubscribeResult<S>> {
    if (this.wanted && this.joined && this.lastReply && this.hintMode === !!opts.hint) return Promise.resolve(this.lastReply);
    this.hintMode = !!opts.hint;
    this.wanted = true;
    const p = new Promise<SubscribeResult<S>>((resolve) => this.subscribeWaiters.push(resolve));
    if (!this.joining) this.host.join(this);
    return p;
  }

  /** Ends the subscription (and presence) on the server and forgets the resume point. */
  async unsubscribe(): Promise<void> {
    const wasJoined = this.joined && this.host.isConnected();
    this.wanted = false;
    this.joined = false;
    this.lastReply = null;
    this.trackState = null;
    this.cursorValue = undefined;
    this.pulledCursor = undefined;
    this.members.clear();
    const gone = new RealtimeError('REALTIME_NOT_SUBSCRIBED', `unsubscribed from '${this.name}'`);
    this.rejectTrackWaiters(gone);
    const waiters = this.subscribeWaiters;
    this.subscribeWaiters = [];
    waiters.forEach((w) => w({ ok: false, error: gone }));
    if (!wasJoined) return;
    try {
      await this.host.request({ type: 'unsubscribe', channel: this.name }, { queue: false });
    } catch (e) {
      // Already gone on the server (revoked, or the socket dropped): the outcome is the same.
      if (!(e instanceof RealtimeError) || !['REALTIME_NOT_SUBSCRIBED', 'REALTIME_CONNECTION_LOST'].includes(String(e.code))) throw e;
    }
  }

  /**
   * Publishes a message. Resolves with `{id, cursor}` (persisted) or `{}` (ephemeral); rejects
   * with a `RealtimeError` carrying the server's code. While offline it is queued (bounded).
   */
  async publish<K extends keyof E & string>(event: K, payload: E[K], opts: PublishOptions = {}): Promise<PublishResult> {
    const frame = { type: 'publish', channel: this.name, event, payload, persist: opts.persist ?? true };
    const reply = await this.host.request(frame, { queue: true, ack: opts.ack ?? true });
    const result: PublishResult = {};
    if (reply?.id) result.id = reply.id;
    if (reply?.cursor) result.cursor = reply.cursor;
    return result;
  }

  /**
   * Shares this connection's presence state on the channel (needs a subscription). The state is
   * tracked again after every reconnect.
   */
  track(state: S): Promise<void> {
    if (!this.wanted) {
      return Promise.reject(new RealtimeError('REALTIME_NOT_SUBSCRIBED', `subscribe to '${this.name}' before track()`));
    }
    this.trackState = state;
    if (this.joined && this.host.isConnected()) return this.sendTrack(state);
    return new Promise<void>((resolve, reject) => this.trackWaiters.push({ resolve, reject }));
  }

  /** Stops sharing presence on the channel. */
  async untrack(): Promise<void> {
    this.trackState = null;
    this.rejectTrackWaiters(new RealtimeError('REALTIME_NOT_SUBSCRIBED', 'untracked before the track was sent'));
    if (this.joined && this.host.isConnected()) {
      await this.host.request({ type: 'untrack', channel: this.name }, { queue: false });
    }
  }

  /** The current presence members (one per `presence_id`). */
  presence(): PresenceMember<S>[] {
    return [...this.members.values()];
  }

  /** Stored messages, newest first; page with `before` (a cursor or message id). */
  /**
   * For a hint subscription: the stored messages after the last pulled one (the first pull starts
   * at the subscription's position), in full and in order, at most `limit` (the relay's default
   * is 100). Call again while it returns a full page. A cursor outside the replay window emits
   * `reset` and returns nothing: refetch your state.
   */
  async pull(opts: { limit?: number } = {}): Promise<Message<E[keyof E], keyof E & string>[]> {
    const got = await this.host.pull(this.name, this.pulledCursor, opts.limit);
    this.pulledCursor = got.cursor;
    if (got.reset) this.emit('reset', { channel: this.name, cursor: got.cursor });
    return got.messages;
  }

  async history(opts: HistoryOptions = {}): Promise<Message<E[keyof E], keyof E & string>[]> {
    return (await this.historyPage(opts)).messages;
  }

  /**
   * Like `history`, with `more: true` when the relay cut the page short of `limit` (its replies
   * are bounded in bytes too): ask again with `before` set to the last message's cursor.
   */
  async historyPage(opts: HistoryOptions = {}): Promise<HistoryPage<Message<E[keyof E], keyof E & string>>> {
    const frame: Record<string, unknown> = { type: 'history', channel: this.name };
    if (opts.limit !== undefined) frame.limit = opts.limit;
    if (opts.before !== undefined) frame.before = opts.before;
    const reply = await this.host.request(frame, { queue: true });
    return { messages: reply.messages ?? [], more: reply.more === true };
  }

  // ---- called by the client ----

  /** @internal the subscribe frame to send on the current socket. */
  _subscribeFrame(): Record<string, unknown> {
    this.joining = true;
    const frame: Record<string, unknown> = { type: 'subscribe', channel: this.name };
    if (this.cursorValue) frame.resume = { cursor: this.cursorValue };
    if (this.hintMode) frame.hint = true;
    return frame;
  }

  /** @internal */
  _wanted(): boolean {
    return this.wanted;
  }

  /** @internal the reply to our subscribe frame. */
  _onSubscribeReply(reply: any): void {
    this.joining = false;
    if (!this.wanted) {
      // unsubscribe() came while the subscribe was in flight: end it on the server too.
      if (reply.ok) this.host.request({ type: 'unsubscribe', channel: this.name }, { queue: false }).catch(() => {});
      return;
    }
    let result: SubscribeResult<S>;
    if (reply.ok) {
      this.joined = true;
      if (!this.cursorValue && typeof reply.cursor === 'string') this.cursorValue = reply.cursor;
      if (this.hintMode && !this.pulledCursor && typeof reply.cursor === 'string') this.pulledCursor = reply.cursor;
      if (reply.presence && Array.isArray(reply.presence.members)) this.applySnapshot(reply.presence.members);
      result = {
        ok: true,
        channel: this.name,
        cursor: reply.cursor,
        recovered: reply.recovered,
        presence: { members: this.presence() },
      };
      if (this.trackState !== null) this.retrack(this.trackState);
    } else {
      this.wanted = false;
      const error = RealtimeError.fromServer(reply.error);
      result = { ok: false, error };
      this.rejectTrackWaiters(error);
    }
    this.lastReply = result;
    const waiters = this.subscribeWaiters;
    this.subscribeWaiters = [];
    waiters.forEach((w) => w(result));
    if (!result.ok && waiters.length === 0) {
      // A resubscribe after a reconnect was refused (e.g. access revoked meanwhile).
      this.members.clear();
      this.emit('unsubscribed', result.error);
      this.host.reportError(result.error);
    }
  }

  /** @internal the socket closed: the subscription is restored (with resume) on the next one. */
  _onSocketLost(): void {
    this.joined = false;
    this.joining = false;
  }

  /** @internal a frame addressed to this channel. */
  _onFrame(frame: any): void {
    if (!this.wanted) return;
    switch (frame.type) {
      case 'message': {
        const cursor: string | undefined = frame.cursor ?? undefined;
        if (cursor) {
          // Cursors are fixed-width hex: string order is commit order. Anything at or below the
          // resume point was already delivered (a replay overlapping the live stream).
          if (this.cursorValue && cursor <= this.cursorValue) return;
          this.cursorValue = cursor;
        }
        const { type: _type, ...msg } = frame;
        this.emit(frame.event, msg);
        this.emit('*', msg);
        break;
      }
      case 'hint': {
        const cursor: string | undefined = frame.cursor ?? undefined;
        if (cursor) {
          if (this.cursorValue && cursor <= this.cursorValue) return;
          this.cursorValue = cursor;
        }
        const { type: _type, ...hint } = frame;
        this.emit('hint', hint);
        break;
      }
      case 'presence':
        // `sync`: presence changes were missed while this subscriber caught up; these are the
        // members now (the difference is emitted as joins, updates and leaves).
        if (frame.event === 'sync') this.applySnapshot(Array.isArray(frame.members) ? frame.members : []);
        else this.applyPresence(frame.event, frame.member);
        break;
      case 'dropped':
        // Ephemeral messages missed while this subscriber fell behind (stored ones are caught up).
        this.emit('dropped', { channel: this.name, count: Number(frame.count) || 0 });
        break;
      case 'reset':
        if (typeof frame.cursor === 'string') this.cursorValue = frame.cursor;
        this.emit('reset', { channel: this.name, cursor: frame.cursor ?? undefined });
        break;
      case 'unsubscribed': {
        const error = RealtimeError.fromServer(frame.reason);
        this.wanted = false;
        this.joined = false;
        this.lastReply = null;
        this.trackState = null;
        this.members.clear();
        this.emit('unsubscribed', error);
        this.host.reportError(error);
        break;
      }
    }
  }

  // ---- internals ----

  private emit(event: string, arg: unknown): void {
    const set = this.listeners.get(event);
    if (!set) return;
    for (const cb of [...set]) {
      try {
        cb(arg);
      } catch (e) {
        // A throwing listener must not break delivery to the others.
        setTimeout(() => {
          throw e;
        });
      }
    }
  }

  private sendTrack(state: S): Promise<void> {
    return this.host.request({ type: 'track', channel: this.name, state }, { queue: false }).then(
      () => undefined,
      (e) => {
        if (e instanceof RealtimeError && e.code !== 'REALTIME_CONNECTION_LOST') this.trackState = null;
        throw e;
      },
    );
  }

  private retrack(state: S): void {
    const waiters = this.trackWaiters;
    this.trackWaiters = [];
    this.sendTrack(state).then(
      () => waiters.forEach((w) => w.resolve()),
      (e) => {
        if (waiters.length) waiters.forEach((w) => w.reject(e));
        else this.host.reportError(e instanceof RealtimeError ? e : new RealtimeError('INTERNAL_ERROR', String(e)));
      },
    );
  }

  private rejectTrackWaiters(e: RealtimeError): void {
    const waiters = this.trackWaiters;
    this.trackWaiters = [];
    waiters.forEach((w) => w.reject(e));
  }

  private presenceEvent(event: PresenceEvent<S>['event'], member: PresenceMember<S>): void {
    this.emit(`presence:${event}`, { event, member, members: this.presence() });
  }

  private applyPresence(event: string, member: PresenceMember<S> | undefined): void {
    if (!member || typeof member.presence_id !== 'string') return;
    if (event === 'leave') {
      if (this.members.delete(member.presence_id)) this.presenceEvent('leave', member);
      return;
    }
    const known = this.members.has(member.presence_id);
    this.members.set(member.presence_id, member);
    this.presenceEvent(known ? 'update' : 'join', member);
  }

  /** Diffs a snapshot (subscribe reply) against the members known, emitting what was missed. */
  private applySnapshot(list: PresenceMember<S>[]): void {
    const next = new Map(list.filter((m) => m && typeof m.presence_id === 'string').map((m) => [m.presence_id, m]));
    for (const [id, old] of [...this.members]) {
      if (!next.has(id)) {
        this.members.delete(id);
        this.presenceEvent('leave', old);
      }
    }
    for (const [id, m] of next) {
      const old = this.members.get(id);
      this.members.set(id, m);
      if (!old) this.presenceEvent('join', m);
      else if (JSON.stringify(old.state) !== JSON.stringify(m.state) || old.user_id !== m.user_id) this.presenceEvent('update', m);
    }
  }
}
