/**
 * `blockjob-gateway/client`: the protocol client for services and the dashboard. One subscription,
 * resumed with `since` across reconnects and gateways (failover), every stream message applied
 * exactly once, a live job map, `waitFor` a job to be ready or concluded, and a helper per job verb.
 * It imports nothing from Node, so the same module runs in browsers (the gateway serves its build).
 *
 *   const client = new GatewayClient({ urls: ['ws://gw1:8080', 'ws://gw2:8080'], socket: nodeWebSocket });
 *   client.on('transition', (event) => ...);
 *   client.start();
 *   const job = await client.waitFor('vm1', 'mirror0', 'ready', { timeoutMs: 600_000 });
 *   const result = await client.complete('vm1', 'mirror0', { await: 'concluded' });
 */
import type {
  CommandMessage,
  EventMessage,
  JobState,
  ProgressMessage,
  ResultMessage,
  ServerMessage,
  SubscriptionFilter,
  VmMessage,
  VmStatus,
  WelcomeMessage,
} from '../generated/schema-types.js';
import type { ReconnectPolicy } from '../backoff.js';
import { StreamCursors, type StreamPosition } from './cursors.js';
import { randomId, settleOnce, type CallOptions } from './calls.js';
import { Emitter } from './emitter.js';
import {
  ClientBusyError,
  ClientClosedError,
  ClientConnectError,
  ClientOutcomeUnknownError,
  ClientSnapshotTooLargeError,
  ClientSubscribeError,
  ClientTimeoutError,
  type ClientError,
} from './errors.js';
import { JobMap } from './job-map.js';
import { Session, type ConnectionStatus } from './session.js';
import { judgeWaiter, type Waiter, type WaitTarget } from './waiters.js';
import { globalWebSocketFactory, type WebSocketFactory } from './socket.js';

export interface GatewayClientOptions {
  /** One gateway URL or several (tried in turn: failover). `ws://HOST:PORT`, `.../v1/ws`, or http(s). */
  urls: string | readonly string[];
  /** The platform's WebSocket when absent (browsers, Node >= 22); Node 20: `nodeWebSocket` from `blockjob-gateway/client/node`. */
  socket?: WebSocketFactory;
  /** Bearer token, or a function read on every (re)connect. */
  token?: string | (() => string | undefined);
  /** Which jobs the live map and the events cover (PROTOCOL.md, subscribe). @default everything */
  filter?: SubscriptionFilter;
  /** `progress` messages at most this often per job; 0 = none. @default the gateway's */
  progressIntervalMs?: number;
  /** An attempt fails when no `welcome` arrives this long after it started. @default 10000 */
  connectTimeoutMs?: number;
  /** Reconnect delays (exponential, capped, jittered). @default { initialDelayMs: 250, maxDelayMs: 15000 } */
  backoff?: ReconnectPolicy;
  /** Commands awaiting their result at once. @default 64 */
  maxPendingCommands?: number;
  /** `waitFor`s at once. @default 1024 */
  maxWaiters?: number;
  /** Concluded and dismissed jobs the live map keeps per VM (oldest go first). @default 100 */
  maxFinishedJobsPerVm?: number;
  /** Resume these VM streams from these positions on the first subscribe (their history is replayed). @default none: a snapshot */
  since?: Record<string, StreamPosition>;
  /** Jobs one VM's snapshot may hold while it is staged until `synced`; past it the client stops. @default 10000 */
  maxSnapshotJobsPerVm?: number;
  /** Aborting it closes the client. */
  signal?: AbortSignal;
  /** Where an exception thrown by an event listener goes. @default console.error */
  onListenerError?: (error: unknown, event: string) => void;
}

export interface SnapshotEvent {
  vm: string;
  jobs: JobState[];
  status?: VmStatus;
}

