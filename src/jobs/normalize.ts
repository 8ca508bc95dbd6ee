/**
 * The reducer: `(record | undefined, input) -> { record, change? }` for one job id on one monitor.
 * Pure and synchronous; time, capabilities and incarnation numbering come in through the context.
 *
 * Inputs: a QMP job event, a poll row, "vanished from a poll", "monitor down", a noted verb.
 * Rules (reference §6, §8):
 * - State: QEMU >= 2.12 reports `status`, >= 3.0 pushes JOB_STATUS_CHANGE; both are authoritative.
 *   Older QEMUs get a synthesized state from BLOCK_JOB_* events, polled paused/busy/ready/io-status
 *   and disappearance.
 * - Ready: >= 2.12 status ready|standby; 2.2-2.11 the `ready` field; older a BLOCK_JOB_READY seen
 *   in this session, else null (unknown). Never from offset == len. A second READY is a no-op.
 * - Outcome: BLOCK_JOB_CANCELLED -> cancelled; COMPLETED with error -> failed; COMPLETED -> completed;
 *   missed events: query-jobs error absent -> completed, "Operation canceled" -> cancelled, other
 *   -> failed; vanished while active -> unknown (never assumed successful).
 * - A change is reported only when state, ready, outcome or pauseReason changes. The change says
 *   whether it may be held back (a start that may fail at once; a pause nobody asked for), which
 *   pause-debounce.ts decides.
 * - Seq order: a poll row older than the last event applied to the job is ignored. A poll's
 *   snapshot is only known to be newer than the events received before its command was sent
 *   (`sentAfterSeq`): QEMU 7.2 runs a query in a bottom half and writes the reply later, after
 *   events the job's coroutine sent meanwhile.
 */
import type { MonitorCapabilities, JobState, JobVerb, TransitionKey } from './types.js';
import type { JobEvent, JobRow, ProgressSample } from './qmp-payloads.js';
import { isTerminalState, mayReach, type QemuJobStatus } from './qemu-rules.js';
import { advanceRate, finalProgress, sameProgress, type RateOptions } from './progress.js';

type Outcome = NonNullable<JobState['outcome']>;
type EndOutcome = Exclude<Outcome, 'unknown'>;
type PauseReason = NonNullable<JobState['pauseReason']>;

/** A job as the engine knows it: the normalized state plus what the rules need to remember. */
export interface JobRecord {
  readonly job: JobState;
  /** QEMU still knows the job (listed, or seen in an event since). */
  readonly present: boolean;
  /** Seq of the last event applied; -1 if none. */
  readonly lastEventSeq: number;
  /** Seq of the message (event or poll reply) that first showed this incarnation. */
  readonly firstSeenSeq: number;
  /** Session whose events this record has followed (readiness on QEMU < 2.2 is valid only within it). */
  readonly session: number;
  readonly everReady: boolean;
  /** Last status QEMU reported (2.12+). */
  readonly qemuStatus?: QemuJobStatus;
  /** BLOCK_JOB_COMPLETED / CANCELLED seen, waiting for JOB_STATUS_CHANGE concluded. */
  readonly endEvent?: { outcome: EndOutcome; error?: string };
  /** The last completing verb a client sent: decides `pivoted`. */
  readonly endVerb?: 'complete' | 'cancel' | 'force-cancel';
  /** A client asked for this pause: it is shown at once, not debounced. */
  readonly pauseRequested: boolean;
  /** A BLOCK_JOB_ERROR with action stop arrived and the job has not resumed since. */
  readonly ioErrorStop: boolean;
  readonly rateBase?: { sampledAt: number; sampledCurrent: number };
}

interface Stamp {
  seq: number;
  /** Local wall-clock ms of the message behind the input. */
  at: number;
  session: number;
}

/** A poll's stamp: `seq` is its reply's; `sentAfterSeq`, if known, the last event seq received before its command went out. */
interface PollStamp extends Stamp {
  sentAfterSeq?: number;
}

