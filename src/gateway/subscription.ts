/**
 * One client subscription: its filter, its position on each VM stream, the live events it holds
 * while its catch-up is pending, its progress throttle and its bookmarks. Only this class changes
 * that state; fan-out (fanout.ts) and the cut (subscribe.ts) call its methods.
 *
 * Per stream it keeps two offsets: `cursor`, the last stream offset it has accounted for (sent or
 * filtered out; events at or below it are already covered by the snapshot or the replay), and
 * `prev`, the last offset it actually sent (the `prev` of its next message). Both sit in one record
 * per stream: a burst to 10,000 subscriptions reads and writes them once per delivery, on objects
 * a write system call has just pushed out of the cache, so one lookup beats four.
 */
import { performance } from 'node:perf_hooks';
import type { SubscriptionFilter } from '../generated/schema-types.js';
import type { JobState, VmStatus } from '../jobs/types.js';
import { CloseCode } from '../protocol/codes.js';
import { canRead, type Principal } from './auth.js';
import type { StreamPosition } from './history/types.js';
import type { JobKeys, ProgressEvent, StreamEvent } from './stream/feed.js';
import { frameText, type EncodedFrames } from './stream/frames.js';

/** What a subscription writes to: its connection (connection.ts), seen through what it needs. */
export interface SubscriberOutput {
  readonly principal: Principal;
  readonly closed: boolean;
  send(type: string, data: string | Buffer): void;
  sendStream(type: string, data: string | Buffer): void;
  /** Hold writes until uncork, so several frames to this client leave in one write. */
  cork(): void;
  uncork(): void;
  sendProgress(key: string, text: string): void;
  dropProgress(prefix: string): void;
  close(code: number, reason: string): void;
}

export interface SubscriptionLimits {
  /** At most one progress per job per this many ms; 0 = none. */
  progressIntervalMs: number;
  /** Live events held while the catch-up is pending; beyond, the client is closed to resume. */
  maxHeld: number;
}

/** Snapshot `state` messages per socket write (about 40 KiB of typical jobs). */
const STATES_PER_WRITE = 64;

/** How many per-job progress timestamps a subscription keeps before pruning the expired ones. */
const PROGRESS_PRUNE_AT = 1024;

export class ClientSubscription {
  readonly subJson: string;
  private readonly vms: ReadonlySet<string> | null;
  private readonly jobs: ReadonlySet<string> | null;
  private readonly types: ReadonlySet<string> | null;
  private readonly states: ReadonlySet<string> | null;
  private readonly positions = new Map<string, Position>();
  /** It may read every VM (no VM filter, a token for all VMs): coversVm without a lookup per event. */
  private readonly everyVm: boolean;
  // behindSince and the progress maps are made on first use: an idle subscriber needs none of them.
  /** Per stream: when it first fell behind (events filtered out since the last message). */
  private behindSince: Map<string, number> | undefined;
  /** True until the catch-up (snapshot or replay) has been sent; live events wait in `held`. */
  private catchingUp = true;
  private readonly held: StreamEvent[] = [];
  // Progress throttle: per job, when the last progress went out and the newest one waiting.
  private progressSentAt: Map<string, number> | undefined;
  private progressWaiting: Map<string, ProgressEvent> | undefined;
  private progressTimer: NodeJS.Timeout | undefined;

  constructor(
    readonly id: string,
    filter: SubscriptionFilter | undefined,
    readonly output: SubscriberOutput,
    private readonly limits: SubscriptionLimits,
  ) {
    this.subJson = JSON.stringify(id);
    this.vms = toSet(filter?.vms);
    this.jobs = toSet(filter?.jobs);
    this.types = toSet(filter?.types);
    this.states = toSet(filter?.states);
    this.everyVm = this.vms === null && output.principal.vms === null && output.principal.scopes.has('read');
  }

  /**
   * Every VM this subscription can ever cover (its filter's VMs the token may read), or null when
   * that is not a fixed list. Fan-out indexes subscriptions by it, so an event visits only its VM's.
   */
  vmScope(): ReadonlySet<string> | null {
    const allowed = this.output.principal.vms;
    if (this.vms === null) return allowed;
    return allowed === null ? this.vms : new Set([...this.vms].filter((vm) => allowed.has(vm)));
  }