/** What `on(...)` can listen to. */
export interface GatewayClientEvents {
  status: ConnectionStatus;
  welcome: WelcomeMessage;
  /** A VM's jobs were replaced by a snapshot (first subscribe, or a resume the history could not serve). */
  snapshot: SnapshotEvent;
  /** A job changed state (each exactly once, in stream order); with `leftFilter` it no longer matches the filter and left the map. */
  transition: EventMessage;
  vm: VmMessage;
  progress: { message: ProgressMessage; job: JobState };
  /** Every stream covered by the subscription has caught up; the job map is complete. */
  synced: void;
  /** Every message about the subscription, commands and errors, deduplicated, in order (not pongs or bookmarks): for logs and `watch --json`. */
  message: ServerMessage;
  /** The client stopped for good (a refused connection or subscription); it is closed. */
  error: ClientError;
}

export interface SyncedOptions extends CallOptions {
  /** Reject as soon as every URL failed once, instead of retrying until the timeout. */
  failFast?: boolean;
}

export type CommandRequest = Omit<CommandMessage, 'type' | 'id'> & { id?: string };
type VerbOptions = Partial<Pick<CommandMessage, 'timeoutMs' | 'await' | 'id'>> & { signal?: AbortSignal };

/** Time the client waits for a result beyond the command's own `timeoutMs` (the gateway answers by then). */
const RESULT_GRACE_MS = 10_000;
/** Transient subscribe refusals (rate limits, too many subscriptions) are retried after this long. */
const SUBSCRIBE_RETRY_MS = 2_000;

export class GatewayClient {
  private readonly emitter: Emitter<GatewayClientEvents>;
  private readonly session: Session;
  private readonly cursors = new StreamCursors();
  private readonly jobMap: JobMap;
  private readonly vmStatus = new Map<string, VmStatus>();
  private readonly pending = new Map<string, { resolve: (r: ResultMessage) => void; reject: (e: ClientError) => void }>();
  private readonly waiters = new Set<Waiter>();
  /** Settled with the next `synced`, a fatal error, or close. */
  private readonly syncWaiters = new Set<{ resolve: () => void; reject: (e: ClientError) => void; onStatus?: (s: ConnectionStatus) => void }>();
  private readonly staging = new Map<string, JobState[]>();
  private readonly unsynced = new Set<string>();
  private readonly idPrefix = randomId();
  private sub: string | undefined;
  private subCount = 0;
  private commandCount = 0;
  /** Commands waiting for a connection before they can be sent (they count against maxPendingCommands). */
  private awaitingOpen = 0;
  private isSynced = false;
  private closed = true;
  private lastStatus: ConnectionStatus = { state: 'closed' };
  private lastConnectError: ClientError | undefined;
  private subscribeTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(private readonly options: GatewayClientOptions) {
    const urls = typeof options.urls === 'string' ? [options.urls] : [...options.urls];
    if (urls.length === 0) throw new TypeError('GatewayClient: at least one gateway URL is needed');
    const socket = options.socket ?? globalWebSocketFactory();
    if (!socket) throw new TypeError('GatewayClient: no global WebSocket here; pass `socket` (Node 20: nodeWebSocket from blockjob-gateway/client/node)');
    const token = options.token;
    this.emitter = new Emitter<GatewayClientEvents>(options.onListenerError ?? ((error, event) => console.error(`blockjob-gateway client: a '${String(event)}' listener threw`, error)));
    this.jobMap = new JobMap(options.maxFinishedJobsPerVm ?? 100);
    for (const [vm, position] of Object.entries(options.since ?? {})) this.cursors.set(vm, position);
    this.session = new Session(
      {
        urls,
        socket,
        token: typeof token === 'function' ? token : () => token,
        connectTimeoutMs: options.connectTimeoutMs ?? 10_000,
        backoff: { initialDelayMs: 250, maxDelayMs: 15_000, ...options.backoff },
      },
      {
        message: (message) => this.receive(message),
        status: (status) => this.onStatus(status),
        down: () => this.onDown(),
        fatal: (error) => this.fail(error),
      },
    );
    options.signal?.addEventListener('abort', () => this.close(), { once: true });
  }

