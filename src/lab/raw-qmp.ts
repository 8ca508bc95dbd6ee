/**
 * A minimal, independent QMP connection for the lab and for tests: greeting, qmp_capabilities,
 * execute by id, an event log. Written without src/qmp on purpose, so the real client's tests and
 * the job-engine oracle never depend on the code they check.
 */
import { createConnection, type Socket } from 'node:net';
import {
  QmpClosedError,
  QmpCommandError,
  QmpConnectError,
  QmpMonitorBusyError,
  QmpOutcomeUnknownError,
  QmpProtocolError,
  QmpTimeoutError,
  QmpTooManyPendingError,
} from '../errors.js';
import { JsonObjectSplitter, parseJsonObject } from './json-splitter.js';

/** An event as QEMU sent it, plus where it sits in this connection's event log. */
export interface RawQmpEvent {
  event: string;
  data: Record<string, unknown>;
  timestamp: { seconds: number; microseconds: number };
  /** Local wall-clock ms when it was parsed. */
  receivedAt: number;
  /** 0 for the first event on this connection, +1 for each one after (keeps counting when old events are dropped). */
  seq: number;
}

export interface RawQmpOptions {
  /** Give up (as "monitor busy") when no greeting arrives within this many ms. @default 5000 */
  greetingTimeoutMs?: number;
  /** Send qmp_capabilities after the greeting. @default true */
  negotiate?: boolean;
  /** Keep at most this many events; the oldest are dropped beyond it. @default 10000 */
  maxEvents?: number;
  /** Default execute timeout. @default 30000 */
  commandTimeoutMs?: number;
  /** Sees every message in wire order: 'in' from QEMU (greeting, replies, events), 'out' to it. */
  trace?: (direction: 'in' | 'out', message: Record<string, unknown>) => void;
}

/** QEMU refused a command; `class` and `desc` are QEMU's own (QmpCommandError with a `class` alias). */
export class RawQmpCommandError extends QmpCommandError {
  override name = 'RawQmpCommandError';
  get class(): string {
    return this.qmpClass;
  }
}

const MAX_PENDING_COMMANDS = 64;

type ResolvedOptions = Required<Omit<RawQmpOptions, 'trace'>> & Pick<RawQmpOptions, 'trace'>;

interface PendingCommand {
  sent: { execute: string; arguments?: unknown };
  resolve(value: unknown): void;
  reject(error: Error): void;
  timer: NodeJS.Timeout;
}

interface EventWaiter {
  predicate(event: RawQmpEvent): boolean;
  fromSeq: number;
  resolve(event: RawQmpEvent): void;
  reject(error: Error): void;
  timer: NodeJS.Timeout;
}

export class RawQmp {
  /** The greeting's `QMP` member: `{ version, capabilities }`. */
  greeting: Record<string, unknown> = {};
  readonly events: RawQmpEvent[] = [];
  /** Events dropped from the front of `events` to keep it bounded. */
  droppedEvents = 0;
  /** Resolves when the socket has closed (for any reason). */
  readonly closed: Promise<void>;

  private readonly splitter = new JsonObjectSplitter();
  private readonly pending = new Map<string, PendingCommand>();
  private readonly waiters = new Set<EventWaiter>();
  private readonly listeners = new Set<(event: RawQmpEvent) => void>();
  private nextId = 1;
  private nextSeq = 0;
  private isClosed = false;
  private greetingSeen?: (greeting: Record<string, unknown>) => void;

  private constructor(
    readonly address: string,
    private readonly socket: Socket,
    private readonly options: ResolvedOptions,
  ) {
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', () => undefined); // 'close' follows and settles everything
    socket.once('close', () => this.onClose());
  }

