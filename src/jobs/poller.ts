/**
 * Adaptive polling as a pipeline. On every session (events are already subscribed by then) it polls
 * at once: that first successful poll is the session's reconcile. After that it polls every
 * `activePollMs` while any job is active and every `idlePollMs` otherwise (0: no idle polling).
 * Polls never overlap (a tick during a poll is skipped) and each has a timeout; a failed poll is
 * reported and the cadence goes on. A pollNow during a poll is not skipped: that poll's answer may
 * predate what asked (a job created after it was sent), so one more poll follows it. A new session
 * cancels the old one's polling; `null` (the monitor went down) stops polling until the next session.
 *
 * The idle cadence comes from one clock shared by every VM (liveness.ts), so idle polls run in
 * batches: one wake-up per batch, not two per VM. Each session's polls run in one SessionPolls
 * object with its timeout in a shared deadline lane (src/deadlines.ts), not in an operator chain
 * and a timer per poll: at 1,000 idle monitors the per-poll garbage was most of the idle CPU.
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
  EMPTY, Observable, TimeoutError, asyncScheduler, distinctUntilChanged, from, isObservable, merge, of,
  switchMap, timer, type ObservableInput, type SchedulerLike, type Subscriber, type Subscription,
} from 'rxjs';
import { deadlineLane, type DeadlineLane, type Expiring } from '../deadlines.js';
import { ConfigError, QmpTimeoutError } from '../errors.js';
import type { ExecuteOptions, QmpMonitor, QmpReply } from '../qmp/types.js';
import { idleTicks } from './liveness.js';
import type { MonitorCapabilities } from './types.js';
import { mergeJobRows, parseBlockJobRows, parseJobRows, type JobRow } from './qmp-payloads.js';
import { configDefaults } from '../generated/config-defaults.js';

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

/** `unresponsiveAfterPolls`, checked; throws a ConfigError naming the field when it is not an integer >= 1. */
export function unresponsiveThreshold(cadence: PollCadence): number {
  const polls = cadence.unresponsiveAfterPolls ?? configDefaults.jobs.unresponsiveAfterPolls;
  if (!Number.isInteger(polls) || polls < 1) throw new ConfigError(`must be an integer >= 1, got ${String(polls)}`, 'unresponsiveAfterPolls');
  return polls;
}

/** The poll got no answer in time (the pipeline's own timeout, or the command's). Other failures say nothing about liveness. */
const isPollTimeout = (error: unknown): boolean => error instanceof TimeoutError || error instanceof QmpTimeoutError;

export function pollJobs<S>(deps: PollerDeps<S>): Observable<PollOutcome> {
  const activePollMs = deps.activePollMs ?? configDefaults.jobs.activePollMs;
  const idlePollMs = deps.idlePollMs ?? configDefaults.jobs.idlePollMs;
  const pollTimeoutMs = deps.pollTimeoutMs ?? configDefaults.jobs.pollTimeoutMs;
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
      session === null ? EMPTY : new Observable<PollOutcome>((subscriber) => {
        const polls = new SessionPolls(session, deps.poll, subscriber, pollTimeoutMs, unresponsiveAfter, scheduler);
        const ticks = merge(of(0), ticks$).subscribe(() => polls.tick());
        const asked = deps.pollNow$?.subscribe(() => polls.ask());
        return () => {
          ticks.unsubscribe();
          asked?.unsubscribe();
          polls.stop();
        };
      }),
    ),
  );
}

/**
 * One session's polls: never two at once (a tick during a poll is skipped, an ask is remembered
 * and polled right after it), each with a timeout; a first timeout is asked again at once. What a
 * poll costs is the poll itself: the object, its callbacks and its timeout slot are made once per
 * session.
 */
class SessionPolls<S> implements Expiring {
  private reconciled = false;
  private timeoutsInARow = 0;
  /** The poll in flight (its number), 0 when none; BUSY while an outcome is being delivered. */
  private current = 0;
  private polls = 0;
  /** The poll's timeout: its lane and handle there (-1: none). */
  private lane: DeadlineLane | undefined;
  private deadline = -1;
  /** An Observable poll's subscription (a Promise cannot be cancelled: its late answer is ignored). */
  private subscription: Subscription | undefined;
  private stopped = false;
  /** The poll in flight has answered (an Observable poll may go on until it completes). */
  private answeredOnce = false;
  /** A pollNow came after the poll in flight was sent: poll again once it ends. */
  private askedAgain = false;

  constructor(
    private readonly session: S,
    private readonly poll: (session: S) => ObservableInput<PollResult>,
    private readonly out: Subscriber<PollOutcome>,
    private readonly timeoutMs: number,
    private readonly unresponsiveAfter: number,
    private readonly scheduler: SchedulerLike,
  ) {}

  tick(): void {
    if (this.current === 0 && !this.stopped) this.attempt();
  }

  /** A poll on demand: now, or right after the poll in flight (whose answer may predate the ask). */
  ask(): void {
    if (this.current !== 0) this.askedAgain = true;
    else this.tick();
  }

  stop(): void {
    this.stopped = true;
    this.end();
  }

  /**
   * The poll's time is up. Failed a turn later: a QMP command of the same length expired in the same
   * sweep, and its rejection (naming the command) reaches the poll through promise callbacks first.
   */
  expire(): void {
    this.deadline = -1;
    const id = this.current;
    if (id > 0) this.scheduler.schedule(() => this.failed(id, new TimeoutError()));
  }

