/**
 * Property test of the job engine (reducer, hold operator and poll handling, as MonitorJobs wires
 * them) against a simple model of QEMU (qemu-job-model.ts), in virtual time. fast-check draws a
 * legal QEMU lifecycle (a walk on JobSTT with drain blips, lasting pauses, error stops, cancels,
 * failures, failed starts and late or auto dismissal; up to three jobs at once on the VM, an id
 * reused once QEMU dismissed its job) and a polling pattern whose replies are overtaken by events:
 * pipelined (the first reply at once, the poll complete when the slower second one arrives) or
 * lagging (QEMU 7.2 writes a query's reply after events its job coroutines sent since the snapshot).
 * What subscribers are told must be exactly QEMU's statuses
 * without the blips, never before QEMU reached them, concluded and dismissed at the very moment QEMU
 * sent them, with QEMU's outcome. FUZZ_RUNS sets the number of runs.
 */
import fc from 'fast-check';
import { BehaviorSubject, NEVER, Observable, Subject, VirtualAction, VirtualTimeScheduler, of } from 'rxjs';
import { describe, expect, it } from 'vitest';
import type { QmpError } from '../../../src/errors.js';
import { capabilitiesFromVersion } from '../../../src/jobs/capabilities.js';
import { MonitorJobs } from '../../../src/jobs/monitor-jobs.js';
import type { PollResult } from '../../../src/jobs/poller.js';
import { mayReach } from '../../../src/jobs/qemu-rules.js';
import type { QmpEvent, QmpMonitor, QmpRunState, QmpSession } from '../../../src/qmp/types.js';
import { buildLifecycle, expectedTold, JOB_STT, lifecycleSeed, rowOf, tell, type Lifecycle, type LifecycleSeed, type Status, type Step } from './qemu-job-model.js';

const runs = Number(process.env.FUZZ_RUNS ?? 200);
const HOLD_MS = 300;
const IDENTIFY_MS = 250;
const V72 = { major: 7, minor: 2, micro: 0 };
const session: QmpSession = { number: 1, greeting: { version: { qemu: V72, package: '' }, capabilities: [] }, sameProcess: 'first', startedAt: 0, seq: 0 };

interface Polling {
  everyMs: number;
  /** How each poll is answered, cycled: when QEMU takes its snapshot and when the answer is complete. */
  replies: { snapshotMs: number; replyMs: number; lagging: boolean }[];
}

interface Told {
  at: number;
  label: string;
  from: string | null;
}

/** Plays the lifecycles (jobs of one VM, at once) on a fake monitor to a real MonitorJobs in virtual time; returns what it published per job. */
function play(lives: Lifecycle[], polling: Polling): Map<string, { told: Told[]; final: string | undefined }> {
  const scheduler = new VirtualTimeScheduler(VirtualAction, Infinity);
  const events$ = new Subject<QmpEvent>();
  let seq = 0;
  const current = new Map<Lifecycle, Step>();
  // QEMU sends a step's events in one main-loop turn: a command is answered before or after them all.
  let afterStep: (() => void)[] | undefined;
  for (const life of lives) for (const step of life.steps) {
    scheduler.schedule(() => {
      if (step.command) for (const finish of [...lagging]) finish();
      afterStep = [];
      current.set(life, step);
      for (const e of step.events) {
        const at = scheduler.now();
        events$.next({ ...e, qemuTimestamp: null, receivedAt: at, receivedMono: at, seq: ++seq, session: 1 });
      }
      const queued = afterStep;
      afterStep = undefined;
      for (const answer of queued) answer();
    }, step.at);
  }
  const monitor: QmpMonitor = {
    state: 'ready',
    state$: new BehaviorSubject<QmpRunState>('ready'),
    sessions$: NEVER,
    session,
    events$,
    errors$: new Subject<QmpError>(),
    execute: () => Promise.reject(new Error('not used')),
    executeWithMeta: () => Promise.reject(new Error('not used')),
  };
  let polls = 0;
  /** Lagging replies not yet written: a command step makes QEMU write them first. */
  const lagging = new Set<() => void>();
  const engine = new MonitorJobs('vm1', monitor, {
    activePollMs: polling.everyMs,
    idlePollMs: polling.everyMs * 3,
    internalPauseMs: HOLD_MS,
    identifyHoldMs: IDENTIFY_MS,
    scheduler,
    detectCapabilities: () => of({ capabilities: capabilitiesFromVersion(V72), from: 'schema' as const }),
    poll: () =>
      new Observable<PollResult>((subscriber) => {
        const reply = polling.replies[polls++ % polling.replies.length]!;
        const snapshot = (): void => {
          const rows = lives.flatMap((life) => rowOf(life, current.get(life)) ?? []);
          // Pipelined: the first reply is written right after its snapshot (its seq), the poll completes
          // when the second arrives. Lagging: QEMU 7.2 runs the query in a bottom half and writes the
          // reply later; events sent meanwhile come before it on the wire although the snapshot predates them.
          const firstSeq = reply.lagging ? undefined : ++seq;
          const deliver = (): void => {
            if (!lagging.delete(deliver) && reply.lagging) return;
            timerAction.unsubscribe();
            subscriber.next({ rows, seq: firstSeq ?? ++seq, receivedAt: scheduler.now(), session: 1 });
            subscriber.complete();
          };
          if (reply.lagging) lagging.add(deliver);
          const timerAction = scheduler.schedule(deliver, reply.replyMs);
          subscriber.add(timerAction);
          subscriber.add(() => lagging.delete(deliver));
        };
        // A command runs before or after a step's events, never between them.
        const atSnapshot = (): void => void (afterStep ? afterStep.push(snapshot) : snapshot());
        if (reply.snapshotMs === 0) atSnapshot();
        else subscriber.add(scheduler.schedule(atSnapshot, reply.snapshotMs));
      }),
  });
  // Per job id and incarnation (an id reused after its dismissal is a new incarnation).
  const seen = new Map(lives.map((life) => [incarnationKey(lives, life), { told: [] as Told[], final: undefined as string | undefined }]));
  engine.changes$.subscribe((change) => {
    if (change.kind !== 'transition') return;
    const key = `${change.job.id}#${change.job.incarnation}`;
    const into = seen.get(key);
    if (!into) throw new Error(`a transition of ${key}, which QEMU never had`);
    into.told.push({ at: scheduler.now(), label: tell(change.to), from: change.from ? tell(change.from) : null });
  });
  const end = Math.max(...lives.map((life) => life.steps.at(-1)!.at)) + 3 * HOLD_MS + IDENTIFY_MS + 600;
  scheduler.schedule(() => {
    for (const life of lives) {
      const job = engine.job(life.id);
      if (job && `${job.id}#${job.incarnation}` === incarnationKey(lives, life)) seen.get(incarnationKey(lives, life))!.final = tell(job);
    }
    engine.stop();
  }, end);
  engine.start();
  scheduler.flush();
  return seen;
}

