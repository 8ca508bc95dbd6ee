/**
 * A host gateway in a fleet: its local gateway as always, plus Redis. Every stream event is
 * appended to the local history, then published (HostPublisher); progress is published as it
 * comes; commands forwarded by edges are run by the local job controller (HostCommands).
 */
import type { Subscription } from 'rxjs';
import type { CommandHandler } from '../gateway/control/controller.js';
import type { GatewayHealth } from '../gateway/http.js';
import type { HistoryLimits } from '../gateway/history/types.js';
import type { JobSource, JobState, VmStatus } from '../jobs/types.js';
import type { Logger } from '../log.js';
import { HostCommands } from './commands.js';
import { connectOrFail, connectRedis, HOST_START_WAIT_MS, duplicateRedis, fatalAtStart, type RedisClient } from './connect.js';
import { defaultHostId, fleetDefaults, fleetStartError, keyPrefixOf, redisTargetOf, type FleetConfig } from './fleet-config.js';
import { FleetHistory } from './history.js';
import { HostPublisher } from './publisher.js';
import type { FleetStats } from './stats.js';
import { FleetStore } from './store.js';
import { defaultStateDir, UnackedBook, unackedFile } from './unacked.js';

export interface FleetHost {
  readonly hostId: string;
  readonly history: FleetHistory;
  readonly publisher: HostPublisher;
  readonly stats: FleetStats;
  /** Whether the connection to Redis is up (for /metrics). */
  redisUp(): boolean;
  /** Start answering edges' commands with the local controller (after the gateway started). */
  serveCommands(handle: CommandHandler): Promise<void>;
  health(): Pick<GatewayHealth, 'degraded'>;
  close(options?: { release?: boolean }): Promise<void>;
}

export async function startFleetHost(config: FleetConfig, source: JobSource, options: { logger: Logger; historyLimits?: HistoryLimits }): Promise<FleetHost> {
  const log = options.logger;
  const target = redisTargetOf(config);
  const hostId = config.hostId ?? defaultHostId();
  const leaseTtlMs = config.leaseTtlMs ?? fleetDefaults().leaseTtlMs;
  const redis = connectRedis(target, { connectionName: `bjg-host-${hostId}`, ...(config.tlsCaFile ? { tlsCaFile: config.tlsCaFile } : {}) });
  redis.on('error', () => undefined); // reported by the publisher, without the URL's secrets
  // Unreachable: serve locally and publish once it is back. A refused login is a configuration error.
  const reachable = await connectOrFail(redis, target, HOST_START_WAIT_MS, config.tlsCaFile, true).then(
    () => true,
    (error: unknown) => {
      if (fatalAtStart(error)) throw error;
      log.warn({ err: error, redis: target.redacted }, 'fleet: Redis unreachable at start; serving locally, publishing when it is back');
      return false;
    },
  );
  const store = new FleetStore(redis, keyPrefixOf(config));
  // An ACL that refuses the fleet's keys, scripts or channels stops the start (NOPERM, which serve
  // reports as GW_ERR_CONFIG), as on an edge: a host that ran on would publish nothing, forever.
  if (reachable) {
    await store.checkAccess(hostId, leaseTtlMs).catch((error: unknown) => {
      if (!(error instanceof Error && error.message.startsWith('NOPERM'))) return log.warn({ err: error }, 'fleet: could not check the ACL at start');
      redis.disconnect();
      throw error;
    });
  }
  // Where this process's commands start: before it claims a lease, so that none sent once it owns a VM is skipped.
  const commandsFrom = reachable ? await store.commandsTop(hostId).catch(() => undefined) : undefined;
  // Every later (re)connection too (Redis was away at start, or its ACL changed): the host serves
  // locally on, and says why it publishes nothing (an error log per change, /readyz degraded).
  let refused: string | undefined;
  redis.on('ready', () => {
    store.checkAccess(hostId, leaseTtlMs).then(
      () => (refused = undefined),
      (error: unknown) => {
        if (!(error instanceof Error && error.message.startsWith('NOPERM'))) return;
        const said = (fleetStartError(error, config) as Error).message;
        if (said !== refused) log.error({ code: 'GW_ERR_CONFIG' }, `fleet: ${said}; serving locally, publishing nothing`);
        refused = said;
      },
    );
  });
  const unacked = new UnackedBook(unackedFile(config.stateDir ?? defaultStateDir(), hostId, target.redacted, keyPrefixOf(config)));
  const snapshotOf = (vm: string) => source.snapshot().find((s) => s.vm === vm);
  // The publisher and the history need each other: the publisher asks the history where a stream stands.
  const holder: { history?: FleetHistory } = {};
  const publisher = new HostPublisher(store, {
    host: hostId,
    leaseTtlMs,
    ...(config.maxBuffered !== undefined ? { maxBuffered: config.maxBuffered } : {}),
    ...(options.historyLimits?.maxEntries !== undefined ? { maxLen: options.historyLimits.maxEntries } : {}),
    snapshotOf,
    // One lookup per id: a snapshot of every VM per pruned VM would cost a host with many VMs dearly.
    lists: (vm, id) => source.job(vm, id) !== undefined,
    unacked,
    restart: (vm) => holder.history?.restart(vm),
    positionOf: (vm) => holder.history?.position(vm),
    ...(source.seed ? { seed: (vm: string, jobs: readonly JobState[], status: VmStatus) => source.seed?.(vm, jobs, status) } : {}),
    logger: log,
  });
  const history = new FleetHistory(store, {
    ...(options.historyLimits ? { limits: options.historyLimits } : {}),
    open: (vm) => publisher.open(vm),
    appended: (vm, event) => publisher.enqueue(vm, event),
  });
  holder.history = history;
  publisher.start();
  const progress: Subscription = source.progress$.subscribe((update) => {
    if (!publisher.owns(update.vm) || redis.status !== 'ready') return;
    redis.publish(store.keys.notifyChannel(update.vm), `p\n${update.vm}\n${JSON.stringify(update)}`).catch(() => undefined);
  });
  let commands: HostCommands | undefined;
  let blocking: RedisClient | undefined;
  log.info({ redis: target.redacted, host: hostId }, 'fleet: host gateway');

  return {
    hostId,
    history,
    publisher,
    stats: store.stats,
    redisUp: () => redis.status === 'ready' && publisher.status().redis === 'up',
    async serveCommands(handle) {
      await publisher.syncNow();
      unacked.settled(); // every VM was opened: a record the previous process left is used up
      blocking = duplicateRedis(redis);
      blocking.on('error', () => undefined);
      commands = new HostCommands(store, blocking, { host: hostId, handle, owns: (vm) => publisher.owns(vm), ...(commandsFrom ? { from: commandsFrom } : {}), logger: log });
      await commands.start().catch((error: unknown) => log.warn({ err: error }, 'fleet: command stream not readable yet; retrying'));
    },
    health() {
      const s = publisher.status();
      const degraded: string[] = [];
      if (refused) degraded.push(refused);
      if (s.redis === 'down' || redis.status !== 'ready') degraded.push(`redis unreachable (${s.buffered} events buffered)`);
      for (const { vm, owner } of s.notOwned) degraded.push(`VM ${vm} is owned by host gateway ${owner}: not published`);
      if (s.resyncing.length > 0) degraded.push(`restarting Redis's copy of ${s.resyncing.length} stream(s)`);
      return { degraded };
    },
    async close({ release = true } = {}) {
      progress.unsubscribe();
      await commands?.stop();
      await publisher.close({ release });
      unacked.close();
      redis.disconnect();
    },
  };
}
