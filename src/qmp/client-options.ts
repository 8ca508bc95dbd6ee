/** QmpClient's options: what a caller may set, and the checked values the client runs with. */
import type { Duplex } from 'node:stream';
import type { ReconnectPolicy } from '../backoff.js';
import { ConfigError } from '../errors.js';
import type { Logger } from '../log.js';
import { DEFAULT_MAX_MESSAGE_BYTES } from './framing.js';
import { defaultConnect } from './transport.js';
import type { QmpAddress } from './types.js';

/** setTimeout's ceiling (2^31 - 1 ms); a longer delay would fire at once. */
export const MAX_TIMER_MS = 2_147_483_647;

export interface QmpClientOptions {
  /** Where the monitor listens: `unix:/path`, `tcp:host:port`, `tcp:[v6]:port`, or a parsed QmpAddress. */
  address: string | QmpAddress;
  /** Name used in logs and errors (e.g. the VM name). @default the formatted address */
  name?: string;
  /** Opens the transport. Inject a Duplex for tests or proxies. @default net.connect to the unix path or tcp host:port */
  connect?: (address: QmpAddress) => Duplex;
  /** Give up a socket connect that neither succeeds nor fails. @default 5_000 */
  connectTimeoutMs?: number;
  /** Connected but no greeting within this: the monitor is busy with another client. @default 3_000 */
  greetingTimeoutMs?: number;
  /** Greeting received but no reply to qmp_capabilities within this. @default 5_000 */
  negotiateTimeoutMs?: number;
  /** execute() timeout when the call gives none. @default 10_000 */
  defaultTimeoutMs?: number;
  /** Largest inbound message; a bigger one is a protocol error and ends the connection. @default 4 MiB */
  maxMessageBytes?: number;
  /** How to reconnect after a loss or a failed attempt. */
  reconnect?: ReconnectPolicy;
  /** Commands awaiting a reply at once; execute() beyond it rejects with QmpTooManyPendingError. @default 256 */
  maxPendingCommands?: number;
  /** Receives `-->`/`<--` traces of every message at debug, connection news at info/warn. @default silent */
  logger?: Logger;
}

export interface ResolvedOptions {
  connect: (address: QmpAddress) => Duplex;
  connectTimeoutMs: number;
  greetingTimeoutMs: number;
  negotiateTimeoutMs: number;
  defaultTimeoutMs: number;
  maxMessageBytes: number;
  maxPendingCommands: number;
}

/** The defaults filled in; a bad number throws a ConfigError naming its option. */
export function resolveOptions(options: QmpClientOptions): ResolvedOptions {
  return {
    connect: options.connect ?? defaultConnect,
    connectTimeoutMs: positive(options, 'connectTimeoutMs', 5_000),
    greetingTimeoutMs: positive(options, 'greetingTimeoutMs', 3_000),
    negotiateTimeoutMs: positive(options, 'negotiateTimeoutMs', 5_000),
    defaultTimeoutMs: positive(options, 'defaultTimeoutMs', 10_000),
    maxMessageBytes: positive(options, 'maxMessageBytes', DEFAULT_MAX_MESSAGE_BYTES),
    maxPendingCommands: positive(options, 'maxPendingCommands', 256),
  };
}

function positive<K extends keyof QmpClientOptions>(options: QmpClientOptions, key: K, fallback: number): number {
  const value = options[key] ?? fallback;
  if (typeof value !== 'number' || !(value > 0) || value > MAX_TIMER_MS) {
    throw new ConfigError(`must be a positive number up to ${MAX_TIMER_MS}, got ${String(value)}`, key);
  }
  return value;
}
