/**
 * Mirror on a real qemu-storage-daemon: complete, the ready window, cancels before and after READY,
 * pause/resume in running and in ready. Each test checks QEMU's own sequence (reference §4) and that
 * the engine's transitions equal it.
 */
import { afterEach, expect, it } from 'vitest';
import { startMirror } from '../../src/lab/jobs.js';
import { describeQemu } from '../utils/qemu-gate.js';
import { cleanupLeftoversAfterAll } from '../utils/qsd.js';
import { expectReadyTruth, openScenario, waitUntil, type Scenario } from '../utils/job-scenarios.js';
import type { QmpEvent } from '../../src/qmp/types.js';
import { blockJob, waitForBlockJob, type BlockJobRow } from '../utils/job-scenarios-qmp.js';

describeQemu('mirror scenarios (real QEMU)', () => {
  cleanupLeftoversAfterAll();
  let sc: Scenario;
  afterEach(async () => sc?.dispose());

  it('mirror complete: created > running > ready > waiting > pending > concluded(completed, pivoted) > dismissed', async () => {
    sc = await openScenario();
    await startMirror(sc.qsd, sc.qsd, { jobId: 'm' });
    const ready = await sc.oracle.waitForStatus('m', 'ready');
    await sc.control.verb('m', 'complete');
    await sc.oracle.waitForStatus('m', 'null');

    expect(sc.oracle.statusSequence('m')).toEqual(['created', 'running', 'ready', 'waiting', 'pending', 'concluded', 'null']);
    const readyEvent = sc.oracle.jobEvents('m').find((event) => event.event === 'BLOCK_JOB_READY');
    expect(readyEvent?.seq).toBe(ready.seq + 1);
    const completed = sc.oracle.jobEvents('m').find((event) => event.event === 'BLOCK_JOB_COMPLETED');
    expect(completed?.data.error).toBeUndefined();
    expect(sc.expectedStates('m')).toEqual(['created', 'running', 'ready', 'waiting', 'pending', 'concluded', 'dismissed']);

    const transitions = await sc.expectEngineMatchesOracle('m');
    expectReadyTruth(transitions);
    expect(transitions.find((t) => t.to.state === 'concluded')?.job).toMatchObject({ outcome: 'completed', pivoted: true });
  });

  it('ready window: offset == len while ready=false is observed by a raw poller, and the engine does not call it ready', async () => {
    sc = await openScenario({ engine: { activePollMs: 20 } });
    // The engine's own wire: when did its monitor receive QEMU's ready?
    let readyOnEngineWire: QmpEvent | undefined;
    const watch = sc.client.events$.subscribe((event) => {
      if (event.event === 'JOB_STATUS_CHANGE' && event.data.id === 'w' && event.data.status === 'ready') readyOnEngineWire ??= event;
    });
    const windowSamples: { row: BlockJobRow; engineReady: boolean | null | undefined; engineHadReadyEvent: boolean }[] = [];
    let polling = true;
    const poller = (async () => {
      while (polling) {
        const row = await blockJob(sc.oracle.raw, 'w');
        if (row && row.status === 'running' && row.len > 0 && row.offset === row.len) {
          windowSamples.push({ row, engineReady: sc.engine.job(sc.vm, 'w')?.ready, engineHadReadyEvent: readyOnEngineWire !== undefined });
        }
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    })();
    await startMirror(sc.qsd, sc.qsd, { jobId: 'w' });
    await sc.oracle.waitForStatus('w', 'ready');
    polling = false;
    await poller;

    expect(windowSamples.length, 'raw polls that saw offset == len with ready=false before READY').toBeGreaterThan(0);
    for (const sample of windowSamples) {
      expect(sample.row.ready).toBe(false);
      // The engine may be ahead of the raw poller (its own wire already carried READY), never ahead of QEMU.
      if (sample.engineReady) expect(sample.engineHadReadyEvent).toBe(true);
    }
    const readyTransition = await sc.recorder.waitForState('w', 'ready');
    watch.unsubscribe();
    expect(readyOnEngineWire).toBeDefined();
    expect(readyTransition.qmpReceivedMono ?? Number.NEGATIVE_INFINITY).toBeGreaterThanOrEqual(readyOnEngineWire!.receivedMono);
    expect(sc.recorder.transitions('w').filter((t) => t.to.ready === true)[0]).toBe(readyTransition);

    await sc.control.verb('w', 'complete');
    await sc.oracle.waitForStatus('w', 'null');
    expect(sc.oracle.statusSequence('w')).toEqual(['created', 'running', 'ready', 'waiting', 'pending', 'concluded', 'null']);
    expectReadyTruth(await sc.expectEngineMatchesOracle('w'));
  });

  it('cancel before ready: running > aborting > concluded(cancelled) with offset < len', async () => {
    sc = await openScenario();
    await startMirror(sc.qsd, sc.qsd, { jobId: 'c' });
    await waitForBlockJob(sc.qsd, 'c', 'some progress', (row) => row.offset > 0);
    await sc.control.verb('c', 'cancel');
    await sc.oracle.waitForStatus('c', 'null');

    expect(sc.oracle.statusSequence('c')).toEqual(['created', 'running', 'aborting', 'concluded', 'null']);
    const cancelled = sc.oracle.jobEvents('c').find((event) => event.event === 'BLOCK_JOB_CANCELLED');
    expect(cancelled?.data.offset).toBeLessThan(cancelled?.data.len as number);

    const transitions = await sc.expectEngineMatchesOracle('c');
    expect(transitions.find((t) => t.to.state === 'concluded')?.job.outcome).toBe('cancelled');
    expect(transitions.find((t) => t.to.state === 'concluded')?.job.pivoted).not.toBe(true);
  });

  it('soft cancel after ready: ready > waiting > pending > concluded(completed, not pivoted)', async () => {
    sc = await openScenario();
    await startMirror(sc.qsd, sc.qsd, { jobId: 's' });
    await sc.oracle.waitForStatus('s', 'ready');
    await sc.control.verb('s', 'cancel');
    await sc.oracle.waitForStatus('s', 'null');

    expect(sc.oracle.statusSequence('s')).toEqual(['created', 'running', 'ready', 'waiting', 'pending', 'concluded', 'null']);
    const events = sc.oracle.jobEvents('s').map((event) => event.event);
    expect(events).toContain('BLOCK_JOB_COMPLETED');
    expect(events).not.toContain('BLOCK_JOB_CANCELLED');

    const transitions = await sc.expectEngineMatchesOracle('s');
    expectReadyTruth(transitions);
    expect(transitions.find((t) => t.to.state === 'concluded')?.job).toMatchObject({ outcome: 'completed', pivoted: false });
  });

  it('force cancel after ready: ready > aborting > concluded(cancelled)', async () => {
    sc = await openScenario();
    await startMirror(sc.qsd, sc.qsd, { jobId: 'f' });
    await sc.oracle.waitForStatus('f', 'ready');
    await sc.control.verb('f', 'force-cancel');
    await sc.oracle.waitForStatus('f', 'null');

    expect(sc.oracle.statusSequence('f')).toEqual(['created', 'running', 'ready', 'aborting', 'concluded', 'null']);
    expect(sc.oracle.jobEvents('f').map((event) => event.event)).toContain('BLOCK_JOB_CANCELLED');

    const transitions = await sc.expectEngineMatchesOracle('f');
    expectReadyTruth(transitions);
    expect(transitions.find((t) => t.to.state === 'concluded')?.job.outcome).toBe('cancelled');
    expect(transitions.find((t) => t.to.state === 'concluded')?.job.pivoted).not.toBe(true);
  });

  it('pause and resume while running: running > paused(user) > running; a second pause is refused; set-speed shows', async () => {
    sc = await openScenario();
    await startMirror(sc.qsd, sc.qsd, { jobId: 'p' });
    await sc.oracle.waitForStatus('p', 'running');
    await sc.control.verb('p', 'pause');
    await sc.recorder.waitForState('p', 'paused');
    await expect(sc.control.verb('p', 'pause')).rejects.toMatchObject({ qmpClass: 'GenericError' });
    await sc.control.verb('p', 'resume');
    // A speed change emits no event: the engine learns it from its next poll, without a transition.
    await sc.control.verb('p', 'set-speed', { speed: 0 });
    await waitUntil('engine shows speed 0', () => sc.engine.job(sc.vm, 'p')?.speed === 0);
    await sc.oracle.waitForStatus('p', 'ready');
    await sc.control.verb('p', 'complete');
    await sc.oracle.waitForStatus('p', 'null');

    expect(sc.oracle.statusSequence('p')).toEqual(['created', 'running', 'paused', 'running', 'ready', 'waiting', 'pending', 'concluded', 'null']);
    expect(sc.expectedStates('p')).toEqual(['created', 'running', 'paused', 'running', 'ready', 'waiting', 'pending', 'concluded', 'dismissed']);

    const transitions = await sc.expectEngineMatchesOracle('p');
    expectReadyTruth(transitions);
    expect(transitions.find((t) => t.to.state === 'paused')?.to.pauseReason).toBe('user');
    expect(transitions.find((t) => t.to.state === 'concluded')?.job).toMatchObject({ outcome: 'completed', pivoted: true });
  });

  it('pause in ready: ready > standby(user) with ready kept > complete accepted in standby > resume > completed', async () => {
    sc = await openScenario();
    await startMirror(sc.qsd, sc.qsd, { jobId: 'y' });
    await sc.oracle.waitForStatus('y', 'ready');
    await sc.control.verb('y', 'pause');
    await sc.recorder.waitForState('y', 'standby');
    const standby = await blockJob(sc.qsd, 'y');
    expect(standby).toMatchObject({ status: 'standby', ready: true, paused: true });
    await sc.control.verb('y', 'complete');
    await sc.control.verb('y', 'resume');
    await sc.oracle.waitForStatus('y', 'null');

    expect(sc.oracle.statusSequence('y')).toEqual(['created', 'running', 'ready', 'standby', 'ready', 'waiting', 'pending', 'concluded', 'null']);

    const transitions = await sc.expectEngineMatchesOracle('y');
    expectReadyTruth(transitions);
    expect(transitions.find((t) => t.to.state === 'standby')?.to).toMatchObject({ ready: true, pauseReason: 'user' });
    expect(transitions.find((t) => t.to.state === 'concluded')?.job).toMatchObject({ outcome: 'completed', pivoted: true });
  });

  it('cancel in pending (auto-finalize=false): pending > aborting > concluded(cancelled, not pivoted)', async () => {
    sc = await openScenario();
    await startMirror(sc.qsd, sc.qsd, { jobId: 'cp', autoFinalize: false });
    await sc.oracle.waitForStatus('cp', 'ready');
    await sc.control.verb('cp', 'complete');
    await sc.oracle.waitForStatus('cp', 'pending');
    await sc.control.verb('cp', 'force-cancel');
    await sc.oracle.waitForStatus('cp', 'null');

    expect(sc.oracle.statusSequence('cp')).toEqual(['created', 'running', 'ready', 'waiting', 'pending', 'aborting', 'concluded', 'null']);
    expect(sc.oracle.jobEvents('cp').map((event) => event.event)).toContain('BLOCK_JOB_CANCELLED');
    const transitions = await sc.expectEngineMatchesOracle('cp');
    expectReadyTruth(transitions);
    expect(transitions.find((t) => t.to.state === 'concluded')?.job.outcome).toBe('cancelled');
    expect(transitions.find((t) => t.to.state === 'concluded')?.job.pivoted).not.toBe(true);
  });
});
