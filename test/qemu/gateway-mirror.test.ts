/**
 * The whole path on real QEMU: qemu-storage-daemon -> QMP client -> JobRegistry -> gateway -> ws.
 * A subscriber sees a mirror reach ready and complete with contiguous offsets; a client that
 * disconnects mid-job and resumes gets exactly the transitions it missed.
 */
import { afterEach, expect, it } from 'vitest';
import type { RunningGateway } from '../../src/gateway/server.js';
import { startMirror, MiB } from '../../src/lab/jobs.js';
import { assertChain, TestClient, type Msg } from '../utils/gateway-support.js';
import { describeQemu } from '../utils/qemu-gate.js';
import { connectClient, startQemuGateway, type Disposers } from '../utils/qemu-gateway-stack.js';
import { cleanupLeftoversAfterAll } from '../utils/qsd.js';

describeQemu('gateway on real QEMU', () => {
  cleanupLeftoversAfterAll();
  const disposers: Disposers = [];
  afterEach(async () => {
    for (const dispose of disposers.splice(0).reverse()) await dispose().catch(() => {});
  });

  const stack = () => startQemuGateway(disposers);
  const client = (gateway: RunningGateway) => connectClient(gateway, disposers);

  const jobEvents = (c: TestClient, job: string) => c.ofType('event').filter((m) => m.job.id === job);
  const states = (events: Msg[]) => events.map((m) => `${m.transition.to}${m.job.ready ? '+ready' : ''}`);

  it('a subscriber sees a mirror reach ready and complete, with contiguous offsets', async () => {
    const { qsd, gateway, registry } = await stack();
    const watcher = await client(gateway);
    watcher.send({ type: 'subscribe', id: '1', sub: 'all' });
    const synced = await watcher.next((m) => m.type === 'synced' && m.vm === 'vm1');

    await startMirror(qsd, qsd, { jobId: 'm0', speed: 8 * MiB, dataMiB: 4 });
    const ready = await watcher.next((m) => m.type === 'event' && m.job.id === 'm0' && m.transition.to === 'ready', 60_000);
    expect(ready.job).toMatchObject({ vm: 'vm1', type: 'mirror', ready: true });
    expect(ready.job.progress.current).toBe(ready.job.progress.total);

    // What job control does: tell the engine first (so it knows the pivot), then send the verb.
    registry.engine('vm1')!.noteVerb('m0', 'complete');
    await qsd.execute('job-complete', { id: 'm0' });
    const concluded = await watcher.next((m) => m.type === 'event' && m.job.id === 'm0' && m.transition.to === 'concluded', 60_000);
    expect(concluded.job).toMatchObject({ outcome: 'completed', pivoted: true });
    await watcher.next((m) => m.type === 'event' && m.job.id === 'm0' && m.transition.to === 'dismissed', 60_000);

    const sequence = states(jobEvents(watcher, 'm0'));
    expect(sequence.slice(0, 3)).toEqual(['created', 'running', 'ready+ready']);
    expect(sequence.slice(-2)).toEqual(['concluded', 'dismissed']);
    expect(sequence.filter((s) => s.startsWith('paused'))).toEqual([]);
    const last = assertChain(watcher.messages, 'vm1', synced.offset);
    expect(last).toBe(jobEvents(watcher, 'm0').at(-1)!.offset);

    // The monitor goes away: a numbered `vm` event, /readyz 503, QMP errors counted per VM.
    await qsd.kill();
    const down = await watcher.next((m) => m.type === 'vm' && m.status === 'disconnected', 30_000);
    expect(down.offset).toBe(last + 1);
    expect(down.prev).toBe(last);
    // The kernel closed QEMU's end cleanly (EOF): the event still says why, and the code is counted.
    expect(down.reason).toMatch(/the monitor closed the connection \(EOF\)$/);
    expect((await fetch(`${gateway.url}/readyz`)).status).toBe(503);
    await expect
      .poll(async () => (await (await fetch(`${gateway.url}/metrics`)).text()).match(/blockjob_gateway_qmp_errors_total\{vm="vm1",code="QMP_ERR_DISCONNECTED"\} 1$/m) !== null, { timeout: 30_000 })
      .toBe(true);
    // Every poll and verb that reached QEMU is counted per VM.
    const commands = /^blockjob_gateway_qmp_commands_total\{vm="vm1"\} (\d+)/m.exec(await (await fetch(`${gateway.url}/metrics`)).text());
    expect(Number(commands?.[1])).toBeGreaterThan(2);
    expect(watcher.invalid).toEqual([]);
  });

  it('a client that disconnects mid-job and resumes gets exactly the missed transitions', async () => {
    const { qsd, gateway } = await stack();
    const witness = await client(gateway);
    witness.send({ type: 'subscribe', id: '1', sub: 'w' });
    await witness.next((m) => m.type === 'synced');
    const leaver = await client(gateway);
    leaver.send({ type: 'subscribe', id: '1', sub: 'l', filter: { jobs: ['m1'] } });
    await leaver.next((m) => m.type === 'synced');

    await startMirror(qsd, qsd, { jobId: 'm1', speed: 4 * MiB, dataMiB: 4 });
    const running = await leaver.next((m) => m.type === 'event' && m.transition.to === 'running', 60_000);
    await leaver.close();

    await witness.next((m) => m.type === 'event' && m.job.id === 'm1' && m.transition.to === 'ready', 60_000);
    await qsd.execute('job-complete', { id: 'm1' });
    await witness.next((m) => m.type === 'event' && m.job.id === 'm1' && m.transition.to === 'dismissed', 60_000);

    const back = await client(gateway);
    back.send({ type: 'subscribe', id: '2', sub: 'l', filter: { jobs: ['m1'] }, since: { vm1: { epoch: running.epoch, offset: running.offset } } });
    const subscribed = await back.next((m) => m.type === 'subscribed');
    expect(subscribed.streams.vm1.mode).toBe('recovered');
    await back.next((m) => m.type === 'synced');
    const missed = jobEvents(witness, 'm1').filter((m) => m.offset > running.offset);
    expect(jobEvents(back, 'm1').map((m) => [m.offset, m.transition.to])).toEqual(missed.map((m) => [m.offset, m.transition.to]));
    expect(states(missed)).toContain('ready+ready');
    assertChain(back.messages, 'vm1', running.offset);
    expect(back.ofType('state')).toEqual([]);
  });
});
