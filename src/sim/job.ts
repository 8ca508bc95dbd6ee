/**
 * One simulated block job, following QEMU 7.2's job state machine (`job.c` JobSTT and JobVerbTable)
 * and the exact event sequences recorded on real 7.2 (reference §4 "Exact sequences"):
 *
 *   start:     JSC created, running (backup: + paused, running blip)            [before the reply]
 *   converge:  offset == len while status is still running for `readyWindowMs`, then
 *              JSC ready, BLOCK_JOB_READY (mirror and active commit only)
 *   complete:  JSC waiting, pending, BLOCK_JOB_COMPLETED, JSC concluded, null    [after the reply]
 *   cancel:    JSC aborting, BLOCK_JOB_CANCELLED, JSC concluded, null           [before the reply]
 *   soft cancel after ready: as complete, without pivot                         [after the reply]
 *   error report: BLOCK_JOB_ERROR, JSC aborting, BLOCK_JOB_COMPLETED{error}, concluded, null
 *   error stop:   BLOCK_JOB_ERROR, JSC paused (standby when ready), io-status failed
 *
 * auto-finalize=false stops in pending with BLOCK_JOB_PENDING until job-finalize; auto-dismiss=false
 * stops in concluded until job-dismiss. The job never decides when time passes: its host calls
 * `tick()` from one shared timer, so thousands of jobs cost one timer.
 */
import { isTerminalState, verbAcceptedIn, type QemuJobStatus, type QemuVerb } from '../jobs/qemu-rules.js';
import { qmpErrors } from './errors.js';

export type SimJobStatus = Exclude<QemuJobStatus, 'undefined'>;
export type SimJobType = 'mirror' | 'commit' | 'stream' | 'backup';
export type SimVerb = QemuVerb;
export type ErrorAction = 'report' | 'stop' | 'ignore';

/** errno -> the strerror text QEMU puts into `error`, and the io-status it sets. */
const ERRNO: Record<number, { text: string; ioStatus: 'failed' | 'nospace' }> = {
  5: { text: 'Input/output error', ioStatus: 'failed' },
  28: { text: 'No space left on device', ioStatus: 'nospace' },
};

/** An injected I/O error (from a blkdebug node in the job's graph, or a test hook). */
export interface InjectedError {
  operation: 'read' | 'write';
  /** @default 5 (EIO) */
  errno?: number;
  /** The policy for this error (the job's on-source-error / on-target-error / on-error). */
  action: ErrorAction;
  /** Fire when progress reaches this fraction of len. @default 0.5 */
  atFraction?: number;
  /** Fire once, then never again (blkdebug `once`). @default true */
  once?: boolean;
}

export interface SimJobSpec {
  id: string;
  type: SimJobType;
  /** Bytes to copy (the source size). */
  sizeBytes: number;
  /** Speed limit in bytes/s; 0 = unlimited. */
  speed: number;
  autoFinalize: boolean;
  autoDismiss: boolean;
  /** Mirror and active commit: converge, then wait in ready for complete or cancel. */
  hasReadyPhase: boolean;
  /** backup sync=none: copies only what the guest writes, so it never ends on its own. */
  endless: boolean;
  /** Start with the drain blip (backup). */
  startBlip: boolean;
  /** len is 0 until the first iteration (active commit reports 0/0 at first; mirror knows len at once). */
  lenKnownLater: boolean;
  errors: InjectedError[];
  /** Node names this job holds (for "Node is busy"). */
  nodes: string[];
}

export interface SimJobHost {
  emit(event: string, data: Record<string, unknown>): void;
  /** Run after the current command's reply has been written (QEMU's coroutines run later). */
  defer(action: () => void): void;
  /** The job left the job list (JSC null). */
  removed(job: SimJob): void;
  readonly readyWindowMs: number;
  readonly unlimitedBytesPerSec: number;
}

export class SimJob {
  status: SimJobStatus = 'created';
  offset = 0;
  len: number;
  speed: number;
  ioStatus: 'ok' | 'failed' | 'nospace' = 'ok';
  error: string | undefined;
  userPaused = false;
  /** Set when the job pivoted (complete after ready), false after a soft cancel; undefined otherwise. */
  pivoted: boolean | undefined;

  private convergedAt: number | undefined;
  private completeRequested = false;
  private pendingErrors: InjectedError[];
  private cancelRequested: 'none' | 'soft' | 'force' = 'none';

  constructor(
    readonly spec: SimJobSpec,
    private readonly host: SimJobHost,
  ) {
    this.len = spec.lenKnownLater ? 0 : spec.sizeBytes;
    this.speed = spec.speed;
    this.pendingErrors = [...spec.errors];
  }

  get id(): string {
    return this.spec.id;
  }

  get type(): SimJobType {
    return this.spec.type;
  }

  /** Still holds its nodes and counts as active (not concluded, not gone). */
  get active(): boolean {
    return !isTerminalState(this.status);
  }

