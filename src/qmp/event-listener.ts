/**
 * Asynchronous consumption of QMP events without stalling anyone.
 *
 * `events$` is synchronous: handlers run inside the socket reader, in wire order. That is what
 * state machines want, and nothing can pile up. A consumer that needs to `await` per event (write
 * to a database, run a command) should not do that inside the handler; it takes a listener
 * instead, which gives it its own bounded FIFO:
 *
 * ```ts
 * const listener = eventsOf(client, ['BLOCK_JOB_READY', 'BLOCK_JOB_COMPLETED']);
 * for await (const event of listener) {
 *   await handle(event);              // slow is fine: only this queue grows, up to bufferLimit
 * }
 * // listener.dropped counts the events lost to overflow (oldest first)
 * ```
 *
 * Each listener has its own copy of the events it selected (as in qemu.qmp's EventListener), but
 * unlike qemu.qmp the queue is bounded: a stalled consumer loses its oldest events (counted in
 * `dropped`), never the process's memory, and never delays the socket reader or other consumers.
 */
import type { Subscription } from 'rxjs';
import { QmpClosedError, QmpTimeoutError } from '../errors.js';
import { DropOldestQueue } from './bounded-queue.js';
import type { QmpEvent, QmpMonitor } from './types.js';

export const DEFAULT_EVENT_BUFFER_LIMIT = 1000;

export interface EventListenerOptions {
  /** Queue capacity; when full, the oldest queued event is dropped and counted. @default 1000 */
  bufferLimit?: number;
  /** Extra selection on top of the names (e.g. one job id). */
  filter?: (event: QmpEvent) => boolean;
}

interface Waiter {
  resolve(event: QmpEvent): void;
  reject(error: Error): void;
  timer: NodeJS.Timeout | undefined;
}

/** A bounded, per-consumer FIFO of selected events. Create it with eventsOf(). */
export class QmpEventListener implements AsyncIterable<QmpEvent> {
  private readonly queue: DropOldestQueue<QmpEvent>;
  private readonly waiters: Waiter[] = [];
  private readonly subscription: Subscription;
  private closed = false;

  constructor(monitor: Pick<QmpMonitor, 'events$'>, readonly names: readonly string[] | '*', options: EventListenerOptions = {}) {
    this.queue = new DropOldestQueue(options.bufferLimit ?? DEFAULT_EVENT_BUFFER_LIMIT);
    const wanted = names === '*' ? undefined : new Set(names);
    const filter = options.filter;
    this.subscription = monitor.events$.subscribe({
      next: (event) => {
        if (wanted && !wanted.has(event.event)) return;
        if (filter && !filter(event)) return;
        this.deliver(event);
      },
      complete: () => this.close(),
    });
  }

  /** Events waiting to be taken. */
  get size(): number {
    return this.queue.size;
  }

  /** Events dropped because the queue was full. */
  get dropped(): number {
    return this.queue.dropped;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Take the next event now, if one is queued. */
  tryNext(): QmpEvent | undefined {
    return this.queue.shift();
  }

  /**
   * Wait for the next event. Rejects with QmpTimeoutError after `timeoutMs` (if given), and with
   * QmpClosedError once the listener is closed and drained.
   */
  next(timeoutMs?: number): Promise<QmpEvent> {
    const queued = this.queue.shift();
    if (queued) return Promise.resolve(queued);
    if (this.closed) return Promise.reject(new QmpClosedError('the event listener is closed'));
    return new Promise<QmpEvent>((resolve, reject) => {
      const waiter: Waiter = { resolve, reject, timer: undefined };
      if (timeoutMs !== undefined) {
        waiter.timer = setTimeout(() => {
          this.removeWaiter(waiter);
          const names = this.names === '*' ? 'any event' : this.names.join('|');
          reject(new QmpTimeoutError({ execute: `(waiting for ${names})` }, timeoutMs));
        }, timeoutMs);
      }
      this.waiters.push(waiter);
    });
  }

  /** Drop everything queued (e.g. before issuing a command whose events you want to see). */
  clear(): void {
    this.queue.clear();
  }

  /** Stop listening. Queued events can still be taken; waiters are rejected with QmpClosedError. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.subscription.unsubscribe();
    for (const waiter of this.waiters.splice(0)) {
      clearTimeout(waiter.timer);
      waiter.reject(new QmpClosedError('the event listener is closed'));
    }
  }

  async *[Symbol.asyncIterator](): AsyncIterator<QmpEvent> {
    try {
      for (;;) {
        const queued = this.queue.shift();
        if (queued) {
          yield queued;
          continue;
        }
        if (this.closed) return;
        try {
          yield await this.next();
        } catch (err) {
          if (err instanceof QmpClosedError) return;
          throw err;
        }
      }
    } finally {
      this.close();
    }
  }

  private deliver(event: QmpEvent): void {
    const waiter = this.waiters.shift();
    if (waiter) {
      clearTimeout(waiter.timer);
      waiter.resolve(event);
      return;
    }
    this.queue.push(event);
  }

  private removeWaiter(waiter: Waiter): void {
    const index = this.waiters.indexOf(waiter);
    if (index >= 0) this.waiters.splice(index, 1);
  }
}

/** Listen to `names` (or '*' for all) on a monitor through a bounded per-consumer queue. */
export function eventsOf(
  monitor: Pick<QmpMonitor, 'events$'>,
  names: readonly string[] | '*',
  options?: EventListenerOptions,
): QmpEventListener {
  return new QmpEventListener(monitor, names, options);
}
