/**
 * Fan-out: every stream event and progress update the feed delivers goes to every subscription
 * that may cover its VM, in feed order, from one bounded queue.
 *
 * The feed hands events over synchronously; they queue here, and the pump starts at the end of the
 * task that queued them (a microtask). The pump works in passes: a pass takes
 * the items queued when it starts and visits each subscription that may cover one of their VMs once,
 * handing it all of them in feed order with its connection corked (several frames, one write). Stream
 * events queued while a pass runs go along with it to the live subscriptions it has not visited yet
 * (a pass over 10,000 sockets takes ~100 ms; they would otherwise wait for all of it), and are the
 * next pass's items all the same: that pass reaches every subscription covering their VMs, and one
 * that already has an event skips it by its stream cursor, so each still gets it exactly once and in
 * order. Progress is not carried early (it has no offset to skip by), nor anything queued after it.
 * Subscriptions limited to a list of VMs (by filter or
 * token) are indexed by VM, so an event for a VM few follow costs only those few: a fleet edge with
 * 10,000 VMs and thousands of narrow subscribers would otherwise test every subscriber per event.
 * Each stream event is encoded once per group of identical frames (stream/frames.ts). The pump yields
 * to the event loop after `sliceMs` or `chunk` deliveries, whichever comes first, so QMP handling is
 * never starved whatever a delivery costs (a stall is bounded by time, not by a guess of the cost of
 * one delivery, which grows with frame size, load and GC). A subscription added
 * during a pass may be visited or not: its cut already covers every queued item (it skips them by its
 * cursor). When the queue is full, stream events are not dropped: every subscriber is told to resume.
 */
import { performance } from 'node:perf_hooks';
import type { ClientSubscription } from './subscription.js';
import type { GatewayStats } from './stats.js';
import type { FeedSink, ProgressEvent, StreamEvent } from './stream/feed.js';
import { EncodedFrames } from './stream/frames.js';

type StreamItem = { kind: 'stream'; event: StreamEvent; frames?: EncodedFrames };
type QueueItem = StreamItem | { kind: 'progress'; event: ProgressEvent };

/** Items one pass takes: enough to merge a burst of frames per write, few enough that one subscription's share stays small against `chunk`. */
const MAX_PASS_ITEMS = 64;

const NOBODY: ReadonlySet<ClientSubscription> = new Set();

/** The items one pass hands to every subscription, and where it is in the audience. */
interface Pass {
  items: QueueItem[];
  cursor: Iterator<ClientSubscription>;
  /** Stream events queued behind `items` since the pass began that it carries early (they stay queued). */
  early: number;
}

export interface FanOutOptions {
  /** Deliveries per slice before yielding to the event loop. */
  chunk: number;
  /** A slice yields to the event loop after this long (ms), even short of `chunk`. */
  sliceMs: number;
  /** Items waiting for fan-out; beyond it `overflow` is called and the queue is emptied. */
  maxQueued: number;
  /** A filtered subscription that skipped events gets a `bookmark` after this quiet time. */
  bookmarkQuietMs: number;
  /** The current epoch of a stream, for bookmarks. */
  epochOf(vm: string): string;
  /** Fan-out cannot keep up at all: make every subscriber resume rather than grow without bound. */
  overflow(queued: number): void;
}