  /** Connects to a unix socket path, waits for the greeting and (by default) negotiates. */
  static async connect(path: string, options: RawQmpOptions = {}): Promise<RawQmp> {
    const resolved: ResolvedOptions = {
      greetingTimeoutMs: options.greetingTimeoutMs ?? 5000,
      negotiate: options.negotiate ?? true,
      maxEvents: options.maxEvents ?? 10_000,
      commandTimeoutMs: options.commandTimeoutMs ?? 30_000,
      trace: options.trace,
    };
    const address = `unix:${path}`;
    const socket = createConnection(path);
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', (cause) => reject(new QmpConnectError(address, cause.message, { cause })));
    });
    const qmp = new RawQmp(address, socket, resolved);
    await qmp.awaitGreeting();
    if (resolved.negotiate) await qmp.execute('qmp_capabilities');
    return qmp;
  }

  private awaitGreeting(): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.socket.destroy();
        reject(new QmpMonitorBusyError(this.address, this.options.greetingTimeoutMs));
      }, this.options.greetingTimeoutMs);
      this.greetingSeen = (greeting) => {
        clearTimeout(timer);
        this.greeting = greeting;
        resolve();
      };
      void this.closed.then(() => {
        clearTimeout(timer);
        reject(new QmpConnectError(this.address, 'connection closed before the greeting'));
      });
    });
  }

  /** Runs a command. Rejects with RawQmpCommandError ({class, desc}), QmpTimeoutError or QmpOutcomeUnknownError. */
  execute<T = unknown>(command: string, args?: Record<string, unknown>, options: { timeoutMs?: number } = {}): Promise<T> {
    const sent = args === undefined ? { execute: command } : { execute: command, arguments: args };
    if (this.isClosed) return Promise.reject(new QmpClosedError(`${this.address}: connection closed`));
    if (this.pending.size >= MAX_PENDING_COMMANDS) return Promise.reject(new QmpTooManyPendingError(sent, MAX_PENDING_COMMANDS));
    const id = `raw-${this.nextId++}`;
    const timeoutMs = options.timeoutMs ?? this.options.commandTimeoutMs;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new QmpTimeoutError(sent, timeoutMs));
      }, timeoutMs);
      this.pending.set(id, { sent, resolve: resolve as (value: unknown) => void, reject, timer });
      const message = { ...sent, id };
      this.options.trace?.('out', message);
      this.socket.write(`${JSON.stringify(message)}\n`);
    });
  }

  /** Writes bytes as they are (for protocol tests). */
  writeRaw(data: string | Buffer): void {
    this.socket.write(data);
  }

  /** Calls `listener` for each event from now on; returns the unsubscribe function. */
  onEvent(listener: (event: RawQmpEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Resolves with the first event (already received or still to come) with seq >= fromSeq that
   * matches. Rejects on timeout or when the connection closes first.
   */
  waitForEvent(predicate: (event: RawQmpEvent) => boolean, timeoutMs = 30_000, fromSeq = 0): Promise<RawQmpEvent> {
    const seen = this.events.find((event) => event.seq >= fromSeq && predicate(event));
    if (seen) return Promise.resolve(seen);
    if (this.isClosed) return Promise.reject(new QmpClosedError(`${this.address}: closed while waiting for an event`));
    return new Promise((resolve, reject) => {
      const waiter: EventWaiter = {
        predicate,
        fromSeq,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.waiters.delete(waiter);
          reject(new Error(`${this.address}: no matching event within ${timeoutMs} ms (predicate ${predicate.toString().slice(0, 120)})`));
        }, timeoutMs),
      };
      this.waiters.add(waiter);
    });
  }

  /** Sequence number the next event will get: pass it to waitForEvent to ignore older events. */
  get nextEventSeq(): number {
    return this.nextSeq;
  }

  get isOpen(): boolean {
    return !this.isClosed;
  }

  /** Closes the connection and waits until the socket is gone. */
  async close(): Promise<void> {
    this.socket.end();
    const forced = setTimeout(() => this.socket.destroy(), 1000);
    await this.closed;
    clearTimeout(forced);
  }

  private onData(chunk: Buffer): void {
    let texts: string[];
    try {
      texts = this.splitter.push(chunk);
    } catch {
      this.socket.destroy();
      return;
    }
    for (const text of texts) {
      let message: Record<string, unknown>;
      try {
        message = parseJsonObject(text);
      } catch {
        this.socket.destroy();
        return;
      }
      this.onMessage(message);
    }
  }

  private onMessage(message: Record<string, unknown>): void {
    this.options.trace?.('in', message);
    if ('QMP' in message) {
      this.greetingSeen?.(message.QMP as Record<string, unknown>);
      this.greetingSeen = undefined;
    } else if (typeof message.event === 'string') {
      this.onEventMessage(message);
    } else if ('return' in message || 'error' in message) {
      this.onReply(message);
    }
  }

  private onEventMessage(message: Record<string, unknown>): void {
    const event: RawQmpEvent = {
      event: message.event as string,
      data: (message.data as Record<string, unknown> | undefined) ?? {},
      timestamp: message.timestamp as RawQmpEvent['timestamp'],
      receivedAt: Date.now(),
      seq: this.nextSeq++,
    };
    this.events.push(event);
    if (this.events.length > this.options.maxEvents) {
      this.events.shift();
      this.droppedEvents++;
    }
    for (const listener of this.listeners) listener(event);
    for (const waiter of this.waiters) {
      if (event.seq >= waiter.fromSeq && waiter.predicate(event)) {
        this.waiters.delete(waiter);
        clearTimeout(waiter.timer);
        waiter.resolve(event);
      }
    }
  }

  private onReply(message: Record<string, unknown>): void {
    const id = typeof message.id === 'string' ? message.id : undefined;
    const command = id === undefined ? undefined : this.pending.get(id);
    if (!command || id === undefined) {
      // An id-less error means QEMU could not parse something we sent; we cannot tell which
      // command it was, so every pending one learns about it. Stray ids are ignored.
      if (id === undefined) this.failPending(new QmpProtocolError('reply without a known id', JSON.stringify(message)));
      return;
    }
    this.pending.delete(id);
    clearTimeout(command.timer);
    if ('error' in message) {
      const error = message.error as { class?: string; desc?: string };
      command.reject(new RawQmpCommandError(error.class ?? 'GenericError', error.desc ?? '', command.sent));
    } else {
      command.resolve(message.return);
    }
  }

  private failPending(error: Error): void {
    for (const command of this.pending.values()) {
      clearTimeout(command.timer);
      command.reject(error);
    }
    this.pending.clear();
  }

  private onClose(): void {
    this.isClosed = true;
    for (const command of this.pending.values()) {
      clearTimeout(command.timer);
      command.reject(new QmpOutcomeUnknownError(command.sent));
    }
    this.pending.clear();
    for (const waiter of this.waiters) {
      clearTimeout(waiter.timer);
      waiter.reject(new QmpClosedError(`${this.address}: connection closed while waiting for an event`));
    }
    this.waiters.clear();
  }
}

/** Shorthand for RawQmp.connect. */
export function connectRawQmp(path: string, options?: RawQmpOptions): Promise<RawQmp> {
  return RawQmp.connect(path, options);
}
