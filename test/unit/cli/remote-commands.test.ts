import { describe, expect, it } from 'vitest';
import { judge, WAIT_EXIT } from '../../../src/cli/wait.js';
import { parseSpeed } from '../../../src/cli/control.js';
import { parseDuration } from '../../../src/cli/remote.js';
import type { JobState } from '../../../src/generated/schema-types.js';

const base: JobState = {
  vm: 'vm1', id: 'j0', incarnation: 1, type: 'mirror', state: 'running', ready: false, stale: false,
  progress: { current: 64, total: 64, percent: 100, rate: 1048576, etaSeconds: 0 },
  updatedAt: '2026-11-25T00:00:00Z', stateSince: '2026-11-25T00:00:00Z', source: 'event',
};

describe('wait verdicts', () => {
  it('never calls a job ready because offset == len', () => {
    expect(judge(base, 'ready')).toBeUndefined();
  });
  it('is reached for ready in ready and standby', () => {
    expect(judge({ ...base, state: 'ready', ready: true }, 'ready')?.code).toBe(WAIT_EXIT.reached);
    expect(judge({ ...base, state: 'standby', ready: true, pauseReason: 'user' }, 'ready')?.code).toBe(WAIT_EXIT.reached);
  });
  it('ends with 1 when the job concluded before it was ready', () => {
    const v = judge({ ...base, state: 'concluded', ready: false, outcome: 'cancelled' }, 'ready');
    expect(v?.code).toBe(WAIT_EXIT.endedOtherwise);
    expect(v?.message).toContain('cancelled');
  });
  it('for ready, a job that was ready and has since concluded says so, with its outcome and pivot (exit 1)', () => {
    const pivoted = judge({ ...base, state: 'dismissed', ready: false, outcome: 'completed', pivoted: true }, 'ready');
    expect(pivoted?.code).toBe(WAIT_EXIT.endedOtherwise);
    expect(pivoted?.message).toMatch(/^job was ready and has since concluded: outcome completed, pivoted: /);
    // Seen ready by the client, then cancelled: still not "ended before it was ready".
    const seen = judge({ ...base, state: 'concluded', ready: false, outcome: 'cancelled' }, 'ready', true);
    expect(seen?.message).toMatch(/^job was ready and has since concluded: outcome cancelled/);
  });
  it('for concluded: 0 only for outcome completed, 1 for failed, cancelled and unknown', () => {
    expect(judge({ ...base, state: 'concluded', outcome: 'completed' }, 'concluded')?.code).toBe(0);
    for (const outcome of ['failed', 'cancelled', 'unknown'] as const) {
      expect(judge({ ...base, state: 'concluded', outcome }, 'concluded')?.code).toBe(1);
    }
    expect(judge({ ...base, state: 'dismissed', outcome: 'completed' }, 'concluded')?.code).toBe(0);
    expect(judge({ ...base, state: 'ready', ready: true }, 'concluded')).toBeUndefined();
  });
});

describe('durations', () => {
  it('parses units and bare seconds, refuses nonsense', () => {
    expect(parseDuration('10m', '--timeout')).toBe(600_000);
    expect(parseDuration('250ms', '--timeout')).toBe(250);
    expect(parseDuration('90', '--timeout')).toBe(90_000);
    expect(() => parseDuration('ten', '--timeout')).toThrow(/--timeout: 'ten' is not a duration/);
  });
});

describe('set-speed --speed', () => {
  it('takes bytes/s, or binary units (k, M, G, T, with or without iB and /s); 0 is unlimited', () => {
    expect(parseSpeed('0')).toBe(0);
    expect(parseSpeed('1048576')).toBe(1048576);
    expect(parseSpeed('512k')).toBe(512 * 1024);
    expect(parseSpeed('8M')).toBe(8 * 1024 ** 2);
    expect(parseSpeed('8MiB/s')).toBe(8 * 1024 ** 2);
    expect(parseSpeed('2 GiB')).toBe(2 * 1024 ** 3);
  });
  it('refuses what is not a whole, safe number of bytes/s', () => {
    for (const text of ['fast', '-1', '1.5M', '8X', '', '9999999999999T']) expect(() => parseSpeed(text), text).toThrow(/--speed: .* is not a speed in bytes\/s/);
  });
});
