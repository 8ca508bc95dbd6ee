/**
 * Adaptive polling as a pipeline. On every session (events are already subscribed by then) it polls
 * at once: that first successful poll is the session's reconcile. After that it polls every
 * `activePollMs` while any job is active and every `idlePollMs` otherwise (0: no idle polling).
 * Polls never overlap (exhaustMap: a tick during a poll is skipped) and each has a timeout; a
 * failed poll is reported and the cadence goes on. A new session cancels the old one's polling;
 * `null` (the monitor went down) stops polling until the next session.
 *
 * The idle cadence comes from one clock shared by every VM (liveness.ts), so idle polls run in
 * batches: one wake-up per batch, not two per VM.
 *
 * Liveness: a QEMU that hangs (stopped, stuck in I/O) keeps its socket open, so only the polls tell.
 * A poll that times out is retried at once (not at the next tick), and after
 * `unresponsiveAfterPolls` polls in a row time out, failures say `unresponsive`: a hang shows
 * within one interval plus `unresponsiveAfterPolls` x `pollTimeoutMs` (20 s idle, 11 s active by
 * default). The next poll that is answered is a reconcile again, as on a new session. Polling goes
 * on at the cadence meanwhile: the poll itself is the probe.
 *
 * `pollMonitor` is the poll itself: `query-block-jobs` plus `query-jobs` (3.0+), pipelined, merged
 * by id (on a VM with no known job, `query-jobs` alone while it is empty). The result carries the earlier reply's `seq`: events with a smaller seq happened before
 * the snapshot, and a job whose last event is newer than it is judged by its events, not the poll.
 */
import {
  EMPTY, Observable, TimeoutError, asyncScheduler, catchError, concat, defer, distinctUntilChanged, exhaustMap, from, map, merge, of,
  switchMap, timeout, timer, type ObservableInput, type SchedulerLike,
} from 'rxjs';
import { ConfigError, QmpTimeoutError } from '../errors.js';
import type { QmpMonitor } from '../qmp/types.js';
import { idleTicks } from './liveness.js';
import type { MonitorCapabilities } from './types.js';
import { mergeJobRows, parseBlockJobRows, parseJobRows, type JobRow } from './qmp-payloads.js';

/** One poll's answer. */
export interface PollResult {
  rows: JobRow[];
  /** Stream position of the snapshot (the earliest reply's seq). */
  seq: number;
  /**
   * Seq of the last event received before the poll was sent (set by the engine): the snapshot is
   * newer than that event, but may be older than events between it and the reply (QEMU 7.2 answers
   * a query from a bottom half, after job coroutines ran).
   */
  sentAfterSeq?: number;
  /** Local wall-clock ms of that reply. */
  receivedAt: number;
  session: number;
}

export type PollOutcome =
  | { kind: 'polled'; result: PollResult; reconcile: boolean }
  | {
      kind: 'poll-failed';
      error: unknown;
      reconcile: boolean;
      /** This poll and the ones before it timed out `unresponsiveAfterPolls` times or more in a row. */
      unresponsive: boolean;
    };

export interface PollCadence {
  /** Interval while any job is active (not concluded or dismissed). @default 1_000 */
  activePollMs?: number;
  /** Safety-net interval while nothing is active; 0 disables. @default 10_000 */
  idlePollMs?: number;
  /** A poll that takes longer fails. @default 5_000 */
  pollTimeoutMs?: number;
  /** This many polls in a row timing out make the monitor count as unresponsive (an integer >= 1). @default 2 */
  unresponsiveAfterPolls?: number;
}

export interface PollerDeps<S> extends PollCadence {
  /** Each new session, ready to be polled (e.g. with its capabilities known); null when it ended. */
  sessions$: Observable<S | null>;
  /** Whether any job is active; read on subscribe, so give it BehaviorSubject semantics. */
  active$: Observable<boolean>;
  poll: (session: S) => ObservableInput<PollResult>;
  /** Extra polls on demand (e.g. an event that calls for a fresh look). */
  pollNow$?: Observable<unknown>;
  scheduler?: SchedulerLike;
}

export const DEFAULT_ACTIVE_POLL_MS = 1_000;
export const DEFAULT_IDLE_POLL_MS = 10_000;
export const DEFAULT_POLL_TIMEOUT_MS = 5_000;
export const DEFAULT_UNRESPONSIVE_AFTER_POLLS = 2;

/** `unresponsiveAfterPolls`, checked; throws a ConfigError naming the field when it is not an integer >= 1. */
export function unresponsiveThreshold(cadence: PollCadence): number {
  const polls = cadence.unresponsiveAfterPolls ?? DEFAULT_UNRESPONSIVE_AFTER_POLLS;
  if (!Number.isInteger(polls) || polls < 1) throw new ConfigError(`must be an integer >= 1, got ${String(polls)}`, 'unresponsiveAfterPolls');
  return polls;
}

