/**
 * The core without a transport: fan-out yields to the event loop between chunks, keeps per-stream
 * order, and the snapshot/tail cut holds for subscriptions added mid-fan-out and for a history
 * that answers asynchronously (the shape a Redis Streams history will have).
 */
import { describe, expect, it } from 'vitest';
import { ANONYMOUS } from '../../../src/gateway/auth.js';
import { GatewayCore, type ConnectionHooks, type GatewaySocket } from '../../../src/gateway/core.js';
import { MemoryStreamHistory } from '../../../src/gateway/history/memory.js';
import type { HistoryRead, StreamHistory, StreamPosition } from '../../../src/gateway/history/types.js';
import type { FeedSink, ProgressEvent, StreamEvent, StreamFeed } from '../../../src/gateway/stream/feed.js';
import { StreamHub } from '../../../src/gateway/stream/hub.js';
import type { VmSnapshot } from '../../../src/jobs/types.js';
import { assertChain, type Msg } from '../../utils/gateway-support.js';
import { useCores } from '../../utils/core-harness.js';
import { FakeJobSource } from '../../utils/fake-source.js';

class MemorySocket implements GatewaySocket {
  readonly messages: Msg[] = [];
  bufferedAmount = 0;
  closed: number | undefined;
  send(text: string): void {
    this.messages.push(JSON.parse(text) as Msg);
  }
  close(code: number): void {
    this.closed = code;
  }
  events(): Msg[] {
    return this.messages.filter((m) => m.type === 'event');
  }
}

const makeCore = useCores();

function connect(core: GatewayCore): { socket: MemorySocket; hooks: ConnectionHooks; subscribe(body: Msg): void } {
  const socket = new MemorySocket();
  const hooks = core.opened(socket, { principal: ANONYMOUS });
  return { socket, hooks, subscribe: (body) => hooks.message(JSON.stringify({ type: 'subscribe', id: 'r', ...body })) };
}

/** A history whose read answers what the store held when asked, but resolves only when the test calls `release`. */
class HeldReads {
  readonly memory = new MemoryStreamHistory<StreamEvent>();
  /** Resolves the read in wait; undefined until a read was asked. */
  release: (() => void) | undefined;
  readonly history: StreamHistory<StreamEvent> = {
    open: async (vm) => this.memory.open(vm),
    append: (vm, entry) => this.memory.append(vm, entry),
    read: (vm, since: StreamPosition) =>
      new Promise<HistoryRead<StreamEvent>>((resolve) => {
        const answer = this.memory.read(vm, since);
        this.release = () => resolve(answer);
      }),
    drop: (vm) => this.memory.drop(vm),
  };
}