export class FanOut implements Omit<FeedSink, 'reset'> {
  /** Every live subscription, in subscribe order. */
  private readonly audience = new Set<ClientSubscription>();
  /** Subscriptions that may cover any VM, and those limited to a list of VMs, by VM. */
  private readonly anyVm = new Set<ClientSubscription>();
  private readonly byVm = new Map<string, Set<ClientSubscription>>();
  /** What each subscription is indexed under (null: anyVm). */
  private readonly scopes = new Map<ClientSubscription, ReadonlySet<string> | null>();
  /** Subscriptions with a stream where the filter skipped events since their last message. */
  private readonly behind = new Set<ClientSubscription>();
  private readonly queue: QueueItem[] = [];
  private pass: Pass | undefined;
  /** A pump is running, or waits for the event loop between slices. */
  private dispatching = false;
  /** A pump is due at the end of the current task. */
  private scheduled = false;
  private bookmarkTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly stats: GatewayStats,
    private readonly options: FanOutOptions,
  ) {}

  get size(): number {
    return this.audience.size;
  }

  /** A pass is running, or waits for the event loop between its slices. */
  get busy(): boolean {
    return this.dispatching;
  }

  add(sub: ClientSubscription): void {
    if (this.audience.has(sub)) return;
    this.audience.add(sub);
    const scope = sub.vmScope();
    this.scopes.set(sub, scope);
    if (scope === null) this.anyVm.add(sub);
    else for (const vm of scope) this.followers(vm).add(sub);
  }

  remove(sub: ClientSubscription): void {
    this.audience.delete(sub);
    this.behind.delete(sub);
    const scope = this.scopes.get(sub);
    this.scopes.delete(sub);
    if (scope === null) this.anyVm.delete(sub);
    else
      for (const vm of scope ?? []) {
        const set = this.byVm.get(vm);
        set?.delete(sub);
        if (set?.size === 0) this.byVm.delete(vm);
      }
  }

  start(): void {
    this.bookmarkTimer = setInterval(() => this.sweepBookmarks(), Math.max(10, this.options.bookmarkQuietMs / 2));
    this.bookmarkTimer.unref();
  }

  stop(): void {
    if (this.bookmarkTimer) clearInterval(this.bookmarkTimer);
    this.bookmarkTimer = undefined;
  }

  event(event: StreamEvent): void {
    this.enqueue({ kind: 'stream', event });
  }

  progress(event: ProgressEvent): void {
    this.enqueue({ kind: 'progress', event });
  }

  /**
   * Stream events of `vm` still queued, in order: numbered (the head counts them) but maybe not yet
   * handed to a subscription. A cut made now must count them, since its cursor will skip them.
   */
  queuedEvents(vm: string): StreamEvent[] {
    const events: StreamEvent[] = [];
    for (const item of this.queue) if (item.kind === 'stream' && item.event.vm === vm) events.push(item.event);
    return events;
  }

  /** Forget what is queued for `vm` (its stream was reset: those offsets belong to a dead epoch). */
  purge(vm: string): void {
    const kept = this.queue.filter((item) => item.event.vm !== vm);
    // The pass's items stay at the head of the queue, in order: the pass goes on without the purged ones.
    if (this.pass) {
      this.pass.items = this.pass.items.filter((item) => item.event.vm !== vm);
      this.pass.early = 0;
    }
    this.queue.splice(0, this.queue.length, ...kept);
  }

  private enqueue(item: QueueItem): void {
    if (this.queue.length >= this.options.maxQueued) {
      if (item.kind === 'progress') return;
      const queued = this.queue.length;
      this.queue.length = 0;
      this.pass = undefined;
      this.options.overflow(queued);
    }
    this.queue.push(item);
    if (this.dispatching) return;
    // A job turning ready is what subscribers act on (a pivot waits for it): it goes out now, with
    // whatever was queued before it, not after the rest of its QMP read (BLOCK_JOB_READY follows).
    if (item.kind === 'stream' && item.event.job?.state === 'ready') return this.pump();
    if (this.scheduled) return;
    // Else at the end of the current task: the transitions of one QMP read (a job's waiting,
    // pending, concluded, dismissed; a held start with the change that releases it) then share one
    // pass, so each socket gets them in one write. A microtask: no turn of the event loop waits.
    this.scheduled = true;
    queueMicrotask(this.pumpScheduled);
  }

  private readonly pumpScheduled = (): void => {
    this.scheduled = false;
    if (!this.dispatching) this.pump();
  };

  private pump(): void {
    this.dispatching = true;
    const { chunk, sliceMs } = this.options;
    const started = performance.now();
    let budget = chunk;
    while (this.queue.length > 0) {
      const pass = (this.pass ??= this.startPass());
      for (let next = pass.cursor.next(); !next.done; next = pass.cursor.next()) {
        const sub = next.value;
        const items = pass.items;
        const early = this.queue.length > items.length && sub.live ? this.carriedEarly(pass) : 0;
        const cork = items.length + early > 1;
        if (cork) sub.output.cork();
        for (const item of items) {
          if (item.kind === 'progress') sub.offerProgress(item.event);
          else if (sub.offer(item.event, item.frames)) this.behind.add(sub);
        }
        for (let i = items.length; i < items.length + early; i++) {
          const item = this.queue[i] as StreamItem;
          if (sub.offer(item.event, item.frames)) this.behind.add(sub);
        }
        if (cork) sub.output.uncork();
        budget -= items.length + early;
        if (budget <= 0 || performance.now() - started >= sliceMs) {
          setImmediate(() => this.pump());
          return;
        }
      }
      this.pass = undefined;
      this.queue.splice(0, pass.items.length);
      if (this.audience.size === 0) continue;
      const now = performance.now();
      for (const item of pass.items) {
        if (item.kind === 'stream' && item.event.qmpReceivedMono !== undefined) this.stats.deliveryLag((now - item.event.qmpReceivedMono) / 1000);
      }
    }
    this.dispatching = false;
  }

  private startPass(): Pass {
    const items = this.queue.slice(0, MAX_PASS_ITEMS);
    for (const item of items) if (item.kind === 'stream') item.frames ??= new EncodedFrames(item.event);
    return { items, cursor: this.targets(items), early: 0 };
  }

  /**
   * How many stream events queued behind the pass's items go along with it now (they follow the
   * pass's items at the head of the queue): up to the first progress item, and no more than make
   * MAX_PASS_ITEMS with the pass's own, the most one subscription is handed at once.
   */
  private carriedEarly(pass: Pass): number {
    const from = pass.items.length;
    const to = Math.min(this.queue.length, MAX_PASS_ITEMS);
    while (from + pass.early < to) {
      const item = this.queue[from + pass.early]!;
      if (item.kind !== 'stream') break;
      item.frames ??= new EncodedFrames(item.event);
      pass.early++;
    }
    return pass.early;
  }

  private followers(vm: string): Set<ClientSubscription> {
    let set = this.byVm.get(vm);
    if (!set) this.byVm.set(vm, (set = new Set()));
    return set;
  }

  /**
   * The subscriptions a pass visits, each once: those that may cover any VM, then those indexed
   * under one of the items' VMs. Live Set iterators, so one removed during the pass is not visited;
   * the common shapes (nothing indexed, or one VM and no unscoped subscription) iterate one Set as is.
   */
  private targets(items: readonly QueueItem[]): Iterator<ClientSubscription> {
    if (this.byVm.size === 0) return this.anyVm.values();
    const vms = new Set(items.map((item) => item.event.vm));
    if (vms.size === 1 && this.anyVm.size === 0) return (this.byVm.get(items[0]!.event.vm) ?? NOBODY).values();
    return this.mixedTargets(vms);
  }

  private *mixedTargets(vms: ReadonlySet<string>): Generator<ClientSubscription, void, undefined> {
    yield* this.anyVm;
    const seen = vms.size > 1 ? new Set<ClientSubscription>() : undefined;
    for (const vm of vms) {
      for (const sub of this.byVm.get(vm) ?? NOBODY) {
        if (seen) {
          if (seen.has(sub)) continue;
          seen.add(sub);
        }
        yield sub;
      }
    }
  }

  private sweepBookmarks(): void {
    if (this.behind.size === 0) return;
    const now = performance.now();
    for (const sub of this.behind) {
      if (!sub.sweepBookmarks(now, this.options.bookmarkQuietMs, this.options.epochOf)) this.behind.delete(sub);
    }
  }
}
