/**
 * The `ws` adapter: the only file that imports `ws`. Upgrades on `path` of a node http server
 * (noServer + handleUpgrade), authenticating during the upgrade so a bad token gets HTTP 401 before
 * any WebSocket exists, then hands each socket to the transport-agnostic core.
 */
import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import { silentLogger, type Logger } from '../../log.js';
import { tokenFromRequest, type Principal, type TokenAuthenticator } from '../auth.js';
import type { GatewayCore, GatewaySocket } from '../core.js';
import { hostAllowed, originAllowed } from '../origin.js';
import { BoundedDeferral } from './deferral.js';
import { selectSubprotocol, WS_PATH } from '../../protocol/codes.js';
import { configDefaults } from '../../generated/config-defaults.js';

/** A refused upgrade's socket is destroyed after this even if its answer could not be flushed (a client that does not read). */
const REFUSED_LINGER_MS = 5_000;
/** Retry-After of an upgrade refused for too many connections (clients back off long, see closeAction(4429)). */
const TOO_MANY_RETRY_AFTER_S = 30;
/** Open connections per token when tokens are required. */
export const DEFAULT_MAX_CONNECTIONS_PER_TOKEN = configDefaults.limits.maxConnectionsPerToken;
/** Inbound WebSocket frame limit in bytes. */
export const DEFAULT_MAX_PAYLOAD = configDefaults.limits.maxPayloadBytes;
/** Ticks per heartbeat interval; each pings its share of the sockets. */
const HEARTBEAT_SLICES = 25;
/** A heartbeat tick that finds a fan-out pass running retries this often, for at most HEARTBEAT_MAX_DEFER_MS. */
const HEARTBEAT_DEFER_STEP_MS = 5;
const HEARTBEAT_MAX_DEFER_MS = 200;

export interface WsAdapterOptions {
  core: GatewayCore;
  server: Server;
  auth: TokenAuthenticator;
  /** Browser origins allowed to connect; absent = see origin.ts. Requests without Origin (non-browsers) pass. */
  allowedOrigins?: readonly string[];
  /** Host names answered (see origin.ts servedHosts); absent or null = any. */
  servedHosts?: ReadonlySet<string> | null;
  /** Open connections per token (only with a tokens file); beyond it the upgrade is refused with HTTP 429. @default 64 */
  maxConnectionsPerToken?: number;
  /** Inbound frame limit; a larger frame closes the socket with 1009. @default 65_536 */
  maxPayload?: number;
  /** WebSocket ping interval; a peer that has not answered the previous ping is terminated. @default 25_000 */
  heartbeatMs?: number;
  logger?: Logger;
  /** Called for each refused upgrade (metrics). */
  onRefused?: (status: number, reason: string) => void;
}

export interface WsAdapter {
  readonly clientCount: number;
  /** Stop accepting upgrades and heartbeats; terminate sockets still open after `graceMs`. */
  close(graceMs?: number): Promise<void>;
}

