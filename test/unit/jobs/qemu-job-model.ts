/**
 * A simple model of one QEMU 7.2 block job, independent of the engine: a lifecycle that walks
 * QEMU's own state machine (JobSTT, job.c), the QMP events QEMU sends on the way, what a poll
 * shows at a given moment, and what subscribers must be told about it. The expectation is written
 * from QEMU's side only: the statuses the job went through, minus the drain blips (a pause nobody
 * asked for that QEMU undoes within the hold), with the outcome its end events name.
 */
import fc from 'fast-check';
import type { JobRow } from '../../../src/jobs/qmp-payloads.js';

export type Status = 'created' | 'running' | 'paused' | 'ready' | 'standby' | 'waiting' | 'pending' | 'aborting' | 'concluded' | 'null';
export type Outcome = 'completed' | 'failed' | 'cancelled';

/** JobSTT of job.c (v7.2.0): status -> statuses it may move to. */
export const JOB_STT: Readonly<Record<Status, readonly Status[]>> = {
  created: ['running', 'aborting', 'null'],
  running: ['paused', 'ready', 'waiting', 'aborting'],
  paused: ['running'],
  ready: ['standby', 'waiting', 'aborting'],
  standby: ['ready'],
  waiting: ['pending', 'aborting'],
  pending: ['aborting', 'concluded'],
  aborting: ['concluded'],
  concluded: ['null'],
  null: [],
};

/** How a walk that ran out of choices ends the job by the shortest legal way. */
const TOWARDS_END: Readonly<Record<Status, Status | undefined>> = {
  created: 'running', running: 'waiting', paused: 'running', ready: 'waiting', standby: 'ready',
  waiting: 'pending', pending: 'concluded', aborting: 'concluded', concluded: 'null', null: undefined,
};

/** Why QEMU paused: a drain blip (undone within the hold), another client's lasting pause, or an I/O error with on-error=stop. */
export type PauseKind = 'blip' | 'long' | 'error';

export interface QmpEventData {
  event: string;
  data: Record<string, unknown>;
}

/** One moment of the job's life: QEMU entered `status` at `at` (ms) and sent `events` together. */
export interface Step {
  at: number;
  status: Status;
  events: QmpEventData[];
  pause?: PauseKind;
  /**
   * The step is a QMP command's doing (the job's creation and start, a dismiss by a client), not the
   * job coroutine's: QEMU's dispatcher runs one command at a time, so no other query is between its
   * snapshot and its reply meanwhile.
   */
  command?: boolean;
}

export interface Lifecycle {
  id: string;
  steps: Step[];
  outcome: Outcome;
  autoDismiss: boolean;
}

export interface WalkChoice {
  pick: number;
  gapMs: number;
  pause: PauseKind;
  pauseMs: number;
}

export interface LifecycleSeed {
  startAt: number;
  walk: WalkChoice[];
  abort: 'cancel' | 'error';
  dismiss: 'auto' | 'later' | 'never';
  failedStart: boolean;
}

/**
 * Arbitrary lifecycles for a pause hold of `holdMs`: blips last at most a third of it, lasting
 * pauses at least three times it, so the expectation never depends on a race with the hold timer.
 */
export function lifecycleSeed(holdMs: number): fc.Arbitrary<LifecycleSeed> {
  const choice = fc.record({
    pick: fc.nat(),
    gapMs: fc.integer({ min: 1, max: 2 * holdMs }),
    pause: fc.constantFrom<PauseKind>('blip', 'blip', 'long', 'error'),
    pauseMs: fc.integer({ min: 1, max: 3 * holdMs }),
  });
  return fc.record({
    startAt: fc.integer({ min: 1, max: 3 * holdMs }),
    walk: fc.array(choice, { maxLength: 14 }),
    abort: fc.constantFrom<'cancel' | 'error'>('cancel', 'error'),
    dismiss: fc.constantFrom<'auto' | 'later' | 'never'>('auto', 'later', 'never'),
    failedStart: fc.integer({ min: 0, max: 9 }).map((n) => n === 0),
  });
}

const IO_ERROR = 'Input/output error';
const progress = { offset: 4096, len: 8192 };

