/**
 * MonitorJobs when QEMU hangs behind an open socket, in virtual time: the poller's `unresponsive`
 * verdict turns the VM `disconnected` (with the reason) and its jobs stale, exactly as a monitor
 * drop does; the next answered poll turns it `connected` and reconciles.
 */
import { BehaviorSubject, NEVER, Subject, map, of, switchMap, throwError, timer, type Observable } from 'rxjs';
import { TestScheduler } from 'rxjs/testing';
import { describe, expect, it } from 'vitest';
import { ConfigError, QmpTimeoutError, type QmpError } from '../../../src/errors.js';
import { capabilitiesFromVersion } from '../../../src/jobs/capabilities.js';
import { MonitorJobs, type MonitorJobsOptions } from '../../../src/jobs/monitor-jobs.js';
import type { PollResult } from '../../../src/jobs/poller.js';
import type { JobRow } from '../../../src/jobs/qmp-payloads.js';
import type { StreamInput, VmSnapshot } from '../../../src/jobs/types.js';
import type { QmpEvent, QmpMonitor, QmpRunState, QmpSession } from '../../../src/qmp/types.js';
import { label } from './reducer-harness.js';

const V72 = { major: 7, minor: 2, micro: 22 };
const sessionNumbered = (number: number): QmpSession => ({
  number, greeting: { version: { qemu: V72, package: '' }, capabilities: [] }, sameProcess: number === 1 ? 'first' : true, startedAt: 0, seq: 0,
});
const jsc = (seq: number, id: string, status: string): QmpEvent => ({
  event: 'JOB_STATUS_CHANGE', data: { id, status }, qemuTimestamp: null, receivedAt: seq, receivedMono: seq, seq, session: 1,
});
const otherEvent = (seq: number): QmpEvent => ({ event: 'RESUME', data: {}, qemuTimestamp: null, receivedAt: seq, receivedMono: seq, seq, session: 1 });
const mirror = (id: string, status: JobRow['status']): JobRow => ({ id, type: 'mirror', status, progress: { current: 0, total: 100 } });

/** How a poll started at a frame behaves. */
type Answer = { rows: JobRow[]; seq: number; session?: number } | 'hang' | 'client-timeout';

interface Script {
  /** Hot marbles of the monitor: `s`/`t` sessions 1/2; run states `r` ready, `d` disconnected. */
  sessions?: string;
  states?: string;
  events?: string;
  eventValues?: Record<string, QmpEvent>;
  /** The answer to a poll started at `frame`. */
  answer: (frame: number) => Answer;
  options?: MonitorJobsOptions;
  /** Snapshots to take at these frames. */
  snapshotsAt?: number[];
  until: number;
}

interface Run {
  /** `frame:vm:status` and `frame:job:label/source` for every change emitted. */
  seen: string[];
  changes: StreamInput[];
  pollStarts: number[];
  snapshots: Map<number, VmSnapshot>;
}

function run(script: Script): Run {
  const scheduler = new TestScheduler((a, b) => expect(a).toEqual(b));
  const out: Run = { seen: [], changes: [], pollStarts: [], snapshots: new Map() };
  scheduler.run(({ hot, flush }) => {
    const state$ = new BehaviorSubject<QmpRunState>('ready');
    hot(script.states ?? '-', { r: 'ready', d: 'disconnected' }).subscribe((state) => state$.next(state as QmpRunState));
    const monitor: QmpMonitor = {
      get state() {
        return state$.value;
      },
      state$,
      sessions$: hot(script.sessions ?? 's', { s: sessionNumbered(1), t: sessionNumbered(2) }),
      session: undefined,
      events$: script.events ? hot(script.events, script.eventValues) : NEVER,
      errors$: new Subject<QmpError>(),
      execute: () => Promise.reject(new Error('not used')),
      executeWithMeta: () => Promise.reject(new Error('not used')),
    };
    const engine = new MonitorJobs('vm1', monitor, {
      activePollMs: 50,
      idlePollMs: 50,
      pollTimeoutMs: 70,
      identifyHoldMs: 0,
      scheduler,
      detectCapabilities: () => of({ capabilities: capabilitiesFromVersion(V72), from: 'schema' as const }),
      poll: (): Observable<PollResult> => {
        const frame = scheduler.now();
        out.pollStarts.push(frame);
        const answer = script.answer(frame);
        if (answer === 'hang') return NEVER;
        if (answer === 'client-timeout') return timer(60).pipe(switchMap(() => throwError(() => new QmpTimeoutError({ execute: 'query-block-jobs' }, 60))));
        // Answered in the same frame, but after the messages already on the wire (as a reply would be).
        return timer(0).pipe(map(() => ({ rows: answer.rows, seq: answer.seq, receivedAt: frame, session: answer.session ?? 1 })));
      },
      ...script.options,
    });
    engine.changes$.subscribe((change) => {
      out.changes.push(change);
      out.seen.push(`${scheduler.now()}:${change.kind === 'vm' ? `vm:${change.status}` : `${change.job.id}:${label(change.to)}/${change.source}`}`);
    });
    engine.start();
    for (const frame of script.snapshotsAt ?? []) scheduler.schedule(() => out.snapshots.set(frame, engine.snapshot()), frame);
    scheduler.schedule(() => engine.stop(), script.until);
    flush();
  });
  return out;
}

const reasons = (r: Run): (string | undefined)[] => r.changes.flatMap((c) => (c.kind === 'vm' ? [c.reason] : []));

