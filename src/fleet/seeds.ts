/**
 * FleetSeeds: what a restarted host gateway's VMs were last published with, read from Redis before
 * each VM's job engine starts, whatever its source (a QMP monitor given at start, a libvirt domain
 * discovered at any time). The engine's first reconcile then continues those jobs (same
 * incarnations, no "new" transition) and concludes the ones its backend no longer lists. Only VMs
 * this host published (another host's VM is not ours to reconcile).
 */
import type { JobState, VmStatus } from '../jobs/types.js';
import type { Logger } from '../log.js';
import { connectOrFail, connectRedis, HOST_START_WAIT_MS, fatalAtStart, type RedisClient } from './connect.js';
import { defaultHostId, keyPrefixOf, redisTargetOf, type FleetConfig } from './fleet-config.js';
import { FleetStore } from './store.js';

export interface FleetSeed {
  jobs: readonly JobState[];
  status: VmStatus;
}

export class FleetSeeds {
  private constructor(
    private readonly redis: RedisClient,
    private readonly store: FleetStore,
    private readonly hostId: string,
    private readonly log: Logger,
  ) {}

  /**
   * Connect (a refused login or failed TLS verification stops the gateway here, as at any start).
   * Redis unreachable: VMs start unseeded while it is (their streams restart in Redis with a snapshot
   * once it is back), and are seeded again once it answers.
   */
  static async open(config: FleetConfig, log: Logger): Promise<FleetSeeds> {
    const target = redisTargetOf(config);
    const hostId = config.hostId ?? defaultHostId();
    const redis = connectRedis(target, { connectionName: `bjg-host-${hostId}-seed`, ...(config.tlsCaFile ? { tlsCaFile: config.tlsCaFile } : {}) });
    redis.on('error', () => undefined);
    await connectOrFail(redis, target, HOST_START_WAIT_MS, config.tlsCaFile, true).catch((error: unknown) => {
      if (fatalAtStart(error)) throw error;
      log.warn({ err: error, redis: target.redacted }, 'fleet: could not read the jobs Redis holds for this host; jobs that ended while it was down show once Redis restarts their streams');
    });
    return new FleetSeeds(redis, new FleetStore(redis, keyPrefixOf(config)), hostId, log);
  }

  /** The jobs and status Redis holds for `vm` if this host published it; undefined otherwise or when Redis does not answer. */
  readonly of = async (vm: string): Promise<FleetSeed | undefined> => {
    if (this.redis.status !== 'ready') return undefined;
    try {
      const stored = await this.store.loadVm(vm);
      if (stored?.host !== this.hostId || stored.jobs.size === 0) return undefined;
      return { jobs: [...stored.jobs.values()], status: stored.status };
    } catch (error) {
      this.log.warn({ err: error, vm }, 'fleet: could not read the jobs Redis holds for this VM; it starts without them');
      return undefined;
    }
  };

  close(): void {
    this.redis.disconnect();
  }
}
