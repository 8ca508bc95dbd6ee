/**
 * One client connection's outbound path and inbound limits, transport-agnostic.
 *
 * Outbound backpressure comes from the socket's `bufferedAmount`:
 *   - above `softBytes`, progress messages are conflated (only the newest per job is kept, and sent
 *     once the buffer drains); stream messages (transitions, vm, state, synced, bookmark) still go out;
 *   - above `hardBytes`, or above `softBytes` for longer than `maxSoftMs`, the connection is closed
 *     with 4508 so the client reconnects and resumes from its offset.
 * Memory per connection is therefore bounded by hardBytes + one snapshot or one corked fan-out batch
 * + one progress per job.
 *
 * `bufferedAmount` only counts what the kernel has not taken yet, and the kernel's socket buffers
 * take megabytes from a client that reads nothing. So the client's reading is also confirmed: once
 * more than `softBytes` were written since the last confirmation, a probe (a WebSocket ping, which
 * the peer answers only after reading all that precedes it) goes out; no answer within `maxSoftMs`
 * closes with 4508 as well. A client that reads keeps up; one that stops is cut after about
 * softBytes of traffic plus maxSoftMs, whatever the kernel buffers.
 */
import { performance } from 'node:perf_hooks';
import type { ErrorDetail, ProtocolErrorCode } from '../generated/schema-types.js';
import { CloseCode } from '../protocol/codes.js';
import type { Principal } from './auth.js';
import { configDefaults } from '../generated/config-defaults.js';

/** What the core needs from a transport. */
export interface GatewaySocket {
  /** A text frame: a string, or its UTF-8 bytes (one Buffer may go to many sockets; never modified). */
  send(data: string | Buffer): void;
  /** Optional: hold writes until uncork (calls nest), so several frames leave in one write. */
  cork?(): void;
  uncork?(): void;
  /** Bytes queued but not yet written to the network. */
  readonly bufferedAmount: number;
  /** Optional: call `onRead` once the peer has read everything sent so far (a ping's pong). */
  probe?(onRead: () => void): void;
  close(code: number, reason: string): void;
}

export interface BackpressureOptions {
  /** @default 262_144 (256 KiB) */
  softBytes?: number;
  /** @default 1_048_576 (1 MiB) */
  hardBytes?: number;
  /** Longest time over softBytes, and longest wait for a read confirmation. @default 10_000 */
  maxSoftMs?: number;
  /** How often a connection over the soft mark is re-checked. @default 50 */
  checkMs?: number;
}

export interface InboundLimits {
  /** Sustained inbound messages per second. @default 20 */
  ratePerSecond?: number;
  /** Burst allowance above the sustained rate. @default 50 */
  burst?: number;
  /** Invalid messages tolerated within `invalidWindowMs` before closing with 4400. @default 5 */
  maxInvalid?: number;
  /** @default 60_000 */
  invalidWindowMs?: number;
}

export interface ConnectionStats {
  sent(type: string, bytes: number): void;
  conflated(): void;
}

export class Connection {
  // Maps below are made on first use: an idle subscriber never needs them (bench idle: RSS per connection).
  private commandsInFlight: Map<string, AbortController> | undefined;
  closed = false;

  private softSince: number | undefined;
  /** Bytes handed to the socket, and how many of them the client has confirmed reading. */
  private written = 0;
  private confirmed = 0;
  private probeTimer: NodeJS.Timeout | undefined;
  private corks = 0;
  private conflatedProgress: Map<string, string> | undefined;
  /** Bytes sent since the outermost cork: held by us, not yet offered to the client. */
  private corkedBytes = 0;
  private watchTimer: NodeJS.Timeout | undefined;
  /**
   * The socket's bufferedAmount at its last reading (after each uncorked write). Until our next
   * write the buffer only drains, but for the transport's own control frames (pings, pongs: a few
   * bytes each), so it bounds what is unread: see sendStream.
   */
  private unread = 0;
  private readonly soft: number;
  private readonly hard: number;
  private readonly maxSoftMs: number;
  private readonly checkMs: number;

  private tokens: number;
  private droppedInRow = 0;
  private tokensAt: number;
  private readonly rate: number;
  private readonly burst: number;
  private readonly invalidAt: number[] = [];
  private readonly maxInvalid: number;
  private readonly invalidWindowMs: number;

