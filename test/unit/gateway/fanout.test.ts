/**
 * Fan-out batching (issue 14): events queued together leave in one corked write per connection, each
 * frame is encoded once per group of subscriptions that get identical bytes, and sent bytes are
 * counted from the shared frame. The guarantees stay as PROTOCOL.md states them: per-stream order,
 * `prev` chains, nothing lost, slow consumers closed with 4508.
 */
import { performance } from 'node:perf_hooks';
import { describe, expect, it } from 'vitest';
import { ANONYMOUS, type Principal } from '../../../src/gateway/auth.js';
import { GatewayCore, type ConnectionHooks, type GatewaySocket } from '../../../src/gateway/core.js';
import { CloseCode } from '../../../src/protocol/codes.js';
import { assertChain, type Msg } from '../../utils/gateway-support.js';
import { useCores } from '../../utils/core-harness.js';
import { FakeJobSource } from '../../utils/fake-source.js';

/** A socket that records each write: a frame sent uncorked is a write of one, corked frames leave together at the last uncork. */
class CorkSocket implements GatewaySocket {
  readonly writes: Array<Array<string | Buffer>> = [];
  readonly raw: Array<string | Buffer> = [];
  bufferedAmount = 0;
  grow = 0;
  corked = 0;
  closed: number | undefined;
  private held: Array<string | Buffer> = [];
  /** CPU each send burns, to make deliveries slow. */
  spinMs = 0;
  send(data: string | Buffer): void {
    for (const until = performance.now() + this.spinMs; performance.now() < until; );
    this.raw.push(data);
    this.bufferedAmount += this.grow;
    if (this.corked > 0) this.held.push(data);
    else this.writes.push([data]);
  }
  cork(): void {
    this.corked++;
  }
  uncork(): void {
    if (--this.corked === 0 && this.held.length > 0) this.writes.push(this.held.splice(0));
  }
  close(code: number): void {
    this.closed = code;
  }
  get messages(): Msg[] {
    return this.raw.map((data) => JSON.parse(data.toString()) as Msg);
  }
  events(): Msg[] {
    return this.messages.filter((m) => m.type === 'event');
  }
}

const makeCore = useCores();

function connect(core: GatewayCore, body: Msg, principal: Principal = ANONYMOUS): { socket: CorkSocket; hooks: ConnectionHooks } {
  const socket = new CorkSocket();
  const hooks = core.opened(socket, { principal });
  hooks.message(JSON.stringify({ type: 'subscribe', id: 'r', ...body }));
  return { socket, hooks };
}

