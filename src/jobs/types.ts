/**
 * The job engine's public contract: what the gateway, job control, the demo and the benchmarks
 * consume. JobState itself is derived from schemas/job-state.schema.json.
 */
import type { Observable } from 'rxjs';
import type { JobProgress, JobState, JobStatusName, JobOutcome } from '../generated/schema-types.js';

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

/**
 * Throttled progress of one job; never a transition, never replayed. It carries the job's type and
 * published state, so a consumer filters it without asking the source for the job.
 */
export interface ProgressUpdate {
  vm: string;
  job: string;
  incarnation: number;
  type: JobState['type'];
  /** The state subscribers were last told (a held pause is not shown until it is published). */
  state: JobStatusName;
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
 * What follows a VM's jobs: 'qmp' (a QMP monitor of its own), 'libvirt' (libvirt's RPC), 'fleet' (a
 * fleet view of VMs that other hosts follow), 'simulated' (the demo's QMP simulator). Open: a new
 * kind of source names itself.
 */
export type BackendKind = 'qmp' | 'libvirt' | 'fleet' | 'simulated' | (string & {});

/** One problem of a VM's backend: a stable code (docs/errors.md, e.g. QMP_ERR_CONNECT) and its text. */
export interface VmProblem {
  code: string;
  message: string;
  /** Local wall-clock ms. */
  at: number;
}

/** Facts about one VM and its backend, for /v1/info, metrics and operators. */
export interface VmInfo {
  vm: string;
  status: VmStatus;
  /** Why it is not connected (as in VmStatusChange.reason), while it is not. */
  reason?: string;
  backend: BackendKind;
  /** QEMU's version, once a session told it. */
  qemu?: { major: number; minor: number; micro: number };
  /** libvirt's version, for a VM followed through libvirt (its source sets it). */
  libvirt?: { major: number; minor: number; micro: number };
  /** Commands written to the backend so far (polls and verbs), over all its sessions. */
  commandsSent: number;
  /** Problems so far, counted by stable code. */
  problems: Readonly<Record<string, number>>;
  lastProblem?: VmProblem;
}

/**
 * A VM's info was added or changed (status, reason, backend, version, a problem), or the VM left.
 * Counters in an emitted info are as of that emission (a command does not emit): read `info(vm)`
 * for the current ones.
 */
export type VmInfoUpdate = { kind: 'info'; info: VmInfo } | { kind: 'removed'; vm: string };

/**
 * One read-only source of normalized jobs for many VMs (job control is a separate port: see
 * control-port.ts). `changes$` delivers synchronously and in order per VM, and `snapshot()` always
 * reflects every change already delivered, so a consumer can cut snapshot and live tail at the same
 * instant. VMs may come and go at run time; every stream covers the ones added later.
 */
export interface JobSource {
  vms(): string[];
  snapshot(): VmSnapshot[];
  job(vm: string, id: string): JobState | undefined;
  /**
   * QEMU announced the job but the source has not published it yet (it holds a new job's first
   * transitions briefly); `job()` will know it shortly, or the start failed. Sources without such
   * a hold leave this out.
   */
  announced?(vm: string, id: string): boolean;
  /**
   * Resolves once the source has taken in everything its backend reported before now (e.g. one
   * round trip on the monitor), so a job a client started a moment ago is at least `announced`.
   * Never rejects; sources that cannot lag behind leave this out.
   */
  settle?(vm: string, timeoutMs: number): Promise<void>;
  /**
   * Jobs subscribers were told of by an earlier process (a fleet host restarted: Redis kept them).
   * The source reconciles them with its backend like jobs it saw before a reconnect: still listed,
   * they go on; gone, they conclude `unknown`. `status` is the VM status they were last told: a
   * source that knows otherwise says so in the stream. Sources that cannot take them leave this out.
   */
  seed?(vm: string, jobs: readonly JobState[], status?: VmStatus): void;
  readonly changes$: Observable<StreamInput>;
  readonly progress$: Observable<ProgressUpdate>;
  /** The VM's info now (counters current), or undefined for a VM the source does not follow. */
  info(vm: string): VmInfo | undefined;
  /**
   * On subscribe, synchronously, one `info` update per VM followed now; then every later update,
   * synchronously, for every VM including those added later. No gap between the two.
   */
  readonly vmInfo$: Observable<VmInfoUpdate>;
}
