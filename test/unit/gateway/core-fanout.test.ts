/**
 * The core without a transport: fan-out yields to the event loop between chunks, keeps per-stream
 * order, and the snapshot/tail cut holds for subscriptions added mid-fan-out and for a history
 * that answers asynchronously (the shape a Redis Streams history will have).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ANONYMOUS } from '../../../src/gateway/auth.js';
import { GatewayCore, type ConnectionHooks, type GatewaySocket } from '../../../src/gateway/core.js';
import { MemoryStreamHistory } from '../../../src/gateway/history/memory.js';
import type { HistoryRead, StreamHistory, StreamPosition } from '../../../src/gateway/history/types.js';
import type { StreamEvent } from '../../../src/gateway/streams.js';
import { assertChain, type Msg } from '../../integration/gateway-support.js';
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

const cores: GatewayCore[] = [];
afterEach(() => {
  for (const core of cores.splice(0)) {
    core.drain();
    core.stop();
  }
});

async function makeCore(source: FakeJobSource, options: Partial<ConstructorParameters<typeof GatewayCore>[0]> = {}) {
  const core = new GatewayCore({ source, ...options });
  cores.push(core);
  await core.start();
  return core;
}

function connect(core: GatewayCore): { socket: MemorySocket; hooks: ConnectionHooks; subscribe(body: Msg): void } {
  const socket = new MemorySocket();
  const hooks = core.opened(socket, { principal: ANONYMOUS });
  return { socket, hooks, subscribe: (body) => hooks.message(JSON.stringify({ type: 'subscribe', id: 'r', ...body })) };
}

describe('GatewayCore fan-out', () => {
  it('yields between chunks, keeps order, and never double-sends to a subscriber added mid-fan-out', async () => {
    const source = new FakeJobSource(['vm1']);
    const core = await makeCore(source, { fanoutChunk: 100 });
    const clients = Array.from({ length: 1000 }, () => connect(core));
    for (const c of clients) c.subscribe({ sub: 'a' });

    source.transition('vm1', 'j0', 'running');
    source.transition('vm1', 'j0', 'ready');
    // The first slice ran synchronously; the rest waits for the event loop.
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
    const memory = new MemoryStreamHistory<StreamEvent>();
    let release: (() => void) | undefined;
    const slow: StreamHistory<StreamEvent> = {
      open: async (vm) => memory.open(vm),
      append: (vm, entry) => memory.append(vm, entry),
      read: (vm, since: StreamPosition) =>
        new Promise<HistoryRead<StreamEvent>>((resolve) => {
          const answer = memory.read(vm, since); // what the store held when asked
          release = () => resolve(answer);
        }),
      drop: (vm) => memory.drop(vm),
    };
    const source = new FakeJobSource(['vm1']);
    const core = await makeCore(source, { history: slow });
    source.transition('vm1', 'j0', 'running'); // 1
    source.transition('vm1', 'j0', 'paused'); // 2
    const { epoch } = memory.open('vm1');

    const c = connect(core);
    c.subscribe({ sub: 'a', since: { vm1: { epoch, offset: 1 } } });
    await expect.poll(() => release !== undefined).toBe(true);
    source.transition('vm1', 'j0', 'running'); // 3: after the read was answered, before it resolved
    expect(c.socket.events()).toEqual([]);
    release!();
    await expect.poll(() => c.socket.messages.some((m) => m.type === 'synced')).toBe(true);
    source.transition('vm1', 'j0', 'ready'); // 4
    await expect.poll(() => c.socket.events().map((m) => m.offset)).toEqual([2, 3, 4]);
    expect(c.socket.messages.find((m) => m.type === 'subscribed')!.streams.vm1).toMatchObject({ mode: 'recovered' });
    assertChain(c.socket.messages, 'vm1', 1);
  });
});
