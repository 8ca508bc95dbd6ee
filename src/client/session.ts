/**
 * One logical connection to the gateway over many sockets: it connects to the URLs in turn (failover),
 * counts an attempt as failed when the socket closes or no `welcome` arrives within the connect
 * timeout, reconnects with jittered backoff as the protocol's close-code policy says, and notices a
 * silent network with application pings. It knows nothing of subscriptions; GatewayClient does.
 */
import type { ServerMessage, WelcomeMessage } from '../generated/schema-types.js';
import { clientSubprotocols, closeAction, CloseCode, WS_PATH } from '../protocol/codes.js';
import { reconnectDelayMs, resolveReconnectPolicy, type ReconnectPolicy } from '../backoff.js';
import { ClientConnectError, ClientEndedError, ClientRefusedError, type ClientError } from './errors.js';
import { describeCause, type WebSocketFactory, type WebSocketLike } from './socket.js';

export type ConnectionStatus =
  | { state: 'connecting'; url: string; attempt: number }
  | { state: 'open'; url: string; welcome: WelcomeMessage }
  | {
      state: 'reconnecting';
      /** The URL that failed or dropped, and the one tried next (another one on failover). */
      url: string;
      nextUrl: string;
      retryInMs: number;
      /** Failed attempts since the last successful connection. */
      attempt: number;
      /** True when an open connection dropped; false when an attempt failed. */
      wasOpen: boolean;
      /** Why: the attempt's error, or the drop's close code. */
      error?: ClientError;
      close?: { code: number; reason: string };
    }
  | { state: 'closed'; error?: ClientError };

export interface SessionOptions {
  urls: readonly string[];
  socket: WebSocketFactory;
  token: () => string | undefined;
  connectTimeoutMs: number;
  backoff: ReconnectPolicy;
}

export interface SessionHandlers {
  message(message: ServerMessage): void;
  status(status: ConnectionStatus): void;
  /** The socket went away (the client fails what was in flight on it). */
  down(): void;
  /** A refusal the close-code policy says not to retry; the session has stopped. */
  fatal(error: ClientError): void;
}

/** The close code the client uses when the gateway stops answering pings (private range). */
const NO_PONG_CLOSE = 4000;

/** `ws://host:port` or `ws://host:port/v1/ws`, with http(s) mapped to ws(s). */
export function endpoint(url: string): string {
  const base = url.replace(/^http(s?):/, 'ws$1:').replace(/\/+$/, '');
  return base.endsWith(WS_PATH) ? base : base + WS_PATH;
}

export class Session {
  private socket: WebSocketLike | undefined;
  private welcomed = false;
  private stopped = true;
  private index = 0;
  private failures = 0;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private connectTimer: ReturnType<typeof setTimeout> | undefined;
  private heartbeatTimer: ReturnType<typeof setInterval> | undefined;
  private lastHeard = 0;
  private pings = 0;
  private readonly urls: string[];
  private readonly policy;

  constructor(
    private readonly options: SessionOptions,
    private readonly on: SessionHandlers,
  ) {
    this.urls = options.urls.map(endpoint);
    this.policy = resolveReconnectPolicy(options.backoff);
  }

  get open(): boolean {
    return this.welcomed && this.socket?.readyState === 1;
  }

  get url(): string {
    return this.urls[this.index]!;
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.failures = 0;
    this.connect();
  }

  /** Sends when open; false otherwise (the caller decides whether that matters). */
  send(message: object): boolean {
    if (!this.open) return false;
    this.socket!.send(JSON.stringify(message));
    return true;
  }

