/**
 * The gateway core: the v1 push protocol over any transport (see PROTOCOL.md). No `ws` here; a
 * transport adapter (use/ws.ts) calls `opened(socket, ctx)` and forwards messages and closes.
 *
 * Ordering: StreamHub hands every stream event over synchronously, in offset order; events queue for
 * fan-out, and fan-out yields to the event loop every `fanoutChunk` subscriptions so QMP handling is
 * never starved. A subscription's snapshot (or replay) and its live tail are cut in the same tick:
 * its per-stream cursor is the head offset at subscribe time, and queued events at or below the
 * cursor are skipped, so nothing falls between them and nothing is sent twice.
 */
import { performance } from 'node:perf_hooks';
import type { JobSource, JobState } from '../jobs/types.js';
import type { CommandMessage, ErrorDetail, ProtocolErrorCode, ResultMessage, SubscribeMessage } from '../generated/schema-types.js';
import { silentLogger, type Logger } from '../log.js';
import { canRead, type Principal } from './auth.js';
import { Connection, type BackpressureOptions, type GatewaySocket, type InboundLimits } from './connection.js';
import { MemoryStreamHistory } from './history/memory.js';
import type { HistoryLimits, HistoryRead, MaybePromise, ResetReason, StreamHistory, StreamPosition } from './history/types.js';
import { CloseCode } from '../protocol/codes.js';
import { PROTOCOL_VERSION } from '../protocol/messages.js';
import { parseClientMessage, type ParseResult } from '../protocol/validate.js';
import { GatewayStats } from './stats.js';
import { StreamHub, type ProgressEvent, type StreamEvent } from './streams.js';
import { Subscription } from './subscription.js';

export type { GatewaySocket } from './connection.js';

export type { ResultMessage };

export interface CommandContext {
  principal: Principal;
  connectionId: string;
  /** Aborted when the client disconnects (a pending `when: ready` must then be dropped). */
  signal: AbortSignal;
}

/** Job control (issue 5) plugs in here; the core only parses and forwards. */
export type CommandHandler = (message: CommandMessage, ctx: CommandContext) => Promise<ResultMessage>;

export interface GatewayCoreOptions {
  source: JobSource;
  /** @default an in-memory history with `historyLimits` */
  history?: StreamHistory<StreamEvent>;
  historyLimits?: HistoryLimits;
  commandHandler?: CommandHandler;
  /** Inbound message parser/validator. @default parseClientMessage */
  parse?: (raw: string) => ParseResult;
  logger?: Logger;
  /** Reported in `welcome`; the transport sends the pings. @default 25_000 */
  heartbeatMs?: number;
  /** Progress interval when a subscribe does not say. @default 1000 */
  progressIntervalMs?: number;
  /** A filtered subscription that skipped events gets a `bookmark` after this quiet time. @default 5000 */
  bookmarkQuietMs?: number;
  /** @default 64 */
  maxSubscriptionsPerConnection?: number;
  /** @default 32 */
  maxCommandsInFlight?: number;
  /** Subscriptions visited per fan-out slice before yielding to the event loop. @default 500 */
  fanoutChunk?: number;
  /** Stream events waiting for fan-out; beyond it every subscriber is closed with 4500 to resume. @default 10_000 */
  maxQueuedEvents?: number;
  backpressure?: BackpressureOptions;
  inbound?: InboundLimits;
}

export interface ConnectionContext {
  principal: Principal;
  /** For logs only. */
  remoteAddress?: string;
}

export interface ConnectionHooks {
  message(text: string): void;
  closed(code: number, reason: string): void;
}

export interface VmJobs {
  vm: string;
  epoch: string;
  offset: number;
  status: string;
  jobs: JobState[];
}

type QueueItem = { kind: 'stream'; event: StreamEvent } | { kind: 'progress'; event: ProgressEvent };

