/** What every scenario gets and returns. The list of scenarios lives in bench/scenarios/index.ts. */
import { RpcChild } from './rpc.js';
import type { Resources } from './resources.js';

export interface ScenarioContext {
  quick: boolean;
  resources: Resources;
  log(message: string): void;
}

/** One line of the table: a measured value, its sample count, and the goal it is read against where the issue sets one. */
export interface Row {
  metric: string;
  value: string;
  /** How many samples the value summarizes (mirrors, bursts, windows, runs, connections...), with their unit. */
  samples: string;
  goal?: string;
  met?: boolean;
}

/** One curve of a sweep: y at each x, for a chart in docs/benchmarks.md (bench/lib/charts.ts). */
export interface Series {
  /** File name of the chart (docs/bench/<chart>.svg); several series may share a chart. */
  chart: string;
  /** Title of the chart (the same for every series of a chart). */
  title: string;
  x: string;
  y: string;
  /** Legend entry. */
  name: string;
  points: Array<{ x: number; y: number }>;
}

export interface ScenarioResult {
  name: string;
  rows: Row[];
  /** Sweeps: how the cost grows with the work (subscribers, monitors, jobs). */
  series?: Series[];
  raw: Record<string, unknown>;
}

export type Scenario = (context: ScenarioContext) => Promise<ScenarioResult>;

/** Forks a load generator of bench/load/ and registers its shutdown. */
export function forkLoad(context: ScenarioContext, module: 'subscribers' | 'simulator' | 'qemu-lab' | 'bare-burst'): RpcChild {
  const child = new RpcChild(new URL(`../load/${module}.js`, import.meta.url));
  context.resources.defer(`${module} process`, () => child.close());
  return child;
}

export const ms = (value: number): string => (Number.isFinite(value) ? (value >= 100 ? value.toFixed(0) : value.toFixed(value >= 10 ? 1 : 2)) : 'n/a');
export const percent = (share: number): string => `${(share * 100).toFixed(1)}%`;
export const count = (value: number): string => Math.round(value).toLocaleString('en-US');

/** Positive integers from a comma-separated environment variable, or undefined when it is unset. */
export function envList(name: string): number[] | undefined {
  const text = process.env[name];
  if (!text) return undefined;
  const values = text.split(',').map(Number);
  if (values.some((v) => !Number.isInteger(v) || v <= 0)) throw new Error(`${name}: expected positive integers, got ${JSON.stringify(text)}`);
  return values;
}
