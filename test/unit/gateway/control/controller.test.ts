/**
 * The controller's decisions against an in-memory job source: what is refused before QEMU, what
 * waits, what each QMP outcome becomes, and the bounds (timeout, client gone, cache, shutdown).
 * Real QEMU behaviour is covered in test/qemu/control-*.test.ts.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { QmpCommandError, QmpOutcomeUnknownError, QmpTimeoutError, QmpTooManyPendingError, StateError } from '../../../../src/errors.js';
import type { Principal } from '../../../../src/gateway/auth.js';
import { makeJobController, type CommandContext, type CommandHandler, type JobController } from '../../../../src/gateway/control/index.js';
import { validateServerMessage } from '../../../../src/protocol/validate.js';
import type { CommandMessage } from '../../../../src/generated/schema-types.js';
import { capabilitiesFromVersion } from '../../../../src/jobs/capabilities.js';
import { deferred, FakeJobSource } from '../../../utils/fake-source.js';
import { LogRecorder } from '../../../utils/log-recorder.js';

let source: FakeJobSource;
let controller: JobController;
let log: LogRecorder;

/** controller.handle, plus: every answer must be a valid `result` message (schemas/msg-result.schema.json). */
let handle: CommandHandler;

function setup(options: Parameters<typeof makeJobController>[0]['options'] = {}): void {
  source = new FakeJobSource();
  log = new LogRecorder();
  controller = makeJobController({ source, control: source.control, logger: log, options });
  handle = (message, context) =>
    controller.handle(message, context).then((result) => {
      const validation = validateServerMessage(result);
      expect(validation.ok, JSON.stringify(validation)).toBe(true);
      return result;
    });
}

afterEach(() => controller?.close());

const context = (fields: Partial<CommandContext> = {}): CommandContext => ({
  principal: undefined,
  connectionId: 'conn',
  signal: new AbortController().signal,
  ...fields,
});
let nextId = 0;
const command = (action: CommandMessage['action'], fields: Partial<CommandMessage> = {}): CommandMessage => ({
  type: 'command',
  id: `c${++nextId}`,
  vm: 'vm1',
  job: 'j0',
  action,
  ...fields,
});
const sent = () => source.calls.map((c) => c.command);
const tick = () => new Promise((resolve) => setTimeout(resolve, 5));

describe('refused before anything else', () => {
  it('forbidden: read-only token, token for other VMs; allowed: control token for the VM, and no tokens file', async () => {
    setup();
    source.set({ state: 'running' });
    const readOnly: Principal = { name: 'viewer', scopes: new Set(['read']), vms: null };
    const elsewhere: Principal = { name: 'ops2', scopes: new Set(['read', 'control']), vms: new Set(['vm2']) };
    const operator: Principal = { name: 'ops', scopes: new Set(['control']), vms: new Set(['vm1']) };
    // Even for a VM that does not exist: no probing of names without the right.
    expect(await handle(command('pause', { vm: 'nope' }), context({ principal: readOnly }))).toMatchObject({
      ok: false,
      error: { code: 'forbidden', message: expect.stringContaining('read-only') },
    });
    expect(await handle(command('pause'), context({ principal: elsewhere }))).toMatchObject({ error: { code: 'forbidden' } });
    expect(sent()).toEqual([]);
    expect((await handle(command('pause'), context({ principal: operator }))).ok).toBe(true);
    expect((await handle(command('resume'), context())).ok).toBe(true);
  });

  it('unknown_vm, unknown_job', async () => {
    setup();
    expect(await handle(command('pause', { vm: 'vm9' }), context())).toMatchObject({ error: { code: 'unknown_vm' } });
    expect(await handle(command('pause', { job: 'nope' }), context())).toMatchObject({ error: { code: 'unknown_job' } });
  });

  it('invalid_message for cross-field mistakes (the HTTP mirror builds messages from path and body)', async () => {
    setup();
    source.set({ state: 'running' });
    const noSpeed = await handle(command('set-speed'), context());
    expect(noSpeed).toMatchObject({ ok: false, error: { code: 'invalid_message', details: [{ path: '/speed' }] } });
    const stray = await handle(command('pause', { force: true, when: 'now' }), context());
    expect(stray).toMatchObject({ error: { code: 'invalid_message', details: [{ path: '/force' }, { path: '/when' }] } });
    expect(sent()).toEqual([]);
  });

  it("not_supported for a job libvirt owns (only observed), even for a complete that would wait; nothing is sent", async () => {
    setup();
    source.set({ id: 'copy-vda-libvirt-1-format', state: 'running' });
    for (const action of ['complete', 'cancel', 'pause'] as const) {
      const answer = await handle(command(action, { job: 'copy-vda-libvirt-1-format', timeoutMs: 60_000 }), context());
      expect(answer).toMatchObject({ ok: false, error: { code: 'not_supported', message: expect.stringContaining('libvirt') }, job: { state: 'running' } });
    }
    expect(sent()).toEqual([]);
    expect(source.log).toEqual([]);
  });

  it('verb_not_allowed with the state, before QEMU; job_ended once the job is over', async () => {
    setup();
    source.set({ state: 'running' });
    expect(await handle(command('finalize'), context())).toMatchObject({
      ok: false,
      error: { code: 'verb_not_allowed', message: expect.stringContaining('running') },
      job: { state: 'running' },
    });
    source.set({ state: 'concluded', outcome: 'failed' });
    expect(await handle(command('pause'), context())).toMatchObject({
      error: { code: 'job_ended', message: expect.stringContaining('failed') },
      job: { outcome: 'failed' },
    });
    expect(sent()).toEqual([]);
  });
});

