/**
 * The other job verbs through the controller, on a real qemu-storage-daemon with the real engine:
 * cancels (soft and force), pause/resume, set-speed, finalize/dismiss, authorization, idempotency and
 * a daemon killed while a verb is in flight. QEMU's own JOB_STATUS_CHANGE sequence (oracle monitor)
 * is the judge of what happened.
 */
import { afterEach, expect, it, vi } from 'vitest';
import type { Principal } from '../../src/gateway/auth.js';
import { makeJobController, type CommandContext, type JobController } from '../../src/gateway/control/index.js';
import type { CommandMessage } from '../../src/generated/schema-types.js';
import { startMirror, startStream } from '../../src/lab/jobs.js';
import { describeQemu } from '../utils/qemu-gate.js';
import { cleanupLeftoversAfterAll } from '../utils/qsd.js';
import { openScenario, waitUntil, type Scenario } from '../utils/job-scenarios.js';
import { blockJob } from '../utils/job-scenarios-qmp.js';
import { LogRecorder, qmpCalls } from '../utils/log-recorder.js';

const MiB = 1024 * 1024;

function context(principal?: Principal): CommandContext {
  return { principal, connectionId: 'conn-1', signal: new AbortController().signal };
}

let nextId = 0;
function command(job: string, action: CommandMessage['action'], fields: Partial<CommandMessage> = {}): CommandMessage {
  return { type: 'command', id: `c${++nextId}`, vm: 'vm1', job, action, ...fields };
}

