/**
 * One client subscription: its filter, its position on each VM stream, and its progress throttle.
 *
 * Per stream it keeps two offsets: `cursor`, the last stream offset it has accounted for (sent or
 * filtered out; events at or below it are already covered by the snapshot or the replay), and
 * `prev`, the last offset it actually sent (the `prev` of its next message).
 */
import type { SubscriptionFilter } from '../generated/schema-types.js';
import { canRead } from './auth.js';
import type { Connection } from './connection.js';
import type { ProgressEvent, StreamEvent } from './streams.js';

export class Subscription {
  readonly subJson: string;
  private readonly vms: ReadonlySet<string> | null;
  private readonly jobs: ReadonlySet<string> | null;
  private readonly types: ReadonlySet<string> | null;
  private readonly states: ReadonlySet<string> | null;
  private readonly cursors = new Map<string, number>();
  private readonly prevs = new Map<string, number>();
  /** Per stream: when it first fell behind (events filtered out since the last message). */
  readonly behindSince = new Map<string, number>();
  /** False while an asynchronous replay is pending; live events wait in `held`. */
  live = true;
  readonly held: StreamEvent[] = [];

  // Progress throttle: per job, when the last progress went out and the newest one waiting.
  private readonly progressSentAt = new Map<string, number>();
  readonly progressWaiting = new Map<string, ProgressEvent>();
  progressTimer: NodeJS.Timeout | undefined;

  constructor(
    readonly id: string,
    filter: SubscriptionFilter | undefined,
    readonly connection: Connection,
    readonly progressIntervalMs: number,
  ) {
    this.subJson = JSON.stringify(id);
    this.vms = toSet(filter?.vms);
    this.jobs = toSet(filter?.jobs);
    this.types = toSet(filter?.types);
    this.states = toSet(filter?.states);
  }

  get filtered(): boolean {
    return this.jobs !== null || this.types !== null || this.states !== null;
  }

  coversVm(vm: string): boolean {
    return (this.vms === null || this.vms.has(vm)) && canRead(this.connection.principal, vm);
  }

  matchesJob(job: { id: string; type: string; state: string }): boolean {
    return (
      (this.jobs === null || this.jobs.has(job.id)) &&
      (this.types === null || this.types.has(job.type)) &&
      (this.states === null || this.states.has(job.state))
    );
  }

  /**
   * `in` when the event matches; `left` when the job matched before this change and no longer does
   * (the subscriber was shown it, so it must learn it left: the event goes out flagged `leftFilter`);
   * `out` otherwise. Stateless: the state before the change is the one the stream last reported, so
   * the same rule holds live, in a replay and after a snapshot.
   */
  match(event: StreamEvent): 'in' | 'left' | 'out' {
    const job = event.job;
    if (job === undefined || this.matchesJob(job)) return 'in';
    return job.from !== null && this.matchesJob({ ...job, state: job.from }) ? 'left' : 'out';
  }

  /** Start the stream at `offset` (snapshot or replay origin). */
  startAt(vm: string, offset: number): void {
    this.cursors.set(vm, offset);
    this.prevs.set(vm, offset);
    this.behindSince.delete(vm);
  }

  cursor(vm: string): number {
    return this.cursors.get(vm) ?? 0;
  }

  advance(vm: string, offset: number): void {
    this.cursors.set(vm, offset);
  }

  /** Record a message sent at `offset`; returns the `prev` to put in it. */
  markSent(vm: string, offset: number): number {
    const prev = this.prevs.get(vm) ?? 0;
    this.prevs.set(vm, offset);
    this.cursors.set(vm, offset);
    this.behindSince.delete(vm);
    return prev;
  }

  /** Whether a progress update for this job may go out now (and if so, record it). */
  progressDue(key: string, now: number): boolean {
    const last = this.progressSentAt.get(key);
    if (last !== undefined && now - last < this.progressIntervalMs) return false;
    // Entries older than one interval mean the same as none: prune them before the map grows.
    if (this.progressSentAt.size >= 1024) {
      for (const [k, at] of this.progressSentAt) if (now - at >= this.progressIntervalMs) this.progressSentAt.delete(k);
    }
    this.progressSentAt.set(key, now);
    return true;
  }

  nextProgressDue(key: string): number {
    return (this.progressSentAt.get(key) ?? 0) + this.progressIntervalMs;
  }

  dispose(): void {
    if (this.progressTimer) clearTimeout(this.progressTimer);
    this.progressTimer = undefined;
    this.progressWaiting.clear();
    this.held.length = 0;
  }
}

function toSet<T>(values: readonly T[] | undefined): ReadonlySet<T> | null {
  return values === undefined ? null : new Set(values);
}
