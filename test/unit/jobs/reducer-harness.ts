/**
 * Drives reduceJob over a script of inputs for one VM and records the changes as compact labels:
 * `state`, then `+` ready / `?` readiness unknown, `/reason` while paused, `=outcome` once ended,
 * and `~hold` when the change may be held back. Example: `standby+/error`, `concluded=completed`.
 */
import { capabilitiesFromVersion } from '../../../src/jobs/capabilities.js';
import { reduceJob, type EngineInput, type JobChange, type JobRecord } from '../../../src/jobs/normalize.js';
import type { JobEvent, JobRow } from '../../../src/jobs/qmp-payloads.js';
import type { QemuJobStatus } from '../../../src/jobs/qemu-rules.js';
import type { JobState, MonitorCapabilities, TransitionKey } from '../../../src/jobs/types.js';

export const QEMU_7_2 = capabilitiesFromVersion({ major: 7, minor: 2, micro: 22 });
export const QEMU_5_2 = capabilitiesFromVersion({ major: 5, minor: 2, micro: 0 });
export const QEMU_2_12 = capabilitiesFromVersion({ major: 2, minor: 12, micro: 0 });
export const QEMU_2_5 = capabilitiesFromVersion({ major: 2, minor: 5, micro: 0 });
export const QEMU_1_7 = capabilitiesFromVersion({ major: 1, minor: 7, micro: 0 });

export function label(key: TransitionKey, hold?: string): string {
  const ready = key.ready === true ? '+' : key.ready === null ? '?' : '';
  const reason = key.pauseReason ? `/${key.pauseReason}` : '';
  const outcome = key.outcome ? `=${key.outcome}` : '';
  return `${key.state}${ready}${reason}${outcome}${hold ? `~${hold}` : ''}`;
}

type Script = (stamp: { seq: number; at: number; session: number }) => EngineInput;

const event = (e: JobEvent): Script => (stamp) => ({ kind: 'event', event: e, ...stamp });
const progress = (offset: number, len: number) => ({ current: offset, total: len });

export const jsc = (id: string, status: QemuJobStatus): Script => event({ name: 'JOB_STATUS_CHANGE', id, status });
export const readyEvent = (id: string, offset = 100, len = 100, type = 'mirror'): Script =>
  event({ name: 'BLOCK_JOB_READY', id, type, progress: progress(offset, len), speed: 0 });
export const completedEvent = (id: string, opts: { error?: string; offset?: number; len?: number; type?: string } = {}): Script =>
  event({
    name: 'BLOCK_JOB_COMPLETED', id, type: opts.type ?? 'mirror', progress: progress(opts.offset ?? 100, opts.len ?? 100), speed: 0,
    ...(opts.error !== undefined ? { error: opts.error } : {}),
  });
export const cancelledEvent = (id: string, offset = 50, len = 100): Script =>
  event({ name: 'BLOCK_JOB_CANCELLED', id, type: 'mirror', progress: progress(offset, len), speed: 0 });
export const errorEvent = (id: string, action: 'ignore' | 'report' | 'stop', operation: 'read' | 'write' = 'write'): Script =>
  event({ name: 'BLOCK_JOB_ERROR', id, operation, action });
export const pendingEvent = (id: string): Script => event({ name: 'BLOCK_JOB_PENDING', id, type: 'mirror' });

export const row = (id: string, fields: Partial<JobRow> = {}, opts: { reconcile?: boolean; seq?: number } = {}): Script => (stamp) => ({
  kind: 'poll',
  row: { id, type: 'mirror', progress: progress(0, 100), ...fields },
  reconcile: opts.reconcile ?? false,
  ...stamp,
  ...(opts.seq !== undefined ? { seq: opts.seq } : {}),
});
export const vanished = (id: string, opts: { reconcile?: boolean; seq?: number } = {}): Script => (stamp) => ({
  kind: 'vanished', id, reconcile: opts.reconcile ?? false, ...stamp, ...(opts.seq !== undefined ? { seq: opts.seq } : {}),
});
export const monitorDown: Script = ({ at }) => ({ kind: 'monitor-down', at });
/** Starts a new session: later inputs carry the next session number. */
export const NEW_SESSION = 'new-session' as const;

/** Folds scripts for one monitor; `changes` collects labels, `last` the last change. */
export class Fold {
  readonly records = new Map<string, JobRecord>();
  readonly changes: string[] = [];
  readonly all: JobChange[] = [];
  seq = 0;
  session = 1;
  constructor(readonly caps: MonitorCapabilities, readonly vm = 'vm1') {}

  feed(...scripts: (Script | typeof NEW_SESSION)[]): this {
    for (const script of scripts) {
      if (script === NEW_SESSION) {
        this.session += 1;
        continue;
      }
      this.seq += 1;
      const input = script({ seq: this.seq, at: 1_000_000 + this.seq * 100, session: this.session });
      const id = 'id' in input ? input.id : input.kind === 'poll' ? input.row.id : input.kind === 'event' ? input.event.id : undefined;
      const ids = id !== undefined ? [id] : [...this.records.keys()];
      for (const key of ids) {
        const result = reduceJob(this.records.get(key), input, { vm: this.vm, caps: this.caps, previousIncarnation: 0 });
        if (result.record) this.records.set(key, result.record);
        if (result.change) {
          this.all.push(result.change);
          this.changes.push(label(result.change.to, result.change.hold));
        }
      }
    }
    return this;
  }

  /** Verbs need the job id: route them explicitly. */
  note(id: string, v: Extract<EngineInput, { kind: 'verb' }>['verb']): this {
    const result = reduceJob(this.records.get(id), { kind: 'verb', verb: v, at: 0 }, { vm: this.vm, caps: this.caps, previousIncarnation: 0 });
    if (result.record) this.records.set(id, result.record);
    return this;
  }

  job(id: string): JobState {
    const record = this.records.get(id);
    if (!record) throw new Error(`no record for ${id}`);
    return record.job;
  }
}
