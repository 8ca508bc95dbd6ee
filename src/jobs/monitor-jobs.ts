/**
 * One monitor's job engine: wires the monitor's events, sessions and runstate, the poller, the
 * reducer, the hold operator and the progress throttle into the jobs of one VM.
 *
 *   events$ ──parse──┐
 *   polls ───rows────┼─> reduceJob (per id) ─> changes ─> holdTransientChanges ─> publish ─> changes$
 *   verbs, down ─────┘                      └─> progress ─> throttlePerKey ────────────────> progress$
 *
 * Everything runs synchronously on the monitor's message dispatch, so `changes$` is in wire order
 * and `snapshot()` reflects every change already emitted: it shows the published state of each
 * announced job (a held pause is not shown until it is emitted), with the latest details.
 *
 * The VM is `disconnected` (its jobs stale) while the monitor is down, and also while it is up but
 * QEMU answers no poll (a hung process keeps its socket open): the poller's `unresponsive` verdict.
 * The next answered poll makes it `connected` and reconciles, as a new session does.
 */
import { BehaviorSubject, Subject, Subscription, asyncScheduler, concat, defer, EMPTY, from, interval, map, merge, of, switchMap, type Observable, type ObservableInput, type SchedulerLike } from 'rxjs';
import { QmpTimeoutError } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import type { QmpMonitor, QmpSession, QmpEvent } from '../qmp/types.js';
import { capabilitiesFromVersion, detectCapabilities, type DetectedCapabilities } from './capabilities.js';
import { isTerminalState, reduceJob, type EngineInput, type JobChange, type JobRecord } from './normalize.js';
import { holdTransientChanges, type HoldOptions } from './pause-debounce.js';
import { pollJobs, pollMonitor, unresponsiveThreshold, type PollCadence, type PollOutcome, type PollResult, DEFAULT_POLL_TIMEOUT_MS } from './poller.js';
import { parseJobEvent } from './qmp-payloads.js';
import { throttlePerKey, type RateOptions } from './progress.js';
import type { JobState, JobTransition, JobVerb, MonitorCapabilities, ProgressUpdate, StreamInput, VmSnapshot, VmStatus } from './types.js';

export interface MonitorJobsOptions extends PollCadence, Omit<HoldOptions, 'scheduler'> {
  /** Progress updates per job at most once per this. @default 250 */
  progressIntervalMs?: number;
  /** Concluded jobs QEMU no longer lists, and dismissed jobs, stay visible this long. @default 600_000 */
  retentionMs?: number;
  /** ...and at most this many of them per VM (oldest dropped first). @default 100 */
  maxRetainedJobs?: number;
  /** How long a new job's changes may wait for the poll that tells its type (0 = never wait). @default 250 */
  identifyHoldMs?: number;
  /** Smoothing of rate and ETA. */
  rate?: RateOptions;
  /** Timers (polls, holds, progress, retention). @default asyncScheduler */
  scheduler?: SchedulerLike;
  /** Wall clock in ms for inputs without a QMP timestamp (verbs, monitor down). @default Date.now */
  now?: () => number;
  logger?: Logger;
  /** Polls the monitor (tests inject a scripted poll). @default pollMonitor with pollTimeoutMs */
  poll?: (monitor: QmpMonitor, caps: MonitorCapabilities) => ObservableInput<PollResult>;
  /** Learns a new session's capabilities. @default detectCapabilities (query-qmp-schema, else the version) */
  detectCapabilities?: (monitor: QmpMonitor, version: MonitorCapabilities['version']) => ObservableInput<DetectedCapabilities>;
}

/** A change on its way through the hold operator. */
interface PendingChange extends JobChange {
  key: string;
  job: JobState;
  at: number;
  qmpReceivedMono?: number;
}

const MAX_REMEMBERED_INCARNATIONS = 10_000;
const DEFAULT_IDENTIFY_HOLD_MS = 250;
const MAX_UNIDENTIFIED_CHANGES = 32;

