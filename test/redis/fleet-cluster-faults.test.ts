/**
 * The fault suite's core cases on a real 3-master Redis Cluster (fleet-faults.test.ts runs them on
 * one server): a host gateway killed with -9 mid-job and restarted continues its epoch and the job
 * reaches its true end through an edge; a command through the edge to an owner that is gone gets
 * outcome_unknown, counted in the edge's metrics.
 */
import { afterAll, afterEach, expect, it } from 'vitest';
import { startMirror, MiB } from '../../src/lab/jobs.js';
import { startRedisCluster, type RedisCluster } from '../../src/lab/redis.js';
import { TestClient, type Msg } from '../utils/gateway-support.js';
import { describeBuilt } from '../utils/built-cli.js';
import { describeQemu } from '../utils/qemu-gate.js';
import { cleanupLeftoversAfterAll, startQsd } from '../utils/qsd.js';
import { describeRedis } from '../utils/redis-gate.js';
import { edgeArgs, hostArgs, metricsOf, sample, serveInProcess, serveProcess } from './fleet-support.js';

const streamMessages = (c: TestClient, vm: string): Msg[] => c.messages.filter((m) => (m.type === 'event' || m.type === 'vm') && m.vm === vm);

function lastSeen(c: TestClient, vm: string): { epoch: string; offset: number } {
  const m = c.messages.filter((x) => ['synced', 'event', 'vm', 'bookmark'].includes(x.type) && x.vm === vm).at(-1)!;
  return { epoch: m.epoch, offset: m.offset };
}

describeRedis('fleet faults on a 3-master Redis Cluster', () => {
  describeQemu('real qemu-storage-daemon', () => {
    describeBuilt('host gateways as processes', () => {
      cleanupLeftoversAfterAll();
      let cluster: RedisCluster | undefined;
      const stops: (() => Promise<unknown>)[] = [];
      afterEach(async () => {
        for (const stop of stops.splice(0).reverse()) await stop().catch(() => undefined);
      });
      afterAll(async () => cluster?.dispose());

      async function client(url: string): Promise<TestClient> {
        const c = await TestClient.connect(url);
        stops.push(async () => c.ws.terminate());
        return c;
      }

      it("host killed with -9 mid-job and restarted: same epoch, recovered, the job's true end; then the owner gone: outcome_unknown", async () => {
        cluster = await startRedisCluster();
        const qsd = await startQsd({ monitors: ['gw'] });
        stops.push(() => qsd.dispose());
        const args = hostArgs(cluster.url, 'h1', { vm1: qsd.path('gw') });
        const host = await serveProcess(args);
        const edge = await serveInProcess(edgeArgs(cluster.url));
        stops.push(() => edge.stop());
        const h = await client(host.wsUrl);
        h.send({ type: 'subscribe', id: 's', sub: 'a' });
        await h.next((m) => m.type === 'synced');
        const e = await client(edge.gateway.wsUrl);
        e.send({ type: 'subscribe', id: 's', sub: 'a', filter: { vms: ['vm1'] } });
        await e.next((m) => m.type === 'synced');
        await startMirror(qsd, qsd, { jobId: 'm', speed: 1 * MiB, dataMiB: 8 });
        await h.next((m) => m.type === 'event' && m.job.id === 'm' && m.job.state === 'running', 60_000);
        // Once the edge has the host's latest event (it is in the cluster), kill -9.
        const before = lastSeen(h, 'vm1');
        await e.until((all) => all.some((m) => m.type === 'event' && m.offset === before.offset), 20_000);
        host.run.child.kill('SIGKILL');
        await h.closed;

        const again = await serveProcess(args);
        const h2 = await client(again.wsUrl);
        h2.send({ type: 'subscribe', id: 's', sub: 'a', since: { vm1: before } });
        const resumed = await h2.next((m) => m.type === 'subscribed');
        expect(resumed.streams.vm1).toMatchObject({ mode: 'recovered', epoch: before.epoch });
        // The true end, through the edge: pivot and see it complete.
        e.send({ type: 'command', id: 'c', vm: 'vm1', job: 'm', action: 'complete', when: 'ready', await: 'concluded', timeoutMs: 60_000 });
        const pivot = await e.next((m) => m.type === 'result' && m.id === 'c', 70_000);
        expect(pivot, JSON.stringify(pivot)).toMatchObject({ ok: true, job: { outcome: 'completed', pivoted: true } });
        await h2.until((all) => all.some((m) => m.type === 'event' && m.job.id === 'm' && m.job.state === 'concluded'), 30_000);
        await e.until((all) => all.some((m) => m.type === 'event' && m.job.id === 'm' && m.job.state === 'concluded'), 30_000);
        const onEdge = streamMessages(e, 'vm1');
        expect(new Set(onEdge.map((m) => m.epoch))).toEqual(new Set([before.epoch]));
        const offsets = onEdge.map((m) => m.offset as number);
        expect(offsets).toEqual(offsets.map((_, i) => offsets[0]! + i));

        // The owner gone (kill -9: its lease lives on): a command gets outcome_unknown within the ack timeout.
        again.run.child.kill('SIGKILL');
        await again.run.exited;
        const sent = Date.now();
        e.send({ type: 'command', id: 'c2', vm: 'vm1', job: 'm', action: 'dismiss', timeoutMs: 30_000 });
        const unknown = await e.next((m) => m.type === 'result' && m.id === 'c2', 20_000);
        expect(unknown).toMatchObject({ ok: false, error: { code: 'outcome_unknown' } });
        expect(Date.now() - sent).toBeLessThan(10_000);
        const metrics = await metricsOf(edge.gateway.url);
        expect(sample(metrics, 'blockjob_gateway_fleet_commands_outcome_unknown_total', 'cause="no_ack"')).toBe(1);
        expect(sample(metrics, 'blockjob_gateway_fleet_commands_forwarded_total', 'result="outcome_unknown"')).toBe(1);
      });
    });
  });
});
