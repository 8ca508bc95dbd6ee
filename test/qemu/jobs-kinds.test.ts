/**
 * Stream, commit (non-active and active), backup (full with its start blip, none until cancelled), and the
 * manual tails (auto-finalize=false with finalize, auto-dismiss=false with dismiss) on a real
 * qemu-storage-daemon; QEMU's own sequence (reference §4) and the engine's transitions against it.
 */
import { afterEach, expect, it } from 'vitest';
import { nbdSocketIn, startBackup, startCommit, startMirror, startNbdServer, startStream } from '../../src/lab/jobs.js';
import { describeQemu } from '../utils/qemu-gate.js';
import { cleanupLeftoversAfterAll } from '../utils/qsd.js';
import { expectReadyTruth, openScenario, type Scenario } from '../utils/job-scenarios.js';
import type { JobTransition } from '../../src/jobs/types.js';
import { blockJob, jobInfo, type BlockJobRow } from '../utils/job-scenarios-qmp.js';

const SELF_ENDING = ['created', 'running', 'waiting', 'pending', 'concluded', 'null'];

const concludedJob = (transitions: JobTransition[]) => transitions.find((t) => t.to.state === 'concluded')?.job;

describeQemu('stream, commit, backup and manual tails (real QEMU)', () => {
  cleanupLeftoversAfterAll();
  let sc: Scenario;
  afterEach(async () => sc?.dispose());

  it('stream: created > running > waiting > pending > concluded(completed) > dismissed', async () => {
    sc = await openScenario();
    await startStream(sc.qsd, sc.qsd, { jobId: 'st' });
    await sc.oracle.waitForStatus('st', 'null');

    expect(sc.oracle.statusSequence('st')).toEqual(SELF_ENDING);
    expect(sc.oracle.jobEvents('st').map((event) => event.event)).not.toContain('BLOCK_JOB_READY');

    const transitions = await sc.expectEngineMatchesOracle('st');
    expectReadyTruth(transitions);
    expect(concludedJob(transitions)?.outcome).toBe('completed');
  });

  it('commit, non-active (mid into base): no ready, ends by itself', async () => {
    sc = await openScenario();
    await startCommit(sc.qsd, sc.qsd, { jobId: 'cn', active: false });
    await sc.oracle.waitForStatus('cn', 'null');

    expect(sc.oracle.statusSequence('cn')).toEqual(SELF_ENDING);
    expect(sc.oracle.jobEvents('cn').map((event) => event.event)).not.toContain('BLOCK_JOB_READY');

    const transitions = await sc.expectEngineMatchesOracle('cn');
    expectReadyTruth(transitions);
    expect(concludedJob(transitions)?.outcome).toBe('completed');
  });

  it('commit, active: starts at offset = len = 0 (not done, not ready), reaches ready, completes', async () => {
    sc = await openScenario({ engine: { activePollMs: 20 } });
    // Query from the oracle's monitor the moment QEMU announces the job, before the job has measured its
    // work (a large sparse disk makes that scan take a while). On a loaded machine the query may come too
    // late: then that job is cancelled and a fresh one tried.
    let jobId = '';
    let first: BlockJobRow | undefined;
    for (let attempt = 1; attempt <= 8; attempt++) {
      jobId = `ca${attempt}`;
      const id = jobId;
      let firstRow: Promise<BlockJobRow | undefined> | undefined;
      const stopListening = sc.oracle.raw.onEvent((event) => {
        if (event.event === 'JOB_STATUS_CHANGE' && event.data.id === id) firstRow ??= blockJob(sc.oracle.raw, id);
      });
      await startCommit(sc.qsd, sc.qsd, { jobId, active: true, diskMiB: 64 * 1024 });
      stopListening();
      first = await firstRow;
      if (first?.len === 0) break;
      await sc.control.verb(jobId, 'force-cancel');
      await sc.oracle.waitForStatus(jobId, 'null');
    }
    expect(first, 'the first query caught the job before it measured its work').toMatchObject({ status: 'running', offset: 0, len: 0, ready: false });
    // offset == len == 0 is neither done nor ready: the engine saw the job start and nothing more.
    expect(sc.recorder.states(jobId).filter((state) => state !== 'created' && state !== 'running')).toEqual([]);

    await sc.oracle.waitForStatus(jobId, 'ready');
    await sc.control.verb(jobId, 'complete');
    await sc.oracle.waitForStatus(jobId, 'null');
    expect(sc.oracle.statusSequence(jobId)).toEqual(['created', 'running', 'ready', 'waiting', 'pending', 'concluded', 'null']);

    const transitions = await sc.expectEngineMatchesOracle(jobId);
    expectReadyTruth(transitions);
    expect(concludedJob(transitions)).toMatchObject({ outcome: 'completed', pivoted: true });
  });

  it('backup sync=full: the paused > running blip at start is internal and absent from the engine', async () => {
    sc = await openScenario();
    await startBackup(sc.qsd, sc.qsd, { jobId: 'bk' });
    await sc.oracle.waitForStatus('bk', 'null');

    expect(sc.oracle.statusSequence('bk')).toEqual(['created', 'running', 'paused', 'running', 'waiting', 'pending', 'concluded', 'null']);
    expect(sc.expectedStates('bk')).toEqual(['created', 'running', 'waiting', 'pending', 'concluded', 'dismissed']);

    const transitions = await sc.expectEngineMatchesOracle('bk');
    expect(concludedJob(transitions)?.outcome).toBe('completed');
  });

  it('backup sync=none: runs until cancelled > aborting > concluded(cancelled)', async () => {
    sc = await openScenario();
    await startBackup(sc.qsd, sc.qsd, { jobId: 'bn', sync: 'none' });
    await sc.oracle.waitForStatus('bn', 'running');
    await sc.control.verb('bn', 'force-cancel');
    await sc.oracle.waitForStatus('bn', 'null');

    expect(sc.oracle.statusSequence('bn')).toEqual(['created', 'running', 'paused', 'running', 'aborting', 'concluded', 'null']);
    expect(sc.oracle.jobEvents('bn').map((event) => event.event)).toContain('BLOCK_JOB_CANCELLED');
    expect(sc.expectedStates('bn')).toEqual(['created', 'running', 'aborting', 'concluded', 'dismissed']);

    const transitions = await sc.expectEngineMatchesOracle('bn');
    expect(concludedJob(transitions)?.outcome).toBe('cancelled');
  });

  it('auto-finalize=false: waits in pending (BLOCK_JOB_PENDING, complete refused) until job-finalize', async () => {
    sc = await openScenario();
    await startStream(sc.qsd, sc.qsd, { jobId: 'af', autoFinalize: false });
    await sc.oracle.waitForStatus('af', 'pending');
    // QEMU announces it right after the status change.
    await sc.oracle.raw.waitForEvent((event) => event.event === 'BLOCK_JOB_PENDING' && event.data.id === 'af');
    await expect(sc.control.verb('af', 'complete')).rejects.toMatchObject({ qmpClass: 'GenericError' });
    expect((await jobInfo(sc.qsd, 'af'))?.status).toBe('pending');
    await sc.recorder.waitForState('af', 'pending');
    expect(sc.engine.job(sc.vm, 'af')).toMatchObject({ state: 'pending', autoFinalize: false });
    await sc.control.verb('af', 'finalize');
    await sc.oracle.waitForStatus('af', 'null');

    expect(sc.oracle.statusSequence('af')).toEqual(SELF_ENDING);

    const transitions = await sc.expectEngineMatchesOracle('af');
    expect(concludedJob(transitions)?.outcome).toBe('completed');
  });

  it('auto-dismiss=false: stays concluded (listed by query-jobs) until job-dismiss', async () => {
    sc = await openScenario();
    await startMirror(sc.qsd, sc.qsd, { jobId: 'ad', autoDismiss: false });
    await sc.oracle.waitForStatus('ad', 'ready');
    await sc.control.verb('ad', 'complete');
    await sc.oracle.waitForStatus('ad', 'concluded');
    const concluded = await jobInfo(sc.qsd, 'ad');
    expect(concluded).toMatchObject({ status: 'concluded' });
    expect(concluded?.error).toBeUndefined();
    await sc.recorder.waitForState('ad', 'concluded');
    expect(sc.engine.job(sc.vm, 'ad')).toMatchObject({ state: 'concluded', outcome: 'completed', pivoted: true, autoDismiss: false });
    await sc.control.verb('ad', 'dismiss');
    await sc.oracle.waitForStatus('ad', 'null');

    expect(await jobInfo(sc.qsd, 'ad')).toBeUndefined();
    expect(sc.oracle.statusSequence('ad')).toEqual(['created', 'running', 'ready', 'waiting', 'pending', 'concluded', 'null']);

    const transitions = await sc.expectEngineMatchesOracle('ad');
    expectReadyTruth(transitions);
    expect(sc.engine.job(sc.vm, 'ad')).toMatchObject({ state: 'dismissed', outcome: 'completed' });
  });

  it('failed start (permission conflict): QEMU blips created > null, the engine publishes no job', async () => {
    sc = await openScenario();
    // A writable export of the intermediate layer holds the write permission a stream must unshare
    // (as in QEMU's tests/qemu-iotests/tests/qsd-jobs).
    for (const [name, backing] of [['base', undefined], ['mid', 'base.qcow2'], ['top', 'mid.qcow2']] as const) {
      await sc.qsd.createImage(`fs-${name}.qcow2`, { sizeMiB: 32, ...(backing ? { backing: `fs-${backing}` } : {}) });
    }
    await sc.qsd.addQcow2Node('fs-base', 'fs-base.qcow2', { backing: null });
    await sc.qsd.addQcow2Node('fs-mid', 'fs-mid.qcow2', { backing: 'fs-base' });
    await sc.qsd.addQcow2Node('fs-top', 'fs-top.qcow2', { backing: 'fs-mid' });
    await startNbdServer(sc.qsd, nbdSocketIn(sc.qsd.dir));
    await sc.qsd.execute('block-export-add', { type: 'nbd', id: 'fs-mid-export', 'node-name': 'fs-mid', writable: true });

    await expect(sc.qsd.execute('block-stream', { 'job-id': 'fs', device: 'fs-top', 'base-node': 'fs-base' })).rejects.toMatchObject({
      qmpClass: 'GenericError',
    });
    await sc.oracle.waitForStatus('fs', 'null');
    expect(sc.oracle.statusSequence('fs')).toEqual(['created', 'null']);
    // A later job as a barrier: the engine handles its events after the failed start's created > null.
    await startStream(sc.qsd, sc.qsd, { jobId: 'after' });
    await sc.recorder.waitForState('after', 'running');
    expect(sc.recorder.transitions('fs')).toEqual([]);
    expect(sc.engine.job(sc.vm, 'fs')).toBeUndefined();
  });

  it('drains on a running mirror (refused job starts on its source): the paused > running blips are absent', async () => {
    sc = await openScenario();
    const mirror = await startMirror(sc.qsd, sc.qsd, { jobId: 'dm' });
    await sc.oracle.waitForStatus('dm', 'running');
    await sc.qsd.createImage('dm-x.qcow2', { sizeMiB: 32 });
    await sc.qsd.addQcow2Node('dm-x', 'dm-x.qcow2');
    await expect(sc.qsd.execute('block-stream', { 'job-id': 'dm-s', device: mirror.device })).rejects.toMatchObject({ qmpClass: 'GenericError' });
    await expect(
      sc.qsd.execute('blockdev-backup', { 'job-id': 'dm-b', device: mirror.device, target: 'dm-x', sync: 'full' }),
    ).rejects.toMatchObject({ qmpClass: 'GenericError' });
    await sc.oracle.waitForStatus('dm', 'ready');
    await sc.control.verb('dm', 'complete');
    await sc.oracle.waitForStatus('dm', 'null');

    expect(sc.oracle.statusSequence('dm'), 'QEMU drained the mirror (internal pauses)').toContain('paused');
    expect(sc.expectedStates('dm')).toEqual(['created', 'running', 'ready', 'waiting', 'pending', 'concluded', 'dismissed']);
    const transitions = await sc.expectEngineMatchesOracle('dm');
    expectReadyTruth(transitions);
  });
});