export function useWebSocket(options: WsAdapterOptions): WsAdapter {
  const { core, server, auth } = options;
  const log = options.logger ?? silentLogger;
  const maxPerToken = options.maxConnectionsPerToken ?? DEFAULT_MAX_CONNECTIONS_PER_TOKEN;
  const originPolicy = { allowed: options.allowedOrigins ? new Set(options.allowedOrigins) : null, tokensRequired: auth.required };
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: options.maxPayload ?? DEFAULT_MAX_PAYLOAD,
    perMessageDeflate: false,
    clientTracking: true,
    // Selects our protocol name, never the `bearer.<token>` entry (a token must not be echoed).
    handleProtocols: (protocols) => selectSubprotocol(protocols),
  });
  const alive = new WeakMap<WebSocket, boolean>();

  const refuse = (socket: Duplex, status: number, text: string, headers: Record<string, string> = {}): void => {
    options.onRefused?.(status, text);
    const body = JSON.stringify({ error: text });
    const head = [`HTTP/1.1 ${status} ${statusText(status)}`, 'Connection: close', 'Content-Type: application/json', `Content-Length: ${Buffer.byteLength(body)}`];
    for (const [k, v] of Object.entries(headers)) head.push(`${k}: ${v}`);
    // Read and discard whatever the client still sends: an unread socket never sees the client's FIN
    // and would hold its descriptor forever. Once the answer is flushed, the socket is ours to close.
    socket.on('data', () => {});
    socket.resume();
    const timer = setTimeout(() => socket.destroy(), REFUSED_LINGER_MS);
    timer.unref();
    socket.once('close', () => clearTimeout(timer));
    socket.end(`${head.join('\r\n')}\r\n\r\n${body}`, () => socket.destroy());
  };

  // Shared by every socket rather than a closure each.
  const onUpgradeSocketError = (error: Error): void => log.debug({ err: error }, 'upgrade socket error');
  const onWsError = (error: Error): void => log.debug({ err: error }, 'WebSocket error');

  /**
   * One accepted WebSocket, handed to the core. Kept out of onUpgrade on purpose: closures made
   * there would keep its whole scope, the request with its headers included, alive for as long as
   * the connection lives (about 1.5 KiB per idle subscriber).
   */
  const attach = (ws: WebSocket, socket: Duplex, principal: Principal, remoteAddress: string | undefined): void => {
    ws.on('error', onWsError);
    alive.set(ws, true);
    const transport = new WsTransport(ws, socket);
    const hooks = core.opened(transport, { principal, ...(remoteAddress ? { remoteAddress } : {}) });
    ws.on('pong', (data) => {
      alive.set(ws, true);
      transport.answered(data.toString());
    });
    ws.on('message', (data, isBinary) => {
      alive.set(ws, true);
      hooks.message(isBinary ? '' : data.toString());
    });
    ws.on('close', (code, reason) => hooks.closed(code, reason.toString()));
  };

  const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    socket.on('error', onUpgradeSocketError);
    const path = new URL(req.url ?? '/', 'http://gateway').pathname;
    if (path !== WS_PATH) return refuse(socket, 404, `no WebSocket endpoint at ${path}; use ${WS_PATH}`);
    if (!hostAllowed(req.headers, options.servedHosts ?? null)) return refuse(socket, 403, `host ${JSON.stringify(req.headers.host)} is not served here`);
    if (!originAllowed(req.headers, originPolicy)) return refuse(socket, 403, `origin ${req.headers.origin} is not allowed`);
    const principal = auth.authenticate(tokenFromRequest(req.headers));
    if (!principal) {
      log.info({ remote: req.socket.remoteAddress }, 'WebSocket upgrade refused: missing or wrong token');
      return refuse(socket, 401, 'a valid bearer token is required (Authorization: Bearer, or subprotocol bearer.<token>)', { 'WWW-Authenticate': 'Bearer' });
    }
    // Refused before the upgrade: no WebSocket, no welcome, one short answer. handleUpgrade hands
    // the socket to the core synchronously, so the count includes every upgrade answered so far.
    if (auth.required && core.connectionsOf(principal.name) >= maxPerToken) {
      log.info({ remote: req.socket.remoteAddress, principal: principal.name }, 'WebSocket upgrade refused: too many connections for the token');
      return refuse(socket, 429, `too many connections for token ${JSON.stringify(principal.name)} (at most ${maxPerToken}); retry after a long backoff`, { 'Retry-After': String(TOO_MANY_RETRY_AFTER_S) });
    }
    const remoteAddress = req.socket.remoteAddress;
    wss.handleUpgrade(req, socket, head, (ws) => attach(ws, socket, principal, remoteAddress));
  };
  server.on('upgrade', onUpgrade);

  // The heartbeat visits a slice of the sockets per tick, a round per interval: one sweep over 5,000
  // sockets held the event loop ~90 ms (and their pongs came back together), a stall in the path of
  // every event once an interval. Each socket is still pinged once per interval, and ended at its
  // next turn (an interval later; never under half of one) when it did not answer.
  const heartbeatMs = options.heartbeatMs ?? configDefaults.heartbeatMs;
  const pingedAt = new WeakMap<WebSocket, number>();
  let round: Iterator<WebSocket> | undefined;
  let perTick = 0;
  let ticks = 0;
  // A tick's pings (400 at 10,000 sockets, ~4 ms, and their pongs coming back) landing inside a
  // fan-out pass would add to its last delivery: the tick waits for the pass, a bounded time, and
  // never longer than half a tick.
  const tickMs = Math.max(1, heartbeatMs / HEARTBEAT_SLICES);
  const maxDeferMs = Math.min(HEARTBEAT_MAX_DEFER_MS, tickMs / 2);
  const deferral = new BoundedDeferral(() => core.fanningOut, () => pingSlice(), Math.min(HEARTBEAT_DEFER_STEP_MS, maxDeferMs), maxDeferMs);
  const pingSlice = (): void => {
    if (++ticks >= HEARTBEAT_SLICES && !round) {
      ticks = 0;
      round = wss.clients.values();
      perTick = Math.ceil(wss.clients.size / HEARTBEAT_SLICES);
    }
    if (!round) return;
    const now = performance.now();
    for (let i = 0; i < perTick; i++) {
      const next = round.next();
      if (next.done) {
        round = undefined;
        return;
      }
      const ws = next.value;
      if (alive.get(ws) === false) {
        if (now - (pingedAt.get(ws) ?? 0) < heartbeatMs / 2) continue; // its turn came early (sockets before it closed)
        log.debug({}, 'terminating a WebSocket peer that missed a heartbeat');
        ws.terminate();
        continue;
      }
      alive.set(ws, false);
      pingedAt.set(ws, now);
      ws.ping();
    }
  };
  const heartbeat = setInterval(() => {
    if (!deferral.pending) deferral.request();
  }, tickMs);
  heartbeat.unref();

  return {
    get clientCount() {
      return wss.clients.size;
    },
    async close(graceMs = 2000) {
      server.off('upgrade', onUpgrade);
      clearInterval(heartbeat);
      deferral.cancel();
      if (wss.clients.size > 0) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(() => {
            for (const ws of wss.clients) ws.terminate();
            resolve();
          }, graceMs);
          timer.unref();
          const check = (): void => {
            if (wss.clients.size === 0) {
              clearTimeout(timer);
              resolve();
            }
          };
          for (const ws of wss.clients) ws.once('close', () => setImmediate(check));
          check();
        });
      }
      await new Promise<void>((resolve) => wss.close(() => resolve()));
    },
  };
}

