import { VirtualTimeScheduler, type SchedulerLike } from 'rxjs';
import { describe, expect, it } from 'vitest';
import type { EngineInput, JobRecord } from '../../../src/jobs/normalize.js';
import { SlicedPollApplier } from '../../../src/jobs/poll-apply.js';
import type { PollResult } from '../../../src/jobs/poller.js';
import type { JobRow } from '../../../src/jobs/qmp-payloads.js';

const row = (id: string) => ({ id, type: 'mirror' }) as JobRow;
const poll = (seq: number, ids: string[]): PollResult => ({ rows: ids.map(row), seq, receivedAt: 0, session: 1 });
const ids = (n: number, prefix = 'j') => Array.from({ length: n }, (_, i) => `${prefix}${i}`);

/** An engine that records each input and each turn of the scheduler it was applied in. */
function engine(present: string[] = []) {
  const records = new Map<string, JobRecord>(present.map((id) => [id, { present: true } as JobRecord]));
  const scheduler = new VirtualTimeScheduler();
  const applied: { turn: number; kind: EngineInput['kind']; id: string; reconcile?: boolean }[] = [];
  let turn = 0;
  let ends = 0;
  const applier = new SlicedPollApplier(
    {
      records,
      apply: (id, input) => applied.push({ turn, kind: input.kind, id, ...('reconcile' in input ? { reconcile: input.reconcile } : {}) }),
      applied: () => ends++,
    },
    // Each scheduled slice runs in a turn of its own, counted.
    { now: () => scheduler.now(), schedule: ((work: () => void) => scheduler.schedule(() => (turn++, work()))) as SchedulerLike['schedule'] },
  );
  return { applier, applied, scheduler, ends: () => ends };
}

describe('applying a poll in slices', () => {
  it('applies 150 rows and the vanished in slices of 64, one turn each, then says it is done', () => {
    const e = engine(['gone1', 'gone2']);
    e.applier.offer(poll(1, ids(150)), false);
    expect(e.applied.length).toBe(64); // the first slice at once
    e.scheduler.flush();
    const perTurn = [0, 1, 2].map((t) => e.applied.filter((a) => a.turn === t).length);
    expect(perTurn).toEqual([64, 64, 24]); // the last slice: 22 rows and the 2 vanished
    expect(e.applied.filter((a) => a.kind === 'vanished').map((a) => a.id).sort()).toEqual(['gone1', 'gone2']);
    expect(e.ends()).toBe(1);
  });

  it('while one is applied, keeps only the newest next poll, carrying a superseded reconcile on', () => {
    const e = engine();
    e.applier.offer(poll(1, ids(100, 'a')), false);
    e.applier.offer(poll(2, ids(3, 'b')), true); // superseded
    e.applier.offer(poll(3, ids(2, 'c')), false);
    e.scheduler.flush();
    expect(e.applied.some((a) => a.id.startsWith('b'))).toBe(false);
    expect(e.applied.filter((a) => a.id.startsWith('c'))).toEqual([
      { turn: 1, kind: 'poll', id: 'c0', reconcile: true },
      { turn: 1, kind: 'poll', id: 'c1', reconcile: true },
    ]);
    expect(e.ends()).toBe(2);
  });

  it('ignores the idle answer (nothing listed, nothing known) and stops on drop()', () => {
    const e = engine();
    e.applier.offer(poll(1, []), false);
    expect(e.ends()).toBe(0);
    e.applier.offer(poll(2, ids(100)), false);
    e.applier.offer(poll(3, ids(1, 'late')), false);
    e.applier.drop();
    e.scheduler.flush();
    expect(e.applied.length).toBe(64);
    expect(e.ends()).toBe(0);
  });
});