export class GatewayCore {
  readonly stats = new GatewayStats();
  private readonly hub: StreamHub;
  private readonly history: StreamHistory<StreamEvent>;
  private readonly connections = new Set<Connection>();
  private readonly subscriptions = new Set<Subscription>();
  private readonly behind = new Set<Subscription>();
  private readonly queue: QueueItem[] = [];
  private fanout: Iterator<Subscription> | undefined;
  private dispatching = false;
  private nextConnectionId = 1;
  private bookmarkTimer: NodeJS.Timeout | undefined;
  private readonly log: Logger;
  private readonly parse: (raw: string) => ParseResult;
  private readonly heartbeatMs: number;
  private readonly progressIntervalMs: number;
  private readonly bookmarkQuietMs: number;
  private readonly maxSubscriptions: number;
  private readonly maxCommands: number;
  private readonly fanoutChunk: number;
  private readonly maxQueued: number;

  constructor(private readonly options: GatewayCoreOptions) {
    this.history = options.history ?? new MemoryStreamHistory<StreamEvent>(options.historyLimits);
    this.log = options.logger ?? silentLogger;
    this.parse = options.parse ?? parseClientMessage;
    this.heartbeatMs = options.heartbeatMs ?? 25_000;
    this.progressIntervalMs = options.progressIntervalMs ?? 1000;
    this.bookmarkQuietMs = options.bookmarkQuietMs ?? 5000;
    this.maxSubscriptions = options.maxSubscriptionsPerConnection ?? 64;
    this.maxCommands = options.maxCommandsInFlight ?? 32;
    this.fanoutChunk = options.fanoutChunk ?? 500;
    this.maxQueued = options.maxQueuedEvents ?? 10_000;
    this.hub = new StreamHub(
      options.source,
      this.history,
      { event: (event) => this.enqueue({ kind: 'stream', event }), progress: (event) => this.enqueue({ kind: 'progress', event }) },
      (error) => this.log.error({ err: error }, 'stream history append failed'),
    );
  }

  async start(): Promise<void> {
    await this.hub.start();
    this.bookmarkTimer = setInterval(() => this.sweepBookmarks(), Math.max(10, this.bookmarkQuietMs / 2));
    this.bookmarkTimer.unref();
  }

  /** Stop following the source; connections stay open (see drain). */
  stop(): void {
    this.hub.stop();
    if (this.bookmarkTimer) clearInterval(this.bookmarkTimer);
    this.bookmarkTimer = undefined;
  }

  /** Close every connection (1001 by default: the clients reconnect and resume). */
  drain(code: number = CloseCode.GoingAway, reason = 'gateway shutting down; reconnect and resume with since'): void {
    for (const connection of [...this.connections]) connection.close(code, reason);
  }

  get commandHandler(): CommandHandler | undefined {
    return this.options.commandHandler;
  }

  get connectionCount(): number {
    return this.connections.size;
  }

  /** Connections currently open for one principal (for per-token limits). */
  connectionsOf(principalName: string): number {
    let n = 0;
    for (const c of this.connections) if (c.principal.name === principalName) n++;
    return n;
  }

  /** Every VM's monitor is connected. */
  allMonitorsUp(): { ready: boolean; down: string[] } {
    const down = [...this.hub.statuses()].filter(([, status]) => status !== 'connected').map(([vm]) => vm);
    return { ready: down.length === 0, down };
  }

  monitorStatuses(): Map<string, string> {
    return this.hub.statuses();
  }

  streamPositions(): Map<string, StreamPosition> {
    return new Map(this.hub.vms().map((vm) => [vm, this.hub.position(vm)]));
  }

  /** The snapshot `GET /v1/jobs` serves: every VM the principal may read, with its position. */
  jobs(principal: Principal): VmJobs[] {
    return this.options.source
      .snapshot()
      .filter((s) => canRead(principal, s.vm))
      .map((s) => ({ vm: s.vm, ...this.hub.position(s.vm), status: s.status, jobs: s.jobs }));
  }

