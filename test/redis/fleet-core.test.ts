/**
 * Fleet mode against a real redis-server and real qemu-storage-daemons: two host gateways, two edges,
 * on a standalone Redis and on a 3-master Redis Cluster. Everything a client sees through an edge
 * must be what it would see on the host, resumable anywhere.
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { startMirror, MiB } from '../../src/lab/jobs.js';
import { TestClient, type Msg } from '../utils/gateway-support.js';
import { describeQemu } from '../utils/qemu-gate.js';
import { cleanupLeftoversAfterAll, startQsd, type Qsd } from '../utils/qsd.js';
import { describeRedis } from '../utils/redis-gate.js';
import { BACKENDS, type Backend, edgeArgs, eventually, hostArgs, serveInProcess, type InProcessGateway } from './fleet-support.js';

/** Offsets of one VM's event/vm messages on one subscription: contiguous, each once. */
function offsetsOf(client: TestClient, vm: string): number[] {
  return client.messages.filter((m) => (m.type === 'event' || m.type === 'vm') && m.vm === vm).map((m) => m.offset as number);
}

function expectContiguous(offsets: number[], from: number): void {
  expect(offsets).toEqual(offsets.map((_, i) => from + i + 1));
}

describeRedis('fleet core cases', () => {
  describeQemu('real qemu-storage-daemons', () => coreCases());
});