export type EngineInput =
  | ({ kind: 'event'; event: JobEvent } & Stamp)
  | ({ kind: 'poll'; row: JobRow; reconcile: boolean } & PollStamp)
  | ({ kind: 'vanished'; id: string; reconcile: boolean } & PollStamp)
  | { kind: 'monitor-down'; at: number }
  | { kind: 'verb'; verb: JobVerb; at: number };

export interface ReduceContext {
  vm: string;
  caps: MonitorCapabilities;
  /** Highest incarnation this id had on this monitor before (0 if none); a new one gets +1. */
  previousIncarnation: number;
  /**
   * The VM is reported disconnected (its monitor is down, or up but answering no poll): what an
   * event says is then not confirmed current, so the job stays (or is born) stale until a reconcile.
   */
  disconnected?: boolean;
  rate?: RateOptions;
}

/**
 * Why a change may be held back: `start` (created, which a failed start turns into null at once)
 * or `internal-pause` (paused/standby nobody asked for: a drain blips these for milliseconds).
 */
export type HoldKind = 'start' | 'internal-pause' | 'unrequested-resume';

export interface JobChange {
  from: TransitionKey | null;
  to: TransitionKey;
  hold?: HoldKind;
}

export interface ReduceResult {
  record: JobRecord | undefined;
  change?: JobChange;
  progressChanged: boolean;
}

export function transitionKey(job: JobState): TransitionKey {
  const key: TransitionKey = { state: job.state, ready: job.ready };
  if (job.outcome !== undefined) key.outcome = job.outcome;
  if (job.pauseReason !== undefined) key.pauseReason = job.pauseReason;
  return key;
}

export const sameKey = (a: TransitionKey, b: TransitionKey): boolean =>
  a.state === b.state && a.ready === b.ready && a.outcome === b.outcome && a.pauseReason === b.pauseReason;

const CANCELED_TEXT = 'Operation canceled';

/** Mutable working copy of a record while one input is applied. */
type Draft = { -readonly [K in keyof JobRecord]: JobRecord[K] } & { job: JobState };

export function reduceJob(record: JobRecord | undefined, input: EngineInput, ctx: ReduceContext): ReduceResult {
  switch (input.kind) {
    case 'event':
      return applyEvent(record, input, ctx);
    case 'poll':
      return applyRow(record, input, ctx);
    case 'vanished':
      return applyVanished(record, input);
    case 'monitor-down':
      if (!record?.present || record.job.stale) return unchanged(record);
      return { record: { ...record, job: { ...record.job, stale: true } }, progressChanged: false };
    case 'verb':
      return applyVerb(record, input.verb);
  }
}

const unchanged = (record: JobRecord | undefined): ReduceResult => ({ record, progressChanged: false });

function applyVerb(record: JobRecord | undefined, verb: JobVerb): ReduceResult {
  if (!record || isTerminalState(record.job.state)) return unchanged(record);
  switch (verb) {
    case 'complete':
    case 'cancel':
    case 'force-cancel':
      return unchanged({ ...record, endVerb: verb });
    case 'pause':
      return unchanged({ ...record, pauseRequested: true });
    case 'resume':
      return unchanged({ ...record, pauseRequested: false });
    default:
      return unchanged(record);
  }
}

// ---------------------------------------------------------------------------------------------
// Events

