import { describe, expect, it } from 'vitest';
import { QmpProtocolError, withoutStack } from '../../../src/errors.js';
import { mergeJobRows, parseBlockJobRows, parseJobEvent, parseJobRows } from '../../../src/jobs/qmp-payloads.js';

describe('job payloads', () => {
  it('names the job id the same for every event (device vs id)', () => {
    expect(parseJobEvent({ event: 'BLOCK_JOB_READY', data: { device: 'j', type: 'mirror', len: 5, offset: 5, speed: 0 } })).toEqual({
      name: 'BLOCK_JOB_READY', id: 'j', type: 'mirror', progress: { current: 5, total: 5 }, speed: 0,
    });
    expect(parseJobEvent({ event: 'BLOCK_JOB_PENDING', data: { id: 'j', type: 'mirror' } })).toMatchObject({ id: 'j' });
    expect(parseJobEvent({ event: 'JOB_STATUS_CHANGE', data: { id: 'j', status: 'null' } })).toEqual({ name: 'JOB_STATUS_CHANGE', id: 'j', status: 'null' });
    expect(parseJobEvent({ event: 'BLOCK_JOB_COMPLETED', data: { device: 'j', type: 'stream', len: 9, offset: 3, speed: 0, error: 'Input/output error' } }))
      .toMatchObject({ error: 'Input/output error' });
  });

  it('ignores events the engine does not follow', () => {
    expect(parseJobEvent({ event: 'STOP', data: {} })).toBeUndefined();
  });

  it.each([
    [{ event: 'JOB_STATUS_CHANGE', data: { id: 'j', status: 'exploded' } }, /JOB_STATUS_CHANGE: status must be one of undefined\|created.*got "exploded"/],
    [{ event: 'BLOCK_JOB_READY', data: { device: 'j', type: 'mirror', len: -1, offset: 0, speed: 0 } }, /BLOCK_JOB_READY: len must be a non-negative integer, got -1/],
    [{ event: 'BLOCK_JOB_ERROR', data: { device: 'j', operation: 'write' } }, /BLOCK_JOB_ERROR: action must be one of ignore\|report\|stop, got nothing/],
    [{ event: 'BLOCK_JOB_CANCELLED', data: { type: 'mirror', len: 1, offset: 0, speed: 0 } }, /BLOCK_JOB_CANCELLED: device must be a non-empty string, got nothing/],
  ])('rejects %j with a specific error', (event, message) => {
    expect(() => parseJobEvent(event)).toThrow(QmpProtocolError);
    expect(() => parseJobEvent(event)).toThrow(message);
  });

  it('builds its errors without a stack (a flood of them is hostile input), and leaves the stack limit as it was', () => {
    const limit = Error.stackTraceLimit;
    let error: unknown;
    try {
      parseJobEvent({ event: 'JOB_STATUS_CHANGE', data: { id: 7, status: 'running' } });
    } catch (thrown) {
      error = thrown;
    }
    expect(error).toBeInstanceOf(QmpProtocolError);
    expect((error as QmpProtocolError).received).toBe('{"id":7,"status":"running"}');
    expect((error as Error).stack).not.toMatch(/\n\s+at /);
    expect(Error.stackTraceLimit).toBe(limit);
    expect(() => withoutStack(() => { throw new RangeError('while building'); })).toThrow(RangeError);
    expect(Error.stackTraceLimit).toBe(limit);
    expect(new Error('ours').stack).toMatch(/\n\s+at /);
  });

  it('merges both queries by id; query-block-jobs wins, query-jobs adds error and non-block jobs', () => {
    const block = parseBlockJobRows([
      { device: 'm', type: 'mirror', len: 10, offset: 10, busy: false, paused: false, speed: 0, 'io-status': 'ok', ready: true, status: 'ready', 'auto-finalize': true, 'auto-dismiss': false },
    ]);
    const jobs = parseJobRows([
      { id: 'm', type: 'mirror', status: 'ready', 'current-progress': 9, 'total-progress': 10 },
      { id: 'c', type: 'create', status: 'concluded', 'current-progress': 1, 'total-progress': 1, error: 'boom' },
    ]);
    expect(mergeJobRows(block, jobs)).toEqual([
      { id: 'm', type: 'mirror', status: 'ready', progress: { current: 10, total: 10 }, ready: true, paused: false, busy: false, ioStatus: 'ok', speed: 0, autoFinalize: true, autoDismiss: false },
      { id: 'c', type: 'create', status: 'concluded', progress: { current: 1, total: 1 }, error: 'boom' },
    ]);
  });

  it('rejects a reply that is not a list, naming the query', () => {
    expect(() => parseBlockJobRows({})).toThrow(/query-block-jobs: expected an array/);
    expect(() => parseJobRows([{ id: 'x' }])).toThrow(/query-jobs\[0\]: type must be a non-empty string/);
  });
});
