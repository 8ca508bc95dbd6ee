/**
 * What the client-side commands (watch, wait, complete, cancel, pause, resume) share: the gateway URL,
 * the token (flag or environment, so it stays out of shell history), durations, and job formatting.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { GatewayClient } from '../client/gateway-client.js';
import { nodeWebSocket } from '../client/node.js';
import { UsageError } from '../errors.js';
import { toUsageError } from './args.js';
import type { GatewayInfo, JobState, SubscriptionFilter } from '../generated/schema-types.js';

export const TOKEN_ENV = 'BLOCKJOB_GATEWAY_TOKEN';

/** Flags every remote command takes. */
const COMMON_FLAGS = {
  token: { type: 'string' },
  json: { type: 'boolean', default: false },
  help: { type: 'boolean', short: 'h', default: false },
} as const;

type Flags = NonNullable<ParseArgsConfig['options']>;
type Parsed<O extends Flags> = ReturnType<typeof parseArgs<{ args: string[]; allowPositionals: true; strict: true; options: typeof COMMON_FLAGS & O }>>;
export type RemoteArgs<O extends Flags> = { exit: number } | { exit: undefined; values: Parsed<O>['values']; positionals: string[] };

/** Every usage error of every command exits with this (the top level's too). */
export const USAGE_EXIT = 2;

/**
 * A usage error, the same way for every command: one line `command: problem` and a hint where the
 * options are (the whole help again would bury the problem). Returns USAGE_EXIT.
 */
export function usageFailure(command: string, error: unknown): number {
  const message = error instanceof Error ? error.message : String(error);
  const text = message.startsWith(`${command}: `) ? message : `${command}: ${message}`;
  process.stderr.write(`${text}\nRun 'blockjob-gateway ${command} --help' for its options.\n`);
  return USAGE_EXIT;
}

/** Parses a remote command's flags plus the common ones. `--help` prints the usage; a bad flag is a usage failure. */
export function parseRemoteArgs<O extends Flags>(argv: string[], flags: O, command: string, usageText: string): RemoteArgs<O> {
  try {
    const parsed = parseArgs({ args: argv, allowPositionals: true, strict: true, options: { ...COMMON_FLAGS, ...flags } });
    if ((parsed.values as { help?: boolean }).help) {
      process.stdout.write(usageText);
      return { exit: 0 };
    }
    return { exit: undefined, values: parsed.values as Parsed<O>['values'], positionals: parsed.positionals };
  } catch (err) {
    return { exit: usageFailure(command, toUsageError(err)) };
  }
}

/**
 * The gateway URL argument: ws:// or wss://, or the http(s):// URL the demo and `serve` print
 * (mapped to ws(s)://, same host and port).
 */
export function gatewayUrl(positionals: string[], command: string): string {
  const url = positionals[0];
  if (!url) throw new UsageError(`${command}: missing gateway URL (ws://HOST:PORT)`);
  if (positionals.length > 1) throw new UsageError(`${command}: unexpected argument '${positionals[1]}'`);
  const match = /^(wss?|https?):\/\/[^/]+/.exec(url);
  if (!match) throw new UsageError(`${command}: '${url}' is not a gateway URL (ws://, wss://, http:// or https://)`);
  const ws = match[1] === 'http' || match[1] === 'https' ? url.replace(/^http/, 'ws') : url;
  // `http://127.0.0.1:8080/` as printed: the root is the gateway itself.
  return ws.replace(/^(wss?:\/\/[^/]+)\/$/, '$1');
}

/** GET /v1/info of the gateway behind a ws(s):// URL; undefined when it cannot be had (older gateway, no route). */
export async function fetchGatewayInfo(wsUrl: string, bearer: string | undefined, timeoutMs = 5000): Promise<GatewayInfo | undefined> {
  const base = new URL(wsUrl);
  base.protocol = base.protocol === 'wss:' ? 'https:' : 'http:';
  try {
    const response = await fetch(new URL('/v1/info', base), {
      headers: bearer ? { Authorization: `Bearer ${bearer}` } : {},
      signal: AbortSignal.timeout(timeoutMs),
    });
    return response.ok ? ((await response.json()) as GatewayInfo) : undefined;
  } catch {
    return undefined;
  }
}

export function token(flag: string | undefined): string | undefined {
  return flag ?? (process.env[TOKEN_ENV] || undefined);
}

/** How long a command waits for the gateway to answer at all (`--connect-timeout`). */
export const DEFAULT_CONNECT_TIMEOUT = '10s';

/**
 * The connect timeout a command honours: `--connect-timeout`, and never more than `--timeout`, so a
 * wrong URL cannot keep a command longer than its user allowed.
 */
export function connectTimeout(flag: string | undefined, timeoutMs: number | undefined): number {
  const ms = parseDuration(flag ?? DEFAULT_CONNECT_TIMEOUT, '--connect-timeout');
  return timeoutMs === undefined ? ms : Math.min(ms, timeoutMs);
}

/** The library client as the CLI uses it: Node's WebSocket, the token, one gateway URL. */
export function cliClient(url: string, options: { token?: string | undefined; filter?: SubscriptionFilter; connectTimeoutMs: number; progressIntervalMs?: number; maxFinishedJobsPerVm?: number }): GatewayClient {
  return new GatewayClient({
    urls: url,
    socket: nodeWebSocket,
    connectTimeoutMs: options.connectTimeoutMs,
    ...(options.token ? { token: options.token } : {}),
    ...(options.filter ? { filter: options.filter } : {}),
    ...(options.progressIntervalMs !== undefined ? { progressIntervalMs: options.progressIntervalMs } : {}),
    ...(options.maxFinishedJobsPerVm !== undefined ? { maxFinishedJobsPerVm: options.maxFinishedJobsPerVm } : {}),
  });
}

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** `90`, `90s`, `10m`, `1h`, `250ms` -> milliseconds (a bare number is seconds). */
export function parseDuration(text: string, flag: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim());
  if (!m) throw new UsageError(`${flag}: '${text}' is not a duration (e.g. 30s, 10m, 1h)`);
  return Math.round(Number(m[1]) * UNIT_MS[m[2] ?? 's']!);
}

export function requireFlag(value: string | undefined, flag: string, command: string): string {
  if (!value) throw new UsageError(`${command}: ${flag} is required`);
  return value;
}

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

export function formatEta(seconds: number | null): string {
  if (seconds === null) return '-';
  if (seconds < 60) return `${Math.round(seconds)}s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m${String(Math.round(seconds % 60)).padStart(2, '0')}s`;
  return `${Math.floor(seconds / 3600)}h${String(Math.floor((seconds % 3600) / 60)).padStart(2, '0')}m`;
}

/** One line for humans: `vm1/j0 mirror ready (ready) 100% ...`. */
export function describeJob(job: JobState): string {
  const parts = [`${job.vm}/${job.id}`, job.type, job.state];
  if (job.pauseReason) parts.push(`(${job.pauseReason} pause)`);
  if (job.ready) parts.push('ready-to-complete');
  if (job.outcome) parts.push(`outcome=${job.outcome}`);
  if (job.pivoted !== undefined) parts.push(`pivoted=${job.pivoted}`);
  if (job.error) parts.push(`error="${job.error}"`);
  parts.push(`${job.progress.percent.toFixed(1)}%`);
  return parts.join(' ');
}
