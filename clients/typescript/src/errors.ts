/**
 * Errors of the SDK. Every failure the server reports arrives as a {@link RealtimeError} whose
 * `code` is the server's code (`REALTIME_UNAUTHORIZED`, …); failures found on the client side use
 * the client codes below.
 */

/** Codes the relay sends in `reply` and `unsubscribed` frames (wire protocol v1). */
export type ServerErrorCode =
  | 'REALTIME_UNAUTHORIZED'
  | 'REALTIME_NOT_FOUND'
  | 'REALTIME_INVALID_REQUEST'
  | 'REALTIME_PAYLOAD_TOO_LARGE'
  | 'REALTIME_RATE_LIMITED'
  | 'REALTIME_NOT_SUBSCRIBED'
  | 'REALTIME_PRESENCE_LIMIT'
  | 'INTERNAL_ERROR';

/** Codes raised by the client itself. */
export type ClientErrorCode =
  /** No reply within `requestTimeoutMs`. */
  | 'REALTIME_TIMEOUT'
  /** The socket closed after the request was sent and before its reply: it may or may not have been applied. */
  | 'REALTIME_CONNECTION_LOST'
  /** The offline send queue is full (`maxQueue`). */
  | 'REALTIME_QUEUE_FULL'
  /** The client is offline and `queueOffline` is false. */
  | 'REALTIME_OFFLINE'
  /** `disconnect()` was called: queued and pending requests are rejected. */
  | 'REALTIME_DISCONNECTED'
  /** No WebSocket implementation: pass `WebSocket` (e.g. from the `ws` package) under Node. */
  | 'REALTIME_NO_WEBSOCKET';

export type ErrorCode = ServerErrorCode | ClientErrorCode;

/** An error with a machine-readable `code` (the server's code when the server refused). */
export class RealtimeError extends Error {
  readonly code: ErrorCode | string;
  constructor(code: ErrorCode | string, message: string) {
    super(message);
    this.name = 'RealtimeError';
    this.code = code;
  }

  /** Builds the error of a server `{code, message}` body. */
  static fromServer(body: { code?: string; message?: string } | undefined): RealtimeError {
    return new RealtimeError(body?.code ?? 'INTERNAL_ERROR', body?.message ?? 'the server refused the request');
  }
}
