/**
 * A host's Redis buffer overflowing: the host is cut off from Redis (a partition: the edges still
 * reach it) for longer than its bound (`fleet.maxBuffered`), its job moves on meanwhile, then Redis
 * is back. Real redis-server, real qemu-storage-daemon, a TCP proxy between the host and Redis.
 *
 * What must hold: the host's own clients miss nothing; a subscriber live on an edge never sees the
 * offsets jump over the hole (it is told to resume, and its resume is a snapshot with a reason); a
 * client resuming on an edge from before the hole gets a snapshot with a reason, then live events
 * that continue it.
 */
import { afterAll, afterEach, expect, it } from 'vitest';
import { startMirror, MiB } from '../../src/lab/jobs.js';
import { startRedis, type RedisServer } from '../../src/lab/redis.js';
import { TestClient, type Msg } from '../utils/gateway-support.js';
import { describeQemu } from '../utils/qemu-gate.js';
import { cleanupLeftoversAfterAll, startQsd } from '../utils/qsd.js';
import { describeRedis } from '../utils/redis-gate.js';
import { edgeArgs, eventually, hostArgs, serveInProcess } from './fleet-support.js';
import { startTcpProxy, type TcpProxy } from './tcp-proxy.js';

const streamMessages = (c: TestClient, vm: string): Msg[] => c.messages.filter((m) => (m.type === 'event' || m.type === 'vm') && m.vm === vm);

/** Offsets a client saw for `vm` after its `synced` (or the subscribed position), each one more than the last. */
function expectContiguous(c: TestClient, vm: string, from: number): number[] {
  const offsets = streamMessages(c, vm).map((m) => m.offset as number);
  expect(offsets, `offsets seen: ${offsets.join(',')}`).toEqual(offsets.map((_, i) => from + i + 1));
  return offsets;
}

async function readyz(url: string): Promise<{ status: string; degraded?: string[] }> {
  return (await (await fetch(`${url}/readyz`)).json()) as { status: string; degraded?: string[] };
}