  /** Creates a client, starts it and resolves once its job map is complete. */
  static async connect(options: GatewayClientOptions, synced: SyncedOptions = {}): Promise<GatewayClient> {
    const client = new GatewayClient(options);
    client.start();
    try {
      await client.synced(synced);
    } catch (error) {
      client.close();
      throw error;
    }
    return client;
  }

  on<K extends keyof GatewayClientEvents>(event: K, listener: (payload: GatewayClientEvents[K]) => void): () => void {
    return this.emitter.on(event, listener);
  }

  off<K extends keyof GatewayClientEvents>(event: K, listener: (payload: GatewayClientEvents[K]) => void): void {
    this.emitter.off(event, listener);
  }

  /** Connects (again, after close or a refusal); the job map and stream positions are kept for the resume. */
  start(): void {
    if (this.options.signal?.aborted || !this.closed) return;
    this.closed = false;
    this.session.start();
  }

  /** Stops for good: the socket closes, every waiting call is rejected with CLIENT_ERR_CLOSED. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.subscribeTimer);
    this.session.close();
    this.rejectAll(new ClientClosedError());
  }

  get status(): ConnectionStatus {
    return this.lastStatus;
  }

  /** The latest state of a job the subscription covers. */
  job(vm: string, id: string): JobState | undefined {
    return this.jobMap.get(vm, id);
  }

  /** Every job in the live map, or one VM's. */
  jobs(vm?: string): JobState[] {
    return vm === undefined ? this.jobMap.all() : this.jobMap.of(vm);
  }

  /** Each VM the token may see, with its monitor's status. */
  get vms(): ReadonlyMap<string, VmStatus> {
    return this.vmStatus;
  }

  /** Last applied position per VM stream: what a resume sends as `since`. */
  get since(): Record<string, StreamPosition> {
    return this.cursors.since() ?? {};
  }

  /**
   * Resolves once the subscription has caught up (the job map is complete). Rejects on a refusal,
   * close, abort, `timeoutMs` (CLIENT_ERR_CONNECT_TIMEOUT when no connection ever opened, with the
   * last attempt's cause), or with `failFast` as soon as every URL failed once.
   */
  synced(options: SyncedOptions = {}): Promise<void> {
    if (this.closed) return Promise.reject(new ClientClosedError());
    if (this.isSynced && this.session.open) return Promise.resolve();
    if (this.syncWaiters.size >= (this.options.maxWaiters ?? 1024)) return Promise.reject(new ClientBusyError(`${this.syncWaiters.size} synced calls already wait (maxWaiters)`));
    return settleOnce(options, (resolve, reject) => {
      const waiter = {
        resolve,
        reject,
        ...(options.failFast
          ? {
              onStatus: (status: ConnectionStatus) => {
                if (status.state === 'reconnecting' && !status.wasOpen && status.error && status.attempt >= this.urlCount()) reject(status.error);
              },
            }
          : {}),
      };
      this.syncWaiters.add(waiter);
      return () => this.syncWaiters.delete(waiter);
    }, () => this.session.open
      ? new ClientTimeoutError(`the subscription did not catch up within ${options.timeoutMs} ms`)
      : new ClientConnectError(
          this.session.url,
          this.lastConnectError ? `${this.lastConnectError.message.replace(/^cannot connect to \S+: /, '')}; gave up after ${options.timeoutMs} ms` : `no answer within ${options.timeoutMs} ms`,
          { timedOut: true, ...(this.lastConnectError ? { cause: this.lastConnectError } : {}) },
        ));
  }