/** Walks JobSTT with the seed's choices, then ends the job; records QEMU's events at each step. */
export function buildLifecycle(seed: LifecycleSeed, holdMs: number, id = 'job0'): Lifecycle {
  const steps: Step[] = [];
  let at = seed.startAt;
  let status = 'created' as Status;
  let everReady = false;
  let aborted = false;
  const jsc = (s: Status): QmpEventData => ({ event: 'JOB_STATUS_CHANGE', data: { id, status: s } });
  steps.push({ at, status, events: [jsc('created')], command: true });
  let nextGap = seed.walk[0]?.gapMs ?? holdMs;

  const enter = (next: Status, choice: WalkChoice | undefined, sameInstant = false): void => {
    if (!sameInstant) at += nextGap;
    nextGap = choice?.gapMs ?? holdMs;
    const events: QmpEventData[] = [];
    const step: Step = { at, status: next, events };
    if (next === 'paused' || next === 'standby') {
      step.pause = choice?.pause ?? 'long';
      if (step.pause === 'error') events.push({ event: 'BLOCK_JOB_ERROR', data: { device: id, operation: 'write', action: 'stop' } });
      // A blip ends well inside the hold; a lasting pause well after it.
      nextGap = step.pause === 'blip' ? 1 + ((choice?.pauseMs ?? 0) % Math.floor(holdMs / 3)) : step.pause === 'long' ? 3 * holdMs + (choice?.pauseMs ?? 0) : nextGap;
    }
    if (next === 'aborting') aborted = true;
    if (next === 'concluded') {
      const end = outcomeOf(aborted, seed.abort);
      if (end === 'cancelled') events.push({ event: 'BLOCK_JOB_CANCELLED', data: { device: id, type: 'mirror', ...progress, speed: 0 } });
      else events.push({ event: 'BLOCK_JOB_COMPLETED', data: { device: id, type: 'mirror', ...progress, speed: 0, ...(end === 'failed' ? { error: IO_ERROR } : {}) } });
    }
    events.push(jsc(next));
    if (next === 'ready' && !everReady) events.push({ event: 'BLOCK_JOB_READY', data: { device: id, type: 'mirror', len: progress.len, offset: progress.len, speed: 0 } });
    if (next === 'ready') everReady = true;
    if (next === 'pending') events.push({ event: 'BLOCK_JOB_PENDING', data: { id, type: 'mirror' } });
    steps.push(step);
    status = next;
  };

  // The command that creates a job starts it (job_start): created is left in the same instant.
  const leave = (next: Status, choice: WalkChoice | undefined): void => {
    const starting = status === 'created';
    enter(next, choice, starting);
    if (starting) steps.at(-1)!.command = true;
  };

  if (seed.failedStart) {
    enter('null', undefined, true);
    steps.at(-1)!.command = true;
    return { id, steps, outcome: 'failed', autoDismiss: true };
  }
  for (const choice of seed.walk) {
    if (status === 'concluded') break;
    const options = JOB_STT[status].filter((s) => s !== 'null' && s !== 'concluded');
    if (options.length === 0) break;
    leave(options[choice.pick % options.length]!, choice);
  }
  while (status !== 'concluded') leave(TOWARDS_END[status]!, undefined);
  if (seed.dismiss !== 'never') {
    enter('null', undefined, seed.dismiss === 'auto');
    if (seed.dismiss === 'later') steps.at(-1)!.command = true;
  }
  return { id, steps, outcome: outcomeOf(aborted, seed.abort), autoDismiss: seed.dismiss === 'auto' };
}

function outcomeOf(aborted: boolean, abort: 'cancel' | 'error'): Outcome {
  if (!aborted) return 'completed';
  return abort === 'cancel' ? 'cancelled' : 'failed';
}

/** The step QEMU was in at `time` (the last one entered at or before it), or undefined before the job. */
export function stepAt(life: Lifecycle, time: number): Step | undefined {
  let found: Step | undefined;
  for (const step of life.steps) if (step.at <= time) found = step;
  return found;
}

/** The job as query-jobs and query-block-jobs (merged) show it while in `step`; undefined once dismissed. */
export function rowOf(life: Lifecycle, step: Step | undefined): JobRow | undefined {
  if (!step || step.status === 'null') return undefined;
  const row: JobRow = {
    id: life.id,
    type: 'mirror',
    status: step.status,
    // A mirror's offset reaches len long before it is ready (QEMU >= 2.2): never a sign of readiness.
    progress: { current: step.status === 'created' ? 0 : progress.len, total: progress.len },
    ready: step.status === 'ready' || step.status === 'standby',
    ioStatus: step.pause === 'error' ? 'failed' : 'ok',
    speed: 0,
    autoFinalize: true,
    autoDismiss: life.autoDismiss,
  };
  if (step.status === 'concluded' && life.outcome !== 'completed') row.error = life.outcome === 'cancelled' ? 'Operation canceled' : IO_ERROR;
  return row;
}

/** What a subscriber sees, compactly: `state`, `+` if ready, `/reason` while paused, `=outcome` once ended. */
export interface Told {
  state: string;
  ready: boolean | null;
  pauseReason?: string;
  outcome?: string;
}

export function tell(t: Told): string {
  return `${t.state}${t.ready === true ? '+' : ''}${t.pauseReason ? `/${t.pauseReason}` : ''}${t.outcome ? `=${t.outcome}` : ''}`;
}

/**
 * What subscribers must be told, in order, each with the earliest moment it may be told: every
 * status QEMU entered (null as dismissed), except a blip pause together with the return that undoes
 * it, and nothing at all for a start that failed (created -> null). Consecutive repeats collapse.
 */
export function expectedTold(life: Lifecycle): { label: string; notBefore: number; status: Status }[] {
  const steps = life.steps;
  if (steps.length === 2 && steps[1]!.status === 'null') return [];
  const told: { label: string; notBefore: number; status: Status }[] = [];
  let pauseReason: string | undefined;
  for (let i = 0; i < steps.length; i++) {
    const step = steps[i]!;
    if (step.pause === 'blip') {
      i++; // the return to running/ready: the job is where it was
      continue;
    }
    if (step.status === 'paused' || step.status === 'standby') pauseReason = step.pause === 'error' ? 'error' : 'user';
    else pauseReason = undefined;
    const ended = step.status === 'concluded' || step.status === 'null';
    const label = tell({
      state: step.status === 'null' ? 'dismissed' : step.status,
      ready: step.status === 'ready' || step.status === 'standby',
      ...(pauseReason ? { pauseReason } : {}),
      ...(ended ? { outcome: life.outcome } : {}),
    });
    if (told.at(-1)?.label !== label) told.push({ label, notBefore: step.at, status: step.status });
  }
  return told;
}
