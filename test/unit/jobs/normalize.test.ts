import { describe, expect, it } from 'vitest';
import {
  Fold, NEW_SESSION, QEMU_1_7, QEMU_2_12, QEMU_2_5, QEMU_5_2, QEMU_7_2,
  cancelledEvent, completedEvent, errorEvent, jsc, monitorDown, pendingEvent, readyEvent, row, vanished,
} from './reducer-harness.js';

const J = 'job0';

describe('reduceJob on QEMU >= 3.0 (JOB_STATUS_CHANGE is the state)', () => {
  it('mirror complete: every JSC status once, ready from status, pivoted when complete was noted', () => {
    const fold = new Fold(QEMU_7_2).feed(jsc(J, 'created'), jsc(J, 'running'), jsc(J, 'ready'), readyEvent(J));
    fold.note(J, 'complete');
    fold.feed(jsc(J, 'waiting'), jsc(J, 'pending'), completedEvent(J), jsc(J, 'concluded'), jsc(J, 'null'));
    expect(fold.changes).toEqual([
      'created~start', 'running', 'ready+', 'waiting', 'pending', 'concluded=completed', 'dismissed=completed',
    ]);
    expect(fold.job(J)).toMatchObject({ pivoted: true, type: 'mirror', incarnation: 1, source: 'event' });
  });

  it('offset == len is never ready; BLOCK_JOB_READY after JSC ready adds nothing', () => {
    const fold = new Fold(QEMU_7_2).feed(
      jsc(J, 'created'), jsc(J, 'running'),
      row(J, { status: 'running', progress: { current: 100, total: 100 }, ready: false }),
      row(J, { status: 'running', progress: { current: 100, total: 100 }, ready: false }),
    );
    expect(fold.job(J)).toMatchObject({ state: 'running', ready: false });
    fold.feed(jsc(J, 'ready'), readyEvent(J), readyEvent(J));
    expect(fold.changes).toEqual(['created~start', 'running', 'ready+']);
  });

  it('stays ready while the guest writes (len grows, offset behind)', () => {
    const fold = new Fold(QEMU_7_2).feed(jsc(J, 'created'), jsc(J, 'running'), jsc(J, 'ready'));
    fold.feed(row(J, { status: 'ready', ready: true, progress: { current: 100, total: 140 } }));
    fold.feed(row(J, { status: 'ready', ready: true, progress: { current: 120, total: 160 } }));
    expect(fold.changes).toEqual(['created~start', 'running', 'ready+']);
    expect(fold.job(J).progress).toMatchObject({ current: 120, total: 160 });
  });

  it.each([
    ['cancel before ready', [jsc(J, 'aborting'), cancelledEvent(J), jsc(J, 'concluded')], 'concluded=cancelled', false],
    ['error with on-error=report', [errorEvent(J, 'report'), jsc(J, 'aborting'), completedEvent(J, { error: 'Input/output error' }), jsc(J, 'concluded')], 'concluded=failed', false],
  ] as const)('%s', (_name, tail, last, pivoted) => {
    const fold = new Fold(QEMU_7_2).feed(jsc(J, 'created'), jsc(J, 'running'), ...tail);
    expect(fold.changes.at(-1)).toBe(last);
    expect(fold.changes.filter((c) => c.startsWith('concluded'))).toHaveLength(1);
    expect(fold.job(J).pivoted).toBe(pivoted);
  });

  it('failed keeps QEMU error text', () => {
    const fold = new Fold(QEMU_7_2).feed(jsc(J, 'created'), jsc(J, 'running'), jsc(J, 'aborting'), completedEvent(J, { error: 'Input/output error' }), jsc(J, 'concluded'));
    expect(fold.job(J)).toMatchObject({ outcome: 'failed', error: 'Input/output error' });
  });

  it.each([
    ['soft cancel after ready completes without pivot', 'cancel', [jsc(J, 'waiting'), jsc(J, 'pending'), completedEvent(J), jsc(J, 'concluded')], 'completed', false],
    ['force cancel after ready is cancelled', 'force-cancel', [jsc(J, 'aborting'), cancelledEvent(J, 100, 100), jsc(J, 'concluded')], 'cancelled', false],
    ['complete after ready pivots', 'complete', [jsc(J, 'waiting'), jsc(J, 'pending'), completedEvent(J), jsc(J, 'concluded')], 'completed', true],
    ['completed after ready with no verb noted: pivot unknown', undefined, [jsc(J, 'waiting'), jsc(J, 'pending'), completedEvent(J), jsc(J, 'concluded')], 'completed', undefined],
  ] as const)('%s', (_name, noted, tail, outcome, pivoted) => {
    const fold = new Fold(QEMU_7_2).feed(jsc(J, 'created'), jsc(J, 'running'), jsc(J, 'ready'));
    if (noted) fold.note(J, noted);
    fold.feed(...tail);
    expect(fold.job(J).outcome).toBe(outcome);
    expect(fold.job(J).pivoted).toBe(pivoted);
  });

  it('a start that fails at once (created -> null) is held and ends failed', () => {
    const fold = new Fold(QEMU_7_2).feed(jsc(J, 'created'), jsc(J, 'null'));
    expect(fold.changes).toEqual(['created~start', 'dismissed=failed']);
  });

  it('an id reused after dismiss is a new incarnation, announced from null', () => {
    const fold = new Fold(QEMU_7_2).feed(jsc(J, 'created'), jsc(J, 'running'), jsc(J, 'aborting'), cancelledEvent(J), jsc(J, 'concluded'), jsc(J, 'null'));
    fold.feed(jsc(J, 'created'), jsc(J, 'running'));
    expect(fold.job(J)).toMatchObject({ incarnation: 2, state: 'running', ready: false });
    expect(fold.job(J).outcome).toBeUndefined();
    expect(fold.all.at(-2)?.from).toBeNull();
  });

  it('an unasked pause is holdable; a noted pause is not; only a resume verb clears the request', () => {
    const fold = new Fold(QEMU_7_2).feed(jsc(J, 'created'), jsc(J, 'running'), jsc(J, 'paused'), jsc(J, 'running'));
    expect(fold.changes.slice(2)).toEqual(['paused/user~internal-pause', 'running']);
    fold.note(J, 'pause');
    // Under a user pause QEMU may flicker running between pause points: that running is held, the pause stays asked.
    fold.feed(jsc(J, 'paused'), jsc(J, 'running'), jsc(J, 'paused'));
    expect(fold.changes.slice(4)).toEqual(['paused/user', 'running~unrequested-resume', 'paused/user']);
    fold.note(J, 'resume');
    fold.feed(jsc(J, 'running'), jsc(J, 'paused'));
    expect(fold.changes.slice(7)).toEqual(['running', 'paused/user~internal-pause']);
  });

  it('standby keeps ready; an unasked standby is holdable', () => {
    const fold = new Fold(QEMU_7_2).feed(jsc(J, 'created'), jsc(J, 'running'), jsc(J, 'ready'), jsc(J, 'standby'), jsc(J, 'ready'));
    expect(fold.changes.slice(2)).toEqual(['ready+', 'standby+/user~internal-pause', 'ready+']);
  });

  it('on-error=stop: paused for an error (not held), standby for an error after ready, resume clears it', () => {
    const fold = new Fold(QEMU_7_2).feed(jsc(J, 'created'), jsc(J, 'running'), errorEvent(J, 'stop'), jsc(J, 'paused'));
    expect(fold.changes.at(-1)).toBe('paused/error');
    expect(fold.job(J)).toMatchObject({ ioStatus: 'failed', lastIoError: { operation: 'write', action: 'stop' } });
    fold.feed(jsc(J, 'running'), jsc(J, 'ready'), errorEvent(J, 'stop'), jsc(J, 'standby'), jsc(J, 'ready'));
    expect(fold.changes.slice(3)).toEqual(['running', 'ready+', 'standby+/error', 'ready+']);
    expect(fold.job(J).ioStatus).toBe('ok');
  });

  it('on-error=stop seen only by polling: io-status failed makes the pause an error pause', () => {
    const fold = new Fold(QEMU_7_2).feed(jsc(J, 'created'), jsc(J, 'running'), row(J, { status: 'paused', paused: true, ioStatus: 'nospace' }));
    expect(fold.changes.at(-1)).toBe('paused/error');
    expect(fold.job(J).ioStatus).toBe('nospace');
  });

  it('on-error=ignore: the error is recorded, no transition', () => {
    const fold = new Fold(QEMU_7_2).feed(jsc(J, 'created'), jsc(J, 'running'), errorEvent(J, 'ignore', 'read'), errorEvent(J, 'ignore', 'read'));
    expect(fold.changes).toEqual(['created~start', 'running']);
    expect(fold.job(J).lastIoError).toMatchObject({ operation: 'read', action: 'ignore' });
  });

  it('a paused job reports rate 0 and no ETA at once, not a decaying average', () => {
    const fold = new Fold(QEMU_7_2).feed(
      row(J, { status: 'running', progress: { current: 0, total: 100 } }, { reconcile: true }),
      row(J, { status: 'running', progress: { current: 40, total: 100 } }),
    );
    expect(fold.job(J).progress.rate).toBeGreaterThan(0);
    fold.note(J, 'pause').feed(jsc(J, 'paused'));
    expect(fold.job(J)).toMatchObject({ state: 'paused', progress: { rate: 0, etaSeconds: null } });
  });

  it('identical polls make no transition', () => {
    const fold = new Fold(QEMU_7_2).feed(row(J, { status: 'running' }, { reconcile: true }), row(J, { status: 'running' }), row(J, { status: 'running' }));
    expect(fold.changes).toEqual(['running']);
  });

  it('a routine poll never invents a job the events did not announce, nor steps one back', () => {
    const unseen = new Fold(QEMU_7_2).feed(row(J, { status: 'running' }));
    expect(unseen.changes).toEqual([]);
    // Seen on QEMU 7.2 under load: the JSC null was written before a query reply whose snapshot still listed the job.
    const dismissed = new Fold(QEMU_7_2).feed(jsc(J, 'created'), jsc(J, 'running'), jsc(J, 'aborting'), jsc(J, 'concluded'), jsc(J, 'null'));
    dismissed.feed(row(J, { status: 'running', type: 'mirror' }, { seq: 100 }));
    expect(dismissed.job(J)).toMatchObject({ incarnation: 1, state: 'dismissed', type: 'mirror' });
    expect(dismissed.changes.at(-1)).toBe('dismissed=unknown');
  });
});

