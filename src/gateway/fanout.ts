/**
 * Fan-out: every stream event and progress update the feed delivers goes to every subscription,
 * in feed order, from one bounded queue.
 *
 * The feed hands events over synchronously; they queue here, and the pump yields to the event loop
 * every `chunk` subscriptions so QMP handling is never starved. A subscription added while an event
 * is being fanned out is visited too, and skips it by its cursor (its cut already covers it). When
 * the queue is full, stream events are not dropped: every subscriber is told to resume instead.
 */
import { performance } from 'node:perf_hooks';
import type { ClientSubscription } from './subscription.js';
import type { GatewayStats } from './stats.js';
import type { FeedSink, ProgressEvent, StreamEvent } from './stream/feed.js';

type QueueItem = { kind: 'stream'; event: StreamEvent } | { kind: 'progress'; event: ProgressEvent };

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
  private cursor: Iterator<ClientSubscription> | undefined;
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
    const head = this.queue[0];
    const kept = this.queue.filter((item) => item.event.vm !== vm);
    if (head && kept[0] !== head) this.cursor = undefined;
    this.queue.splice(0, this.queue.length, ...kept);
  }

  private enqueue(item: QueueItem): void {
    if (this.queue.length >= this.options.maxQueued) {
      if (item.kind === 'progress') return;
      const queued = this.queue.length;
      this.queue.length = 0;
      this.cursor = undefined;
      this.options.overflow(queued);
    }
    this.queue.push(item);
    if (!this.dispatching) this.pump();
  }

  private pump(): void {
    this.dispatching = true;

    let budget = this.options.chunk;
    while (this.queue.length > 0) {
      const item = this.queue[0]!;
      this.cursor ??= this.audience.values();
      for (let next = this.cursor.next(); !next.done; next = this.cursor.next()) {
        const sub = next.value;
        if (item.kind === 'progress') sub.offerProgress(item.event);
        else if (sub.offer(item.event)) this.behind.add(sub);
        if (--budget <= 0) {
          setImmediate(() => this.pump());
          return;
        }
      }
      this.cursor = undefined;
      this.queue.shift();
      if (item.kind === 'stream' && item.event.qmpReceivedMono !== undefined && this.audience.size > 0) {
        this.stats.deliveryLag((performance.now() - item.event.qmpReceivedMono) / 1000);
      }
    }
    this.dispatching = false;
  }

  private sweepBookmarks(): void {
    if (this.behind.size === 0) return;
    const now = performance.now();
    for (const sub of this.behind) {
      if (!sub.sweepBookmarks(now, this.options.bookmarkQuietMs, this.options.epochOf)) this.behind.delete(sub);
    }
  }
}