/** A mirror `m` created and running at frame 5; polls answer it running until frame 100, hang from then until 300, then answer it ready. */
const hangScript: Script = {
  events: '-----(ab)',
  eventValues: { a: jsc(1, 'm', 'created'), b: jsc(2, 'm', 'running') },
  answer: (frame) => (frame < 5 ? { rows: [], seq: 0 } : frame < 100 ? { rows: [mirror('m', 'running')], seq: 10 } : frame < 300 ? 'hang' : { rows: [mirror('m', 'ready')], seq: 30 }),
  snapshotsAt: [290, 360],
  until: 400,
};

describe('MonitorJobs: a monitor that stops answering', () => {
  it('goes disconnected with the reason after two polls time out, jobs stale; the next answered poll connects and reconciles', () => {
    const r = run(hangScript);
    // The poll at 105 times out at 175 and is retried at once; the retry's timeout (245) is the second in a
    // row: the verdict. (Waiting for the next tick, it would have come at 275.)
    expect(r.seen).toEqual(['0:vm:connected', '5:m:created/event', '5:m:running/event', '245:vm:disconnected', '355:vm:connected', '355:m:ready+/reconcile']);
    expect(reasons(r)).toEqual([undefined, 'monitor unresponsive: no reply to the job poll within 70 ms', undefined]);
    // Polling goes on at the cadence while unresponsive (no retry after the verdict): the poll is the probe.
    // The one at 255 still gets no answer (until 325), so the tick at 305 is skipped and 355 reconciles.
    expect(r.pollStarts.filter((frame) => frame >= 100)).toEqual([105, 175, 255, 355]);
    expect(r.snapshots.get(290)).toMatchObject({ status: 'disconnected', jobs: [{ id: 'm', state: 'running', stale: true }] });
    expect(r.snapshots.get(360)).toMatchObject({ status: 'connected', jobs: [{ id: 'm', state: 'ready', ready: true, stale: false }] });
  });

  it('a reconcile that finds nothing new clears stale without a transition; a job gone meanwhile concludes with outcome unknown', () => {
    const r = run({
      ...hangScript,
      events: '-----(abcd)',
      eventValues: { a: jsc(1, 'm', 'created'), b: jsc(2, 'm', 'running'), c: jsc(3, 'n', 'created'), d: jsc(4, 'n', 'running') },
      answer: (frame) =>
        frame < 5 ? { rows: [], seq: 0 } : frame < 100 || frame >= 300 ? { rows: [mirror('m', 'running'), ...(frame < 100 ? [mirror('n', 'running')] : [])], seq: frame } : 'hang',
    });
    expect(r.seen.slice(5)).toEqual(['245:vm:disconnected', '355:vm:connected', '355:n:concluded=unknown/reconcile']);
    expect(r.snapshots.get(290)?.jobs.map((job) => [job.id, job.stale])).toEqual([['m', true], ['n', true]]);
    expect(r.snapshots.get(360)?.jobs.map((job) => [job.id, job.state, job.stale])).toEqual([['m', 'running', false], ['n', 'concluded', false]]);
  });

  it("names the command that got no reply when the client's own timeout fires first", () => {
    const r = run({ ...hangScript, answer: (frame) => (frame < 100 ? hangScript.answer(frame) : frame < 300 ? 'client-timeout' : hangScript.answer(frame)) });
    // 105 + 60, retried at once: 165 + 60.
    expect(r.seen).toContain('225:vm:disconnected');
    expect(reasons(r)[1]).toBe('monitor unresponsive: no reply to query-block-jobs within 60 ms');
  });

  it('honours unresponsiveAfterPolls', () => {
    const r = run({ ...hangScript, options: { unresponsiveAfterPolls: 1 } });
    expect(r.seen.slice(3)).toEqual(['175:vm:disconnected', '305:vm:connected', '305:m:ready+/reconcile']);
  });

  it('any message from QEMU while it counts as unresponsive triggers a poll at once', () => {
    const r = run({
      ...hangScript,
      events: '-----(ab) 291ms c',
      eventValues: { ...hangScript.eventValues, c: otherEvent(20) },
      options: { activePollMs: 100 },
      answer: (frame) => (frame < 100 ? hangScript.answer(frame) : frame < 300 ? 'hang' : hangScript.answer(frame)),
    });
    // The poll at 105 and its retry time out; the event at 300 polls before the tick at 305 would.
    expect(r.seen.slice(3)).toEqual(['245:vm:disconnected', '300:vm:connected', '300:m:ready+/reconcile']);
  });

  it('a socket that closes while unresponsive stops polling without a second disconnected; the next session connects and reconciles', () => {
    const r = run({
      ...hangScript,
      sessions: 's 349ms t',
      states: '- 319ms d 29ms r',
      answer: (frame) => (frame < 100 ? hangScript.answer(frame) : frame < 350 ? 'hang' : { rows: [mirror('m', 'ready')], seq: 40, session: 2 }),
    });
    expect(r.seen.slice(3)).toEqual(['245:vm:disconnected', '350:vm:connected', '350:m:ready+/reconcile']);
    // The poll started at 255 is cancelled by the drop at 320; nothing polls until the new session.
    expect(r.pollStarts.filter((frame) => frame >= 100)).toEqual([105, 175, 255, 350]);
  });

  it('a bad unresponsiveAfterPolls fails at construction, naming the setting', () => {
    const monitor = { state$: NEVER } as unknown as QmpMonitor;
    expect(() => new MonitorJobs('vm1', monitor, { unresponsiveAfterPolls: 0 })).toThrow(ConfigError);
    expect(() => new MonitorJobs('vm1', monitor, { unresponsiveAfterPolls: 0 })).toThrow(/unresponsiveAfterPolls/);
  });
});
