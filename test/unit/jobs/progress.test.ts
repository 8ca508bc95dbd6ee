import { describe, expect, it } from 'vitest';
import { advanceRate, type RateEstimate } from '../../../src/jobs/progress.js';

function feed(samples: [at: number, current: number, total: number][], options = { timeConstantMs: 1_000 }): RateEstimate {
  let estimate: RateEstimate | undefined;
  for (const [at, current, total] of samples) estimate = advanceRate(estimate, { current, total }, at, options);
  if (!estimate) throw new Error('no samples');
  return estimate;
}

describe('advanceRate', () => {
  it('has no rate or ETA from one sample, and percent from current/total', () => {
    const { progress } = feed([[0, 25, 100]]);
    expect(progress).toEqual({ current: 25, total: 100, percent: 25, rate: null, etaSeconds: null });
  });

  it('converges to a steady rate, and the ETA follows from it', () => {
    const samples: [number, number, number][] = [];
    for (let i = 0; i <= 20; i += 1) samples.push([i * 500, i * 5_000_000, 200_000_000]);
    const { progress } = feed(samples);
    expect(progress.rate).toBeCloseTo(10_000_000, -3);
    expect(progress.etaSeconds).toBeCloseTo((200_000_000 - 100_000_000) / 10_000_000, 1);
  });

  it('smooths a burst instead of jumping to it', () => {
    const { progress } = feed([[0, 0, 1e9], [1_000, 10e6, 1e9], [1_100, 30e6, 1e9]]);
    expect(progress.rate).toBeGreaterThan(10e6);
    expect(progress.rate).toBeLessThan(200e6);
  });

  it('ignores a sample whose current went backwards (two queries disagreeing) for the rate', () => {
    const before = feed([[0, 0, 100e6], [1_000, 10e6, 100e6]]);
    const after = advanceRate(before, { current: 9e6, total: 100e6 }, 1_500, { timeConstantMs: 1_000 });
    expect(after.progress.rate).toBe(before.progress.rate);
    expect(after.progress.current).toBe(9e6);
  });

  it('keeps the rate when total grows (guest writes), only the ETA moves', () => {
    const a = feed([[0, 0, 100e6], [1_000, 10e6, 100e6], [2_000, 20e6, 100e6]]);
    const b = feed([[0, 0, 100e6], [1_000, 10e6, 100e6], [2_000, 20e6, 150e6]]);
    expect(b.progress.rate).toBe(a.progress.rate);
    expect(b.progress.etaSeconds).toBeGreaterThan(a.progress.etaSeconds ?? Infinity);
  });

  it('reports ETA 0 at offset == len (progress only: not ready, not done)', () => {
    expect(feed([[0, 0, 10], [1_000, 10, 10]]).progress.etaSeconds).toBe(0);
  });

  it('a stalled job settles at rate 0 (no endless tiny updates) and an unknown ETA', () => {
    const samples: [number, number, number][] = [[0, 0, 100e6], [1_000, 50e6, 100e6]];
    for (let t = 2_000; t <= 120_000; t += 1_000) samples.push([t, 50e6, 100e6]);
    const { progress } = feed(samples, { timeConstantMs: 3_000 });
    expect(progress.rate).toBe(0);
    expect(progress.etaSeconds).toBeNull();
  });

  it('samples closer than minIntervalMs do not make a rate', () => {
    const { progress } = feed([[0, 0, 100], [10, 50, 100]]);
    expect(progress.rate).toBeNull();
    expect(progress.current).toBe(50);
  });
});
