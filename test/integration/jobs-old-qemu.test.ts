/**
 * The engine against a scripted peer playing QEMU versions that 7.2 cannot show: 2.5 (no status,
 * no JOB_STATUS_CHANGE, a `ready` field) and 1.7 (no `ready` field, no query-qmp-schema).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { blockJobRow, startEngineRig, type EngineRig } from './jobs-harness.js';

let rig: EngineRig | undefined;
afterEach(async () => {
  await rig?.close();
  rig = undefined;
});

const readyData = (device: string, len = 100) => ({ device, type: 'mirror', len, offset: len, speed: 0 });

describe('QEMU 2.5: state synthesized from polls and BLOCK_JOB_* events, ready from the field', () => {
  it('ignores offset == len, takes ready from the field/event, ends completed and pivoted, then dismissed', async () => {
    rig = await startEngineRig({ major: 2, minor: 5, micro: 0 });
    const { registry, blockJobs } = rig;
    await rig.waitFor('the vm to connect', () => registry.snapshot()[0]?.status === 'connected');
    expect(registry.capabilities('vm1')).toMatchObject({ status: false, jobStatusChange: false, readyField: true, queryJobs: false });

    blockJobs.push(blockJobRow('j0', { offset: 10 }));
    await rig.waitFor('j0 running', () => registry.job('vm1', 'j0')?.state === 'running');

    // The window QEMU has between offset == len and READY: the engine must not call it ready.
    Object.assign(blockJobs[0]!, { offset: 100, len: 100, busy: false, ready: false });
    await rig.polls(3);
    expect(registry.job('vm1', 'j0')).toMatchObject({ state: 'running', ready: false, progress: { current: 100, total: 100 } });

    Object.assign(blockJobs[0]!, { ready: true });
    rig.emit('BLOCK_JOB_READY', readyData('j0'));
    await rig.waitFor('j0 ready', () => registry.job('vm1', 'j0')?.ready === true);

    // Guest writes: len grows, offset lags, still ready, and no second ready transition.
    Object.assign(blockJobs[0]!, { len: 140, offset: 120 });
    await rig.polls(2);
    expect(registry.job('vm1', 'j0')).toMatchObject({ state: 'ready', ready: true });

    registry.engine('vm1')!.noteVerb('j0', 'complete');
    blockJobs.length = 0;
    rig.emit('BLOCK_JOB_COMPLETED', { device: 'j0', type: 'mirror', len: 140, offset: 140, speed: 0 });
    await rig.waitFor('j0 dismissed', () => registry.job('vm1', 'j0')?.state === 'dismissed');
    expect(rig.labels('j0')).toEqual(['running', 'ready+', 'concluded=completed', 'dismissed=completed']);
    expect(registry.job('vm1', 'j0')).toMatchObject({ outcome: 'completed', pivoted: true, incarnation: 1 });
  });

  it('a second READY after an error is idempotent: one ready transition', async () => {
    rig = await startEngineRig({ major: 2, minor: 5, micro: 0 });
    const { registry, blockJobs } = rig;
    blockJobs.push(blockJobRow('j1', { ready: false }));
    await rig.waitFor('j1 running', () => registry.job('vm1', 'j1')?.state === 'running');
    rig.emit('BLOCK_JOB_READY', readyData('j1'));
    Object.assign(blockJobs[0]!, { ready: true, offset: 100 });
    await rig.waitFor('j1 ready', () => registry.job('vm1', 'j1')?.ready === true);
    rig.emit('BLOCK_JOB_ERROR', { device: 'j1', operation: 'write', action: 'ignore' });
    rig.emit('BLOCK_JOB_READY', readyData('j1'));
    await rig.polls(2);
    expect(rig.labels('j1')).toEqual(['running', 'ready+']);
    expect(registry.job('vm1', 'j1')?.lastIoError).toMatchObject({ operation: 'write', action: 'ignore' });
  });

  it('an error stop shows as paused(error) from the event, and running again after resume', async () => {
    rig = await startEngineRig({ major: 2, minor: 5, micro: 0 });
    const { registry, blockJobs } = rig;
    blockJobs.push(blockJobRow('j2', { ready: false }));
    await rig.waitFor('j2 running', () => registry.job('vm1', 'j2')?.state === 'running');
    Object.assign(blockJobs[0]!, { paused: true, busy: false, 'io-status': 'failed' });
    rig.emit('BLOCK_JOB_ERROR', { device: 'j2', operation: 'write', action: 'stop' });
    await rig.waitFor('j2 paused by the error', () => registry.job('vm1', 'j2')?.pauseReason === 'error');
    Object.assign(blockJobs[0]!, { paused: false, busy: true, 'io-status': 'ok' });
    await rig.waitFor('j2 running again', () => registry.job('vm1', 'j2')?.state === 'running' && rig!.labels('j2').length === 3);
    expect(rig.labels('j2')).toEqual(['running', 'paused/error', 'running']);
  });

  it('a job that vanishes while active ends with outcome unknown, never completed', async () => {
    rig = await startEngineRig({ major: 2, minor: 5, micro: 0 });
    const { registry, blockJobs } = rig;
    blockJobs.push(blockJobRow('j3', { ready: false }));
    await rig.waitFor('j3 running', () => registry.job('vm1', 'j3')?.state === 'running');
    blockJobs.length = 0;
    await rig.waitFor('j3 concluded', () => registry.job('vm1', 'j3')?.state === 'concluded');
    expect(registry.job('vm1', 'j3')).toMatchObject({ outcome: 'unknown' });
    expect(registry.job('vm1', 'j3')?.pivoted).toBeUndefined();
  });
});

describe('QEMU 1.7: no ready field, no query-qmp-schema', () => {
  it('readiness from a READY seen on this connection only; unknown for jobs found at connect and after a reconnect', async () => {
    rig = await startEngineRig({ major: 1, minor: 7, micro: 0 });
    const { registry, blockJobs, peer } = rig;
    blockJobs.push(blockJobRow('old'));
    await rig.waitFor('old listed', () => registry.job('vm1', 'old') !== undefined);
    expect(registry.capabilities('vm1')).toMatchObject({ readyField: false, status: false, queryJobs: false });
    expect(registry.job('vm1', 'old')).toMatchObject({ state: 'running', ready: null });

    blockJobs.push(blockJobRow('new'));
    await rig.waitFor('new listed', () => registry.job('vm1', 'new') !== undefined);
    expect(registry.job('vm1', 'new')).toMatchObject({ state: 'running', ready: false });

    Object.assign(blockJobs[1]!, { offset: 100 });
    rig.emit('BLOCK_JOB_READY', readyData('new'));
    await rig.waitFor('new ready', () => registry.job('vm1', 'new')?.ready === true);
    await rig.polls(2);
    expect(registry.job('vm1', 'new')).toMatchObject({ state: 'ready', ready: true });

    const before = rig.changes.length;
    peer.dropClient();
    await rig.waitFor('disconnected', () => rig!.changes.slice(before).some((c) => c.kind === 'vm' && c.status === 'disconnected'));
    expect(registry.job('vm1', 'new')).toMatchObject({ stale: true, ready: true });
    await rig.waitFor('readiness unknown after the reconnect', () => registry.job('vm1', 'new')?.ready === null);
    expect(registry.job('vm1', 'new')).toMatchObject({ stale: false, state: 'running' });
    expect(rig.labels('new')).toEqual(['running', 'ready+', 'running?']);
    const vmChanges = rig.changes.filter((c) => c.kind === 'vm').map((c) => (c.kind === 'vm' ? c.status : ''));
    expect(vmChanges).toEqual(['connected', 'disconnected', 'connected']);
  });
});
