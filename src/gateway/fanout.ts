/**
 * Fan-out: every stream event and progress update the feed delivers goes to every subscription,
 * in feed order, from one bounded queue.
 *
 * The feed hands events over synchronously; they queue here. The pump works in passes: a pass takes
 * the items queued when it starts and visits every subscription once, handing it all of them in feed
 * order with its connection corked (several frames, one write); items queued meanwhile wait for the
 * next pass. Each stream event is encoded once per group of identical frames (stream/frames.ts).
 * The pump yields to the event loop every `chunk` deliveries so QMP handling is never starved. A
 * subscription added during a pass is visited too, and skips what its cut already covers by its
 * cursor. When the queue is full, stream events are not dropped: every subscriber is told to resume.
 */
import { performance } from 'node:perf_hooks';
import type { ClientSubscription } from './subscription.js';
import type { GatewayStats } from './stats.js';
import type { FeedSink, ProgressEvent, StreamEvent } from './stream/feed.js';
import { EncodedFrames } from './stream/frames.js';

type QueueItem = { kind: 'stream'; event: StreamEvent; frames?: EncodedFrames } | { kind: 'progress'; event: ProgressEvent };

/** Items one pass takes: enough to merge a burst of frames per write, few enough that one subscription's share stays small against `chunk`. */
const MAX_PASS_ITEMS = 64;

/** The items one pass hands to every subscription, and where it is in the audience. */
interface Pass {
  items: QueueItem[];
  cursor: Iterator<ClientSubscription>;
}

export interface FanOutOptions {
  /** Subscriptions visited per slice before yielding to the event loop. */
  chunk: number;
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
  /** Subscriptions with a stream where the filter skipped events since their last message. */
  private readonly behind = new Set<ClientSubscription>();
  private readonly queue: QueueItem[] = [];
  private pass: Pass | undefined;
  private dispatching = false;
  private bookmarkTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly stats: GatewayStats,
    private readonly options: FanOutOptions,
  ) {}

  get size(): number {
    return this.audience.size;
  }

  add(sub: ClientSubscription): void {
    this.audience.add(sub);
  }

  remove(sub: ClientSubscription): void {
    this.audience.delete(sub);
    this.behind.delete(sub);
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

  /** Forget what is queued for `vm` (its stream was reset: those offsets belong to a dead epoch). */
  purge(vm: string): void {
    const kept = this.queue.filter((item) => item.event.vm !== vm);
    // The pass's items stay at the head of the queue, in order: the pass goes on without the purged ones.
    if (this.pass) this.pass.items = this.pass.items.filter((item) => item.event.vm !== vm);
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
    if (!this.dispatching) this.pump();
  }

  private pump(): void {
    this.dispatching = true;

    let budget = this.options.chunk;
    while (this.queue.length > 0) {
      const pass = (this.pass ??= this.startPass());
      for (let next = pass.cursor.next(); !next.done; next = pass.cursor.next()) {
        const sub = next.value;
        const items = pass.items;
        const cork = items.length > 1;
        if (cork) sub.output.cork();
        for (const item of items) {
          if (item.kind === 'progress') sub.offerProgress(item.event);
          else if (sub.offer(item.event, item.frames)) this.behind.add(sub);
        }
        if (cork) sub.output.uncork();
        budget -= items.length;
        if (budget <= 0) {
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
    return { items, cursor: this.audience.values() };
  }

  private sweepBookmarks(): void {
    if (this.behind.size === 0) return;
    const now = performance.now();
    for (const sub of this.behind) {
      if (!sub.sweepBookmarks(now, this.options.bookmarkQuietMs, this.options.epochOf)) this.behind.delete(sub);
    }
  }
}
