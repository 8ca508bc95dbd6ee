/**
 * The job verbs: which normalized states accept which verb, and the QMP command each verb becomes.
 *
 * The table is QEMU's own `JobVerbTable` (qemu/qemu:job.c, v7.2.0), so a verb the state does not
 * allow is refused here, before it reaches QEMU, with the same judgement QEMU would make:
 *
 *   verb                        accepted in
 *   cancel                      created running paused ready standby waiting pending
 *   pause / resume / set-speed  created running paused ready standby
 *   complete                    ready, and standby since QEMU 6.0 ("job: Allow complete for jobs on standby")
 *   finalize                    pending
 *   dismiss                     concluded
 *
 * Plus two rules for a soft cancel (force=false): `qmp_block_job_cancel` (blockdev.c) refuses it on a
 * user-paused (or error-stopped) job ("The block job for device '…' is currently paused"), and QEMU
 * ignores it once the job has left its main loop (waiting, pending).
 */
import { QmpCommandError } from '../../errors.js';
import type { CommandAction, JobState, JobStatusName } from '../../generated/schema-types.js';
import type { JobVerb, MonitorCapabilities } from '../../jobs/types.js';

type QemuVerb = 'cancel' | 'pause' | 'resume' | 'set-speed' | 'complete' | 'finalize' | 'dismiss';

const PAUSABLE: readonly JobStatusName[] = ['created', 'running', 'paused', 'ready', 'standby'];

/** JobVerbTable of qemu/qemu:job.c v7.2.0, in normalized state names. */
const VERB_TABLE: Readonly<Record<QemuVerb, ReadonlySet<JobStatusName>>> = {
  cancel: new Set<JobStatusName>([...PAUSABLE, 'waiting', 'pending']),
  pause: new Set(PAUSABLE),
  resume: new Set(PAUSABLE),
  'set-speed': new Set(PAUSABLE),
  complete: new Set<JobStatusName>(['ready', 'standby']),
  finalize: new Set<JobStatusName>(['pending']),
  dismiss: new Set<JobStatusName>(['concluded']),
};

/** States a job never leaves except to be dismissed: a verb there means the job has ended. */
export function hasEnded(job: JobState): boolean {
  return job.state === 'concluded' || job.state === 'dismissed';
}

/**
 * QEMU accepts `complete` right now, judged by the engine's authoritative state (never offset == len):
 * ready, or standby where QEMU >= 6.0 accepts it there.
 */
export function acceptsComplete(job: JobState, capabilities: MonitorCapabilities): boolean {
  if (job.stale || job.ready !== true) return false;
  return job.state === 'ready' || (job.state === 'standby' && capabilities.completeInStandby);
}

/**
 * The job may still become ready: it has not left its main loop. READY never goes back to RUNNING and
 * waiting/pending/aborting only move on towards concluded (JobSTT in job.c), so from those it cannot.
 */
export function mayBecomeReady(job: JobState): boolean {
  return ['created', 'running', 'paused', 'ready', 'standby'].includes(job.state);
}

/**
 * Soft cancel only differs from force cancel on a ready job: mirror_cancel forces any cancel before
 * READY, and the other job types never look at `force`. So before ready the force form is sent (it
 * also works on a paused job, which a soft block-job-cancel would refuse).
 */
export function effectiveForce(job: JobState, force: boolean): boolean {
  return force || BEFORE_READY.has(job.state);
}

/** Main-loop states a job is in before it is ready (READY never goes back to RUNNING). */
const BEFORE_READY: ReadonlySet<JobStatusName> = new Set(['created', 'running', 'paused']);

export type VerbCheck = { allowed: true } | { allowed: false; reason: string };

