/**
 * The engine against a scripted peer playing QEMU with JOB_STATUS_CHANGE: 5.2 (complete refused in
 * standby before 6.0) and 7.2 orderings that a real daemon shows only by chance.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { blockJobRow, startEngineRig, type EngineRig } from './jobs-harness.js';

let rig: EngineRig | undefined;
afterEach(async () => {
  await rig?.close();
  rig = undefined;
});

const V52 = { major: 5, minor: 2, micro: 0 };
const V72 = { major: 7, minor: 2, micro: 22 };

/** Emits JOB_STATUS_CHANGEs and keeps the peer's query rows in step, as QEMU would. */
function jsc(r: EngineRig, id: string, ...statuses: string[]): void {
  for (const status of statuses) {
    for (const rows of [r.blockJobs, r.jobs]) {
      const index = rows.findIndex((row) => (row['device'] ?? row['id']) === id);
      if (status === 'null') {
        if (index >= 0) rows.splice(index, 1);
      } else if (index >= 0) {
        rows[index]!['status'] = status;
      } else if (rows === r.blockJobs) {
        rows.push(blockJobRow(id, { status, ready: false }));
      } else {
        rows.push({ id, type: 'mirror', status, 'current-progress': 0, 'total-progress': 100 });
      }
    }
    r.emit('JOB_STATUS_CHANGE', { id, status });
  }
}

