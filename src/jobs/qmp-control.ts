/**
 * The control port of VMs followed over their own QMP monitor: a verb becomes one QMP command
 * (`job-*` where the monitor has them, `block-job-*` otherwise), written only while the monitor is
 * negotiated and the job's state current, after the engine has been told (noteVerb). QEMU's reply
 * becomes a Verdict; the standby refusal of QEMU < 6.0 is recognised here as transient.
 */
import { QmpClosedError, QmpCommandError, QmpOutcomeUnknownError, QmpTimeoutError, QmpTooManyPendingError, StateError } from '../errors.js';
import type { QmpMonitor } from '../qmp/types.js';
import type { ControlAction, ControlArgs, ControlPort, ExecuteOptions, SendCheck, Verdict, WireCommand } from './control-port.js';
import type { MonitorJobs } from './monitor-jobs.js';
import { engineVerbOf, isStandbyCompleteRefusal, mayWriteVerb } from './qemu-rules.js';
import type { JobState, JobVerb, MonitorCapabilities } from './types.js';

/** One VM as the port sees it: its engine (what it knows, and told of each verb), and the monitor verbs go to (none: not a QMP VM). */
export interface QmpControlTarget {
  engine: Pick<MonitorJobs, 'capabilities' | 'noteVerb'>;
  monitor?: QmpMonitor;
}

export interface QmpControlOptions {
  /**
   * Jobs this gateway must only observe, never act on: returns why (for the answer), or undefined.
   * @default libvirtOwnedJob: libvirt's own jobs, seen on a direct monitor of a libvirt domain
   */
  observeOnly?: (vm: string, id: string) => string | undefined;
}

/**
 * libvirt names its jobs `copy-`, `commit-`, `pull-`, `backup-` + disk + its node (`libvirt-N-format`
 * or `-storage`) and `create-` + node, and dismisses them itself: a verb written to one behind
 * libvirt's back breaks its bookkeeping (reference libvirt.md §4). The node suffix keeps the rule off
 * ordinary ids such as `commit-5`.
 */
const LIBVIRT_JOB_ID = /^(?:(?:copy|commit|pull|backup)-.+|create)-libvirt-\d+-(?:format|storage)$/;

export function libvirtOwnedJob(_vm: string, id: string): string | undefined {
  if (!LIBVIRT_JOB_ID.test(id)) return undefined;
  return `job '${id}' belongs to libvirt and is only observed here; control it through libvirt (virsh blockjob)`;
}

/** One QMP command for one verb, and what the engine is told before it is written. */
export interface QmpPlan extends WireCommand {
  verb: JobVerb;
}

/**
 * The QMP command for an action: `job-*` where the monitor has them (QEMU >= 3.0), `block-job-*`
 * otherwise. `job-cancel` is always force, so a soft cancel needs `block-job-cancel` force=false on any
 * version; set-speed exists only as `block-job-set-speed`.
 */
export function planQmpCommand(action: ControlAction, job: JobState, capabilities: MonitorCapabilities, args: ControlArgs): QmpPlan {
  const id = job.id;
  const verb = engineVerbOf(action, job, args.force ?? false);
  const jobOrBlockJob = (name: string, blockJobArguments: Record<string, unknown>): QmpPlan =>
    capabilities.jobVerbs
      ? { command: `job-${name}`, arguments: { id }, verb }
      : { command: `block-job-${name}`, arguments: blockJobArguments, verb };
  switch (action) {
    case 'complete':
      return jobOrBlockJob('complete', { device: id });
    case 'cancel':
      return verb === 'force-cancel'
        ? jobOrBlockJob('cancel', { device: id, force: true })
        : { command: 'block-job-cancel', arguments: { device: id, force: false }, verb };
    case 'pause':
      return jobOrBlockJob('pause', { device: id });
    case 'resume':
      return jobOrBlockJob('resume', { device: id });
    case 'set-speed':
      return { command: 'block-job-set-speed', arguments: { device: id, speed: args.speed ?? 0 }, verb };
    case 'finalize':
      // block-job-finalize / block-job-dismiss (2.12) already take `id`, not `device`.
      return jobOrBlockJob('finalize', { id });
    case 'dismiss':
      return jobOrBlockJob('dismiss', { id });
  }
}

