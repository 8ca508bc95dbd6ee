/**
 * A host's write path to Redis under sustained events, against a real redis-server behind a TCP
 * proxy (for slow replies on cue): the lease holds while appends never pause, Redis's copy of a
 * stream restarts even while events keep coming, and the record of offsets served beyond Redis
 * (UnackedBook) is never cleared while some are. The source is the test's own numbering: no job
 * is involved, only the publisher, the store and Redis.
 */
import { copyFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { connectOrFail, connectRedis, parseRedisUrl, type RedisClient } from '../../src/fleet/connect.js';
import { HostPublisher, type HostPublisherOptions } from '../../src/fleet/publisher.js';
import { FleetStore } from '../../src/fleet/store.js';
import { UnackedBook } from '../../src/fleet/unacked.js';
import type { StreamPosition } from '../../src/gateway/history/types.js';
import { streamEvent } from '../../src/gateway/stream/events.js';
import { startRedis, type RedisServer } from '../../src/lab/redis.js';
import { makeJob } from '../utils/fake-source.js';
import { LogRecorder } from '../utils/log-recorder.js';
import { cleanupLeftoversAfterAll } from '../utils/qsd.js';
import { describeRedis } from '../utils/redis-gate.js';
import { eventually } from './fleet-support.js';
import { startTcpProxy, type TcpProxy } from './tcp-proxy.js';

/** A host's local streams as the publisher sees them: positions it numbers, a snapshot per VM. */
class LocalStreams {
  readonly positions = new Map<string, StreamPosition>();
  /** Job ids the host still lists (its snapshot); one that leaves it has expired. */
  readonly listed = new Set<string>();
  /** Called whenever the publisher asks for a position (the test looks at the record then). */
  onPosition: ((vm: string) => void) | undefined;

  constructor(private readonly publisher: () => HostPublisher) {}

  options(): Pick<HostPublisherOptions, 'snapshotOf' | 'positionOf'> {
    return {
      snapshotOf: (vm) => ({ vm, status: 'connected', jobs: [...this.listed].map((id) => makeJob({ vm, id })) }),
      positionOf: (vm) => {
        this.onPosition?.(vm);
        const p = this.positions.get(vm);
        return p && { ...p };
      },
    };
  }

  async open(vm: string): Promise<void> {
    this.positions.set(vm, await this.publisher().open(vm));
  }

  /** The next event of `vm`: numbered, appended locally (here: nowhere), handed to the publisher. */
  emit(vm: string): void {
    const p = this.positions.get(vm)!;
    p.offset++;
    this.publisher().enqueue(vm, streamEvent({ kind: 'vm', vm, status: 'connected', at: Date.now() }, p.epoch, p.offset));
  }

  /** A transition of job `id` (listed from now on), numbered and handed to the publisher. */
  emitJob(vm: string, id: string): void {
    const p = this.positions.get(vm)!;
    p.offset++;
    this.listed.add(id);
    const job = makeJob({ vm, id, state: 'running' });
    this.publisher().enqueue(vm, streamEvent({ kind: 'transition', vm, job, from: null, to: { state: 'running' }, source: job.source, at: Date.now() } as never, p.epoch, p.offset));
  }
}

describeRedis('fleet publisher under sustained load (real redis-server)', () => {
  cleanupLeftoversAfterAll();
  let redis: RedisServer;
  let direct: RedisClient;
  const cleanups: (() => Promise<unknown> | void)[] = [];
  beforeAll(async () => {
    redis = await startRedis();
    const target = parseRedisUrl(redis.url);
    direct = connectRedis(target);
    direct.on('error', () => undefined);
    await connectOrFail(direct, target);
  });
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });
  afterAll(async () => {
    direct?.disconnect();
    await redis?.dispose();
  });

  async function setup(prefix: string, options: Partial<HostPublisherOptions> = {}): Promise<{ publisher: HostPublisher; store: FleetStore; local: LocalStreams; proxy: TcpProxy; log: LogRecorder }> {
    const proxy = await startTcpProxy(redis.port);
    cleanups.push(() => proxy.close());
    const target = parseRedisUrl(proxy.url);
    const client = connectRedis(target);
    client.on('error', () => undefined);
    await connectOrFail(client, target);
    cleanups.push(() => client.disconnect());
    const store = new FleetStore(client, prefix);
    const log = new LogRecorder();
    let publisher!: HostPublisher;
    const local = new LocalStreams(() => publisher);
    publisher = new HostPublisher(store, { host: 'h1', logger: log, ...local.options(), ...options });
    cleanups.push(() => publisher.close({ release: false }));
    return { publisher, store, local, proxy, log };
  }

  const head = async (store: FleetStore, vm: string): Promise<number> => Number(await direct.hget(store.keys.vm(vm).meta, 'head'));

  it('a lease holds while appends never pause (slow Redis, steady events): APPEND in flight at every renewal tick', async () => {
    const ttlMs = 1000;
    const { publisher, store, local, proxy, log } = await setup('load-lease', { leaseTtlMs: ttlMs });
    await local.open('vm1');
    publisher.start();
    const lease = await direct.get(store.keys.vm('vm1').lease);
    expect(lease).toMatch(/^h1\|/);
    // Every reply 60 ms late, an event every 10 ms: each append's reply finds the next events waiting.
    proxy.delayMs = 30;
    const ticker = setInterval(() => local.emit('vm1'), 10);
    cleanups.push(() => clearInterval(ticker));
    const seen = new Set<string | null>();
    const until = Date.now() + 4 * ttlMs;
    while (Date.now() < until) {
      seen.add(await direct.get(store.keys.vm('vm1').lease));
      await new Promise((r) => setTimeout(r, 50));
    }
    clearInterval(ticker);
    // One lease throughout: never lapsed, never claimed again.
    expect([...seen]).toEqual([lease]);
    expect(store.stats.renewals.lost).toBe(0);
    expect(log.entries.filter((e) => /lease on vm1/.test(e.message ?? '')).map((e) => e.message)).toEqual([]);
    expect(store.stats.renewals.ok).toBeGreaterThanOrEqual(3);
    proxy.delayMs = 0;
    await eventually(async () => (await head(store, 'vm1')) === local.positions.get('vm1')!.offset, 20_000, 'Redis to catch up');
  });

  it('expired jobs leave Redis under steady events (an append in flight at every tick), on a budget per tick', async () => {
    const ttlMs = 1000;
    const { publisher, store, local, proxy } = await setup('load-prune', { leaseTtlMs: ttlMs });
    await local.open('vm1');
    publisher.start();
    local.emitJob('vm1', 'old');
    for (let i = 0; i < 150; i++) local.emitJob('vm1', `done-${i}`);
    local.emitJob('vm1', 'busy');
    const jobsKey = store.keys.vm('vm1').jobs;
    await eventually(async () => (await direct.hlen(jobsKey)) === 152, 20_000, 'the jobs in Redis');
    // Slow replies and an event every 10 ms (of a job still listed): the VM is never quiet from here.
    proxy.delayMs = 30;
    const ticker = setInterval(() => local.emitJob('vm1', 'busy'), 10);
    cleanups.push(() => clearInterval(ticker));
    // All but 'busy' expire from the host's snapshot.
    for (const id of [...local.listed]) if (id !== 'busy') local.listed.delete(id);
    const pruned: number[] = [];
    const prune = store.prune.bind(store);
    store.prune = (vm, lease, ids) => (pruned.push(ids.length), prune(vm, lease, ids));
    await eventually(async () => (await direct.hkeys(jobsKey)).join() === 'busy', 20_000, 'the expired jobs pruned from Redis under load');
    // On a budget: at most 100 ids per call (PRUNE_IDS_PER_CALL), the rest at the VM's next turn.
    expect(pruned).toEqual([100, 51]);
    clearInterval(ticker);
    proxy.delayMs = 0;
    await eventually(async () => (await head(store, 'vm1')) === local.positions.get('vm1')!.offset, 20_000, 'Redis to catch up');
    expect(await direct.hkeys(jobsKey)).toEqual(['busy']);
  });

  it("Redis's copy of a stream restarts although its events never stop (each restart's round trip sees the stream move on)", async () => {
    const { publisher, store, local, proxy } = await setup('load-reopen');
    await local.open('vm1');
    publisher.start();
    const ticker = setInterval(() => local.emit('vm1'), 2);
    cleanups.push(() => clearInterval(ticker));
    await eventually(async () => (await head(store, 'vm1')) >= 20, 20_000, 'events in Redis');
    // Slow replies, then Redis loses the stream: the host must restart Redis's copy while it keeps numbering events.
    proxy.delayMs = 20;
    await direct.del(store.keys.vm('vm1').meta, store.keys.vm('vm1').lease, store.keys.vm('vm1').stream);
    await eventually(() => publisher.status().resyncing.includes('vm1'), 20_000, 'the loss detected');
    await eventually(() => publisher.owns('vm1'), 10_000, "Redis's copy restarted under sustained events");
    // And it keeps up from there: what the host numbers reaches Redis, in order, without another restart.
    const after = local.positions.get('vm1')!.offset;
    await eventually(async () => (await head(store, 'vm1')) > after, 10_000, 'events after the restart in Redis');
    expect(publisher.status().resyncing).toEqual([]);
    clearInterval(ticker);
    proxy.delayMs = 0;
    await eventually(async () => (await head(store, 'vm1')) === local.positions.get('vm1')!.offset, 20_000, 'Redis to catch up');
    const ids = (await direct.xrange(store.keys.vm('vm1').stream, '-', '+')).map(([id]) => Number(id.slice(2)));
    expect(ids).toEqual(ids.map((_, i) => ids[0]! + i));
  });

  it('an overflow while an append is in flight: the record still says the host served offsets Redis lacks, until Redis has them', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'bjf-unacked-'));
    const book = new UnackedBook(join(dir, 'book.json'));
    cleanups.push(() => book.close());
    const { publisher, store, local } = await setup('load-book', { unacked: book, maxBuffered: 2, batch: 1 });
    await local.open('vm1');
    const epoch = local.positions.get('vm1')!.epoch;
    // Offset 1 goes to Redis (its APPEND is in flight after this turn); 2 and 3 overflow the bound of 2.
    local.emit('vm1');
    await new Promise((r) => setImmediate(r));
    local.emit('vm1');
    local.emit('vm1');
    // The first thing the restart of Redis's copy does is ask for the position: by then offset 1 is acknowledged.
    let checked: { ahead: boolean; restartContinues: boolean } | undefined;
    local.onPosition = () => {
      if (checked) return;
      // What a host killed -9 right now would find at its restart.
      const copy = join(dir, 'killed-now.json');
      copyFileSync(book.file, copy);
      const restarted = new UnackedBook(copy);
      checked = { ahead: book.isAhead('vm1'), restartContinues: !restarted.wasUnacked('vm1', epoch, 1) };
      restarted.close();
    };
    await eventually(() => checked !== undefined, 10_000, 'the restart of the copy');
    expect(checked).toMatchObject({ ahead: true, restartContinues: false });
    // Once Redis's copy restarted at offset 3, the record is cleared.
    await eventually(() => publisher.owns('vm1') && !book.isAhead('vm1'), 10_000, 'the copy restarted');
    expect(await head(store, 'vm1')).toBe(3);
  });
});
