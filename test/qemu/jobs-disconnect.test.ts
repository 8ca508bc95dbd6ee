/**
 * The engine's monitor goes away while QEMU keeps working: a job that ends while nobody watches
 * (auto-dismiss true: the end is unknowable; false: query-jobs tells the outcome), and QEMU killed
 * mid-job. The link is cut on the engine's side only (CuttableLink); the oracle keeps recording.
 */
import { afterEach, expect, it } from 'vitest';
import { MiB, startMirror, startStream } from '../../src/lab/jobs.js';
import { describeQemu } from '../utils/qemu-gate.js';
import { cleanupLeftoversAfterAll } from '../utils/qsd.js';
import { openScenario, waitUntil, type Scenario } from '../utils/job-scenarios.js';

describeQemu('jobs across a lost monitor (real QEMU)', () => {
  cleanupLeftoversAfterAll();
  let sc: Scenario;
  afterEach(async () => sc?.dispose());

  /** Cuts the engine's link and waits until the engine noticed (VM disconnected, jobs stale). */
  async function cutEngineLink(): Promise<number> {
    const seen = sc.recorder.vmStatuses().length;
    sc.link.cut();
    await waitUntil('engine reports the VM disconnected', () => sc.recorder.vmStatuses().slice(seen).includes('disconnected'));
    return sc.recorder.vmStatuses().length;
  }

  async function restoreEngineLink(seen: number): Promise<void> {
    sc.link.restore();
    await waitUntil('engine reconnected', () => sc.recorder.vmStatuses().slice(seen).includes('connected'));
  }

  it('finished while away, auto-dismiss=true: stale while away, then concluded with outcome unknown (never completed)', async () => {
    sc = await openScenario();
    await startStream(sc.qsd, sc.qsd, { jobId: 'aw', speed: 8 * MiB });
    await sc.recorder.waitForState('aw', 'running');
    const seen = await cutEngineLink();
    expect(sc.engine.job(sc.vm, 'aw')).toMatchObject({ state: 'running', stale: true });
    await sc.oracle.waitForStatus('aw', 'null');
    await restoreEngineLink(seen);

    const concluded = await sc.recorder.waitForState('aw', 'concluded');
    expect(concluded.to.outcome).toBe('unknown');
    expect(concluded.source).toBe('reconcile');
    expect(sc.recorder.states('aw').slice(0, 3)).toEqual(['created', 'running', 'concluded']);
    expect(sc.recorder.transitions('aw').some((t) => t.to.outcome === 'completed')).toBe(false);
    expect(sc.engine.job(sc.vm, 'aw')?.stale).toBe(false);
    sc.log('aw');
  });

  it('finished while away, auto-dismiss=false: the outcome comes from query-jobs (completed, then failed)', async () => {
    sc = await openScenario();
    // Slow enough that both are still running when the link is cut, even on a loaded machine: 'ok' runs
    // ~4 s, 'bad' reads its failing base layer after ~2 s.
    await startStream(sc.qsd, sc.qsd, { jobId: 'ok', autoDismiss: false, speed: 8 * MiB });
    await startStream(sc.qsd, sc.qsd, { jobId: 'bad', autoDismiss: false, baseFault: 'first-read', dataMiB: 16, speed: 4 * MiB });
    await sc.recorder.waitForState('ok', 'running');
    await sc.recorder.waitForState('bad', 'running');
    const seen = await cutEngineLink();
    await sc.oracle.waitForStatus('ok', 'concluded');
    await sc.oracle.waitForStatus('bad', 'concluded');
    await restoreEngineLink(seen);

    const ok = await sc.recorder.waitForState('ok', 'concluded');
    const bad = await sc.recorder.waitForState('bad', 'concluded');
    expect(ok.to.outcome).toBe('completed');
    expect(bad.to.outcome).toBe('failed');
    expect(bad.job.error).toBe('Input/output error');
    expect(sc.recorder.states('ok')).toEqual(['created', 'running', 'concluded']);
    expect(sc.recorder.states('bad')).toEqual(['created', 'running', 'concluded']);

    // Back on the wire: a dismiss is seen live again.
    await sc.control.verb('ok', 'dismiss');
    await sc.recorder.waitForState('ok', 'dismissed');
    sc.log('ok');
    sc.log('bad');
  });

  it('QEMU killed mid-job: jobs stale with their last state, then gone (concluded, outcome unknown) after the restart', async () => {
    sc = await openScenario();
    await startMirror(sc.qsd, sc.qsd, { jobId: 'k' });
    await sc.recorder.waitForState('k', 'running');
    const seen = sc.recorder.vmStatuses().length;
    await sc.qsd.kill('SIGKILL');
    await waitUntil('engine reports the VM disconnected', () => sc.recorder.vmStatuses().slice(seen).includes('disconnected'));
    expect(sc.engine.job(sc.vm, 'k')).toMatchObject({ state: 'running', stale: true });
    expect(sc.oracle.statusSequence('k')).toEqual(['created', 'running']);

    await sc.qsd.restart();
    await waitUntil('engine reconnected', () => sc.recorder.vmStatuses().slice(seen).includes('connected'));
    const concluded = await sc.recorder.waitForState('k', 'concluded');
    expect(concluded.to.outcome).toBe('unknown');
    expect(sc.recorder.states('k').slice(0, 3)).toEqual(['created', 'running', 'concluded']);
    sc.log('k');
  });

  it('ready reached while away: the reconnect reconciles to ready once, and the rest is seen live (equals the oracle)', async () => {
    sc = await openScenario();
    await startMirror(sc.qsd, sc.qsd, { jobId: 'r' });
    await sc.recorder.waitForState('r', 'running');
    const seen = await cutEngineLink();
    await sc.oracle.waitForStatus('r', 'ready');
    await restoreEngineLink(seen);
    const ready = await sc.recorder.waitForState('r', 'ready');
    expect(ready.source).toBe('reconcile');
    expect(ready.to.ready).toBe(true);
    await sc.control.verb('r', 'complete');
    await sc.oracle.waitForStatus('r', 'null');

    const transitions = await sc.expectEngineMatchesOracle('r');
    expect(transitions.find((t) => t.to.state === 'concluded')?.job).toMatchObject({ outcome: 'completed', pivoted: true });
  });
});
