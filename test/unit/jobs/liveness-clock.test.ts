/**
 * The shared idle clock in virtual time: one timer for every idle VM, each VM ticked once per
 * interval, the VMs spread evenly over SLOTS batches; and the poller's idle cadence runs on it.
 */
import { BehaviorSubject, of, type Subscription } from 'rxjs';
import { TestScheduler } from 'rxjs/testing';
import { describe, expect, it } from 'vitest';
import { SLOTS, idleTicks } from '../../../src/jobs/liveness.js';
import { pollJobs, type PollResult } from '../../../src/jobs/poller.js';

const INTERVAL = 100;

function withScheduler(body: (scheduler: TestScheduler) => void): void {
  const scheduler = new TestScheduler((actual, wanted) => expect(actual).toEqual(wanted));
  scheduler.run(() => body(scheduler));
}

describe('idleTicks: one clock for every idle VM', () => {
  it('ticks each subscriber once per interval, spread evenly over the slots, from one timer', () => {
    withScheduler((scheduler) => {
      const ticks = new Map<number, number[]>();
      const subscriptions: Subscription[] = [];
      for (let vm = 0; vm < 3 * SLOTS; vm++) {
        subscriptions.push(idleTicks(INTERVAL, scheduler).subscribe(() => ticks.set(vm, [...(ticks.get(vm) ?? []), scheduler.now()])));
      }
      // One timer however many VMs are idle (a timer per VM would be 30 actions).
      expect(scheduler.actions).toHaveLength(1);
      scheduler.schedule(() => subscriptions.forEach((s) => s.unsubscribe()), 3 * INTERVAL + 1);
      scheduler.flush();

      for (const [, frames] of ticks) {
        expect(frames).toHaveLength(3);
        // Each VM exactly one interval apart, the first within one interval.
        expect(frames[0]).toBeLessThanOrEqual(INTERVAL);
        expect(frames[1]! - frames[0]!).toBe(INTERVAL);
        expect(frames[2]! - frames[1]!).toBe(INTERVAL);
      }
      // Batched: the 30 VMs share SLOTS frames, 3 per frame, not all at once and not 30 frames.
      const perFrame = new Map<number, number>();
      for (const [, frames] of ticks) perFrame.set(frames[0]!, (perFrame.get(frames[0]!) ?? 0) + 1);
      expect([...perFrame.keys()].sort((a, b) => a - b)).toEqual(Array.from({ length: SLOTS }, (_, i) => (i + 1) * (INTERVAL / SLOTS)));
      expect([...perFrame.values()]).toEqual(Array(SLOTS).fill(3));
      // Nobody idle: no timer left.
      expect(scheduler.actions).toHaveLength(0);
    });
  });

  it('a VM that joins later takes the emptiest slot and waits about one interval for its first tick', () => {
    withScheduler((scheduler) => {
      const frames: number[] = [];
      const first = idleTicks(INTERVAL, scheduler).subscribe();
      scheduler.schedule(() => {
        const late = idleTicks(INTERVAL, scheduler).subscribe(() => frames.push(scheduler.now()));
        scheduler.schedule(() => late.unsubscribe(), 2 * INTERVAL);
      }, 35);
      scheduler.schedule(() => first.unsubscribe(), 3 * INTERVAL);
      scheduler.flush();
      // Joined at 35 (slot ticks every 10): not the first VM's slot (100, 200), the one furthest away but empty.
      expect(frames).toHaveLength(2);
      expect(frames[0]).toBeGreaterThan(35);
      expect(frames[0]).toBeLessThanOrEqual(35 + INTERVAL);
      expect(frames[0]! % INTERVAL).not.toBe(0);
      expect(frames[1]! - frames[0]!).toBe(INTERVAL);
    });
  });

  it('clocks are per scheduler and interval', () => {
    withScheduler((scheduler) => {
      const a = idleTicks(INTERVAL, scheduler).subscribe();
      const b = idleTicks(2 * INTERVAL, scheduler).subscribe();
      const c = idleTicks(INTERVAL, scheduler).subscribe();
      expect(scheduler.actions).toHaveLength(2);
      [a, b, c].forEach((s) => s.unsubscribe());
      expect(scheduler.actions).toHaveLength(0);
    });
  });
});

describe('pollJobs: idle polls of many VMs are batched on the shared clock', () => {
  it('20 idle VMs each poll once per idlePollMs, at most 2 in one frame (each VM with its own timer polled all 20 at once)', () => {
    withScheduler((scheduler) => {
      const result: PollResult = { rows: [], seq: 1, receivedAt: 0, session: 1 };
      const starts: number[] = [];
      const subscriptions = Array.from({ length: 20 }, () =>
        pollJobs({
          sessions$: of(1),
          active$: new BehaviorSubject(false),
          poll: () => {
            starts.push(scheduler.now());
            return of(result);
          },
          idlePollMs: INTERVAL,
          scheduler,
        }).subscribe(),
      );
      scheduler.schedule(() => subscriptions.forEach((s) => s.unsubscribe()), 2 * INTERVAL + 1);
      scheduler.flush();
      const idle = starts.filter((frame) => frame > 0);
      expect(starts.filter((frame) => frame === 0)).toHaveLength(20); // every session's reconcile
      expect(idle).toHaveLength(40);
      const perFrame = new Map<number, number>();
      for (const frame of idle) perFrame.set(frame, (perFrame.get(frame) ?? 0) + 1);
      expect(Math.max(...perFrame.values())).toBe(2);
      expect(perFrame.size).toBe(2 * SLOTS);
    });
  });
});