/** `id#n`: the n-th lifecycle with this id is its n-th incarnation. */
function incarnationKey(lives: Lifecycle[], life: Lifecycle): string {
  return `${life.id}#${lives.filter((l) => l.id === life.id).indexOf(life) + 1}`;
}

/** Lifecycles of one VM: at once, or reusing the previous job's id once QEMU dismissed it. */
function lifecycles(seeds: { seed: LifecycleSeed; reuse: boolean }[]): Lifecycle[] {
  const lives: Lifecycle[] = [];
  for (const { seed, reuse } of seeds) {
    const previous = lives.at(-1);
    if (reuse && previous && previous.steps.at(-1)!.status === 'null') {
      lives.push(buildLifecycle({ ...seed, startAt: previous.steps.at(-1)!.at + seed.startAt }, HOLD_MS, previous.id));
    } else {
      lives.push(buildLifecycle(seed, HOLD_MS, `job${lives.length}`));
    }
  }
  return lives;
}

const polling = fc.record({
  everyMs: fc.integer({ min: 20, max: 1_500 }),
  replies: fc.array(fc.record({ snapshotMs: fc.integer({ min: 0, max: 300 }), replyMs: fc.integer({ min: 0, max: 300 }), lagging: fc.boolean() }), { minLength: 1, maxLength: 8 }),
});

describe('job engine vs a model of QEMU (fast-check, virtual time)', () => {
  it("the model's JobSTT is QEMU's as the engine knows it (same reachability)", () => {
    const statuses = Object.keys(JOB_STT) as Status[];
    const reach = (from: Status): Set<Status> => {
      const seen = new Set<Status>([from]);
      for (const s of seen) for (const next of JOB_STT[s]) seen.add(next);
      return seen;
    };
    for (const from of statuses) {
      for (const to of statuses) {
        expect(mayReach(from === 'null' ? 'dismissed' : from, to), `${from} -> ${to}`).toBe(reach(from).has(to));
      }
    }
  });

  it('publishes exactly QEMU\'s statuses minus drain blips, never early, terminal on time, with the right outcome', () => {
    fc.assert(
      fc.property(fc.array(fc.record({ seed: lifecycleSeed(HOLD_MS), reuse: fc.boolean() }), { minLength: 1, maxLength: 3 }), polling, (seeds, poll) => {
        const lives = lifecycles(seeds);
        const seen = play(lives, poll);
        for (const life of lives) {
          const expected = expectedTold(life);
          const key = incarnationKey(lives, life);
          const { told, final } = seen.get(key)!;
          // The same sequence QEMU went through (no state it did not reach, none missing, no blip).
          expect(told.map((t) => t.label), key).toEqual(expected.map((e) => e.label));
          told.forEach((t, i) => {
            const want = expected[i]!;
            // Each transition continues from the one before it.
            expect(t.from).toBe(i === 0 ? null : told[i - 1]!.label);
            // Never before QEMU got there (ready included); a held change at most the holds later.
            expect(t.at).toBeGreaterThanOrEqual(want.notBefore);
            expect(t.at).toBeLessThanOrEqual(want.notBefore + HOLD_MS + IDENTIFY_MS);
            // The end is told the moment QEMU sends it.
            if (want.status === 'concluded' || want.status === 'null') expect(t.at).toBe(want.notBefore);
          });
          // What a new subscriber's snapshot shows is the last thing told (for an id's last incarnation).
          if (lives.filter((l) => l.id === life.id).at(-1) === life) expect(final).toBe(told.at(-1)?.label);
        }
      }),
      { numRuns: runs },
    );
  });
});
