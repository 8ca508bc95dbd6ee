/**
 * The heartbeat's tick waits for a running fan-out pass (its pings would add to the pass's last
 * delivery), but a bounded time: a gateway that fans out without pause must still ping.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { BoundedDeferral } from '../../../src/gateway/use/deferral.js';

beforeEach(() => vi.useFakeTimers());
afterEach(() => vi.useRealTimers());

describe('BoundedDeferral', () => {
  it('runs at once when not busy', () => {
    const runs: number[] = [];
    const deferral = new BoundedDeferral(() => false, () => runs.push(Date.now()), 5, 200);
    deferral.request();
    expect(runs).toHaveLength(1);
    expect(deferral.pending).toBe(false);
  });

  it('waits while busy and runs within one step of it clearing', () => {
    let busy = true;
    let runs = 0;
    const deferral = new BoundedDeferral(() => busy, () => runs++, 5, 200);
    deferral.request();
    vi.advanceTimersByTime(50);
    expect(runs).toBe(0);
    expect(deferral.pending).toBe(true);
    busy = false;
    vi.advanceTimersByTime(5);
    expect(runs).toBe(1);
    expect(deferral.pending).toBe(false);
  });

  it('runs after maxMs even if never idle, and each later request waits afresh', () => {
    let runs = 0;
    const deferral = new BoundedDeferral(() => true, () => runs++, 5, 200);
    deferral.request();
    vi.advanceTimersByTime(195);
    expect(runs).toBe(0);
    vi.advanceTimersByTime(5);
    expect(runs).toBe(1);
    deferral.request();
    vi.advanceTimersByTime(195);
    expect(runs).toBe(1);
    vi.advanceTimersByTime(5);
    expect(runs).toBe(2);
  });

  it('cancel drops a waiting request', () => {
    let runs = 0;
    const deferral = new BoundedDeferral(() => true, () => runs++, 5, 200);
    deferral.request();
    deferral.cancel();
    vi.advanceTimersByTime(1000);
    expect(runs).toBe(0);
    expect(deferral.pending).toBe(false);
  });
});