describe('fan-out batching', () => {
  it('sends events queued together to each connection in one corked write, in order, with intact prev chains', async () => {
    const source = new FakeJobSource(['vm1']);
    const core = await makeCore({ source, fanoutChunk: 10_000, fanoutSliceMs: 60_000 });
    const clients = Array.from({ length: 300 }, () => connect(core, { sub: 'a' }));
    const before = clients.map((c) => c.socket.writes.length);

    // Queued in one task (as the transitions of one QMP read are), they go as one pass: one write
    // each. A job turning ready goes out at once, with what was queued before it.
    for (const state of ['running', 'paused', 'running', 'ready'] as const) source.transition('vm1', 'j0', state);
    expect(clients.every((c) => c.socket.events().length === 4)).toBe(true);
    for (const state of ['paused', 'ready', 'concluded'] as const) source.transition('vm1', 'j0', state);
    expect(clients.every((c) => c.socket.events().length === 6)).toBe(true);

    await expect.poll(() => clients.every((c) => c.socket.events().length === 7)).toBe(true);
    clients.forEach((c, i) => {
      expect(c.socket.events().map((m) => m.offset)).toEqual([1, 2, 3, 4, 5, 6, 7]);
      assertChain(c.socket.messages, 'vm1', 0);
      const writes = c.socket.writes.slice(before[i]);
      expect(writes.map((w) => w.length)).toEqual([4, 2, 1]);
      expect(c.socket.corked).toBe(0);
    });
  });

  it('carries stream events queued during a pass early, but never past a progress update queued before them', async () => {
    const source = new FakeJobSource(['vm1']);
    const core = await makeCore({ source, fanoutChunk: 10, fanoutSliceMs: 60_000 });
    const clients = Array.from({ length: 30 }, () => connect(core, { sub: 'a', progress: { intervalMs: 0 } }));
    const watcher = connect(core, { sub: 'p', progress: { intervalMs: 100 } });
    source.transition('vm1', 'j0', 'running');
    await Promise.resolve(); // the pump's first slice runs (10 visits) and yields
    expect(clients.filter((c) => c.socket.events().length === 1)).toHaveLength(10);
    source.transition('vm1', 'j0', 'paused'); // carried early to the 20 + 1 not visited yet
    source.progress('vm1', 'j0', 100);
    source.transition('vm1', 'j0', 'running'); // behind the progress: waits for its own pass

    await expect.poll(() => [...clients, watcher].every((c) => c.socket.events().length === 3)).toBe(true);
    for (const c of [...clients, watcher]) {
      expect(c.socket.events().map((m) => m.offset)).toEqual([1, 2, 3]);
      assertChain(c.socket.messages, 'vm1', 0);
    }
    const order = watcher.socket.messages.filter((m) => m.type === 'event' || m.type === 'progress').map((m) => (m.type === 'progress' ? 'progress' : m.offset));
    expect(order).toEqual([1, 2, 'progress', 3]);
    expect(clients.slice(10).every((c) => c.socket.writes.some((w) => w.length === 2))).toBe(true);
  });

  it('yields to the event loop after the slice time even short of the chunk, and loses nothing', async () => {
    const source = new FakeJobSource(['vm1']);
    const core = await makeCore({ source, fanoutChunk: 1000, fanoutSliceMs: 5 });
    const clients = Array.from({ length: 40 }, () => connect(core, { sub: 'a' }));
    for (const c of clients) c.socket.spinMs = 2; // each delivery costs 2 ms of CPU

    source.transition('vm1', 'j0', 'running');
    source.transition('vm1', 'j0', 'ready');
    await Promise.resolve(); // the pass starts at the end of the task that queued it
    // The first slice stopped after ~5 ms: a few deliveries, far fewer than the chunk allows.
    const reached = clients.filter((c) => c.socket.events().length > 0).length;
    expect(reached).toBeGreaterThan(0);
    expect(reached).toBeLessThanOrEqual(4);

    await expect.poll(() => clients.every((c) => c.socket.events().length === 2), { timeout: 10_000 }).toBe(true);
    for (const c of clients) {
      expect(c.socket.events().map((m) => m.offset)).toEqual([1, 2]);
      assertChain(c.socket.messages, 'vm1', 0);
    }
  });

  it('hands a connection at most 64 queued items per write, all of them in order', async () => {
    const source = new FakeJobSource(['vm1']);
    const core = await makeCore({ source, fanoutChunk: 1, fanoutSliceMs: 60_000 });
    const { socket } = connect(core, { sub: 'a' });
    const before = socket.writes.length;
    for (let i = 0; i < 101; i++) source.transition('vm1', 'j0', i % 2 ? 'paused' : 'running');

    await expect.poll(() => socket.events().length).toBe(101);
    expect(socket.writes.slice(before).map((w) => w.length)).toEqual([64, 37]);
    expect(socket.events().map((m) => m.offset)).toEqual(Array.from({ length: 101 }, (_, i) => i + 1));
    assertChain(socket.messages, 'vm1', 0);
  });

  it('encodes a frame once per group of identical bytes and counts bytes from it', async () => {
    const source = new FakeJobSource(['vm1']);
    const core = await makeCore({ source });
    const same = [connect(core, { sub: 'a' }), connect(core, { sub: 'a' }), connect(core, { sub: 'a' })];
    const otherName = connect(core, { sub: 'b' });
    const onlyJ0 = connect(core, { sub: 'a', filter: { jobs: ['j0'] } });
    const runningOnly = connect(core, { sub: 'a', filter: { states: ['running'] } });
    const all = [...same, otherName, onlyJ0, runningOnly];
    const mark = all.map((c) => c.socket.raw.length);
    const stats = () => ({ ...(core.stats.sentByType.get('event') ?? { messages: 0, bytes: 0 }) });
    const bytesBefore = stats();

    source.transition('vm1', 'j1', 'running'); // 1: onlyJ0 skips it, so its prev differs from here on
    source.transition('vm1', 'j0', 'running'); // 2
    source.transition('vm1', 'j0', 'ready'); // 3: leaves runningOnly's filter (sent flagged leftFilter)
    await expect.poll(() => same.every((c) => c.socket.events().length === 3)).toBe(true);

    const framesOf = (c: (typeof all)[number]) => c.socket.raw.slice(mark[all.indexOf(c)]).filter((d) => d.toString().startsWith('{"type":"event"'));
    const [a, b, c] = same.map(framesOf);
    for (let i = 0; i < 3; i++) {
      expect(Buffer.isBuffer(a![i])).toBe(true);
      expect(b![i]).toBe(a![i]); // the very same Buffer: encoded once
      expect(c![i]).toBe(a![i]);
      expect(framesOf(otherName)[i]).not.toBe(a![i]);
      expect(JSON.parse(framesOf(otherName)[i]!.toString())).toEqual({ ...JSON.parse(a![i]!.toString()), sub: 'b' });
    }
    // Same sub name, other prev: its own bytes, and the prev it must carry.
    const j0 = framesOf(onlyJ0).map((d) => JSON.parse(d.toString()) as Msg);
    expect(j0.map((m) => [m.offset, m.prev])).toEqual([[2, 0], [3, 2]]);
    expect(framesOf(onlyJ0)[0]).not.toBe(a![1]);
    expect(framesOf(onlyJ0)[1]).toBe(a![2]); // prevs agree again: the same bytes, shared
    const left = framesOf(runningOnly).map((d) => JSON.parse(d.toString()) as Msg);
    expect(left.map((m) => [m.offset, m.prev, m.leftFilter])).toEqual([[1, 0, undefined], [2, 1, undefined], [3, 2, true]]);
    for (const client of all) assertChain(client.socket.messages, 'vm1', 0);

    const sent = all.flatMap(framesOf);
    const after = stats();
    expect(after.messages - bytesBefore.messages).toBe(sent.length);
    expect(after.bytes - bytesBefore.bytes).toBe(sent.reduce((sum, d) => sum + Buffer.byteLength(d), 0));
  });

  it('still closes a slow consumer with 4508 in the middle of a corked batch, and leaves it uncorked', async () => {
    const source = new FakeJobSource(['vm1']);
    const core = await makeCore({ source, backpressure: { softBytes: 1000, hardBytes: 2000 } });
    const slow = connect(core, { sub: 'a' });
    const fast = connect(core, { sub: 'a' });
    slow.socket.grow = 900; // every frame adds 900 unread bytes
    source.transition('vm1', 'j0', 'running');
    await expect.poll(() => fast.socket.events().length).toBe(1); // a batch of its own: 900 bytes unread
    for (const state of ['paused', 'running', 'ready', 'concluded'] as const) source.transition('vm1', 'j0', state);
    await expect.poll(() => fast.socket.events().length).toBe(5);
    expect(slow.socket.closed).toBe(CloseCode.SlowConsumer);
    expect(slow.socket.corked).toBe(0);
    // What it got before the close is a gapless prefix.
    const got = slow.socket.events().map((m) => m.offset);
    expect(got.length).toBeLessThan(5);
    expect(got).toEqual([1, 2, 3, 4].slice(0, got.length));
    assertChain(fast.socket.messages, 'vm1', 0);
  });
});

