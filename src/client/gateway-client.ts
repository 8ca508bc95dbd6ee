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
import type { CommandMessage, JobState, ResultMessage, ServerMessage, VmStatus } from '../generated/schema-types.js';
import { randomId, settleOnce, type CallOptions } from './calls.js';
import { CommandBook, type CommandRequest } from './commands.js';
import type { StreamPosition } from './cursors.js';
import { Emitter } from './emitter.js';
import { ClientBusyError, ClientClosedError, ClientConnectError, ClientTimeoutError, type ClientError } from './errors.js';
import type { GatewayClientEvents, GatewayClientOptions, SyncedOptions } from './options.js';
import { Session, type ConnectionStatus } from './session.js';
import { globalWebSocketFactory } from './socket.js';
import { ClientSubscription } from './subscription.js';
import { judgeWaiter, type Waiter, type WaitTarget } from './waiters.js';

type VerbOptions = Partial<Pick<CommandMessage, 'timeoutMs' | 'await' | 'id'>> & { signal?: AbortSignal };

export class GatewayClient {
  private readonly emitter: Emitter<GatewayClientEvents>;
  private readonly session: Session;
  private readonly subscription: ClientSubscription;
  private readonly commands: CommandBook;
  private readonly waiters = new Set<Waiter>();
  /** Settled with the next `synced`, a fatal error, or close. */
  private readonly syncWaiters = new Set<{ resolve: () => void; reject: (e: ClientError) => void; onStatus?: (s: ConnectionStatus) => void }>();
  private closed = true;
  private lastStatus: ConnectionStatus = { state: 'closed' };
  private lastConnectError: ClientError | undefined;

  constructor(private readonly options: GatewayClientOptions) {
    const urls = typeof options.urls === 'string' ? [options.urls] : [...options.urls];
    if (urls.length === 0) throw new TypeError('GatewayClient: at least one gateway URL is needed');
    const socket = options.socket ?? globalWebSocketFactory();
    if (!socket) throw new TypeError('GatewayClient: no global WebSocket here; pass `socket` (Node 20: nodeWebSocket from blockjob-gateway/client/node)');
    const token = options.token;
    this.emitter = new Emitter<GatewayClientEvents>(options.onListenerError ?? ((error, event) => console.error(`blockjob-gateway client: a '${String(event)}' listener threw`, error)));
    const idPrefix = randomId();
    this.subscription = new ClientSubscription(
      {
        idPrefix,
        filter: options.filter,
        progressIntervalMs: options.progressIntervalMs,
        maxSnapshotJobsPerVm: options.maxSnapshotJobsPerVm ?? 10_000,
        maxFinishedJobsPerVm: options.maxFinishedJobsPerVm ?? 100,
        since: options.since,
      },
      this.emitter,
      {
        send: (message) => this.session.send(message),
        caughtUp: () => this.caughtUp(),
        jobChanged: (vm, id, latest) => this.checkJob(vm, id, latest),
        fatal: (error) => {
          this.session.close(error);
          this.fail(error);
        },
      },
    );
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
    this.commands = new CommandBook(
      { isOpen: () => this.session.open, whenOpen: (options) => this.whenOpen(options), send: (message) => this.session.send(message) },
      options.maxPendingCommands ?? 64,
      idPrefix,
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
    this.subscription.stop();
    this.session.close();
    this.rejectAll(new ClientClosedError());
  }

  get status(): ConnectionStatus {
    return this.lastStatus;
  }

  /** The latest state of a job the subscription covers. */
  job(vm: string, id: string): JobState | undefined {
    return this.subscription.jobs.get(vm, id);
  }

  /** Every job in the live map, or one VM's. */
  jobs(vm?: string): JobState[] {
    const map = this.subscription.jobs;
    return vm === undefined ? map.all() : map.of(vm);
  }

  /** Each VM the token may see, with its monitor's status. */
  get vms(): ReadonlyMap<string, VmStatus> {
    return this.subscription.vmStatus;
  }

  /** Last applied position per VM stream: what a resume sends as `since`. */
  get since(): Record<string, StreamPosition> {
    return this.subscription.since;
  }

  /**
   * Resolves once the subscription has caught up (the job map is complete). Rejects on a refusal,
   * close, abort, `timeoutMs` (CLIENT_ERR_CONNECT_TIMEOUT when no connection ever opened, with the
   * last attempt's cause), or with `failFast` as soon as every URL failed once.
   */
  synced(options: SyncedOptions = {}): Promise<void> {
    if (this.closed) return Promise.reject(new ClientClosedError());
    if (this.subscription.synced && this.session.open) return Promise.resolve();
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
      if (this.subscription.synced) judgeWaiter(waiter, this.subscription.jobs.get(vm, job));
      return () => this.waiters.delete(waiter);
    }, () => {
      const last = this.subscription.jobs.get(vm, job);
      return new ClientTimeoutError(`${vm}/${job} was not ${target} within ${options.timeoutMs} ms${last ? ` (it is ${last.state})` : ' (not seen yet)'}`, last);
    });
  }

  /**
   * Sends a job command once connected and resolves with the gateway's `result` (ok or not: a refusal
   * is an answer, not an exception). Rejects when the connection drops while it is in flight
   * (CLIENT_ERR_OUTCOME_UNKNOWN: resend with the same `id` to learn the outcome), on timeout, abort, close.
   */
  command(request: CommandRequest, options: CallOptions = {}): Promise<ResultMessage> {
    if (this.closed) return Promise.reject(new ClientClosedError());
    return this.commands.send(request, options);
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
      this.subscription.subscribe();
    }
    this.emitter.emit('status', status);
    for (const waiter of [...this.syncWaiters]) waiter.onStatus?.(status);
  }

  private onDown(): void {
    this.subscription.down();
    this.commands.dropped();
  }

  private fail(error: ClientError): void {
    this.closed = true;
    this.subscription.stop();
    this.rejectAll(error);
    this.emitter.emit('error', error);
  }

  private rejectAll(error: ClientError): void {
    for (const waiter of [...this.syncWaiters]) waiter.reject(error);
    for (const waiter of [...this.waiters]) waiter.settle({ error });
    this.commands.rejectAll(error);
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

  // --- messages -------------------------------------------------------------------------------------

  private receive(message: ServerMessage): void {
    switch (message.type) {
      case 'welcome':
        this.subscription.welcome(message);
        this.emitter.emit('message', message);
        this.emitter.emit('welcome', message);
        return;
      case 'result':
        this.emitter.emit('message', message);
        this.commands.result(message);
        return;
      case 'error':
        this.emitter.emit('message', message);
        // A refused command is answered; anything else is about the subscription.
        if (!this.commands.refused(message)) this.subscription.refused(message);
        return;
      case 'pong':
      case 'unsubscribed':
        return;
      default:
        this.subscription.receive(message);
    }
  }

  private caughtUp(): void {
    for (const waiter of [...this.syncWaiters]) waiter.resolve();
    this.emitter.emit('synced', undefined);
    for (const waiter of [...this.waiters]) judgeWaiter(waiter, this.subscription.jobs.get(waiter.vm, waiter.job));
  }

  /** `latest`: the state just seen, also when it left the map (an event with leftFilter). */
  private checkJob(vm: string, id: string, latest?: JobState): void {
    for (const waiter of [...this.waiters]) if (waiter.vm === vm && waiter.job === id) judgeWaiter(waiter, latest ?? this.subscription.jobs.get(vm, id));
  }

  private urlCount(): number {
    return typeof this.options.urls === 'string' ? 1 : this.options.urls.length;
  }
}