/**
 * One WebSocket as the core sees it. A class, not an object of closures: a fan-out to 10,000
 * sockets touches each one's transport once per delivery, after a write system call has evicted it
 * from the cache, and an instance is one object where closures were several (and less memory for
 * an idle subscriber).
 */
class WsTransport implements GatewaySocket {
  /** Read confirmations (Connection.probe): a ping whose payload names the callback its pong answers. Made on the first probe. */
  private probes: Map<string, () => void> | undefined;
  private probeSeq = 0;

  constructor(
    private readonly ws: WebSocket,
    /** The upgraded TCP socket under ws. */
    private readonly socket: Duplex,
  ) {}

  /**
   * A Buffer is a shared, already encoded payload (stream/frames.ts): framed once for all its
   * sockets and written as is. ws queues nothing of its own here (no compression), so the order
   * with what ws sends stays the call order, and its bufferedAmount counts it.
   */
  send(data: string | Buffer): void {
    if (typeof data === 'string' || this.ws.readyState !== this.ws.OPEN) this.ws.send(data, { binary: false });
    else this.socket.write(framedText(data));
  }

  /** Corked across a fan-out pass, a socket's frames leave in one write. */
  cork(): void {
    this.socket.cork();
  }

  uncork(): void {
    this.socket.uncork();
  }

  /**
   * ws.bufferedAmount without its indirections: ws's own queue only holds frames being compressed
   * or read from a Blob, neither of which happens here (read once per delivery).
   */
  get bufferedAmount(): number {
    return this.socket.writableLength;
  }

  probe(onRead: () => void): void {
    const key = `r${++this.probeSeq}`;
    (this.probes ??= new Map()).set(key, onRead);
    this.ws.ping(key);
  }

  /** A pong arrived with this payload: the probe it names, if any, is answered. */
  answered(key: string): void {
    const onRead = this.probes?.get(key);
    if (!onRead) return;
    this.probes!.delete(key);
    onRead();
  }

  close(code: number, reason: string): void {
    this.ws.close(code, reason);
  }
}

/** Each shared payload's WebSocket frame, built on its first send and dropped with the payload. */
const framed = new WeakMap<Buffer, Buffer>();

/** An unmasked, final text frame (RFC 6455 section 5.2) carrying `payload`, as a server sends it. */
function framedText(payload: Buffer): Buffer {
  let frame = framed.get(payload);
  if (frame) return frame;
  const length = payload.length;
  const header = length < 126 ? 2 : length < 65_536 ? 4 : 10;
  frame = Buffer.allocUnsafe(header + length);
  frame[0] = 0x81; // FIN + opcode 1 (text)
  if (header === 2) frame[1] = length;
  else if (header === 4) {
    frame[1] = 126;
    frame.writeUInt16BE(length, 2);
  } else {
    frame[1] = 127;
    frame.writeBigUInt64BE(BigInt(length), 2);
  }
  payload.copy(frame, header);
  framed.set(payload, frame);
  return frame;
}

function statusText(status: number): string {
  return ({ 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 429: 'Too Many Requests' } as Record<number, string>)[status] ?? 'Error';
}
