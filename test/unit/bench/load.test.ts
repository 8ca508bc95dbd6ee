import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { cpuTicks, describeLoad, runnableTasks, sampleLoad, type LoadSample } from '../../../bench/lib/load.js';

const sample = (over: Partial<LoadSample>): LoadSample => ({ cores: 2, loadAverage: [0.2, 0.3], busyCores: 0.1, ownCores: 0, runnable: 0.2, sampleMs: 2500, ...over });

describe('the bench run load label', () => {
  it('calls a machine quiet when little runs, even while the load average still carries an earlier run', () => {
    const note = describeLoad(sample({ loadAverage: [1.9, 1.2], busyCores: 0.12, runnable: 0.3 }));
    expect(note).not.toContain('LOADED');
    expect(note).toContain('quiet at the start (the load average is the decay of earlier work)');
    // Both figures are said: what ran, and the load average.
    expect(note).toContain('0.12 of 2 cores busy');
    expect(note).toContain('load average 1.9 (1 min) / 1.2 (5 min)');
  });

  it('calls a machine LOADED when more than half the cores were busy in the sample, whatever the load average', () => {
    const note = describeLoad(sample({ loadAverage: [0.1, 0.1], busyCores: 1.4 }));
    expect(note).toContain('a LOADED, SHARED machine');
    expect(note).toContain('load average 0.1 (1 min)');
  });

  it('calls a machine LOADED when more tasks than half the cores were runnable on average', () => {
    expect(describeLoad(sample({ busyCores: 0.6, runnable: 1.5 }))).toContain('LOADED');
    expect(describeLoad(sample({ busyCores: 0.6, runnable: 0.5 }))).not.toContain('LOADED');
  });

  it('calls a quiet machine with a quiet load average just quiet', () => {
    expect(describeLoad(sample({}))).toMatch(/: quiet at the start$/);
  });

  it('reads busy and total jiffies from /proc/stat, idle, iowait and steal not busy', () => {
    const stat = 'cpu  100 20 30 400 50 6 7 8 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n';
    expect(cpuTicks(stat)).toEqual({ busy: 100 + 20 + 30 + 6 + 7, total: 100 + 20 + 30 + 6 + 7 + 400 + 50 + 8 });
    expect(() => cpuTicks('intr 1 2 3\n')).toThrow(/expected the "cpu" line/);
  });

  it('reads the running count from /proc/loadavg', () => {
    expect(runnableTasks('2.79 2.51 1.79 4/187 32222\n')).toBe(4);
    expect(() => runnableTasks('2.79 2.51 1.79\n')).toThrow(/running\/total/);
  });

  it("samples the real machine, this process's own CPU excluded, another process's counted", async () => {
    // This process spins for most of the sample: busy, but not load of the machine's.
    const spinUntil = performance.now() + 600;
    const own = sampleLoad(1_200, 50);
    setTimeout(() => {
      while (performance.now() < spinUntil);
    }, 100);
    const mine = await own;
    expect(mine.sampleMs).toBeGreaterThanOrEqual(1_200);
    // The spin was seen as this process's own CPU, and that is what busyCores leaves out.
    expect(mine.ownCores).toBeGreaterThan(0.2);
    expect(mine.busyCores).toBeGreaterThanOrEqual(0);
    expect(mine.busyCores).toBeLessThanOrEqual(mine.cores);
    expect(mine.runnable).toBeGreaterThanOrEqual(0);

    // A child that spins through the whole sample is another process's work: at least part of a core
    // (the machine may be shared, so no upper bound, and the child may not get a whole core).
    const child = spawn(process.execPath, ['-e', 'const end = Date.now() + 4000; while (Date.now() < end);'], { stdio: 'ignore' });
    try {
      await new Promise((resolve) => child.once('spawn', resolve));
      const loaded = await sampleLoad(1_500, 50);
      expect(loaded.busyCores).toBeGreaterThan(0.3);
      expect(loaded.runnable).toBeGreaterThan(0.3);
    } finally {
      child.kill('SIGKILL');
    }
  });
});
