/** What every scenario gets and returns. */
import { RpcChild } from './rpc.js';
import type { Resources } from './resources.js';

export type ScenarioName = 'ready' | 'fanout' | 'idle' | 'monitors' | 'burst' | 'fleet' | 'libvirt';
export const SCENARIOS: readonly ScenarioName[] = ['ready', 'fanout', 'idle', 'monitors', 'burst', 'fleet', 'libvirt'];

export interface ScenarioContext {
  quick: boolean;
  resources: Resources;
  log(message: string): void;
}

/** One line of the table: a measured value, and the goal it is read against where the issue sets one. */
export interface Row {
  metric: string;
  value: string;
  goal?: string;
  met?: boolean;
}

export interface ScenarioResult {
  name: ScenarioName;
  rows: Row[];
  raw: Record<string, unknown>;
}

export type Scenario = (context: ScenarioContext) => Promise<ScenarioResult>;

/** Forks a load generator of bench/load/ and registers its shutdown. */
export function forkLoad(context: ScenarioContext, module: 'subscribers' | 'simulator'): RpcChild {
  const child = new RpcChild(new URL(`../load/${module}.js`, import.meta.url));
  context.resources.defer(`${module} process`, () => child.close());
  return child;
}

export const ms = (value: number): string => (Number.isFinite(value) ? (value >= 100 ? value.toFixed(0) : value.toFixed(value >= 10 ? 1 : 2)) : 'n/a');
export const percent = (share: number): string => `${(share * 100).toFixed(1)}%`;
export const count = (value: number): string => Math.round(value).toLocaleString('en-US');