  opened(socket: GatewaySocket, ctx: ConnectionContext): ConnectionHooks {
    const connection = new Connection(
      `c${this.nextConnectionId++}`,
      ctx.principal,
      socket,
      this.stats,
      (c, code) => this.onConnectionClosed(c, code),
      this.options.backpressure,
      this.options.inbound,
    );
    this.connections.add(connection);
    this.stats.connections = this.connections.size;
    this.log.debug({ connection: connection.id, principal: ctx.principal.name, remote: ctx.remoteAddress }, 'connection opened');
    const statuses = this.hub.statuses();
    const vms = this.hub
      .vms()
      .filter((vm) => canRead(ctx.principal, vm))
      .map((vm) => ({ vm, ...this.hub.position(vm), status: statuses.get(vm) ?? 'connecting' }));
    const scopes = [...ctx.principal.scopes];
    connection.send('welcome', JSON.stringify({ type: 'welcome', protocol: PROTOCOL_VERSION, vms, heartbeatMs: this.heartbeatMs, scopes }));
    return {
      message: (text) => this.onMessage(connection, text),
      closed: (code, reason) => connection.closedBy(code, reason),
    };
  }

  // ---- inbound ----------------------------------------------------------------------------------

  private onMessage(connection: Connection, text: string): void {
    if (connection.closed) return;
    const admitted = connection.admitInbound();
    if (admitted !== 'ok') {
      if (admitted === 'first-drop') this.sendError(connection, undefined, 'rate_limited', 'too many messages; slow down (this and further messages are dropped)');
      if (admitted === 'close') connection.close(CloseCode.TooManyRequests, 'inbound message rate limit exceeded');
      return;
    }
    if (connection.closeIfOverHardMark()) return;
    const parsed = this.parse(text);
    if (!parsed.ok) {
      this.sendError(connection, parsed.id, parsed.error.code, parsed.error.message, parsed.error.details);
      if (connection.noteInvalid()) connection.close(CloseCode.InvalidMessage, 'too many invalid messages');
      return;
    }
    const message = parsed.message;
    switch (message.type) {
      case 'ping':
        connection.send('pong', JSON.stringify({ type: 'pong', id: message.id }));
        return;
      case 'subscribe':
        this.subscribe(connection, message);
        return;
      case 'unsubscribe': {
        const sub = connection.subscriptions.get(message.sub);
        if (!sub) return this.sendError(connection, message.id, 'unknown_sub', `no subscription ${JSON.stringify(message.sub)} on this connection`, undefined, message.sub);
        this.removeSubscription(sub);
        connection.send('unsubscribed', JSON.stringify({ type: 'unsubscribed', id: message.id, sub: message.sub }));
        return;
      }
      case 'command':
        this.command(connection, message);
        return;
    }
  }

  private sendError(connection: Connection, id: string | undefined, code: ProtocolErrorCode, message: string, details?: ErrorDetail[], sub?: string): void {
    const body = { type: 'error', ...(id !== undefined ? { id } : {}), ...(sub !== undefined ? { sub } : {}), code, message, ...(details && details.length > 0 ? { details } : {}) };
    connection.send('error', JSON.stringify(body));
  }

  private command(connection: Connection, message: CommandMessage): void {
    const reply = (result: ResultMessage): void => connection.send('result', JSON.stringify(result));
    const handler = this.options.commandHandler;
    if (!handler) {
      reply({ type: 'result', id: message.id, ok: false, error: { code: 'internal', message: 'job control is not enabled on this gateway' } });
      return;
    }
    if (connection.commands.size >= this.maxCommands && !connection.commands.has(message.id)) {
      reply({ type: 'result', id: message.id, ok: false, error: { code: 'too_many_commands', message: `at most ${this.maxCommands} commands in flight per connection` } });
      return;
    }
    const controller = new AbortController();
    // A repeated id is the handler's business (idempotency); keep the first controller for abort.
    if (!connection.commands.has(message.id)) connection.commands.set(message.id, controller);
    handler(message, { principal: connection.principal, connectionId: connection.id, signal: controller.signal })
      .catch((error: unknown): ResultMessage => {
        this.log.error({ err: error, connection: connection.id, command: message.id }, 'command handler failed');
        return { type: 'result', id: message.id, ok: false, error: { code: 'internal', message: 'internal error while handling the command' } };
      })
      .then((result) => {
        if (connection.commands.get(message.id) === controller) connection.commands.delete(message.id);
        reply(result);
      });
  }

