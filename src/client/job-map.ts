/**
 * The live job map: the latest state of every job the subscription covers, per VM. Snapshots replace
 * a VM's jobs in one step; finished jobs beyond a bound are forgotten oldest first (the gateway
 * forgets them too, after its retention), so memory stays bounded however long the client runs.
 */
import type { JobProgress, JobState } from '../generated/schema-types.js';
import { isEnded } from '../protocol/job-rules.js';

export class JobMap {
  private readonly byVm = new Map<string, Map<string, JobState>>();

  constructor(private readonly maxFinishedPerVm: number) {}

  get(vm: string, id: string): JobState | undefined {
    return this.byVm.get(vm)?.get(id);
  }

  /** Every job, VM by VM. */
  all(): JobState[] {
    return [...this.byVm.values()].flatMap((jobs) => [...jobs.values()]);
  }

  of(vm: string): JobState[] {
    return [...(this.byVm.get(vm)?.values() ?? [])];
  }

  /** A job's new state. An older incarnation never overwrites a newer one. */
  put(job: JobState): void {
    let jobs = this.byVm.get(job.vm);
    if (!jobs) this.byVm.set(job.vm, (jobs = new Map()));
    const known = jobs.get(job.id);
    if (known && known.incarnation > job.incarnation) return;
    jobs.delete(job.id); // re-insert: iteration order is recency order, which trim relies on
    jobs.set(job.id, job);
    if (isEnded(job)) this.trim(jobs);
  }

  /** The job left the subscription's filter (an event with `leftFilter`): it is no longer ours to show. */
  remove(vm: string, id: string): void {
    this.byVm.get(vm)?.delete(id);
  }

  /** A snapshot of one VM: exactly these jobs. */
  replace(vm: string, jobs: Iterable<JobState>): void {
    const fresh = new Map<string, JobState>();
    for (const job of jobs) fresh.set(job.id, job);
    this.byVm.set(vm, fresh);
    this.trim(fresh);
  }

  /** Returns the updated job, or undefined when the progress is for a job (or incarnation) we do not hold. */
  progress(vm: string, id: string, incarnation: number | undefined, progress: JobProgress): JobState | undefined {
    const job = this.byVm.get(vm)?.get(id);
    if (!job || (incarnation !== undefined && job.incarnation !== incarnation)) return undefined;
    const updated = { ...job, progress };
    this.byVm.get(vm)!.set(id, updated);
    return updated;
  }

  clear(): void {
    this.byVm.clear();
  }

  private trim(jobs: Map<string, JobState>): void {
    let finished = 0;
    for (const job of jobs.values()) if (isEnded(job)) finished++;
    for (const [id, job] of jobs) {
      if (finished <= this.maxFinishedPerVm) break;
      if (!isEnded(job)) continue;
      jobs.delete(id);
      finished--;
    }
  }
}