function applyEvent(record: JobRecord | undefined, input: Extract<EngineInput, { kind: 'event' }>, ctx: ReduceContext): ReduceResult {
  const { event } = input;
  const status = event.name === 'JOB_STATUS_CHANGE' ? event.status : undefined;
  const liveSighting = status !== undefined ? !['concluded', 'null'].includes(status) : event.name !== 'BLOCK_JOB_ERROR';
  const known = record !== undefined && !needsNewIncarnation(record, liveSighting, status);
  if (!known) {
    // A job we did not know: only events that tell its state can introduce it.
    if (event.name === 'BLOCK_JOB_ERROR' || (event.name === 'JOB_STATUS_CHANGE' && event.status === 'null')) return unchanged(record);
  }
  const d = known ? draftOf(record) : newDraft(event.id, input, ctx, record);
  d.lastEventSeq = input.seq;
  d.session = input.session;
  d.job.stale = ctx.disconnected === true;
  d.present = true;
  const jsc = ctx.caps.jobStatusChange;

  switch (event.name) {
    case 'JOB_STATUS_CHANGE':
      applyStatus(d, event.status, d.ioErrorStop ? 'error' : 'user', undefined);
      break;
    case 'BLOCK_JOB_READY':
      d.job.type = event.type;
      d.job.speed = event.speed;
      sample(d, event.progress, input.at, ctx);
      if (!known && jsc) applyStatus(d, 'ready', 'user', undefined);
      else if (!jsc && !isTerminalState(d.job.state)) markReady(d);
      d.everReady = true;
      break;
    case 'BLOCK_JOB_COMPLETED':
    case 'BLOCK_JOB_CANCELLED': {
      d.job.type = event.type;
      d.job.speed = event.speed;
      sample(d, event.progress, input.at, ctx);
      const error = event.name === 'BLOCK_JOB_COMPLETED' ? event.error : undefined;
      d.endEvent = { outcome: event.name === 'BLOCK_JOB_CANCELLED' ? 'cancelled' : error !== undefined ? 'failed' : 'completed', ...(error !== undefined ? { error } : {}) };
      // With JOB_STATUS_CHANGE the state follows from it (concluded comes right after); without, this is the end.
      if (!jsc || !known) conclude(d, d.endEvent.outcome, d.endEvent.error);
      break;
    }
    case 'BLOCK_JOB_ERROR':
      d.job.lastIoError = { operation: event.operation, action: event.action, at: iso(input.at) };
      if (event.action === 'stop') {
        d.ioErrorStop = true;
        d.job.ioStatus = d.job.ioStatus === 'nospace' ? 'nospace' : 'failed';
        // Without JOB_STATUS_CHANGE nothing else will say the job stopped.
        if (!jsc && !isTerminalState(d.job.state)) enterPause(d, 'error');
      }
      break;
    case 'BLOCK_JOB_PENDING':
      d.job.type = event.type;
      if (!jsc || !known) applyStatus(d, 'pending', 'user', undefined);
      break;
  }
  return finish(record, d, 'event', input.at);
}

// ---------------------------------------------------------------------------------------------
// Polls

function applyRow(record: JobRecord | undefined, input: Extract<EngineInput, { kind: 'poll' }>, ctx: ReduceContext): ReduceResult {
  const { row } = input;
  // An event that may be newer than the poll's snapshot already told us more than this row can,
  // except what never changes in a job's life (its type and knobs), which the events do not carry.
  if (record && record.lastEventSeq > snapshotSeq(input)) return adoptFixedFields(record, row, input);
  const liveSighting = row.status === undefined || !['concluded', 'null'].includes(row.status);
  const known = record !== undefined && !needsNewIncarnation(record, liveSighting, ctx.caps.status ? row.status : undefined);
  // With JOB_STATUS_CHANGE, events announce every job and every status of a session in order, so a
  // routine poll that contradicts them is older than they are (QEMU 7.2 can answer a query with a
  // snapshot taken before an event it has already sent): never a new job, never a step back.
  if (!known && ctx.caps.jobStatusChange && !input.reconcile && (record === undefined || record.session === input.session)) {
    return record ? adoptFixedFields(record, row, input) : unchanged(record);
  }
  const d = known ? draftOf(record) : newDraft(row.id, input, ctx, record);
  const newSession = d.session !== input.session;
  d.session = input.session;
  d.present = true;
  d.job.stale = false;
  d.job.type = row.type;
  if (row.speed !== undefined) d.job.speed = row.speed;
  if (row.autoFinalize !== undefined) d.job.autoFinalize = row.autoFinalize;
  if (row.autoDismiss !== undefined) d.job.autoDismiss = row.autoDismiss;
  if (row.ioStatus !== undefined) d.job.ioStatus = row.ioStatus;
  const ioError = row.ioStatus === 'failed' || row.ioStatus === 'nospace';
  sample(d, row.progress, input.at, ctx);

  if (row.status !== undefined && ctx.caps.status) {
    applyStatus(d, row.status, ioError || d.ioErrorStop ? 'error' : 'user', row);
  } else if (!isTerminalState(d.job.state)) {
    synthesizeState(d, row, { ioError, isNew: !known, reconcile: input.reconcile, newSession }, ctx);
  }
  return finish(record, d, input.reconcile ? 'reconcile' : 'poll', input.at);
}