export class MonitorJobs {
  private readonly records = new Map<string, JobRecord>();
  /** Last emitted state per job id: what subscribers were told. */
  private readonly published = new Map<string, JobState>();
  /** Highest incarnation per id, kept after the record is dropped so a reused id never repeats one. */
  private readonly incarnations = new Map<string, number>();
  private caps: MonitorCapabilities | undefined;
  private vmStatus: VmStatus = 'connecting';
  /** The monitor is up but QEMU stopped answering polls; the VM is reported disconnected meanwhile. */
  private unresponsive = false;
  private lastProblem: string | undefined;
  private readonly pending = new Subject<PendingChange>();
  private readonly rawProgress = new Subject<ProgressUpdate>();
  private readonly changesSubject = new Subject<StreamInput>();
  private readonly progressSubject = new Subject<ProgressUpdate>();
  private readonly active = new BehaviorSubject<boolean>(false);
  private readonly monitorDown = new Subject<void>();
  /**
   * Poll at once: a job appeared through an event (so its type and knobs are known before it is
   * announced), or an unresponsive QEMU spoke again (so its reconcile comes without waiting a tick).
   */
  private readonly pollNow = new Subject<void>();
  /**
   * Changes of jobs whose type QEMU has not told yet (JOB_STATUS_CHANGE carries none), waiting for
   * the poll that pollNow asked for, so that even a job's first transition names its type and a
   * subscriber filtering by type misses nothing. Bounded in time (identifyHoldMs) and count.
   */
  private readonly unidentified = new Map<string, { changes: PendingChange[]; timer: Subscription }>();
  private readonly subscriptions = new Subscription();
  private readonly scheduler: SchedulerLike;
  private readonly now: () => number;
  private readonly logger: Logger;

  /** Transitions and VM status changes of this VM, synchronously, in order. */
  readonly changes$: Observable<StreamInput> = this.changesSubject.asObservable();
  /** Throttled progress of this VM's jobs. */
  readonly progress$: Observable<ProgressUpdate> = this.progressSubject.asObservable();

  constructor(
    readonly vm: string,
    readonly monitor: QmpMonitor,
    private readonly options: MonitorJobsOptions = {},
  ) {
    this.scheduler = options.scheduler ?? asyncScheduler;
    this.now = options.now ?? (() => this.scheduler.now());
    this.logger = options.logger ?? silentLogger;
    unresponsiveThreshold(options); // a bad setting fails here, not when polling starts
  }

  /** Subscribes to the monitor. Call once. */
  start(): void {
    const { scheduler } = this;
    this.subscriptions.add(
      this.pending.pipe(holdTransientChanges({ ...this.options, scheduler })).subscribe((change) => this.publish(change)),
    );
    this.subscriptions.add(
      this.rawProgress
        .pipe(throttlePerKey((update) => `${update.job}#${update.incarnation}`, this.options.progressIntervalMs ?? 250, scheduler))
        .subscribe((update) => this.progressSubject.next(update)),
    );
    this.subscriptions.add(this.monitor.errors$.subscribe((error) => this.onProblem(error.message)));
    this.subscriptions.add(this.monitor.events$.subscribe((event) => this.onEvent(event)));
    this.subscriptions.add(
      this.monitor.state$.subscribe((state) => {
        if (state !== 'ready' && (this.vmStatus === 'connected' || this.unresponsive)) this.onMonitorDown();
      }),
    );

    const sessions$ = merge(
      concat(defer(() => (this.monitor.session ? of(this.monitor.session) : EMPTY)), this.monitor.sessions$),
      this.monitorDown.pipe(map(() => null)),
    );
    const sessionsWithCaps$ = sessions$.pipe(
      switchMap((session) => {
        if (session === null) return of(null);
        this.onSessionStart(session);
        const detect = this.options.detectCapabilities ?? ((monitor, version) => detectCapabilities(monitor, version, this.pollTimeoutMs));
        return from(detect(this.monitor, session.greeting.version.qemu)).pipe(
          map((detected) => {
            if (detected.fallbackCause !== undefined) {
              this.logger.warn({ vm: this.vm, err: detected.fallbackCause }, 'query-qmp-schema failed; capabilities from the version');
            }
            this.caps = detected.capabilities;
            return { session, caps: detected.capabilities };
          }),
        );
      }),
    );
    this.subscriptions.add(
      pollJobs({
        ...this.options,
        sessions$: sessionsWithCaps$,
        active$: this.active,
        pollNow$: this.pollNow,
        poll: ({ caps }) => (this.options.poll ? this.options.poll(this.monitor, caps) : pollMonitor(this.monitor, caps, this.pollTimeoutMs)),
        scheduler,
      }).subscribe((outcome) => this.onPollOutcome(outcome)),
    );
    const retentionMs = this.options.retentionMs ?? 600_000;
    this.subscriptions.add(interval(Math.max(1_000, retentionMs / 10), scheduler).subscribe(() => this.prune()));
  }

  /** Stops following the monitor (does not close it). */
  stop(): void {
    for (const id of [...this.unidentified.keys()]) this.releaseUnidentified(id);
    this.subscriptions.unsubscribe();
    this.changesSubject.complete();
    this.progressSubject.complete();
  }

  get status(): VmStatus {
    return this.vmStatus;
  }

  capabilities(): MonitorCapabilities | undefined {
    return this.caps;
  }

  snapshot(): VmSnapshot {
    const jobs: JobState[] = [];
    for (const id of this.published.keys()) {
      const job = this.job(id);
      if (job) jobs.push(job);
    }
    return { vm: this.vm, status: this.vmStatus, jobs };
  }

