import { describe, expect, it } from 'vitest';
import { JobTable } from '../../../src/jobs/job-table.js';
import type { JobRecord } from '../../../src/jobs/normalize.js';
import type { JobState } from '../../../src/jobs/types.js';

const T0 = Date.parse('2026-11-30T12:00:00.000Z');

/** A record as the reducer keeps it; only the fields the table reads matter here. */
function record(id: string, state: JobState['state'], sinceMs: number, present = state !== 'dismissed'): JobRecord {
  const job = { vm: 'vm1', id, incarnation: 1, type: 'mirror', state, ready: false, stateSince: new Date(sinceMs).toISOString() } as JobState;
  return { job, present, lastEventSeq: -1, firstSeenSeq: -1, session: 1, everReady: false, pauseRequested: false, ioErrorStop: false };
}

describe('the job table of one VM', () => {
  it('knows whether any job is live from the records it was given, as they change', () => {
    const table = new JobTable({});
    const running = record('a', 'running', T0);
    table.set('a', undefined, running);
    expect(table.anyLive).toBe(true);
    const concluded = record('a', 'concluded', T0 + 1);
    table.set('a', running, concluded);
    expect(table.anyLive).toBe(false);
    table.set('b', undefined, record('b', 'ready', T0));
    expect(table.anyLive).toBe(true);
  });

  it('is full at maxJobs + maxRetainedJobs records', () => {
    const table = new JobTable({ maxJobs: 2, maxRetainedJobs: 1 });
    for (const id of ['a', 'b']) table.set(id, undefined, record(id, 'running', T0));
    expect(table.full).toBe(false);
    table.set('c', undefined, record('c', 'dismissed', T0));
    expect(table.full).toBe(true);
  });

  it('drops ended jobs past their retention, and the oldest beyond the count, with what subscribers were told', () => {
    const table = new JobTable({ retentionMs: 1_000, maxRetainedJobs: 2 });
    table.set('live', undefined, record('live', 'running', T0));
    for (const [i, id] of ['e1', 'e2', 'e3'].entries()) {
      table.set(id, undefined, record(id, 'dismissed', T0 + i * 100));
      table.published.set(id, table.records.get(id)!.job);
    }
    table.prune(T0 + 500); // none expired; three ended, two kept: the oldest goes
    expect([...table.records.keys()].sort()).toEqual(['e2', 'e3', 'live']);
    expect(table.published.has('e1')).toBe(false);
    table.prune(T0 + 1_150); // e2 (since T0 + 100) is past its 1 s now
    expect([...table.records.keys()].sort()).toEqual(['e3', 'live']);
    table.prune(T0 + 10_000); // a live job is never pruned
    expect([...table.records.keys()]).toEqual(['live']);
  });

  it('remembers the highest incarnation of an id after its record is gone, never going back', () => {
    const table = new JobTable({ retentionMs: 1 });
    table.set('a', undefined, record('a', 'dismissed', T0));
    table.rememberIncarnation('a', 3);
    table.rememberIncarnation('a', 2);
    table.prune(T0 + 10);
    expect(table.records.has('a')).toBe(false);
    expect(table.previousIncarnation('a')).toBe(3);
    expect(table.previousIncarnation('never')).toBe(0);
  });
});
