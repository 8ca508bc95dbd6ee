/**
 * The gateway core: the v1 push protocol over any transport (see PROTOCOL.md). No `ws` here; a
 * transport adapter (use/ws.ts) calls `opened(socket, ctx)` and forwards messages and closes.
 *
 * It assembles the parts, each with one job:
 *   feed (stream/)        numbered per-VM streams: a local JobSource's (StreamHub) or a fleet's
 *   fanout.ts             every feed event to every subscription, in order, bounded, yielding
 *   subscribe.ts          subscribe/unsubscribe and the snapshot/replay cut
 *   subscription.ts       one subscription: cursors, held events, progress throttle, bookmarks
 *   connections.ts        the open connections, inbound limits and routing, command dispatch
 */
import type { JobSource, JobState, VmStatus } from '../jobs/types.js';
import { silentLogger, type Logger } from '../log.js';
import { CloseCode } from '../protocol/codes.js';
import { defaultProgressIntervalMs } from '../protocol/messages.js';
import { parseClientMessage, precompileValidators, type ParseResult } from '../protocol/validate.js';
import { canRead, type Principal } from './auth.js';
import type { BackpressureOptions, GatewaySocket, InboundLimits } from './connection.js';
import { Connections, type CommandHandler, type ConnectionContext, type ConnectionHooks } from './connections.js';
import { FanOut } from './fanout.js';
import { MemoryStreamHistory } from './history/memory.js';
import type { HistoryLimits, StreamHistory, StreamPosition } from './history/types.js';
import { GatewayStats } from './stats.js';
import type { StreamEvent, StreamFeed } from './stream/feed.js';
import { StreamHub } from './stream/hub.js';
import { Subscriptions } from './subscribe.js';
import { configDefaults } from '../generated/config-defaults.js';

export type { GatewaySocket } from './connection.js';
export type { CommandContext, CommandHandler, ConnectionContext, ConnectionHooks } from './connections.js';
export type { ResultMessage } from '../generated/schema-types.js';

export interface GatewayCoreOptions {
  /** Where the streams come from: a local JobSource, numbered here by a StreamHub ... */
  source?: JobSource;
  /** ... or any StreamFeed (a fleet edge). Exactly one of the two. */
  feed?: StreamFeed;
  /** Resume history of a `source`. @default an in-memory history with `historyLimits` */
  history?: StreamHistory<StreamEvent>;
  historyLimits?: HistoryLimits;
  commandHandler?: CommandHandler;
  /** Inbound message parser/validator. @default parseClientMessage */
  parse?: (raw: string) => ParseResult;
  logger?: Logger;
  /** Reported in `welcome`; the transport sends the pings. @default 25_000 */
  heartbeatMs?: number;
  /** Progress interval when a subscribe does not say. @default the schema's (msg-subscribe) */
  progressIntervalMs?: number;
  /** A filtered subscription that skipped events gets a `bookmark` after this quiet time. @default 5000 */
  bookmarkQuietMs?: number;
  /** @default 64 */
  maxSubscriptionsPerConnection?: number;
  /** Per WebSocket connection, and per token on the HTTP mirror. @default 32 */
  maxCommandsInFlight?: number;
  /** Deliveries per fan-out slice before yielding to the event loop. @default 1000 */
  fanoutChunk?: number;
  /** A fan-out slice yields to the event loop after this many ms even short of `fanoutChunk`. @default 3 */
  fanoutSliceMs?: number;
  /** Stream events waiting for fan-out; beyond it every subscriber is closed with 4500 to resume. @default 10_000 */
  maxQueuedEvents?: number;
  backpressure?: BackpressureOptions;
  inbound?: InboundLimits;
}


export interface VmJobs {
  vm: string;
  epoch: string;
  offset: number;
  status: VmStatus;
  jobs: JobState[];
}

export class GatewayCore {
  readonly stats = new GatewayStats();
  readonly feed: StreamFeed;
  private readonly fanout: FanOut;
  private readonly subscriptions: Subscriptions;
  private readonly connections: Connections;
  private readonly log: Logger;