describeRedis('fleet: a host buffer overflow', () => {
  describeQemu('real qemu-storage-daemon, real redis-server', () => {
    cleanupLeftoversAfterAll();
    let redis: RedisServer;
    let proxy: TcpProxy;
    const stops: (() => Promise<unknown>)[] = [];
    afterEach(async () => {
      for (const stop of stops.splice(0).reverse()) await stop().catch(() => undefined);
    });
    afterAll(async () => {
      await proxy?.close();
      await redis?.dispose();
    });

    async function client(url: string): Promise<TestClient> {
      const c = await TestClient.connect(url);
      stops.push(async () => c.ws.terminate());
      return c;
    }

    it('host cut off from Redis past its bound: its clients miss nothing, an edge subscriber is told to resume and gets a snapshot with a reason, never a jump', async () => {
      redis = await startRedis();
      proxy = await startTcpProxy(redis.port);
      const qsd = await startQsd({ monitors: ['gw'] });
      stops.push(() => qsd.dispose());
      // A long lease: the partition must not look like a dead host to the edge (that is another path, a new epoch).
      const host = await serveInProcess(hostArgs(proxy.url, 'h1', { vm1: qsd.path('gw') }), undefined, { maxBuffered: 2, leaseTtlMs: 60_000 });
      stops.push(() => host.stop());
      const edge = await serveInProcess(edgeArgs(redis.url));
      stops.push(() => edge.stop());

      const h = await client(host.gateway.wsUrl);
      h.send({ type: 'subscribe', id: 's', sub: 'a' });
      const hSynced = await h.next((m) => m.type === 'synced' && m.vm === 'vm1');
      await startMirror(qsd, qsd, { jobId: 'm', speed: 1 * MiB, dataMiB: 64 });
      await eventually(() => redis.cli('hget', 'bjg:{vm1}:m', 'head').trim() !== '' && edge.gateway.core.streamPositions().get('vm1') !== undefined, 30_000, 'the edge to know vm1');
      const e = await client(edge.gateway.wsUrl);
      e.send({ type: 'subscribe', id: 's', sub: 'a', filter: { vms: ['vm1'] } });
      const eSynced = await e.next((m) => m.type === 'synced');
      await eventually(() => e.messages.some((m) => m.type === 'state' && m.job.id === 'm') || streamMessages(e, 'vm1').some((m) => m.job?.id === 'm'), 30_000, 'the edge subscriber to see the job');

      // The partition: the host loses Redis, the edge does not. The job moves on: 6 transitions, bound 2.
      proxy.cut();
      const hostOffset = () => host.gateway.core.streamPositions().get('vm1')!.offset;
      const atCut = hostOffset();
      for (let i = 0; i < 3; i++) {
        const before = hostOffset();
        await qsd.execute('job-pause', { id: 'm' });
        await eventually(() => hostOffset() > before, 20_000, 'the pause');
        await qsd.execute('job-resume', { id: 'm' });
        await eventually(() => hostOffset() > before + 1, 20_000, 'the resume');
      }
      expect(hostOffset()).toBeGreaterThanOrEqual(atCut + 6);
      await eventually(async () => JSON.stringify((await readyz(host.gateway.url)).degraded ?? []).includes("restarting Redis's copy"), 20_000, 'host to say it restarts the stream in Redis');
      // Nothing reached the edge meanwhile.
      expect(streamMessages(e, 'vm1').every((m) => m.offset <= Number(redis.cli('hget', 'bjg:{vm1}:m', 'head').trim()))).toBe(true);
      const eSeen = streamMessages(e, 'vm1').at(-1) ?? eSynced;

      // Redis back for the host; the job moves on once its copy in Redis restarted.
      proxy.restore();
      await eventually(() => redis.cli('hget', 'bjg:{vm1}:m', 'head').trim() === String(hostOffset()), 30_000, "Redis's copy restarted at the host's position");
      expect((await readyz(host.gateway.url)).status).toBe('ready');
      const beforePause = hostOffset();
      await qsd.execute('job-pause', { id: 'm' });
      await eventually(() => hostOffset() > beforePause, 20_000, 'the pause after the outage');
      // The live edge subscriber is told to resume (the stream no longer continues its position), never handed the next offset past the hole.
      await eventually(() => e.closeCode !== undefined || streamMessages(e, 'vm1').some((m) => m.offset > eSeen.offset), 30_000, 'the edge subscriber to be told');
      expectContiguous(e, 'vm1', eSynced.offset);
      expect(await e.closed).toBe(4500);

      // It resumes (so would any client from before the hole): a snapshot with a reason, the same epoch, then live events that continue it.
      const e2 = await client(edge.gateway.wsUrl);
      e2.send({ type: 'subscribe', id: 's', sub: 'a', filter: { vms: ['vm1'] }, since: { vm1: { epoch: eSeen.epoch, offset: eSeen.offset } } });
      const resumed = await e2.next((m) => m.type === 'subscribed');
      expect(resumed.streams.vm1).toMatchObject({ mode: 'snapshot', reason: 'offset_too_old', epoch: eSeen.epoch });
      const e2Synced = await e2.next((m) => m.type === 'synced');
      expect(e2Synced.offset).toBe(hostOffset());
      expect(e2.messages.find((m) => m.type === 'state' && m.job.id === 'm')!.job.state).toBe('paused');
      const beforeResume = hostOffset();
      await qsd.execute('job-resume', { id: 'm' });
      await e2.next((m) => m.type === 'event' && m.job.id === 'm' && m.transition.from === 'paused', 30_000);
      expectContiguous(e2, 'vm1', e2Synced.offset);
      expect(streamMessages(e2, 'vm1')[0]!.offset).toBe(beforeResume + 1);

      // The host's own client never left and missed nothing: one epoch, contiguous offsets, all 8 pauses and resumes.
      await h.until((all) => all.some((m) => m.type === 'event' && m.offset === beforeResume + 1), 20_000);
      expect(h.closeCode).toBeUndefined();
      expectContiguous(h, 'vm1', hSynced.offset);
      expect(new Set(streamMessages(h, 'vm1').map((m) => m.epoch))).toEqual(new Set([hSynced.epoch]));
      expect(streamMessages(h, 'vm1').filter((m) => m.type === 'event' && m.job.id === 'm' && (m.transition.to === 'paused' || m.transition.from === 'paused'))).toHaveLength(8);
      expect([...h.invalid, ...e.invalid, ...e2.invalid]).toEqual([]);
    });
  });
});