  /**
   * Resolves with the job's state once it is ready to complete ('ready': `ready` true and not ended)
   * or has ended ('concluded': concluded or dismissed, any outcome; read `outcome` and `pivoted`).
   * 'ready' rejects with CLIENT_ERR_JOB_ENDED when the job ends instead (its `wasReady` tells whether
   * it had been ready). The job must be covered by the client's filter; a job not there yet is awaited.
   */
  waitFor(vm: string, job: string, target: WaitTarget, options: CallOptions = {}): Promise<JobState> {
    if (this.closed) return Promise.reject(new ClientClosedError());
    if (this.waiters.size >= (this.options.maxWaiters ?? 1024)) return Promise.reject(new ClientBusyError(`${this.waiters.size} waitFor calls already wait (maxWaiters)`));
    return settleOnce<JobState>(options, (resolve, reject) => {
      const waiter: Waiter = {
        vm,
        job,
        target,
        sawReady: false,
        settle: (outcome) => ('job' in outcome ? resolve(outcome.job) : reject(outcome.error)),
      };
      this.waiters.add(waiter);
      if (this.isSynced) judgeWaiter(waiter, this.jobMap.get(vm, job));
      return () => this.waiters.delete(waiter);
    }, () => {
      const last = this.jobMap.get(vm, job);
      return new ClientTimeoutError(`${vm}/${job} was not ${target} within ${options.timeoutMs} ms${last ? ` (it is ${last.state})` : ' (not seen yet)'}`, last);
    });
  }

  /**
   * Sends a job command once connected and resolves with the gateway's `result` (ok or not: a refusal
   * is an answer, not an exception). Rejects when the connection drops while it is in flight
   * (CLIENT_ERR_OUTCOME_UNKNOWN: resend with the same `id` to learn the outcome), on timeout, abort, close.
   */
  async command(request: CommandRequest, options: CallOptions = {}): Promise<ResultMessage> {
    if (this.closed) throw new ClientClosedError();
    const limit = this.options.maxPendingCommands ?? 64;
    if (this.pending.size + this.awaitingOpen >= limit) throw new ClientBusyError(`${limit} commands already await their result (maxPendingCommands)`);
    const started = Date.now();
    if (!this.session.open) {
      this.awaitingOpen++;
      try {
        await this.whenOpen(options);
      } finally {
        this.awaitingOpen--;
      }
    }
    const id = request.id ?? `${this.idPrefix}-${++this.commandCount}`;
    const message = { ...request, type: 'command', id };
    const budget = options.timeoutMs ?? (request.timeoutMs !== undefined ? request.timeoutMs + RESULT_GRACE_MS : undefined);
    const remaining = budget === undefined ? undefined : Math.max(0, budget - (Date.now() - started));
    return settleOnce<ResultMessage>(
      { ...options, ...(remaining !== undefined ? { timeoutMs: remaining } : {}) },
      (resolve, reject) => {
        this.pending.set(id, { resolve, reject });
        if (!this.session.send(message)) reject(new ClientOutcomeUnknownError(`the connection dropped before ${request.action} could be sent`));
        return () => this.pending.delete(id);
      },
      () => new ClientTimeoutError(`no result for ${request.action} ${request.vm}/${request.job} within ${remaining} ms; it may still take effect`),
    );
  }

  complete(vm: string, job: string, options: VerbOptions & Pick<CommandMessage, 'when'> = {}): Promise<ResultMessage> {
    return this.verb('complete', vm, job, options);
  }
  cancel(vm: string, job: string, options: VerbOptions & Pick<CommandMessage, 'force'> = {}): Promise<ResultMessage> {
    return this.verb('cancel', vm, job, options);
  }
  pause(vm: string, job: string, options: VerbOptions = {}): Promise<ResultMessage> {
    return this.verb('pause', vm, job, options);
  }
  resume(vm: string, job: string, options: VerbOptions = {}): Promise<ResultMessage> {
    return this.verb('resume', vm, job, options);
  }
  /** Bytes/s; 0 = unlimited. */
  setSpeed(vm: string, job: string, speed: number, options: VerbOptions = {}): Promise<ResultMessage> {
    return this.verb('set-speed', vm, job, { ...options, speed });
  }
  finalize(vm: string, job: string, options: VerbOptions = {}): Promise<ResultMessage> {
    return this.verb('finalize', vm, job, options);
  }
  dismiss(vm: string, job: string, options: VerbOptions = {}): Promise<ResultMessage> {
    return this.verb('dismiss', vm, job, options);
  }

