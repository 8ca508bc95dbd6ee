/**
 * MonitorJobs in virtual time: marble-scripted events and polls (with their stream positions) on a
 * fake monitor, so the reconcile's ordering by seq and the holds are checked frame by frame.
 */
import { BehaviorSubject, NEVER, Subject, of, type Observable } from 'rxjs';
import { TestScheduler } from 'rxjs/testing';
import { describe, expect, it } from 'vitest';
import { capabilitiesFromVersion } from '../../../src/jobs/capabilities.js';
import { MonitorJobs, type MonitorJobsOptions } from '../../../src/jobs/monitor-jobs.js';
import type { PollResult } from '../../../src/jobs/poller.js';
import type { JobRow } from '../../../src/jobs/qmp-payloads.js';
import type { QmpError } from '../../../src/errors.js';
import type { QmpEvent, QmpMonitor, QmpRunState, QmpSession } from '../../../src/qmp/types.js';
import { label } from './reducer-harness.js';

const V72 = { major: 7, minor: 2, micro: 22 };
const session: QmpSession = { number: 1, greeting: { version: { qemu: V72, package: '' }, capabilities: [] }, sameProcess: 'first', startedAt: 0, seq: 0 };

const jsc = (seq: number, id: string, status: string): QmpEvent => ({
  event: 'JOB_STATUS_CHANGE', data: { id, status }, qemuTimestamp: null, receivedAt: seq, receivedMono: seq, seq, session: 1,
});
const running = (id: string): JobRow => ({ id, type: 'mirror', status: 'running', progress: { current: 0, total: 100 } });
const poll = (seq: number, rows: JobRow[]): PollResult => ({ rows, seq, receivedAt: seq, session: 1 });

interface Script {
  events: string;
  eventValues: Record<string, QmpEvent>;
  /** One cold marble per poll, in order (`r` is the next result). */
  polls: { marble: string; result: PollResult }[];
  options?: MonitorJobsOptions;
  until: number;
  /** Checks at given frames, with the engine and the number of polls asked for so far. */
  probes?: { frame: number; check: (engine: MonitorJobs, polls: number) => void }[];
}

/** Runs the engine over the script; returns `frame:vm-or-job:label` for every change emitted. */
function run(script: Script): string[] {
  const scheduler = new TestScheduler((a, b) => expect(a).toEqual(b));
  const seen: string[] = [];
  scheduler.run(({ hot, cold, flush }) => {
    const monitor: QmpMonitor = {
      state: 'ready',
      state$: new BehaviorSubject<QmpRunState>('ready'),
      sessions$: hot('s', { s: session }),
      session: undefined,
      events$: hot(script.events, script.eventValues),
      errors$: new Subject<QmpError>(),
      execute: () => Promise.reject(new Error('not used')),
      executeWithMeta: () => Promise.reject(new Error('not used')),
    };
    let pollIndex = 0;
    const engine = new MonitorJobs('vm1', monitor, {
      activePollMs: 1_000,
      idlePollMs: 0,
      internalPauseMs: 100,
      identifyHoldMs: 0,
      scheduler,
      detectCapabilities: () => of({ capabilities: capabilitiesFromVersion(V72), from: 'schema' as const }),
      poll: (): Observable<PollResult> => {
        const next = script.polls[pollIndex++];
        return next ? cold(next.marble, { r: next.result }) : NEVER;
      },
      ...script.options,
    });
    engine.changes$.subscribe((change) => {
      seen.push(`${scheduler.now()}:${change.kind === 'vm' ? `vm:${change.status}` : `${change.job.id}:${label(change.to)}`}`);
    });
    engine.start();
    for (const probe of script.probes ?? []) scheduler.schedule(() => probe.check(engine, pollIndex), probe.frame);
    scheduler.schedule(() => engine.stop(), script.until);
    flush();
  });
  return seen;
}