  /** The job as subscribers know it: its published state with the latest details. */
  job(id: string): JobState | undefined {
    const told = this.published.get(id);
    const record = this.records.get(id);
    if (!told || !record) return undefined;
    if (told.incarnation !== record.job.incarnation) return told;
    const job: JobState = { ...record.job, state: told.state, ready: told.ready, stateSince: told.stateSince };
    if (told.pauseReason === undefined) delete job.pauseReason;
    else job.pauseReason = told.pauseReason;
    if (told.outcome === undefined) delete job.outcome;
    else job.outcome = told.outcome;
    return job;
  }

  /** A client is about to send `verb` for job `id`. */
  noteVerb(id: string, verb: JobVerb): void {
    this.apply(id, { kind: 'verb', verb, at: this.now() });
  }

  private get pollTimeoutMs(): number {
    return this.options.pollTimeoutMs ?? DEFAULT_POLL_TIMEOUT_MS;
  }

  private onSessionStart(session: QmpSession): void {
    // Provisional until query-qmp-schema answers; events may arrive before it does.
    this.caps = capabilitiesFromVersion(session.greeting.version.qemu);
    this.vmStatus = 'connected';
    this.unresponsive = false;
    this.lastProblem = undefined;
    this.changesSubject.next({ kind: 'vm', vm: this.vm, status: 'connected', at: this.now() });
  }

  /** Remembers why the monitor is down; a monitor that never came up is reported down on its first problem. */
  private onProblem(reason: string): void {
    this.lastProblem = reason;
    if (this.vmStatus !== 'connecting') return;
    this.vmStatus = 'disconnected';
    this.changesSubject.next({ kind: 'vm', vm: this.vm, status: 'disconnected', at: this.now(), reason });
  }

  private onMonitorDown(): void {
    this.monitorDown.next();
    // A hung QEMU whose socket now closes was reported disconnected already.
    if (this.unresponsive) this.unresponsive = false;
    else this.reportDisconnected(this.lastProblem);
  }

  /** The VM is disconnected: its jobs' states are no longer current (stale) until a reconcile. */
  private reportDisconnected(reason: string | undefined): void {
    this.vmStatus = 'disconnected';
    const at = this.now();
    for (const id of [...this.records.keys()]) this.apply(id, { kind: 'monitor-down', at });
    const change: StreamInput = { kind: 'vm', vm: this.vm, status: 'disconnected', at };
    if (reason !== undefined) change.reason = reason;
    this.changesSubject.next(change);
  }

  private onPollOutcome(outcome: PollOutcome): void {
    if (outcome.kind === 'polled') {
      if (this.unresponsive) this.onResponsiveAgain();
      this.onPoll(outcome.result, outcome.reconcile);
      return;
    }
    this.logger.warn({ vm: this.vm, err: outcome.error }, 'job poll failed');
    if (outcome.unresponsive && !this.unresponsive && this.vmStatus === 'connected') {
      this.unresponsive = true;
      const reason = `monitor unresponsive: ${describePollTimeout(outcome.error, this.pollTimeoutMs)}`;
      this.logger.warn({ vm: this.vm, reason }, 'monitor unresponsive; VM reported disconnected');
      this.reportDisconnected(reason);
    }
  }

  /** QEMU answered a poll again: connected, and that poll (a reconcile, the poller sees to it) refreshes every job. */
  private onResponsiveAgain(): void {
    this.unresponsive = false;
    this.vmStatus = 'connected';
    this.logger.info({ vm: this.vm }, 'monitor responsive again; VM reported connected');
    this.changesSubject.next({ kind: 'vm', vm: this.vm, status: 'connected', at: this.now() });
  }

  private onEvent(event: QmpEvent): void {
    // QEMU speaks again: probe now rather than at the next tick.
    if (this.unresponsive) this.pollNow.next();
    let parsed;
    try {
      parsed = parseJobEvent(event);
    } catch (error) {
      this.logger.warn({ vm: this.vm, err: error }, 'malformed job event ignored');
      return;
    }
    if (!parsed) return;
    const session = this.monitor.session;
    if (!this.caps && session) this.caps = capabilitiesFromVersion(session.greeting.version.qemu);
    const incarnationBefore = this.records.get(parsed.id)?.job.incarnation;
    this.apply(parsed.id, { kind: 'event', event: parsed, seq: event.seq, at: event.receivedAt, session: event.session }, event.receivedMono);
    this.updateActivity();
    const record = this.records.get(parsed.id);
    if (record && record.job.incarnation !== incarnationBefore && record.job.type === 'unknown') this.pollNow.next();
  }

  private onPoll(result: PollResult, reconcile: boolean): void {
    const stamp = { seq: result.seq, at: result.receivedAt, session: result.session, reconcile };
    const listed = new Set<string>();
    for (const row of result.rows) {
      listed.add(row.id);
      this.apply(row.id, { kind: 'poll', row, ...stamp });
    }
    for (const id of [...this.records.keys()]) {
      if (!listed.has(id)) this.apply(id, { kind: 'vanished', id, ...stamp });
    }
    this.updateActivity();
    this.prune();
  }