/** The poll got no answer in time (the pipeline's own timeout, or the command's). Other failures say nothing about liveness. */
const isPollTimeout = (error: unknown): boolean => error instanceof TimeoutError || error instanceof QmpTimeoutError;

export function pollJobs<S>(deps: PollerDeps<S>): Observable<PollOutcome> {
  const activePollMs = deps.activePollMs ?? DEFAULT_ACTIVE_POLL_MS;
  const idlePollMs = deps.idlePollMs ?? DEFAULT_IDLE_POLL_MS;
  const pollTimeoutMs = deps.pollTimeoutMs ?? DEFAULT_POLL_TIMEOUT_MS;
  const unresponsiveAfter = unresponsiveThreshold(deps);
  const scheduler = deps.scheduler ?? asyncScheduler;

  const ticks$ = deps.active$.pipe(
    distinctUntilChanged(),
    switchMap((active) => {
      if (!active) return idlePollMs > 0 ? idleTicks(idlePollMs, scheduler) : EMPTY;
      return activePollMs > 0 ? timer(activePollMs, activePollMs, scheduler) : EMPTY;
    }),
  );

  return deps.sessions$.pipe(
    switchMap((session) =>
      session === null ? EMPTY : defer(() => {
        let reconciled = false;
        let timeoutsInARow = 0;
        const attempt = (): Observable<PollOutcome> =>
          from(deps.poll(session)).pipe(
            timeout({ first: pollTimeoutMs, scheduler }),
            map((result): PollOutcome => {
              const outcome: PollOutcome = { kind: 'polled', result, reconcile: !reconciled };
              reconciled = true;
              timeoutsInARow = 0;
              return outcome;
            }),
            catchError((error: unknown) => {
              const timedOut = isPollTimeout(error);
              if (timedOut) timeoutsInARow++;
              const unresponsive = timeoutsInARow >= unresponsiveAfter;
              const outcome: PollOutcome = { kind: 'poll-failed', error, reconcile: !reconciled, unresponsive };
              // Whatever happened while QEMU did not answer is the next answered poll's to reconcile.
              if (unresponsive) reconciled = false;
              // A first timeout is asked again at once: a hang is told by timeouts in a row, and
              // waiting a tick between them (10 s idle) would only delay the verdict.
              return timedOut && !unresponsive ? concat(of(outcome), defer(attempt)) : of(outcome);
            }),
          );
        return merge(of('connect'), ticks$, deps.pollNow$ ?? EMPTY).pipe(exhaustMap(attempt));
      }),
    ),
  );
}

/**
 * Polls one monitor: query-block-jobs, plus query-jobs where it exists, pipelined.
 *
 * `nothingKnown` (the engine knows no job on this VM): the idle safety-net poll asks query-jobs alone
 * and stops there when it is empty, since every block job is also a job in query-jobs (3.0+); only
 * a job it reveals costs the second query. Half the commands on an idle fleet, and QEMU still has
 * to answer one command per poll, so a hung QEMU is detected just as soon.
 */
export async function pollMonitor(monitor: QmpMonitor, caps: MonitorCapabilities, timeoutMs: number, nothingKnown = false): Promise<PollResult> {
  const options = { timeoutMs };
  if (nothingKnown && caps.queryJobs) {
    const jobReply = await monitor.executeWithMeta('query-jobs', undefined, options);
    const jobRows = parseJobRows(jobReply.value);
    if (jobRows.length === 0) return { rows: [], seq: jobReply.seq, receivedAt: jobReply.receivedAt, session: jobReply.session };
    const blockReply = await monitor.executeWithMeta('query-block-jobs', undefined, options);
    // The earlier reply's seq, as below: events after it win over this poll.
    return { rows: mergeJobRows(parseBlockJobRows(blockReply.value), jobRows), seq: jobReply.seq, receivedAt: jobReply.receivedAt, session: jobReply.session };
  }
  const [blockReply, jobReply] = await Promise.all([
    monitor.executeWithMeta('query-block-jobs', undefined, options),
    caps.queryJobs ? monitor.executeWithMeta('query-jobs', undefined, options) : undefined,
  ]);
  const rows = mergeJobRows(parseBlockJobRows(blockReply.value), jobReply ? parseJobRows(jobReply.value) : []);
  const first = jobReply && jobReply.seq < blockReply.seq ? jobReply : blockReply;
  return { rows, seq: first.seq, receivedAt: first.receivedAt, session: first.session };
}
