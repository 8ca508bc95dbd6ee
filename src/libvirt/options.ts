/**
 * LibvirtClientOptions with every default filled in and every value checked, so a bad setting is a
 * ConfigError naming its field at construction, not a surprise at the first connect.
 */
import net from 'node:net';
import type { Duplex } from 'node:stream';
import { resolveReconnectPolicy, type ResolvedReconnectPolicy } from '../backoff.js';
import { ConfigError } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import { DEFAULT_LIBVIRT_URI, resolveLibvirtAddress } from './address.js';
import { VIR_NET_MESSAGE_HEADER_BYTES, VIR_NET_MESSAGE_MAX } from './constants.js';
import { DEFAULT_KEEPALIVE } from './keepalive.js';
import type { LibvirtClientOptions } from './types.js';

/** setTimeout's ceiling (2^31 - 1 ms); a longer delay would fire at once. */
export const MAX_TIMER_MS = 2_147_483_647;

export interface ResolvedClientOptions {
  uri: string;
  readOnly: boolean;
  name: string;
  /** The URI sent in connect open (transport and client-side parameters removed). */
  openUri: string;
  socketPath: string;
  log: Logger;
  connect: (socketPath: string) => Duplex;
  connectTimeoutMs: number;
  negotiateTimeoutMs: number;
  defaultTimeoutMs: number;
  maxMessageBytes: number;
  maxPendingCalls: number;
  keepalive: { intervalMs: number; count: number } | false;
  reconnect: ResolvedReconnectPolicy;
}

export function resolveClientOptions(options: LibvirtClientOptions): ResolvedClientOptions {
  const uri = options.uri ?? DEFAULT_LIBVIRT_URI;
  const readOnly = options.readOnly ?? false;
  const { openUri, socketPath } = resolveLibvirtAddress(uri, readOnly, options.socketPath);
  const keepalive = options.keepalive;
  return {
    uri,
    readOnly,
    name: options.name ?? uri,
    openUri,
    socketPath,
    log: options.logger ?? silentLogger,
    connect: options.connect ?? ((path) => net.connect({ path })),
    connectTimeoutMs: integer(options.connectTimeoutMs, 5_000, 'connectTimeoutMs', 1, MAX_TIMER_MS),
    negotiateTimeoutMs: integer(options.negotiateTimeoutMs, 10_000, 'negotiateTimeoutMs', 1, MAX_TIMER_MS),
    defaultTimeoutMs: integer(options.defaultTimeoutMs, 10_000, 'defaultTimeoutMs', 1, MAX_TIMER_MS),
    // libvirt's own VIR_NET_MESSAGE_MAX is the ceiling: libvirtd never sends more.
    maxMessageBytes: integer(options.maxMessageBytes, VIR_NET_MESSAGE_MAX, 'maxMessageBytes', VIR_NET_MESSAGE_HEADER_BYTES, VIR_NET_MESSAGE_MAX),
    maxPendingCalls: integer(options.maxPendingCalls, 256, 'maxPendingCalls', 1, Number.MAX_SAFE_INTEGER),
    keepalive:
      keepalive === false
        ? false
        : {
            intervalMs: integer(keepalive?.intervalMs, DEFAULT_KEEPALIVE.intervalMs, 'keepalive.intervalMs', 1, MAX_TIMER_MS),
            count: integer(keepalive?.count, DEFAULT_KEEPALIVE.count, 'keepalive.count', 1, 1_000),
          },
    reconnect: resolveReconnectPolicy(options.reconnect),
  };
}

function integer(value: number | undefined, fallback: number, field: string, min: number, max: number): number {
  const resolved = value ?? fallback;
  if (typeof resolved !== 'number' || !Number.isSafeInteger(resolved) || resolved < min || resolved > max) {
    throw new ConfigError(`must be an integer in [${min}, ${max}], got ${String(resolved)}`, field);
  }
  return resolved;
}
