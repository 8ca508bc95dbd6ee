/**
 * The WebSocket the client drives: the browser's own (and Node >= 22's global one) fit as they are;
 * Node 20 passes the `ws` adapter from `blockjob-gateway/client/node`. Also how a failed connection's
 * cause is put into words.
 */

/** The subset of the WebSocket API the client uses. */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  /** The node adapter passes the system error (with its `code`); a browser passes a bare Event. */
  onerror: ((ev: unknown) => void) | null;
}

export type WebSocketFactory = (url: string, protocols: string[]) => WebSocketLike;

/** The platform's WebSocket, when there is one. */
export function globalWebSocketFactory(): WebSocketFactory | undefined {
  const Ctor = (globalThis as { WebSocket?: new (url: string, protocols: string[]) => WebSocketLike }).WebSocket;
  return Ctor ? (url, protocols) => new Ctor(url, protocols) : undefined;
}

const SYSTEM_ERRORS: Readonly<Record<string, string>> = {
  ECONNREFUSED: 'connection refused',
  ENOTFOUND: 'host not found',
  EAI_AGAIN: 'host name lookup failed',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  ETIMEDOUT: 'timed out',
  ECONNRESET: 'connection reset',
  EPIPE: 'connection closed by the peer',
};

/** One line for why a connection attempt failed: `connection refused (ECONNREFUSED)`. */
export function describeCause(cause: unknown, close?: { code: number; reason: string }): string {
  const error = firstError(cause);
  if (error) {
    const code = typeof error.code === 'string' ? error.code : undefined;
    if (code && SYSTEM_ERRORS[code]) return `${SYSTEM_ERRORS[code]} (${code})`;
    if (typeof error.message === 'string' && error.message) return error.message;
  }
  if (close && close.code !== 1006) return `closed with ${close.code}${close.reason ? ` ${close.reason}` : ''}`;
  if (close?.reason) return close.reason;
  // A browser hides the cause from scripts on purpose.
  return 'the connection failed (refused, unreachable, or an HTTP error at the upgrade; a browser does not say which)';
}

function firstError(cause: unknown): { code?: unknown; message?: unknown } | undefined {
  if (typeof cause !== 'object' || cause === null) return undefined;
  const c = cause as { code?: unknown; message?: unknown; errors?: unknown; error?: unknown };
  // Node's happy-eyeballs connect fails with an AggregateError of each address's error.
  if (c.code === undefined && Array.isArray(c.errors) && c.errors.length > 0) return firstError(c.errors[0]);
  if (c.code === undefined && c.error !== undefined) return firstError(c.error);
  return c.code !== undefined || typeof c.message === 'string' ? c : undefined;
}
