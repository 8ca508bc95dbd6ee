/**
 * An edge that missed notices: Redis pub/sub is at most once (a cluster forwards PUBLISH between
 * nodes over links it drops under load; ioredis moves a cluster subscriber without telling), so an
 * edge's head can fall behind Redis's while its subscriber connection looks up. Here the edge's real
 * subscriber really stops hearing (UNSUBSCRIBE on its own connection: Redis delivers nothing more to
 * it), on a standalone Redis and on a 3-master cluster, with a real qemu-storage-daemon behind a host.
 *
 * What must hold: a resume on that edge is answered from Redis's head, never its own stale one, and
 * no replayed event follows `synced`; a quiet VM's missed events reach the edge's live subscribers
 * by the host's next heartbeats, also when the heartbeats were missed too; and so does a missed
 * change outside the stream (an expired job pruned from Redis: the `x` notice moves no head).
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import type { RedisClient } from '../../src/fleet/connect.js';
import { connectRedis, parseRedisUrl } from '../../src/fleet/connect.js';
import type { EdgeFeed } from '../../src/fleet/edge-feed.js';
import { FleetKeys } from '../../src/fleet/keys.js';
import { FleetStore } from '../../src/fleet/store.js';
import { startMirror, MiB } from '../../src/lab/jobs.js';
import type { TestClient, Msg } from '../utils/gateway-support.js';
import { describeQemu } from '../utils/qemu-gate.js';
import { cleanupLeftoversAfterAll, startQsd } from '../utils/qsd.js';
import { describeRedis } from '../utils/redis-gate.js';
import { BACKENDS, type Backend, edgeArgs, eventually, hostArgs, serveInProcess, Stops, streamMessages, type InProcessGateway } from './fleet-support.js';

/** The edge's own subscriber connection (real ioredis on the real server). */
const subscriberOf = (edge: InProcessGateway): RedisClient => (edge.gateway.core.feed as unknown as { subscriber: RedisClient }).subscriber;

const lastOffset = (c: TestClient, vm: string): number => (streamMessages(c, vm).at(-1)?.offset as number | undefined) ?? 0;

