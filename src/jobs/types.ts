/**
 * The job engine's public contract: what the gateway, job control, the demo and the benchmarks
 * consume. JobState itself is derived from schemas/job-state.schema.json.
 */
import type { Observable } from 'rxjs';
import type { JobProgress, JobState, JobStatusName, JobOutcome } from '../generated/schema-types.js';
import type { QmpMonitor } from '../qmp/types.js';

export type { JobProgress, JobState, JobStatusName, JobOutcome };

/** Monitor status of one VM as the gateway reports it. */
export type VmStatus = 'connecting' | 'connected' | 'disconnected';

/** What a transition changed: the four fields whose change makes a transition. */
export interface TransitionKey {
  state: JobStatusName;
  ready: boolean | null;
  outcome?: JobOutcome;
  pauseReason?: 'user' | 'error';
}

/** A job's state, ready, outcome or pauseReason really changed. Exactly once, in order per job. */
export interface JobTransition {
  kind: 'transition';
  vm: string;
  /** The full normalized state after the change. */
  job: JobState;
  /** null when the job was first seen. */
  from: TransitionKey | null;
  to: TransitionKey;
  source: JobState['source'];
  /** Local wall-clock ms of the change. */
  at: number;
  /** performance.now() when the QMP message behind it was received (for delivery-lag metrics). */
  qmpReceivedMono?: number;
}

/** A VM's monitor went up or down (also a stream event: it gets an offset). */
export interface VmStatusChange {
  kind: 'vm';
  vm: string;
  status: VmStatus;
  at: number;
  /** Human-readable cause, e.g. "monitor busy", "connection refused". */
  reason?: string;
}

export type StreamInput = JobTransition | VmStatusChange;

/** Throttled progress of one job; never a transition, never replayed. */
export interface ProgressUpdate {
  vm: string;
  job: string;
  incarnation: number;
  progress: JobProgress;
  at: number;
}

export interface VmSnapshot {
  vm: string;
  status: VmStatus;
  jobs: JobState[];
}

/** What the monitor can do, learned from the monitor itself (greeting + query-qmp-schema), never assumed. */
export interface MonitorCapabilities {
  version: { major: number; minor: number; micro: number };
  /** query-jobs exists (QEMU >= 3.0). */
  queryJobs: boolean;
  /** JOB_STATUS_CHANGE exists (QEMU >= 3.0). */
  jobStatusChange: boolean;
  /** BlockJobInfo has `status` (QEMU >= 2.12). */
  status: boolean;
  /** BlockJobInfo has `ready` (QEMU >= 2.2). */
  readyField: boolean;
  /** job-complete / job-cancel / job-pause / ... exist (QEMU >= 3.0). */
  jobVerbs: boolean;
  /** complete is accepted in standby (QEMU >= 6.0). */
  completeInStandby: boolean;
}

/** Verbs a client (the gateway's job control) sent; the engine uses them to tell user pauses from internal ones and to know pivots. */
export type JobVerb = 'complete' | 'cancel' | 'force-cancel' | 'pause' | 'resume' | 'set-speed' | 'finalize' | 'dismiss';

/**
 * One source of normalized jobs for many VMs. `changes$` delivers synchronously and in order per VM,
 * and `snapshot()` always reflects every change already delivered, so a consumer can cut snapshot
 * and live tail at the same instant.
 */
export interface JobSource {
  vms(): string[];
  snapshot(): VmSnapshot[];
  job(vm: string, id: string): JobState | undefined;
  readonly changes$: Observable<StreamInput>;
  readonly progress$: Observable<ProgressUpdate>;
  monitor(vm: string): QmpMonitor | undefined;
  capabilities(vm: string): MonitorCapabilities | undefined;
  /** Tell the engine a verb was sent for a job (before sending it). */
  noteVerb(vm: string, id: string, verb: JobVerb): void;
}