describeQemu('job control: verbs (real QEMU)', () => {
  cleanupLeftoversAfterAll();
  let sc: Scenario | undefined;
  let controller: JobController | undefined;
  let log: LogRecorder;
  afterEach(async () => {
    controller?.close();
    await sc?.dispose();
    sc = undefined;
  });

  async function open(): Promise<Scenario> {
    sc = await openScenario();
    log = new LogRecorder();
    controller = makeJobController({ source: sc.engine, control: sc.engine.control, logger: log });
    return sc;
  }

  it('soft cancel after ready completes without pivot; force cancel after ready is cancelled', async () => {
    const sc = await open();
    await startMirror(sc.qsd, sc.qsd, { jobId: 'soft', dataMiB: 4, speed: 0 });
    await startMirror(sc.qsd, sc.qsd, { jobId: 'hard', dataMiB: 4, speed: 0 });
    await sc.recorder.waitForState('soft', 'ready');
    await sc.recorder.waitForState('hard', 'ready');

    const soft = await controller!.handle(command('soft', 'cancel', { force: false, await: 'concluded' }), context());
    expect(soft).toMatchObject({ ok: true, job: { state: 'concluded', outcome: 'completed', pivoted: false } });
    await sc.oracle.waitForStatus('soft', 'null');
    expect(sc.oracle.statusSequence('soft')).toEqual(['created', 'running', 'ready', 'waiting', 'pending', 'concluded', 'null']);

    const hard = await controller!.handle(command('hard', 'cancel', { force: true, await: 'concluded' }), context());
    expect(hard).toMatchObject({ ok: true, job: { state: 'concluded', outcome: 'cancelled', pivoted: false } });
    await sc.oracle.waitForStatus('hard', 'null');
    expect(sc.oracle.statusSequence('hard')).toEqual(['created', 'running', 'ready', 'aborting', 'concluded', 'null']);
    expect(sc.oracle.jobEvents('hard').some((e) => e.event === 'BLOCK_JOB_CANCELLED')).toBe(true);

    // Every accepted command is logged with who, what and QEMU's reply.
    const sent = log.entries.filter((e) => e.message === 'job verb sent').map((e) => e.fields);
    expect(sent).toEqual([
      expect.objectContaining({ job: 'soft', principal: 'anonymous', qmp: 'block-job-cancel', arguments: { device: 'soft', force: false }, reply: 'return' }),
      expect.objectContaining({ job: 'hard', principal: 'anonymous', qmp: 'job-cancel', arguments: { id: 'hard' }, reply: 'return' }),
    ]);
  });

  it('pause and resume in running and in ready; set-speed shows in the state', async () => {
    const sc = await open();
    await startMirror(sc.qsd, sc.qsd, { jobId: 'p', dataMiB: 16, speed: 2 * MiB });
    await sc.recorder.waitForState('p', 'running');

    const paused = await controller!.handle(command('p', 'pause'), context());
    expect(paused.ok).toBe(true);
    await sc.recorder.waitForState('p', 'paused');
    expect(sc.engine.job('vm1', 'p')).toMatchObject({ state: 'paused', pauseReason: 'user' });
    // A second pause is QEMU's to refuse; its words come back verbatim.
    const again = await controller!.handle(command('p', 'pause'), context());
    expect(again).toMatchObject({ ok: false, error: { code: 'qmp_error', qmp: { class: 'GenericError' } } });
    // finalize is for pending jobs only: refused before QEMU, with the state.
    const finalize = await controller!.handle(command('p', 'finalize'), context());
    expect(finalize).toMatchObject({ ok: false, error: { code: 'verb_not_allowed' }, job: { state: 'paused' } });

    const resumed = await controller!.handle(command('p', 'resume'), context());
    expect(resumed.ok).toBe(true);
    await waitUntil('p running again', () => sc.recorder.transitions('p').at(-1)?.to.state === 'running');

    const speed = await controller!.handle(command('p', 'set-speed', { speed: 0 }), context());
    expect(speed.ok).toBe(true);
    expect(await blockJob(sc.oracle.raw, 'p')).toMatchObject({ speed: 0 });
    await waitUntil('the engine to show speed 0', () => sc.engine.job('vm1', 'p')?.speed === 0);

    await sc.recorder.waitForState('p', 'ready');
    const standby = await controller!.handle(command('p', 'pause'), context());
    expect(standby.ok).toBe(true);
    await sc.recorder.waitForState('p', 'standby');
    expect(sc.engine.job('vm1', 'p')).toMatchObject({ state: 'standby', ready: true, pauseReason: 'user' });
    // QEMU refuses a soft cancel of a user-paused job: refused here, before QEMU, with the state.
    const softCancel = await controller!.handle(command('p', 'cancel'), context());
    expect(softCancel).toMatchObject({ ok: false, error: { code: 'verb_not_allowed' }, job: { state: 'standby' } });
    const back = await controller!.handle(command('p', 'resume'), context());
    expect(back.ok).toBe(true);
    await waitUntil('p ready again', () => sc.recorder.transitions('p').at(-1)?.to.state === 'ready');

    const done = await controller!.handle(command('p', 'complete', { await: 'concluded' }), context());
    expect(done).toMatchObject({ ok: true, job: { outcome: 'completed', pivoted: true, speed: 0 } });
    await sc.oracle.waitForStatus('p', 'null');
    expect(sc.oracle.statusSequence('p')).toEqual([
      'created', 'running', 'paused', 'running', 'ready', 'standby', 'ready', 'waiting', 'pending', 'concluded', 'null',
    ]);
  });

  it('finalize with auto-finalize=false, dismiss with auto-dismiss=false; complete in pending is refused', async () => {
    const sc = await open();
    await startStream(sc.qsd, sc.qsd, { jobId: 's', dataMiB: 4, speed: 0, autoFinalize: false, autoDismiss: false });
    await sc.recorder.waitForState('s', 'pending');
    const execute = vi.spyOn(sc.client, 'execute');

    const early = await controller!.handle(command('s', 'dismiss'), context());
    expect(early).toMatchObject({ ok: false, error: { code: 'verb_not_allowed' }, job: { state: 'pending' } });
    const complete = await controller!.handle(command('s', 'complete'), context());
    expect(complete).toMatchObject({ ok: false, error: { code: 'verb_not_allowed' }, job: { state: 'pending' } });
    expect(qmpCalls(execute, 's')).toEqual([]);

    const finalized = await controller!.handle(command('s', 'finalize', { await: 'concluded' }), context());
    expect(finalized).toMatchObject({ ok: true, job: { state: 'concluded', outcome: 'completed' } });
    // auto-dismiss=false: it stays concluded (and listed) until dismissed.
    await sc.oracle.waitForStatus('s', 'concluded');
    expect(sc.oracle.statusSequence('s')).toEqual(['created', 'running', 'waiting', 'pending', 'concluded']);

    const dismissed = await controller!.handle(command('s', 'dismiss'), context());
    expect(dismissed.ok).toBe(true);
    await sc.oracle.waitForStatus('s', 'null');
    await sc.recorder.waitForState('s', 'dismissed');
    expect(qmpCalls(execute, 's').map((c) => c.command)).toEqual(['job-finalize', 'job-dismiss']);
    // The job is over: any further verb says so.
    const late = await controller!.handle(command('s', 'pause'), context());
    expect(late).toMatchObject({ ok: false, error: { code: 'job_ended' } });
  });

  it('a read-only token is refused, a token for another VM too; nothing reaches QEMU', async () => {
    const sc = await open();
    await startMirror(sc.qsd, sc.qsd, { jobId: 'a', dataMiB: 4, speed: 0 });
    await sc.recorder.waitForState('a', 'ready');
    const execute = vi.spyOn(sc.client, 'execute');
    const readOnly: Principal = { name: 'dashboard', scopes: new Set(['read']), vms: null };
    const otherVm: Principal = { name: 'ops-vm2', scopes: new Set(['read', 'control']), vms: new Set(['vm2']) };
    const operator: Principal = { name: 'ops', scopes: new Set(['read', 'control']), vms: new Set(['vm1']) };

    expect(await controller!.handle(command('a', 'complete'), context(readOnly))).toMatchObject({ ok: false, error: { code: 'forbidden' } });
    expect(await controller!.handle(command('a', 'complete'), context(otherVm))).toMatchObject({ ok: false, error: { code: 'forbidden' } });
    expect(qmpCalls(execute, 'a')).toEqual([]);

    const ok = await controller!.handle(command('a', 'complete', { await: 'concluded' }), context(operator));
    expect(ok).toMatchObject({ ok: true, job: { outcome: 'completed', pivoted: true } });
    expect(log.entries.find((e) => e.message === 'job verb sent')?.fields).toMatchObject({ principal: 'ops', qmp: 'job-complete', reply: 'return' });
  });

  it('a repeated command id gets the same answer and no second QMP call', async () => {
    const sc = await open();
    await startMirror(sc.qsd, sc.qsd, { jobId: 'i', dataMiB: 16, speed: 2 * MiB });
    await sc.recorder.waitForState('i', 'running');
    const execute = vi.spyOn(sc.client, 'execute');
    const pause = command('i', 'pause');
    const [first, joined] = await Promise.all([controller!.handle(pause, context()), controller!.handle({ ...pause }, context())]);
    const repeated = await controller!.handle({ ...pause }, context());
    expect(first.ok).toBe(true);
    expect(joined).toBe(first);
    expect(repeated).toBe(first);
    expect(qmpCalls(execute, 'i').map((c) => c.command)).toEqual(['job-pause']);
    // Same id, different command: refused, not confused with the first.
    const conflicting = await controller!.handle({ ...pause, action: 'resume' }, context());
    expect(conflicting).toMatchObject({ ok: false, error: { code: 'invalid_message' } });
    // Another connection may use the same id for its own command.
    const elsewhere = await controller!.handle({ ...pause, action: 'resume' }, { ...context(), connectionId: 'conn-2' });
    expect(elsewhere.ok).toBe(true);
    expect(qmpCalls(execute, 'i').map((c) => c.command)).toEqual(['job-pause', 'job-resume']);
  });

  it('qsd killed while a verb is in flight: outcome_unknown', async () => {
    const sc = await open();
    await startMirror(sc.qsd, sc.qsd, { jobId: 'k', dataMiB: 16, speed: 2 * MiB });
    await sc.recorder.waitForState('k', 'running');
    // Freeze the daemon so the verb is surely written but never answered, then kill it.
    process.kill(sc.qsd.pid, 'SIGSTOP');
    // handle() writes the verb before it returns (nothing to wait for before the verb goes out).
    const answer = controller!.handle(command('k', 'pause'), context());
    await sc.qsd.kill('SIGKILL');
    const result = await answer;
    expect(result).toMatchObject({ ok: false, error: { code: 'outcome_unknown' }, job: { id: 'k' } });
    expect(log.entries.find((e) => e.message === 'job verb sent')?.fields).toMatchObject({ qmp: 'job-pause' });
  });
});
