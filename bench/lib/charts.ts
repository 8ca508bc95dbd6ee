/**
 * Sweeps drawn as SVG with vega-lite (compiled to a vega spec, rendered headless by vega's View):
 * one chart per `Series.chart`, log-scaled x (the sweeps span two decades), one line per series,
 * so a reader sees where cost per unit is flat (linear total cost) and where it bends.
 */
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';
import type { Series } from './scenario.js';

export interface Chart {
  file: string;
  title: string;
  svg: string;
}

export async function renderCharts(series: readonly Series[]): Promise<Chart[]> {
  const byChart = new Map<string, Series[]>();
  for (const s of series) byChart.set(s.chart, [...(byChart.get(s.chart) ?? []), s]);
  const charts: Chart[] = [];
  for (const [file, group] of byChart) {
    const first = group[0]!;
    const values = group.flatMap((s) => s.points.map((p) => ({ x: p.x, y: p.y, series: s.name })));
    const spec: TopLevelSpec = {
      $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
      title: first.title,
      width: 520,
      height: 260,
      background: 'white',
      data: { values },
      mark: { type: 'line', point: true },
      encoding: {
        x: { field: 'x', type: 'quantitative', title: first.x, scale: { type: 'log' } },
        y: { field: 'y', type: 'quantitative', title: first.y, scale: { zero: true } },
        color: { field: 'series', type: 'nominal', title: null, legend: { orient: 'bottom' } },
      },
    };
    const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' });
    charts.push({ file, title: first.title, svg: await view.toSVG() });
    view.finalize();
  }
  return charts;
}
