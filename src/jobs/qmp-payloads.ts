/**
 * The QMP payloads the job engine reads, checked at the edge: job events and the rows of
 * `query-block-jobs` / `query-jobs`, turned into small typed records with the job id under one name
 * (`device` in BLOCK_JOB_*, `id` in JOB_STATUS_CHANGE and BLOCK_JOB_PENDING; reference §6.6).
 * A malformed payload throws a QmpProtocolError naming the field and the value received.
 */
import { QmpProtocolError, withoutStack } from '../errors.js';
import type { QmpEvent } from '../qmp/types.js';
import { QEMU_JOB_STATUSES, type QemuJobStatus } from './qemu-rules.js';


export type IoStatus = 'ok' | 'failed' | 'nospace';

/** Offset/len as QEMU reports them (bytes). */
export interface ProgressSample {
  current: number;
  total: number;
}

export type JobEvent =
  | { name: 'JOB_STATUS_CHANGE'; id: string; status: QemuJobStatus }
  | { name: 'BLOCK_JOB_READY'; id: string; type: string; progress: ProgressSample; speed: number }
  | { name: 'BLOCK_JOB_COMPLETED'; id: string; type: string; progress: ProgressSample; speed: number; error?: string }
  | { name: 'BLOCK_JOB_CANCELLED'; id: string; type: string; progress: ProgressSample; speed: number }
  | { name: 'BLOCK_JOB_ERROR'; id: string; operation: 'read' | 'write'; action: 'ignore' | 'report' | 'stop' }
  | { name: 'BLOCK_JOB_PENDING'; id: string; type: string };

export const JOB_EVENT_NAMES: ReadonlySet<string> = new Set([
  'JOB_STATUS_CHANGE', 'BLOCK_JOB_READY', 'BLOCK_JOB_COMPLETED', 'BLOCK_JOB_CANCELLED', 'BLOCK_JOB_ERROR', 'BLOCK_JOB_PENDING',
]);

/**
 * One job as a poll saw it: a `query-block-jobs` row merged with the `query-jobs` row of the same id.
 * Optional fields are absent when this QEMU does not report them.
 */
export interface JobRow {
  id: string;
  type: string;
  progress: ProgressSample;
  /** 2.12+. */
  status?: QemuJobStatus;
  /** 2.2+ (query-block-jobs only). */
  ready?: boolean;
  paused?: boolean;
  busy?: boolean;
  ioStatus?: IoStatus;
  speed?: number;
  /** Present iff the job failed or was cancelled ("Operation canceled"). */
  error?: string;
  autoFinalize?: boolean;
  autoDismiss?: boolean;
}

/** Reads typed fields out of one QMP object, with errors that name the payload, field and value. */
class FieldReader {
  constructor(
    private readonly what: string,
    private readonly data: Record<string, unknown>,
  ) {}

  private fail(field: string, expected: string): never {
    const value = this.data[field];
    throw withoutStack(
      () => new QmpProtocolError(`${this.what}: ${field} must be ${expected}, got ${value === undefined ? 'nothing' : JSON.stringify(value)}`, JSON.stringify(this.data)),
    );
  }

  string(field: string): string {
    const value = this.data[field];
    return typeof value === 'string' && value.length > 0 ? value : this.fail(field, 'a non-empty string');
  }

  optionalString(field: string): string | undefined {
    return this.data[field] === undefined ? undefined : this.string(field);
  }

  /** A non-negative integer (QEMU int64 byte counts; exact in a number up to 2^53). */
  count(field: string): number {
    const value = this.data[field];
    return Number.isSafeInteger(value) && (value as number) >= 0 ? (value as number) : this.fail(field, 'a non-negative integer');
  }

  optionalCount(field: string): number | undefined {
    return this.data[field] === undefined ? undefined : this.count(field);
  }

  optionalBoolean(field: string): boolean | undefined {
    const value = this.data[field];
    if (value === undefined) return undefined;
    return typeof value === 'boolean' ? value : this.fail(field, 'a boolean');
  }

  oneOf<T extends string>(field: string, allowed: readonly T[]): T {
    const value = this.data[field];
    return allowed.includes(value as T) ? (value as T) : this.fail(field, `one of ${allowed.join('|')}`);
  }

  optionalOneOf<T extends string>(field: string, allowed: readonly T[]): T | undefined {
    return this.data[field] === undefined ? undefined : this.oneOf(field, allowed);
  }
}

function asObject(what: string, value: unknown): Record<string, unknown> {
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) return value as Record<string, unknown>;
  throw withoutStack(() => new QmpProtocolError(`${what}: expected a JSON object, got ${JSON.stringify(value)}`, JSON.stringify(value)));
}

