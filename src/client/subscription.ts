/**
 * The client's one subscription and the live state it feeds: subscribe (resuming with `since` from
 * the last applied positions), stage each VM's snapshot until its `synced`, apply every stream
 * message exactly once (a gap resubscribes from the last applied position), and keep the job map and
 * the VM statuses. Subscribing again on every (re)connect is the client's call; what a catch-up or a
 * changed job means for waiters is the client's too.
 */
import type { JobState, ServerMessage, SubscriptionFilter, VmStatus, WelcomeMessage } from '../generated/schema-types.js';
import { StreamCursors, type StreamPosition } from './cursors.js';
import type { Emitter } from './emitter.js';
import { ClientSnapshotTooLargeError, ClientSubscribeError, type ClientError } from './errors.js';
import { JobMap } from './job-map.js';
import type { GatewayClientEvents } from './options.js';

/** What is about a subscription (everything the client does not answer itself). */
export type SubscriptionMessage = Exclude<ServerMessage, { type: 'welcome' | 'result' | 'error' | 'pong' | 'unsubscribed' }>;

/** Transient subscribe refusals (rate limits, too many subscriptions) are retried after this long. */
const SUBSCRIBE_RETRY_MS = 2_000;

export interface SubscriptionSettings {
  readonly idPrefix: string;
  readonly filter?: SubscriptionFilter;
  readonly progressIntervalMs?: number;
  readonly maxSnapshotJobsPerVm: number;
  readonly maxFinishedJobsPerVm: number;
  readonly since?: Record<string, StreamPosition>;
}

export interface SubscriptionHooks {
  send(message: object): void;
  /** Every covered stream has caught up. */
  caughtUp(): void;
  /** A job changed once synced; `latest` is its state also when it left the map. */
  jobChanged(vm: string, id: string, latest?: JobState): void;
  /** The subscription cannot go on (refused, or a snapshot past its bound): the client stops. */
  fatal(error: ClientError): void;
}

export class ClientSubscription {
  readonly jobs: JobMap;
  readonly vmStatus = new Map<string, VmStatus>();
  private readonly cursors = new StreamCursors();
  private readonly staging = new Map<string, JobState[]>();
  private readonly unsynced = new Set<string>();
  private sub: string | undefined;
  private count = 0;
  private isSynced = false;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    private readonly settings: SubscriptionSettings,
    private readonly emitter: Emitter<GatewayClientEvents>,
    private readonly hooks: SubscriptionHooks,
  ) {
    this.jobs = new JobMap(settings.maxFinishedJobsPerVm);
    for (const [vm, position] of Object.entries(settings.since ?? {})) this.cursors.set(vm, position);
  }

  /** Every covered stream has caught up on this connection: the job map is complete. */
  get synced(): boolean {
    return this.isSynced;
  }

  /** Last applied position per VM stream: what a resume sends as `since`. */
  get since(): Record<string, StreamPosition> {
    return this.cursors.since() ?? {};
  }

  subscribe(): void {
    clearTimeout(this.retryTimer);
    this.sub = `${this.settings.idPrefix}-s${++this.count}`;
    this.staging.clear();
    this.unsynced.clear();
    this.isSynced = false;
    const message: Record<string, unknown> = { type: 'subscribe', id: this.sub, sub: this.sub };
    if (this.settings.filter) message.filter = this.settings.filter;
    if (this.settings.progressIntervalMs !== undefined) message.progress = { intervalMs: this.settings.progressIntervalMs };
    const since = this.cursors.since();
    if (since) message.since = since;
    this.hooks.send(message);
  }

  /** The connection dropped: the subscription is gone with it; the positions stay for the resume. */
  down(): void {
    this.isSynced = false;
    this.sub = undefined;
    clearTimeout(this.retryTimer);
    this.staging.clear();
  }

  /** The client stopped: no retry may fire. */
  stop(): void {
    clearTimeout(this.retryTimer);
  }

  welcome(message: WelcomeMessage): void {
    for (const stream of message.vms) this.vmStatus.set(stream.vm, stream.status);
  }

  /** An `error` message about the subscription: retried when retrying can help, else fatal. */
  refused(message: Extract<ServerMessage, { type: 'error' }>): void {
    if (message.sub === undefined || message.sub !== this.sub) return;
    if (message.code === 'rate_limited' || message.code === 'too_many_subscriptions' || message.code === 'internal') {
      this.retryTimer = setTimeout(() => this.subscribe(), SUBSCRIBE_RETRY_MS);
      return;
    }
    this.hooks.fatal(new ClientSubscribeError(message.code, message.message));
  }

  /** A message that carries a `sub`: applied when it is about the current subscription. */
  receive(message: SubscriptionMessage): void {
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
        const limit = this.settings.maxSnapshotJobsPerVm;
        if (staged && staged.length >= limit) {
          this.hooks.fatal(new ClientSnapshotTooLargeError(message.vm, limit));
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
          this.jobs.replace(message.vm, staged);
          this.emitter.emit('snapshot', { vm: message.vm, jobs: staged, ...(message.status ? { status: message.status } : {}) });
          for (const job of staged) this.changed(message.vm, job.id);
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
          if (message.leftFilter) this.jobs.remove(message.vm, message.job.id);
          else this.jobs.put(message.job);
          this.emitter.emit('transition', message);
          this.changed(message.vm, message.job.id, message.job);
        }
        return;
      }
      case 'bookmark':
        this.cursors.bookmark(message.vm, message);
        return;
      case 'progress': {
        const job = this.jobs.progress(message.vm, message.job, message.incarnation, message.progress);
        this.emitter.emit('message', message);
        if (job) this.emitter.emit('progress', { message, job });
        return;
      }
      default:
        return;
    }
  }

  /** A gap: leave the subscription and resume from the last applied positions. */
  private resubscribe(): void {
    if (this.sub) this.hooks.send({ type: 'unsubscribe', id: `${this.sub}-u`, sub: this.sub });
    this.subscribe();
  }

  private caughtUp(): void {
    this.isSynced = true;
    this.hooks.caughtUp();
  }

  private changed(vm: string, id: string, latest?: JobState): void {
    if (this.isSynced) this.hooks.jobChanged(vm, id, latest);
  }
}
