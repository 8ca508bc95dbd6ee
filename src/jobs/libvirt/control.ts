/**
 * The control port of VMs followed through libvirt: verbs go to libvirt's block job API, never as
 * QMP (libvirt owns the domain's monitor and its jobs):
 *
 *   complete  = block job abort with the PIVOT flag (copy, active commit), only once the engine's
 *               QEMU-truth says ready: libvirt's own info shows cur = end - 1 ("99 %") and QEMU
 *               offset == len with ready false before that, so neither is consulted
 *   cancel    = block job abort (on a ready copy libvirt finishes it without a pivot: QEMU reports
 *               completed, libvirt canceled; a force-cancel after ready does not exist in libvirt)
 *   set-speed = block job set speed
 *   pause, resume, finalize, dismiss: libvirt has no such block job API (it finalizes and
 *               dismisses its jobs itself), so they are refused as not supported.
 */
import {
  LibvirtClosedError,
  LibvirtConnectError,
  LibvirtOutcomeUnknownError,
  LibvirtRemoteError,
  LibvirtTimeoutError,
  LibvirtTooManyPendingError,
  StateError,
} from '../../errors.js';
import type { ControlAction, ControlArgs, ControlPort, ExecuteOptions, SendCheck, Verdict, WireCommand } from '../control-port.js';
import { effectiveForce, engineVerbOf, isStandbyCompleteRefusal, mayWriteVerb } from '../qemu-rules.js';
import type { JobState, JobVerb } from '../types.js';
import { parseLibvirtJobId } from '../../libvirt/job-ids.js';
import type { LibvirtSource } from './source.js';

const UNSUPPORTED: Partial<Record<ControlAction, string>> = {
  pause: 'libvirt has no API to pause a block job',
  resume: 'libvirt has no API to resume a block job',
  finalize: 'libvirt finalizes its block jobs itself (auto-finalize)',
  dismiss: 'libvirt dismisses its block jobs itself, right after they conclude',
};

export class LibvirtControl implements ControlPort {
  constructor(private readonly source: LibvirtSource) {}

  mayTouch(vm: string, job: JobState): SendCheck {
    if (this.source.target(vm) === undefined) return { ok: false, reason: 'not-supported', why: `VM '${vm}' is not a libvirt domain followed here` };
    if (parseLibvirtJobId(job.id) === undefined) {
      return { ok: false, reason: 'not-supported', why: `job '${job.id}' is not one of libvirt's block jobs, so libvirt cannot control it (only copy-, commit-, pull- and backup- jobs)` };
    }
    return { ok: true };
  }

  check(vm: string, job: JobState, action: ControlAction, args: ControlArgs): SendCheck {
    const touch = this.mayTouch(vm, job);
    if (!touch.ok) return touch;
    const unsupported = UNSUPPORTED[action];
    if (unsupported !== undefined) return { ok: false, reason: 'not-supported', why: `${unsupported}; '${action}' is not supported for libvirt jobs` };
    const target = this.source.target(vm);
    const capabilities = target?.engine.capabilities();
    if (!target?.connected || job.stale || capabilities === undefined) {
      return { ok: false, reason: 'disconnected', why: `libvirt's view of domain '${vm}' is not current (domain stopped, libvirtd unreachable, or not yet reconciled)` };
    }
    if (action === 'cancel' && args.force === true && !effectiveForce(job, false)) {
      return { ok: false, reason: 'not-supported', why: `job '${job.id}' is ${job.state}: libvirt's abort finishes a ready job without a pivot and has no force-cancel` };
    }
    const verdict = mayWriteVerb(action, job, capabilities, args.force ?? false);
    return verdict.allowed ? { ok: true } : { ok: false, reason: 'not-allowed', why: verdict.reason };
  }

  async execute(vm: string, job: JobState, action: ControlAction, args: ControlArgs, options: ExecuteOptions): Promise<Verdict> {
    const target = this.source.target(vm);
    const parsed = parseLibvirtJobId(job.id);
    if (!target || !parsed) return { kind: 'not-sent', why: `VM '${vm}' has no libvirt job '${job.id}'` };
    const conn = this.source.connection;
    const call = { timeoutMs: options.timeoutMs };
    const verb: JobVerb = engineVerbOf(action, job, args.force ?? false);
    let wire: WireCommand;
    let send: () => Promise<void>;
    switch (action) {
      case 'complete':
        wire = { command: 'virDomainBlockJobAbort', arguments: { domain: vm, disk: parsed.disk, flags: ['PIVOT'] } };
        send = () => conn.blockJobAbort(target.domain, parsed.disk, { pivot: true }, call);
        break;
      case 'cancel':
        wire = { command: 'virDomainBlockJobAbort', arguments: { domain: vm, disk: parsed.disk, flags: [] } };
        send = () => conn.blockJobAbort(target.domain, parsed.disk, {}, call);
        break;
      case 'set-speed':
        wire = { command: 'virDomainBlockJobSetSpeed', arguments: { domain: vm, disk: parsed.disk, bandwidth: args.speed ?? 0 } };
        send = () => conn.blockJobSetSpeed(target.domain, parsed.disk, args.speed ?? 0, call);
        break;
      default:
        return { kind: 'not-sent', why: `'${action}' is not supported for libvirt jobs` };
    }
    // Before the call: the engine must know a pivot is coming before QEMU's events say so.
    target.engine.noteVerb(job.id, verb);
    try {
      await send();
      return { kind: 'accepted', wire };
    } catch (error) {
      return { ...classify(error), wire };
    }
  }
}

function classify(error: unknown): Verdict {
  if (error instanceof LibvirtRemoteError) {
    const desc = error.remoteMessage ?? error.message;
    return { kind: 'refused', refusal: { class: error.virCodeName ?? `virError ${error.virCode}`, desc }, transient: isStandbyCompleteRefusal(desc) };
  }
  if (error instanceof LibvirtOutcomeUnknownError) return { kind: 'outcome-unknown', why: 'the libvirtd connection dropped before libvirt answered' };
  if (error instanceof LibvirtTimeoutError) return { kind: 'outcome-unknown', why: `libvirt did not answer within ${error.timeoutMs} ms` };
  if (error instanceof LibvirtTooManyPendingError) return { kind: 'busy', why: error.message };
  if (error instanceof StateError || error instanceof LibvirtClosedError || error instanceof LibvirtConnectError) return { kind: 'not-sent', why: error.message };
  throw error;
}
