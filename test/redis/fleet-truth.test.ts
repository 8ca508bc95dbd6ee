/**
 * Fleet truth across a host's death: a job that ended while no host followed it concludes in the
 * stream; edges say when a host's lease lapsed; a host killed with unacknowledged events never
 * reuses an offset a client may have seen. Real redis-server, real qemu-storage-daemon, the host
 * gateway as a process killed with -9.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, expect, it } from 'vitest';
import { startMirror, MiB } from '../../src/lab/jobs.js';
import { startRedis, type RedisServer } from '../../src/lab/redis.js';
import { TestClient, type Msg } from '../utils/gateway-support.js';
import { describeBuilt } from '../utils/built-cli.js';
import { describeQemu } from '../utils/qemu-gate.js';
import { cleanupLeftoversAfterAll, startQsd, type Qsd } from '../utils/qsd.js';
import { describeRedis } from '../utils/redis-gate.js';
import { edgeArgs, eventually, hostArgs, serveInProcess, serveProcess, Stops, streamMessages, type InProcessGateway, type ProcessGateway } from './fleet-support.js';
const jobEvents = (c: TestClient, id: string): Msg[] => c.messages.filter((m) => m.type === 'event' && m.job.id === id);

/** A config file with a fleet section (flags set the rest) and the host's own state directory. */
function fleetConfig(fleet: Record<string, unknown>): string {
  const dir = mkdtempSync(join(tmpdir(), 'bjf-truth-'));
  const file = join(dir, 'gateway.json');
  writeFileSync(file, JSON.stringify({ fleet: { redis: 'env:UNUSED', stateDir: join(dir, 'state'), ...fleet } }));
  return file;
}

async function qemuJobs(qsd: Qsd): Promise<{ id: string; status: string; error?: string }[]> {
  return (await qsd.execute('query-jobs')) as { id: string; status: string; error?: string }[];
}

