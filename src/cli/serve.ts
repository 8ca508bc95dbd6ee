/**
 * `blockjob-gateway serve`: QMP monitors in, WebSocket and HTTP out. Wiring only: config, logger,
 * job registry (src/jobs), job control (src/gateway/control), the gateway server, signal handling.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { UsageError } from '../errors.js';
import { TokenAuthenticator } from '../gateway/auth.js';
import { makeJobController } from '../gateway/control/index.js';
import { startGateway, type GatewayServerOptions, type RunningGateway } from '../gateway/server.js';
import { startFleetEdge } from '../fleet/edge.js';
import { fleetStartError } from '../fleet/fleet-config.js';
import { startFleetHost, type FleetHost } from '../fleet/host.js';
import { FleetSeeds } from '../fleet/seeds.js';
import { registerEdgeMetrics, registerHostMetrics } from '../fleet/metrics.js';
import { CloseCode } from '../protocol/codes.js';
import { combineSources } from '../jobs/combine.js';
import type { SourcePorts } from '../jobs/control-port.js';
import { openLibvirtSource, type OpenedLibvirt } from '../jobs/libvirt/open.js';
import { JobRegistry } from '../jobs/registry.js';
import { createLogger, type LogFormat, type LogLevel, type Logger } from './logger.js';
import { parseCommandLine } from './args.js';
import { loadConfigFile, mergeConfig, parseLibvirtFlags, parseListen, parseQmpFlags, validateConfig, type GatewayConfig } from './config.js';
import { configDefaults } from '../generated/config-defaults.js';

const FLAGS = {
  qmp: { type: 'string', multiple: true },
  libvirt: { type: 'string', multiple: true },
  redis: { type: 'string' },
  edge: { type: 'boolean' },
  'host-id': { type: 'string' },
  'redis-ca': { type: 'string' },
  listen: { type: 'string' },
  config: { type: 'string' },
  tokens: { type: 'string' },
  insecure: { type: 'boolean' },
  dashboard: { type: 'string' },
  'log-level': { type: 'string' },
  'log-format': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

export const SERVE_USAGE = `Usage: blockjob-gateway serve (--libvirt URI | --qmp NAME=ADDRESS) [...] [options]

Options:
  --libvirt URI        every domain of a libvirt connection (qemu:///system), no domain change;
                       repeatable, mixable with --qmp (domain filter: "libvirt" in --config)
  --qmp NAME=ADDRESS   a VM and its QMP monitor (unix:/path or tcp:host:port); repeatable
  --redis URL          fleet mode: publish to (host) or serve from (--edge) Redis; redis://, rediss://,
                       comma-separated cluster seeds, or env:NAME to read the URL from the environment
  --edge               with --redis: an edge gateway, serving every VM in Redis (no --qmp)
  --host-id NAME       with --redis: this host gateway's name in the fleet (default: the host name)
  --redis-ca FILE      with a rediss:// URL: PEM file of the CA that signed Redis's certificate
                       (default: the system CAs)
  --listen HOST:PORT   where to serve HTTP and WebSocket (default 127.0.0.1:8080)
  --config FILE        JSON config (schemas/config.schema.json); flags override it
  --tokens FILE        bearer tokens {"tokens":[{name, sha256, scopes, vms?}]}
  --insecure           allow a non-loopback --listen without --tokens
  --dashboard DIR      static dashboard files served at / (default: the bundled demo/dashboard)
  --log-level LEVEL    trace|debug|info|warn|error|fatal|silent (default info)
  --log-format FORMAT  json|pretty|auto (default auto: pretty on a terminal)
  -h, --help           print this text

SIGTERM or SIGINT drains: WebSocket clients are closed with 1001 (resume with since), exit 0.
`;

const BUNDLED_DASHBOARD = fileURLToPath(new URL('../../demo/dashboard/', import.meta.url));

export interface ServeOptions {
  /** Stop when aborted. @default on SIGTERM or SIGINT */
  signal?: AbortSignal;
  /** Told once the gateway listens (tests, the demo). */
  onListening?: (gateway: RunningGateway) => void;
  out?: (text: string) => void;
}

