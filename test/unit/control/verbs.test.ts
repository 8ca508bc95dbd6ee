import { describe, expect, it } from 'vitest';
import { QmpCommandError } from '../../../src/errors.js';
import { capabilitiesFromVersion } from '../../../src/jobs/capabilities.js';
import type { CommandAction, JobStatusName } from '../../../src/generated/schema-types.js';
import { acceptsComplete, checkVerb, isStandbyCompleteRefusal, planQmpCommand } from '../../../src/gateway/control/verbs.js';
import { makeJob } from './fake-source.js';

const qemu72 = capabilitiesFromVersion({ major: 7, minor: 2, micro: 0 });
const qemu52 = capabilitiesFromVersion({ major: 5, minor: 2, micro: 0 });
const qemu211 = capabilitiesFromVersion({ major: 2, minor: 11, micro: 0 });

const STATES: JobStatusName[] = ['created', 'running', 'paused', 'ready', 'standby', 'waiting', 'pending', 'aborting', 'concluded', 'dismissed'];
const isReadyState = (state: JobStatusName): boolean => state === 'ready' || state === 'standby';

/** JobVerbTable of QEMU v7.2.0 job.c, written out independently of the implementation. */
const QEMU_TABLE: Record<CommandAction, string> = {
  cancel: 'created running paused ready standby waiting pending',
  pause: 'created running paused ready standby',
  resume: 'created running paused ready standby',
  'set-speed': 'created running paused ready standby',
  complete: 'ready standby',
  finalize: 'pending',
  dismiss: 'concluded',
};

describe('verb table', () => {
  for (const [action, allowed] of Object.entries(QEMU_TABLE) as [CommandAction, string][]) {
    it(`${action} is accepted exactly in: ${allowed}`, () => {
      const accepted = STATES.filter((state) => checkVerb(action, makeJob({ state, ready: isReadyState(state) }), qemu72, true).allowed);
      expect(accepted.join(' ')).toBe(allowed);
    });
  }

  it('complete in standby only since QEMU 6.0, with the reason', () => {
    const standby = makeJob({ state: 'standby', ready: true, pauseReason: 'user' });
    expect(checkVerb('complete', standby, qemu72, false).allowed).toBe(true);
    expect(checkVerb('complete', standby, qemu52, false)).toMatchObject({ allowed: false, reason: expect.stringContaining('5.2.0') });
    expect(acceptsComplete(standby, qemu72)).toBe(true);
    expect(acceptsComplete(standby, qemu52)).toBe(false);
  });

  it('complete is never judged from progress: offset == len while running is not ready', () => {
    const window = makeJob({ state: 'running', ready: false, progress: { current: 100, total: 100, percent: 100, rate: null, etaSeconds: null } });
    expect(acceptsComplete(window, qemu72)).toBe(false);
    expect(acceptsComplete({ ...window, state: 'ready', ready: true }, qemu72)).toBe(true);
    // A stale state (monitor down) is not acted on.
    expect(acceptsComplete({ ...window, state: 'ready', ready: true, stale: true }, qemu72)).toBe(false);
  });

  it('soft cancel of a user-paused or error-stopped ready job is refused (QEMU would refuse it); force is not', () => {
    for (const pauseReason of ['user', 'error'] as const) {
      const standby = makeJob({ state: 'standby', ready: true, pauseReason });
      expect(checkVerb('cancel', standby, qemu72, false)).toMatchObject({ allowed: false, reason: expect.stringContaining('resume it first') });
      expect(checkVerb('cancel', standby, qemu72, true).allowed).toBe(true);
    }
    // Before ready a soft cancel is a force cancel (mirror_cancel), so a paused job may be cancelled.
    expect(checkVerb('cancel', makeJob({ state: 'paused', ready: false, pauseReason: 'user' }), qemu72, false).allowed).toBe(true);
  });

  it('soft cancel after the main loop (waiting, pending) is refused: QEMU would accept and ignore it', () => {
    for (const state of ['waiting', 'pending'] as const) {
      expect(checkVerb('cancel', makeJob({ state, ready: false }), qemu72, false)).toMatchObject({ allowed: false, reason: expect.stringContaining('ignores') });
      expect(checkVerb('cancel', makeJob({ state, ready: false }), qemu72, true).allowed).toBe(true);
    }
  });
});

describe('QMP commands', () => {
  const ready = makeJob({ state: 'ready', ready: true });
  const running = makeJob({ state: 'running', ready: false });

  it('job-* where the monitor has them', () => {
    const plan = (action: CommandAction, force = false) => planQmpCommand(action, ready, qemu72, { force, speed: 5 });
    expect(plan('complete')).toEqual({ execute: 'job-complete', arguments: { id: 'j0' }, verb: 'complete' });
    expect(plan('cancel', true)).toEqual({ execute: 'job-cancel', arguments: { id: 'j0' }, verb: 'force-cancel' });
    expect(plan('pause')).toEqual({ execute: 'job-pause', arguments: { id: 'j0' }, verb: 'pause' });
    expect(plan('resume')).toEqual({ execute: 'job-resume', arguments: { id: 'j0' }, verb: 'resume' });
    expect(plan('finalize')).toEqual({ execute: 'job-finalize', arguments: { id: 'j0' }, verb: 'finalize' });
    expect(plan('dismiss')).toEqual({ execute: 'job-dismiss', arguments: { id: 'j0' }, verb: 'dismiss' });
    expect(plan('set-speed')).toEqual({ execute: 'block-job-set-speed', arguments: { device: 'j0', speed: 5 }, verb: 'set-speed' });
  });

  it('soft cancel needs block-job-cancel force=false on any version (job-cancel is always force)', () => {
    expect(planQmpCommand('cancel', ready, qemu72, { force: false })).toEqual({
      execute: 'block-job-cancel',
      arguments: { device: 'j0', force: false },
      verb: 'cancel',
    });
    // Not ready: soft and force are the same to QEMU; the force form is sent and noted.
    expect(planQmpCommand('cancel', running, qemu72, { force: false })).toMatchObject({ execute: 'job-cancel', verb: 'force-cancel' });
  });

  it('block-job-* before QEMU 3.0', () => {
    const plan = (action: CommandAction, force = false) => planQmpCommand(action, ready, qemu211, { force });
    expect(plan('complete')).toMatchObject({ execute: 'block-job-complete', arguments: { device: 'j0' } });
    expect(plan('cancel', true)).toMatchObject({ execute: 'block-job-cancel', arguments: { device: 'j0', force: true } });
    expect(plan('pause')).toMatchObject({ execute: 'block-job-pause', arguments: { device: 'j0' } });
    expect(plan('resume')).toMatchObject({ execute: 'block-job-resume', arguments: { device: 'j0' } });
    expect(plan('finalize')).toMatchObject({ execute: 'block-job-finalize', arguments: { id: 'j0' } });
    expect(plan('dismiss')).toMatchObject({ execute: 'block-job-dismiss', arguments: { id: 'j0' } });
  });

  it('recognises QEMU < 6.0 refusing complete in standby, and nothing else', () => {
    const sent = { execute: 'job-complete', arguments: { id: 'j0' } };
    const standby = new QmpCommandError('GenericError', "Job 'j0' in state 'standby' cannot accept command verb 'complete'", sent);
    const running = new QmpCommandError('GenericError', "Job 'j0' in state 'running' cannot accept command verb 'complete'", sent);
    expect(isStandbyCompleteRefusal(standby)).toBe(true);
    expect(isStandbyCompleteRefusal(running)).toBe(false);
    expect(isStandbyCompleteRefusal(new Error(standby.desc))).toBe(false);
  });
});