describe('GatewayCore fan-out', () => {
  it('yields between chunks, keeps order, and never double-sends to a subscriber added mid-fan-out', async () => {
    const source = new FakeJobSource(['vm1']);
    const core = await makeCore({ source, fanoutChunk: 100 });
    const clients = Array.from({ length: 1000 }, () => connect(core));
    for (const c of clients) c.subscribe({ sub: 'a' });

    source.transition('vm1', 'j0', 'running');
    source.transition('vm1', 'j0', 'ready');
    // The pass starts at the end of this task (a microtask): its first slice runs then, the rest waits for the event loop.
    await Promise.resolve();
    const delivered = clients.filter((c) => c.socket.events().length > 0).length;
    expect(delivered).toBeGreaterThan(0);
    expect(delivered).toBeLessThan(clients.length);

    // Joins while offsets 1-2 are still being fanned out: its snapshot already covers them.
    const late = connect(core);
    late.subscribe({ sub: 'late' });
    expect(late.socket.messages.find((m) => m.type === 'synced')).toMatchObject({ offset: 2 });
    source.transition('vm1', 'j0', 'concluded', { outcome: 'completed' });

    await expect.poll(() => clients.every((c) => c.socket.events().length === 3)).toBe(true);
    for (const c of clients) {
      expect(c.socket.events().map((m) => m.offset)).toEqual([1, 2, 3]);
      assertChain(c.socket.messages, 'vm1', 0);
    }
    await expect.poll(() => late.socket.events().map((m) => m.offset)).toEqual([3]);
    expect(late.socket.messages.find((m) => m.type === 'state')).toMatchObject({ offset: 2, job: { state: 'ready' } });
  });

  it('cuts correctly with an asynchronous history: events during the read are neither lost nor repeated', async () => {
    const slow = new HeldReads();
    const source = new FakeJobSource(['vm1']);
    const core = await makeCore({ source, history: slow.history });
    source.transition('vm1', 'j0', 'running'); // 1
    source.transition('vm1', 'j0', 'paused'); // 2
    const { epoch } = slow.memory.open('vm1');

    const c = connect(core);
    c.subscribe({ sub: 'a', since: { vm1: { epoch, offset: 1 } } });
    await expect.poll(() => slow.release !== undefined).toBe(true);
    source.transition('vm1', 'j0', 'running'); // 3: after the read was answered, before it resolved
    expect(c.socket.events()).toEqual([]);
    slow.release!();
    await expect.poll(() => c.socket.messages.some((m) => m.type === 'synced')).toBe(true);
    source.transition('vm1', 'j0', 'ready'); // 4
    await expect.poll(() => c.socket.events().map((m) => m.offset)).toEqual([2, 3, 4]);
    expect(c.socket.messages.find((m) => m.type === 'subscribed')!.streams.vm1).toMatchObject({ mode: 'recovered' });
    assertChain(c.socket.messages, 'vm1', 1);
  });

  it('resumes without a hole when the history read ends while a fan-out pass still holds events for the stream', async () => {
    const slow = new HeldReads();
    const source = new FakeJobSource(['vm1']);
    // One delivery per slice: a pass visits one subscription, then waits for the event loop.
    const core = await makeCore({ source, history: slow.history, fanoutChunk: 1 });
    const first = connect(core);
    first.subscribe({ sub: 'f' });
    source.transition('vm1', 'j0', 'running'); // 1
    source.transition('vm1', 'j0', 'paused'); // 2
    await expect.poll(() => first.socket.events().length).toBe(2);
    await expect.poll(() => core.fanningOut).toBe(false); // that pass is over
    const { epoch } = slow.memory.open('vm1');

    const c = connect(core);
    c.subscribe({ sub: 'a', since: { vm1: { epoch, offset: 1 } } });
    await expect.poll(() => slow.release !== undefined).toBe(true);
    source.transition('vm1', 'j0', 'running'); // 3: its pass reaches `first`, then waits for the event loop before c
    slow.release!(); // the cut runs before the pass goes on: 3 is numbered and queued, not yet held by c
    await expect.poll(() => c.socket.events().map((m) => m.offset)).toEqual([2, 3]);
    expect(c.socket.messages.find((m) => m.type === 'subscribed')!.streams.vm1).toMatchObject({ mode: 'recovered', offset: 3 });
    source.transition('vm1', 'j0', 'ready'); // 4
    await expect.poll(() => c.socket.events().map((m) => m.offset)).toEqual([2, 3, 4]);
    assertChain(c.socket.messages, 'vm1', 1);
  });

  it('serves a feed whose events were numbered elsewhere, with an asynchronous history, and resets a stream', async () => {
    // The host side: a local source numbered by a StreamHub. The edge side: a feed that only
    // replays what the host numbered, the shape of a fleet edge reading Redis.
    const source = new FakeJobSource(['vm1']);
    const hostHistory = new MemoryStreamHistory<StreamEvent>();
    const replica = new ReplicaFeed(source, hostHistory);
    const host = new StreamHub(source, hostHistory);
    await host.start(replica);
    const core = await makeCore({ feed: replica });

    source.transition('vm1', 'j0', 'running'); // 1
    source.transition('vm1', 'j0', 'paused'); // 2
    const { epoch } = hostHistory.open('vm1');
    const a = connect(core);
    a.subscribe({ sub: 'a' });
    expect(a.socket.messages.find((m) => m.type === 'state')).toMatchObject({ offset: 2, job: { state: 'paused' } });
    const b = connect(core);
    b.subscribe({ sub: 'b', since: { vm1: { epoch, offset: 1 } } });
    source.transition('vm1', 'j0', 'running'); // 3: while b's history read is pending
    await expect.poll(() => b.socket.events().map((m) => m.offset)).toEqual([2, 3]);
    expect(b.socket.messages.find((m) => m.type === 'subscribed')!.streams.vm1).toMatchObject({ mode: 'recovered', epoch, offset: 3 });
    assertChain(b.socket.messages, 'vm1', 1);
    await expect.poll(() => a.socket.events().map((m) => m.offset)).toEqual([3]);

    // The stream loses its continuity: its followers must resume, and get a snapshot with a reason.
    replica.resetStream('vm1');
    expect([a.socket.closed, b.socket.closed]).toEqual([4500, 4500]);
    const c = connect(core);
    c.subscribe({ sub: 'c', since: { vm1: { epoch, offset: 3 } } });
    await expect.poll(() => c.socket.messages.find((m) => m.type === 'subscribed')?.streams.vm1).toMatchObject({ mode: 'snapshot', reason: 'unknown_epoch', offset: 0 });
  });

  it('drops what a reset stream still had queued mid-sweep: a subscriber of the new epoch never gets it', async () => {
    const source = new FakeJobSource(['vm1']);
    const hostHistory = new MemoryStreamHistory<StreamEvent>();
    const replica = new ReplicaFeed(source, hostHistory);
    await new StreamHub(source, hostHistory).start(replica);
    const core = await makeCore({ feed: replica, fanoutChunk: 10, fanoutSliceMs: 60_000 });
    const followers = Array.from({ length: 50 }, () => connect(core));
    for (const f of followers) f.subscribe({ sub: 'a' });

    source.transition('vm1', 'j0', 'running'); // offset 1: the first slice reaches 10 followers, the sweep goes on later
    await Promise.resolve(); // the pass starts at the end of the task that queued it
    expect(followers.filter((f) => f.socket.events().length > 0)).toHaveLength(10);
    replica.resetStream('vm1');
    expect(followers.every((f) => f.socket.closed === 4500)).toBe(true);
    const fresh = connect(core);
    fresh.subscribe({ sub: 'fresh' });
    expect(fresh.socket.messages.find((m) => m.type === 'synced')).toMatchObject({ offset: 0 });

    expect(core.fanningOut).toBe(true);
    await expect.poll(() => core.fanningOut).toBe(false); // the sweep's later slices have run
    expect(fresh.socket.events()).toEqual([]);
  });
});

