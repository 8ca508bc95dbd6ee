/**
 * The push protocol end to end: a real gateway on 127.0.0.1:0 in front of an in-memory JobSource,
 * real `ws` clients. Every message a client receives is validated against the server schemas.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { assertChain, Leftovers, type Msg, type TestClient } from '../utils/gateway-support.js';
import { FakeJobSource } from '../utils/fake-source.js';

const leftovers = new Leftovers();
afterEach(() => leftovers.dispose());

async function setup(vms = ['vm1', 'vm2'], options: Parameters<Leftovers['gateway']>[0] extends infer O ? Partial<O> : never = {}) {
  const source = new FakeJobSource(vms);
  const gateway = await leftovers.gateway({ source, ...options });
  return { source, gateway };
}

async function subscribe(client: TestClient, body: Msg): Promise<Msg> {
  client.send({ type: 'subscribe', id: `r-${body.sub}`, ...body });
  return client.next((m) => (m.type === 'subscribed' || m.type === 'error') && m.id === `r-${body.sub}`);
}

function noInvalid(...clients: TestClient[]): void {
  for (const c of clients) expect(c.invalid).toEqual([]);
}

describe('gateway stream protocol', () => {
  it('welcomes, sends a snapshot cut exactly at the head, then live events with contiguous offsets', async () => {
    const { source, gateway } = await setup();
    source.transition('vm1', 'j0', 'created');
    source.transition('vm1', 'j0', 'running');
    source.transition('vm2', 'k0', 'running', { type: 'backup' });

    const client = await leftovers.client(gateway.wsUrl);
    const welcome = await client.next();
    expect(welcome).toMatchObject({ type: 'welcome', protocol: 1, heartbeatMs: 25_000 });
    expect(welcome.vms).toEqual([
      { vm: 'vm1', epoch: expect.any(String), offset: 2, status: 'connected' },
      { vm: 'vm2', epoch: expect.any(String), offset: 1, status: 'connected' },
    ]);

    const subscribed = await subscribe(client, { sub: 'a' });
    expect(subscribed.streams.vm1).toEqual({ mode: 'snapshot', epoch: welcome.vms[0].epoch, offset: 2 });
    const state = await client.next((m) => m.type === 'state' && m.vm === 'vm1');
    expect(state).toMatchObject({ sub: 'a', offset: 2, job: { id: 'j0', state: 'running' } });
    await client.next((m) => m.type === 'synced' && m.vm === 'vm1' && m.offset === 2);
    await client.next((m) => m.type === 'synced' && m.vm === 'vm2' && m.offset === 1);

    source.transition('vm1', 'j0', 'ready');
    source.setStatus('vm1', 'disconnected');
    source.setStatus('vm1', 'connected');
    source.transition('vm1', 'j0', 'concluded', { outcome: 'completed' });
    await client.next((m) => m.type === 'event' && m.offset === 6);
    const live = client.messages.filter((m) => (m.type === 'event' || m.type === 'vm') && m.vm === 'vm1');
    expect(live.map((m) => m.offset)).toEqual([3, 4, 5, 6]);
    expect(live.map((m) => m.prev)).toEqual([2, 3, 4, 5]);
    expect(live[0]).toMatchObject({ type: 'event', transition: { from: 'running', to: 'ready' }, job: { ready: true }, source: 'event' });
    expect(live[1]).toMatchObject({ type: 'vm', status: 'disconnected' });
    // Nothing sent twice: exactly one message per offset.
    expect(new Set(live.map((m) => m.offset)).size).toBe(live.length);
    noInvalid(client);
  });

  it('replays exactly the missed events (filtered, in order) to a client that resumes', async () => {
    const { source, gateway } = await setup();
    source.transition('vm1', 'j0', 'running');
    source.transition('vm1', 'j1', 'running', { type: 'stream' });
    const first = await leftovers.client(gateway.wsUrl);
    await subscribe(first, { sub: 'm', filter: { types: ['mirror'] } });
    const synced = await first.next((m) => m.type === 'synced' && m.vm === 'vm1');
    await first.close();

    // Missed while away: two mirror transitions, one stream transition, a vm blip.
    source.transition('vm1', 'j0', 'ready');
    source.transition('vm1', 'j1', 'concluded', { type: 'stream', outcome: 'completed' });
    source.setStatus('vm1', 'disconnected');
    source.setStatus('vm1', 'connected');
    source.transition('vm1', 'j0', 'concluded', { outcome: 'completed' });

    const second = await leftovers.client(gateway.wsUrl);
    const subscribed = await subscribe(second, { sub: 'm', filter: { types: ['mirror'] }, since: { vm1: { epoch: synced.epoch, offset: synced.offset } } });
    expect(subscribed.streams.vm1).toMatchObject({ mode: 'recovered', offset: 7 });
    expect(subscribed.streams.vm2).toMatchObject({ mode: 'snapshot' });
    await second.next((m) => m.type === 'synced' && m.vm === 'vm1');
    const replay = second.messages.filter((m) => m.vm === 'vm1' && (m.type === 'event' || m.type === 'vm'));
    expect(replay.map((m) => [m.type, m.offset, m.prev])).toEqual([
      ['event', 3, 2],
      ['vm', 5, 3],
      ['vm', 6, 5],
      ['event', 7, 6],
    ]);
    expect(second.ofType('state', 'm').filter((m) => m.vm === 'vm1')).toEqual([]);

    // And the live tail continues the chain without duplicates.
    source.transition('vm1', 'j2', 'created');
    await second.next((m) => m.type === 'event' && m.offset === 8);
    assertChain(second.messages, 'vm1', 2);
    noInvalid(first, second);
  });

  it('answers a resume it cannot honour with a snapshot and the reason', async () => {
    const source = new FakeJobSource(['vm1']);
    const old = await leftovers.gateway({ source, historyLimits: { maxEntries: 3 } });
    source.transition('vm1', 'j0', 'running');
    const client = await leftovers.client(old.wsUrl);
    const welcome = await client.next();
    const oldEpoch = welcome.vms[0].epoch;
    for (const state of ['paused', 'running', 'paused', 'running', 'ready'] as const) source.transition('vm1', 'j0', state);

    // Offset 1 is no longer retained (only 4..6 are).
    const tooOld = await subscribe(client, { sub: 'a', since: { vm1: { epoch: oldEpoch, offset: 1 } } });
    expect(tooOld.streams.vm1).toEqual({ mode: 'snapshot', reason: 'offset_too_old', epoch: oldEpoch, offset: 6 });
    await client.next((m) => m.type === 'state' && m.sub === 'a' && m.job.state === 'ready');
    // Offset 3 is: recovered.
    const ok = await subscribe(client, { sub: 'b', since: { vm1: { epoch: oldEpoch, offset: 3 } } });
    expect(ok.streams.vm1.mode).toBe('recovered');
    const ahead = await subscribe(client, { sub: 'c', since: { vm1: { epoch: oldEpoch, offset: 99 } } });
    expect(ahead.streams.vm1).toMatchObject({ mode: 'snapshot', reason: 'offset_ahead' });

    // A restarted gateway has a new epoch: snapshot with unknown_epoch.
    await old.close();
    const restarted = await leftovers.gateway({ source });
    const again = await leftovers.client(restarted.wsUrl);
    const res = await subscribe(again, { sub: 'a', since: { vm1: { epoch: oldEpoch, offset: 6 } } });
    expect(res.streams.vm1).toMatchObject({ mode: 'snapshot', reason: 'unknown_epoch', offset: 0 });
    expect(res.streams.vm1.epoch).not.toBe(oldEpoch);
    await again.next((m) => m.type === 'state' && m.job.id === 'j0');
    await again.next((m) => m.type === 'synced');
    noInvalid(client, again);
  });

  it('filters by vm, job, type and state; vm messages follow the vms filter; bookmarks mark skipped stretches', async () => {
    const { source, gateway } = await setup(['vm1', 'vm2'], { bookmarkQuietMs: 200 });
    const client = await leftovers.client(gateway.wsUrl);
    await subscribe(client, { sub: 'ready', filter: { vms: ['vm1'], states: ['ready', 'concluded'] } });
    await subscribe(client, { sub: 'j1', filter: { jobs: ['j1'] } });
    await subscribe(client, { sub: 'backup', filter: { types: ['backup'] } });
    await client.next((m) => m.type === 'synced' && m.sub === 'backup' && m.vm === 'vm2');

    source.transition('vm1', 'j0', 'running'); // 1
    source.transition('vm1', 'j1', 'running'); // 2
    source.transition('vm2', 'j1', 'running', { type: 'backup' }); // vm2: 1
    source.transition('vm1', 'j0', 'ready'); // 3
    source.setStatus('vm2', 'disconnected'); // vm2: 2

    await client.next((m) => m.type === 'vm' && m.sub === 'backup' && m.vm === 'vm2');
    const events = (sub: string) => client.ofType('event', sub).map((m) => `${m.vm}/${m.job.id}:${m.job.state}@${m.offset}<${m.prev}`);
    expect(events('ready')).toEqual(['vm1/j0:ready@3<0']);
    expect(events('j1')).toEqual(['vm1/j1:running@2<0', 'vm2/j1:running@1<0']);
    expect(events('backup')).toEqual(['vm2/j1:running@1<0']);
    expect(client.ofType('vm', 'ready')).toEqual([]);
    expect(client.ofType('vm', 'j1').map((m) => m.vm)).toEqual(['vm2']);

    // 'ready' skipped vm1 offsets 1-2 before 3 (prev 0 tells it they were filtered, not lost); after
    // a quiet period, 'j1' gets a bookmark for vm1's head (3), since it skipped offset 3.
    const bookmark = await client.next((m) => m.type === 'bookmark' && m.sub === 'j1' && m.vm === 'vm1');
    expect(bookmark.offset).toBe(3);
    source.transition('vm1', 'j1', 'ready'); // 4
    const next = await client.next((m) => m.type === 'event' && m.sub === 'j1' && m.offset === 4);
    expect(next.prev).toBe(3);
    noInvalid(client);
  });

  it('tells a filtered subscriber each time a job leaves its filter (leftFilter), and brings it back when it matches again', async () => {
    const { source, gateway } = await setup(['vm1']);
    const client = await leftovers.client(gateway.wsUrl);
    await subscribe(client, { sub: 'r', filter: { states: ['running'] } });
    await client.next((m) => m.type === 'synced' && m.sub === 'r');

    source.transition('vm1', 'j0', 'created'); // 1: never matched, skipped
    source.transition('vm1', 'j0', 'running'); // 2: enters
    source.transition('vm1', 'j0', 'paused'); // 3: leaves
    source.transition('vm1', 'j0', 'running'); // 4: enters again
    source.transition('vm1', 'j0', 'concluded'); // 5: leaves
    source.transition('vm1', 'j0', 'dismissed'); // 6: already out, skipped
    source.transition('vm1', 'j1', 'running'); // 7
    await client.next((m) => m.type === 'event' && m.offset === 7);
    const events = client.ofType('event', 'r').map((m) => `${m.job.id}:${m.transition.from}>${m.transition.to}@${m.offset}<${m.prev}${m.leftFilter ? ' left' : ''}`);
    expect(events).toEqual(['j0:created>running@2<0', 'j0:running>paused@3<2 left', 'j0:paused>running@4<3', 'j0:running>concluded@5<4 left', 'j1:null>running@7<5']);
    noInvalid(client);
  });

  it('coalesces progress to at most one per job per interval, keeps the newest, and can turn it off', async () => {
    const { source, gateway } = await setup(['vm1']);
    source.transition('vm1', 'j0', 'running');
    const client = await leftovers.client(gateway.wsUrl);
    await subscribe(client, { sub: 'slow', progress: { intervalMs: 300 } });
    await subscribe(client, { sub: 'off', progress: { intervalMs: 0 } });
    await client.next((m) => m.type === 'synced' && m.sub === 'off');

    const started = Date.now();
    let current = 0;
    while (Date.now() - started < 1000) {
      source.progress('vm1', 'j0', (current += 1000));
      await new Promise((r) => setTimeout(r, 10));
    }
    const last = current;
    // The trailing update (the newest value) arrives after the interval.
    await client.next((m) => m.type === 'progress' && m.sub === 'slow' && m.progress.current === last);
    const received = client.ofType('progress', 'slow');
    const elapsed = Date.now() - started;
    expect(received.length).toBeGreaterThanOrEqual(2);
    expect(received.length).toBeLessThanOrEqual(Math.ceil(elapsed / 300) + 1);
    expect(client.ofType('progress', 'off')).toEqual([]);
    expect(received[0]).toMatchObject({ vm: 'vm1', job: 'j0', incarnation: 1 });
    noInvalid(client);
  });

  it('unsubscribes, and answers ping with pong', async () => {
    const { source, gateway } = await setup(['vm1']);
    const client = await leftovers.client(gateway.wsUrl);
    await subscribe(client, { sub: 'a' });
    client.send({ type: 'ping', id: 'p1' });
    expect(await client.next((m) => m.type === 'pong')).toEqual({ type: 'pong', id: 'p1' });
    client.send({ type: 'unsubscribe', id: 'u1', sub: 'a' });
    expect(await client.next((m) => m.type === 'unsubscribed')).toEqual({ type: 'unsubscribed', id: 'u1', sub: 'a' });
    source.transition('vm1', 'j0', 'running');
    client.send({ type: 'ping', id: 'p2' });
    await client.next((m) => m.type === 'pong' && m.id === 'p2');
    expect(client.ofType('event')).toEqual([]);
    noInvalid(client);
  });

  it('delivers shared frames of every WebSocket length class intact to several clients', async () => {
    const { source, gateway } = await setup(['vm1']);
    const clients = [await leftovers.client(gateway.wsUrl), await leftovers.client(gateway.wsUrl)];
    for (const c of clients) {
      await subscribe(c, { sub: 'a' });
      await c.next((m) => m.type === 'synced');
    }
    // An event is never under 126 bytes: its frame carries a 16-bit length, or a 64-bit one over 65,535 bytes.
    const sizes = [10, 70_000, 200, 66_000];
    sizes.forEach((size, i) => source.transition('vm1', 'j0', i % 2 ? 'paused' : 'running', { error: 'e'.repeat(size) }));
    for (const c of clients) {
      await c.next((m) => m.type === 'event' && m.offset === sizes.length);
      const events = c.ofType('event');
      expect(events.map((m) => m.job.error.length)).toEqual(sizes);
      assertChain(c.messages, 'vm1', 0);
    }
    noInvalid(...clients);
  });

  it('closes every client with 1001 when the gateway drains', async () => {
    const { gateway } = await setup(['vm1']);
    const client = await leftovers.client(gateway.wsUrl);
    await client.next();
    await gateway.close();
    expect(await client.closed).toBe(1001);
  });
});