/** The newest event the poll's snapshot is sure to include (its reply's seq when the send point is unknown). */
function snapshotSeq(input: PollStamp): number {
  return Math.min(input.seq, input.sentAfterSeq ?? input.seq);
}

/** Type and auto-finalize/dismiss from a row whose status is out of date: they never change. */
function adoptFixedFields(record: JobRecord, row: JobRow, input: Extract<EngineInput, { kind: 'poll' }>): ReduceResult {
  const fixed = {
    type: record.job.type === 'unknown' ? row.type : record.job.type,
    autoFinalize: record.job.autoFinalize ?? row.autoFinalize,
    autoDismiss: record.job.autoDismiss ?? row.autoDismiss,
  };
  if (fixed.type === record.job.type && fixed.autoFinalize === record.job.autoFinalize && fixed.autoDismiss === record.job.autoDismiss) return unchanged(record);
  const d = draftOf(record);
  d.job.type = fixed.type;
  if (fixed.autoFinalize !== undefined) d.job.autoFinalize = fixed.autoFinalize;
  if (fixed.autoDismiss !== undefined) d.job.autoDismiss = fixed.autoDismiss;
  return finish(record, d, input.reconcile ? 'reconcile' : 'poll', input.at);
}

/** QEMU < 2.12: state from paused/busy/io-status and readiness from the field or the READY event. */
function synthesizeState(d: Draft, row: JobRow, seen: { ioError: boolean; isNew: boolean; reconcile: boolean; newSession: boolean }, ctx: ReduceContext): void {
  if (ctx.caps.readyField) {
    d.job.ready = row.ready === true;
  } else if (seen.isNew) {
    // Listed in the first poll of a session: a READY may have fired before we connected.
    d.job.ready = seen.reconcile ? null : false;
  } else if (seen.newSession) {
    d.job.ready = null;
  }
  if (d.job.ready === true) d.everReady = true;
  if (seen.ioError || (row.paused === true && row.busy !== true)) {
    enterPause(d, seen.ioError ? 'error' : 'user');
  } else {
    leavePause(d);
    d.job.state = d.job.ready === true ? 'ready' : 'running';
  }
}

function applyVanished(record: JobRecord | undefined, input: Extract<EngineInput, { kind: 'vanished' }>): ReduceResult {
  // Only a snapshot taken after everything we know about the job can say it is gone.
  const asOf = snapshotSeq(input);
  if (!record?.present || record.lastEventSeq > asOf || record.firstSeenSeq > asOf) return unchanged(record);
  const d = draftOf(record);
  d.job.stale = false;
  if (d.job.state === 'concluded') dismiss(d);
  else {
    conclude(d, d.endEvent?.outcome ?? 'unknown', d.endEvent?.error);
    d.present = false;
  }
  return finish(record, d, input.reconcile ? 'reconcile' : 'poll', input.at);
}

// ---------------------------------------------------------------------------------------------
// State rules shared by events and polls

function applyStatus(d: Draft, status: QemuJobStatus, pauseReason: PauseReason, row: JobRow | undefined): void {
  const previous = d.qemuStatus;
  d.qemuStatus = status;
  switch (status) {
    case 'undefined':
    case 'created':
      setActive(d, 'created', false);
      break;
    case 'running':
    case 'waiting':
    case 'pending':
    case 'aborting':
      setActive(d, status, false);
      break;
    case 'ready':
      setActive(d, 'ready', true);
      break;
    case 'paused':
    case 'standby':
      d.job.ready = status === 'standby';
      if (d.job.ready) d.everReady = true;
      enterPause(d, pauseReason, status);
      break;
    case 'concluded':
      if (d.job.state !== 'concluded') conclude(d, ...concludedOutcome(d, previous, row));
      break;
    case 'null':
      dismiss(d);
      break;
  }
}

function setActive(d: Draft, state: 'created' | 'running' | 'ready' | 'waiting' | 'pending' | 'aborting', ready: boolean): void {
  leavePause(d);
  d.job.state = state;
  d.job.ready = ready;
  if (ready) d.everReady = true;
}