  constructor(
    readonly id: string,
    readonly principal: Principal,
    private readonly socket: GatewaySocket,
    private readonly stats: ConnectionStats,
    private readonly onClose: (connection: Connection, code: number, reason: string) => void,
    backpressure: BackpressureOptions = {},
    inbound: InboundLimits = {},
  ) {
    this.soft = backpressure.softBytes ?? configDefaults.backpressure.softBytes;
    this.hard = backpressure.hardBytes ?? configDefaults.backpressure.hardBytes;
    this.maxSoftMs = backpressure.maxSoftMs ?? configDefaults.backpressure.maxSoftMs;
    this.checkMs = backpressure.checkMs ?? 50;
    this.rate = inbound.ratePerSecond ?? configDefaults.limits.inboundRatePerSecond;
    this.burst = inbound.burst ?? configDefaults.limits.inboundBurst;
    this.tokens = this.burst;
    this.tokensAt = performance.now();
    this.maxInvalid = inbound.maxInvalid ?? configDefaults.limits.maxInvalidMessages;
    this.invalidWindowMs = inbound.invalidWindowMs ?? 60_000;
  }

  get bufferedAmount(): number {
    return this.socket.bufferedAmount;
  }

  /** Job commands in flight on this connection, by command id. */
  get commands(): Map<string, AbortController> {
    return (this.commandsInFlight ??= new Map());
  }

  /** A reply or snapshot message: always sent (bounded by what the client asked for). */
  send(type: string, data: string | Buffer): void {
    if (this.closed) return;
    this.socket.send(data);
    // A shared frame's length is known: only strings are measured.
    const bytes = typeof data === 'string' ? Buffer.byteLength(data) : data.length;
    this.stats.sent(type, bytes);
    this.written += bytes;
    if (this.corks > 0) this.corkedBytes += bytes;
    else this.watch();
    if (this.probeTimer === undefined && this.written - this.confirmed > this.soft) this.probe();
  }

  cork(): void {
    if (this.closed) return;
    this.corks++;
    this.socket.cork?.();
  }

  /** Pairs with cork, also when the connection closed in between (the transport counts them). */
  uncork(): void {
    if (this.corks === 0) return;
    this.corks--;
    this.socket.uncork?.();
    if (this.corks > 0) return;
    this.corkedBytes = 0;
    if (!this.closed) this.watch();
  }

  /** The answer to a refused request (`sub`: the subscription it concerns). */
  sendError(id: string | undefined, code: ProtocolErrorCode, message: string, details?: ErrorDetail[], sub?: string): void {
    const body = { type: 'error', ...(id !== undefined ? { id } : {}), ...(sub !== undefined ? { sub } : {}), code, message, ...(details && details.length > 0 ? { details } : {}) };
    this.send('error', JSON.stringify(body));
  }

  /** A live stream message: never dropped; a client too far behind is closed with 4508 instead. */
  sendStream(type: string, data: string | Buffer): void {
    // Below the soft mark at the last reading, the hard mark cannot have been crossed since (the
    // soft-to-hard margin is far more than a few control frames): the socket is read once per
    // delivery, after the write, where a fan-out to 10,000 sockets read it twice.
    if (this.unread > this.soft ? this.closeIfOverHardMark() : this.closed) return;
    this.send(type, data);
  }

  /**
   * Checked before answering a request too: a client that asks for snapshots without reading them
   * is closed, so one reply burst (one snapshot) is the most it can hold beyond the hard mark.
   */
  closeIfOverHardMark(): boolean {
    if (this.closed) return true;
    this.unread = this.socket.bufferedAmount;
    // What this connection holds corked was never offered to the client: it does not count as unread.
    if (this.unread - this.corkedBytes <= this.hard) return false;
    this.close(CloseCode.SlowConsumer, `slow consumer: more than ${this.hard} bytes unread; resume with since`);
    return true;
  }