describe('complete', () => {
  it('when=ready waits for the engine to say ready; the engine hears the verb before QEMU does', async () => {
    setup();
    source.set({ state: 'running', progress: { current: 100, total: 100, percent: 100, rate: null, etaSeconds: null } });
    const answer = handle(command('complete'), context());
    await tick();
    expect(sent()).toEqual([]);
    source.set({ state: 'ready', ready: true });
    expect(await answer).toMatchObject({ ok: true, job: { state: 'ready' } });
    expect(source.log).toEqual(['note:complete', 'qmp:job-complete']);
  });

  it('when=now answers not_ready without calling QEMU', async () => {
    setup();
    source.set({ state: 'running' });
    expect(await handle(command('complete', { when: 'now' }), context())).toMatchObject({
      error: { code: 'not_ready' },
      job: { state: 'running' },
    });
    expect(source.log).toEqual([]);
  });

  it('job_ended with the outcome when the job concludes before it was ready', async () => {
    setup();
    source.set({ state: 'running' });
    const answer = handle(command('complete'), context());
    source.set({ state: 'aborting' });
    // aborting can no longer become ready: answered at once, not when the job has concluded.
    expect(await answer).toMatchObject({ ok: false, error: { code: 'verb_not_allowed' }, job: { state: 'aborting' } });

    source.set({ id: 'j1', state: 'running' });
    const other = handle(command('complete', { job: 'j1' }), context());
    source.set({ id: 'j1', state: 'concluded', outcome: 'failed' });
    expect(await other).toMatchObject({ error: { code: 'job_ended', message: expect.stringContaining('failed') }, job: { outcome: 'failed' } });
    expect(sent()).toEqual([]);
  });

  it('a new incarnation of the id ends the wait for the old one', async () => {
    setup();
    source.set({ state: 'running', incarnation: 1 });
    const answer = handle(command('complete'), context());
    source.set({ state: 'running', incarnation: 2 });
    expect(await answer).toMatchObject({ error: { code: 'job_ended' } });
  });

  it('waits across a monitor outage, and sends once the reconcile confirms ready (even without a transition)', async () => {
    setup();
    source.set({ state: 'running' });
    const answer = handle(command('complete'), context());
    source.setMonitor('disconnected');
    source.set({ state: 'ready', ready: true, stale: true });
    await tick();
    expect(sent()).toEqual([]);
    source.setMonitor('ready'); // connected again, but the state is stale until the reconcile
    await tick();
    expect(sent()).toEqual([]);
    source.reconcileQuietly();
    expect(await answer).toMatchObject({ ok: true });
    expect(sent()).toEqual(['job-complete']);
  });

  it('a verb the monitor could not write (it went down) is sent again once it is back', async () => {
    setup();
    source.set({ state: 'ready', ready: true });
    let calls = 0;
    source.reply = (command, args) =>
      ++calls === 1 ? Promise.reject(new StateError('monitor is disconnected', 'disconnected', ['ready'])) : Promise.resolve({ command, args });
    expect(await handle(command('complete'), context())).toMatchObject({ ok: true });
    expect(sent()).toEqual(['job-complete', 'job-complete']);
  });

  it('QEMU < 6.0: a standby refusal is retried once ready again; other refusals are qmp_error', async () => {
    setup();
    source.capabilitiesValue = capabilitiesFromVersion({ major: 5, minor: 2, micro: 0 });
    source.set({ state: 'ready', ready: true });
    const refusal = (state: string) =>
      new QmpCommandError('GenericError', `Job 'j0' in state '${state}' cannot accept command verb 'complete'`, { execute: 'job-complete' });
    let calls = 0;
    source.reply = () => (++calls === 1 ? Promise.reject(refusal('standby')) : Promise.resolve({}));
    expect(await handle(command('complete'), context())).toMatchObject({ ok: true });
    expect(sent()).toEqual(['job-complete', 'job-complete']);

    source.reply = () => Promise.reject(refusal('waiting'));
    expect(await handle(command('complete'), context())).toMatchObject({
      ok: false,
      error: { code: 'qmp_error', qmp: { class: 'GenericError', desc: expect.stringContaining("'waiting'") } },
    });
  });

  it('standby on QEMU < 6.0: waits (no call) until ready', async () => {
    setup();
    source.capabilitiesValue = capabilitiesFromVersion({ major: 5, minor: 2, micro: 0 });
    source.set({ state: 'standby', ready: true, pauseReason: 'user' });
    const answer = handle(command('complete'), context());
    await tick();
    expect(sent()).toEqual([]);
    source.set({ state: 'ready', ready: true, pauseReason: undefined });
    expect((await answer).ok).toBe(true);
  });
});

