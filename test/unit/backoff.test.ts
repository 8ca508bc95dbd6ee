import { describe, expect, it, vi } from 'vitest';
import { ConfigError } from '../../src/errors.js';
import { DEFAULT_RECONNECT_POLICY, ReconnectBackoff, reconnectDelayMs, resolveReconnectPolicy } from '../../src/backoff.js';

const middle = () => 0.5; // no jitter effect

describe('reconnect backoff', () => {
  it('grows exponentially from initialDelayMs and is capped at maxDelayMs', () => {
    const policy = resolveReconnectPolicy({ initialDelayMs: 100, multiplier: 2, maxDelayMs: 1000 });
    expect([0, 1, 2, 3, 4, 5, 50].map((n) => reconnectDelayMs(n, policy, middle))).toEqual([100, 200, 400, 800, 1000, 1000, 1000]);
  });

  it('spreads delays by ±jitter', () => {
    const policy = resolveReconnectPolicy({ initialDelayMs: 1000, jitter: 0.2 });
    expect(reconnectDelayMs(0, policy, () => 0)).toBe(800);
    expect(reconnectDelayMs(0, policy, () => 0.999999)).toBe(1200);
    const samples = Array.from({ length: 200 }, () => reconnectDelayMs(0, policy));
    expect(Math.min(...samples)).toBeGreaterThanOrEqual(800);
    expect(Math.max(...samples)).toBeLessThanOrEqual(1200);
    expect(new Set(samples).size).toBeGreaterThan(10);
  });

  it('has the documented defaults', () => {
    expect(resolveReconnectPolicy()).toEqual({ enabled: true, initialDelayMs: 100, maxDelayMs: 10_000, multiplier: 2, jitter: 0.2, healthyAfterMs: 10_000 });
    expect(resolveReconnectPolicy({ initialDelayMs: undefined })).toEqual(DEFAULT_RECONNECT_POLICY);
  });

  it.each([
    [{ initialDelayMs: -1 }, 'reconnect.initialDelayMs'],
    [{ initialDelayMs: 500, maxDelayMs: 100 }, 'reconnect.maxDelayMs'],
    [{ multiplier: 0.5 }, 'reconnect.multiplier'],
    [{ jitter: 1.5 }, 'reconnect.jitter'],
    [{ jitter: Number.NaN }, 'reconnect.jitter'],
    [{ healthyAfterMs: -1 }, 'reconnect.healthyAfterMs'],
  ])('rejects %j naming %s', (policy, path) => {
    expect(() => resolveReconnectPolicy(policy)).toThrow(ConfigError);
    expect(() => resolveReconnectPolicy(policy)).toThrow(new RegExp(`^${path.replace('.', '\\.')}: must be`));
  });
});

describe('the failure streak of one connection (ReconnectBackoff)', () => {
  const policy = resolveReconnectPolicy({ initialDelayMs: 100, maxDelayMs: 10_000, jitter: 0, healthyAfterMs: 5_000 });
  const clock = () => {
    const state = { now: 0 };
    return { state, backoff: new ReconnectBackoff(policy, () => state.now, middle) };
  };

  it('grows over failed attempts', () => {
    const { backoff } = clock();
    expect([1, 2, 3, 4].map(() => backoff.nextDelayMs())).toEqual([100, 200, 400, 800]);
    expect(backoff.streak).toBe(4);
  });

  it('keeps growing when sessions break soon after negotiating (issue 15: a steady ~100 ms before)', () => {
    const { state, backoff } = clock();
    const delays: number[] = [];
    for (let i = 0; i < 6; i++) {
      backoff.sessionUp();
      state.now += 50; // negotiated, then broken 50 ms later
      delays.push(backoff.nextDelayMs());
      state.now += delays.at(-1)!;
    }
    expect(delays).toEqual([100, 200, 400, 800, 1600, 3200]);
  });

  it('forgets the streak once a session stayed up healthyAfterMs', () => {
    const { state, backoff } = clock();
    for (let i = 0; i < 5; i++) backoff.nextDelayMs();
    backoff.sessionUp();
    state.now += 4_999;
    expect(backoff.streakIfLostNow).toBe(5);
    state.now += 1;
    expect(backoff.streakIfLostNow).toBe(0);
    expect(backoff.nextDelayMs()).toBe(100);
    // A failed attempt after that loss does not count the old session again.
    state.now += 60_000;
    expect(backoff.nextDelayMs()).toBe(200);
  });

  it('schedules one attempt at a time after the delay it earns; cancel drops it; nothing when reconnect is off', () => {
    vi.useFakeTimers();
    try {
      const backoff = new ReconnectBackoff(resolveReconnectPolicy({ initialDelayMs: 5, jitter: 0 }));
      let attempts = 0;
      expect(backoff.schedule(() => attempts++)).toBe(5);
      expect(backoff.schedule(() => attempts++)).toBe(10); // replaces the pending one, with the longer delay
      vi.advanceTimersByTime(9);
      expect(attempts).toBe(0);
      vi.advanceTimersByTime(1);
      expect(attempts).toBe(1);
      vi.advanceTimersByTime(1_000);
      expect(attempts).toBe(1);
      backoff.schedule(() => attempts++);
      backoff.cancel();
      vi.advanceTimersByTime(1_000);
      expect(attempts).toBe(1);
      const off = new ReconnectBackoff(resolveReconnectPolicy({ enabled: false }));
      expect(off.schedule(() => attempts++)).toBeUndefined();
      expect([off.streak, vi.getTimerCount()]).toEqual([0, 0]);
    } finally {
      vi.useRealTimers();
    }
  });
});