describe('reduceJob: missed events, vanishing, reconnects', () => {
  it.each([
    ['no error: completed', undefined, 'completed', undefined],
    ['"Operation canceled": cancelled, not failed', 'Operation canceled', 'cancelled', undefined],
    ['other error: failed with the text', 'No space left on device', 'failed', 'No space left on device'],
  ])('concluded found by a poll, %s', (_name, error, outcome, errorText) => {
    const fold = new Fold(QEMU_7_2).feed(jsc(J, 'created'), jsc(J, 'running'), monitorDown, NEW_SESSION);
    fold.feed(row(J, { status: 'concluded', ...(error ? { error } : {}) }, { reconcile: true }));
    expect(fold.changes.at(-1)).toBe(`concluded=${outcome}`);
    expect(fold.job(J).error).toBe(errorText);
    expect(fold.job(J).source).toBe('reconcile');
  });

  it('an active job that vanished is concluded with outcome unknown, never completed', () => {
    const fold = new Fold(QEMU_7_2).feed(jsc(J, 'created'), jsc(J, 'running'), jsc(J, 'ready'), monitorDown);
    expect(fold.job(J).stale).toBe(true);
    expect(fold.changes).toHaveLength(3);
    fold.feed(NEW_SESSION, vanished(J, { reconcile: true }));
    expect(fold.changes.at(-1)).toBe('concluded=unknown');
    expect(fold.job(J)).toMatchObject({ stale: false });
    expect(fold.job(J).pivoted).toBeUndefined();
    fold.feed(vanished(J));
    expect(fold.changes).toHaveLength(4);
  });

  it('a concluded job that vanished was dismissed', () => {
    const fold = new Fold(QEMU_7_2).feed(row(J, { status: 'concluded' }, { reconcile: true }), vanished(J));
    expect(fold.changes).toEqual(['concluded=completed', 'dismissed=completed']);
  });

  it('a poll row older than the last event of the job is ignored', () => {
    const fold = new Fold(QEMU_7_2).feed(jsc(J, 'created'), jsc(J, 'running'), jsc(J, 'ready'));
    // The poll's snapshot was taken before the JSC ready (seq 3): its row still says running.
    fold.feed(row(J, { status: 'running' }, { seq: 2 }));
    expect(fold.job(J).state).toBe('ready');
    expect(fold.changes).toEqual(['created~start', 'running', 'ready+']);
  });

  it('a job created after the poll snapshot is not vanished by it', () => {
    const fold = new Fold(QEMU_7_2).feed(jsc(J, 'created'), jsc(J, 'running'));
    fold.feed(vanished(J, { seq: 1 }));
    expect(fold.job(J).state).toBe('running');
  });

  it('without JOB_STATUS_CHANGE, a reused id seen by a poll after dismissal is a new incarnation', () => {
    const fold = new Fold(QEMU_2_12).feed(row(J, { status: 'concluded' }), vanished(J), row(J, { status: 'running' }));
    expect(fold.job(J)).toMatchObject({ incarnation: 2, state: 'running' });
  });

  it('monitor down marks stale without a transition; the reconcile clears it', () => {
    const fold = new Fold(QEMU_7_2).feed(jsc(J, 'created'), jsc(J, 'running'), monitorDown);
    expect(fold.job(J).stale).toBe(true);
    fold.feed(NEW_SESSION, row(J, { status: 'running' }, { reconcile: true }));
    expect(fold.job(J).stale).toBe(false);
    expect(fold.changes).toEqual(['created~start', 'running']);
  });

  it('JSC concluded for a job with no BLOCK_JOB_* event: outcome from the path it took', () => {
    const viaPending = new Fold(QEMU_7_2).feed(jsc(J, 'created'), jsc(J, 'running'), jsc(J, 'waiting'), jsc(J, 'pending'), jsc(J, 'concluded'));
    expect(viaPending.changes.at(-1)).toBe('concluded=completed');
    const viaAborting = new Fold(QEMU_7_2).feed(jsc(J, 'created'), jsc(J, 'running'), jsc(J, 'aborting'), jsc(J, 'concluded'));
    expect(viaAborting.changes.at(-1)).toBe('concluded=unknown');
  });
});

