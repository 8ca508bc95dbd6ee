/**
 * A fleet host gateway whose VMs come from libvirt (`serve --libvirt ... --redis ...`), against the
 * lab's real libvirtd, a real TCG domain and a real redis-server. libvirt domains are discovered
 * after the host's streams open; they must be published like QMP VMs, and after a host restart
 * their jobs must be taken from Redis before the first reconcile, exactly like QMP ones: a job still
 * running goes on without a "new job" transition, one that ended while the host was down concludes
 * in the stream from its last known state; one epoch, contiguous offsets.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startRedis, type RedisServer } from '../../src/lab/redis.js';
import { TestClient, type Msg } from '../utils/gateway-support.js';
import { describeBuilt } from '../utils/built-cli.js';
import { describeLibvirt } from '../utils/libvirt-gate.js';
import { describeRedis } from '../utils/redis-gate.js';
import { acquireLibvirtd, cleanupLeftoversAfterAll, createLabDomain, makeTestDir, virsh, type LabDomain } from '../utils/qsd.js';
import { edgeArgs, eventually, serveInProcess, serveProcess, type ProcessGateway } from '../redis/fleet-support.js';
import { startTcpProxy, type TcpProxy } from '../redis/tcp-proxy.js';

const streamMessages = (c: TestClient, vm: string): Msg[] => c.messages.filter((m) => (m.type === 'event' || m.type === 'vm') && m.vm === vm);
const jobEvents = (c: TestClient, vm: string, id: string): Msg[] => c.messages.filter((m) => m.type === 'event' && m.vm === vm && m.job.id === id);
const ended = (m: Msg): boolean => m.job.state === 'concluded' || m.job.state === 'dismissed';
const JOB = 'copy-vda-libvirt-1-format';

describeLibvirt('fleet host over libvirt (real libvirtd)', () => {
  describeRedis('and a real redis-server', () => {
    describeBuilt('host gateway as a process', () => {
      cleanupLeftoversAfterAll();
      let redis: RedisServer;
      let proxy: TcpProxy;
      let config: string;
      const stops: (() => Promise<unknown>)[] = [];
      beforeAll(async () => {
        await acquireLibvirtd();
        redis = await startRedis();
        // The host reaches Redis slowly (each way 250 ms): the domain's engine reconciles long before a
        // reply; only a seed read before the engine starts can be in time.
        proxy = await startTcpProxy(redis.port, { delayMs: 250 });
        const dir = makeTestDir('bjf-lv-');
        config = join(dir, 'gateway.json');
        const libvirt = [{ uri: 'qemu:///system', domains: `^lvf-${process.pid}-` }];
        writeFileSync(config, JSON.stringify({ libvirt, fleet: { redis: proxy.url, hostId: 'lv1', stateDir: join(dir, 'state') } }));
      });
      afterAll(async () => {
        for (const stop of stops.splice(0).reverse()) await stop().catch(() => undefined);
        await proxy?.close();
        await redis?.dispose();
      });

      async function host(): Promise<ProcessGateway> {
        const h = await serveProcess(['--config', config]);
        stops.push(async () => h.run.child.kill('SIGKILL'));
        return h;
      }

      async function client(url: string): Promise<TestClient> {
        const c = await TestClient.connect(url);
        stops.push(async () => c.ws.terminate());
        return c;
      }

      it('a domain started after the host is published to the edges; after host kills -9 and restarts its job goes on, then ends, from the state Redis held', async () => {
        const first = await host();
        const edge = await serveInProcess(edgeArgs(redis.url));
        stops.push(() => edge.stop());
        const e = await client(edge.gateway.wsUrl);
        e.send({ type: 'subscribe', id: 's', sub: 'all' });
        await e.next((m) => m.type === 'subscribed');

        const domain: LabDomain = await createLabDomain(`lvf-${process.pid}`);
        stops.push(() => domain.destroy());
        const vm = domain.name;
        // Discovered by the host after its start, and through Redis on the edge.
        await e.until((all) => all.some((m) => m.type === 'vm' && m.vm === vm && m.status === 'connected'), 60_000);
        const { epoch, offset: firstOffset } = streamMessages(e, vm)[0]!;
        await virsh(['blockcopy', vm, 'vda', domain.path('copy.qcow2'), '--transient-job', '--bandwidth', '1']);
        await e.until((all) => all.some((m) => m.type === 'event' && m.vm === vm && m.job.id === JOB && m.job.state === 'running'), 60_000);
        const stored = () => Number(redis.cli('hget', `bjg:{${vm}}:m`, 'head').trim());
        await eventually(() => stored() === streamMessages(e, vm).at(-1)!.offset, 20_000, 'Redis to hold what the edge saw');

        // Restart 1, the copy still running: its engine must start from the state Redis holds, so the
        // reconcile continues the job (no "new job", same incarnation).
        const seenBefore = streamMessages(e, vm).length;
        first.run.child.kill('SIGKILL');
        await first.run.exited;
        const second = await host();
        await eventually(async () => {
          const { vms } = (await (await fetch(`${second.url}/v1/jobs?limit=10`)).json()) as { vms: { vm: string; offset: number; status: string; jobs: Msg[] }[] };
          const mine = vms.find((v) => v.vm === vm);
          return mine?.status === 'connected' && mine.jobs.some((j) => j.id === JOB && j.state === 'running' && !j.stale) && stored() === mine.offset;
        }, 60_000, 'the restarted host to reconcile the copy and publish what it saw');
        await e.until(() => streamMessages(e, vm).at(-1)!.offset === stored(), 20_000);
        expect(streamMessages(e, vm).slice(seenBefore).filter((m) => m.type === 'event' && m.transition.from === null)).toEqual([]);

        // Restart 2, the copy ended meanwhile: libvirt aborts it while no host follows it (QEMU cancels it, libvirt dismisses it).
        const seenBefore2 = streamMessages(e, vm).length;
        second.run.child.kill('SIGKILL');
        await second.run.exited;
        await virsh(['blockjob', vm, 'vda', '--abort']);
        await eventually(async () => /No current block job/i.test(await virsh(['blockjob', vm, 'vda'])), 30_000, 'libvirt to have no job on vda');
        await host();
        await e.until((all) => all.some((m) => m.type === 'event' && m.vm === vm && m.job.id === JOB && ended(m)), 60_000);
        // Its end comes from the state Redis held: from running, the same incarnation, nothing new.
        expect(streamMessages(e, vm).slice(seenBefore2).filter((m) => m.type === 'event' && m.transition.from === null)).toEqual([]);
        const end = jobEvents(e, vm, JOB).find(ended)!;
        expect(end.job.incarnation).toBe(1);
        expect(end.transition.from).toBe('running');
        // One epoch, contiguous offsets on the edge across both restarts.
        const all = streamMessages(e, vm);
        expect(new Set(all.map((m) => m.epoch))).toEqual(new Set([epoch]));
        expect(all.map((m) => m.offset)).toEqual(all.map((_, i) => firstOffset + i));
        expect(e.invalid).toEqual([]);
      });
    });
  });
});
