/**
 * QEMU's job rules, in one place: its job statuses, the state machine between them (JobSTT), which
 * statuses accept which verb (JobVerbTable), and what follows from them for the normalized states:
 * ended, may still become ready, accepts a verb now. The engine, job control and the simulator all
 * judge by these tables (qemu/qemu:job.c and blockdev.c, v7.2.0; reference §4).
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
import type { CommandAction, JobState, JobStatusName } from '../generated/schema-types.js';
import type { JobVerb, MonitorCapabilities } from './types.js';

/** QEMU's JobStatus enum (qapi/job.json, 2.12+). */
export const QEMU_JOB_STATUSES = [
  'undefined', 'created', 'running', 'paused', 'ready', 'standby',
  'waiting', 'pending', 'aborting', 'concluded', 'null',
] as const;
export type QemuJobStatus = (typeof QEMU_JOB_STATUSES)[number];

/** QEMU's JobVerb enum (qapi/job.json), in the protocol's spelling (set-speed is a block-job verb). */
export type QemuVerb = CommandAction;

type LiveStatus = Exclude<QemuJobStatus, 'undefined'>;

/** QEMU's job state machine (JobSTT in job.c), as "status -> statuses it may move to". */
const JOB_STT: Readonly<Record<LiveStatus, readonly LiveStatus[]>> = {
  created: ['running', 'aborting', 'null'],
  running: ['paused', 'ready', 'waiting', 'aborting'],
  paused: ['running'],
  ready: ['standby', 'waiting', 'aborting'],
  standby: ['ready'],
  waiting: ['pending', 'aborting'],
  pending: ['aborting', 'concluded'],
  aborting: ['concluded'],
  concluded: ['null'],
  null: [],
};

const PAUSABLE: readonly LiveStatus[] = ['created', 'running', 'paused', 'ready', 'standby'];

/** JobVerbTable of job.c, v7.2.0 (complete in standby as of 6.0; see acceptsVerb for older QEMU). */
const VERB_TABLE: Readonly<Record<QemuVerb, ReadonlySet<QemuJobStatus>>> = {
  cancel: new Set<QemuJobStatus>([...PAUSABLE, 'waiting', 'pending']),
  pause: new Set(PAUSABLE),
  resume: new Set(PAUSABLE),
  'set-speed': new Set(PAUSABLE),
  complete: new Set<QemuJobStatus>(['ready', 'standby']),
  finalize: new Set<QemuJobStatus>(['pending']),
  dismiss: new Set<QemuJobStatus>(['concluded']),
};

/** QEMU's status for a normalized state (the names are QEMU's, except dismissed = null). */
function qemuStatusOf(state: JobStatusName): LiveStatus {
  return state === 'dismissed' ? 'null' : state;
}

/** Whether QEMU's verb table accepts `verb` in `status` (QEMU >= 6.0; older refuse complete in standby). */
export function verbAcceptedIn(verb: QemuVerb, status: QemuJobStatus): boolean {
  return VERB_TABLE[verb].has(status);
}

/** The statuses in which QEMU accepts `verb`, in table order (for messages). */
function statusesAccepting(verb: QemuVerb): readonly QemuJobStatus[] {
  return [...VERB_TABLE[verb]];
}

/** For each normalized state: the QEMU statuses the same job may report later (itself included). */
const REACHABLE: Readonly<Record<JobStatusName, ReadonlySet<QemuJobStatus>>> = (() => {
  const closure = (start: LiveStatus): Set<QemuJobStatus> => {
    const seen = new Set<LiveStatus>([start]);
    const queue: LiveStatus[] = [start];
    for (let status = queue.shift(); status !== undefined; status = queue.shift()) {
      for (const next of JOB_STT[status]) {
        if (!seen.has(next)) {
          seen.add(next);
          queue.push(next);
        }
      }
    }
    return seen;
  };
  return {
    created: closure('created'), running: closure('running'), paused: closure('paused'), ready: closure('ready'),
    standby: closure('standby'), waiting: closure('waiting'), pending: closure('pending'), aborting: closure('aborting'),
    concluded: closure('concluded'), dismissed: closure('null'),
  };
})();

/** The same job, now in `state`, may later report `status` (READY never returns to RUNNING; only a new job is created). */
export function mayReach(state: JobStatusName, status: QemuJobStatus): boolean {
  return REACHABLE[state].has(status);
}

/** Concluded or dismissed (QEMU: null): the job has ended and only dismissal (or nothing) follows. */
export function isTerminalState(state: JobStatusName | QemuJobStatus): boolean {
  return state === 'concluded' || state === 'dismissed' || state === 'null';
}

/**
 * The job may still become ready: it has not left its main loop. READY never goes back to RUNNING and
 * waiting/pending/aborting only move on towards concluded, so from those it cannot.
 */