describe('QMP outcomes', () => {
  it('connection lost or no reply while in flight: outcome_unknown; pending-command limit: too_many_commands', async () => {
    setup();
    source.set({ state: 'running' });
    source.reply = (execute) => Promise.reject(new QmpOutcomeUnknownError({ execute }));
    expect(await handle(command('pause'), context())).toMatchObject({ error: { code: 'outcome_unknown' }, job: { id: 'j0' } });
    source.reply = (execute) => Promise.reject(new QmpTimeoutError({ execute }, 10));
    expect(await handle(command('pause'), context())).toMatchObject({ error: { code: 'outcome_unknown' } });
    source.reply = (execute) => Promise.reject(new QmpTooManyPendingError({ execute }, 256));
    expect(await handle(command('pause'), context())).toMatchObject({ error: { code: 'too_many_commands' } });
  });

  it('timeoutMs runs out: timeout while nothing is in flight, outcome_unknown once the verb is out (PROTOCOL.md)', async () => {
    setup();
    source.set({ state: 'running' });
    // timeoutMs: 1 leaves the written verb 1 ms for QEMU's reply; QMP's timeout then fires.
    source.reply = (execute) => new Promise((_resolve, reject) => setTimeout(() => reject(new QmpTimeoutError({ execute }, 1)), 5));
    expect(await handle(command('pause', { timeoutMs: 1 }), context())).toMatchObject({ error: { code: 'outcome_unknown', message: expect.stringContaining('may or may not') } });
    expect(source.calls.at(-1)).toMatchObject({ command: 'job-pause', timeoutMs: 1 });
    // Accepted, then await: concluded outlives the budget: timeout, the verb did take effect.
    source.reply = () => Promise.resolve({});
    expect(await handle(command('pause', { timeoutMs: 20, await: 'concluded' }), context())).toMatchObject({ error: { code: 'timeout', message: expect.stringContaining('was accepted') } });
    // Waiting for ready when the budget runs out: timeout, and nothing was sent.
    const before = source.calls.length;
    expect(await handle(command('complete', { when: 'ready', timeoutMs: 20 }), context())).toMatchObject({ error: { code: 'timeout', message: expect.stringContaining('nothing was sent') } });
    expect(source.calls.length).toBe(before);
  });

  it('monitor down: vm_disconnected, nothing noted', async () => {
    setup();
    source.set({ state: 'running' });
    source.setMonitor('disconnected');
    expect(await handle(command('pause'), context())).toMatchObject({ error: { code: 'vm_disconnected' } });
    expect(await handle(command('complete', { when: 'now' }), context())).toMatchObject({ error: { code: 'vm_disconnected' } });
    expect(source.log).toEqual([]);
  });

  it('await=concluded answers with the final state', async () => {
    setup();
    source.set({ state: 'ready', ready: true });
    const answer = handle(command('complete', { await: 'concluded' }), context());
    await tick();
    expect(sent()).toEqual(['job-complete']);
    source.set({ state: 'waiting' });
    source.set({ state: 'concluded', outcome: 'completed', pivoted: true, ready: false });
    source.set({ state: 'dismissed' });
    expect(await answer).toMatchObject({ ok: true, job: { state: 'concluded', outcome: 'completed', pivoted: true } });
  });

  it('logs every sent verb at info with who, what and the reply; never a token', async () => {
    setup();
    source.set({ state: 'running' });
    const operator: Principal = { name: 'ops', scopes: new Set(['control']), vms: null };
    await handle(command('set-speed', { speed: 7 }), context({ principal: operator }));
    const entry = log.entries.find((e) => e.message === 'job verb sent');
    expect(entry).toMatchObject({
      level: 'info',
      fields: { principal: 'ops', vm: 'vm1', job: 'j0', action: 'set-speed', qmp: 'block-job-set-speed', arguments: { device: 'j0', speed: 7 }, reply: 'return' },
    });
  });
});

