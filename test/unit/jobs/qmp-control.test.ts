import { describe, expect, it } from 'vitest';
import { QmpCommandError, QmpOutcomeUnknownError, QmpTooManyPendingError } from '../../../src/errors.js';
import { capabilitiesFromVersion } from '../../../src/jobs/capabilities.js';
import type { CommandAction } from '../../../src/generated/schema-types.js';
import { planQmpCommand } from '../../../src/jobs/qmp-control.js';
import { verbRefusalText } from '../../../src/jobs/qemu-rules.js';
import { FakeJobSource, makeJob } from '../../utils/fake-source.js';

const qemu72 = capabilitiesFromVersion({ major: 7, minor: 2, micro: 0 });
const qemu211 = capabilitiesFromVersion({ major: 2, minor: 11, micro: 0 });

describe('QMP commands', () => {
  const ready = makeJob({ state: 'ready', ready: true });
  const running = makeJob({ state: 'running', ready: false });

  it('job-* where the monitor has them', () => {
    const plan = (action: CommandAction, force = false) => planQmpCommand(action, ready, qemu72, { force, speed: 5 });
    expect(plan('complete')).toEqual({ command: 'job-complete', arguments: { id: 'j0' }, verb: 'complete' });
    expect(plan('cancel', true)).toEqual({ command: 'job-cancel', arguments: { id: 'j0' }, verb: 'force-cancel' });
    expect(plan('pause')).toEqual({ command: 'job-pause', arguments: { id: 'j0' }, verb: 'pause' });
    expect(plan('resume')).toEqual({ command: 'job-resume', arguments: { id: 'j0' }, verb: 'resume' });
    expect(plan('finalize')).toEqual({ command: 'job-finalize', arguments: { id: 'j0' }, verb: 'finalize' });
    expect(plan('dismiss')).toEqual({ command: 'job-dismiss', arguments: { id: 'j0' }, verb: 'dismiss' });
    expect(plan('set-speed')).toEqual({ command: 'block-job-set-speed', arguments: { device: 'j0', speed: 5 }, verb: 'set-speed' });
  });

  it('soft cancel needs block-job-cancel force=false on any version (job-cancel is always force)', () => {
    expect(planQmpCommand('cancel', ready, qemu72, { force: false })).toEqual({
      command: 'block-job-cancel',
      arguments: { device: 'j0', force: false },
      verb: 'cancel',
    });
    // Not ready: soft and force are the same to QEMU; the force form is sent and noted.
    expect(planQmpCommand('cancel', running, qemu72, { force: false })).toMatchObject({ command: 'job-cancel', verb: 'force-cancel' });
  });

  it('block-job-* before QEMU 3.0', () => {
    const plan = (action: CommandAction, force = false) => planQmpCommand(action, ready, qemu211, { force });
    expect(plan('complete')).toMatchObject({ command: 'block-job-complete', arguments: { device: 'j0' } });
    expect(plan('cancel', true)).toMatchObject({ command: 'block-job-cancel', arguments: { device: 'j0', force: true } });
    expect(plan('pause')).toMatchObject({ command: 'block-job-pause', arguments: { device: 'j0' } });
    expect(plan('resume')).toMatchObject({ command: 'block-job-resume', arguments: { device: 'j0' } });
    expect(plan('finalize')).toMatchObject({ command: 'block-job-finalize', arguments: { id: 'j0' } });
    expect(plan('dismiss')).toMatchObject({ command: 'block-job-dismiss', arguments: { id: 'j0' } });
  });

});

describe('the QMP control port', () => {
  const sent = { execute: 'job-complete', arguments: { id: 'j0' } };
  const options = { timeoutMs: 1000 };

  it('tells the engine of the verb before it writes it, and says what went on the wire', async () => {
    const source = new FakeJobSource();
    const job = source.set({ state: 'ready', ready: true });
    expect(source.control.check('vm1', job, 'complete', {})).toEqual({ ok: true });
    const verdict = await source.control.execute('vm1', job, 'complete', {}, options);
    expect(verdict).toEqual({ kind: 'accepted', wire: { command: 'job-complete', arguments: { id: 'j0' } } });
    expect(source.log).toEqual(['note:complete', 'qmp:job-complete']);
  });

  it("QEMU's refusals become verdicts; the standby refusal of QEMU < 6.0 is transient, others are not", async () => {
    const source = new FakeJobSource();
    const job = source.set({ state: 'ready', ready: true });
    source.reply = () => Promise.reject(new QmpCommandError('GenericError', verbRefusalText('j0', 'standby', 'complete'), sent));
    expect(await source.control.execute('vm1', job, 'complete', {}, options)).toMatchObject({ kind: 'refused', transient: true, refusal: { class: 'GenericError' } });
    source.reply = () => Promise.reject(new QmpCommandError('GenericError', verbRefusalText('j0', 'running', 'complete'), sent));
    expect(await source.control.execute('vm1', job, 'complete', {}, options)).toMatchObject({ kind: 'refused', transient: false });
    source.reply = () => Promise.reject(new QmpOutcomeUnknownError(sent));
    expect(await source.control.execute('vm1', job, 'complete', {}, options)).toMatchObject({ kind: 'outcome-unknown' });
    source.reply = () => Promise.reject(new QmpTooManyPendingError(sent, 4));
    expect(await source.control.execute('vm1', job, 'complete', {}, options)).toMatchObject({ kind: 'busy' });
  });

  it('complete is writable only once the job is ready and its state current', () => {
    const source = new FakeJobSource();
    const running = source.set({ state: 'running', ready: false, progress: { current: 100, total: 100, percent: 100, rate: null, etaSeconds: null } });
    expect(source.control.check('vm1', running, 'complete', {})).toMatchObject({ ok: false, reason: 'not-allowed' });
    const ready = source.set({ state: 'ready', ready: true });
    source.setMonitor('disconnected');
    expect(source.control.check('vm1', ready, 'complete', {})).toEqual({ ok: false, reason: 'disconnected', why: "the monitor of VM 'vm1' is not connected" });
    source.setMonitor('ready');
    expect(source.control.check('vm1', source.job('vm1', 'j0')!, 'complete', {})).toMatchObject({
      ok: false,
      reason: 'disconnected',
      why: expect.stringContaining('not yet reconciled'),
    });
  });

  it("libvirt's own jobs are only observed: not_supported before anything else, and nothing is written", async () => {
    const source = new FakeJobSource();
    for (const id of ['copy-vda-libvirt-1-format', 'commit-vda-libvirt-7-format', 'pull-vda-libvirt-8-format', 'backup-vda-libvirt-8-format', 'create-libvirt-2-format']) {
      const job = source.set({ id, state: 'ready', ready: true });
      expect(source.control.mayTouch('vm1', job)).toMatchObject({ ok: false, reason: 'not-supported', why: expect.stringContaining('libvirt') });
      expect(source.control.check('vm1', job, 'cancel', { force: true })).toMatchObject({ ok: false, reason: 'not-supported' });
    }
    // Ordinary ids that merely start like libvirt's (the demo's commit-5, a user's copy-1) stay controllable.
    for (const id of ['copy', 'commit-5', 'copy-1', 'backup-nightly', 'create-disk']) {
      expect(source.control.mayTouch('vm1', source.set({ id, state: 'running' }))).toEqual({ ok: true });
    }
    expect(source.calls).toEqual([]);
  });
});