describe('reduceJob on QEMU 2.12 (status, no JOB_STATUS_CHANGE)', () => {
  it('state from polled status, ends from BLOCK_JOB_* events, dismissed when it vanishes', () => {
    const fold = new Fold(QEMU_2_12).feed(
      row(J, { status: 'running', ready: false }),
      row(J, { status: 'running', ready: false, progress: { current: 100, total: 100 } }),
      readyEvent(J),
      row(J, { status: 'ready', ready: true }),
      completedEvent(J),
      vanished(J),
    );
    expect(fold.changes).toEqual(['running', 'ready+', 'concluded=completed', 'dismissed=completed']);
  });

  it('BLOCK_JOB_PENDING moves the job to pending', () => {
    const fold = new Fold(QEMU_2_12).feed(row(J, { status: 'running' }), pendingEvent(J));
    expect(fold.changes).toEqual(['running', 'pending']);
  });
});

describe('reduceJob on QEMU 2.2-2.11 (no status: synthesized; `ready` field)', () => {
  it('ready only from the field or the event; offset == len ignored', () => {
    const fold = new Fold(QEMU_2_5).feed(
      row(J, { ready: false, paused: false, busy: true, progress: { current: 10, total: 100 } }, { reconcile: true }),
      row(J, { ready: false, paused: false, busy: false, progress: { current: 100, total: 100 } }),
      readyEvent(J),
      row(J, { ready: true, paused: false, busy: false, progress: { current: 100, total: 120 } }),
    );
    expect(fold.changes).toEqual(['running', 'ready+']);
  });

  it('pause synthesized from paused && !busy, standby when ready, error from io-status', () => {
    const fold = new Fold(QEMU_2_5).feed(
      row(J, { ready: false, paused: false, busy: true }),
      row(J, { ready: false, paused: true, busy: true }),
      row(J, { ready: false, paused: true, busy: false }),
      row(J, { ready: false, paused: false, busy: true }),
      row(J, { ready: true, paused: true, busy: false }),
      row(J, { ready: true, paused: false, busy: false }),
      errorEvent(J, 'stop'),
      row(J, { ready: true, paused: true, busy: false, ioStatus: 'failed' }),
      row(J, { ready: true, paused: false, busy: false, ioStatus: 'ok' }),
    );
    expect(fold.changes).toEqual(['running', 'paused/user~internal-pause', 'running', 'standby+/user~internal-pause', 'ready+', 'standby+/error', 'ready+']);
  });

  it('a second BLOCK_JOB_READY (after an error) is idempotent', () => {
    const fold = new Fold(QEMU_2_5).feed(row(J, { ready: false }), readyEvent(J), errorEvent(J, 'ignore'), readyEvent(J));
    expect(fold.changes).toEqual(['running', 'ready+']);
  });

  it('COMPLETED ends it, CANCELLED too; vanishing afterwards is the dismissal', () => {
    const done = new Fold(QEMU_2_5).feed(row(J, { ready: false }), completedEvent(J, { type: 'stream' }), vanished(J));
    expect(done.changes).toEqual(['running', 'concluded=completed', 'dismissed=completed']);
    const cancelled = new Fold(QEMU_2_5).feed(row(J, { ready: false }), cancelledEvent(J), vanished(J));
    expect(cancelled.changes).toEqual(['running', 'concluded=cancelled', 'dismissed=cancelled']);
  });

  it('on-error=stop without JOB_STATUS_CHANGE: the event alone stops the job', () => {
    const fold = new Fold(QEMU_2_5).feed(row(J, { ready: false }), errorEvent(J, 'stop'));
    expect(fold.changes).toEqual(['running', 'paused/error']);
  });
});

