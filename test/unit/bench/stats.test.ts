import { describe, expect, it } from 'vitest';
import { markdownTable, textTable } from '../../../bench/lib/report.js';
import { percentile, summarize } from '../../../bench/lib/stats.js';
import { transitionKey } from '../../../bench/lib/transition-key.js';

describe('bench statistics', () => {
  it('takes nearest-rank percentiles of unsorted samples', () => {
    const samples = Array.from({ length: 100 }, (_, i) => 100 - i); // 100..1
    const summary = summarize(samples);
    expect(summary).toEqual({ count: 100, p50: 50, p95: 95, p99: 99, max: 100 });
    expect(samples[0]).toBe(100); // the input is left as it was
  });

  it('gives NaN, not a number it made up, for no samples', () => {
    expect(percentile([], 0.5)).toBeNaN();
    expect(summarize([]).max).toBeNaN();
  });

  it('uses the single sample for every percentile of one', () => {
    expect(summarize([7])).toEqual({ count: 1, p50: 7, p95: 7, p99: 7, max: 7 });
  });
});

describe('bench report', () => {
  const results = [
    { name: 'idle' as const, rows: [{ metric: 'per connection', value: '10.7 KiB', goal: '< 20 KB', met: true }, { metric: 'snapshot | 1000 jobs', value: '19 ms' }], raw: {} },
    { name: 'fanout' as const, rows: [{ metric: 'share', value: '66%', goal: '>= 80%', met: false }], raw: {} },
  ];

  it('marks each goal met or missed and aligns the columns', () => {
    const lines = textTable(results).split('\n');
    expect(lines).toHaveLength(5);
    expect(lines[2]).toContain('< 20 KB (met)');
    expect(lines[4]).toContain('>= 80% (MISSED)');
    const valueColumn = lines[0]!.indexOf('value');
    expect(lines[2]!.indexOf('10.7 KiB')).toBe(valueColumn);
  });

  it('escapes pipes in markdown cells', () => {
    expect(markdownTable(results)).toContain('snapshot \\| 1000 jobs');
  });
});

describe('transition keys', () => {
  it('tell apart the transitions of one job', () => {
    const job = { id: 'j1', incarnation: 1, state: 'running', ready: false };
    expect(transitionKey('vm1', job)).not.toBe(transitionKey('vm1', { ...job, state: 'ready', ready: true }));
    expect(transitionKey('vm1', job)).not.toBe(transitionKey('vm1', { ...job, incarnation: 2 }));
    expect(transitionKey('vm1', job)).toBe(transitionKey('vm1', { ...job }));
  });
});
