/**
 * Adaptive polling as a pipeline. On every session (events are already subscribed by then) it polls
 * at once: that first successful poll is the session's reconcile. After that it polls every
 * `activePollMs` while any job is active and every `idlePollMs` otherwise (0: no idle polling).
 * Polls never overlap (exhaustMap: a tick during a poll is skipped) and each has a timeout; a
 * failed poll is reported and the cadence goes on. A new session cancels the old one's polling;
 * `null` (the monitor went down) stops polling until the next session.
 *
 * `pollMonitor` is the poll itself: `query-block-jobs` plus `query-jobs` (3.0+), pipelined, merged
 * by id. The result carries the earlier reply's `seq`: events with a smaller seq happened before
 * the snapshot, and a job whose last event is newer than it is judged by its events, not the poll.
 */
import {
  EMPTY, Observable, asyncScheduler, catchError, defer, distinctUntilChanged, exhaustMap, from, map, merge, of,
  switchMap, timeout, timer, type ObservableInput, type SchedulerLike,
} from 'rxjs';
import type { QmpMonitor } from '../qmp/types.js';
import type { MonitorCapabilities } from './types.js';
import { mergeJobRows, parseBlockJobRows, parseJobRows, type JobRow } from './qmp-payloads.js';

/** One poll's answer. */
export interface PollResult {
  rows: JobRow[];
  /** Stream position of the snapshot (the earliest reply's seq). */
  seq: number;
  /** Local wall-clock ms of that reply. */
  receivedAt: number;
  session: number;
}

export type PollOutcome =
  | { kind: 'polled'; result: PollResult; reconcile: boolean }
  | { kind: 'poll-failed'; error: unknown; reconcile: boolean };

export interface PollCadence {
  /** Interval while any job is active (not concluded or dismissed). @default 1_000 */
  activePollMs?: number;
  /** Safety-net interval while nothing is active; 0 disables. @default 10_000 */
  idlePollMs?: number;
  /** A poll that takes longer fails. @default 5_000 */
  pollTimeoutMs?: number;
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

export function pollJobs<S>(deps: PollerDeps<S>): Observable<PollOutcome> {
  const activePollMs = deps.activePollMs ?? DEFAULT_ACTIVE_POLL_MS;
  const idlePollMs = deps.idlePollMs ?? DEFAULT_IDLE_POLL_MS;
  const pollTimeoutMs = deps.pollTimeoutMs ?? DEFAULT_POLL_TIMEOUT_MS;
  const scheduler = deps.scheduler ?? asyncScheduler;

  const ticks$ = deps.active$.pipe(
    distinctUntilChanged(),
    switchMap((active) => {
      const every = active ? activePollMs : idlePollMs;
      return every > 0 ? timer(every, every, scheduler) : EMPTY;
    }),
  );

  return deps.sessions$.pipe(
    switchMap((session) =>
      session === null ? EMPTY : defer(() => {
        let reconciled = false;
        return merge(of('connect'), ticks$, deps.pollNow$ ?? EMPTY).pipe(
          exhaustMap(() =>
            from(deps.poll(session)).pipe(
              timeout({ first: pollTimeoutMs, scheduler }),
              map((result): PollOutcome => {
                const outcome: PollOutcome = { kind: 'polled', result, reconcile: !reconciled };
                reconciled = true;
                return outcome;
              }),
              catchError((error: unknown) => of<PollOutcome>({ kind: 'poll-failed', error, reconcile: !reconciled })),
            ),
          ),
        );
      }),
    ),
  );
}

/** Polls one monitor: query-block-jobs, plus query-jobs where it exists. */
export async function pollMonitor(monitor: QmpMonitor, caps: MonitorCapabilities, timeoutMs: number): Promise<PollResult> {
  const options = { timeoutMs };
  const [blockReply, jobReply] = await Promise.all([
    monitor.executeWithMeta('query-block-jobs', undefined, options),
    caps.queryJobs ? monitor.executeWithMeta('query-jobs', undefined, options) : undefined,
  ]);
  const rows = mergeJobRows(parseBlockJobRows(blockReply.value), jobReply ? parseJobRows(jobReply.value) : []);
  const first = jobReply && jobReply.seq < blockReply.seq ? jobReply : blockReply;
  return { rows, seq: first.seq, receivedAt: first.receivedAt, session: first.session };
}