describe('reduceJob on QEMU < 2.2 (no ready field)', () => {
  it('readiness only from a BLOCK_JOB_READY in this session; unknown for jobs found at connect', () => {
    const fold = new Fold(QEMU_1_7).feed(row('old', {}, { reconcile: true }), row('new', {}));
    expect(fold.job('old').ready).toBeNull();
    expect(fold.job('new').ready).toBe(false);
    fold.feed(readyEvent('new'), row('new', { progress: { current: 90, total: 100 } }));
    expect(fold.job('new')).toMatchObject({ ready: true, state: 'ready' });
  });

  it('after a reconnect readiness is unknown again, and a second READY is idempotent', () => {
    const fold = new Fold(QEMU_1_7).feed(row(J, {}), readyEvent(J), readyEvent(J));
    expect(fold.changes).toEqual(['running', 'ready+']);
    fold.feed(monitorDown, NEW_SESSION, row(J, {}, { reconcile: true }), row(J, {}));
    expect(fold.changes).toEqual(['running', 'ready+', 'running?']);
    expect(fold.job(J).ready).toBeNull();
  });
});

describe('reduceJob: complete in standby (QEMU < 6.0 semantics stay visible)', () => {
  it('standby after a drain on 5.2 shows ready=true with state standby', () => {
    const fold = new Fold(QEMU_5_2).feed(jsc(J, 'created'), jsc(J, 'running'), jsc(J, 'ready'), jsc(J, 'standby'));
    expect(fold.job(J)).toMatchObject({ state: 'standby', ready: true });
    expect(QEMU_5_2.completeInStandby).toBe(false);
  });
});

