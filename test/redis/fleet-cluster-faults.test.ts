/**
 * The fault suite's core cases (fleet-fault-cases.ts, the same bodies fleet-faults.test.ts runs on
 * one server) on a real 3-master Redis Cluster: an edge killed with -9 (the client resumes on
 * another), a host gateway killed with -9 mid-job and restarted (same epoch, the job's true end),
 * then its owner gone (outcome_unknown, counted in the edge's metrics).
 */
import { afterAll, afterEach, it } from 'vitest';
import { startRedisCluster, type RedisCluster } from '../../src/lab/redis.js';
import { describeBuilt } from '../utils/built-cli.js';
import { describeQemu } from '../utils/qemu-gate.js';
import { cleanupLeftoversAfterAll } from '../utils/qsd.js';
import { describeRedis } from '../utils/redis-gate.js';
import { edgeKilledClientResumesElsewhere, hostKilledRestartedThenOwnerGone } from './fleet-fault-cases.js';
import { Stops } from './fleet-support.js';

describeRedis('fleet faults on a 3-master Redis Cluster', () => {
  describeQemu('real qemu-storage-daemon', () => {
    describeBuilt('gateways as processes', () => {
      cleanupLeftoversAfterAll();
      let cluster: RedisCluster | undefined;
      const stops = new Stops();
      afterEach(() => stops.run());
      afterAll(async () => cluster?.dispose());

      /** One cluster for the file, emptied before each case (FLUSHALL on every master). */
      async function freshCluster(): Promise<RedisCluster> {
        cluster ??= await startRedisCluster();
        for (const node of cluster.nodes) node.cli('flushall');
        return cluster;
      }

      it('edge A killed with -9 mid-stream: the client resumes on edge B, recovered, offsets contiguous, nothing twice', async () => {
        await edgeKilledClientResumesElsewhere((await freshCluster()).url, stops);
      });

      it("host killed with -9 mid-job and restarted: same epoch, recovered, the job's true end; then the owner gone: outcome_unknown", async () => {
        await hostKilledRestartedThenOwnerGone((await freshCluster()).url, stops);
      });
    });
  });
});
