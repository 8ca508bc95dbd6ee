/**
 * What a host stores per event (toWire): the job's JSON is sliced out of the body it serves, not
 * parsed and serialized again, and must be exactly JSON.stringify(job) whatever the job's strings hold.
 */
import { describe, expect, it } from 'vitest';
import { decodeWire, toWire } from '../../../src/fleet/entry.js';
import { streamEvent } from '../../../src/gateway/stream/events.js';
import type { JobState } from '../../../src/jobs/types.js';

function job(id: string, extra: Partial<JobState> = {}): JobState {
  const at = '2026-11-30T11:00:00.000Z';
  return {
    vm: 'vm"1', id, incarnation: 2, type: 'mirror', state: 'ready', ready: true,
    progress: { current: 5, total: 5, percent: 100, rate: 0, etaSeconds: 0 }, speed: 0,
    autoFinalize: true, autoDismiss: false, ioStatus: 'ok', stale: false, updatedAt: at, stateSince: at, source: 'event',
    ...extra,
  } as JobState;
}

describe('toWire', () => {
  it.each([
    ['a plain id', job('j1')],
    ['markers inside strings', job('x},"transition":{"from":null', { error: '"job":{},"transition":{}' } as Partial<JobState>)],
    ['quotes, backslashes and unicode', job('a\\"b\u2028c', { vm: ',"job":{' })],
  ])('stores the job JSON and id exactly (%s)', (_name, j) => {
    const event = streamEvent({ kind: 'transition', vm: j.vm, job: j, from: { state: 'running', ready: false }, to: { state: j.state, ready: j.ready }, source: 'event', at: 1_000 }, 'E1', 7);
    const wire = toWire(event);
    expect(wire).toMatchObject({ offset: 7, kind: 't', body: event.body, a: j.id });
    expect(wire.b).toBe(JSON.stringify(j));
    // An edge decodes the same job from the stored body.
    expect(decodeWire(j.vm, 7, wire.kind, wire.body, wire.q).transition?.job).toEqual(j);
  });

  it('stores a VM event with its status and reason', () => {
    const event = streamEvent({ kind: 'vm', vm: 'vm1', status: 'disconnected', reason: 'gone', at: 1_000 }, 'E1', 3);
    expect(toWire(event)).toMatchObject({ offset: 3, kind: 'v', body: event.body, a: 'disconnected', b: 'gone' });
  });
});