describe('reduceJob: id reuse missed while disconnected', () => {
  it('a known job reported in a status it can never reach again is a new incarnation (READY never returns to RUNNING)', () => {
    const fold = new Fold(QEMU_7_2).feed(jsc(J, 'created'), jsc(J, 'running'), jsc(J, 'ready'), monitorDown, NEW_SESSION);
    fold.feed(row(J, { status: 'running' }, { reconcile: true }));
    expect(fold.job(J)).toMatchObject({ incarnation: 2, state: 'running', ready: false });
    expect(fold.all.at(-1)?.from).toBeNull();
  });

  it('JSC created for a job we still think alive is a new incarnation', () => {
    const fold = new Fold(QEMU_7_2).feed(jsc(J, 'created'), jsc(J, 'running'), monitorDown, NEW_SESSION, jsc(J, 'created'));
    expect(fold.job(J)).toMatchObject({ incarnation: 2, state: 'created' });
  });

  it('statuses the job may still reach keep the incarnation (paused after running, concluded after ready)', () => {
    const fold = new Fold(QEMU_7_2).feed(jsc(J, 'created'), jsc(J, 'running'), row(J, { status: 'paused' }), row(J, { status: 'running' }), row(J, { status: 'ready' }), row(J, { status: 'concluded' }));
    expect(fold.job(J)).toMatchObject({ incarnation: 1, state: 'concluded', outcome: 'completed' });
  });
});
