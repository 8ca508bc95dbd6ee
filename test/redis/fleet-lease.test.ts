/**
 * Lease renewal batched per host, against a real redis-server and a real 3-master cluster: an idle
 * host costs Redis one call per tick (per node), whatever its number of VMs, and a lease lost or
 * taken is still detected at the next tick (fencing unchanged).
 */
import { afterAll, describe, expect, it } from 'vitest';
import { connectOrFail, connectRedis, parseRedisUrl, type RedisClient } from '../../src/fleet/connect.js';
import { HostPublisher } from '../../src/fleet/publisher.js';
import { FleetStore } from '../../src/fleet/store.js';
import type { StreamPosition } from '../../src/gateway/history/types.js';
import { startRedis, startRedisCluster, type RedisServer } from '../../src/lab/redis.js';
import { LogRecorder } from '../utils/log-recorder.js';
import { cleanupLeftoversAfterAll } from '../utils/qsd.js';
import { describeRedis } from '../utils/redis-gate.js';
import { eventually } from './fleet-support.js';

const VMS = Array.from({ length: 60 }, (_, i) => `vm${i}`);
const TTL_MS = 1500; // renewed every 500 ms

/** Script calls Redis ran, all nodes together (ioredis sends EVALSHA, EVAL after a NOSCRIPT). */
function scriptCalls(nodes: RedisServer[]): number {
  let total = 0;
  for (const node of nodes) {
    for (const m of node.cli('info', 'commandstats').matchAll(/^cmdstat_(?:evalsha|eval):calls=(\d+)/gm)) total += Number(m[1]);
  }
  return total;
}

describeRedis('fleet lease renewal, batched per host', () => {
  cleanupLeftoversAfterAll();
  const backends: [string, () => Promise<{ url: string; nodes: RedisServer[]; dispose(): Promise<void> }>][] = [
    ['standalone Redis', async () => {
      const r = await startRedis();
      return { url: r.url, nodes: [r], dispose: () => r.dispose() };
    }],
    ['a 3-master Redis Cluster', async () => {
      const c = await startRedisCluster();
      return { url: c.url, nodes: c.nodes, dispose: () => c.dispose() };
    }],
  ];

  describe.each(backends)('on %s', (_name, start) => {
    const cleanups: (() => Promise<unknown>)[] = [];
    afterAll(async () => {
      for (const c of cleanups.reverse()) await c().catch(() => undefined);
    });

    it('renews 60 leases with one script call per tick and node, and still detects a lease lost or taken', async () => {
      const backend = await start();
      cleanups.push(() => backend.dispose());
      const target = parseRedisUrl(backend.url);
      const redis: RedisClient = connectRedis(target);
      redis.on('error', () => undefined);
      await connectOrFail(redis, target);
      cleanups.push(async () => redis.disconnect());
      const store = new FleetStore(redis, 'lease');
      const positions = new Map<string, StreamPosition>();
      const log = new LogRecorder();
      const publisher = new HostPublisher(store, {
        host: 'h1',
        leaseTtlMs: TTL_MS,
        snapshotOf: (vm) => ({ vm, status: 'connected', jobs: [] }),
        positionOf: (vm) => positions.get(vm),
        logger: log,
      });
      cleanups.push(() => publisher.close({ release: false }));
      // Renewing from the start, as the host does: 60 claims one after another took 0.5 s on a cluster at
      // load 10, so at a higher load the first leases lapsed (TTL 1.5 s) before a renewal loop started after them.
      publisher.start();
      for (const vm of VMS) positions.set(vm, await publisher.open(vm));
      const stats = store.stats;
      const ticks = async (n: number): Promise<void> => {
        const target = stats.renewals.ok + n * VMS.length;
        await eventually(() => stats.renewals.ok >= target, 30_000, `${n} renewal ticks`);
      };

      // The first tick also publishes each VM's status once; count from the second.
      await ticks(2);
      const calls0 = scriptCalls(backend.nodes);
      const ok0 = stats.renewals.ok;
      await ticks(4);
      const calls = scriptCalls(backend.nodes) - calls0;
      const ran = (stats.renewals.ok - ok0) / VMS.length;
      // At most one call per node and tick (+1 tick in flight while counting), never one per VM.
      expect(calls).toBeGreaterThanOrEqual(ran);
      expect(calls).toBeLessThanOrEqual((ran + 1) * backend.nodes.length);
      expect(stats.renewals.lost).toBe(0);

      // Lost: the lease expired (deleted here). The next tick sees it and the host claims the VM again.
      const lost = await store.lease('vm7');
      await redis.del(store.keys.vm('vm7').lease);
      await eventually(async () => stats.renewals.lost >= 1, 10_000, 'the lost lease detected');
      await eventually(async () => publisher.owns('vm7') && (await store.lease('vm7')) !== null, 10_000, 'vm7 claimed again');
      expect(await store.lease('vm7')).not.toBe(lost);
      expect(log.entries.some((e) => e.fields.vm === 'vm7' && /lease on vm7 lost/.test(e.message ?? ''))).toBe(true);

      // Taken: another host holds it now. Detected at the next tick; the old lease is fenced out.
      const ours = (await store.lease('vm8'))!;
      await redis.set(store.keys.vm('vm8').lease, 'h2|999', 'PX', 60_000);
      await eventually(() => publisher.status().notOwned.some((n) => n.vm === 'vm8' && n.owner === 'h2'), 10_000, 'vm8 seen owned by h2');
      const position = positions.get('vm8')!;
      const fenced = await store.append('vm8', ours, position.epoch, 100, [{ offset: position.offset + 1, kind: 'v', body: '{}', q: '', a: 'connected', b: '' }]);
      expect(fenced).toEqual({ kind: 'fenced', lease: 'h2|999' });
      expect(log.entries.some((e) => e.fields.code === 'GW_ERR_FLEET_NOT_OWNER' && e.fields.vm === 'vm8')).toBe(true);
      // Everyone else is still renewed.
      expect(publisher.status().owned).toBe(VMS.length - 1);
    });
  });
});