/** A feed that relays events the host's StreamHub numbered; state and history are the host's, read asynchronously. */
class ReplicaFeed implements StreamFeed, FeedSink {
  private sink: FeedSink | undefined;
  private epoch: string | undefined;
  private head = 0;
  private jobs: VmSnapshot[] = [];

  constructor(
    private readonly source: FakeJobSource,
    private readonly history: MemoryStreamHistory<StreamEvent>,
  ) {}

  async start(sink: FeedSink): Promise<void> {
    this.sink = sink;
    this.epoch = this.history.open('vm1').epoch;
  }
  stop(): void {
    this.sink = undefined;
  }
  vms(): string[] {
    return ['vm1'];
  }
  position(): StreamPosition {
    return { epoch: this.epoch!, offset: this.head };
  }
  snapshot(): VmSnapshot[] {
    return this.jobs;
  }
  read(vm: string, since: StreamPosition): Promise<HistoryRead<StreamEvent>> {
    const answer: HistoryRead<StreamEvent> = since.epoch === this.epoch ? this.history.read(vm, since) : { reset: 'unknown_epoch' };
    return new Promise((resolve) => setTimeout(() => resolve(answer), 20));
  }

  // FeedSink of the host: apply, then deliver in the same tick (the feed contract).
  event(event: StreamEvent): void {
    this.head = event.offset;
    this.jobs = structuredClone(this.source.snapshot());
    this.sink?.event(event);
  }
  progress(event: ProgressEvent): void {
    this.sink?.progress(event);
  }
  reset(vm: string): void {
    this.sink?.reset(vm);
  }

  resetStream(vm: string): void {
    this.epoch = `reset-${this.epoch}`;
    this.head = 0;
    this.sink?.reset(vm);
  }
}