  /** A progress message: conflated to the newest per key while the client is slow. */
  sendProgress(key: string, text: string): void {
    if (this.closed) return;
    if (this.softSince !== undefined || this.socket.bufferedAmount > this.soft) {
      const conflated = (this.conflatedProgress ??= new Map());
      if (conflated.has(key)) this.stats.conflated();
      conflated.delete(key); // re-insert at the end: flush in arrival order
      conflated.set(key, text);
      this.watch();
      return;
    }
    this.send('progress', text);
  }

  /** Forget waiting progress for keys starting with `prefix` (e.g. a subscription that ended). */
  dropProgress(prefix: string): void {
    const conflated = this.conflatedProgress;
    if (conflated) for (const key of conflated.keys()) if (key.startsWith(prefix)) conflated.delete(key);
  }

  /**
   * Token bucket over inbound messages. `first-drop` asks the caller to tell the client once;
   * `close` when the client keeps flooding (more rejected in a row than the burst allows, twice).
   */
  admitInbound(now = performance.now()): 'ok' | 'first-drop' | 'drop' | 'close' {
    this.tokens = Math.min(this.burst, this.tokens + (Math.max(0, now - this.tokensAt) / 1000) * this.rate);
    this.tokensAt = now;
    if (this.tokens >= 1) {
      this.tokens -= 1;
      this.droppedInRow = 0;
      return 'ok';
    }
    this.droppedInRow++;
    if (this.droppedInRow > 2 * this.burst) return 'close';
    return this.droppedInRow === 1 ? 'first-drop' : 'drop';
  }

  /** Count an invalid message; true when the client crossed the limit and must be closed. */
  noteInvalid(now = performance.now()): boolean {
    while (this.invalidAt.length > 0 && now - this.invalidAt[0]! > this.invalidWindowMs) this.invalidAt.shift();
    this.invalidAt.push(now);
    return this.invalidAt.length > this.maxInvalid;
  }

  close(code: number, reason: string): void {
    if (this.closed) return;
    this.socket.close(code, reason);
    this.closedBy(code, reason);
  }

  /** The transport reports the socket closed (by either side). Idempotent. */
  closedBy(code: number, reason: string): void {
    if (this.closed) return;
    this.closed = true;
    if (this.watchTimer) clearInterval(this.watchTimer);
    if (this.probeTimer) clearTimeout(this.probeTimer);
    this.watchTimer = undefined;
    this.conflatedProgress = undefined;
    for (const controller of this.commandsInFlight?.values() ?? []) controller.abort(new Error(`connection closed (${code})`));
    this.commandsInFlight?.clear();
    this.onClose(this, code, reason);
  }

  /** Ask the client to confirm it read what was written so far; no answer in maxSoftMs is a slow consumer. */
  private probe(): void {
    if (!this.socket.probe) return;
    const upTo = this.written;
    const timer = setTimeout(() => {
      this.close(CloseCode.SlowConsumer, `slow consumer: ${this.written - this.confirmed} bytes sent and not read within ${this.maxSoftMs} ms; resume with since`);
    }, this.maxSoftMs);
    timer.unref();
    this.probeTimer = timer;
    this.socket.probe(() => {
      if (this.probeTimer !== timer) return;
      clearTimeout(timer);
      this.probeTimer = undefined;
      this.confirmed = upTo;
      if (!this.closed && this.written - this.confirmed > this.soft) this.probe();
    });
  }

  /** Start watching the buffer once it crosses the soft mark. */
  private watch(): void {
    this.unread = this.socket.bufferedAmount;
    if (this.watchTimer !== undefined || this.unread <= this.soft) return;
    this.softSince = performance.now();
    this.watchTimer = setInterval(() => this.check(), this.checkMs);
    this.watchTimer.unref();
  }

  private check(): void {
    const buffered = (this.unread = this.socket.bufferedAmount);
    if (buffered > this.hard || (buffered > this.soft && performance.now() - this.softSince! > this.maxSoftMs)) {
      this.close(CloseCode.SlowConsumer, `slow consumer: ${buffered} bytes unread; resume with since`);
      return;
    }
    if (buffered > this.soft) return;
    clearInterval(this.watchTimer);
    this.watchTimer = undefined;
    this.softSince = undefined;
    const waiting = this.conflatedProgress;
    this.conflatedProgress = undefined;
    for (const text of waiting?.values() ?? []) this.send('progress', text);
  }
}
