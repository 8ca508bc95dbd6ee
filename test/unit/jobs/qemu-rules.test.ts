import { describe, expect, it } from 'vitest';
import { capabilitiesFromVersion } from '../../../src/jobs/capabilities.js';
import type { CommandAction, JobStatusName } from '../../../src/generated/schema-types.js';
import {
  acceptsComplete,
  checkVerb,
  isStandbyCompleteRefusal,
  isTerminalState,
  mayBecomeReady,
  mayReach,
  verbAcceptedIn,
  verbRefusalText,
} from '../../../src/jobs/qemu-rules.js';
import { makeJob } from '../../utils/fake-source.js';

const qemu72 = capabilitiesFromVersion({ major: 7, minor: 2, micro: 0 });
const qemu52 = capabilitiesFromVersion({ major: 5, minor: 2, micro: 0 });

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

describe('state rules', () => {
  it('ended: concluded and dismissed only', () => {
    expect(STATES.filter(isTerminalState)).toEqual(['concluded', 'dismissed']);
    expect(isTerminalState('null')).toBe(true); // QEMU's name for dismissed (the simulator's statuses)
  });

  it('may still become ready: exactly the main-loop states (JobSTT: READY never returns to RUNNING)', () => {
    expect(STATES.filter(mayBecomeReady)).toEqual(['created', 'running', 'paused', 'ready', 'standby']);
  });

  it('reachable statuses follow JobSTT: a ready job never runs again, only a new job is created', () => {
    expect(mayReach('ready', 'running')).toBe(false);
    expect(mayReach('ready', 'standby')).toBe(true);
    expect(mayReach('running', 'created')).toBe(false);
    expect(mayReach('concluded', 'null')).toBe(true);
    expect(mayReach('dismissed', 'concluded')).toBe(false);
    expect(mayReach('waiting', 'ready')).toBe(false);
  });

  it('the table in QEMU status names (the simulator): nothing accepted once null or aborting', () => {
    for (const verb of Object.keys(QEMU_TABLE) as CommandAction[]) {
      expect(verbAcceptedIn(verb, 'null')).toBe(false);
      expect(verbAcceptedIn(verb, 'aborting')).toBe(false);
    }
  });

  it("recognises QEMU < 6.0 refusing complete in standby (QEMU's own text), and nothing else", () => {
    expect(isStandbyCompleteRefusal(verbRefusalText('j0', 'standby', 'complete'))).toBe(true);
    expect(isStandbyCompleteRefusal(verbRefusalText('j0', 'running', 'complete'))).toBe(false);
    // libvirt wraps QEMU's text in its own message.
    expect(isStandbyCompleteRefusal(`internal error: unable to execute QEMU command 'job-complete': ${verbRefusalText('j0', 'standby', 'complete')}`)).toBe(true);
  });
});