describeRedis('fleet: an edge that missed notices', () => {
  describeQemu('real qemu-storage-daemon', () => {
    describe.each(BACKENDS)('on %s', (_name, startBackend) => {
      cleanupLeftoversAfterAll();
      let redis: Backend | undefined;
      const stops = new Stops();
      afterEach(() => stops.run());
      afterAll(async () => redis?.dispose());

      /** One host (vm1, heartbeat every second), one edge, a client on the host, and Redis read directly. */
      async function lab(hostConfig: Record<string, unknown> = {}) {
        redis ??= await startBackend();
        const prefix = `r${Math.random().toString(36).slice(2, 8)}`;
        const qsd = await startQsd({ monitors: ['gw'] });
        stops.add(() => qsd.dispose());
        const host = await serveInProcess(hostArgs(redis.url, 'host1', { vm1: qsd.path('gw') }), prefix, { leaseTtlMs: 3000 }, hostConfig);
        stops.add(() => host.stop());
        const edge = await serveInProcess(edgeArgs(redis.url), prefix);
        stops.add(() => edge.stop());
        const direct = connectRedis(parseRedisUrl(redis.url));
        direct.on('error', () => undefined);
        await direct.connect();
        stops.add(async () => direct.disconnect());
        const store = new FleetStore(direct, prefix);
        const keys = new FleetKeys(prefix);
        const h = await stops.client(host.gateway.wsUrl);
        h.send({ type: 'subscribe', id: 's', sub: 'h', filter: { vms: ['vm1'] } });
        const synced = await h.next((m) => m.type === 'synced');
        await eventually(() => (edge.gateway.core.feed as EdgeFeed).position('vm1').offset >= (synced.offset as number), 20_000, 'the edge at the host head');
        return { qsd, host, edge, store, keys, h, synced, direct };
      }

      it("a resume on an edge deaf to every notice is answered from Redis's head: all it missed replayed, nothing after synced", async () => {
        const { qsd, edge, store, keys, h, synced } = await lab();
        // Deaf to events and heartbeats alike: only the resume itself can learn Redis's head.
        await subscriberOf(edge).unsubscribe(...keys.notifyChannels());
        await startMirror(qsd, qsd, { jobId: 'm1', speed: 64 * MiB, dataMiB: 2 });
        await h.next((m) => m.type === 'event' && m.job.id === 'm1' && m.transition.to === 'ready', 60_000);
        const hostLast = lastOffset(h, 'vm1');
        await eventually(async () => (await store.heads(['vm1'])).get('vm1')!.head >= hostLast, 20_000, "Redis's head at the host's");
        expect((edge.gateway.core.feed as EdgeFeed).position('vm1').offset).toBe(synced.offset); // it heard nothing

        const b = await stops.client(edge.gateway.wsUrl);
        b.send({ type: 'subscribe', id: 's', sub: 'b', filter: { vms: ['vm1'] }, since: { vm1: { epoch: synced.epoch, offset: synced.offset } } });
        const resumed = await b.next((m) => m.type === 'subscribed');
        expect(resumed.streams.vm1.mode).toBe('recovered');
        expect(resumed.streams.vm1.offset).toBeGreaterThanOrEqual(hostLast);
        const bSynced = await b.next((m) => m.type === 'synced');
        const replayed = streamMessages(b, 'vm1');
        expect(replayed.map((m) => m.offset)).toEqual(replayed.map((_, i) => (synced.offset as number) + i + 1));
        expect(replayed.at(-1)?.offset).toBe(bSynced.offset);
        // The same events the host's own client got.
        const fromHost = streamMessages(h, 'vm1').filter((m) => (m.offset as number) <= hostLast);
        expect(replayed.slice(0, fromHost.length).map(strip)).toEqual(fromHost.map(strip));
        // (c) Nothing at or below synced's offset after it, even once the edge hears again.
        await subscriberOf(edge).subscribe(...keys.notifyChannels());
        h.send({ type: 'command', id: 'c', vm: 'vm1', job: 'm1', action: 'complete', when: 'ready', await: 'concluded', timeoutMs: 60_000 });
        await b.until((all) => all.some((m) => m.type === 'event' && m.job.state === 'concluded'), 60_000);
        const after = b.messages.slice(b.messages.indexOf(bSynced) + 1).filter((m) => m.type === 'event' || m.type === 'vm');
        expect(after.every((m) => (m.offset as number) > (bSynced.offset as number))).toBe(true);
        const all = streamMessages(b, 'vm1').map((m) => m.offset);
        expect(all).toEqual(all.map((_, i) => (synced.offset as number) + i + 1));
        expect(b.invalid).toEqual([]);
      });

      it("a quiet VM's missed events reach the edge's live subscribers by the host's heartbeats, also when the heartbeats were missed", async () => {
        const { qsd, edge, keys, h, synced, direct } = await lab();
        expect(keys.notifyChannel('vm1')).not.toBe(keys.notifyChannel('host1')); // the heartbeat gets through
        // The host's heartbeats, heard by the test itself: `beats(n)` waits for n more, returns the last sequence number.
        const listener = direct.duplicate();
        listener.on('error', () => undefined);
        stops.add(async () => listener.disconnect());
        const seqs: number[] = [];
        listener.on('message', (_channel: string, message: string) => {
          if (message.startsWith('h\nhost1\n')) seqs.push(Number(message.split('\n')[4]));
        });
        await listener.connect();
        await listener.subscribe(keys.notifyChannel('host1'));
        const beats = async (n: number): Promise<number> => {
          const target = seqs.length + n;
          await eventually(() => seqs.length >= target, 20_000, `${n} heartbeats`);
          return seqs.at(-1)!;
        };
        const b = await stops.client(edge.gateway.wsUrl);
        b.send({ type: 'subscribe', id: 's', sub: 'b', filter: { vms: ['vm1'] } });
        const bSynced = await b.next((m) => m.type === 'synced');
        expect(bSynced.offset).toBe(synced.offset);

        // Deaf to vm1's notices; the mirror reaches ready and stays there (no further event).
        await subscriberOf(edge).unsubscribe(keys.notifyChannel('vm1'));
        await startMirror(qsd, qsd, { jobId: 'm2', speed: 64 * MiB, dataMiB: 2 });
        await h.next((m) => m.type === 'event' && m.job.id === 'm2' && m.transition.to === 'ready', 60_000);
        await b.until((all) => all.some((m) => m.type === 'event' && m.job.id === 'm2' && m.transition.to === 'ready'), 30_000);

        // Deaf to everything, heartbeats too, while the job ends; then hearing again, with vm1 quiet.
        await subscriberOf(edge).unsubscribe(...keys.notifyChannels());
        h.send({ type: 'command', id: 'c', vm: 'vm1', job: 'm2', action: 'complete', when: 'ready', await: 'concluded', timeoutMs: 60_000 });
        await h.next((m) => m.type === 'event' && m.job.id === 'm2' && m.job.state === 'concluded', 60_000);
        const concludedAt = lastOffset(h, 'vm1');
        const missedUpTo = await beats(2); // the heartbeats that list the conclusion go by, unheard
        expect(lastOffset(b, 'vm1')).toBeLessThan(concludedAt);
        await subscriberOf(edge).subscribe(...keys.notifyChannels());
        expect(await beats(1)).toBeGreaterThan(missedUpTo);
        await b.until((all) => all.some((m) => m.type === 'event' && m.job.id === 'm2' && m.job.state === 'concluded'), 30_000);
        const offsets = streamMessages(b, 'vm1').map((m) => m.offset);
        expect(offsets).toEqual(offsets.map((_, i) => (bSynced.offset as number) + i + 1));
        expect(offsets.at(-1)).toBeGreaterThanOrEqual(concludedAt);
        expect((edge.gateway.core.feed as EdgeFeed).beats.counters.missed).toBeGreaterThan(0);
      });

      it('a quiet VM whose expired job was pruned from Redis while the edge missed the notice: the edge drops the job by the next heartbeats', async () => {
        const { qsd, edge, store, keys, h } = await lab({ jobs: { retentionMs: 1000 } });
        const feed = edge.gateway.core.feed as EdgeFeed;
        // Deaf to vm1's notices only: the heartbeats still come, and bring the events (see above).
        await subscriberOf(edge).unsubscribe(keys.notifyChannel('vm1'));
        await startMirror(qsd, qsd, { jobId: 'm3', speed: 64 * MiB, dataMiB: 2 });
        await h.next((m) => m.type === 'event' && m.job.id === 'm3' && m.transition.to === 'ready', 60_000);
        await eventually(() => feed.job('vm1', 'm3') !== undefined, 30_000, 'm3 at the edge, through the heartbeats');
        await qsd.execute('job-cancel', { id: 'm3' }); // ends, auto-dismissed: the host forgets it after 1 s
        await h.next((m) => m.type === 'event' && m.job.id === 'm3' && m.job.state === 'concluded', 60_000);
        await eventually(async () => !(await store.loadVm('vm1'))?.jobs.has('m3'), 30_000, 'm3 pruned from Redis');
        const head = (await store.heads(['vm1'])).get('vm1')!.head;
        // No event follows (vm1 is quiet): only the heartbeat can tell the edge (which has the conclusion from the beats).
        await eventually(() => feed.position('vm1').offset === head, 20_000, "the edge at Redis's head");
        await eventually(() => feed.job('vm1', 'm3') === undefined, 20_000, 'm3 gone from the edge');
        expect(feed.snapshotOf(['vm1'])[0]!.jobs.map((j) => j.id)).not.toContain('m3');
        expect((await store.heads(['vm1'])).get('vm1')!.head).toBe(head);
        expect(feed.beats.counters.changed).toBeGreaterThan(0);
      });
    });
  });
});

/** A message as the stream defines it, without the subscription's own fields. */
function strip(m: Msg): unknown {
  const { sub: _sub, prev: _prev, ...rest } = m;
  return rest;
}
