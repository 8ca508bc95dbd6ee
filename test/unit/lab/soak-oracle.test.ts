import { describe, expect, it } from 'vitest';
import { expectedOutcome, expectedStates } from '../../../src/lab/soak/oracle.js';
import type { RawQmpEvent } from '../../../src/lab/raw-qmp.js';

let seq = 0;
const status = (s: string, at: number): RawQmpEvent => ({ event: 'JOB_STATUS_CHANGE', data: { id: 'j', status: s }, timestamp: { seconds: 0, microseconds: 0 }, receivedAt: at, seq: seq++ });
const event = (name: string, at: number, data: Record<string, unknown> = {}): RawQmpEvent => ({ event: name, data: { device: 'j', ...data }, timestamp: { seconds: 0, microseconds: 0 }, receivedAt: at, seq: seq++ });

describe('soak oracle', () => {
  it('a resume sent in the same millisecond as the job started does not explain that first running (error stop, resumed, ready)', () => {
    // Seen in the hour run (seed 424242): everything up to the error stop within one millisecond.
    const events = [
      status('created', 47452), status('running', 47452), event('BLOCK_JOB_ERROR', 47452, { action: 'stop' }), status('paused', 47452),
      status('running', 47454), status('ready', 47468), event('BLOCK_JOB_READY', 47468),
      status('aborting', 47471), event('BLOCK_JOB_CANCELLED', 47471), status('concluded', 47471), status('null', 47471),
    ];
    const states = expectedStates(events, { pauses: [], resumes: [47452], cancels: [47469] });
    expect(states).toEqual(['created', 'running', 'paused', 'running', 'ready', 'aborting', 'concluded', 'dismissed']);
    expect(expectedOutcome(events)).toBe('cancelled');
  });

  it('under a user pause with no resume, a running that flickers back to paused within the hold is not expected', () => {
    const events = [status('created', 0), status('running', 1), status('paused', 100), status('running', 150), status('paused', 160)];
    expect(expectedStates(events, { pauses: [90], resumes: [], cancels: [] })).toEqual(['created', 'running', 'paused']);
  });
});