/** Resolve flags + config file into one validated config. */
export async function resolveServeConfig(argv: readonly string[]): Promise<GatewayConfig | 'help'> {
  const { values } = parseCommandLine(argv, FLAGS);
  if (values.help) return 'help';
  const file = values.config !== undefined ? await loadConfigFile(values.config) : {};
  const flags: GatewayConfig = {
    ...(values.qmp ? { qmp: parseQmpFlags(values.qmp) } : {}),
    ...(values.libvirt ? { libvirt: parseLibvirtFlags(values.libvirt) } : {}),
    ...(values.listen !== undefined ? { listen: values.listen } : {}),
    ...(values.tokens !== undefined ? { tokens: values.tokens } : {}),
    ...(values.insecure ? { insecure: true } : {}),
    ...(values.dashboard !== undefined ? { dashboardDir: values.dashboard } : {}),
    ...(values['log-level'] !== undefined ? { logLevel: values['log-level'] as GatewayConfig['logLevel'] } : {}),
    ...(values['log-format'] !== undefined ? { logFormat: values['log-format'] as GatewayConfig['logFormat'] } : {}),
  };
  if (flags.listen !== undefined) parseListen(flags.listen);
  const merged = mergeConfig(file, flags);
  if (values.redis !== undefined || values.edge || values['host-id'] !== undefined || values['redis-ca'] !== undefined) {
    const fleet = { ...(merged.fleet ?? {}) } as Record<string, unknown>;
    if (values.redis !== undefined) fleet.redis = values.redis;
    if (values.edge) fleet.edge = true;
    if (values['host-id'] !== undefined) fleet.hostId = values['host-id'];
    if (values['redis-ca'] !== undefined) fleet.tlsCaFile = values['redis-ca'];
    if (fleet.redis === undefined) throw new UsageError('--edge, --host-id and --redis-ca need --redis URL');
    merged.fleet = fleet as unknown as GatewayConfig['fleet'];
  }
  const config = validateConfig(merged, 'flags and config');
  const vms = Object.keys(config.qmp ?? {}).length + (config.libvirt ?? []).length;
  if (config.fleet?.edge) {
    if (vms > 0) throw new UsageError('an edge gateway (--edge) serves the fleet from Redis and has no --qmp or --libvirt of its own');
  } else if (vms === 0) {
    throw new UsageError('no VMs: give --libvirt URI or --qmp NAME=ADDRESS (both repeatable), or "libvirt"/"qmp" in --config');
  }
  return config;
}

