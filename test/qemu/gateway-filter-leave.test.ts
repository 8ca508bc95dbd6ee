/**
 * A filtered subscriber always learns that a job it was shown stopped matching its filter, on real
 * QEMU: live, on a resume (replay) and consistently with a snapshot. The rule (PROTOCOL.md, "Filters"):
 * the event in which a job leaves the filter is delivered with `leftFilter: true`; later events about
 * that job are skipped until it matches again.
 */
import { afterEach, expect, it } from 'vitest';
import type { RunningGateway } from '../../src/gateway/server.js';
import { startMirror, MiB } from '../../src/lab/jobs.js';
import { assertChain } from '../utils/gateway-support.js';
import { describeQemu } from '../utils/qemu-gate.js';
import { connectClient, startQemuGateway, type Disposers } from '../utils/qemu-gateway-stack.js';
import { cleanupLeftoversAfterAll } from '../utils/qsd.js';

describeQemu('filters on real QEMU: leaving the filter', () => {
  cleanupLeftoversAfterAll();
  const disposers: Disposers = [];
  afterEach(async () => {
    for (const dispose of disposers.splice(0).reverse()) await dispose().catch(() => {});
  });

  const stack = () => startQemuGateway(disposers);
  const client = (gateway: RunningGateway) => connectClient(gateway, disposers);

  it('a subscriber filtered on running gets the event that leaves it (flagged), then nothing more about that job', async () => {
    const { qsd, gateway } = await stack();
    const witness = await client(gateway);
    witness.send({ type: 'subscribe', id: '1', sub: 'w' });
    await witness.next((m) => m.type === 'synced');
    const running = await client(gateway);
    running.send({ type: 'subscribe', id: '1', sub: 'r', filter: { states: ['running'] } });
    const synced = await running.next((m) => m.type === 'synced');

    await startMirror(qsd, qsd, { jobId: 'm0', speed: 8 * MiB, dataMiB: 4 });
    const entered = await running.next((m) => m.type === 'event' && m.job.id === 'm0', 60_000);
    expect(entered.transition.to).toBe('running');
    expect(entered.leftFilter).toBeUndefined();
    const left = await running.next((m) => m.type === 'event' && m.job.id === 'm0' && m.transition.from === 'running', 60_000);
    expect(left).toMatchObject({ leftFilter: true, transition: { to: 'ready' }, job: { state: 'ready', ready: true } });

    await qsd.execute('job-complete', { id: 'm0' });
    await witness.next((m) => m.type === 'event' && m.job.id === 'm0' && m.transition.to === 'dismissed', 60_000);
    // Its later transitions (waiting, concluded, dismissed) are not for this subscriber; the chain has no gap.
    await expect.poll(() => running.ofType('bookmark').length, { timeout: 30_000 }).toBeGreaterThan(0);
    expect(running.ofType('event').map((m) => [m.transition.to, m.leftFilter ?? false])).toEqual([
      ['running', false],
      ['ready', true],
    ]);
    assertChain(running.messages, 'vm1', synced.offset);
    expect(running.invalid).toEqual([]);
  }, 120_000);

  it('a resume replays the leaving event the same way, and a snapshot no longer lists the job', async () => {
    const { qsd, gateway } = await stack();
    const witness = await client(gateway);
    witness.send({ type: 'subscribe', id: '1', sub: 'w' });
    await witness.next((m) => m.type === 'synced');
    const leaver = await client(gateway);
    const filter = { states: ['running' as const] };
    leaver.send({ type: 'subscribe', id: '1', sub: 'r', filter });
    await leaver.next((m) => m.type === 'synced');

    await startMirror(qsd, qsd, { jobId: 'm1', speed: 4 * MiB, dataMiB: 4 });
    const entered = await leaver.next((m) => m.type === 'event' && m.job.id === 'm1', 60_000);
    await leaver.close();
    const ready = await witness.next((m) => m.type === 'event' && m.job.id === 'm1' && m.transition.to === 'ready', 60_000);

    // Resume inside the history: the leaving event is replayed, flagged, and nothing after it.
    const back = await client(gateway);
    back.send({ type: 'subscribe', id: '2', sub: 'r', filter, since: { vm1: { epoch: entered.epoch, offset: entered.offset } } });
    expect((await back.next((m) => m.type === 'subscribed')).streams.vm1.mode).toBe('recovered');
    await back.next((m) => m.type === 'synced');
    expect(back.ofType('event').map((m) => [m.offset, m.transition.to, m.leftFilter])).toEqual([[ready.offset, 'ready', true]]);
    assertChain(back.messages, 'vm1', entered.offset);

    // A snapshot taken now does not list the job (it no longer matches), and says so by omission.
    const fresh = await client(gateway);
    fresh.send({ type: 'subscribe', id: '3', sub: 'r', filter });
    await fresh.next((m) => m.type === 'synced');
    expect(fresh.ofType('state').map((m) => m.job.id)).toEqual([]);
    // An unfiltered snapshot at the same moment does list it, so the omission is the filter's.
    const all = await client(gateway);
    all.send({ type: 'subscribe', id: '4', sub: 'a' });
    await all.next((m) => m.type === 'synced');
    expect(all.ofType('state').map((m) => [m.job.id, m.job.state])).toEqual([['m1', 'ready']]);
    expect([back.invalid, fresh.invalid, all.invalid]).toEqual([[], [], []]);
  }, 120_000);
});
