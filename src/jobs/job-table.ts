/**
 * The jobs of one VM as its engine knows them and as subscribers were told, bounded: the reducer's
 * record per id (with the counts the poll cadence and pruning read, kept as records change, so no
 * walk over retained jobs per event), the state last published per id, and the highest incarnation
 * per id, remembered after a record is dropped so that a reused id never repeats one.
 */
import { configDefaults } from '../generated/config-defaults.js';
import type { JobRecord } from './normalize.js';
import { isTerminalState } from './qemu-rules.js';
import type { JobState } from './types.js';

const MAX_REMEMBERED_INCARNATIONS = 10_000;
const DEFAULT_MAX_JOBS = 1_000;
const DEFAULT_MAX_RETAINED_JOBS = 100;

export interface JobTableBounds {
  /** Live jobs at once. @default 1000 */
  maxJobs?: number | undefined;
  /** Ended jobs kept (oldest dropped first). @default 100 */
  maxRetainedJobs?: number | undefined;
  /** How long an ended job is kept. @default jobs.retentionMs in config.schema.json */
  retentionMs?: number | undefined;
}

export class JobTable {
  /** The reducer's record per job id; changed only through set() and prune(). */
  readonly records: ReadonlyMap<string, JobRecord> = new Map();
  /** Last emitted state per job id: what subscribers were told. */
  readonly published = new Map<string, JobState>();
  readonly maxJobs: number;
  readonly retentionMs: number;
  private readonly maxRetained: number;
  private readonly incarnations = new Map<string, number>();
  /** Records present and not ended: the poll cadence's `active`. */
  private liveRecords = 0;
  /** Records of ended jobs, and no earlier than when the first of them is past its retention: prune()'s cheap test. */
  private endedRecords = 0;
  private nextExpiry = Infinity;

  constructor(bounds: JobTableBounds) {
    this.maxJobs = bounds.maxJobs ?? DEFAULT_MAX_JOBS;
    this.maxRetained = bounds.maxRetainedJobs ?? DEFAULT_MAX_RETAINED_JOBS;
    this.retentionMs = bounds.retentionMs ?? configDefaults.jobs.retentionMs;
  }

  /** Whether a new id fits: live and retained jobs together. */
  get full(): boolean {
    return this.records.size >= this.maxJobs + this.maxRetained;
  }

  /** Whether any job is present and not ended. */
  get anyLive(): boolean {
    return this.liveRecords > 0;
  }

  /** Every change to a record but pruning (which drops only ended jobs) goes through here. */
  set(id: string, before: JobRecord | undefined, record: JobRecord): void {
    this.liveRecords += Number(isLive(record)) - Number(before !== undefined && isLive(before));
    this.endedRecords += Number(!record.present) - Number(before !== undefined && !before.present);
    if (!record.present) this.nextExpiry = Math.min(this.nextExpiry, Date.parse(record.job.stateSince) + this.retentionMs);
    (this.records as Map<string, JobRecord>).set(id, record);
  }

  /** The highest incarnation the id has had (0: never seen). */
  previousIncarnation(id: string): number {
    return this.incarnations.get(id) ?? 0;
  }

  rememberIncarnation(id: string, incarnation: number): void {
    if ((this.incarnations.get(id) ?? 0) >= incarnation) return;
    this.incarnations.delete(id);
    this.incarnations.set(id, incarnation);
    if (this.incarnations.size > MAX_REMEMBERED_INCARNATIONS) {
      const oldest = this.incarnations.keys().next().value;
      if (oldest !== undefined && oldest !== id) this.incarnations.delete(oldest);
    }
  }

  /**
   * Drops ended jobs QEMU no longer knows, past their retention or beyond the count bound. Runs after
   * every poll, where nothing is usually due: the counters say so without a walk over the records.
   */
  prune(now: number): void {
    const { retentionMs, maxRetained } = this;
    if (this.endedRecords <= maxRetained && now < this.nextExpiry) return;
    const records = this.records as Map<string, JobRecord>;
    const ended = [...records.entries()]
      .filter(([, r]) => !r.present)
      .map(([id, record]) => ({ id, since: Date.parse(record.job.stateSince) }))
      .sort((a, b) => a.since - b.since);
    this.endedRecords = 0;
    this.nextExpiry = Infinity;
    ended.forEach(({ id, since }, index) => {
      const expired = now - since >= retentionMs;
      if (expired || ended.length - index > maxRetained) {
        records.delete(id);
        this.published.delete(id);
      } else {
        this.endedRecords++;
        this.nextExpiry = Math.min(this.nextExpiry, since + retentionMs);
      }
    });
  }
}

const isLive = (record: JobRecord): boolean => record.present && !isTerminalState(record.job.state);