  // ---- subscribe --------------------------------------------------------------------------------

  private subscribe(connection: Connection, message: SubscribeMessage): void {
    const { id, sub: subId } = message;
    if (connection.subscriptions.has(subId)) return this.sendError(connection, id, 'duplicate_sub', `subscription ${JSON.stringify(subId)} already exists on this connection`, undefined, subId);
    if (!connection.principal.scopes.has('read')) {
      return this.sendError(connection, id, 'forbidden', `token ${JSON.stringify(connection.principal.name)} has no read scope`);
    }
    if (connection.subscriptions.size >= this.maxSubscriptions) {
      return this.sendError(connection, id, 'too_many_subscriptions', `at most ${this.maxSubscriptions} subscriptions per connection`);
    }
    const known = new Set(this.hub.vms());
    for (const [i, vm] of (message.filter?.vms ?? []).entries()) {
      if (!known.has(vm)) return this.sendError(connection, id, 'unknown_vm', `no VM named ${JSON.stringify(vm)}`, [{ path: `/filter/vms/${i}`, message: 'unknown VM' }]);
      if (!canRead(connection.principal, vm)) {
        return this.sendError(connection, id, 'forbidden', `token ${JSON.stringify(connection.principal.name)} may not read VM ${JSON.stringify(vm)}`, [
          { path: `/filter/vms/${i}`, message: 'not allowed for this token' },
        ]);
      }
    }
    const intervalMs = message.progress?.intervalMs ?? this.progressIntervalMs;
    const sub = new Subscription(subId, message.filter, connection, intervalMs);
    const vms = this.hub.vms().filter((vm) => sub.coversVm(vm));

    // Live events from here on wait in `held` until the cut below has been taken.
    sub.live = false;
    connection.subscriptions.set(subId, sub);
    this.subscriptions.add(sub);
    this.stats.subscriptions = this.subscriptions.size;

    // A Map of own keys only: a VM named `toString` must not find Object.prototype's.
    const since = new Map<string, StreamPosition>();
    for (const [vm, position] of Object.entries(message.since ?? {})) if (position) since.set(vm, position);
    const reads = new Map<string, MaybePromise<HistoryRead<StreamEvent>>>();
    for (const vm of vms) {
      const position = since.get(vm);
      if (position) reads.set(vm, this.history.read(vm, position));
    }
    if ([...reads.values()].some((r) => r instanceof Promise)) {
      const names = [...reads.keys()];
      Promise.all(reads.values())
        .then((results) => this.cutAndSend(sub, id, vms, new Map(names.map((vm, i) => [vm, results[i]!])), since))
        .catch((error: unknown) => {
          this.log.error({ err: error, connection: connection.id }, 'history read failed');
          this.removeSubscription(sub);
          this.sendError(connection, id, 'internal', 'could not read the stream history; retry');
        });
    } else {
      this.cutAndSend(sub, id, vms, reads as Map<string, HistoryRead<StreamEvent>>, since);
    }
  }

