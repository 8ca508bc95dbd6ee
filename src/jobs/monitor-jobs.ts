/**
 * One monitor's job engine: wires the monitor's events, sessions and runstate, the poller, the
 * reducer and the hold operator into the jobs of one VM.
 *
 *   events$ ──parse──┐
 *   polls ───rows────┼─> reduceJob (per id) ─> changes ─> holdTransientChanges ─> publish ─> changes$
 *   verbs, down ─────┘                      └─> progress (every change; subscribers throttle) ─> progress$
 *
 * Everything runs synchronously on the monitor's message dispatch, so `changes$` is in wire order
 * and `snapshot()` reflects every change already emitted: it shows the published state of each
 * announced job (a held pause is not shown until it is emitted), with the latest details.
 *
 * The VM is `disconnected` (its jobs stale) while the monitor is down, and also while it is up but
 * QEMU answers no poll (a hung process keeps its socket open): the poller's `unresponsive` verdict.
 * The next answered poll makes it `connected` and reconciles, as a new session does.
 *
 * The engine reads QEMU through a JobFeed: a QmpMonitor is one, and so is anything that carries
 * QEMU's events and sessions from elsewhere (libvirt's event passthrough). A feed that cannot run
 * QMP commands comes with its own `poll` and `detectCapabilities` (e.g. libvirt's block job info).
 */
import { BehaviorSubject, Subject, Subscription, asyncScheduler, concat, defer, EMPTY, filter, firstValueFrom, from, interval, map, merge, of, switchMap, timeout, type Observable, type ObservableInput, type SchedulerLike } from 'rxjs';
import { ConfigError, GatewayError, QmpProtocolError, QmpTimeoutError } from '../errors.js';
import { silentLogger, ThrottledLog, type Logger } from '../log.js';
import type { QmpMonitor, QmpSession, QmpEvent } from '../qmp/types.js';
import { capabilitiesFromVersion, detectCapabilities, type DetectedCapabilities } from './capabilities.js';
import { reduceJob, type EngineInput, type JobChange, type JobRecord } from './normalize.js';
import { holdTransientChanges, type HoldOptions } from './pause-debounce.js';
import { configDefaults } from '../generated/config-defaults.js';
import { pollJobs, pollMonitor, unresponsiveThreshold, type PollCadence, type PollOutcome, type PollResult } from './poller.js';
import { parseJobEvent } from './qmp-payloads.js';
import { JobTable } from './job-table.js';
import { SlicedPollApplier } from './poll-apply.js';
import { VmInfoBook } from './vm-info.js';
import { isTerminalState } from './qemu-rules.js';
import type { RateOptions } from './progress.js';
import type { BackendKind, JobState, JobTransition, JobVerb, MonitorCapabilities, ProgressUpdate, StreamInput, VmInfo, VmSnapshot, VmStatus } from './types.js';

/**
 * What the engine reads from one VM: QEMU's sessions, events, runstate and problems. A QmpMonitor is
 * a JobFeed; another source (libvirt) builds one from QEMU's events as it receives them. Ordering
 * contract: `events$` synchronously in wire order, with `seq` on one axis with the poll replies'
 * PollResult.seq, `session` numbering the feed's sessions; `sessions$` emits before any event of
 * the new session.
 */
export type JobFeed = Pick<QmpMonitor, 'state' | 'state$' | 'sessions$' | 'session' | 'events$' | 'commandsSent'> & {
  /** Problems worth surfacing, each with a stable code (docs/errors.md). */
  readonly errors$: Observable<{ code: string; message: string }>;
};

