/**
 * A hung QEMU must not look healthy. The daemon is frozen with SIGSTOP: its monitor socket stays
 * open and the client stays `ready`, but no poll is answered. The engine must report the VM
 * `disconnected` with the reason and its jobs stale, keep probing, and on SIGCONT report it
 * `connected` and reconcile. Job control must neither write to the frozen QEMU nor drop a waiting
 * `complete` (when: ready). QEMU's own JOB_STATUS_CHANGE sequence (oracle monitor) is the judge.
 * An idle VM (no job, the default 10 s idle cadence on the shared clock) is found out too, its
 * timed-out poll retried at once rather than an idle interval later.
 */
import { afterEach, expect, it } from 'vitest';
import { configDefaults } from '../../src/generated/config-defaults.js';
import { makeJobController, type CommandContext, type JobController } from '../../src/gateway/control/index.js';
import type { CommandMessage } from '../../src/generated/schema-types.js';
import type { VmStatusChange } from '../../src/jobs/types.js';
import { MiB, startMirror } from '../../src/lab/jobs.js';
import { describeQemu } from '../utils/qemu-gate.js';
import { cleanupLeftoversAfterAll } from '../utils/qsd.js';
import { openScenario, waitUntil, type Scenario } from '../utils/job-scenarios.js';
import { LogRecorder } from '../utils/log-recorder.js';

const DEFAULT_IDLE_POLL_MS = configDefaults.jobs.idlePollMs;

const POLL_TIMEOUT_MS = 1_000;

const context = (): CommandContext => ({ principal: undefined, connectionId: 'conn-1', signal: new AbortController().signal });
const command = (id: string, job: string, action: CommandMessage['action'], fields: Partial<CommandMessage> = {}): CommandMessage => ({
  type: 'command', id, vm: 'vm1', job, action, ...fields,
});