  private verb(action: CommandMessage['action'], vm: string, job: string, options: VerbOptions & Partial<CommandMessage>): Promise<ResultMessage> {
    const { signal, ...fields } = options;
    return this.command({ ...fields, vm, job, action }, signal ? { signal } : {});
  }

  // --- connection -----------------------------------------------------------------------------------

  private onStatus(status: ConnectionStatus): void {
    this.lastStatus = status;
    if (status.state === 'reconnecting' && status.error) this.lastConnectError = status.error;
    if (status.state === 'open') {
      this.lastConnectError = undefined;
      this.subscribe();
    }
    this.emitter.emit('status', status);
    for (const waiter of [...this.syncWaiters]) waiter.onStatus?.(status);
  }

  private onDown(): void {
    this.isSynced = false;
    this.sub = undefined;
    clearTimeout(this.subscribeTimer);
    this.staging.clear();
    for (const { reject } of [...this.pending.values()]) {
      reject(new ClientOutcomeUnknownError('the connection dropped before the result arrived: the command may or may not have taken effect; the job state shows what happened'));
    }
    this.pending.clear();
  }

  private fail(error: ClientError): void {
    this.closed = true;
    clearTimeout(this.subscribeTimer);
    this.rejectAll(error);
    this.emitter.emit('error', error);
  }

  private rejectAll(error: ClientError): void {
    for (const waiter of [...this.syncWaiters]) waiter.reject(error);
    for (const waiter of [...this.waiters]) waiter.settle({ error });
    for (const { reject } of [...this.pending.values()]) reject(error);
    this.pending.clear();
  }

  private whenOpen(options: CallOptions): Promise<void> {
    return settleOnce<void>(options, (resolve, reject) => {
      const off = this.emitter.on('status', (status) => {
        if (status.state === 'open') resolve();
        else if (status.state === 'closed') reject(status.error ?? new ClientClosedError());
      });
      return off;
    }, () => new ClientConnectError(this.session.url, `not connected within ${options.timeoutMs} ms`, { timedOut: true, cause: this.lastConnectError }));
  }

  // --- subscription ---------------------------------------------------------------------------------

  private subscribe(): void {
    clearTimeout(this.subscribeTimer);
    this.sub = `${this.idPrefix}-s${++this.subCount}`;
    this.staging.clear();
    this.unsynced.clear();
    this.isSynced = false;
    const message: Record<string, unknown> = { type: 'subscribe', id: this.sub, sub: this.sub };
    if (this.options.filter) message.filter = this.options.filter;
    if (this.options.progressIntervalMs !== undefined) message.progress = { intervalMs: this.options.progressIntervalMs };
    const since = this.cursors.since();
    if (since) message.since = since;
    this.session.send(message);
  }

  /** A gap: leave the subscription and resume from the last applied positions. */
  private resubscribe(): void {
    if (this.sub) this.session.send({ type: 'unsubscribe', id: `${this.sub}-u`, sub: this.sub });
    this.subscribe();
  }

