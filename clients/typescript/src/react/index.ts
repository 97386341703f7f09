/**
 * `@realtime/client/react`: React bindings. `RealtimeProvider` puts a client in context; the
 * hooks subscribe while mounted (reference-counted per channel, so two components on one
 * channel share one subscription) and re-render on status, messages and presence.
 */

import {
  createContext,
  createElement,
  useCallback,
  useContext,
  useEffect,
  useMemo,
  useRef,
  useState,
  useSyncExternalStore,
  type ReactNode,
} from 'react';
import type { Channel } from '../channel.js';
import type { RealtimeClient } from '../client.js';
import { RealtimeError } from '../errors.js';
import type { EventMap, Message, PresenceMember, PublishOptions, PublishResult, Status, SubscribeResult } from '../types.js';

const ClientContext = createContext<RealtimeClient | null>(null);

/** Makes `client` available to the hooks below it. */
export function RealtimeProvider(props: { client: RealtimeClient; children?: ReactNode }) {
  return createElement(ClientContext.Provider, { value: props.client }, props.children);
}

/** The client of the nearest `RealtimeProvider`. */
export function useRealtime(): RealtimeClient {
  const client = useContext(ClientContext);
  if (!client) throw new Error('useRealtime: wrap the component in <RealtimeProvider client={createClient(...)}>');
  return client;
}

/** The connection status; re-renders on every change. */
export function useRealtimeStatus(): Status {
  const client = useRealtime();
  const subscribe = useCallback((cb: () => void) => client.onStatusChange(cb), [client]);
  return useSyncExternalStore(subscribe, () => client.status, () => client.status);
}

const holders = new WeakMap<Channel<any, any>, number>();

function retain(ch: Channel<any, any>): void {
  holders.set(ch, (holders.get(ch) ?? 0) + 1);
}

/** Drops one hold; unsubscribes when it was the last. */
function release(ch: Channel<any, any>): void {
  const n = (holders.get(ch) ?? 1) - 1;
  if (n > 0) {
    holders.set(ch, n);
    return;
  }
  holders.delete(ch);
  ch.unsubscribe().catch(() => {});
}

/** Handlers by event name: message events, `'*'`, `presence:*`, `reset`, `unsubscribed`. */
export type ChannelHandlers = Record<string, (arg: any) => void>;

export interface UseChannelResult<E extends EventMap, S> {
  channel: Channel<E, S>;
  /** The subscribe reply, `null` while waiting. */
  reply: SubscribeResult<S> | null;
  /** Why the subscription failed or ended. */
  error: RealtimeError | null;
}

/**
 * Subscribes to `name` while mounted and calls `handlers[event]` for its events. Handlers may
 * change on every render without resubscribing.
 */
export function useChannel<E extends EventMap = EventMap, S = Record<string, unknown>>(
  name: string,
  handlers: ChannelHandlers = {},
): UseChannelResult<E, S> {
  const client = useRealtime();
  const channel = useMemo(() => client.channel<E, S>(name), [client, name]);
  const handlersRef = useRef(handlers);
  handlersRef.current = handlers;
  const [reply, setReply] = useState<SubscribeResult<S> | null>(null);
  const [error, setError] = useState<RealtimeError | null>(null);

  const eventsKey = Object.keys(handlers).sort().join('\u0000');
  useEffect(() => {
    const events = eventsKey ? eventsKey.split('\u0000') : [];
    const fns = events.map((event) => [event, (arg: unknown) => handlersRef.current[event]?.(arg)] as const);
    fns.forEach(([event, fn]) => channel.on(event as any, fn));
    return () => fns.forEach(([event, fn]) => channel.off(event, fn));
  }, [channel, eventsKey]);

  useEffect(() => {
    let live = true;
    setReply(null);
    setError(null);
    retain(channel);
    const onEnded = (e: RealtimeError) => live && setError(e);
    channel.on('unsubscribed', onEnded);
    channel.subscribe().then((r) => {
      if (!live) return;
      setReply(r);
      if (!r.ok) setError(r.error);
    });
    return () => {
      live = false;
      channel.off('unsubscribed', onEnded);
      release(channel);
    };
  }, [channel]);

  return { channel, reply, error };
}

/** TanStack-style: calls `cb` for every `event` message of `name` while mounted. */
export function useSubscribe<P = unknown>(name: string, event: string, cb: (msg: Message<P>) => void): UseChannelResult<EventMap, Record<string, unknown>> {
  return useChannel(name, { [event]: cb });
}

/** A stable `publish(event, payload, opts)` for channel `name` (no subscription needed). */
export function usePublish<E extends EventMap = EventMap>(name: string) {
  const client = useRealtime();
  return useCallback(
    <K extends keyof E & string>(event: K, payload: E[K], opts?: PublishOptions): Promise<PublishResult> =>
      client.channel<E>(name).publish(event, payload, opts),
    [client, name],
  );
}

export interface UsePresenceResult<S> {
  /** Every member, this connection's own included. */
  members: PresenceMember<S>[];
  /** Every member but this user (by the token's `sub`). */
  others: PresenceMember<S>[];
  /** Replaces (or, given a function, derives) this connection's state and tracks it. */
  update: (next: S | ((prev: S) => S)) => Promise<void>;
  /** Why tracking or the subscription failed. */
  error: RealtimeError | null;
}

/** Joins the presence of `name` with `initial` state while mounted. */
export function usePresence<S = Record<string, unknown>>(name: string, initial: S): UsePresenceResult<S> {
  const client = useRealtime();
  const { channel, error: channelError } = useChannel<EventMap, S>(name);
  const stateRef = useRef(initial);
  const [members, setMembers] = useState<PresenceMember<S>[]>(() => channel.presence());
  const [error, setError] = useState<RealtimeError | null>(null);

  useEffect(() => {
    const refresh = () => setMembers(channel.presence());
    const events = ['presence:join', 'presence:update', 'presence:leave'] as const;
    events.forEach((e) => channel.on(e, refresh));
    refresh();
    return () => events.forEach((e) => channel.off(e, refresh));
  }, [channel]);

  useEffect(() => {
    // useChannel's effect above has already made the channel wanted: track waits for the join.
    let live = true;
    channel.track(stateRef.current).catch((e) => live && setError(asError(e)));
    return () => {
      live = false;
      // When this was the last holder, useChannel's cleanup unsubscribed, which ends presence too.
      if (channel.state !== 'closed') channel.untrack().catch(() => {});
    };
  }, [channel]);

  const update = useCallback(
    (next: S | ((prev: S) => S)) => {
      stateRef.current = typeof next === 'function' ? (next as (prev: S) => S)(stateRef.current) : next;
      return channel.track(stateRef.current).catch((e) => {
        setError(asError(e));
        throw e;
      });
    },
    [channel],
  );

  const self = client.userId;
  const others = useMemo(() => members.filter((m) => m.presence_id !== self), [members, self]);
  return { members, others, update, error: error ?? channelError };
}

function asError(e: unknown): RealtimeError {
  return e instanceof RealtimeError ? e : new RealtimeError('INTERNAL_ERROR', String(e));
}