describeQemu('a hung QEMU (SIGSTOP) is reported, not hidden (real QEMU)', () => {
  cleanupLeftoversAfterAll();
  let sc: Scenario | undefined;
  let controller: JobController | undefined;
  let frozen = false;

  afterEach(async () => {
    if (frozen && sc) process.kill(sc.qsd.pid, 'SIGCONT');
    frozen = false;
    controller?.close();
    await sc?.dispose();
    sc = undefined;
  });

  /** VM status changes the engine emitted after the first `from` stream inputs. */
  const vmChangesSince = (from: number): VmStatusChange[] =>
    sc!.recorder.inputs.slice(from).filter((input): input is VmStatusChange => input.kind === 'vm');

  it('mirror: frozen -> disconnected with the reason, job stale, verbs refused; thawed -> connected, reconciled, ready, the waiting complete pivots', async () => {
    // Short polls, so the hang is seen within ~2 s (two polls of 1 s in a row).
    sc = await openScenario({ engine: { activePollMs: 100, idlePollMs: 100, pollTimeoutMs: POLL_TIMEOUT_MS, unresponsiveAfterPolls: 2 } });
    controller = makeJobController({ source: sc.engine, control: sc.engine.control, logger: new LogRecorder() });
    // ~4 s of copying: surely not ready yet when frozen, ready soon after the thaw.
    await startMirror(sc.qsd, sc.qsd, { jobId: 'm', dataMiB: 8, speed: 2 * MiB });
    await sc.recorder.waitForState('m', 'running');
    const complete = controller.handle(command('c1', 'm', 'complete', { when: 'ready', await: 'concluded', timeoutMs: 60_000 }), context());

    const beforeFreeze = sc.recorder.inputs.length;
    process.kill(sc.qsd.pid, 'SIGSTOP');
    frozen = true;
    const down = await waitUntil('engine reports the VM disconnected', () => vmChangesSince(beforeFreeze).find((c) => c.status === 'disconnected'));
    expect(down.reason).toBe(`monitor unresponsive: no reply to query-block-jobs within ${POLL_TIMEOUT_MS} ms`);
    // The socket is kept (QEMU may only be slow); the jobs' states are marked as no longer current.
    expect(sc.client.state).toBe('ready');
    expect(sc.engine.snapshot()).toEqual([expect.objectContaining({ status: 'disconnected', jobs: [expect.objectContaining({ id: 'm', state: 'running', stale: true })] })]);
    // Nothing is written to a QEMU whose state we do not know.
    const pause = await controller.handle(command('c2', 'm', 'pause'), context());
    expect(pause).toMatchObject({ ok: false, error: { code: 'vm_disconnected' } });
    expect(controller.pendingCommands).toBe(1); // the complete still waits

    const beforeThaw = sc.recorder.inputs.length;
    process.kill(sc.qsd.pid, 'SIGCONT');
    frozen = false;
    await waitUntil('engine reports the VM connected again', () => vmChangesSince(beforeThaw).some((c) => c.status === 'connected'));
    expect(vmChangesSince(beforeThaw).map((c) => c.status)).toEqual(['connected']);
    // The reconcile refreshed the job (still running, or already further along by QEMU's events).
    await waitUntil('job m no longer stale', () => sc!.engine.job('vm1', 'm')?.stale === false);

    const result = await complete;
    expect(result).toMatchObject({ ok: true, job: { id: 'm', state: 'concluded', outcome: 'completed', pivoted: true } });
    await sc.oracle.waitForStatus('m', 'null');
    // QEMU never saw the refused pause, and the engine told exactly QEMU's story, ready included.
    expect(sc.oracle.statusSequence('m')).toEqual(['created', 'running', 'ready', 'waiting', 'pending', 'concluded', 'null']);
    const transitions = await sc.expectEngineMatchesOracle('m');
    expect(transitions.find((t) => t.to.state === 'ready')?.to.ready).toBe(true);
  });

  it('idle (no job, default idle cadence): frozen -> the timed-out poll is retried at once, disconnected naming query-jobs; thawed -> connected', async () => {
    sc = await openScenario({ engine: { pollTimeoutMs: POLL_TIMEOUT_MS } });
    // When each poll command was written (the engine polls through executeWithMeta).
    const sent: number[] = [];
    const client = sc.client;
    const execute = client.executeWithMeta.bind(client);
    client.executeWithMeta = ((name: string, args?: Record<string, unknown>, options?: { timeoutMs?: number }) => {
      if (name === 'query-jobs') sent.push(Date.now());
      return execute(name, args, options);
    }) as typeof client.executeWithMeta;

    const beforeFreeze = sc.recorder.inputs.length;
    process.kill(sc.qsd.pid, 'SIGSTOP');
    frozen = true;
    const frozenAt = Date.now();
    // Within one idle interval plus two timeouts (generous: the machine may be loaded).
    const down = await waitUntil('engine reports the idle VM disconnected', () => vmChangesSince(beforeFreeze).find((c) => c.status === 'disconnected'), 3 * DEFAULT_IDLE_POLL_MS);
    const downAt = Date.now();
    expect(down.reason).toBe(`monitor unresponsive: no reply to query-jobs within ${POLL_TIMEOUT_MS} ms`);
    // The two polls that went unanswered: the second followed the first's timeout at once, not one
    // idle interval (10 s) later as a tick would have sent it.
    const unanswered = sent.filter((at) => at >= frozenAt && at <= downAt);
    expect(unanswered.length).toBe(2);
    expect(unanswered[1]! - unanswered[0]!).toBeLessThan(DEFAULT_IDLE_POLL_MS / 2);
    expect(sc.client.state).toBe('ready');

    const beforeThaw = sc.recorder.inputs.length;
    process.kill(sc.qsd.pid, 'SIGCONT');
    frozen = false;
    await waitUntil('engine reports the VM connected again', () => vmChangesSince(beforeThaw).some((c) => c.status === 'connected'), 3 * DEFAULT_IDLE_POLL_MS);
    expect(vmChangesSince(beforeThaw).map((c) => c.status)).toEqual(['connected']);
  }, 120_000);
});