describeRedis('fleet truth', () => {
  describeQemu('real qemu-storage-daemon, real redis-server', () => {
    describeBuilt('host gateway as a process', () => {
      cleanupLeftoversAfterAll();
      let redis: RedisServer;
      const stops = new Stops();
      afterEach(() => stops.run());
      afterAll(async () => redis?.dispose());

      const client = (url: string): Promise<TestClient> => stops.client(url);

      /** A clean Redis, a qsd with monitor `gw`, and host h1 serving it as vm1 (a process: kill -9 matters). */
      async function hostOnQsd(fleet: Record<string, unknown> = {}): Promise<{ qsd: Qsd; args: string[]; host: ProcessGateway }> {
        redis ??= await startRedis();
        if (!redis.running) await redis.restart();
        redis.cli('flushall');
        const qsd = await startQsd({ monitors: ['gw'] });
        stops.add(() => qsd.dispose());
        const args = ['--config', fleetConfig(fleet), ...hostArgs(redis.url, 'h1', { vm1: qsd.path('gw') })];
        const host = await serveProcess(args);
        stops.add(async () => host.run.child.kill('SIGKILL'));
        return { qsd, args, host };
      }

      /** An edge, and a client of it following vm1 from its snapshot. */
      async function edgeOnVm1(): Promise<{ edge: InProcessGateway; e: TestClient; synced: Msg }> {
        const edge = await serveInProcess(edgeArgs(redis.url));
        stops.add(() => edge.stop());
        const e = await client(edge.gateway.wsUrl);
        e.send({ type: 'subscribe', id: 's', sub: 'a', filter: { vms: ['vm1'] } });
        return { edge, e, synced: await e.next((m) => m.type === 'synced') };
      }

      it('jobs that ended while their host was down conclude in the stream after its restart: unknown, or their true end', async () => {
        const { qsd, args, host } = await hostOnQsd();
        const { edge, e, synced } = await edgeOnVm1();
        // 'gone' vanishes from QEMU when it ends (auto-dismiss); 'kept' stays listed, concluded.
        await startMirror(qsd, qsd, { jobId: 'gone', speed: 1 * MiB, dataMiB: 16 });
        await startMirror(qsd, qsd, { jobId: 'kept', speed: 1 * MiB, dataMiB: 16, autoDismiss: false });
        await e.until((all) => ['gone', 'kept'].every((id) => all.some((m) => m.type === 'event' && m.job.id === id && m.job.state === 'running')), 60_000);
        const h = await client(host.wsUrl);
        h.send({ type: 'subscribe', id: 's', sub: 'a' });
        await h.next((m) => m.type === 'synced');
        host.run.child.kill('SIGKILL');
        await host.run.exited;

        // Both end while no host follows them.
        await qsd.execute('job-cancel', { id: 'gone' });
        await qsd.execute('job-cancel', { id: 'kept' });
        await eventually(async () => {
          const jobs = await qemuJobs(qsd);
          return !jobs.some((j) => j.id === 'gone') && jobs.some((j) => j.id === 'kept' && j.status === 'concluded');
        }, 30_000, 'QEMU to end both jobs');
        const seenBefore = streamMessages(e, 'vm1').length;

        const again = await serveProcess(args);
        stops.add(async () => again.run.child.kill('SIGKILL'));
        // The edge's client, which never left, sees both ends.
        await e.until((all) => ['gone', 'kept'].every((id) => all.some((m) => m.type === 'event' && m.job.id === id && m.job.state === 'concluded')), 30_000);
        const gone = jobEvents(e, 'gone').at(-1)!;
        expect(gone.job).toMatchObject({ outcome: 'unknown', incarnation: 1 });
        expect(gone.transition.from).toBe('running');
        const kept = jobEvents(e, 'kept').at(-1)!;
        expect(kept.job).toMatchObject({ outcome: 'cancelled', incarnation: 1 });
        // Nothing invented for a job that did not end, one epoch, offsets contiguous.
        const onEdge = streamMessages(e, 'vm1');
        expect(onEdge.slice(seenBefore).filter((m) => m.type === 'event' && m.transition.from === null)).toEqual([]);
        expect(new Set(onEdge.map((m) => m.epoch))).toEqual(new Set([synced.epoch]));
        expect(onEdge.map((m) => m.offset)).toEqual(onEdge.map((_, i) => synced.offset + i + 1));

        // A client of the dead host resumes on the new one: recovered, and it sees the same ends.
        const last = streamMessages(h, 'vm1').at(-1) ?? (h.messages.find((m) => m.type === 'synced' && m.vm === 'vm1') as Msg);
        const h2 = await client(again.wsUrl);
        h2.send({ type: 'subscribe', id: 's', sub: 'a', since: { vm1: { epoch: last.epoch, offset: last.offset } } });
        const resumed = await h2.next((m) => m.type === 'subscribed');
        expect(resumed.streams.vm1).toMatchObject({ mode: 'recovered', epoch: synced.epoch });
        await h2.until((all) => ['gone', 'kept'].every((id) => all.some((m) => m.type === 'event' && m.job.id === id && m.job.state === 'concluded')), 30_000);
        expect(jobEvents(h2, 'gone').at(-1)!.job.outcome).toBe('unknown');
        // Redis's snapshot holds the ends too: a fresh client of the edge sees no live phantom.
        const fresh = await client(edge.gateway.wsUrl);
        fresh.send({ type: 'subscribe', id: 's', sub: 'a' });
        await fresh.next((m) => m.type === 'synced');
        for (const m of fresh.messages.filter((x) => x.type === 'state')) expect(['concluded', 'dismissed']).toContain(m.job.state);
      });

      it('a host killed with -9 while Redis had not acknowledged what its clients saw: the restart takes a new epoch, never reusing those offsets', async () => {
        const { qsd, args, host } = await hostOnQsd();
        const h = await client(host.wsUrl);
        h.send({ type: 'subscribe', id: 's', sub: 'a' });
        const synced = await h.next((m) => m.type === 'synced');
        await startMirror(qsd, qsd, { jobId: 'm', speed: 1 * MiB, dataMiB: 16 });
        await h.next((m) => m.type === 'event' && m.job.id === 'm', 60_000);
        const stored = () => Number(redis.cli('hget', 'bjg:{vm1}:m', 'head').trim() || '0');
        await eventually(() => stored() === streamMessages(h, 'vm1').at(-1)!.offset, 20_000, 'Redis to hold what the client saw');
        const acked = stored();

        // Redis goes away; the host's own client sees events Redis never gets; the host dies.
        await redis.stop();
        await qsd.execute('job-pause', { id: 'm' });
        await h.until((all) => all.some((m) => m.type === 'event' && m.offset > acked), 20_000);
        const seen = streamMessages(h, 'vm1').at(-1)!;
        host.run.child.kill('SIGKILL');
        await host.run.exited;
        await redis.restart();
        await qsd.execute('job-resume', { id: 'm' });

        const again = await serveProcess(args);
        stops.add(async () => again.run.child.kill('SIGKILL'));
        const h2 = await client(again.wsUrl);
        h2.send({ type: 'subscribe', id: 's', sub: 'a', since: { vm1: { epoch: seen.epoch, offset: seen.offset } } });
        const resumed = await h2.next((m) => m.type === 'subscribed');
        // Redis had offsets up to `acked`; the restart must not give acked+1.. to other events under the same epoch.
        expect(resumed.streams.vm1).toMatchObject({ mode: 'snapshot', reason: 'unknown_epoch' });
        expect(resumed.streams.vm1.epoch).not.toBe(synced.epoch);
        expect(redis.cli('hget', 'bjg:{vm1}:m', 'epoch').trim()).toBe(resumed.streams.vm1.epoch);
        const state = await h2.next((m) => m.type === 'state' && m.job.id === 'm');
        expect(state.job.incarnation).toBe(1);
        // An edge serves the new epoch with the job in it.
        const edge = await serveInProcess(edgeArgs(redis.url));
        stops.add(() => edge.stop());
        const e = await client(edge.gateway.wsUrl);
        e.send({ type: 'subscribe', id: 's', sub: 'a', since: { vm1: { epoch: seen.epoch, offset: acked } } });
        const onEdge = await e.next((m) => m.type === 'subscribed');
        expect(onEdge.streams.vm1).toMatchObject({ mode: 'snapshot', reason: 'unknown_epoch', epoch: resumed.streams.vm1.epoch });
        await e.next((m) => m.type === 'state' && m.job.id === 'm');
      });

      it("a host killed with -9 while Redis is fine: edges mark its VMs disconnected, jobs stale, once its lease lapses; its restart clears it", async () => {
        const ttlMs = 3000;
        const { qsd, args, host } = await hostOnQsd({ leaseTtlMs: ttlMs });
        const { edge, e, synced } = await edgeOnVm1();
        await startMirror(qsd, qsd, { jobId: 'm', speed: 1 * MiB, dataMiB: 16 });
        await e.next((m) => m.type === 'event' && m.job.id === 'm', 60_000);
        // Alive and renewing: nothing is marked for as long as two TTLs.
        await new Promise((r) => setTimeout(r, 2 * ttlMs));
        expect(streamMessages(e, 'vm1').filter((m) => m.type === 'vm' && m.status === 'disconnected')).toEqual([]);

        const killedAt = Date.now();
        host.run.child.kill('SIGKILL');
        await host.run.exited;
        const gone = await e.next((m) => m.type === 'vm' && m.status === 'disconnected', 30_000);
        console.log(`fleet-truth: host kill -9 -> edge marks vm1 disconnected after ${Date.now() - killedAt} ms (lease TTL ${ttlMs} ms)`);
        expect(gone.reason).toBe('host gateway h1 is gone: its lease on this VM lapsed');
        expect(gone.epoch).toBe(synced.epoch);
        // A new client of the edge sees the VM disconnected and its job stale.
        const fresh = await client(edge.gateway.wsUrl);
        fresh.send({ type: 'subscribe', id: 's', sub: 'a' });
        const freshSynced = await fresh.next((m) => m.type === 'synced');
        expect(freshSynced.status).toBe('disconnected');
        expect(fresh.messages.find((m) => m.type === 'state' && m.job.id === 'm')!.job.stale).toBe(true);

        // The host comes back: same epoch, the edge's record is part of the stream, and connected clears it.
        const again = await serveProcess(args);
        stops.add(async () => again.run.child.kill('SIGKILL'));
        const back = await e.next((m) => m.type === 'vm' && m.status === 'connected' && m.offset > gone.offset, 30_000);
        expect(back.epoch).toBe(synced.epoch);
        const onEdge = streamMessages(e, 'vm1');
        expect(onEdge.map((m) => m.offset)).toEqual(onEdge.map((_, i) => synced.offset + i + 1));
        // The restarted host serves the same history: a client of it that resumes from before the kill replays the edge's record.
        const h = await client(again.wsUrl);
        h.send({ type: 'subscribe', id: 's', sub: 'a', since: { vm1: { epoch: synced.epoch, offset: gone.offset - 1 } } });
        expect((await h.next((m) => m.type === 'subscribed')).streams.vm1.mode).toBe('recovered');
        const replayed = await h.next((m) => m.type === 'vm' && m.offset === gone.offset);
        expect(replayed).toMatchObject({ status: 'disconnected', reason: gone.reason });
      });
    });
  });
});