/** Outcome of a job QEMU reports concluded: the event if we saw it, else query-jobs' error, else the path it took. */
function concludedOutcome(d: Draft, previous: QemuJobStatus | undefined, row: JobRow | undefined): [Outcome, string | undefined] {
  if (d.endEvent) return [d.endEvent.outcome, d.endEvent.error];
  if (row) {
    if (row.error === undefined) return ['completed', undefined];
    return row.error === CANCELED_TEXT ? ['cancelled', undefined] : ['failed', row.error];
  }
  // Only a successful job passes through waiting/pending; aborting may be a cancel or a failure.
  return previous === 'waiting' || previous === 'pending' ? ['completed', undefined] : ['unknown', undefined];
}

/** BLOCK_JOB_READY without JOB_STATUS_CHANGE: ready, or standby if the job is paused. */
function markReady(d: Draft): void {
  const paused = d.job.state === 'paused' || d.job.state === 'standby';
  d.job.ready = true;
  d.everReady = true;
  d.job.state = paused ? 'standby' : 'ready';
}

function enterPause(d: Draft, reason: PauseReason, status?: 'paused' | 'standby'): void {
  d.job.state = status ?? (d.job.ready === true ? 'standby' : 'paused');
  // Once an error stopped the job, it stays an error pause until the job runs again.
  d.job.pauseReason = d.job.pauseReason === 'error' ? 'error' : reason;
}

function leavePause(d: Draft): void {
  if (d.job.state !== 'paused' && d.job.state !== 'standby') return;
  delete d.job.pauseReason;
  // A user pause stays asked for until a resume verb (applyVerb): see holdOf's unrequested resume.
  if (d.ioErrorStop) {
    d.ioErrorStop = false;
    if (d.job.ioStatus !== undefined) d.job.ioStatus = 'ok';
  }
}

function conclude(d: Draft, outcome: Outcome, error: string | undefined): void {
  leavePause(d);
  d.job.state = 'concluded';
  d.job.ready = false;
  d.job.outcome = outcome;
  if (outcome === 'failed' && error !== undefined) d.job.error = error;
  const pivoted = pivotedOf(d, outcome);
  if (pivoted === undefined) delete d.job.pivoted;
  else d.job.pivoted = pivoted;
  d.job.progress = finalProgress(d.job.progress);
}

/** Known only when this gateway saw or sent the verb that ended a ready job (§6.12). */
function pivotedOf(d: Draft, outcome: Outcome): boolean | undefined {
  if (outcome === 'completed' && d.everReady) {
    if (d.endVerb === 'complete') return true;
    if (d.endVerb === 'cancel') return false;
    return undefined;
  }
  if ((outcome === 'cancelled' || outcome === 'failed') && (d.everReady || d.job.type === 'mirror')) return false;
  return undefined;
}

function dismiss(d: Draft): void {
  // created -> null is a start that failed (the start command returns the error).
  if (d.job.state === 'created') d.job.outcome = 'failed';
  d.job.outcome ??= 'unknown';
  delete d.job.pauseReason;
  d.job.state = 'dismissed';
  d.job.ready = false;
  d.present = false;
  d.job.progress = finalProgress(d.job.progress);
}

function sample(d: Draft, progress: ProgressSample, at: number, ctx: ReduceContext): void {
  if (isTerminalState(d.job.state)) return;
  const estimate = advanceRate(
    d.rateBase ? { progress: d.job.progress, ...d.rateBase } : undefined,
    progress,
    at,
    ctx.rate,
  );
  d.job.progress = estimate.progress;
  d.rateBase = { sampledAt: estimate.sampledAt, sampledCurrent: estimate.sampledCurrent };
}

// ---------------------------------------------------------------------------------------------
// Records, incarnations, change detection

/**
 * The id was reused: it was dismissed (or vanished) and is seen again, a concluded id shows a live
 * job, or QEMU reports a status the known job can never reach (READY never returns to RUNNING;
 * only a new job is `created`): the old job ended while we were not looking.
 */