  /**
   * Send `subscribed`, then per stream the replay or the snapshot and `synced`, then go live.
   *
   * A recovered stream is the history's answer plus the live events held while it was read (none
   * when the history is synchronous); together they must reach the head without a hole, otherwise
   * the stream falls back to a snapshot: never a partial replay.
   */
  private cutAndSend(sub: Subscription, requestId: string, vms: string[], reads: Map<string, HistoryRead<StreamEvent>>, since: ReadonlyMap<string, StreamPosition>): void {
    const connection = sub.connection;
    if (connection.closed || connection.subscriptions.get(sub.id) !== sub) return;
    const snapshot = new Map(this.options.source.snapshot().map((s) => [s.vm, s.jobs]));
    const streams: Record<string, { mode: 'recovered' | 'snapshot'; epoch: string; offset: number; reason?: ResetReason }> = Object.create(null);
    const positions = new Map<string, StreamPosition>();
    const replays = new Map<string, StreamEvent[]>();
    for (const vm of vms) {
      const position = this.hub.position(vm);
      positions.set(vm, position);
      const read = reads.get(vm);
      let reason: ResetReason | undefined = read && 'reset' in read ? read.reset : undefined;
      if (read && 'entries' in read) {
        const replay = contiguousReplay(since.get(vm)!.offset, read.entries, sub.held, vm, position.offset);
        if (replay) replays.set(vm, replay);
        else reason = 'offset_too_old';
      }
      if (replays.has(vm)) {
        streams[vm] = { mode: 'recovered', ...position };
        this.stats.resumes.recovered++;
      } else {
        streams[vm] = { mode: 'snapshot', ...position, ...(reason ? { reason } : {}) };
        if (reason) this.stats.resumes.snapshot++;
      }
    }
    connection.send('subscribed', JSON.stringify({ type: 'subscribed', id: requestId, sub: sub.id, streams }));

    for (const vm of vms) {
      const position = positions.get(vm)!;
      const replay = replays.get(vm);
      if (replay) {
        sub.startAt(vm, since.get(vm)!.offset);
        for (const event of replay) this.deliver(sub, event, false);
      } else {
        for (const job of snapshot.get(vm) ?? []) {
          if (!sub.matchesJob(job)) continue;
          connection.send('state', `{"type":"state","sub":${sub.subJson},"vm":${JSON.stringify(vm)},"epoch":${JSON.stringify(position.epoch)},"offset":${position.offset},"job":${JSON.stringify(job)}}`);
        }
      }
      // The stream is now accounted for up to the cut, whatever the filter let through.
      sub.startAt(vm, position.offset);
      connection.send('synced', `{"type":"synced","sub":${sub.subJson},"vm":${JSON.stringify(vm)},"epoch":${JSON.stringify(position.epoch)},"offset":${position.offset}}`);
    }

    sub.live = true;
    for (const event of sub.held.splice(0)) this.deliver(sub, event, true);
  }

  private removeSubscription(sub: Subscription): void {
    sub.connection.subscriptions.delete(sub.id);
    sub.connection.dropProgress(`${sub.id}\0`);
    this.subscriptions.delete(sub);
    this.behind.delete(sub);
    sub.dispose();
    this.stats.subscriptions = this.subscriptions.size;
  }

  private onConnectionClosed(connection: Connection, code: number): void {
    this.connections.delete(connection);
    for (const sub of connection.subscriptions.values()) this.removeSubscription(sub);
    this.stats.connections = this.connections.size;
    this.stats.disconnect(code);
    this.log.debug({ connection: connection.id, code }, 'connection closed');
  }

  // ---- fan-out ----------------------------------------------------------------------------------

  private enqueue(item: QueueItem): void {
    if (this.queue.length >= this.maxQueued) {
      if (item.kind === 'progress') return;
      // Fan-out cannot keep up at all: make every subscriber resume rather than grow without bound.
      this.log.error({ queued: this.queue.length }, 'fan-out queue overflow; closing all connections (clients resume)');
      this.queue.length = 0;
      this.fanout = undefined;
      this.drain(CloseCode.InternalError, 'gateway overloaded; reconnect and resume with since');
    }
    this.queue.push(item);
    if (!this.dispatching) this.pump();
  }

  private pump(): void {
    this.dispatching = true;

    let budget = this.fanoutChunk;
    while (this.queue.length > 0) {
      const item = this.queue[0]!;
      this.fanout ??= this.subscriptions.values();
      for (let next = this.fanout.next(); !next.done; next = this.fanout.next()) {
        if (item.kind === 'stream') this.deliver(next.value, item.event, true);
        else this.deliverProgress(next.value, item.event);
        if (--budget <= 0) {
          setImmediate(() => this.pump());
          return;
        }
      }
      this.fanout = undefined;
      this.queue.shift();
      if (item.kind === 'stream' && item.event.qmpReceivedMono !== undefined && this.subscriptions.size > 0) {
        this.stats.deliveryLag((performance.now() - item.event.qmpReceivedMono) / 1000);
      }
    }
    this.dispatching = false;
  }