describe('MonitorJobs (virtual time)', () => {
  it('reconcile ordering by seq: a poll row older than the job\'s last event is ignored, and a job created after the snapshot is not vanished', () => {
    const seen = run({
      // m: created(1) running(2) | poll snapshot at seq 3 | m ready(4) | n created(5) running(6)
      events: '-abcde',
      eventValues: { a: jsc(1, 'm', 'created'), b: jsc(2, 'm', 'running'), c: jsc(4, 'm', 'ready'), d: jsc(5, 'n', 'created'), e: jsc(6, 'n', 'running') },
      polls: [{ marble: '------(r|)', result: poll(3, [running('m')]) }],
      until: 50,
    });
    expect(seen).toEqual(['0:vm:connected', '2:m:created', '2:m:running', '3:m:ready+', '5:n:created', '5:n:running']);
  });

  it('a new job\'s first changes wait for the poll that tells its type, at most identifyHoldMs', () => {
    const events = { events: '-ab', eventValues: { a: jsc(1, 'm', 'created'), b: jsc(2, 'm', 'running') }, until: 400 };
    const answered = run({ ...events, options: { identifyHoldMs: 250 }, polls: [{ marble: '(r|)', result: poll(0, []) }, { marble: '--------(r|)', result: poll(3, [running('m')]) }] });
    // created (frame 1) asks for a poll at once; its answer (8 frames later) releases both changes.
    expect(answered).toEqual(['0:vm:connected', '9:m:created', '9:m:running']);
    const unanswered = run({ ...events, options: { identifyHoldMs: 250 }, polls: [{ marble: '(r|)', result: poll(0, []) }] });
    expect(unanswered).toEqual(['0:vm:connected', '251:m:created', '251:m:running']);
  });

  it('a job created while a poll is in flight is identified by the poll right after it, not at the hold\'s end', () => {
    const seen = run({
      events: '-ab',
      eventValues: { a: jsc(1, 'm', 'created'), b: jsc(2, 'm', 'running') },
      options: { identifyHoldMs: 250 },
      // The first poll is sent at 0, before the job, and answers at 5 without it; the one asked for at 1 goes at 5.
      polls: [{ marble: '-----(r|)', result: poll(0, []) }, { marble: '--(r|)', result: poll(8, [running('m')]) }],
      until: 400,
    });
    expect(seen).toEqual(['0:vm:connected', '7:m:created', '7:m:running']);
  });

  it('a poll sent before a job\'s events cannot say it is gone (its snapshot may predate them); the next one sent after them can: outcome unknown', () => {
    const seen = run({
      events: '-ab',
      eventValues: { a: jsc(1, 'm', 'created'), b: jsc(2, 'm', 'running') },
      // The first poll is sent at frame 0 and answered at frame 6 (seq 7, after both events); the next is the one
      // the job's creation asked for during it, sent right after it (not at the 10 ms tick).
      polls: [{ marble: '------(r|)', result: poll(7, []) }, { marble: '(r|)', result: poll(12, []) }],
      options: { activePollMs: 10 },
      until: 50,
    });
    expect(seen).toEqual(['0:vm:connected', '2:m:created', '2:m:running', '6:m:concluded=unknown']);
  });

  it('an internal pause blip never shows; a pause that lasts shows after internalPauseMs; a real change is never delayed', () => {
    const seen = run({
      events: '-ab 47ms c 49ms d 149ms e 149ms f 9ms g 9ms h',
      eventValues: {
        a: jsc(1, 'm', 'created'), b: jsc(2, 'm', 'running'),
        c: jsc(3, 'm', 'paused'), d: jsc(4, 'm', 'running'), // frames 50 and 100: a 50 ms blip
        e: jsc(5, 'm', 'paused'), f: jsc(6, 'm', 'running'), // frames 250 and 400: a pause that lasts
        g: jsc(7, 'm', 'paused'), h: jsc(8, 'm', 'aborting'), // frames 410 and 420: cancelled while paused
      },
      polls: [{ marble: '(r|)', result: poll(0, []) }],
      until: 600,
    });
    expect(seen).toEqual(['0:vm:connected', '2:m:created', '2:m:running', '350:m:paused/user', '400:m:running', '420:m:aborting']);
  });

  it('ended jobs beyond maxRetainedJobs are dropped oldest first at the next poll, all of them once past retentionMs; polling stops with the last live job', () => {
    const ids = ['j0', 'j1', 'j2', 'j3', 'j4', 'j5'];
    const statuses = ['created', 'running', 'concluded', 'null'];
    const eventValues: Record<string, QmpEvent> = {};
    let marble = '-';
    ids.forEach((id, i) =>
      statuses.forEach((status, k) => {
        const key = String.fromCharCode(97 + i * statuses.length + k);
        marble += key;
        eventValues[key] = jsc(i * statuses.length + k + 1, id, status);
      }),
    );
    const kept: Record<number, string[]> = {};
    const polled: Record<number, number> = {};
    const probe = (frame: number) => ({ frame, check: (engine: MonitorJobs, polls: number) => { kept[frame] = engine.snapshot().jobs.map((j) => j.id); polled[frame] = polls; } });
    run({
      events: marble,
      eventValues,
      // Every poll answers at once, with a snapshot older than the events: it ends nothing itself.
      polls: Array.from({ length: 20 }, () => ({ marble: '(r|)', result: poll(0, []) })),
      options: { maxRetainedJobs: 3, retentionMs: 500 },
      probes: [probe(100), probe(1001), probe(3500)],
      until: 4000,
    });
    // The poll each created asked for pruned to 3 ended jobs (j5 was not ended yet at j5's poll).
    expect(kept[100]).toEqual(['j2', 'j3', 'j4', 'j5']);
    // The prune on the retention clock (every 1 s) drops every ended job past 500 ms.
    expect(kept[1001]).toEqual([]);
    // One poll at connect, one per new job; none after: no job is active any more.
    expect(polled[100]).toBe(1 + ids.length);
    expect(polled[3500]).toBe(1 + ids.length);
  });
});
