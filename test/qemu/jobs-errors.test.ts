/**
 * I/O errors injected with blkdebug on a real qemu-storage-daemon: on-error report, stop (before and
 * after READY) and ignore for a mirror target, and a stream read error kept for inspection with
 * auto-dismiss=false. QEMU's own sequence (reference §4) and the engine's transitions against it.
 */
import { afterEach, expect, it } from 'vitest';
import { GuestWriter, nbdSocketIn, startMirror, startNbdServer, startStream } from '../../src/lab/jobs.js';
import type { JobTransition } from '../../src/jobs/types.js';
import { describeQemu } from '../utils/qemu-gate.js';
import { cleanupLeftoversAfterAll } from '../utils/qsd.js';
import { expectReadyTruth, openScenario, type Scenario } from '../utils/job-scenarios.js';
import { blockJob, jobInfo } from '../utils/job-scenarios-qmp.js';

const concludedJob = (transitions: JobTransition[]) => transitions.find((t) => t.to.state === 'concluded')?.job;

describeQemu('job errors (real QEMU, blkdebug)', () => {
  cleanupLeftoversAfterAll();
  let sc: Scenario;
  afterEach(async () => sc?.dispose());

  it('on-target-error=report: BLOCK_JOB_ERROR(report) > aborting > concluded(failed, "Input/output error")', async () => {
    sc = await openScenario();
    await startMirror(sc.qsd, sc.qsd, { jobId: 'er', targetFault: 'first-write', onTargetError: 'report' });
    await sc.oracle.waitForStatus('er', 'null');

    expect(sc.oracle.statusSequence('er')).toEqual(['created', 'running', 'aborting', 'concluded', 'null']);
    const events = sc.oracle.jobEvents('er');
    expect(events.find((event) => event.event === 'BLOCK_JOB_ERROR')?.data).toMatchObject({ operation: 'write', action: 'report' });
    expect(events.find((event) => event.event === 'BLOCK_JOB_COMPLETED')?.data.error).toBe('Input/output error');

    const transitions = await sc.expectEngineMatchesOracle('er');
    expectReadyTruth(transitions);
    expect(concludedJob(transitions)).toMatchObject({ outcome: 'failed', error: 'Input/output error' });
    expect(concludedJob(transitions)?.lastIoError).toMatchObject({ operation: 'write', action: 'report' });
  });

  it('on-target-error=stop before ready: paused(error) with io-status failed > resume > running > ready > completed', async () => {
    sc = await openScenario();
    await startMirror(sc.qsd, sc.qsd, { jobId: 'es', targetFault: 'first-write', onTargetError: 'stop' });
    const paused = await sc.recorder.waitForState('es', 'paused');
    expect(paused.to).toMatchObject({ pauseReason: 'error', ready: false });
    expect(await blockJob(sc.qsd, 'es')).toMatchObject({ status: 'paused', 'io-status': 'failed', paused: true });
    await sc.control.verb('es', 'resume');
    await sc.oracle.waitForStatus('es', 'ready');
    await sc.control.verb('es', 'complete');
    await sc.oracle.waitForStatus('es', 'null');

    expect(sc.oracle.statusSequence('es')).toEqual(['created', 'running', 'paused', 'running', 'ready', 'waiting', 'pending', 'concluded', 'null']);
    const transitions = await sc.expectEngineMatchesOracle('es');
    expectReadyTruth(transitions);
    expect(concludedJob(transitions)).toMatchObject({ outcome: 'completed', pivoted: true });
  });

  it('on-target-error=ignore: BLOCK_JOB_ERROR(ignore) is a detail; the mirror still reaches ready and completes', async () => {
    sc = await openScenario();
    await startMirror(sc.qsd, sc.qsd, { jobId: 'ei', targetFault: 'first-write', onTargetError: 'ignore' });
    await sc.oracle.waitForStatus('ei', 'ready');
    await sc.control.verb('ei', 'complete');
    await sc.oracle.waitForStatus('ei', 'null');

    expect(sc.oracle.statusSequence('ei')).toEqual(['created', 'running', 'ready', 'waiting', 'pending', 'concluded', 'null']);
    expect(sc.oracle.jobEvents('ei').find((event) => event.event === 'BLOCK_JOB_ERROR')?.data).toMatchObject({ action: 'ignore' });
    const transitions = await sc.expectEngineMatchesOracle('ei');
    expectReadyTruth(transitions);
    expect(concludedJob(transitions)).toMatchObject({ outcome: 'completed', pivoted: true });
    expect(concludedJob(transitions)?.lastIoError).toMatchObject({ operation: 'write', action: 'ignore' });
  });

  it('on-target-error=stop after ready (guest write): standby(error) keeps ready > resume > ready > completed', async () => {
    sc = await openScenario();
    await startNbdServer(sc.qsd, nbdSocketIn(sc.qsd.dir));
    const job = await startMirror(sc.qsd, sc.qsd, { jobId: 'ey', targetFault: 'after-ready', onTargetError: 'stop' });
    const guest = await GuestWriter.open(sc.qsd, job.device, nbdSocketIn(sc.qsd.dir));
    await sc.oracle.waitForStatus('ey', 'ready');
    await guest.write(1, 1);
    const standby = await sc.recorder.waitForState('ey', 'standby');
    expect(standby.to).toMatchObject({ ready: true, pauseReason: 'error' });
    expect(await blockJob(sc.qsd, 'ey')).toMatchObject({ status: 'standby', ready: true, 'io-status': 'failed' });
    await sc.control.verb('ey', 'resume');
    await sc.recorder.waitForState('ey', 'ready');
    await sc.control.verb('ey', 'complete');
    await sc.oracle.waitForStatus('ey', 'null');
    await guest.close();

    expect(sc.oracle.statusSequence('ey')).toEqual(['created', 'running', 'ready', 'standby', 'ready', 'waiting', 'pending', 'concluded', 'null']);
    expect(sc.oracle.jobEvents('ey').find((event) => event.event === 'BLOCK_JOB_ERROR')?.data).toMatchObject({ operation: 'write', action: 'stop' });
    const transitions = await sc.expectEngineMatchesOracle('ey');
    expectReadyTruth(transitions);
    expect(concludedJob(transitions)).toMatchObject({ outcome: 'completed', pivoted: true });
  });

  it('stream read error with auto-dismiss=false: concluded(failed) stays listed with its error until dismissed', async () => {
    sc = await openScenario();
    await startStream(sc.qsd, sc.qsd, { jobId: 'se', baseFault: 'first-read', autoDismiss: false });
    await sc.oracle.waitForStatus('se', 'concluded');
    expect(await jobInfo(sc.qsd, 'se')).toMatchObject({ status: 'concluded', error: 'Input/output error' });
    const concluded = await sc.recorder.waitForState('se', 'concluded');
    expect(concluded.job).toMatchObject({ outcome: 'failed', error: 'Input/output error' });
    await sc.control.verb('se', 'dismiss');
    await sc.oracle.waitForStatus('se', 'null');

    expect(sc.oracle.statusSequence('se')).toEqual(['created', 'running', 'aborting', 'concluded', 'null']);
    await sc.expectEngineMatchesOracle('se');
    expect(sc.engine.job(sc.vm, 'se')).toMatchObject({ state: 'dismissed', outcome: 'failed' });
  });
});
