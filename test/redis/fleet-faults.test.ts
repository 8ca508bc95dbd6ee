/**
 * Fleet faults with real processes where kill -9 matters: an edge or a host gateway killed (the core
 * cases of fleet-fault-cases.ts, which fleet-cluster-faults.test.ts runs on a cluster), Redis stopped
 * and flushed, two hosts claiming one VM. Nothing lost, nothing twice, nothing invented.
 */
import { afterAll, afterEach, expect, it } from 'vitest';
import { startMirror, MiB } from '../../src/lab/jobs.js';
import { startRedis, type RedisServer } from '../../src/lab/redis.js';
import { describeBuilt } from '../utils/built-cli.js';
import { describeQemu } from '../utils/qemu-gate.js';
import { cleanupLeftoversAfterAll, startQsd } from '../utils/qsd.js';
import { describeRedis } from '../utils/redis-gate.js';
import { edgeKilledClientResumesElsewhere, hostKilledRestartedThenOwnerGone } from './fleet-fault-cases.js';
import { edgeArgs, eventually, hostArgs, lastSeen, serveInProcess, serveProcess, Stops, streamMessages } from './fleet-support.js';

async function readyz(url: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${url}/readyz`);
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

describeRedis('fleet faults', () => {
  describeQemu('real qemu-storage-daemon, real redis-server', () => {
    describeBuilt('gateways as processes', () => {
      cleanupLeftoversAfterAll();
      let redis: RedisServer;
      const stops = new Stops();
      afterEach(() => stops.run());
      afterAll(async () => redis?.dispose());

      const client = (url: string) => stops.client(url);

      async function freshRedis(): Promise<RedisServer> {
        redis ??= await startRedis();
        if (!redis.running) await redis.restart();
        redis.cli('flushall');
        return redis;
      }

      it('edge A killed with -9 mid-stream: the client resumes on edge B, recovered, offsets contiguous, nothing twice', async () => {
        await edgeKilledClientResumesElsewhere((await freshRedis()).url, stops);
      });

      it("a host gateway killed with -9 mid-job and restarted: same epoch, recovered, and the job's true end; then the owner gone: outcome_unknown", async () => {
        await hostKilledRestartedThenOwnerGone((await freshRedis()).url, stops);
      });

      it('Redis stopped for 5 s and restarted (AOF): nothing lost; then Redis flushed: a snapshot with a reason', async () => {
        await freshRedis();
        const qsd = await startQsd({ monitors: ['gw'] });
        stops.add(() => qsd.dispose());
        const host = await serveInProcess(hostArgs(redis.url, 'h1', { vm1: qsd.path('gw') }));
        stops.add(() => host.stop());
        const edge = await serveInProcess(edgeArgs(redis.url));
        stops.add(() => edge.stop());
        const e = await client(edge.gateway.wsUrl);
        e.send({ type: 'subscribe', id: 's', sub: 'a' });
        await e.next((m) => m.type === 'synced');
        await startMirror(qsd, qsd, { jobId: 'm', speed: 1 * MiB, dataMiB: 16 });
        await e.next((m) => m.type === 'event' && m.job.id === 'm', 60_000);

        await redis.stop();
        expect(await e.closed).toBe(4500); // the edge cannot vouch for anything without Redis
        const since = lastSeen(e, 'vm1');
        await eventually(async () => (await readyz(host.gateway.url)).body.status === 'degraded', 20_000, 'host degraded');
        expect((await readyz(edge.gateway.url)).status).toBe(503);
        // The host keeps serving its own clients and the job moves on while Redis is away.
        const hostOffset = () => host.gateway.core.streamPositions().get('vm1')!.offset;
        await qsd.execute('job-pause', { id: 'm' });
        await eventually(() => hostOffset() >= since.offset + 1, 20_000, 'the pause during the outage');
        await qsd.execute('job-resume', { id: 'm' });
        await eventually(() => hostOffset() >= since.offset + 2, 20_000, 'the resume during the outage');
        await new Promise((r) => setTimeout(r, 5000)); // the outage the issue names: 5 s
        await redis.restart();
        await eventually(async () => (await readyz(edge.gateway.url)).status === 200, 30_000, 'edge ready again');
        const head = host.gateway.core.streamPositions().get('vm1')!;
        await eventually(() => edge.gateway.core.streamPositions().get('vm1')!.offset >= head.offset, 30_000, 'edge caught up');

        const e2 = await client(edge.gateway.wsUrl);
        e2.send({ type: 'subscribe', id: 's', sub: 'a', since: { vm1: since } });
        const resumed = await e2.next((m) => m.type === 'subscribed');
        expect(resumed.streams.vm1).toMatchObject({ mode: 'recovered', epoch: since.epoch });
        await e2.next((m) => m.type === 'synced');
        // Exactly the host's own events, byte for byte (the host's clients are the reference).
        const h = await client(host.gateway.wsUrl);
        h.send({ type: 'subscribe', id: 's', sub: 'a', since: { vm1: since } });
        await h.next((m) => m.type === 'synced');
        const fromEdge = streamMessages(e2, 'vm1');
        const fromHost = streamMessages(h, 'vm1').slice(0, fromEdge.length);
        expect(fromEdge.length).toBeGreaterThanOrEqual(2);
        expect(fromEdge).toEqual(fromHost);
        expect(fromEdge.map((m) => m.offset)).toEqual(fromEdge.map((_, i) => since.offset + i + 1));

        // Flushed: detected, Redis's copy restarts with a snapshot, a resume from before gets a snapshot with a reason.
        const beforeFlush = lastSeen(e2, 'vm1');
        redis.cli('flushall');
        await qsd.execute('job-pause', { id: 'm' });
        await e2.closed; // the edge re-opened the stream: its subscribers resume
        await eventually(() => redis.cli('hget', 'bjg:{vm1}:m', 'head').trim() !== '', 20_000, 'stream restarted in Redis');
        const e3 = await client(edge.gateway.wsUrl);
        e3.send({ type: 'subscribe', id: 's', sub: 'a', since: { vm1: beforeFlush } });
        const afterFlush = await e3.next((m) => m.type === 'subscribed');
        expect(afterFlush.streams.vm1.mode).toBe('snapshot');
        expect(['offset_too_old', 'unknown_epoch']).toContain(afterFlush.streams.vm1.reason);
        const state = await e3.next((m) => m.type === 'state' && m.job.id === 'm');
        expect(['paused', 'standby']).toContain(state.job.state); // standby: it was ready when paused
      });

      it('two host gateways claiming one VM: one owner, a clear error from the other', async () => {
        await freshRedis();
        const qsd = await startQsd({ monitors: ['gw', 'gw2'] });
        stops.add(() => qsd.dispose());
        const owner = await serveInProcess(hostArgs(redis.url, 'h1', { vm1: qsd.path('gw') }));
        stops.add(() => owner.stop());
        const other = await serveProcess(hostArgs(redis.url, 'h2', { vm1: qsd.path('gw2') }));
        await other.run.line(/GW_ERR_FLEET_NOT_OWNER/, 20_000);
        const line = other.run.stdout.find((l) => l.includes('GW_ERR_FLEET_NOT_OWNER'))!;
        expect(JSON.parse(line)).toMatchObject({ level: 50, vm: 'vm1', owner: 'h1' });
        const health = await readyz(other.url);
        expect(health.body.status).toBe('degraded');
        expect(JSON.stringify(health.body.degraded)).toContain('owned by host gateway h1');
        // Redis still holds the owner's stream.
        expect(redis.cli('hget', 'bjg:{vm1}:m', 'epoch').trim()).toBe(owner.gateway.core.streamPositions().get('vm1')!.epoch);
      });
    });
  });
});