describe('JOB_STATUS_CHANGE monitors (scripted)', () => {
  it('QEMU 5.2: a standby blip is swallowed; a lasting standby shows ready=true, and complete-in-standby is reported unsupported', async () => {
    rig = await startEngineRig(V52);
    const { registry } = rig;
    await rig.waitFor('connected', () => registry.capabilities('vm1')?.queryJobs === true);
    expect(registry.capabilities('vm1')).toMatchObject({ jobStatusChange: true, status: true, completeInStandby: false });
    jsc(rig, 'm0', 'created', 'running', 'ready');
    rig.emit('BLOCK_JOB_READY', { device: 'm0', type: 'mirror', len: 100, offset: 100, speed: 0 });
    await rig.waitFor('m0 ready', () => registry.job('vm1', 'm0')?.state === 'ready');

    jsc(rig, 'm0', 'standby', 'ready'); // a drain
    jsc(rig, 'm0', 'standby'); // another QMP client paused it
    await rig.waitFor('m0 standby', () => registry.job('vm1', 'm0')?.state === 'standby', 5_000);
    expect(registry.job('vm1', 'm0')).toMatchObject({ ready: true, pauseReason: 'user' });
    jsc(rig, 'm0', 'ready');
    await rig.waitFor('m0 ready again', () => registry.job('vm1', 'm0')?.state === 'ready');
    expect(rig.labels('m0')).toEqual(['created', 'running', 'ready+', 'standby+/user', 'ready+']);
  });

  it('backup start blip (created, running, paused, running) shows no pause; a failed start shows nothing', async () => {
    rig = await startEngineRig(V72);
    const { registry } = rig;
    await rig.waitFor('connected', () => registry.capabilities('vm1')?.queryJobs === true);
    jsc(rig, 'b0', 'created', 'running', 'paused', 'running');
    jsc(rig, 'bad', 'created', 'null');
    jsc(rig, 'b0', 'waiting', 'pending');
    rig.emit('BLOCK_JOB_COMPLETED', { device: 'b0', type: 'backup', len: 100, offset: 100, speed: 0 });
    jsc(rig, 'b0', 'concluded', 'null');
    await rig.waitFor('b0 dismissed', () => registry.job('vm1', 'b0')?.state === 'dismissed');
    await rig.polls(2);
    expect(rig.labels('b0')).toEqual(['created', 'running', 'waiting', 'pending', 'concluded=completed', 'dismissed=completed']);
    expect(rig.labels('bad')).toEqual([]);
    expect(registry.job('vm1', 'bad')).toBeUndefined();
    expect(registry.snapshot()[0]?.jobs.map((j) => j.id)).toEqual(['b0']);
  });

  it('events written before a poll reply win over the older half of the poll', async () => {
    rig = await startEngineRig(V72, { activePollMs: 200 });
    const { registry, peer, blockJobs } = rig;
    await rig.waitFor('connected', () => registry.capabilities('vm1')?.queryJobs === true);
    jsc(rig, 'm1', 'created', 'running');
    await rig.waitFor('m1 running', () => registry.job('vm1', 'm1')?.state === 'running');
    Object.assign(blockJobs[0]!, { offset: 100 });
    // On the next connection, QEMU answers query-block-jobs with "running", then emits JSC ready,
    // then answers query-jobs: the poll's snapshot is older than the event.
    const answer = peer.handler;
    let raced = false;
    peer.handler = (execute, args, id, p) => {
      if (execute !== 'query-jobs' || raced || !peer.received.some((c) => c.connection >= 2)) return answer?.(execute, args, id, p);
      raced = true;
      return new Promise((resolve) =>
        setImmediate(() => {
          jsc(rig!, 'm1', 'ready');
          resolve(answer?.(execute, args, id, p));
        }),
      );
    };
    peer.dropClient();
    await rig.waitFor('the raced reconcile', () => raced);
    await rig.polls(1); // the reconcile reply and one more poll have been applied
    expect(registry.job('vm1', 'm1')).toMatchObject({ state: 'ready', stale: false });
    expect(rig.labels('m1')).toEqual(['created', 'running', 'ready+']);
  });

  it.each([
    [undefined, 'completed'],
    ['Operation canceled', 'cancelled'],
    ['Input/output error', 'failed'],
  ])('a job that concluded while the monitor was away (auto-dismiss=false, error %s) is reconciled as %s', async (error, outcome) => {
    rig = await startEngineRig(V72);
    const { registry, peer, blockJobs, jobs } = rig;
    await rig.waitFor('connected', () => registry.capabilities('vm1')?.queryJobs === true);
    const row = blockJobRow('s0', { type: 'stream', status: 'running', 'auto-dismiss': false });
    blockJobs.push(row);
    jobs.push({ id: 's0', type: 'stream', status: 'running', 'current-progress': 0, 'total-progress': 100 });
    await rig.waitFor('s0 running', () => registry.job('vm1', 's0')?.state === 'running');
    peer.dropClient();
    Object.assign(row, { status: 'concluded', ...(error ? { error } : {}) });
    Object.assign(jobs[0]!, { status: 'concluded', ...(error ? { error } : {}) });
    await rig.waitFor('s0 concluded', () => registry.job('vm1', 's0')?.state === 'concluded');
    expect(registry.job('vm1', 's0')).toMatchObject({ outcome, source: 'reconcile', stale: false });
    expect(registry.job('vm1', 's0')?.error).toBe(outcome === 'failed' ? error : undefined);
  });

  it('ended jobs leave the snapshot after the retention time', async () => {
    rig = await startEngineRig(V72, { retentionMs: 300 });
    const { registry } = rig;
    await rig.waitFor('connected', () => registry.capabilities('vm1')?.queryJobs === true);
    jsc(rig, 'c0', 'created', 'running', 'aborting');
    rig.emit('BLOCK_JOB_CANCELLED', { device: 'c0', type: 'commit', len: 100, offset: 3, speed: 0 });
    jsc(rig, 'c0', 'concluded', 'null');
    await rig.waitFor('c0 dismissed', () => registry.job('vm1', 'c0')?.state === 'dismissed');
    expect(registry.job('vm1', 'c0')).toMatchObject({ outcome: 'cancelled' });
    await rig.waitFor('c0 pruned', () => registry.job('vm1', 'c0') === undefined, 10_000);
    // The id is reused later: a new incarnation, not a resurrection.
    jsc(rig, 'c0', 'created', 'running');
    await rig.waitFor('c0 again', () => registry.job('vm1', 'c0')?.state === 'running');
    expect(registry.job('vm1', 'c0')?.incarnation).toBe(2);
  });
});
