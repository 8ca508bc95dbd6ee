/**
 * startGateway: one node http server carrying the WebSocket endpoint, the HTTP endpoints and the
 * dashboard, in front of a JobSource.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { isIP } from 'node:net';
import { ConfigError } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import { TokenAuthenticator, type Principal } from './auth.js';
import { GatewayCore, type GatewayCoreOptions } from './core.js';
import { createHttpHandler, type GatewayHealth } from './http.js';
import { createMetrics, type GatewayMetrics } from './metrics.js';
import { servedHosts } from './origin.js';
import { CloseCode, WS_PATH } from '../protocol/codes.js';
import { DEFAULT_MAX_CONNECTIONS_PER_TOKEN, DEFAULT_MAX_PAYLOAD, useWebSocket } from './use/ws.js';
import { gatewayInfo, type DeploymentFacts } from './info.js';
import { DEFAULT_HISTORY_MAX_AGE_MS, DEFAULT_HISTORY_MAX_ENTRIES } from './history/memory.js';
import type { GatewayInfo } from '../generated/schema-types.js';
import { configDefaults } from '../generated/config-defaults.js';

export interface GatewayServerOptions extends GatewayCoreOptions {
  /** @default { host: '127.0.0.1', port: 8080 } (port 0 picks a free one) */
  listen?: { host: string; port: number };
  /** @default TokenAuthenticator.open(): no tokens, loopback only */
  tokens?: TokenAuthenticator;
  /** Allow listening on a non-loopback address without tokens. */
  insecure?: boolean;
  allowedOrigins?: readonly string[];
  /** Extra host names a tokenless loopback gateway answers to (besides IP literals and localhost; see origin.ts). */
  allowedHosts?: readonly string[];
  /** @default 64 */
  maxConnectionsPerToken?: number;
  /** @default 65_536 */
  maxPayload?: number;
  /**
   * A request (an upgrade too) whose headers are not complete this long after the connection opened
   * or the previous request ended is answered 408 and closed: slowloris costs a descriptor for this
   * long at most. @default 10_000
   */
  headersTimeoutMs?: number;
  /** Directory of the dashboard's static files, served at `/`. */
  dashboardDir?: string;
  /** Facts for `GET /v1/info` beyond what the gateway knows itself (simulated, demo, how VMs are followed). */
  info?: DeploymentFacts;
  /** Extra readiness (see HttpHandlerOptions.health). */
  health?: () => GatewayHealth;
  /** Include process metrics (CPU, heap, event loop) in /metrics. @default true */
  defaultMetrics?: boolean;
  logger?: Logger;
}

export interface RunningGateway {
  /** http://host:port */
  readonly url: string;
  /** ws://host:port/v1/ws */
  readonly wsUrl: string;
  readonly host: string;
  readonly port: number;
  readonly core: GatewayCore;
  readonly metrics: GatewayMetrics;
  /**
   * Stop: close every WebSocket with 1001 (clients resume elsewhere or later), stop listening,
   * stop following the source. Sockets still open after `graceMs` are terminated.
   */
  close(options?: { graceMs?: number }): Promise<void>;
}

const REQUEST_TIMEOUT_MS = 30_000;

export function isLoopback(host: string): boolean {
  const bare = host.replace(/^\[|\]$/g, '');
  if (bare === 'localhost' || bare === '::1') return true;
  if (isIP(bare) === 4) return bare.startsWith('127.');
  return bare.startsWith('::ffff:127.');
}