function coreCases(): void {
  describe.each(BACKENDS)('on %s: two hosts, two edges', (_name, startBackend) => {
    cleanupLeftoversAfterAll();
    let redis: Backend | undefined;
    const stops: (() => Promise<unknown>)[] = [];
    afterEach(async () => {
      for (const stop of stops.splice(0).reverse()) await stop().catch(() => undefined);
    });
    afterAll(async () => redis?.dispose());

    async function lab(): Promise<{ qsd1: Qsd; qsd2: Qsd; host1: InProcessGateway; host2: InProcessGateway; edgeA: InProcessGateway; edgeB: InProcessGateway }> {
      redis ??= await startBackend();
      // Each case has its own VMs' history: a fresh key prefix, not a flush (a cluster has three).
      const prefix = `t${Math.random().toString(36).slice(2, 8)}`;
      const qsd1 = await startQsd({ monitors: ['gw'] });
      const qsd2 = await startQsd({ monitors: ['gw'] });
      stops.push(() => qsd1.dispose(), () => qsd2.dispose());
      const host1 = await serveInProcess(hostArgs(redis.url, 'host1', { vm1: qsd1.path('gw') }), prefix);
      stops.push(() => host1.stop());
      const host2 = await serveInProcess(hostArgs(redis.url, 'host2', { vm2: qsd2.path('gw') }), prefix);
      stops.push(() => host2.stop());
      const edgeA = await serveInProcess(edgeArgs(redis.url), prefix);
      stops.push(() => edgeA.stop());
      const edgeB = await serveInProcess(edgeArgs(redis.url), prefix);
      stops.push(() => edgeB.stop());
      return { qsd1, qsd2, host1, host2, edgeA, edgeB };
    }

    async function client(url: string): Promise<TestClient> {
      const c = await TestClient.connect(url);
      stops.push(async () => c.ws.terminate());
      return c;
    }

    it("a client on edge A sees both hosts' jobs, the mirror's ready, and pivots it through edge A; edge B resumes it exactly", async () => {
      const { qsd1, qsd2, host1, edgeA, edgeB } = await lab();
      const a = await client(edgeA.gateway.wsUrl);
      a.send({ type: 'subscribe', id: 's', sub: 'a' });
      const subscribed = await a.next((m) => m.type === 'subscribed');
      // The edge discovered both VMs (hosts published them before it started).
      expect(Object.keys(subscribed.streams).sort()).toEqual(['vm1', 'vm2']);
      const synced = new Map<string, Msg>();
      for (let i = 0; i < 2; i++) {
        const s = await a.next((m) => m.type === 'synced');
        synced.set(s.vm, s);
      }
      // Monitor status reaches the edge too (it connected before the host's stream was open).
      await eventually(async () => {
        const { vms } = (await (await fetch(`${edgeA.gateway.url}/v1/jobs`)).json()) as { vms: { vm: string; status: string }[] };
        return vms.length === 2 && vms.every((v) => v.status === 'connected');
      }, 20_000, 'both VMs connected on edge A');
      // The edge serves the host's own epoch.
      const hostPositions = host1.gateway.core.streamPositions();
      expect(synced.get('vm1')!.epoch).toBe(hostPositions.get('vm1')!.epoch);

      await startMirror(qsd1, qsd1, { jobId: 'm1', speed: 8 * MiB, dataMiB: 4 });
      await startMirror(qsd2, qsd2, { jobId: 'm2', speed: 64 * MiB, dataMiB: 2 });
      await a.until((all) => ['vm1', 'vm2'].every((vm) => all.some((m) => m.type === 'event' && m.vm === vm)), 60_000);

      a.send({ type: 'command', id: 'c1', vm: 'vm1', job: 'm1', action: 'complete', when: 'ready', await: 'concluded', timeoutMs: 60_000 });
      const result = await a.next((m) => m.type === 'result' && m.id === 'c1', 60_000);
      expect(result).toMatchObject({ ok: true, job: { outcome: 'completed', pivoted: true } });
      await a.until((all) => all.some((m) => m.type === 'event' && m.vm === 'vm1' && m.job.state === 'concluded'), 30_000);
      const ready = a.messages.find((m) => m.type === 'event' && m.vm === 'vm1' && m.transition.to === 'ready');
      expect(ready?.job.ready).toBe(true);
      expectContiguous(offsetsOf(a, 'vm1'), synced.get('vm1')!.offset);
      expect(a.invalid).toEqual([]);

      // The same bytes as the host's own subscribers get: compare with a client on host 1.
      const h = await client(host1.gateway.wsUrl);
      h.send({ type: 'subscribe', id: 's', sub: 'a', since: { vm1: { epoch: synced.get('vm1')!.epoch, offset: synced.get('vm1')!.offset } } });
      await h.next((m) => m.type === 'synced');
      const fromHost = h.messages.filter((m) => m.type === 'event' && m.vm === 'vm1');
      const fromEdge = a.messages.filter((m) => m.type === 'event' && m.vm === 'vm1');
      expect(fromHost.length).toBeGreaterThan(0);
      expect(fromEdge.slice(0, fromHost.length)).toEqual(fromHost);

      // Resume on edge B from the middle of what A delivered: exactly the rest, recovered.
      const middle = fromEdge[1]!;
      const b = await client(edgeB.gateway.wsUrl);
      b.send({ type: 'subscribe', id: 's', sub: 'a', filter: { vms: ['vm1'] }, since: { vm1: { epoch: middle.epoch, offset: middle.offset } } });
      const resumed = await b.next((m) => m.type === 'subscribed');
      expect(resumed.streams.vm1.mode).toBe('recovered');
      await b.next((m) => m.type === 'synced');
      const replayed = b.messages.filter((m) => m.type === 'event' || m.type === 'vm').map((m) => m.offset);
      expectContiguous(replayed, middle.offset);
      expect(replayed.at(-1)).toBe(resumed.streams.vm1.offset);
    });

    it('a command through edge B pivots the job on host 1; with host 1 stopped (lease released), a command is refused at once: nothing was sent', async () => {
      const { qsd1, host1, edgeB } = await lab();
      const b = await client(edgeB.gateway.wsUrl);
      b.send({ type: 'subscribe', id: 's', sub: 'a', filter: { vms: ['vm1'] } });
      await b.next((m) => m.type === 'synced');
      await startMirror(qsd1, qsd1, { jobId: 'm3', speed: 64 * MiB, dataMiB: 2 });
      await b.next((m) => m.type === 'event' && m.job.id === 'm3' && m.transition.to === 'ready', 60_000);
      b.send({ type: 'command', id: 'c2', vm: 'vm1', job: 'm3', action: 'complete', when: 'now', await: 'concluded', timeoutMs: 30_000 });
      expect(await b.next((m) => m.type === 'result' && m.id === 'c2', 60_000)).toMatchObject({ ok: true, job: { outcome: 'completed', pivoted: true } });

      await startMirror(qsd1, qsd1, { jobId: 'm4', speed: 1 * MiB, dataMiB: 8 });
      await b.next((m) => m.type === 'event' && m.job.id === 'm4', 60_000);
      // A clean stop gives the lease up (kill -9, where it lingers, is in fleet-faults: outcome_unknown).
      await host1.stop();
      const sent = Date.now();
      b.send({ type: 'command', id: 'c3', vm: 'vm1', job: 'm4', action: 'pause', timeoutMs: 20_000 });
      const unknown = await b.next((m) => m.type === 'result' && m.id === 'c3', 30_000);
      expect(unknown.ok).toBe(false);
      expect(unknown.error.code).toBe('vm_disconnected');
      expect(Date.now() - sent).toBeLessThan(5_000);
    });
  });
}