const IO_STATUSES: readonly IoStatus[] = ['ok', 'failed', 'nospace'];

/** Parses a job event; undefined for events the engine does not follow. */
export function parseJobEvent(event: Pick<QmpEvent, 'event' | 'data'>): JobEvent | undefined {
  if (!JOB_EVENT_NAMES.has(event.event)) return undefined;
  const read = new FieldReader(event.event, asObject(event.event, event.data ?? {}));
  const progress = (): ProgressSample => ({ current: read.count('offset'), total: read.count('len') });
  switch (event.event) {
    case 'JOB_STATUS_CHANGE':
      return { name: 'JOB_STATUS_CHANGE', id: read.string('id'), status: read.oneOf('status', QEMU_JOB_STATUSES) };
    case 'BLOCK_JOB_PENDING':
      return { name: 'BLOCK_JOB_PENDING', id: read.string('id'), type: read.string('type') };
    case 'BLOCK_JOB_ERROR':
      return {
        name: 'BLOCK_JOB_ERROR',
        id: read.string('device'),
        operation: read.oneOf('operation', ['read', 'write'] as const),
        action: read.oneOf('action', ['ignore', 'report', 'stop'] as const),
      };
    case 'BLOCK_JOB_COMPLETED': {
      const error = read.optionalString('error');
      const base = { name: 'BLOCK_JOB_COMPLETED', id: read.string('device'), type: read.string('type'), progress: progress(), speed: read.count('speed') } as const;
      return error === undefined ? base : { ...base, error };
    }
    default:
      return {
        name: event.event as 'BLOCK_JOB_READY' | 'BLOCK_JOB_CANCELLED',
        id: read.string('device'),
        type: read.string('type'),
        progress: progress(),
        speed: read.count('speed'),
      };
  }
}

/** Parses a `query-block-jobs` reply. */
export function parseBlockJobRows(reply: unknown): JobRow[] {
  if (!Array.isArray(reply)) throw new QmpProtocolError(`query-block-jobs: expected an array, got ${JSON.stringify(reply)}`);
  return reply.map((item, index) => {
    const read = new FieldReader(`query-block-jobs[${index}]`, asObject(`query-block-jobs[${index}]`, item));
    return withoutUndefined({
      id: read.string('device'),
      type: read.string('type'),
      progress: { current: read.count('offset'), total: read.count('len') },
      status: read.optionalOneOf('status', QEMU_JOB_STATUSES),
      ready: read.optionalBoolean('ready'),
      paused: read.optionalBoolean('paused'),
      busy: read.optionalBoolean('busy'),
      ioStatus: read.optionalOneOf('io-status', IO_STATUSES),
      speed: read.optionalCount('speed'),
      error: read.optionalString('error'),
      autoFinalize: read.optionalBoolean('auto-finalize'),
      autoDismiss: read.optionalBoolean('auto-dismiss'),
    });
  });
}

/** Parses a `query-jobs` reply (3.0+). */
export function parseJobRows(reply: unknown): JobRow[] {
  if (!Array.isArray(reply)) throw new QmpProtocolError(`query-jobs: expected an array, got ${JSON.stringify(reply)}`);
  return reply.map((item, index) => {
    const read = new FieldReader(`query-jobs[${index}]`, asObject(`query-jobs[${index}]`, item));
    return withoutUndefined({
      id: read.string('id'),
      type: read.string('type'),
      status: read.oneOf('status', QEMU_JOB_STATUSES),
      progress: { current: read.count('current-progress'), total: read.count('total-progress') },
      error: read.optionalString('error'),
    });
  });
}

/**
 * Merges both queries by id. query-block-jobs wins for the fields both report: its row is one
 * consistent snapshot of status, ready, paused and progress (two queries may disagree, §2.2);
 * query-jobs adds the jobs that are not block jobs and the `error` text.
 */
export function mergeJobRows(blockRows: readonly JobRow[], jobRows: readonly JobRow[]): JobRow[] {
  const merged = new Map<string, JobRow>();
  for (const row of jobRows) merged.set(row.id, row);
  for (const row of blockRows) {
    const other = merged.get(row.id);
    merged.set(row.id, other ? { ...other, ...row, error: row.error ?? other.error } : row);
  }
  return [...merged.values()].map(withoutUndefined);
}

function withoutUndefined<T extends object>(value: T): T {
  for (const key of Object.keys(value) as (keyof T)[]) if (value[key] === undefined) delete value[key];
  return value;
}