  /** QEMU >= 2.12: ready iff status is ready or standby. */
  get ready(): boolean {
    return this.status === 'ready' || this.status === 'standby';
  }

  /** Emitted synchronously by the start command, before its reply. */
  start(): void {
    this.host.emit('JOB_STATUS_CHANGE', { status: 'created', id: this.id });
    this.transition('running');
    if (this.spec.startBlip) {
      // Backup drains its nodes at start: an internal pause nobody asked for.
      this.transition('paused');
      this.transition('running');
    }
  }

  /** Advance by `elapsedMs` of simulated time; `now` is the shared clock. */
  tick(now: number, elapsedMs: number): void {
    if (this.status === 'ready' && this.offset < this.len) {
      // Guest writes after READY: len grew, the job stays ready and catches up (no second READY).
      this.offset = Math.min(this.len, this.offset + this.bytesFor(elapsedMs));
      return;
    }
    if (this.status !== 'running' || this.cancelRequested === 'force') return;
    if (this.spec.lenKnownLater && this.len === 0) {
      this.len = this.spec.sizeBytes;
      return;
    }
    if (this.spec.endless) return;
    if (this.convergedAt !== undefined) {
      // offset == len but not ready yet: QEMU flushes and sleeps before job_transition_to_ready().
      if (now - this.convergedAt >= this.host.readyWindowMs) this.becomeReady();
      return;
    }
    const next = Math.min(this.len, this.offset + this.bytesFor(elapsedMs));
    const failure = this.pendingErrors.find((e) => next >= failurePoint(e, this.len));
    if (failure) {
      // The failing request is the one at the failure point, however far this tick would have gone.
      this.offset = Math.max(this.offset, failurePoint(failure, this.len));
      this.ioError(failure);
      return;
    }
    this.offset = next;
    if (this.offset >= this.len) {
      if (this.spec.hasReadyPhase) this.convergedAt = now;
      else this.finishMainLoop(false);
    }
  }

  /** Apply QEMU's verb table: refuse with QEMU's exact text, or do nothing. */
  checkVerb(verb: SimVerb): void {
    if (!verbAcceptedIn(verb, this.status)) throw qmpErrors.verbRefused(this.id, this.status, verb);
  }

  complete(): void {
    this.checkVerb('complete');
    if (this.cancelRequested !== 'none' || !this.spec.hasReadyPhase) throw qmpErrors.cannotComplete(this.id);
    this.completeRequested = true;
    // In standby the request waits for resume (accepted since QEMU 6.0).
    if (this.status === 'ready') this.host.defer(() => this.finishMainLoop(true));
  }

  /**
   * `force` = job-cancel, block-job-cancel force=true, or any cancel before ready (mirror_cancel
   * treats those as force). A soft cancel of a ready mirror completes without pivot. Either way the
   * job coroutine acts after the reply, as recorded on 7.2 (the reply precedes `aborting`).
   */
  cancel(force: boolean, viaBlockJobCancel: boolean): void {
    this.checkVerb('cancel');
    if (!force && viaBlockJobCancel && this.userPaused) throw qmpErrors.cancelPaused(this.id);
    if (!force && this.status === 'ready') {
      if (this.cancelRequested === 'none') this.cancelRequested = 'soft';
      this.host.defer(() => this.finishMainLoop(false));
      return;
    }
    this.cancelRequested = 'force';
    this.host.defer(() => this.abortCancelled());
  }

  pause(): void {
    this.checkVerb('pause');
    if (this.userPaused) throw qmpErrors.alreadyPaused();
    this.userPaused = true;
    this.host.defer(() => this.enterPause());
  }

  resume(): void {
    this.checkVerb('resume');
    if (!this.userPaused) throw qmpErrors.notPaused();
    this.userPaused = false;
    this.ioStatus = 'ok';
    this.host.defer(() => this.leavePause());
  }

  setSpeed(speed: number): void {
    this.checkVerb('set-speed');
    if (!Number.isSafeInteger(speed) || speed < 0) throw qmpErrors.invalidParameter('speed');
    this.speed = speed;
  }

  finalize(): void {
    this.checkVerb('finalize');
    this.finalizeNow();
  }

  dismiss(): void {
    this.checkVerb('dismiss');
    this.transition('null');
  }

  /** A test/driver hook: fail now with the given error (as blkdebug would at the next request). */
  injectError(error: InjectedError): void {
    if (this.status !== 'running' && this.status !== 'ready') return;
    this.ioError(error);
  }

  /** A test/driver hook: the guest wrote `bytes` to the source while mirroring. */
  guestWrite(bytes: number): void {
    if (this.spec.type === 'mirror' && this.active) this.len += bytes;
  }

  /** `quit`: QEMU force-cancels every job before it exits. */
  quit(): void {
    this.cancelRequested = 'force';
    this.abortCancelled();
  }