  close(error?: ClientError): void {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.retryTimer);
    this.drop(1000, 'client closed');
    this.on.status(error ? { state: 'closed', error } : { state: 'closed' });
  }

  private connect(): void {
    const url = this.url;
    const attempt = this.failures + 1;
    this.on.status({ state: 'connecting', url, attempt });
    let firstError: unknown;
    let socket: WebSocketLike;
    try {
      socket = this.options.socket(url, clientSubprotocols(this.options.token()));
    } catch (error) {
      // A malformed URL throws synchronously in browsers and in ws.
      this.failed(new ClientConnectError(url, describeCause(error), { cause: error }));
      return;
    }
    this.socket = socket;
    this.welcomed = false;
    this.connectTimer = setTimeout(() => {
      this.drop(1000, 'connect timeout');
      this.failed(new ClientConnectError(url, `no answer within ${this.options.connectTimeoutMs} ms (connect timeout)`, { timedOut: true }));
    }, this.options.connectTimeoutMs);
    socket.onerror = (ev) => {
      firstError ??= ev;
    };
    socket.onmessage = (ev) => {
      if (this.socket !== socket) return; // a frame read in the same chunk after we let go
      let message: ServerMessage;
      try {
        message = JSON.parse(String(ev.data)) as ServerMessage;
      } catch {
        return; // the gateway only sends JSON; there is nothing to do with a broken frame
      }
      this.lastHeard = Date.now();
      if (!this.welcomed) {
        if (message.type !== 'welcome') return;
        this.welcomed = true;
        this.failures = 0;
        clearTimeout(this.connectTimer);
        this.startHeartbeat(message.heartbeatMs);
        this.on.status({ state: 'open', url, welcome: message });
      }
      this.on.message(message);
    };
    socket.onclose = (ev) => {
      if (this.socket !== socket) return;
      const wasOpen = this.welcomed;
      this.release();
      if (this.stopped) return;
      const action = closeAction(ev.code);
      if (action === 'fix-client' || action === 'stop' || action === 'refresh-token-and-reconnect') {
        this.stopped = true;
        const error = ev.code === CloseCode.Normal ? new ClientEndedError(url, ev.reason) : new ClientRefusedError(url, ev.code, ev.reason);
        this.on.status({ state: 'closed', error });
        this.on.fatal(error);
        return;
      }
      if (wasOpen) this.reconnect({ wasOpen, close: { code: ev.code, reason: ev.reason }, long: action === 'reconnect-after-long-backoff' });
      else this.failed(new ClientConnectError(url, describeCause(firstError, ev), { cause: firstError }), action === 'reconnect-after-long-backoff');
    };
  }

  /** An attempt failed before `welcome`: try the next URL, and back off once every URL failed. */
  private failed(error: ClientError, long = false): void {
    if (this.stopped) return;
    this.failures++;
    this.reconnect({ wasOpen: false, error, long });
  }

  private reconnect(why: { wasOpen: boolean; error?: ClientError; close?: { code: number; reason: string }; long: boolean }): void {
    const url = this.url;
    if (!why.wasOpen) this.index = (this.index + 1) % this.urls.length;
    const rounds = Math.floor(this.failures / this.urls.length);
    const failover = !why.wasOpen && this.failures % this.urls.length !== 0;
    const retryInMs = why.long ? this.policy.maxDelayMs : failover ? 0 : reconnectDelayMs(Math.max(0, rounds - 1), this.policy);
    this.on.status({
      state: 'reconnecting',
      url,
      nextUrl: this.url,
      retryInMs,
      attempt: this.failures,
      wasOpen: why.wasOpen,
      ...(why.error ? { error: why.error } : {}),
      ...(why.close ? { close: why.close } : {}),
    });
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => {
      if (!this.stopped) this.connect();
    }, retryInMs);
  }

  /** Detaches from the current socket (its late events are ignored) and tells the client. */
  private release(): void {
    const had = this.socket !== undefined;
    this.socket = undefined;
    this.welcomed = false;
    clearTimeout(this.connectTimer);
    clearInterval(this.heartbeatTimer);
    if (had) this.on.down();
  }

  private drop(code: number, reason: string): void {
    const socket = this.socket;
    this.release();
    if (!socket) return;
    socket.onopen = socket.onmessage = socket.onerror = socket.onclose = null;
    try {
      socket.close(code, reason);
    } catch {
      // closing a socket that never opened may throw in some implementations; it is gone either way
    }
  }

  /** Pings when the line has been quiet for a heartbeat, and gives up on it after two. */
  private startHeartbeat(heartbeatMs: number): void {
    clearInterval(this.heartbeatTimer);
    this.heartbeatTimer = setInterval(() => {
      const quietMs = Date.now() - this.lastHeard;
      if (quietMs >= 2 * heartbeatMs) {
        this.drop(NO_PONG_CLOSE, 'no answer to ping');
        this.reconnect({ wasOpen: true, close: { code: NO_PONG_CLOSE, reason: `no message for ${quietMs} ms, not even a pong` }, long: false });
      } else if (quietMs >= heartbeatMs) {
        this.send({ type: 'ping', id: `ping-${++this.pings}` });
      }
    }, heartbeatMs);
  }
}
