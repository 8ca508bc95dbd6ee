import { Subject } from 'rxjs';
import { describe, expect, it } from 'vitest';
import { QmpClosedError, QmpTimeoutError } from '../../../src/errors.js';
import { DropOldestQueue } from '../../../src/qmp/bounded-queue.js';
import { eventsOf } from '../../../src/qmp/event-listener.js';
import type { QmpEvent } from '../../../src/qmp/types.js';

let seq = 0;
const event = (name: string, data: Record<string, unknown> = {}): QmpEvent => ({
  event: name,
  data,
  qemuTimestamp: null,
  receivedAt: Date.now(),
  receivedMono: performance.now(),
  seq: ++seq,
  session: 1,
});

describe('DropOldestQueue', () => {
  it('keeps FIFO order, drops the oldest when full and counts what it dropped', () => {
    const queue = new DropOldestQueue<number>(3);
    for (let i = 1; i <= 5; i++) queue.push(i);
    expect(queue.size).toBe(3);
    expect(queue.dropped).toBe(2);
    expect([queue.shift(), queue.shift()]).toEqual([3, 4]);
    queue.push(6);
    queue.push(7);
    expect([queue.shift(), queue.shift(), queue.shift(), queue.shift()]).toEqual([5, 6, 7, undefined]);
    expect(() => new DropOldestQueue(0)).toThrow(RangeError);
  });
});

describe('eventsOf', () => {
  it('queues only the selected events, in order, for an asynchronous consumer', async () => {
    const events$ = new Subject<QmpEvent>();
    const listener = eventsOf({ events$ }, ['A', 'C'], { filter: (e) => e.data.keep !== false });
    events$.next(event('A', { n: 1 }));
    events$.next(event('B'));
    events$.next(event('C', { n: 2 }));
    events$.next(event('A', { keep: false }));
    expect(listener.size).toBe(2);
    expect((await listener.next()).data).toEqual({ n: 1 });
    expect(listener.tryNext()?.data).toEqual({ n: 2 });
    expect(listener.tryNext()).toBeUndefined();
    const waiting = listener.next();
    events$.next(event('C', { n: 3 }));
    expect((await waiting).data).toEqual({ n: 3 });
  });

  it('is bounded: a stalled consumer loses the oldest events, counted, and never blocks the producer', () => {
    const events$ = new Subject<QmpEvent>();
    const slow = eventsOf({ events$ }, '*', { bufferLimit: 10 });
    const other = eventsOf({ events$ }, '*', { bufferLimit: 1000 });
    for (let i = 0; i < 100; i++) events$.next(event('E', { i }));
    expect(slow.size).toBe(10);
    expect(slow.dropped).toBe(90);
    expect(slow.tryNext()?.data).toEqual({ i: 90 });
    expect(other.size).toBe(100);
    expect(other.dropped).toBe(0);
  });

  it('times out a wait, and rejects waiters when closed', async () => {
    const events$ = new Subject<QmpEvent>();
    const listener = eventsOf({ events$ }, ['X']);
    await expect(listener.next(20)).rejects.toBeInstanceOf(QmpTimeoutError);
    const waiting = listener.next();
    listener.close();
    await expect(waiting).rejects.toBeInstanceOf(QmpClosedError);
    events$.next(event('X'));
    expect(listener.size).toBe(0); // unsubscribed
  });

  it('iterates with for-await until the source completes, draining what was queued', async () => {
    const events$ = new Subject<QmpEvent>();
    const listener = eventsOf({ events$ }, '*');
    events$.next(event('A'));
    events$.next(event('B'));
    setTimeout(() => {
      events$.next(event('C'));
      events$.complete();
    }, 10);
    const seen: string[] = [];
    for await (const e of listener) seen.push(e.event);
    expect(seen).toEqual(['A', 'B', 'C']);
    expect(listener.isClosed).toBe(true);
  });
});