export async function startGateway(options: GatewayServerOptions): Promise<RunningGateway> {
  const listen = options.listen ?? { host: '127.0.0.1', port: 8080 };
  const auth = options.tokens ?? TokenAuthenticator.open();
  const log = options.logger ?? silentLogger;
  if (!auth.required && !isLoopback(listen.host) && !options.insecure) {
    throw new ConfigError(
      `refusing to serve on non-loopback address ${listen.host} without a tokens file: anyone who can reach it could read and control jobs (give --tokens FILE, or --insecure to accept that)`,
      'listen',
    );
  }
  const core = new GatewayCore({ ...options, logger: log });
  await core.start();
  const hosts = servedHosts(auth.required, isLoopback(listen.host), options.allowedHosts);
  const metrics = createMetrics(core, { defaultMetrics: options.defaultMetrics ?? true, source: options.source });
  const limits: GatewayInfo['limits'] = {
    maxPayloadBytes: options.maxPayload ?? DEFAULT_MAX_PAYLOAD,
    ...(auth.required ? { maxConnectionsPerToken: options.maxConnectionsPerToken ?? DEFAULT_MAX_CONNECTIONS_PER_TOKEN } : {}),
    // A shared history (Redis) states its own limits; the in-memory one is configured here.
    ...(options.history
      ? {}
      : { historyMaxEvents: options.historyLimits?.maxEntries ?? DEFAULT_HISTORY_MAX_ENTRIES, historyMaxAgeMs: options.historyLimits?.maxAgeMs ?? DEFAULT_HISTORY_MAX_AGE_MS }),
  };
  const info = (principal: Principal): GatewayInfo => gatewayInfo(options.info ?? {}, options.source, core.jobs(principal), limits);
  const headersTimeout = options.headersTimeoutMs ?? configDefaults.limits.headersTimeoutMs;
  const server = createServer(
    {
      headersTimeout,
      // A whole request (a command body is at most 64 KiB) must not take longer either.
      requestTimeout: Math.max(headersTimeout, REQUEST_TIMEOUT_MS),
      // Node checks both timeouts on this beat (30 s by default, which would triple a short limit).
      connectionsCheckingInterval: Math.min(1_000, headersTimeout),
    },
    createHttpHandler({ core, auth, metrics, info, servedHosts: hosts, ...(options.health ? { health: options.health } : {}), ...(options.allowedOrigins ? { allowedOrigins: options.allowedOrigins } : {}), ...(options.dashboardDir ? { staticDir: options.dashboardDir } : {}), logger: log }),
  );
  server.keepAliveTimeout = 5000;
  const ws = useWebSocket({
    core,
    server,
    auth,
    servedHosts: hosts,
    ...(options.allowedOrigins ? { allowedOrigins: options.allowedOrigins } : {}),
    ...(options.maxConnectionsPerToken !== undefined ? { maxConnectionsPerToken: options.maxConnectionsPerToken } : {}),
    ...(options.maxPayload !== undefined ? { maxPayload: options.maxPayload } : {}),
    ...(options.heartbeatMs !== undefined ? { heartbeatMs: options.heartbeatMs } : {}),
    logger: log,
    onRefused: (status) => metrics.refused(status),
  });

  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(listen.port, listen.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (error) {
    core.stop();
    await ws.close(0);
    const code = (error as NodeJS.ErrnoException).code;
    throw new ConfigError(
      code === 'EADDRINUSE' ? `port ${listen.port} on ${listen.host} is already in use` : `cannot listen on ${listen.host}:${listen.port}: ${(error as Error).message}`,
      'listen',
    );
  }
  const address = server.address() as AddressInfo;
  const hostForUrl = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  const url = `http://${hostForUrl}:${address.port}`;
  log.info({ url, tokens: auth.required, vms: core.feed.vms() }, 'gateway listening');

  let closing: Promise<void> | undefined;
  return {
    url,
    wsUrl: `ws://${hostForUrl}:${address.port}${WS_PATH}`,
    host: address.address,
    port: address.port,
    core,
    metrics,
    close({ graceMs = 2000 } = {}) {
      closing ??= (async () => {
        core.drain(CloseCode.GoingAway, 'gateway shutting down; reconnect and resume with since');
        const serverClosed = new Promise<void>((resolve) => server.close(() => resolve()));
        server.closeIdleConnections();
        await ws.close(graceMs);
        core.stop();
        server.closeAllConnections();
        await serverClosed;
        log.info({ url }, 'gateway stopped');
      })();
      return closing;
    },
  };
}