export function mayBecomeReady(state: JobStatusName): boolean {
  return mayReach(state, 'ready');
}

/** Main-loop states a job is in before it is ready (created, running, paused). */
function isBeforeReady(state: JobStatusName): boolean {
  return mayBecomeReady(state) && state !== 'ready' && state !== 'standby';
}

/**
 * Soft cancel only differs from force cancel on a ready job: mirror_cancel forces any cancel before
 * READY, and the other job types never look at `force`. So before ready the force form is sent (it
 * also works on a paused job, which a soft block-job-cancel would refuse).
 */
export function effectiveForce(job: JobState, force: boolean): boolean {
  return force || isBeforeReady(job.state);
}

/**
 * What the engine is told (noteVerb) before an action is written: a cancel QEMU will treat as force
 * (effectiveForce) is a force-cancel, so a ready mirror's soft cancel is known as "no pivot".
 */
export function engineVerbOf(action: QemuVerb, job: JobState, force: boolean): JobVerb {
  if (action === 'cancel') return effectiveForce(job, force) ? 'force-cancel' : 'cancel';
  return action;
}

/**
 * QEMU accepts `complete` right now, judged by the engine's authoritative state (never offset == len):
 * ready, or standby where QEMU >= 6.0 accepts it there.
 */
export function acceptsComplete(job: JobState, capabilities: MonitorCapabilities): boolean {
  if (job.stale || job.ready !== true) return false;
  return job.state === 'ready' || (job.state === 'standby' && capabilities.completeInStandby);
}

export type VerbCheck = { allowed: true } | { allowed: false; reason: string };

/** Whether the job's current state accepts the verb on this QEMU (for complete: whether it is ready, not when). */
export function checkVerb(verb: QemuVerb, job: JobState, capabilities: MonitorCapabilities, force: boolean): VerbCheck {
  if (!verbAcceptedIn(verb, qemuStatusOf(job.state))) {
    return { allowed: false, reason: `job '${job.id}' is ${job.state}; ${verb} is accepted only when ${statusesAccepting(verb).join(', ')}` };
  }
  if (verb === 'complete' && job.state === 'standby' && !capabilities.completeInStandby) {
    return { allowed: false, reason: `job '${job.id}' is standby; QEMU ${versionText(capabilities)} accepts complete only when ready (standby since 6.0)` };
  }
  if (verb === 'cancel' && !force && (job.state === 'waiting' || job.state === 'pending')) {
    // v7.2.0 job_cancel_async_locked: accepted and ignored, so sending it would only mislead.
    return { allowed: false, reason: `job '${job.id}' is ${job.state}: it has left its main loop, where QEMU ignores a soft cancel; cancel with force to abort it` };
  }
  if (verb === 'cancel' && !effectiveForce(job, force) && job.pauseReason !== undefined) {
    return {
      allowed: false,
      reason: `job '${job.id}' is ${job.state} (${job.pauseReason} pause): QEMU refuses a soft cancel of a paused job; resume it first or cancel with force`,
    };
  }
  return { allowed: true };
}

/**
 * Whether the verb may be written now, judged on the job's current state: QEMU's table and version
 * rules, and for complete the engine's authoritative readiness. What a control port of any
 * QEMU-backed source checks once its backend is connected and the job's state current.
 */
export function mayWriteVerb(verb: QemuVerb, job: JobState, capabilities: MonitorCapabilities, force: boolean): VerbCheck {
  const check = checkVerb(verb, job, capabilities, force);
  if (check.allowed && verb === 'complete' && !acceptsComplete(job, capabilities)) {
    return { allowed: false, reason: `job '${job.id}' is ${job.state} (ready: ${String(job.ready)})` };
  }
  return check;
}

/**
 * QEMU < 6.0 refused `complete` in standby ("Job 'j' in state 'standby' cannot accept command verb
 * 'complete'"), e.g. in the blip right after a drain. That is not a failure: the job is ready again
 * soon. QEMU's text is the only way to recognise it (the class is plain GenericError); libvirt passes
 * the same text through inside its own message.
 */
export function isStandbyCompleteRefusal(desc: string): boolean {
  return /in state 'standby' cannot accept command verb 'complete'/.test(desc);
}

/** QEMU's own refusal text for a verb its table does not accept (what the simulator answers). */
export function verbRefusalText(id: string, status: QemuJobStatus, verb: QemuVerb): string {
  return `Job '${id}' in state '${status}' cannot accept command verb '${verb}'`;
}

function versionText(capabilities: MonitorCapabilities): string {
  const { major, minor, micro } = capabilities.version;
  return `${major}.${minor}.${micro}`;
}