export interface MonitorJobsOptions extends PollCadence, Omit<HoldOptions, 'scheduler'> {
  /** Concluded jobs QEMU no longer lists, and dismissed jobs, stay visible this long. @default jobs.retentionMs in config.schema.json */
  retentionMs?: number;
  /** ...and at most this many of them per VM (oldest dropped first). @default 100 */
  maxRetainedJobs?: number;
  /** How long a new job's changes may wait for the poll that tells its type (0 = never wait). @default 250 */
  identifyHoldMs?: number;
  /**
   * Jobs this VM may have at once (live ones; ended ones count against maxRetainedJobs). A job id
   * beyond it is ignored and logged: a monitor that invents ids without end costs its own VM
   * that, never unbounded memory. @default 1000
   */
  maxJobs?: number;
  /** Smoothing of rate and ETA. */
  rate?: RateOptions;
  /** Timers (polls, holds, progress, retention). @default asyncScheduler */
  scheduler?: SchedulerLike;
  /** Wall clock in ms for inputs without a QMP timestamp (verbs, monitor down). @default Date.now */
  now?: () => number;
  logger?: Logger;
  /** What follows this VM, for its info. @default 'qmp' */
  backend?: BackendKind;
  /** libvirt's version, for a VM followed through libvirt (read whenever its info is built). */
  libvirtVersion?: () => { major: number; minor: number; micro: number } | undefined;
  /**
   * Lists the VM's jobs (query-jobs / query-block-jobs, or another source's equivalent): the safety
   * net behind the events, and the reconcile after every new session. Required for a feed that is
   * not a QmpMonitor. @default pollMonitor on the monitor, with pollTimeoutMs
   */
  poll?: (caps: MonitorCapabilities) => ObservableInput<PollResult>;
  /**
   * Learns a new session's capabilities. Required for a feed that is not a QmpMonitor (where the
   * version alone often suffices: capabilitiesFromVersion). @default detectCapabilities (query-qmp-schema, else the version)
   */
  detectCapabilities?: (version: MonitorCapabilities['version']) => ObservableInput<DetectedCapabilities>;
}

/** A change on its way through the hold operator. */
interface PendingChange extends JobChange {
  key: string;
  job: JobState;
  at: number;
  qmpReceivedMono?: number;
}

const DEFAULT_IDENTIFY_HOLD_MS = 250;
const MAX_UNIDENTIFIED_CHANGES = 32;

export class MonitorJobs {
  /** The jobs followed, what subscribers were told of them, and their incarnations, bounded. */
  private readonly table: JobTable;
  private readonly records: JobTable['records'];
  private readonly published: JobTable['published'];
  private caps: MonitorCapabilities | undefined;
  /** The monitor is up but QEMU stopped answering polls; the VM is reported disconnected meanwhile. */
  private unresponsive = false;
  private lastProblem: string | undefined;
  /** Seq of the newest message received (event or poll reply): a poll sent now sees at least that far. */
  private lastReceivedSeq = -1;
  /** The VM's status and info (backend, version, problems). */
  private readonly book: VmInfoBook;
  /** One poll, its result stamped with the seq of the last message received before it was sent. */
  private readonly poll: (caps: MonitorCapabilities, sentAfterSeq: number) => ObservableInput<PollResult>;
  private readonly detect: (version: MonitorCapabilities['version']) => ObservableInput<DetectedCapabilities>;
  private readonly pending = new Subject<PendingChange>();
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
  /** Applies polls in slices, the newest waiting one after the one in progress. */
  private readonly polls: SlicedPollApplier;
  /** Warnings a hostile monitor can cause at will: at most one line a minute per kind. */
  private readonly throttled: ThrottledLog;
  private readonly subscriptions = new Subscription();
  private readonly scheduler: SchedulerLike;
  private readonly now: () => number;
  private readonly logger: Logger;

  /** Transitions and VM status changes of this VM, synchronously, in order. */
  readonly changes$: Observable<StreamInput> = this.changesSubject.asObservable();
  /** Throttled progress of this VM's jobs. */
  readonly progress$: Observable<ProgressUpdate> = this.progressSubject.asObservable();
  /** This VM's info whenever its status, reason, version or problems change (not per command). */
  readonly info$: Observable<VmInfo>;

