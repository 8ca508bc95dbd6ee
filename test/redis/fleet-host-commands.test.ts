/**
 * A command sent through an edge the moment a restarted host gateway is up must reach it. The host
 * reads its command stream after the stream's top: taken when it started, before it claimed its
 * leases and listened. Taken later (at the loop's first read, as it was), a command queued between
 * listening and that read was skipped and the client got outcome_unknown for a host that was up
 * (seen once on the cluster fault suite right after a host restart). Real redis-server, real
 * qemu-storage-daemon; the host reaches Redis through a TCP proxy with a delay, so that window is
 * wide enough to hit every run.
 */
import { afterAll, afterEach, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import type { RedisClient } from '../../src/fleet/connect.js';
import { fleetDefaults } from '../../src/fleet/fleet-config.js';
import { FleetKeys } from '../../src/fleet/keys.js';
import { startRedis, type RedisServer } from '../../src/lab/redis.js';
import { describeQemu } from '../utils/qemu-gate.js';
import { cleanupLeftoversAfterAll, startQsd } from '../utils/qsd.js';
import { describeRedis } from '../utils/redis-gate.js';
import { edgeArgs, eventually, hostArgs, serveInProcess, Stops } from './fleet-support.js';
import { startTcpProxy, type TcpProxy } from './tcp-proxy.js';

describeRedis('fleet: commands to a restarted host', () => {
  describeQemu('real qemu-storage-daemon, real redis-server', () => {
    cleanupLeftoversAfterAll();
    let redis: RedisServer | undefined;
    let proxy: TcpProxy | undefined;
    const stops = new Stops();
    afterEach(() => stops.run());
    afterAll(async () => {
      await proxy?.close();
      await redis?.dispose();
    });

    it('a command sent through an edge as soon as the restarted host is up is answered by it, not outcome_unknown', async () => {
      redis = await startRedis();
      proxy = await startTcpProxy(redis.port);
      const qsd = await startQsd({ monitors: ['gw'] });
      stops.add(() => qsd.dispose());
      const args = hostArgs(proxy.url, 'h1', { vm1: qsd.path('gw') });
      const first = await serveInProcess(args);
      const edge = await serveInProcess(edgeArgs(redis.url));
      stops.add(() => edge.stop());
      await eventually(async () => ((await (await fetch(`${edge.gateway.url}/v1/jobs`)).json()) as { vms: { vm: string }[] }).vms.some((v) => v.vm === 'vm1'), 20_000, 'vm1 on the edge');
      await first.stop();

      proxy.delayMs = 150; // every host round trip >= 300 ms; the edge's own are direct
      const again = await serveInProcess(args);
      stops.add(() => again.stop());
      const e = await stops.client(edge.gateway.wsUrl);
      e.send({ type: 'command', id: 'c', vm: 'vm1', job: 'nope', action: 'cancel', timeoutMs: 20_000 });
      const result = await e.next((m) => m.type === 'result' && m.id === 'c', 30_000);
      // The host's own answer (it has no such job), not the edge's outcome_unknown.
      expect(result, JSON.stringify(result)).toMatchObject({ ok: false, error: { code: 'unknown_job' } });

      // Replies are pub/sub, at most once: with the edge deaf to its reply channel, the host's record
      // of the command still gives the client the host's answer (outcome_unknown before the record).
      proxy.delayMs = 0;
      const subscriber = (edge.gateway.core.feed as unknown as { subscriber: RedisClient }).subscriber;
      const direct = new Redis(redis.port, '127.0.0.1');
      stops.add(async () => direct.disconnect());
      const replyChannels = (await direct.pubsub('CHANNELS', `${new FleetKeys(fleetDefaults().keyPrefix).replyChannel('')}*`)) as string[];
      expect(replyChannels).toHaveLength(1); // the edge's own
      await subscriber.unsubscribe(...replyChannels);
      e.send({ type: 'command', id: 'd', vm: 'vm1', job: 'nope', action: 'cancel', timeoutMs: 20_000 });
      const deaf = await e.next((m) => m.type === 'result' && m.id === 'd', 30_000);
      expect(deaf, JSON.stringify(deaf)).toMatchObject({ ok: false, error: { code: 'unknown_job' } });
    });
  });
});