  private receive(message: ServerMessage): void {
    switch (message.type) {
      case 'welcome':
        for (const stream of message.vms) this.vmStatus.set(stream.vm, stream.status);
        this.emitter.emit('message', message);
        this.emitter.emit('welcome', message);
        return;
      case 'result': {
        const pending = this.pending.get(message.id);
        this.pending.delete(message.id);
        this.emitter.emit('message', message);
        pending?.resolve(message);
        return;
      }
      case 'error':
        this.emitter.emit('message', message);
        this.refused(message);
        return;
      case 'pong':
      case 'unsubscribed':
        return;
      default:
        break;
    }
    if (message.sub !== this.sub) return; // a subscription we already left
    switch (message.type) {
      case 'subscribed':
        for (const [vm, stream] of Object.entries(message.streams)) {
          this.unsynced.add(vm);
          if (stream?.mode === 'snapshot') {
            this.cursors.forget(vm);
            this.staging.set(vm, []);
          }
        }
        this.emitter.emit('message', message);
        if (this.unsynced.size === 0) this.caughtUp();
        return;
      case 'state': {
        const staged = this.staging.get(message.vm);
        const limit = this.options.maxSnapshotJobsPerVm ?? 10_000;
        if (staged && staged.length >= limit) {
          const error = new ClientSnapshotTooLargeError(message.vm, limit);
          this.session.close(error);
          this.fail(error);
          return;
        }
        staged?.push(message.job);
        this.emitter.emit('message', message);
        return;
      }
      case 'synced': {
        this.cursors.set(message.vm, message);
        if (message.status) this.vmStatus.set(message.vm, message.status);
        const staged = this.staging.get(message.vm);
        this.emitter.emit('message', message);
        if (staged) {
          this.staging.delete(message.vm);
          this.jobMap.replace(message.vm, staged);
          this.emitter.emit('snapshot', { vm: message.vm, jobs: staged, ...(message.status ? { status: message.status } : {}) });
          for (const job of staged) this.checkJob(message.vm, job.id);
        }
        this.unsynced.delete(message.vm);
        if (this.unsynced.size === 0 && !this.isSynced) this.caughtUp();
        return;
      }
      case 'event':
      case 'vm': {
        const verdict = this.cursors.accept(message);
        if (verdict === 'duplicate') return;
        if (verdict === 'gap') {
          this.resubscribe();
          return;
        }
        this.emitter.emit('message', message);
        if (message.type === 'vm') {
          this.vmStatus.set(message.vm, message.status);
          this.emitter.emit('vm', message);
        } else {
          // A job that no longer matches the filter leaves the map; the event still tells how it left.
          if (message.leftFilter) this.jobMap.remove(message.vm, message.job.id);
          else this.jobMap.put(message.job);
          this.emitter.emit('transition', message);
          this.checkJob(message.vm, message.job.id, message.job);
        }
        return;
      }
      case 'bookmark':
        this.cursors.bookmark(message.vm, message);
        return;
      case 'progress': {
        const job = this.jobMap.progress(message.vm, message.job, message.incarnation, message.progress);
        this.emitter.emit('message', message);
        if (job) this.emitter.emit('progress', { message, job });
        return;
      }
      default:
        return;
    }
  }

  private caughtUp(): void {
    this.isSynced = true;
    for (const waiter of [...this.syncWaiters]) waiter.resolve();
    this.emitter.emit('synced', undefined);
    for (const waiter of [...this.waiters]) judgeWaiter(waiter, this.jobMap.get(waiter.vm, waiter.job));
  }

  /** An `error` message: a refused subscription stops the client unless retrying can help; a refused command is answered. */
  private refused(message: Extract<ServerMessage, { type: 'error' }>): void {
    const pending = message.id === undefined ? undefined : this.pending.get(message.id);
    if (pending && message.id !== undefined) {
      this.pending.delete(message.id);
      const code = message.code === 'invalid_message' || message.code === 'forbidden' ? message.code : message.code === 'rate_limited' ? 'too_many_commands' : 'internal';
      pending.resolve({ type: 'result', id: message.id, ok: false, error: { code, message: message.message } });
      return;
    }
    if (message.sub === undefined || message.sub !== this.sub) return;
    if (message.code === 'rate_limited' || message.code === 'too_many_subscriptions' || message.code === 'internal') {
      this.subscribeTimer = setTimeout(() => this.subscribe(), SUBSCRIBE_RETRY_MS);
      return;
    }
    const error = new ClientSubscribeError(message.code, message.message);
    this.session.close(error);
    this.fail(error);
  }

  /** `latest`: the state just seen, also when it left the map (an event with leftFilter). */
  private checkJob(vm: string, id: string, latest?: JobState): void {
    if (!this.isSynced) return;
    for (const waiter of [...this.waiters]) if (waiter.vm === vm && waiter.job === id) judgeWaiter(waiter, latest ?? this.jobMap.get(vm, id));
  }

  private urlCount(): number {
    return typeof this.options.urls === 'string' ? 1 : this.options.urls.length;
  }
}