  constructor(
    readonly vm: string,
    readonly feed: JobFeed,
    private readonly options: MonitorJobsOptions = {},
  ) {
    this.scheduler = options.scheduler ?? asyncScheduler;
    this.now = options.now ?? (() => this.scheduler.now());
    this.logger = options.logger ?? silentLogger;
    this.table = new JobTable(options);
    ({ records: this.records, published: this.published } = this.table);
    this.polls = new SlicedPollApplier(
      {
        records: this.records,
        apply: (id, input) => this.apply(id, input),
        applied: () => {
          this.updateActivity();
          this.prune();
        },
      },
      this.scheduler,
    );
    this.book = new VmInfoBook(vm, options.backend ?? 'qmp', () => ({
      commandsSent: feed.commandsSent ?? 0,
      qemu: this.caps?.version ?? feed.session?.greeting.version.qemu,
      libvirt: options.libvirtVersion?.(),
    }));
    this.info$ = this.book.info$;
    this.throttled = new ThrottledLog(this.logger, 60_000, this.now);
    unresponsiveThreshold(options); // a bad setting fails here, not when polling starts
    const monitor = isQmpMonitor(feed) ? feed : undefined;
    const custom = options.poll;
    const poll = custom
      ? (caps: MonitorCapabilities, sentAfterSeq: number) => from(custom(caps)).pipe(map((result): PollResult => ({ ...result, sentAfterSeq })))
      : monitor && ((caps: MonitorCapabilities, sentAfterSeq: number) => pollMonitor(monitor, caps, this.pollTimeoutMs, this.records.size === 0, sentAfterSeq));
    const detect = options.detectCapabilities ?? (monitor && ((version: MonitorCapabilities['version']) => detectCapabilities(monitor, version, this.pollTimeoutMs)));
    if (!poll || !detect) throw new ConfigError('a job feed that is not a QMP monitor needs the poll and detectCapabilities options', vm);
    this.poll = poll;
    this.detect = detect;
  }