function needsNewIncarnation(record: JobRecord, liveSighting: boolean, status: QemuJobStatus | undefined): boolean {
  if (!record.present || (record.job.state === 'concluded' && liveSighting)) return true;
  return status !== undefined && status !== 'undefined' && !mayReach(record.job.state, status);
}

function draftOf(record: JobRecord): Draft {
  return { ...record, job: { ...record.job } };
}

function newDraft(id: string, stamp: Stamp, ctx: ReduceContext, previous: JobRecord | undefined): Draft {
  const incarnation = Math.max(ctx.previousIncarnation, previous?.job.incarnation ?? 0) + 1;
  const at = iso(stamp.at);
  return {
    job: {
      vm: ctx.vm,
      id,
      incarnation,
      type: 'unknown',
      state: 'created',
      ready: false,
      stale: false,
      progress: { current: 0, total: 0, percent: 0, rate: null, etaSeconds: null },
      updatedAt: at,
      stateSince: at,
      source: 'event',
    },
    present: true,
    lastEventSeq: -1,
    firstSeenSeq: stamp.seq,
    session: stamp.session,
    everReady: false,
    pauseRequested: false,
    ioErrorStop: false,
  };
}

function finish(record: JobRecord | undefined, d: Draft, source: JobState['source'], at: number): ReduceResult {
  const sameIncarnation = record !== undefined && record.job.incarnation === d.job.incarnation;
  const before = sameIncarnation ? record.job : undefined;
  const job = d.job;
  // A paused job copies nothing: say so at once instead of letting the smoothed rate decay.
  if ((job.state === 'paused' || job.state === 'standby') && (job.progress.rate !== 0 || job.progress.etaSeconds !== null)) {
    job.progress = { ...job.progress, rate: 0, etaSeconds: null };
  }
  const from = before ? transitionKey(before) : null;
  const to = transitionKey(job);
  let stamp: string | undefined;
  if (!before || before.state !== job.state) job.stateSince = stamp = iso(at);
  const progressChanged = !before || !sameProgress(before.progress, job.progress);
  if (!before || progressChanged || detailsChanged(before, job)) {
    job.updatedAt = stamp ?? iso(at);
    job.source = source;
  }
  const result: ReduceResult = { record: d, progressChanged };
  if (from === null || !sameKey(from, to)) result.change = { from, to, ...holdOf(from, to, d) };
  return result;
}

function holdOf(from: TransitionKey | null, to: TransitionKey, d: Draft): { hold?: HoldKind } {
  if (from === null) return to.state === 'created' ? { hold: 'start' } : {};
  const unaskedPause =
    (to.state === 'paused' || to.state === 'standby') && to.pauseReason === 'user' && !d.pauseRequested &&
    (from.state === 'running' || from.state === 'ready');
  if (unaskedPause) return { hold: 'internal-pause' };
  // A user-paused job that runs again although nobody resumed it: QEMU flickers running between two
  // pause points while a drain ends (paused > running > paused within ms), or another client resumed it.
  // (QEMU also resumes a paused job to cancel it: that running, on its way to aborting, is real.)
  const unrequestedResume =
    (from.state === 'paused' || from.state === 'standby') && from.pauseReason === 'user' && d.pauseRequested &&
    d.endVerb !== 'cancel' && d.endVerb !== 'force-cancel' && (to.state === 'running' || to.state === 'ready');
  return unrequestedResume ? { hold: 'unrequested-resume' } : {};
}

const DETAIL_FIELDS = ['state', 'ready', 'outcome', 'pauseReason', 'pivoted', 'error', 'ioStatus', 'speed', 'type', 'autoFinalize', 'autoDismiss', 'stale'] as const;

function detailsChanged(a: JobState, b: JobState): boolean {
  return DETAIL_FIELDS.some((field) => a[field] !== b[field]) || a.lastIoError !== b.lastIoError;
}

/** One entry of memory: the inputs of one QMP read share their receive time, and finish() asks twice. */
let lastIso = { ms: Number.NaN, text: '' };
function iso(ms: number): string {
  if (ms !== lastIso.ms) lastIso = { ms, text: new Date(ms).toISOString() };
  return lastIso.text;
}