  private apply(id: string, input: EngineInput, qmpReceivedMono?: number): void {
    if (!this.caps) return; // nothing can be judged before the first session
    const result = reduceJob(this.records.get(id), input, {
      vm: this.vm,
      caps: this.caps,
      previousIncarnation: this.incarnations.get(id) ?? 0,
      ...(this.options.rate ? { rate: this.options.rate } : {}),
    });
    const record = result.record;
    if (!record) return;
    this.records.set(id, record);
    this.rememberIncarnation(id, record.job.incarnation);
    if (result.change) {
      const change: PendingChange = { key: id, ...result.change, job: record.job, at: input.at };
      if (qmpReceivedMono !== undefined) change.qmpReceivedMono = qmpReceivedMono;
      this.announce(change, record.job.type === 'unknown');
    } else if (record.job.type !== 'unknown') {
      this.releaseUnidentified(id);
    }
    if (result.progressChanged && this.published.get(id)?.incarnation === record.job.incarnation) {
      this.rawProgress.next({ vm: this.vm, job: id, incarnation: record.job.incarnation, progress: record.job.progress, at: input.at });
    }
  }

  private announce(change: PendingChange, typeUnknown: boolean): void {
    const waiting = this.unidentified.get(change.key);
    if (waiting) {
      waiting.changes.push(change);
      if (!typeUnknown || isTerminalState(change.to.state) || waiting.changes.length >= MAX_UNIDENTIFIED_CHANGES) this.releaseUnidentified(change.key);
      return;
    }
    const holdMs = this.options.identifyHoldMs ?? DEFAULT_IDENTIFY_HOLD_MS;
    if (change.from === null && typeUnknown && holdMs > 0 && this.vmStatus === 'connected') {
      const timer = this.scheduler.schedule(() => this.releaseUnidentified(change.key), holdMs);
      this.unidentified.set(change.key, { changes: [change], timer });
      return;
    }
    this.pending.next(change);
  }

  private releaseUnidentified(id: string): void {
    const waiting = this.unidentified.get(id);
    if (!waiting) return;
    this.unidentified.delete(id);
    waiting.timer.unsubscribe();
    for (const change of waiting.changes) this.pending.next(change);
  }

  /** Feeds the poll cadence: call once after each batch of inputs. */
  private updateActivity(): void {
    let active = false;
    for (const record of this.records.values()) {
      if (record.present && !isTerminalState(record.job.state)) {
        active = true;
        break;
      }
    }
    if (active !== this.active.value) this.active.next(active);
  }

  private publish(change: PendingChange): void {
    this.published.set(change.key, change.job);
    const transition: JobTransition = {
      kind: 'transition',
      vm: this.vm,
      job: this.job(change.key) ?? change.job,
      from: change.from,
      to: change.to,
      source: change.job.source,
      at: change.at,
    };
    if (change.qmpReceivedMono !== undefined) transition.qmpReceivedMono = change.qmpReceivedMono;
    this.changesSubject.next(transition);
  }

  private rememberIncarnation(id: string, incarnation: number): void {
    if ((this.incarnations.get(id) ?? 0) >= incarnation) return;
    this.incarnations.delete(id);
    this.incarnations.set(id, incarnation);
    if (this.incarnations.size > MAX_REMEMBERED_INCARNATIONS) {
      const oldest = this.incarnations.keys().next().value;
      if (oldest !== undefined && oldest !== id) this.incarnations.delete(oldest);
    }
  }

  /** Drops ended jobs QEMU no longer knows, past their retention or beyond the count bound. */
  private prune(): void {
    const retentionMs = this.options.retentionMs ?? 600_000;
    const maxRetained = this.options.maxRetainedJobs ?? 100;
    const now = this.now();
    const ended = [...this.records.entries()]
      .filter(([, r]) => !r.present)
      .sort(([, a], [, b]) => Date.parse(a.job.stateSince) - Date.parse(b.job.stateSince));
    ended.forEach(([id, record], index) => {
      const expired = now - Date.parse(record.job.stateSince) >= retentionMs;
      if (expired || ended.length - index > maxRetained) {
        this.records.delete(id);
        this.published.delete(id);
      }
    });
  }
}

/** What a poll that timed out waited for, e.g. "no reply to query-block-jobs within 5000 ms". */
function describePollTimeout(error: unknown, pollTimeoutMs: number): string {
  if (error instanceof QmpTimeoutError) return `no reply to ${error.sent.execute} within ${error.timeoutMs} ms`;
  return `no reply to the job poll within ${pollTimeoutMs} ms`;
}
