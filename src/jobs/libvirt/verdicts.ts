/**
 * libvirt's side of a job, added to the engine's JobState (which stays QEMU's truth): the domain
 * UUID, the disk from libvirt's job id, and libvirt's block-job-2 verdict. block-job-2 names a
 * disk and a type, not a job id, so a verdict goes to the newest job of that kind on that disk
 * that has no final verdict yet.
 *
 * Where the two differ, both are kept: `virsh blockcopy --finish` ends the mirror without a pivot,
 * which QEMU reports as completed and libvirt as canceled.
 */
import type { JobState, LibvirtJobInfo } from '../../generated/schema-types.js';
import { kindOfBlockJobType, kindOfQemuType, parseLibvirtJobId } from '../../libvirt/job-ids.js';
import type { LibvirtBlockJobEvent } from '../../libvirt/types.js';

type Verdict = NonNullable<LibvirtJobInfo['verdict']>;

/** Jobs whose verdict is remembered per VM (older ones are dropped first). */
const MAX_VERDICTS_PER_VM = 200;

const isFinal = (verdict: Verdict | undefined): boolean => verdict !== undefined && verdict !== 'ready';

export class VerdictBook {
  /** vm -> "id#incarnation" -> verdict, and whether the job is one that pivots (copy, active commit) */
  private readonly verdicts = new Map<string, Map<string, { verdict: Verdict; pivots: boolean }>>();

  /**
   * Files a block-job-2 event against one of `jobs` (the VM's current jobs); returns the job it
   * went to, or undefined when none fits (a job that ended before the gateway saw it).
   */
  record(vm: string, event: Pick<LibvirtBlockJobEvent, 'disk' | 'type' | 'status'>, jobs: readonly JobState[]): JobState | undefined {
    if (event.status === 'unknown') return undefined;
    const verdict: Verdict = event.status;
    const kind = kindOfBlockJobType(event.type);
    const candidates = jobs.filter((job) => {
      const parsed = parseLibvirtJobId(job.id);
      if (!parsed || parsed.disk !== event.disk || (kind !== undefined && parsed.kind !== kind)) return false;
      const known = kindOfQemuType(job.type);
      if (known !== undefined && kind !== undefined && known !== kind) return false;
      return !isFinal(this.verdictOf(vm, job));
    });
    // A final verdict belongs to a job that ended (or is ending); ready to one that runs.
    const target = candidates.sort((a, b) => Date.parse(b.stateSince) - Date.parse(a.stateSince) || b.incarnation - a.incarnation)[0];
    if (!target) return undefined;
    let book = this.verdicts.get(vm);
    if (!book) this.verdicts.set(vm, (book = new Map()));
    const key = `${target.id}#${target.incarnation}`;
    book.delete(key);
    book.set(key, { verdict, pivots: event.type === 'copy' || event.type === 'active-commit' });
    if (book.size > MAX_VERDICTS_PER_VM) book.delete(book.keys().next().value as string);
    return target;
  }

  verdictOf(vm: string, job: Pick<JobState, 'id' | 'incarnation'>): Verdict | undefined {
    return this.verdicts.get(vm)?.get(`${job.id}#${job.incarnation}`)?.verdict;
  }

  /** True once libvirt gave its final word on the job. */
  hasFinalVerdict(vm: string, job: Pick<JobState, 'id' | 'incarnation'>): boolean {
    return isFinal(this.verdictOf(vm, job));
  }

  forget(vm: string): void {
    this.verdicts.delete(vm);
  }

  /**
   * The job with its libvirt facts. libvirt knows whether a copy or active commit pivoted (its
   * `completed` is a pivot, `canceled` is not), so `pivoted` is filled from it when QEMU's view
   * alone cannot tell (the verb came from another client, e.g. virsh).
   */
  decorate(job: JobState, domainUuid: string): JobState {
    const libvirt: LibvirtJobInfo = { domainUuid };
    const parsed = parseLibvirtJobId(job.id);
    if (parsed) libvirt.disk = parsed.disk;
    const verdict = this.verdictOf(job.vm, job);
    if (verdict !== undefined) libvirt.verdict = verdict;
    const decorated: JobState = { ...job, libvirt };
    const pivots = this.verdicts.get(job.vm)?.get(`${job.id}#${job.incarnation}`)?.pivots === true;
    if (decorated.pivoted === undefined && pivots && job.outcome === 'completed' && (verdict === 'completed' || verdict === 'canceled')) {
      decorated.pivoted = verdict === 'completed';
    }
    return decorated;
  }
}
