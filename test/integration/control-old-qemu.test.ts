/**
 * Job control against a scripted peer playing QEMUs that 7.2 cannot show: 2.11 (no job-* verbs: the
 * controller must speak block-job-*) and 5.2 (complete refused in standby, a drain blip right when
 * the client completes: retried once the job is ready again, never reported as a failure).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { makeJobController, type CommandContext, type JobController } from '../../src/gateway/control/index.js';
import type { CommandMessage } from '../../src/generated/schema-types.js';
import { LogRecorder } from '../utils/log-recorder.js';
import type { QmpPeerReply, ReceivedCommand } from '../utils/scripted-peer.js';
import { blockJobRow, startEngineRig, type EngineRig } from './jobs-harness.js';

let rig: EngineRig | undefined;
let controller: JobController | undefined;
afterEach(async () => {
  controller?.close();
  await rig?.close();
  rig = undefined;
});

const context = (): CommandContext => ({ principal: undefined, connectionId: 'conn', signal: new AbortController().signal });
let nextId = 0;
const command = (job: string, action: CommandMessage['action'], fields: Partial<CommandMessage> = {}): CommandMessage => ({
  type: 'command',
  id: `c${++nextId}`,
  vm: 'vm1',
  job,
  action,
  ...fields,
});

/** Job verbs the peer received (everything but queries and negotiation). */
const verbsReceived = (rig: EngineRig): ReceivedCommand[] => rig.peer.received.filter((c) => /^(block-)?job-/.test(c.execute));

/** Lets the peer answer job verbs with `verbs`, and everything else as the rig does. */
function scriptVerbs(rig: EngineRig, verbs: (execute: string, args: Record<string, unknown> | undefined) => QmpPeerReply | undefined): void {
  const queries = rig.peer.handler!;
  rig.peer.handler = (execute, args, id, peer) => verbs(execute, args) ?? queries(execute, args, id, peer);
}

describe('job control on QEMU 2.11 (no job-* commands)', () => {
  it('speaks block-job-*: pause, resume, set-speed, and a complete that waits for READY', async () => {
    rig = await startEngineRig({ major: 2, minor: 11, micro: 0 });
    const { registry, blockJobs } = rig;
    controller = makeJobController({ source: registry, control: registry.control, logger: new LogRecorder() });
    blockJobs.push(blockJobRow('j0', { offset: 10, ready: false }));
    await rig.waitFor('j0 running', () => registry.job('vm1', 'j0')?.state === 'running');
    expect(registry.capabilities('vm1')).toMatchObject({ jobVerbs: false });
    const finished = (): void => {
      blockJobs.length = 0;
      rig!.emit('BLOCK_JOB_COMPLETED', { device: 'j0', type: 'mirror', len: 100, offset: 100, speed: 0 });
    };
    scriptVerbs(rig, (execute) => {
      if (execute === 'block-job-complete') setImmediate(finished);
      return execute.startsWith('block-job-') ? { return: {} } : undefined;
    });

    expect((await controller.handle(command('j0', 'pause'), context())).ok).toBe(true);
    expect((await controller.handle(command('j0', 'resume'), context())).ok).toBe(true);
    expect((await controller.handle(command('j0', 'set-speed', { speed: 1024 }), context())).ok).toBe(true);

    const complete = controller.handle(command('j0', 'complete', { await: 'concluded' }), context());
    // offset == len with ready=false: not ready, nothing sent.
    Object.assign(blockJobs[0]!, { offset: 100, len: 100, busy: false });
    await rig.polls(3);
    expect(verbsReceived(rig).map((c) => c.execute)).not.toContain('block-job-complete');

    Object.assign(blockJobs[0]!, { ready: true });
    rig.emit('BLOCK_JOB_READY', { device: 'j0', type: 'mirror', len: 100, offset: 100, speed: 0 });
    const result = await complete;
    expect(result).toMatchObject({ ok: true, job: { state: 'concluded', outcome: 'completed', pivoted: true } });
    expect(verbsReceived(rig).map((c) => [c.execute, c.arguments])).toEqual([
      ['block-job-pause', { device: 'j0' }],
      ['block-job-resume', { device: 'j0' }],
      ['block-job-set-speed', { device: 'j0', speed: 1024 }],
      ['block-job-complete', { device: 'j0' }],
    ]);
  });
});

