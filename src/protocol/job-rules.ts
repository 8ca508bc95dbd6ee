/**
 * What a client may read off a job's normalized state: whether it has ended, and in which states QEMU
 * accepts each verb (to offer only buttons that can work). Browser-safe, for the client library, the
 * CLI and the dashboard. The rules' home is src/jobs/qemu-rules.ts, which the client layer may not
 * import; test/unit/protocol/job-rules.test.ts keeps this view equal to it.
 */
import type { CommandAction, JobState, JobStatusName } from '../generated/schema-types.js';

/** Concluded or dismissed: the job has ended; only dismissal (or nothing) follows. */
export function isEnded(job: Pick<JobState, 'state'>): boolean {
  return job.state === 'concluded' || job.state === 'dismissed';
}

const PAUSABLE: readonly JobStatusName[] = ['created', 'running', 'paused', 'ready', 'standby'];

/** The normalized states in which QEMU (>= 6.0) accepts each verb. */
export const VERB_STATES: Readonly<Record<CommandAction, readonly JobStatusName[]>> = {
  cancel: [...PAUSABLE, 'waiting', 'pending'],
  pause: PAUSABLE,
  resume: PAUSABLE,
  'set-speed': PAUSABLE,
  complete: ['ready', 'standby'],
  finalize: ['pending'],
  dismiss: ['concluded'],
};