describe('bounds', () => {
  it('timeout: a complete that never becomes ready is answered `timeout`, nothing sent', async () => {
    setup();
    source.set({ state: 'running' });
    expect(await handle(command('complete', { timeoutMs: 30 }), context())).toMatchObject({
      error: { code: 'timeout', message: expect.stringContaining('30 ms') },
    });
    expect(sent()).toEqual([]);
  });

  it('client gone: the wait is dropped with an answer, and a retry of the id runs again', async () => {
    setup();
    source.set({ state: 'running' });
    const client = new AbortController();
    const message = command('complete');
    const answer = handle(message, context({ signal: client.signal }));
    client.abort();
    expect(await answer).toMatchObject({ error: { code: 'not_ready', message: expect.stringContaining('went away') } });
    source.set({ state: 'ready', ready: true });
    expect(await handle(message, context())).toMatchObject({ ok: true });
    expect(sent()).toEqual(['job-complete']);
  });

  it('a repeated id joins the pending command: one QMP call, one answer', async () => {
    setup();
    source.set({ state: 'running' });
    const reply = deferred();
    source.reply = () => reply.promise;
    const message = command('pause');
    const first = handle(message, context());
    const second = handle({ ...message }, context());
    expect(controller.pendingCommands).toBe(1);
    reply.resolve({});
    expect(await second).toBe(await first);
    expect(sent()).toEqual(['job-pause']);
  });

  it('too many pending commands: refused without acting', async () => {
    setup({ cache: { maxEntries: 2 } });
    source.set({ state: 'running' });
    source.reply = () => new Promise(() => {});
    handle(command('pause'), context());
    handle(command('pause'), context());
    expect(await handle(command('pause'), context())).toMatchObject({ error: { code: 'too_many_commands' } });
    expect(sent()).toEqual(['job-pause', 'job-pause']);
  });

  it('close(): pending waits are dropped with an answer, new commands refused', async () => {
    setup();
    source.set({ state: 'running' });
    const answer = handle(command('complete'), context());
    controller.close();
    expect(await answer).toMatchObject({ error: { code: 'internal', message: expect.stringContaining('shutting down') } });
    expect(await handle(command('pause'), context())).toMatchObject({ error: { code: 'internal' } });
    expect(sent()).toEqual([]);
  });

  it('the budget is capped by maxTimeoutMs', async () => {
    setup({ maxTimeoutMs: 20 });
    source.set({ state: 'running' });
    expect(await handle(command('complete', { timeoutMs: 86_400_000 }), context())).toMatchObject({
      error: { code: 'timeout', message: expect.stringContaining('20 ms') },
    });
  });
});