  /** A BlockJobInfo row of query-block-jobs. */
  blockJobInfo(): Record<string, unknown> {
    return {
      'auto-finalize': this.spec.autoFinalize,
      'io-status': this.ioStatus,
      device: this.id,
      'auto-dismiss': this.spec.autoDismiss,
      busy: this.status === 'running' || this.status === 'aborting',
      len: this.len,
      offset: this.offset,
      status: this.status,
      paused: this.userPaused || this.status === 'pending',
      speed: this.speed,
      ready: this.ready,
      type: this.type,
      error: this.error,
    };
  }

  /** A JobInfo row of query-jobs. */
  jobInfo(): Record<string, unknown> {
    return {
      'current-progress': this.offset,
      status: this.status,
      'total-progress': this.len,
      type: this.type,
      id: this.id,
      error: this.error,
    };
  }

  private bytesFor(elapsedMs: number): number {
    const rate = this.speed > 0 ? this.speed : this.host.unlimitedBytesPerSec;
    return Math.max(1, Math.round((rate * elapsedMs) / 1000));
  }

  /** A force cancel takes effect: a user-paused job wakes in its previous state first (job_cancel_async). */
  private abortCancelled(): void {
    if (!this.active || this.status === 'aborting') return;
    if (this.status === 'paused' || this.status === 'standby') {
      this.userPaused = false;
      this.transition(this.status === 'paused' ? 'running' : 'ready');
    }
    this.abort(undefined);
  }

  private becomeReady(): void {
    this.convergedAt = undefined;
    this.transition('ready');
    this.host.emit('BLOCK_JOB_READY', this.progressPayload());
  }

  private ioError(error: InjectedError): void {
    // An ignored error is reported once per rule (real QEMU repeats it per failed request).
    if ((error.once ?? true) || error.action === 'ignore') this.pendingErrors = this.pendingErrors.filter((e) => e !== error);
    const errno = ERRNO[error.errno ?? 5] ?? ERRNO[5]!;
    this.host.emit('BLOCK_JOB_ERROR', { device: this.id, operation: error.operation, action: error.action });
    if (error.action === 'ignore') return;
    if (error.action === 'stop') {
      // QEMU marks an error stop as a user pause: resume clears it and the job retries.
      this.ioStatus = errno.ioStatus;
      this.userPaused = true;
      this.enterPause();
      return;
    }
    this.abort(errno.text);
  }

  private enterPause(): void {
    if (!this.userPaused) return;
    if (this.status === 'running') this.transition('paused');
    else if (this.status === 'ready') this.transition('standby');
  }

  private leavePause(): void {
    if (this.userPaused) return;
    if (this.status === 'paused') this.transition('running');
    else if (this.status === 'standby') {
      this.transition('ready');
      if (this.completeRequested) this.host.defer(() => this.finishMainLoop(true));
    }
  }

  /** The main loop ended without error: waiting -> pending -> (finalize). */
  private finishMainLoop(pivot: boolean): void {
    if (this.status !== 'running' && this.status !== 'ready') return;
    if (this.spec.hasReadyPhase) this.pivoted = pivot;
    this.transition('waiting');
    this.transition('pending');
    if (!this.spec.autoFinalize) {
      this.host.emit('BLOCK_JOB_PENDING', { type: this.type, id: this.id });
      return;
    }
    this.finalizeNow();
  }

  private finalizeNow(): void {
    this.host.emit('BLOCK_JOB_COMPLETED', this.progressPayload());
    this.conclude();
  }

  /** aborting -> CANCELLED (or COMPLETED with error) -> concluded. Failures never use CANCELLED. */
  private abort(errorText: string | undefined): void {
    this.transition('aborting');
    if (this.spec.hasReadyPhase) this.pivoted = false;
    if (errorText === undefined) {
      this.error = 'Operation canceled';
      this.host.emit('BLOCK_JOB_CANCELLED', this.progressPayload());
    } else {
      this.error = errorText;
      this.host.emit('BLOCK_JOB_COMPLETED', { ...this.progressPayload(), error: errorText });
    }
    this.conclude();
  }

  private conclude(): void {
    this.transition('concluded');
    if (this.spec.autoDismiss) this.transition('null');
  }

  private progressPayload(): Record<string, unknown> {
    return { device: this.id, len: this.len, offset: this.offset, speed: this.speed, type: this.type };
  }

  private transition(status: SimJobStatus): void {
    if (status === this.status) return; // JOB_STATUS_CHANGE fires only when s1 != s0
    this.status = status;
    this.host.emit('JOB_STATUS_CHANGE', { status, id: this.id });
    if (status === 'null') this.host.removed(this);
  }
}

function failurePoint(error: InjectedError, len: number): number {
  return Math.floor(len * Math.min(0.99, Math.max(0, error.atFraction ?? 0.5)));
}
