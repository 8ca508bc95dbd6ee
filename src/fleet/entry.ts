/**
 * One stream event on the wire between gateways. The host stores the very `body` its own
 * subscribers get (the per-subscriber fields are spliced in front of it), so an edge serves
 * byte-identical events; the job state and the VM status are pulled out of it for the snapshot hash.
 */
import { performance } from 'node:perf_hooks';
import type { JobState, JobStatusName, VmStatus } from '../jobs/types.js';
import { EVENT_PREFIX, VM_PREFIX } from '../gateway/stream/events.js';
import type { StreamEvent } from '../gateway/stream/feed.js';

export type WireKind = 't' | 'v';

/** What APPEND stores per event (see scripts.ts). */
export interface WireEvent {
  offset: number;
  kind: WireKind;
  body: string;
  /** Wall-clock ms (fractional) when the QMP message behind it arrived, or '' when unknown. */
  q: string;
  /** Job id, or the VM status. */
  a: string;
  /** Job state JSON, or the status reason. */
  b: string;
}

export interface TransitionBody {
  ts: string;
  job: JobState;
  transition: { from: JobStatusName | null; to: JobStatusName };
  source: JobState['source'];
}

export interface VmBody {
  ts: string;
  status: VmStatus;
  reason?: string;
}

export function parseBody<T>(body: string): T {
  return JSON.parse(`{${body.slice(1)}`) as T;
}

/**
 * The job's JSON inside a transition's body (`…,"job":<JSON>,"transition":…`, see events.ts), sliced
 * rather than parsed and serialized again: a host does this for every event. Inside the JSON every
 * quote of a string is escaped, so the two markers can only be the body's own fields.
 */
function jobJsonOf(body: string): string | undefined {
  const from = body.indexOf(',"job":{');
  const to = body.lastIndexOf('},"transition":{');
  return from === -1 || to < from ? undefined : body.slice(from + 7, to + 1);
}

export function toWire(event: StreamEvent): WireEvent {
  const q = event.qmpReceivedMono !== undefined ? String(performance.timeOrigin + event.qmpReceivedMono) : '';
  if (event.kind === 'event') {
    const sliced = event.job ? jobJsonOf(event.body) : undefined;
    if (sliced !== undefined) return { offset: event.offset, kind: 't', body: event.body, q, a: event.job!.id, b: sliced };
    const { job } = parseBody<TransitionBody>(event.body);
    return { offset: event.offset, kind: 't', body: event.body, q, a: job.id, b: JSON.stringify(job) };
  }
  const { status, reason } = parseBody<VmBody>(event.body);
  return { offset: event.offset, kind: 'v', body: event.body, q, a: status, b: reason ?? '' };
}

function monoOf(q: string): number | undefined {
  return q === '' ? undefined : Number(q) - performance.timeOrigin;
}

/** A stored or notified event as the gateway core serves it. */
export function fromWire(vm: string, offset: number, kind: WireKind, body: string, q: string): StreamEvent {
  return decodeWire(vm, offset, kind, body, q).event;
}

/** The event and its parsed body (an edge keeps the job or VM status from it): the body is parsed once. */
export function decodeWire(
  vm: string,
  offset: number,
  kind: WireKind,
  body: string,
  q: string,
): { event: StreamEvent; transition: TransitionBody; vm?: undefined } | { event: StreamEvent; vm: VmBody; transition?: undefined } {
  const mono = monoOf(q);
  if (kind === 't') {
    const parsed = parseBody<TransitionBody>(body);
    const event: StreamEvent = {
      kind: 'event',
      vm,
      offset,
      at: Date.parse(parsed.ts),
      job: { id: parsed.job.id, type: parsed.job.type, state: parsed.job.state, from: parsed.transition.from },
      ...(mono !== undefined ? { qmpReceivedMono: mono } : {}),
      prefix: EVENT_PREFIX,
      body,
    };
    return { event, transition: parsed };
  }
  const parsed = parseBody<VmBody>(body);
  return { event: { kind: 'vm', vm, offset, at: Date.parse(parsed.ts), prefix: VM_PREFIX, body }, vm: parsed };
}