describe('job control on QEMU 5.2 (complete refused in standby)', () => {
  it('a complete refused during a standby blip is retried once the job is ready again and succeeds', async () => {
    rig = await startEngineRig({ major: 5, minor: 2, micro: 0 });
    const { registry, blockJobs, jobs } = rig;
    controller = makeJobController({ source: registry, control: registry.control, logger: new LogRecorder() });
    await rig.waitFor('the vm to connect', () => registry.snapshot()[0]?.status === 'connected');
    const setStatus = (status: string, ready: boolean): void => {
      blockJobs.splice(0, blockJobs.length, blockJobRow('j0', { status, ready, offset: 100, len: 100, 'auto-finalize': true, 'auto-dismiss': true }));
      jobs.splice(0, jobs.length, { id: 'j0', type: 'mirror', status, 'current-progress': 100, 'total-progress': 100 });
      rig!.emit('JOB_STATUS_CHANGE', { id: 'j0', status });
    };
    setStatus('created', false);
    setStatus('running', false);
    setStatus('ready', true);
    rig.emit('BLOCK_JOB_READY', { device: 'j0', type: 'mirror', len: 100, offset: 100, speed: 0 });
    await rig.waitFor('j0 ready', () => registry.job('vm1', 'j0')?.state === 'ready');
    expect(registry.capabilities('vm1')).toMatchObject({ jobVerbs: true, completeInStandby: false });

    let completes = 0;
    scriptVerbs(rig, (execute) => {
      if (execute !== 'job-complete') return undefined;
      completes++;
      if (completes === 1) {
        // A drain: QEMU < 6.0 sits in standby for a moment and refuses complete meanwhile.
        setStatus('standby', true);
        setTimeout(() => setStatus('ready', true), 30);
        return { error: { class: 'GenericError', desc: "Job 'j0' in state 'standby' cannot accept command verb 'complete'" } };
      }
      setImmediate(() => {
        setStatus('waiting', true);
        setStatus('pending', true);
        blockJobs.length = 0;
        jobs.length = 0;
        rig!.emit('BLOCK_JOB_COMPLETED', { device: 'j0', type: 'mirror', len: 100, offset: 100, speed: 0 });
        rig!.emit('JOB_STATUS_CHANGE', { id: 'j0', status: 'concluded' });
        rig!.emit('JOB_STATUS_CHANGE', { id: 'j0', status: 'null' });
      });
      return { return: {} };
    });

    const result = await controller.handle(command('j0', 'complete', { await: 'concluded' }), context());
    expect(result).toMatchObject({ ok: true, job: { state: 'concluded', outcome: 'completed', pivoted: true } });
    expect(verbsReceived(rig).map((c) => [c.execute, c.arguments])).toEqual([
      ['job-complete', { id: 'j0' }],
      ['job-complete', { id: 'j0' }],
    ]);
  });

  it('complete while the engine shows standby waits (no QMP call) until ready; when=now answers not_ready', async () => {
    rig = await startEngineRig({ major: 5, minor: 2, micro: 0 });
    const { registry, blockJobs, jobs } = rig;
    controller = makeJobController({ source: registry, control: registry.control, logger: new LogRecorder() });
    await rig.waitFor('the vm to connect', () => registry.snapshot()[0]?.status === 'connected');
    const setStatus = (status: string, ready: boolean, paused = false): void => {
      blockJobs.splice(0, blockJobs.length, blockJobRow('j1', { status, ready, paused, offset: 100, len: 100 }));
      jobs.splice(0, jobs.length, { id: 'j1', type: 'mirror', status, 'current-progress': 100, 'total-progress': 100 });
      rig!.emit('JOB_STATUS_CHANGE', { id: 'j1', status });
    };
    setStatus('created', false);
    setStatus('running', false);
    setStatus('ready', true);
    await rig.waitFor('j1 ready', () => registry.job('vm1', 'j1')?.state === 'ready');
    // A user pause in ready: standby.
    const paused = await controller.handle(command('j1', 'pause'), context());
    expect(paused.ok).toBe(true);
    setStatus('standby', true, true);
    await rig.waitFor('j1 standby', () => registry.job('vm1', 'j1')?.state === 'standby');

    const now = await controller.handle(command('j1', 'complete', { when: 'now' }), context());
    expect(now).toMatchObject({ ok: false, error: { code: 'not_ready' }, job: { state: 'standby' } });
    scriptVerbs(rig, (execute) => (execute === 'job-complete' || execute === 'job-resume' ? { return: {} } : undefined));
    const waiting = controller.handle(command('j1', 'complete'), context());
    await rig.polls(2);
    expect(verbsReceived(rig).map((c) => c.execute)).toEqual(['job-pause']);

    expect((await controller.handle(command('j1', 'resume'), context())).ok).toBe(true);
    setStatus('ready', true);
    expect(await waiting).toMatchObject({ ok: true });
    expect(verbsReceived(rig).map((c) => c.execute)).toEqual(['job-pause', 'job-resume', 'job-complete']);
  });
});
