/**
 * Fleet test helpers: `serve` in-process as a host gateway or an edge (on port 0, stopped after the
 * test), and the same as a separate process of the built CLI where kill -9 matters.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { serve } from '../../src/cli/serve.js';
import { makeTestDir } from '../utils/qsd.js';
import { startRedis, startRedisCluster } from '../../src/lab/redis.js';
import type { RunningGateway } from '../../src/gateway/server.js';
import { runCli, type CliRun } from '../utils/built-cli.js';
import { TestClient, type Msg } from '../utils/gateway-support.js';

// Host gateways record unacknowledged streams under the state directory: one of the test run's own,
// so records of earlier runs (or of other suites on the same Redis port) never meet this one's.
process.env.XDG_STATE_HOME = makeTestDir('bjf-state-');

/** A Redis the fleet suites run their core cases against: one server, and a 3-master cluster. */
export interface Backend {
  url: string;
  dispose(): Promise<void>;
}

export const BACKENDS: [string, () => Promise<Backend>][] = [
  ['standalone Redis', () => startRedis()],
  ['a 3-master Redis Cluster', () => startRedisCluster()],
];

export interface InProcessGateway {
  gateway: RunningGateway;
  stop(): Promise<number>;
}

/** `prefix`: a Redis key prefix of the test's own; `fleet`: more fleet settings (through a config file; flags set the rest). */
export async function serveInProcess(args: string[], prefix?: string, fleet: Record<string, unknown> = {}, config: Record<string, unknown> = {}): Promise<InProcessGateway> {
  const controller = new AbortController();
  if (prefix !== undefined || Object.keys(fleet).length > 0) {
    const file = join(makeTestDir('bjf-'), 'gateway.json');
    writeFileSync(file, JSON.stringify({ ...config, fleet: { redis: 'env:UNUSED', ...(prefix !== undefined ? { keyPrefix: prefix } : {}), ...fleet } }));
    args = ['--config', file, ...args];
  }
  let exit!: Promise<number>;
  const gateway = await new Promise<RunningGateway>((resolve, reject) => {
    exit = serve([...args, '--listen', '127.0.0.1:0', '--log-level', process.env.FLEET_LOG ?? 'silent', '--log-format', 'json'], {
      signal: controller.signal,
      out: () => {},
      onListening: resolve,
    });
    exit.catch(reject);
  });
  return {
    gateway,
    stop: async () => {
      controller.abort();
      return exit;
    },
  };
}

export const hostArgs = (redisUrl: string, hostId: string, vms: Record<string, string>): string[] => [
  '--redis',
  redisUrl,
  '--host-id',
  hostId,
  ...Object.entries(vms).flatMap(([vm, sock]) => ['--qmp', `${vm}=unix:${sock}`]),
];

export const edgeArgs = (redisUrl: string): string[] => ['--redis', redisUrl, '--edge'];

export interface ProcessGateway {
  run: CliRun;
  wsUrl: string;
  url: string;
}

/** The built CLI as its own process (so it can be killed with -9); resolves once it listens. */
export async function serveProcess(args: string[], env: Record<string, string> = {}): Promise<ProcessGateway> {
  // Defaults first: a test's own flags (a log level) win.
  const run = runCli(['serve', '--listen', '127.0.0.1:0', '--log-level', 'warn', '--log-format', 'json', ...args], env);
  const line = await run.line(/serving .* at http:\/\//, 30_000);
  const url = /at (http:\/\/[^ ]+)/.exec(line)![1]!;
  const wsUrl = /WebSocket (ws:\/\/[^)]+)\)/.exec(line)![1]!;
  return { run, url, wsUrl };
}

/** Poll until `check` holds (a loaded machine: conditions, never fixed sleeps). */
export async function eventually(check: () => boolean | Promise<boolean>, timeoutMs = 20_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** One sample of a Prometheus text exposition: `name{labels}` exactly as written (labels in order), or undefined. */
export function sample(text: string, name: string, labels = ''): number | undefined {
  const key = labels ? `${name}{${labels}} ` : `${name} `;
  const line = text.split('\n').find((l) => l.startsWith(key));
  return line === undefined ? undefined : Number(line.slice(key.length));
}

export async function metricsOf(url: string): Promise<string> {
  return (await fetch(`${url}/metrics`)).text();
}

/** A stream's `event` and `vm` messages as one client got them. */
export const streamMessages = (c: TestClient, vm: string): Msg[] => c.messages.filter((m) => (m.type === 'event' || m.type === 'vm') && m.vm === vm);

/** What a resuming client would hold: the last position of `vm` it saw (synced, event, vm or bookmark). */
export function lastSeen(c: TestClient, vm: string): { epoch: string; offset: number } {
  const m = c.messages.filter((x) => ['synced', 'event', 'vm', 'bookmark'].includes(x.type) && x.vm === vm).at(-1)!;
  return { epoch: m.epoch, offset: m.offset };
}

/** What a test started, stopped after it (`run` in afterEach), last started first. */
export class Stops {
  private readonly items: (() => Promise<unknown>)[] = [];

  add(...stops: (() => Promise<unknown>)[]): void {
    this.items.push(...stops);
  }

  /** A client of `url`, terminated after the test. */
  async client(url: string): Promise<TestClient> {
    const c = await TestClient.connect(url);
    this.add(async () => c.ws.terminate());
    return c;
  }

  async run(): Promise<void> {
    for (const stop of this.items.splice(0).reverse()) await stop().catch(() => undefined);
  }
}
