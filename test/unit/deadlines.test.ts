/**
 * Deadline lanes in virtual time: each wait expires at its own deadline, in order, unless cancelled;
 * one timer per lane however many waits it holds, armed only for the oldest; a lane shared per
 * (scheduler, length).
 */
import { TestScheduler } from 'rxjs/testing';
import { describe, expect, it } from 'vitest';
import { deadlineLane, type Expiring } from '../../src/deadlines.js';

function withScheduler(body: (scheduler: TestScheduler) => void): void {
  const scheduler = new TestScheduler((actual, wanted) => expect(actual).toEqual(wanted));
  scheduler.run(() => body(scheduler));
}

/** A wait that records when it expired. */
function waiter(scheduler: TestScheduler, expired: Array<[string, number]>, name: string): Expiring {
  return { expire: () => expired.push([name, scheduler.now()]) };
}

describe('deadlineLane', () => {
  it('expires each wait one length after it was added, in order, from one timer', () => {
    withScheduler((scheduler) => {
      const expired: Array<[string, number]> = [];
      const lane = deadlineLane(50, scheduler);
      for (let i = 0; i < 40; i++) scheduler.schedule(() => lane.add(waiter(scheduler, expired, `w${i}`)), i * 3);
      scheduler.schedule(() => {
        // All 40 added, some expired: one timer (the lane's) for the rest, besides this action.
        expect(lane.size).toBe(40 - expired.length);
        expect(scheduler.actions.length).toBeLessThanOrEqual(2);
      }, 118);
      scheduler.flush();
      expect(expired).toEqual(Array.from({ length: 40 }, (_, i) => [`w${i}`, i * 3 + 50]));
      expect(lane.size).toBe(0);
      expect(scheduler.actions).toHaveLength(0);
    });
  });

  it('a cancelled wait never expires, and the timer skips over cancelled waits', () => {
    withScheduler((scheduler) => {
      const expired: Array<[string, number]> = [];
      const lane = deadlineLane(20, scheduler);
      const a = waiter(scheduler, expired, 'a');
      const b = waiter(scheduler, expired, 'b');
      const c = waiter(scheduler, expired, 'c');
      const handleA = lane.add(a);
      scheduler.schedule(() => lane.add(b), 5);
      let handleC = -1;
      scheduler.schedule(() => (handleC = lane.add(c)), 10);
      scheduler.schedule(() => {
        lane.cancel(handleA, a);
        lane.cancel(handleC, c);
        lane.cancel(handleC, c); // twice: harmless
        lane.cancel(handleA, b); // not b's handle: ignored
      }, 15);
      scheduler.flush();
      expect(expired).toEqual([['b', 25]]);
    });
  });

  it('holds more waits than its initial ring (it grows), each still expiring on time', () => {
    withScheduler((scheduler) => {
      const expired: Array<[string, number]> = [];
      const lane = deadlineLane(100, scheduler);
      const cancelled = new Set<number>();
      for (let i = 0; i < 1000; i++) {
        scheduler.schedule(() => {
          const w = waiter(scheduler, expired, `w${i}`);
          const handle = lane.add(w);
          // Every other wait is answered 1 ms later, as most commands are.
          if (i % 2 === 0) scheduler.schedule(() => lane.cancel(handle, w), 1);
          if (i % 2 === 0) cancelled.add(i);
        }, Math.floor(i / 10));
      }
      scheduler.flush();
      const expected = Array.from({ length: 1000 }, (_, i) => i)
        .filter((i) => !cancelled.has(i))
        .map((i) => [`w${i}`, Math.floor(i / 10) + 100]);
      expect(expired).toEqual(expected);
    });
  });

  it('a wait added while the lane expires others comes after them (a poll retried at once)', () => {
    withScheduler((scheduler) => {
      const expired: Array<[string, number]> = [];
      const lane = deadlineLane(10, scheduler);
      const retry = waiter(scheduler, expired, 'retry');
      lane.add({
        expire: () => {
          expired.push(['first', scheduler.now()]);
          lane.add(retry);
        },
      });
      scheduler.flush();
      expect(expired).toEqual([['first', 10], ['retry', 20]]);
    });
  });

  it('is shared per scheduler and length', () => {
    withScheduler((scheduler) => {
      expect(deadlineLane(10, scheduler)).toBe(deadlineLane(10, scheduler));
      expect(deadlineLane(10, scheduler)).not.toBe(deadlineLane(20, scheduler));
      expect(deadlineLane(10, scheduler)).not.toBe(deadlineLane(10, new TestScheduler(() => undefined)));
    });
  });
});