  private deliver(sub: Subscription, event: StreamEvent, live: boolean): void {
    if (!sub.coversVm(event.vm)) return;
    if (!sub.live && live) {
      // Bounded by the fan-out queue: a pending cut never outlives one history round trip.
      if (sub.held.length < this.maxQueued) sub.held.push(event);
      else sub.connection.close(CloseCode.SlowConsumer, 'history read too slow; resume with since');
      return;
    }
    if (event.offset <= sub.cursor(event.vm)) return;
    const match = sub.match(event);
    if (match === 'out') {
      sub.advance(event.vm, event.offset);
      if (!sub.behindSince.has(event.vm)) sub.behindSince.set(event.vm, performance.now());
      this.behind.add(sub);
      return;
    }
    const prev = sub.markSent(event.vm, event.offset);
    const type = event.kind;
    const body = match === 'left' ? `${event.body.slice(0, -1)},"leftFilter":true}` : event.body;
    const text = `${event.prefix}${sub.subJson},"prev":${prev}${body}`;
    if (live) sub.connection.sendStream(type, text);
    else sub.connection.send(type, text);
  }

  private deliverProgress(sub: Subscription, event: ProgressEvent): void {
    if (sub.progressIntervalMs === 0 || !sub.live || !sub.coversVm(event.vm)) return;
    if (!sub.matchesJob(event.filter)) return;
    const key = `${event.vm}\0${event.job}`;
    if (sub.progressDue(key, performance.now())) {
      sub.connection.sendProgress(`${sub.id}\0${key}`, `${event.prefix}${sub.subJson}${event.body}`);
      return;
    }
    sub.progressWaiting.set(key, event);
    this.scheduleProgress(sub);
  }

  private scheduleProgress(sub: Subscription): void {
    if (sub.progressTimer !== undefined || sub.progressWaiting.size === 0) return;
    let due = Infinity;
    for (const key of sub.progressWaiting.keys()) due = Math.min(due, sub.nextProgressDue(key));
    sub.progressTimer = setTimeout(() => {
      sub.progressTimer = undefined;
      if (sub.connection.closed) return;
      const now = performance.now();
      for (const [key, event] of sub.progressWaiting) {
        if (!sub.progressDue(key, now)) continue;
        sub.progressWaiting.delete(key);
        sub.connection.sendProgress(`${sub.id}\0${key}`, `${event.prefix}${sub.subJson}${event.body}`);
      }
      this.scheduleProgress(sub);
    }, Math.max(0, due - performance.now()));
    sub.progressTimer.unref();
  }

  private sweepBookmarks(): void {
    if (this.behind.size === 0) return;
    const now = performance.now();
    for (const sub of this.behind) {
      for (const [vm, since] of sub.behindSince) {
        if (now - since < this.bookmarkQuietMs) continue;
        const offset = sub.cursor(vm);
        sub.markSent(vm, offset);
        const epoch = this.hub.position(vm).epoch;
        sub.connection.sendStream('bookmark', `{"type":"bookmark","sub":${sub.subJson},"vm":${JSON.stringify(vm)},"epoch":${JSON.stringify(epoch)},"offset":${offset}}`);
      }
      if (sub.behindSince.size === 0) this.behind.delete(sub);
    }
  }
}

export function makeGateway(options: GatewayCoreOptions): GatewayCore {
  return new GatewayCore(options);
}

/**
 * The events from `sinceOffset` (exclusive) to `head` (inclusive): the history's entries, then the
 * live events of `vm` held during the read. Undefined when they leave a hole.
 */
function contiguousReplay(sinceOffset: number, entries: readonly StreamEvent[], held: readonly StreamEvent[], vm: string, head: number): StreamEvent[] | undefined {
  const replay: StreamEvent[] = [];
  let last = sinceOffset;
  for (const event of [...entries, ...held]) {
    if (event.vm !== vm || event.offset <= last || event.offset > head) continue;
    if (event.offset !== last + 1) return undefined;
    replay.push(event);
    last = event.offset;
  }
  return last === head ? replay : undefined;
}