  private attempt(): void {
    const id = ++this.polls;
    this.current = id;
    this.answeredOnce = false;
    this.askedAgain = false; // this poll is sent after any ask so far
    let input: ObservableInput<PollResult>;
    try {
      input = this.poll(this.session);
    } catch (error) {
      this.failed(id, error);
      return;
    }
    if (!isObservable(input) && isPromiseLike(input)) {
      input.then(
        (result) => this.answered(id, result, true),
        (error: unknown) => this.failed(id, error),
      );
    } else {
      const subscription = from(input).subscribe({
        next: (result) => this.answered(id, result, false),
        error: (error: unknown) => this.failed(id, error),
        complete: () => {
          if (this.current === id) this.ended();
        },
      });
      // An answer that came synchronously may have ended this poll already.
      if (this.current !== id) return subscription.unsubscribe();
      this.subscription = subscription;
    }
    // Armed after the poll started, as the timeout operator did: a QMP command's own timeout of the
    // same length (the same lane, added first) fires first and names the command.
    if (this.current === id && !this.answeredOnce) {
      const lane = (this.lane = deadlineLane(this.timeoutMs, this.scheduler));
      this.deadline = lane.add(this);
    }
  }

  private answered(id: number, result: PollResult, last: boolean): void {
    if (this.current !== id) return; // timed out, or the session ended: a late answer
    this.answeredOnce = true;
    this.cancelTimeout(); // the timeout is for the first answer
    const outcome: PollOutcome = { kind: 'polled', result, reconcile: !this.reconciled };
    this.reconciled = true;
    this.timeoutsInARow = 0;
    this.deliver(outcome);
    if (this.stopped) return;
    if (!last) this.current = id; // an Observable poll runs until it completes
    else this.ended();
  }

  private failed(id: number, error: unknown): void {
    if (this.current !== id) return;
    this.end();
    const timedOut = isPollTimeout(error);
    if (timedOut) this.timeoutsInARow++;
    const unresponsive = this.timeoutsInARow >= this.unresponsiveAfter;
    const outcome: PollOutcome = { kind: 'poll-failed', error, reconcile: !this.reconciled, unresponsive };
    // Whatever happened while QEMU did not answer is the next answered poll's to reconcile.
    if (unresponsive) this.reconciled = false;
    this.deliver(outcome);
    if (this.stopped) return;
    // A first timeout is asked again at once: a hang is told by timeouts in a row, and waiting a
    // tick between them (10 s idle) would only delay the verdict.
    if (timedOut && !unresponsive) this.attempt();
    else this.ended();
  }

  /** Delivers with the poll still counted as running, so a tick it causes is skipped (exhaust). */
  private deliver(outcome: PollOutcome): void {
    this.current = BUSY;
    this.out.next(outcome);
  }

  private cancelTimeout(): void {
    if (this.deadline >= 0) this.lane?.cancel(this.deadline, this);
    this.deadline = -1;
  }

  /** The poll ended of itself (not stopped): the one asked for meanwhile goes now. */
  private ended(): void {
    this.end();
    if (this.askedAgain && !this.stopped) this.attempt();
  }

  /** Ends the poll in flight: its timeout and subscription are dropped. */
  private end(): void {
    this.cancelTimeout();
    const subscription = this.subscription;
    this.subscription = undefined;
    subscription?.unsubscribe();
    this.current = 0;
  }
}

/** SessionPolls.current while an outcome is being delivered. */
const BUSY = -1;

function isPromiseLike<T>(value: unknown): value is PromiseLike<T> {
  return typeof (value as PromiseLike<T> | null)?.then === 'function';
}

/**
 * Polls one monitor: query-block-jobs, plus query-jobs where it exists, pipelined.
 *
 * `nothingKnown` (the engine knows no job on this VM): the idle safety-net poll asks query-jobs alone
 * and stops there when it is empty, since every block job is also a job in query-jobs (3.0+); only
 * a job it reveals costs the second query. Half the commands on an idle fleet, and QEMU still has
 * to answer one command per poll, so a hung QEMU is detected just as soon. That path is one command
 * and one callback, no async function: it runs 100 times a second at 1,000 idle monitors.
 *
 * `sentAfterSeq` is copied into the result (PollResult.sentAfterSeq).
 */
export function pollMonitor(monitor: QmpMonitor, caps: MonitorCapabilities, timeoutMs: number, nothingKnown = false, sentAfterSeq?: number): Promise<PollResult> {
  const options: ExecuteOptions = { timeoutMs };
  if (nothingKnown && caps.queryJobs) {
    return monitor.executeWithMeta('query-jobs', undefined, options).then((jobReply) => {
      const jobRows = parseJobRows(jobReply.value);
      if (jobRows.length === 0) return pollResult(jobRows, jobReply, sentAfterSeq);
      // The earlier reply's seq, as below: events after it win over this poll.
      return monitor.executeWithMeta('query-block-jobs', undefined, options).then((blockReply) => pollResult(mergeJobRows(parseBlockJobRows(blockReply.value), jobRows), jobReply, sentAfterSeq));
    });
  }
  return Promise.all([
    monitor.executeWithMeta('query-block-jobs', undefined, options),
    caps.queryJobs ? monitor.executeWithMeta('query-jobs', undefined, options) : undefined,
  ]).then(([blockReply, jobReply]) => {
    const rows = mergeJobRows(parseBlockJobRows(blockReply.value), jobReply ? parseJobRows(jobReply.value) : []);
    return pollResult(rows, jobReply && jobReply.seq < blockReply.seq ? jobReply : blockReply, sentAfterSeq);
  });
}

function pollResult(rows: JobRow[], first: QmpReply<unknown>, sentAfterSeq: number | undefined): PollResult {
  const result: PollResult = { rows, seq: first.seq, receivedAt: first.receivedAt, session: first.session };
  if (sentAfterSeq !== undefined) result.sentAfterSeq = sentAfterSeq;
  return result;
}