  coversVm(vm: string): boolean {
    return this.everyVm || ((this.vms === null || this.vms.has(vm)) && canRead(this.output.principal, vm));
  }

  matchesJob(job: JobKeys): boolean {
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
  private match(event: StreamEvent): 'in' | 'left' | 'out' {
    const job = event.job;
    if (job === undefined || this.matchesJob(job)) return 'in';
    return job.from !== null && this.matchesJob({ ...job, state: job.from }) ? 'left' : 'out';
  }

  // ---- catch-up (driven by subscribe.ts) --------------------------------------------------------

  /** Its catch-up is sent: live events go straight out (fan-out may hand it events early, see fanout.ts). */
  get live(): boolean {
    return !this.catchingUp;
  }

  /** Live events that arrived while the catch-up was pending. */
  heldEvents(): readonly StreamEvent[] {
    return this.held;
  }

  /** Start the stream at `offset` (the snapshot's or the replay's origin). */
  startAt(vm: string, offset: number): void {
    const position = this.positions.get(vm);
    if (position) {
      position.cursor = offset;
      position.prev = offset;
    } else this.positions.set(vm, { cursor: offset, prev: offset });
    this.behindSince?.delete(vm);
  }

  /** One event of a replay (never dropped: bounded by the history). */
  replay(event: StreamEvent): void {
    this.deliver(event, false);
  }

  /**
   * A stream's snapshot: one `state` per matching job. They leave corked, `STATES_PER_WRITE` to a
   * write: a write per message cost more than the messages, and one write for all of them would
   * keep the client from reading the first while the rest are built.
   */
  sendStates(vm: string, position: StreamPosition, jobs: readonly JobState[]): void {
    const head = `{"type":"state","sub":${this.subJson},"vm":${JSON.stringify(vm)},"epoch":${JSON.stringify(position.epoch)},"offset":${position.offset},"job":`;
    let batched = 0;
    for (const job of jobs) {
      if (!this.matchesJob(job)) continue;
      if (batched === 0) this.output.cork();
      this.output.send('state', `${head}${JSON.stringify(job)}}`);
      if (++batched === STATES_PER_WRITE) {
        this.output.uncork();
        batched = 0;
      }
    }
    if (batched > 0) this.output.uncork();
  }

  /** `status`: the VM's monitor status at the cut. */
  sendSynced(vm: string, position: StreamPosition, status: VmStatus): void {
    this.output.send('synced', `{"type":"synced","sub":${this.subJson},"vm":${JSON.stringify(vm)},"epoch":${JSON.stringify(position.epoch)},"offset":${position.offset},"status":${JSON.stringify(status)}}`);
  }

  /** The catch-up is sent: deliver what was held, then take live events directly. */
  goLive(): void {
    this.catchingUp = false;
    for (const event of this.held.splice(0)) this.deliver(event, true);
  }

  // ---- live (driven by fanout.ts) ---------------------------------------------------------------

  /**
   * A live stream event. True when the filter skipped it, so the stream may need a bookmark.
   * `frames`: the event's shared encodings (fan-out passes one per event, so identical frames are
   * encoded once).
   */
  offer(event: StreamEvent, frames?: EncodedFrames): boolean {
    return this.deliver(event, true, frames);
  }

  /** A live progress update. */
  offerProgress(event: ProgressEvent): void {
    if (this.limits.progressIntervalMs === 0 || this.catchingUp || !this.coversVm(event.vm) || !this.matchesJob(event.keys)) return;
    const key = `${event.vm}\0${event.job}`;
    if (this.progressDue(key, performance.now())) {
      this.output.sendProgress(`${this.id}\0${key}`, `${event.prefix}${this.subJson}${event.body}`);
      return;
    }
    (this.progressWaiting ??= new Map()).set(key, event);
    this.scheduleProgress();
  }

  /**
   * Send a bookmark on each stream where the filter has skipped events and nothing was sent for
   * `quietMs`. Returns whether some stream is still behind.
   */
  sweepBookmarks(now: number, quietMs: number, epochOf: (vm: string) => string): boolean {
    if (!this.behindSince) return false;
    for (const [vm, since] of this.behindSince) {
      if (now - since < quietMs) continue;
      const position = this.position(vm);
      const offset = position.cursor;
      markSent(position, offset);
      this.behindSince.delete(vm);
      this.output.sendStream('bookmark', `{"type":"bookmark","sub":${this.subJson},"vm":${JSON.stringify(vm)},"epoch":${JSON.stringify(epochOf(vm))},"offset":${offset}}`);
    }
    return this.behindSince.size > 0;
  }

  dispose(): void {
    if (this.progressTimer) clearTimeout(this.progressTimer);
    this.progressTimer = undefined;
    this.progressWaiting = undefined;
    this.held.length = 0;
    this.output.dropProgress(`${this.id}\0`);
  }

  // ---- internals --------------------------------------------------------------------------------

  private deliver(event: StreamEvent, live: boolean, frames?: EncodedFrames): boolean {
    if (!this.coversVm(event.vm)) return false;
    if (this.catchingUp && live) {
      // Bounded like the fan-out queue: a pending cut never outlives one history round trip.
      if (this.held.length < this.limits.maxHeld) this.held.push(event);
      else this.output.close(CloseCode.SlowConsumer, 'history read too slow; resume with since');
      return false;
    }
    const position = this.position(event.vm);
    if (event.offset <= position.cursor) return false;
    const match = this.match(event);
    if (match === 'out') {
      position.cursor = event.offset;
      const behind = (this.behindSince ??= new Map());
      if (!behind.has(event.vm)) behind.set(event.vm, performance.now());
      return true;
    }
    const prev = markSent(position, event.offset);
    this.behindSince?.delete(event.vm);
    const left = match === 'left';
    const frame = frames ? frames.frame(this.subJson, prev, left) : frameText(event, this.subJson, prev, left);
    if (live) this.output.sendStream(event.kind, frame);
    else this.output.send(event.kind, frame);
    return false;
  }

  /** Its position on `vm`'s stream; a stream it never started is at offset 0. */
  private position(vm: string): Position {
    let position = this.positions.get(vm);
    if (!position) this.positions.set(vm, (position = { cursor: 0, prev: 0 }));
    return position;
  }

  /** Whether a progress update for this job may go out now (and if so, record it). */
  private progressDue(key: string, now: number): boolean {
    const interval = this.limits.progressIntervalMs;
    const sentAt = (this.progressSentAt ??= new Map());
    const last = sentAt.get(key);
    if (last !== undefined && now - last < interval) return false;
    // Entries older than one interval mean the same as none: prune them before the map grows.
    if (sentAt.size >= PROGRESS_PRUNE_AT) {
      for (const [k, at] of sentAt) if (now - at >= interval) sentAt.delete(k);
    }
    sentAt.set(key, now);
    return true;
  }

  private scheduleProgress(): void {
    const waiting = this.progressWaiting;
    if (this.progressTimer !== undefined || !waiting || waiting.size === 0) return;
    let due = Infinity;
    for (const key of waiting.keys()) due = Math.min(due, (this.progressSentAt?.get(key) ?? 0) + this.limits.progressIntervalMs);
    this.progressTimer = setTimeout(() => {
      this.progressTimer = undefined;
      if (this.output.closed) return;
      const now = performance.now();
      for (const [key, event] of waiting) {
        if (!this.progressDue(key, now)) continue;
        waiting.delete(key);
        this.output.sendProgress(`${this.id}\0${key}`, `${event.prefix}${this.subJson}${event.body}`);
      }
      this.scheduleProgress();
    }, Math.max(0, due - performance.now()));
    this.progressTimer.unref();
  }
}

/** Where a subscription stands on one stream (see the class comment). */
interface Position {
  cursor: number;
  prev: number;
}

/** Record a message sent at `offset`; returns the `prev` to put in it. */
function markSent(position: Position, offset: number): number {
  const prev = position.prev;
  position.prev = offset;
  position.cursor = offset;
  return prev;
}

function toSet<T>(values: readonly T[] | undefined): ReadonlySet<T> | null {
  return values === undefined ? null : new Set(values);
}