  constructor(private readonly options: GatewayCoreOptions) {
    this.log = options.logger ?? silentLogger;
    if (!options.parse) precompileValidators(); // a broken schema fails the start, not the first client
    const maxQueued = options.maxQueuedEvents ?? 10_000;
    this.feed = options.feed ?? this.hubOf(options);
    this.fanout = new FanOut(this.stats, {
      chunk: options.fanoutChunk ?? 1000,
      // The longest stall a burst causes is about one slice plus the QMP read that triggered it and
      // a GC: at 4 ms the 10,000-subscriber burst's median stall was 9.3-9.8 ms, at 3 ms 7.3-8.0, with
      // no cost to its last delivery beyond the noise (A/B, bench/notes.md session 5).
      sliceMs: options.fanoutSliceMs ?? 3,
      maxQueued,
      bookmarkQuietMs: options.bookmarkQuietMs ?? configDefaults.bookmarkQuietMs,
      epochOf: (vm) => this.feed.position(vm).epoch,
      overflow: (queued) => {
        this.log.error({ queued }, 'fan-out queue overflow; closing all connections (clients resume)');
        this.drain(CloseCode.InternalError, 'gateway overloaded; reconnect and resume with since');
      },
    });
    this.subscriptions = new Subscriptions(this.feed, this.fanout, this.stats, this.log, {
      maxPerConnection: options.maxSubscriptionsPerConnection ?? configDefaults.limits.maxSubscriptionsPerConnection,
      progressIntervalMs: options.progressIntervalMs ?? defaultProgressIntervalMs(),
      maxHeld: maxQueued,
    });
    this.connections = new Connections(this.feed, this.subscriptions, this.stats, this.log, {
      parse: options.parse ?? parseClientMessage,
      heartbeatMs: options.heartbeatMs ?? configDefaults.heartbeatMs,
      maxCommandsInFlight: this.maxCommandsInFlight,
      ...(options.commandHandler ? { commandHandler: options.commandHandler } : {}),
      ...(options.backpressure ? { backpressure: options.backpressure } : {}),
      ...(options.inbound ? { inbound: options.inbound } : {}),
    });
  }

  async start(): Promise<void> {
    await this.feed.start({
      event: (event) => this.fanout.event(event),
      progress: (event) => this.fanout.progress(event),
      reset: (vm) => this.reset(vm),
    });
    this.fanout.start();
  }

  /** Stop following the feed; connections stay open (see drain). */
  stop(): void {
    this.feed.stop();
    this.fanout.stop();
  }

  /** Close every connection (1001 by default: the clients reconnect and resume). */
  drain(code: number = CloseCode.GoingAway, reason = 'gateway shutting down; reconnect and resume with since'): void {
    for (const connection of this.connections.all()) connection.close(code, reason);
  }

  opened(socket: GatewaySocket, ctx: ConnectionContext): ConnectionHooks {
    return this.connections.opened(socket, ctx);
  }

  /** A fan-out pass is writing to the subscribers (the transport defers its own housekeeping writes). */
  get fanningOut(): boolean {
    return this.fanout.busy;
  }

  /** Commands in flight per WebSocket connection, and per token on the HTTP mirror. */
  get maxCommandsInFlight(): number {
    return this.options.maxCommandsInFlight ?? configDefaults.limits.maxCommandsInFlight;
  }

  get commandHandler(): CommandHandler | undefined {
    return this.options.commandHandler;
  }

  get connectionCount(): number {
    return this.connections.count;
  }

  /** Connections currently open for one principal (for per-token limits). */
  connectionsOf(principalName: string): number {
    return this.connections.all().filter((c) => c.principal.name === principalName).length;
  }

  /** Every VM's monitor is connected. */
  allMonitorsUp(): { ready: boolean; down: string[] } {
    const down = [...this.monitorStatuses()].filter(([, status]) => status !== 'connected').map(([vm]) => vm);
    return { ready: down.length === 0, down };
  }

  monitorStatuses(): Map<string, VmStatus> {
    return new Map(this.feed.snapshot().map((s) => [s.vm, s.status]));
  }

  streamPositions(): Map<string, StreamPosition> {
    return new Map(this.feed.vms().map((vm) => [vm, this.feed.position(vm)]));
  }

  /** The snapshot `GET /v1/jobs` serves: every VM the principal may read, with its position. */
  jobs(principal: Principal): VmJobs[] {
    return this.feed
      .snapshot()
      .filter((s) => canRead(principal, s.vm))
      .map((s) => ({ vm: s.vm, ...this.feed.position(s.vm), status: s.status, jobs: s.jobs }));
  }

  private hubOf({ source, history, historyLimits }: GatewayCoreOptions): StreamHub {
    if (!source) throw new TypeError('GatewayCore needs a source or a feed');
    return new StreamHub(source, history ?? new MemoryStreamHistory<StreamEvent>(historyLimits), (error) => this.log.error({ err: error }, 'stream history append failed'));
  }

  /**
   * A stream lost its continuity (new epoch) or its VM is gone: what is queued for it belongs to the
   * old epoch, and its followers must resume, which gets them a snapshot with `unknown_epoch`.
   */
  private reset(vm: string): void {
    this.fanout.purge(vm);
    for (const connection of this.subscriptions.connectionsFollowing(vm)) {
      connection.close(CloseCode.InternalError, `stream ${vm} was reset; reconnect and resume with since`);
    }
  }
}
