import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/errors.js';
import { DEFAULT_RECONNECT_POLICY, reconnectDelayMs, resolveReconnectPolicy } from '../../src/backoff.js';

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
    expect(resolveReconnectPolicy()).toEqual({ enabled: true, initialDelayMs: 100, maxDelayMs: 10_000, multiplier: 2, jitter: 0.2 });
    expect(resolveReconnectPolicy({ initialDelayMs: undefined })).toEqual(DEFAULT_RECONNECT_POLICY);
  });

  it.each([
    [{ initialDelayMs: -1 }, 'reconnect.initialDelayMs'],
    [{ initialDelayMs: 500, maxDelayMs: 100 }, 'reconnect.maxDelayMs'],
    [{ multiplier: 0.5 }, 'reconnect.multiplier'],
    [{ jitter: 1.5 }, 'reconnect.jitter'],
    [{ jitter: Number.NaN }, 'reconnect.jitter'],
  ])('rejects %j naming %s', (policy, path) => {
    expect(() => resolveReconnectPolicy(policy)).toThrow(ConfigError);
    expect(() => resolveReconnectPolicy(policy)).toThrow(new RegExp(`^${path.replace('.', '\\.')}: must be`));
  });
});