export async function serve(argv: readonly string[], options: ServeOptions = {}): Promise<number> {
  const out = options.out ?? ((text: string) => process.stdout.write(text));
  const config = await resolveServeConfig(argv);
  if (config === 'help') {
    out(SERVE_USAGE);
    return 0;
  }
  const log = createLogger({ level: (config.logLevel ?? configDefaults.logLevel) as LogLevel, format: (config.logFormat ?? configDefaults.logFormat) as LogFormat });
  const tokens = config.tokens !== undefined ? await TokenAuthenticator.fromFile(config.tokens) : TokenAuthenticator.open();
  const listen = parseListen(config.listen ?? configDefaults.listen, 'listen');
  const dashboardDir = config.dashboardDir ?? (existsSync(BUNDLED_DASHBOARD) ? BUNDLED_DASHBOARD : undefined);

  const common = {
    listen,
    tokens,
    ...(config.insecure ? { insecure: true } : {}),
    ...(config.allowedOrigins ? { allowedOrigins: config.allowedOrigins } : {}),
    ...(config.allowedHosts ? { allowedHosts: config.allowedHosts } : {}),
    ...(dashboardDir ? { dashboardDir } : {}),
    ...(config.heartbeatMs !== undefined ? { heartbeatMs: config.heartbeatMs } : {}),
    ...(config.progressIntervalMs !== undefined ? { progressIntervalMs: config.progressIntervalMs } : {}),
    ...(config.bookmarkQuietMs !== undefined ? { bookmarkQuietMs: config.bookmarkQuietMs } : {}),
    ...(config.history ? { historyLimits: config.history } : {}),
    ...(config.limits?.maxSubscriptionsPerConnection !== undefined ? { maxSubscriptionsPerConnection: config.limits.maxSubscriptionsPerConnection } : {}),
    ...(config.limits?.maxConnectionsPerToken !== undefined ? { maxConnectionsPerToken: config.limits.maxConnectionsPerToken } : {}),
    ...(config.limits?.maxPayloadBytes !== undefined ? { maxPayload: config.limits.maxPayloadBytes } : {}),
    ...(config.limits?.maxCommandsInFlight !== undefined ? { maxCommandsInFlight: config.limits.maxCommandsInFlight } : {}),
    ...(config.limits?.headersTimeoutMs !== undefined ? { headersTimeoutMs: config.limits.headersTimeoutMs } : {}),
    inbound: {
      ...(config.limits?.inboundRatePerSecond !== undefined ? { ratePerSecond: config.limits.inboundRatePerSecond } : {}),
      ...(config.limits?.inboundBurst !== undefined ? { burst: config.limits.inboundBurst } : {}),
      ...(config.limits?.maxInvalidMessages !== undefined ? { maxInvalid: config.limits.maxInvalidMessages } : {}),
    },
    ...(config.backpressure ? { backpressure: config.backpressure } : {}),
    logger: log.child({ component: 'gateway' }),
  };
  if (config.fleet?.edge) return serveEdge(config.fleet, common, log, out, options);

  // A restarted fleet host: every VM's engine, whatever its source, starts from the jobs Redis holds for it.
  const seeds = config.fleet ? await FleetSeeds.open(config.fleet, log.child({ component: 'fleet' })) : undefined;
  const seedOf = seeds ? { seedOf: seeds.of } : {};
  const registry = new JobRegistry({ ...config.jobs, ...seedOf, logger: log.child({ component: 'jobs' }) });
  const libvirt: OpenedLibvirt[] = [];
  let combined: ReturnType<typeof combineSources> | undefined;
  const closeSources = async (): Promise<void> => {
    combined?.close();
    await registry.close();
    for (const opened of libvirt) await opened.close();
    seeds?.close();
  };
  try {
    for (const [vm, address] of Object.entries(config.qmp ?? {})) {
      if (address !== undefined) registry.add(vm, address);
    }
    for (const entry of config.libvirt ?? []) {
      libvirt.push(openLibvirtSource(entry, { ...(config.jobs ? { engine: config.jobs } : {}), ...seedOf, logger: log.child({ component: 'libvirt', uri: entry.uri }) }));
    }
    const parts: SourcePorts[] = [...(Object.keys(config.qmp ?? {}).length > 0 ? [{ source: registry, control: registry.control }] : []), ...libvirt];
    combined = combineSources(parts, { logger: log.child({ component: 'sources' }), holdChanges: true });
  } catch (error) {
    await closeSources();
    throw error;
  }
  const { source, control } = combined;
  const controller = makeJobController({ source, control, logger: log.child({ component: 'control' }) });
  let gateway: RunningGateway | undefined;
  let fleet: FleetHost | undefined;
  try {
    if (config.fleet) fleet = await startFleetHost(config.fleet, source, { logger: log.child({ component: 'fleet' }), ...(config.history ? { historyLimits: config.history } : {}) });
    const host = fleet;
    gateway = await startGateway({
      ...common,
      source,
      ...(host
        ? {
            history: host.history,
            health: () => ({ ready: true, monitors: true, degraded: host.health().degraded }),
          }
        : {}),
      commandHandler: controller.handle,
    });
    // The streams follow the sources now: what they did meanwhile (a restart's reconciles) goes in, in order.
    combined.release();
    if (host) registerHostMetrics(gateway.metrics.registry, host);
    await fleet?.serveCommands(controller.handle);
  } catch (error) {
    // Whatever started must stop, or its sockets keep a failed start from exiting.
    controller.close();
    await gateway?.close();
    await fleet?.close();
    await closeSources();
    throw config.fleet ? fleetStartError(error, config.fleet) : error;
  }
  const what = [
    ...(Object.keys(config.qmp ?? {}).length > 0 ? [`${Object.keys(config.qmp ?? {}).length} QMP VM(s)`] : []),
    ...(config.libvirt ?? []).map((entry) => `the domains of ${entry.uri}`),
  ].join(' and ');
  out(`blockjob-gateway serving ${what} at ${gateway.url} (WebSocket ${gateway.wsUrl})${fleet ? ` as fleet host ${fleet.hostId}` : ''}\n`);
  options.onListening?.(gateway);

  const reason = await stopRequested(options.signal);
  log.info({ reason }, 'draining: closing subscribers with 1001, then stopping');
  controller.close();
  await gateway.close();
  await fleet?.close();
  await closeSources();
  log.flush?.();
  return 0;
}

