import { describe, expect, it } from 'vitest';
import { renderCharts } from '../../../bench/lib/charts.js';
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
    { name: 'idle', rows: [{ metric: 'per connection', value: '10.7 KiB', samples: '19,800 connections', goal: '< 20 KB', met: true }, { metric: 'snapshot | 1000 jobs', value: '19 ms', samples: '10 runs' }], raw: {} },
    { name: 'fanout', rows: [{ metric: 'share', value: '66%', samples: '1 window', goal: '>= 80%', met: false }], raw: {} },
  ];

  it('marks each goal met or missed and aligns the columns', () => {
    const lines = textTable(results).split('\n');
    expect(lines).toHaveLength(5);
    expect(lines[2]).toContain('< 20 KB (met)');
    expect(lines[4]).toContain('>= 80% (MISSED)');
    const valueColumn = lines[0]!.indexOf('value');
    expect(lines[2]!.indexOf('10.7 KiB')).toBe(valueColumn);
    // Every row names its sample count.
    expect(lines[2]!.indexOf('19,800 connections')).toBe(lines[0]!.indexOf('samples'));
    expect(lines[3]).toContain('10 runs');
  });

  it('escapes pipes in markdown cells', () => {
    expect(markdownTable(results)).toContain('snapshot \\| 1000 jobs');
  });
});

describe('bench charts', () => {
  it('draws one SVG per chart with a line per series, through vega', async () => {
    const series = [
      { chart: 'c', title: 'Cost vs N', x: 'subscribers', y: 'µs', name: 'gateway', points: [{ x: 100, y: 9 }, { x: 1000, y: 7 }, { x: 10_000, y: 6.5 }] },
      { chart: 'c', title: 'Cost vs N', x: 'subscribers', y: 'µs', name: 'bare', points: [{ x: 100, y: 5 }, { x: 1000, y: 5.5 }] },
      { chart: 'd', title: 'Other', x: 'jobs', y: 'ms', name: 'p50', points: [{ x: 100, y: 1 }] },
    ];
    const charts = await renderCharts(series);
    expect(charts.map((c) => c.file)).toEqual(['c', 'd']);
    expect(charts[0]!.svg.startsWith('<svg')).toBe(true);
    expect(charts[0]!.svg).toContain('Cost vs N');
    expect(charts[0]!.svg).toContain('gateway');
    expect(charts[0]!.svg).toContain('bare');
    expect(charts[1]!.svg).not.toContain('gateway');
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