  /** Subscribes to the monitor. Call once. */
  start(): void {
    const { scheduler } = this;
    this.subscriptions.add(
      this.pending.pipe(holdTransientChanges({ ...this.options, scheduler })).subscribe((change) => this.publish(change)),
    );
    this.subscriptions.add(this.feed.errors$.subscribe((error) => this.onProblem(error)));
    this.subscriptions.add(this.feed.events$.subscribe((event) => this.onEvent(event)));
    this.subscriptions.add(
      this.feed.state$.subscribe((state) => {
        if (state !== 'ready' && (this.book.status === 'connected' || this.unresponsive)) this.onMonitorDown();
      }),
    );

    const sessions$ = merge(
      concat(defer(() => (this.feed.session ? of(this.feed.session) : EMPTY)), this.feed.sessions$),
      this.monitorDown.pipe(map(() => null)),
    );
    const sessionsWithCaps$ = sessions$.pipe(
      switchMap((session) => {
        if (session === null) return of(null);
        this.onSessionStart(session);
        return from(this.detect(session.greeting.version.qemu)).pipe(
          map((detected) => {
            if (detected.fallbackCause !== undefined) {
              this.logger.warn({ vm: this.vm, err: detected.fallbackCause }, 'query-qmp-schema failed; capabilities from the version');
            }
            this.caps = detected.capabilities;
            this.book.changed();
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
        // Its snapshot includes every event received so far, and maybe none after (see normalize.ts).
        poll: ({ caps }) => this.poll(caps, this.lastReceivedSeq),
        scheduler,
      }).subscribe((outcome) => this.onPollOutcome(outcome)),
    );
    this.subscriptions.add(interval(Math.max(1_000, this.table.retentionMs / 10), scheduler).subscribe(() => this.prune()));
  }

  /** Stops following the monitor (does not close it). */
  stop(): void {
    this.polls.drop();
    for (const id of [...this.unidentified.keys()]) this.releaseUnidentified(id);
    this.subscriptions.unsubscribe();
    this.changesSubject.complete();
    this.progressSubject.complete();
    this.book.complete();
  }

  get status(): VmStatus {
    return this.book.status;
  }

  /** The VM's info now (counters current). */
  info(): VmInfo {
    return this.book.info();
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
    return { vm: this.vm, status: this.book.status, jobs };
  }

  /** The job as subscribers know it: its published state with the latest details. */
  job(id: string): JobState | undefined {
    const told = this.published.get(id);
    const record = this.records.get(id);
    if (!told || !record) return undefined;
    if (told.incarnation !== record.job.incarnation) return told;
    // Published as it stands (the usual case): it is already that object, in the same key order.
    if (told === record.job && told.pauseReason === undefined && told.outcome === undefined) return told;
    // Built without `delete`: a deleted key turns the object into a slow dictionary, and every
    // snapshot of every new subscriber serializes one of these per job.
    const { pauseReason: _pause, outcome: _outcome, ...details } = record.job;
    return {
      ...details,
      state: told.state,
      ready: told.ready,
      stateSince: told.stateSince,
      ...(told.pauseReason !== undefined ? { pauseReason: told.pauseReason } : {}),
      ...(told.outcome !== undefined ? { outcome: told.outcome } : {}),
    };
  }

  /**
   * QEMU announced the job but its first transitions are still held (waiting for the poll that
   * names its type, or for a failed start to show): it will be published (or dropped) within the
   * hold times. Job control waits for it instead of answering unknown_job.
   */
  announced(id: string): boolean {
    const record = this.records.get(id);
    return record !== undefined && record.present && this.published.get(id)?.incarnation !== record.job.incarnation;
  }

  /**
   * Resolves once every event QEMU sent before now has been applied: one QMP round trip (QEMU
   * writes events emitted before a command's reply ahead of it, and they are dispatched in order).
   * A client that started a job on its own monitor and then names it here may be faster than the
   * JOB_STATUS_CHANGE on ours; after this, the job is at least `announced`. A VM not yet reconciled
   * is waited for first (at most timeoutMs). Never rejects.
   */
  async settle(timeoutMs: number): Promise<void> {
    // Not reconciled yet (the gateway just started, the monitor just came back): its job list says
    // nothing about what QEMU runs, so wait for the first reconcile before the round trip.
    if (this.book.status !== 'connected') {
      await firstValueFrom(this.info$.pipe(filter((info) => info.status === 'connected'), timeout({ first: timeoutMs }))).catch(() => undefined);
    }
    const feed = this.feed;
    if (!isQmpMonitor(feed) || feed.state !== 'ready') return;
    await feed.execute('query-jobs', undefined, { timeoutMs }).catch(() => undefined);
  }

  /**
   * Jobs subscribers were told of before this engine existed (a fleet host's previous process, from
   * Redis). They are taken as QEMU's jobs of unknown freshness (stale) until the reconcile: a job QEMU
   * still lists goes on from its known state, one it no longer lists concludes `unknown`, as after a
   * monitor reconnect. Ids the engine already follows are left alone. Call before or after the VM
   * connects: if it is connected, a poll is asked for at once. `status`, the VM's status those
   * subscribers were last told, is corrected in the stream when the engine knows otherwise.
   */
  seed(jobs: readonly JobState[], status?: VmStatus): void {
    const now = this.book.status;
    if (status !== undefined && status !== now && now !== 'connecting') {
      const change: StreamInput = { kind: 'vm', vm: this.vm, status: now, at: this.now() };
      const reason = this.book.info().reason;
      if (reason !== undefined) change.reason = reason;
      this.changesSubject.next(change);
    }
    let added = 0;
    for (const job of jobs) {
      if (this.records.has(job.id) || this.table.full) continue;
      // A concluded job QEMU still listed stays present (a dismiss may follow); one that ended by vanishing, or dismissed, is gone.
      const present = job.state !== 'dismissed' && !(job.state === 'concluded' && job.outcome === 'unknown');
      const told: JobState = { ...job, stale: present && !isTerminalState(job.state) };
      this.table.set(job.id, undefined, {
        job: told,
        present,
        lastEventSeq: -1,
        firstSeenSeq: -1,
        session: -1,
        everReady: job.ready === true || job.pivoted !== undefined,
        pauseRequested: false,
        ioErrorStop: false,
      });
      this.published.set(job.id, told);
      this.table.rememberIncarnation(job.id, job.incarnation);
      added++;
    }
    if (added === 0) return;
    this.updateActivity();
    if (this.book.status === 'connected') this.pollNow.next();
  }

  /** A client is about to send `verb` for job `id`. */
  noteVerb(id: string, verb: JobVerb): void {
    this.apply(id, { kind: 'verb', verb, at: this.now() });
  }

  /** A new job id beyond the bound: not followed; a problem of the VM (GW_ERR_TOO_MANY_JOBS). */
  private refuseJob(id: string): void {
    const { maxJobs } = this.table;
    this.throttled.warn(this.noteProblem('GW_ERR_TOO_MANY_JOBS', `more than ${maxJobs} jobs at once; job ${JSON.stringify(id)} is not followed`, { job: id, maxJobs }), 'too many jobs on this VM; new job ids are not followed');
  }

  /**
   * A problem that does not end the session (a malformed event or poll row, a job past the bound):
   * counted by its code in the VM's info at once (read on demand, so no info$ per message). Returns
   * the log fields; callers log through `throttled` (at most once a minute per kind).
   */
  private noteProblem(code: string, reason: string, fields: Record<string, unknown>): Record<string, unknown> {
    this.book.problem({ code, message: reason, at: this.now() });
    return { vm: this.vm, code, ...fields };
  }

  private get pollTimeoutMs(): number {
    return this.options.pollTimeoutMs ?? configDefaults.jobs.pollTimeoutMs;
  }

  private onSessionStart(session: QmpSession): void {
    // Provisional until query-qmp-schema answers; events may arrive before it does.
    this.caps = capabilitiesFromVersion(session.greeting.version.qemu);
    this.book.setStatus('connected', undefined);
    this.unresponsive = false;
    this.lastProblem = undefined;
    this.changesSubject.next({ kind: 'vm', vm: this.vm, status: 'connected', at: this.now() });
  }

  /** Counts the problem; remembers why the monitor is down; a monitor that never came up is reported down on its first problem. */
  private onProblem(problem: { code: string; message: string }): void {
    const reason = problem.message;
    this.book.problem({ code: problem.code, message: reason, at: this.now() });
    this.lastProblem = reason;
    if (this.book.status !== 'connecting') {
      this.book.changed();
      return;
    }
    this.book.setStatus('disconnected', reason);
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
    this.polls.drop(); // what is left of it no longer describes the present
    this.book.setStatus('disconnected', reason);
    const at = this.now();
    for (const id of [...this.records.keys()]) this.apply(id, { kind: 'monitor-down', at });
    const change: StreamInput = { kind: 'vm', vm: this.vm, status: 'disconnected', at };
    if (reason !== undefined) change.reason = reason;
    this.changesSubject.next(change);
  }

  private onPollOutcome(outcome: PollOutcome): void {
    if (outcome.kind === 'polled') {
      // A job first seen by this poll must not look newer than the next poll's snapshot.
      this.lastReceivedSeq = Math.max(this.lastReceivedSeq, outcome.result.seq);
      if (this.unresponsive) this.onResponsiveAgain();
      this.polls.offer(outcome.result, outcome.reconcile);
      return;
    }
    const error = outcome.error;
    if (error instanceof QmpProtocolError) this.throttled.warn(this.noteProblem(error.code, error.message, { err: error }), 'job poll answered with malformed rows');
    else this.logger.warn({ vm: this.vm, err: error }, 'job poll failed');
    if (outcome.unresponsive && !this.unresponsive && this.book.status === 'connected') {
      this.unresponsive = true;
      const reason = `monitor unresponsive: ${describePollTimeout(error, this.pollTimeoutMs)}`;
      this.book.problem({ code: 'QMP_ERR_TIMEOUT', message: reason, at: this.now() });
      this.logger.warn({ vm: this.vm, reason }, 'monitor unresponsive; VM reported disconnected');
      this.reportDisconnected(reason);
    }
  }

  /** QEMU answered a poll again: connected, and that poll (a reconcile, the poller sees to it) refreshes every job. */
  private onResponsiveAgain(): void {
    this.unresponsive = false;
    this.book.setStatus('connected', undefined);
    this.logger.info({ vm: this.vm }, 'monitor responsive again; VM reported connected');
    this.changesSubject.next({ kind: 'vm', vm: this.vm, status: 'connected', at: this.now() });
  }

  private onEvent(event: QmpEvent): void {
    this.lastReceivedSeq = Math.max(this.lastReceivedSeq, event.seq);
    // QEMU speaks again: probe now rather than at the next tick.
    if (this.unresponsive) this.pollNow.next();
    let parsed;
    try {
      parsed = parseJobEvent(event);
    } catch (error) {
      const code = error instanceof GatewayError ? error.code : 'QMP_ERR_PROTOCOL';
      this.throttled.warn(this.noteProblem(code, (error as Error).message, { err: error }), 'malformed job event ignored');
      return;
    }
    if (!parsed) return;
    const session = this.feed.session;
    if (!this.caps && session) this.caps = capabilitiesFromVersion(session.greeting.version.qemu);
    const incarnationBefore = this.records.get(parsed.id)?.job.incarnation;
    this.apply(parsed.id, { kind: 'event', event: parsed, seq: event.seq, at: event.receivedAt, session: event.session }, event.receivedMono);
    this.updateActivity();
    const record = this.records.get(parsed.id);
    if (record && record.job.incarnation !== incarnationBefore && record.job.type === 'unknown') this.pollNow.next();
  }

  private apply(id: string, input: EngineInput, qmpReceivedMono?: number): void {
    if (!this.caps) return; // nothing can be judged before the first session
    const before = this.records.get(id);
    const result = reduceJob(before, input, {
      vm: this.vm,
      caps: this.caps,
      previousIncarnation: this.table.previousIncarnation(id),
      disconnected: this.book.status === 'disconnected',
      ...(this.options.rate ? { rate: this.options.rate } : {}),
    });
    const record = result.record;
    if (!record) return;
    if (before === undefined && this.table.full) return this.refuseJob(id);
    if (record !== before) this.table.set(id, before, record);
    this.table.rememberIncarnation(id, record.job.incarnation);
    if (result.change) {
      const change: PendingChange = { key: id, ...result.change, job: record.job, at: input.at };
      if (qmpReceivedMono !== undefined) change.qmpReceivedMono = qmpReceivedMono;
      this.announce(change, record.job.type === 'unknown');
    } else if (record.job.type !== 'unknown') {
      this.releaseUnidentified(id);
    }
    if (result.progressChanged && this.published.get(id)?.incarnation === record.job.incarnation) {
      const { type, state } = record.job;
      this.publishProgress({ vm: this.vm, job: id, incarnation: record.job.incarnation, type, state, progress: record.job.progress, at: input.at });
    }
  }

  /** A progress update carries the job's type and published state (a held pause is not shown yet). */
  private publishProgress(update: ProgressUpdate): void {
    const told = this.published.get(update.job);
    if (told === undefined || told.incarnation !== update.incarnation) return;
    const record = this.records.get(update.job);
    const type = record?.job.incarnation === told.incarnation ? record.job.type : told.type;
    this.progressSubject.next(type === update.type && told.state === update.state ? update : { ...update, type, state: told.state });
  }

  private announce(change: PendingChange, typeUnknown: boolean): void {
    const waiting = this.unidentified.get(change.key);
    if (waiting) {
      waiting.changes.push(change);
      if (!typeUnknown || isTerminalState(change.to.state) || waiting.changes.length >= MAX_UNIDENTIFIED_CHANGES) this.releaseUnidentified(change.key);
      return;
    }
    const holdMs = this.options.identifyHoldMs ?? DEFAULT_IDENTIFY_HOLD_MS;
    if (change.from === null && typeUnknown && holdMs > 0 && this.book.status === 'connected') {
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
    const active = this.table.anyLive;
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

  private prune(): void {
    this.table.prune(this.now());
  }
}

/** What a poll that timed out waited for, e.g. "no reply to query-block-jobs within 5000 ms". */
function describePollTimeout(error: unknown, pollTimeoutMs: number): string {
  if (error instanceof QmpTimeoutError) return `no reply to ${error.sent.execute} within ${error.timeoutMs} ms`;
  return `no reply to the job poll within ${pollTimeoutMs} ms`;
}

/** A feed that also runs QMP commands (the default poll, capability detection and QMP control need one). */
export function isQmpMonitor(feed: JobFeed): feed is QmpMonitor {
  return typeof (feed as Partial<QmpMonitor>).executeWithMeta === 'function';
}
