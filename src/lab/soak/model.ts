/** What the soak's parts share: the report it fills, the VMs it runs on, one job's run, and how they read the pushed side. */
import type { LabJob } from '../jobs.js';
import type { Qsd } from '../qsd.js';
import type { Sample } from './gateway-process.js';
import type { SentVerbs, SoakOracle } from './oracle.js';
import type { JobPlan } from './plan.js';
import type { PushedJobs } from './pushed.js';

export interface SoakReport {
  seed: number;
  jobs: number;
  byKind: Record<string, number>;
  byEnding: Record<string, number>;
  transitionsCompared: number;
  outcomesChecked: number;
  mismatches: string[];
  /** Jobs whose stream was cut by a gateway kill (judged as a subsequence) or whose daemon was killed. */
  interrupted: number;
  qemuKilledJobs: number;
  /** Jobs a plan left alive (e.g. a soft cancel refused after a user pause), ended by force. */
  rescued: number;
  /** Driver steps whose moment never came (the job went another way). */
  stuckWaits: number;
  /** Jobs with a user pause or error stop whose pushed pause details differ from the oracle's attribution, all else equal. */
  pauseAttributionDiffers: number;
  completeOnReady: { sent: number; failed: number };
  completeEarly: { sent: number; ok: number };
  commands: number;
  gatewayKills: number;
  qemuKills: number;
  sigtermDrainMs: number;
  subscribers: { main: StreamClientSummary; resumer: StreamClientSummary };
  samples: Sample[];
  durationMs: number;
}

export interface StreamClientSummary {
  numbered: number;
  gaps: number;
  duplicates: number;
  lostResumes: number;
  resumes: number;
  problems: string[];
}

export interface VmLab {
  vm: string;
  qsd: Qsd;
  oracle: SoakOracle;
  /** Jobs running on it now (killed with the daemon). */
  live: Set<JobRun>;
  killedAt: number[];
  kills: number;
}

export interface JobRun {
  plan: JobPlan;
  lab: VmLab;
  startedAt: number;
  oracleMark: number;
  pushedMark: number;
  /** Gateway life when it started; a kill since makes the stream a subsequence. */
  life: number;
  qemuKilled: boolean;
  /** User pauses, resumes and cancels sent through the gateway (send times). */
  sent: SentVerbs;
  labJob?: LabJob;
}

/** Records a wrong answer of the gateway's about one run. */
export type Mismatch = (run: JobRun, text: string) => void;

/** The run's job as pushed since it started, one segment per gateway life or snapshot. */
export const pushedSegments = (pushed: PushedJobs, run: JobRun) => pushed.since(run.lab.vm, run.plan.id, run.pushedMark);

/** The run's job as last pushed. */
export const pushedState = (pushed: PushedJobs, run: JobRun) => pushed.latest(run.lab.vm, run.plan.id, run.pushedMark);

/** When the oracle saw QEMU end the job (its status null), if it did. */
export const oracleEndAt = (run: JobRun): number | undefined =>
  run.lab.oracle.events(run.plan.id, run.oracleMark).find((e) => e.event === 'JOB_STATUS_CHANGE' && e.data.status === 'null')?.receivedAt;