/** An edge gateway: the fleet's VMs from Redis, commands forwarded to their hosts. */
async function serveEdge(fleetConfig: NonNullable<GatewayConfig['fleet']>, common: Omit<GatewayServerOptions, 'source' | 'feed'>, log: Logger, out: (text: string) => void, options: ServeOptions): Promise<number> {
  const edge = await startFleetEdge(fleetConfig, { logger: log.child({ component: 'fleet' }), ...(common.historyLimits ? { historyLimits: common.historyLimits } : {}) }).catch((error: unknown) => {
    throw fleetStartError(error, fleetConfig);
  });
  let started: RunningGateway | undefined;
  try {
    started = await startGateway({
      ...common,
      feed: edge.feed,
      commandHandler: edge.commands.handle,
      health: edge.health,
    });
    registerEdgeMetrics(started.metrics.registry, edge);
    await edge.stage('subscribe to the command reply channel', edge.commands.start());
    edge.started();
  } catch (error) {
    // Whatever started must stop, or its sockets keep a failed start from exiting.
    await started?.close();
    await edge.close();
    throw fleetStartError(error, fleetConfig);
  }
  const gateway = started;
  // Without Redis the edge cannot vouch for anything: clients should resume on an edge that can.
  edge.onRedis((up) => {
    if (!up) gateway.core.drain(CloseCode.InternalError, 'edge lost Redis; reconnect (another edge) and resume with since');
  });
  out(`blockjob-gateway edge ${edge.edgeId} serving the fleet at ${gateway.url} (WebSocket ${gateway.wsUrl})\n`);
  options.onListening?.(gateway);
  const reason = await stopRequested(options.signal);
  log.info({ reason }, 'draining: closing subscribers with 1001, then stopping');
  edge.commands.close();
  await gateway.close();
  await edge.close();
  log.flush?.();
  return 0;
}

/** Resolves with what asked us to stop: the given signal, or SIGTERM/SIGINT. */
function stopRequested(signal: AbortSignal | undefined): Promise<string> {
  if (signal) {
    return new Promise((resolve) => {
      if (signal.aborted) resolve('aborted');
      else signal.addEventListener('abort', () => resolve('aborted'), { once: true });
    });
  }
  return new Promise((resolve) => {
    const on = (name: NodeJS.Signals) => () => {
      process.off('SIGTERM', onTerm);
      process.off('SIGINT', onInt);
      resolve(name);
    };
    const onTerm = on('SIGTERM');
    const onInt = on('SIGINT');
    process.once('SIGTERM', onTerm);
    process.once('SIGINT', onInt);
  });
}

/** The `serve` entry of the CLI dispatch (src/cli/main.ts). */
export function run(argv: string[]): Promise<number> {
  return serve(argv);
}
