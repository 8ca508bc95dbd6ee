/**
 * Serializing stream inputs once, for every subscriber: a subscriber's message is
 * `prefix + JSON(sub) + ',"prev":' + prev + body`, so fan-out costs two string concatenations.
 * Pure, so a feed that receives events numbered elsewhere (a fleet edge) produces the same bytes.
 */
import type { JobTransition, ProgressUpdate, StreamInput, VmStatusChange } from '../../jobs/types.js';
import type { ProgressEvent, StreamEvent } from './feed.js';

export const EVENT_PREFIX = '{"type":"event","sub":';
export const VM_PREFIX = '{"type":"vm","sub":';
const PROGRESS_PREFIX = '{"type":"progress","sub":';

/** The stream event for `input` at `epoch`/`offset`. */
export function streamEvent(input: StreamInput, epoch: string, offset: number): StreamEvent {
  return input.kind === 'transition' ? transitionEvent(input, epoch, offset) : vmEvent(input, epoch, offset);
}

export function progressEvent(p: ProgressUpdate): ProgressEvent {
  const body = `,"vm":${JSON.stringify(p.vm)},"job":${JSON.stringify(p.job)},"incarnation":${p.incarnation},"progress":${JSON.stringify(p.progress)}}`;
  // The job's type and published state travel with the update: no lookup per message.
  return { vm: p.vm, job: p.job, at: p.at, keys: { id: p.job, type: p.type, state: p.state }, prefix: PROGRESS_PREFIX, body };
}

function transitionEvent(t: JobTransition, epoch: string, offset: number): StreamEvent {
  const job = t.job;
  const body =
    `,"vm":${JSON.stringify(t.vm)},"epoch":${JSON.stringify(epoch)},"offset":${offset}` +
    `,"ts":"${new Date(t.at).toISOString()}","job":${JSON.stringify(job)}` +
    `,"transition":${JSON.stringify({ from: t.from?.state ?? null, to: t.to.state })},"source":${JSON.stringify(t.source)}}`;
  return {
    kind: 'event',
    vm: t.vm,
    offset,
    at: t.at,
    job: { id: job.id, type: job.type, state: job.state, from: t.from?.state ?? null },
    ...(t.qmpReceivedMono !== undefined ? { qmpReceivedMono: t.qmpReceivedMono } : {}),
    prefix: EVENT_PREFIX,
    body,
  };
}

function vmEvent(v: VmStatusChange, epoch: string, offset: number): StreamEvent {
  const body =
    `,"vm":${JSON.stringify(v.vm)},"epoch":${JSON.stringify(epoch)},"offset":${offset}` +
    `,"ts":"${new Date(v.at).toISOString()}","status":${JSON.stringify(v.status)}${v.reason !== undefined ? `,"reason":${JSON.stringify(v.reason)}` : ''}}`;
  return { kind: 'vm', vm: v.vm, offset, at: v.at, prefix: VM_PREFIX, body };
}