export class QmpControl implements ControlPort {
  private readonly observeOnly: (vm: string, id: string) => string | undefined;

  constructor(
    private readonly lookup: (vm: string) => QmpControlTarget | undefined,
    options: QmpControlOptions = {},
  ) {
    this.observeOnly = options.observeOnly ?? libvirtOwnedJob;
  }

  mayTouch(vm: string, job: JobState): SendCheck {
    const target = this.lookup(vm);
    if (target === undefined) return { ok: false, reason: 'not-supported', why: `VM '${vm}' is not followed over QMP here` };
    if (target.monitor === undefined) return { ok: false, reason: 'not-supported', why: `VM '${vm}' has no QMP monitor this gateway may write to` };
    const observed = this.observeOnly(vm, job.id);
    return observed === undefined ? { ok: true } : { ok: false, reason: 'not-supported', why: observed };
  }

  check(vm: string, job: JobState, action: ControlAction, args: ControlArgs): SendCheck {
    const touch = this.mayTouch(vm, job);
    if (!touch.ok) return touch;
    const capabilities = this.sendable(vm, job);
    if (capabilities === undefined) return { ok: false, reason: 'disconnected', why: this.disconnectedWhy(vm) };
    const verdict = mayWriteVerb(action, job, capabilities, args.force ?? false);
    return verdict.allowed ? { ok: true } : { ok: false, reason: 'not-allowed', why: verdict.reason };
  }

  async execute(vm: string, job: JobState, action: ControlAction, args: ControlArgs, options: ExecuteOptions): Promise<Verdict> {
    const target = this.lookup(vm);
    const monitor = target?.monitor;
    if (target === undefined || monitor === undefined) return { kind: 'not-sent', why: `VM '${vm}' has no QMP monitor` };
    const capabilities = target.engine.capabilities();
    if (capabilities === undefined) return { kind: 'not-sent', why: `the monitor of VM '${vm}' has not been negotiated` };
    const plan = planQmpCommand(action, job, capabilities, args);
    const wire: WireCommand = { command: plan.command, arguments: plan.arguments };
    // Before the write: the engine must know a pivot or a user pause is coming before QEMU's events say so.
    target.engine.noteVerb(job.id, plan.verb);
    try {
      await monitor.execute(plan.command, plan.arguments, { timeoutMs: options.timeoutMs });
      return { kind: 'accepted', wire };
    } catch (error) {
      return { ...classifySendError(error), wire };
    }
  }

  /** Capabilities when a verb could be written right now: monitor negotiated and the job's state current. */
  private sendable(vm: string, job: JobState): MonitorCapabilities | undefined {
    const target = this.lookup(vm);
    if (job.stale || target?.monitor?.state !== 'ready') return undefined;
    return target.engine.capabilities();
  }

  private disconnectedWhy(vm: string): string {
    // The socket can be up while QEMU does not answer (hung) or before the reconcile: neither is a state to act on.
    const why = this.lookup(vm)?.monitor?.state === 'ready' ? 'is connected but not answering or not yet reconciled' : 'is not connected';
    return `the monitor of VM '${vm}' ${why}`;
  }
}

function classifySendError(error: unknown): Verdict {
  if (error instanceof QmpCommandError) {
    const transient = error.qmpClass === 'GenericError' && isStandbyCompleteRefusal(error.desc);
    return { kind: 'refused', refusal: { class: error.qmpClass, desc: error.desc }, transient };
  }
  if (error instanceof QmpOutcomeUnknownError) return { kind: 'outcome-unknown', why: 'the monitor connection dropped before QEMU answered' };
  if (error instanceof QmpTimeoutError) return { kind: 'outcome-unknown', why: `QEMU did not answer within ${error.timeoutMs} ms` };
  if (error instanceof QmpTooManyPendingError) return { kind: 'busy', why: error.message };
  if (error instanceof StateError || error instanceof QmpClosedError) return { kind: 'not-sent', why: error.message };
  throw error;
}
