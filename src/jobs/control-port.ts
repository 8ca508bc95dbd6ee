/**
 * The control port: how job control acts on a job, separate from the read-only JobSource. Each kind
 * of source implements it for its backend (QMP: qmp-control.ts; libvirt and a fleet edge their own),
 * and combineSources() routes it by VM. Job control (src/gateway/control) keeps authorization,
 * idempotency, waiting for ready and the answers; the port owns everything backend-specific: which
 * command a verb becomes, whether it could be written now, telling the engine before writing, and
 * what the backend's reply means. Nothing here hands out a raw monitor or connection.
 *
 *   controller:  mayTouch -> check (wait / refuse) -> execute -> Verdict -> result
 */
import type { CommandAction, JobState } from '../generated/schema-types.js';
import type { JobSource } from './types.js';

/** A verb as the protocol names it. */
export type ControlAction = CommandAction;

export interface ControlArgs {
  /** cancel: abort even after ready (a soft cancel finishes a ready mirror without pivot). */
  force?: boolean;
  /** set-speed: bytes/s, 0 = unlimited. */
  speed?: number;
}

export interface ExecuteOptions {
  /** How long to wait for the backend's reply (the command's remaining budget, capped). */
  timeoutMs: number;
}

/**
 * Whether a verb could be written right now, and if not, why (each maps to one answer code):
 * - `not-supported`: never, for this job on this backend: the backend lacks the verb, or the job is
 *   owned by another manager (e.g. libvirt's own jobs seen on a direct monitor) and only observed.
 * - `disconnected`: not now: the backend is down, or up but the job's state is not current (stale,
 *   not yet reconciled). It may become possible without the job changing.
 * - `not-allowed`: not in the job's current state (QEMU's verb table and version rules, qemu-rules.ts).
 */
export type SendCheck =
  | { ok: true }
  | { ok: false; reason: 'not-supported' | 'disconnected' | 'not-allowed'; why: string };

/** The backend's own refusal, verbatim: QMP's error class and desc, or a libvirt error's name and message. */
export interface BackendRefusal {
  class: string;
  desc: string;
}

/** What a backend command was (or would have been) on the wire, for the log. */
export interface WireCommand {
  command: string;
  arguments: Record<string, unknown>;
}

/** What became of one verb. */
export type Verdict = (
  | { kind: 'accepted' }
  /**
   * The backend answered with a refusal. `transient`: it refused for a passing state (QEMU < 6.0's
   * "cannot accept command verb 'complete'" in standby): the job may accept it again soon.
   */
  | { kind: 'refused'; refusal: BackendRefusal; transient: boolean }
  /** Never written: the backend is down, closed, or the VM is not this port's. */
  | { kind: 'not-sent'; why: string }
  /** Never written: the backend has too many commands in flight (a bound, not a queue). */
  | { kind: 'busy'; why: string }
  /** Written, but no reply (timeout, connection lost): the backend may or may not have run it. */
  | { kind: 'outcome-unknown'; why: string }
) & { wire?: WireCommand };

export interface ControlPort {
  /** Whether the gateway may act on this job at all (`not-supported` for a job it must only observe). */
  mayTouch(vm: string, job: JobState): SendCheck;
  /**
   * Whether `action` could be written for the job right now (mayTouch included). For complete: ok
   * only once the job is truly ready (never offset == len), per the backend's version rules.
   */
  check(vm: string, job: JobState, action: ControlAction, args: ControlArgs): SendCheck;
  /**
   * Writes the verb: tells the job engine first (so it knows pivots and user pauses before the
   * backend's events say so), then sends the backend's command. Never rejects for a backend failure:
   * the verdict says what happened.
   */
  execute(vm: string, job: JobState, action: ControlAction, args: ControlArgs, options: ExecuteOptions): Promise<Verdict>;
}

/** A source with its control port: what a gateway serves (see combineSources). */
export interface SourcePorts {
  source: JobSource;
  control: ControlPort;
}
