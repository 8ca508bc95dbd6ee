/**
 * Follows one job incarnation (and its VM's monitor status) through the engine's `changes$` for the
 * lifetime of one command, so the command can wait for the engine's authoritative state (e.g. ready)
 * instead of guessing from progress.
 *
 * Reading `job()` and subscribing in one synchronous step leaves no gap: `changes$` delivers
 * synchronously and `job()` already reflects every delivered change.
 */
import type { Subscription } from 'rxjs';
import { isTerminalState } from '../../jobs/qemu-rules.js';
import type { JobSource, JobState } from '../../jobs/types.js';

export interface WaitOptions {
  /** Accept the condition only after the next change or this many ms, whichever comes first. */
  holdOffMs?: number;
  /** Also re-check the condition this often. */
  recheckMs?: number;
}

export class JobWatch {
  private current: JobState;
  /** Counts changes seen, so a wait can insist on a fresh one. */
  private changeCount = 0;
  /** A newer incarnation of the same id appeared: ours is gone for good. */
  private superseded = false;
  /** The state published when the job concluded (kept when it is dismissed right after). */
  private concludedState: JobState | undefined;
  private readonly subscription: Subscription;
  private readonly listeners = new Set<() => void>();

  /** Starts watching the job's current incarnation; undefined when the engine does not know the job. */
  static open(source: JobSource, vm: string, id: string): JobWatch | undefined {
    const job = source.job(vm, id);
    return job === undefined ? undefined : new JobWatch(source, job);
  }

  /**
   * Waits for a job the source has announced but not yet published (see JobSource.announced), then
   * starts watching it in the same tick it is published. Undefined if it is not announced, is
   * dropped (a failed start), or is still not published after `maxWaitMs`.
   */
  static whenPublished(source: JobSource, vm: string, id: string, signal: AbortSignal, maxWaitMs: number): Promise<JobWatch | undefined> {
    const now = JobWatch.open(source, vm, id);
    if (now !== undefined || !source.announced?.(vm, id) || signal.aborted) return Promise.resolve(now);
    return new Promise((resolve) => {
      const done = (watch: JobWatch | undefined): void => {
        subscription.unsubscribe();
        clearTimeout(timer);
        signal.removeEventListener('abort', abort);
        resolve(watch);
      };
      const abort = (): void => done(undefined);
      const subscription = source.changes$.subscribe((change) => {
        if (change.vm !== vm) return;
        const job = source.job(vm, id);
        if (job !== undefined) done(new JobWatch(source, job));
        else if (!source.announced?.(vm, id)) done(undefined);
      });
      const timer = setTimeout(() => done(JobWatch.open(source, vm, id)), maxWaitMs);
      signal.addEventListener('abort', abort, { once: true });
    });
  }

  private constructor(
    private readonly source: JobSource,
    job: JobState,
  ) {
    this.current = job;
    if (job.state === 'concluded') this.concludedState = job;
    this.subscription = source.changes$.subscribe((change) => {
      if (change.vm !== job.vm) return;
      // A VM status change (monitor up or down) counts too: a wait for "can send now" re-checks on it.
      if (change.kind === 'transition') {
        if (change.job.id !== job.id || change.job.incarnation < this.current.incarnation) return;
        if (change.job.incarnation > this.current.incarnation) this.superseded = true;
        else {
          this.current = change.job;
          if (change.job.state === 'concluded') this.concludedState = change.job;
        }
      }
      this.changeCount++;
      for (const listener of [...this.listeners]) listener();
    });
  }

  /** The state of the watched incarnation as of its last transition. */
  get job(): JobState {
    return this.current;
  }

  /** The engine's newest view of the incarnation (progress and speed move without transitions). */
  latest(): JobState {
    const job = this.source.job(this.current.vm, this.current.id);
    return job !== undefined && job.incarnation === this.current.incarnation ? job : this.current;
  }

  /** Concluded, dismissed, or replaced by a new incarnation with the same id. */
  get ended(): boolean {
    return this.superseded || isTerminalState(this.current.state);
  }

  /**
   * Resolves with the job once `condition` holds: checked now, after every change and, with
   * `recheckMs`, periodically (some facts change without a transition, e.g. `stale` clearing when a
   * reconcile finds nothing new). With `holdOffMs`, nothing is accepted before the next change or
   * that many ms, whichever comes first. Rejects with `signal.reason` when the signal aborts.
   */
  until(condition: (job: JobState, ended: boolean) => boolean, signal: AbortSignal, options: WaitOptions = {}): Promise<JobState> {
    if (signal.aborted) return Promise.reject(signal.reason);
    const startCount = this.changeCount;
    let heldOff = options.holdOffMs !== undefined;
    const satisfied = (): boolean => {
      if (heldOff && this.changeCount > startCount) heldOff = false;
      return !heldOff && condition(this.latest(), this.ended);
    };
    if (satisfied()) return Promise.resolve(this.latest());
    return new Promise((resolve, reject) => {
      const timers: NodeJS.Timeout[] = [];
      const finish = (): void => {
        this.listeners.delete(check);
        signal.removeEventListener('abort', abort);
        for (const timer of timers) clearTimeout(timer);
      };
      const check = (): void => {
        if (!satisfied()) return;
        finish();
        resolve(this.latest());
      };
      const abort = (): void => {
        finish();
        reject(signal.reason);
      };
      this.listeners.add(check);
      signal.addEventListener('abort', abort, { once: true });
      if (options.holdOffMs !== undefined) {
        timers.push(
          setTimeout(() => {
            heldOff = false;
            check();
          }, options.holdOffMs),
        );
      }
      if (options.recheckMs !== undefined) timers.push(setInterval(check, options.recheckMs));
    });
  }

  /** The job's final state: as it concluded if it did (even if dismissed since), else the latest. */
  final(): JobState {
    return this.concludedState ?? this.latest();
  }

  close(): void {
    this.subscription.unsubscribe();
    this.listeners.clear();
  }
}