/** Whether the job's current state accepts the action (for complete: independent of `when`). */
export function checkVerb(action: CommandAction, job: JobState, capabilities: MonitorCapabilities, force: boolean): VerbCheck {
  const accepted = VERB_TABLE[action];
  if (!accepted.has(job.state)) {
    return { allowed: false, reason: `job '${job.id}' is ${job.state}; ${action} is accepted only when ${[...accepted].join(', ')}` };
  }
  if (action === 'complete' && job.state === 'standby' && !capabilities.completeInStandby) {
    return { allowed: false, reason: `job '${job.id}' is standby; QEMU ${versionText(capabilities)} accepts complete only when ready (standby since 6.0)` };
  }
  if (action === 'cancel' && !force && (job.state === 'waiting' || job.state === 'pending')) {
    // v7.2.0 job_cancel_async_locked: accepted and ignored, so sending it would only mislead.
    return { allowed: false, reason: `job '${job.id}' is ${job.state}: it has left its main loop, where QEMU ignores a soft cancel; cancel with force to abort it` };
  }
  if (action === 'cancel' && !effectiveForce(job, force) && job.pauseReason !== undefined) {
    return {
      allowed: false,
      reason: `job '${job.id}' is ${job.state} (${job.pauseReason} pause): QEMU refuses a soft cancel of a paused job; resume it first or cancel with force`,
    };
  }
  return { allowed: true };
}

/** One QMP command for one verb, and what the engine is told before it is written. */
export interface QmpPlan {
  execute: string;
  arguments: Record<string, unknown>;
  verb: JobVerb;
}

export interface VerbArguments {
  force: boolean;
  speed?: number | undefined;
}

/**
 * The QMP command for an action: `job-*` where the monitor has them (QEMU >= 3.0), `block-job-*`
 * otherwise. `job-cancel` is always force, so a soft cancel needs `block-job-cancel` force=false on any
 * version; set-speed exists only as `block-job-set-speed`.
 */
export function planQmpCommand(action: CommandAction, job: JobState, capabilities: MonitorCapabilities, args: VerbArguments): QmpPlan {
  const id = job.id;
  const jobOrBlockJob = (verb: JobVerb, name: string, blockJobArguments: Record<string, unknown>): QmpPlan =>
    capabilities.jobVerbs
      ? { execute: `job-${name}`, arguments: { id }, verb }
      : { execute: `block-job-${name}`, arguments: blockJobArguments, verb };
  switch (action) {
    case 'complete':
      return jobOrBlockJob('complete', 'complete', { device: id });
    case 'cancel':
      return effectiveForce(job, args.force)
        ? jobOrBlockJob('force-cancel', 'cancel', { device: id, force: true })
        : { execute: 'block-job-cancel', arguments: { device: id, force: false }, verb: 'cancel' };
    case 'pause':
      return jobOrBlockJob('pause', 'pause', { device: id });
    case 'resume':
      return jobOrBlockJob('resume', 'resume', { device: id });
    case 'set-speed':
      return { execute: 'block-job-set-speed', arguments: { device: id, speed: args.speed ?? 0 }, verb: 'set-speed' };
    case 'finalize':
      // block-job-finalize / block-job-dismiss (2.12) already take `id`, not `device`.
      return jobOrBlockJob('finalize', 'finalize', { id });
    case 'dismiss':
      return jobOrBlockJob('dismiss', 'dismiss', { id });
  }
}

/**
 * QEMU < 6.0 refused `complete` in standby ("Job 'j' in state 'standby' cannot accept command verb
 * 'complete'"), e.g. in the blip right after a drain. That is not a failure: the job is ready again soon.
 * Matching QEMU's text is the only way to recognise it (the class is plain GenericError).
 */
export function isStandbyCompleteRefusal(error: unknown): boolean {
  return (
    error instanceof QmpCommandError &&
    error.qmpClass === 'GenericError' &&
    /in state 'standby' cannot accept command verb 'complete'/.test(error.desc)
  );
}

function versionText(capabilities: MonitorCapabilities): string {
  const { major, minor, micro } = capabilities.version;
  return `${major}.${minor}.${micro}`;
}