describe('fan-out by VM (issue 12: a fleet edge with thousands of narrow subscribers)', () => {
  it('hands an event only to the subscriptions that may cover its VM: one follower among 1,000 gets it without the pump yielding', async () => {
    const vms = Array.from({ length: 1000 }, (_, i) => `vm${i}`);
    const source = new FakeJobSource(vms);
    // A slice of 10 visits: visiting all 1,000 subscriptions would take 100 slices, each after a setImmediate.
    const core = await makeCore({ source, fanoutChunk: 10 });
    const clients = vms.map((vm) => connect(core, { sub: 's', filter: { vms: [vm] } }));
    source.transition('vm999', 'j0', 'running');
    await Promise.resolve(); // the pass runs at the end of this task, before any turn of the event loop
    // The one follower was the pass's first (and only) visit: no slice yielded.
    expect(clients[999]!.socket.events().map((m) => [m.vm, m.offset, m.prev])).toEqual([['vm999', 1, 0]]);
    expect(clients.slice(0, 999).every((c) => c.socket.events().length === 0)).toBe(true);
  });

  it('keeps order, prev chains and exactly-once across filtered, token-limited and unscoped subscriptions in mixed passes', async () => {
    const source = new FakeJobSource(['vm1', 'vm2', 'vm3']);
    const core = await makeCore({ source, fanoutChunk: 3 });
    const limited: Principal = { name: 'limited', scopes: new Set(['read']), vms: new Set(['vm2', 'vm3']) };
    const both = connect(core, { sub: 'a', filter: { vms: ['vm1', 'vm2'] } });
    const tokenOnly = connect(core, { sub: 'a' }, limited);
    const narrowed = connect(core, { sub: 'a', filter: { vms: ['vm3'] } }, limited);
    const everything = connect(core, { sub: 'a' });
    const onlyVm2 = connect(core, { sub: 'a', filter: { vms: ['vm2'] } });

    // Interleaved across VMs so passes hold several VMs (a subscription indexed under two of them is visited once).
    for (const state of ['running', 'paused', 'running', 'ready', 'concluded'] as const) {
      for (const vm of ['vm1', 'vm2', 'vm3']) source.transition(vm, 'j0', state);
    }
    const expected = { both: ['vm1', 'vm2'], tokenOnly: ['vm2', 'vm3'], narrowed: ['vm3'], everything: ['vm1', 'vm2', 'vm3'], onlyVm2: ['vm2'] };
    const clients = { both, tokenOnly, narrowed, everything, onlyVm2 };
    const counts = { both: 10, tokenOnly: 10, narrowed: 5, everything: 15, onlyVm2: 5 };
    await expect.poll(() => Object.entries(clients).every(([name, c]) => c.socket.events().length === counts[name as keyof typeof counts])).toBe(true);
    for (const [name, client] of Object.entries(clients)) {
      const events = client.socket.events();
      const vmsSeen = [...new Set(events.map((m) => m.vm as string))].sort();
      expect(vmsSeen, name).toEqual(expected[name as keyof typeof expected]);
      for (const vm of vmsSeen) {
        expect(events.filter((m) => m.vm === vm).map((m) => m.offset), `${name} ${vm}`).toEqual([1, 2, 3, 4, 5]);
        assertChain(client.socket.messages, vm, 0);
      }
    }

    // Unsubscribed: out of the index, nothing more arrives.
    onlyVm2.hooks.message(JSON.stringify({ type: 'unsubscribe', id: 'u', sub: 'a' }));
    source.transition('vm2', 'j1', 'running');
    await expect.poll(() => both.socket.events().length).toBe(11);
    expect(onlyVm2.socket.events()).toHaveLength(5);
  });
});
