/**
 * The pending `waitFor` calls and the one rule that settles them: 'ready' once `ready` is true on a
 * job that has not ended (never offset == len), 'concluded' once it ended; a job that ends while
 * awaited 'ready' rejects with CLIENT_ERR_JOB_ENDED, saying whether it had been ready.
 */
import type { JobState } from '../generated/schema-types.js';
import { ClientJobEndedError, type ClientError } from './errors.js';
import { isEnded } from '../protocol/job-rules.js';

export type WaitTarget = 'ready' | 'concluded';

export interface Waiter {
  vm: string;
  job: string;
  target: WaitTarget;
  /** Seen ready by this client while it waited. */
  sawReady: boolean;
  settle(outcome: { job: JobState } | { error: ClientError }): void;
}

/** Applies a job's latest state (undefined: not known yet) to one waiter. */
export function judgeWaiter(waiter: Waiter, job: JobState | undefined): void {
  if (!job) return;
  const ended = isEnded(job);
  if (job.ready === true && !ended) waiter.sawReady = true;
  if (waiter.target === 'ready') {
    if (job.ready === true && !ended) waiter.settle({ job });
    else if (ended) waiter.settle({ error: new ClientJobEndedError(job, waiter.sawReady || wasReady(job)) });
  } else if (ended) {
    waiter.settle({ job });
  }
}

/**
 * Whether a concluded job must have been ready first: a mirror or active commit only completes from
 * ready, and those are the jobs that report `pivoted`.
 */
export function wasReady(job: JobState): boolean {
  return job.outcome === 'completed' && job.pivoted !== undefined;
}
