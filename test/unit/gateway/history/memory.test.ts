import { describe, expect, it } from 'vitest';
import { MemoryStreamHistory } from '../../../../src/gateway/history/memory.js';

interface Entry {
  offset: number;
  at: number;
}

describe('MemoryStreamHistory', () => {
  const fill = (h: MemoryStreamHistory<Entry>, vm: string, n: number, at = () => Date.now()) => {
    for (let i = 1; i <= n; i++) h.append(vm, { offset: h.open(vm).offset + 1, at: at() });
  };

  it('opens each stream once with its own random epoch at offset 0', () => {
    const h = new MemoryStreamHistory<Entry>();
    const a = h.open('vm1');
    expect(a).toEqual({ epoch: expect.stringMatching(/^[A-Za-z0-9_-]{16}$/), offset: 0 });
    expect(h.open('vm1')).toEqual(a);
    expect(h.open('vm2').epoch).not.toBe(a.epoch);
  });

  it('replays exactly the entries after `since`, and nothing at the head', () => {
    const h = new MemoryStreamHistory<Entry>();
    fill(h, 'vm1', 5);
    const { epoch } = h.open('vm1');
    expect(h.read('vm1', { epoch, offset: 2 })).toMatchObject({ entries: [{ offset: 3 }, { offset: 4 }, { offset: 5 }] });
    expect(h.read('vm1', { epoch, offset: 0 })).toMatchObject({ entries: { length: 5 } });
    expect(h.read('vm1', { epoch, offset: 5 })).toEqual({ entries: [] });
  });

  it('resets instead of replaying partially: foreign epoch, offset ahead, trimmed by count', () => {
    const h = new MemoryStreamHistory<Entry>({ maxEntries: 3 });
    fill(h, 'vm1', 6);
    const { epoch } = h.open('vm1');
    expect(h.read('vm1', { epoch: 'other', offset: 6 })).toEqual({ reset: 'unknown_epoch' });
    expect(h.read('vm9', { epoch, offset: 0 })).toEqual({ reset: 'unknown_epoch' });
    expect(h.read('vm1', { epoch, offset: 7 })).toEqual({ reset: 'offset_ahead' });
    // 4..6 retained: since=3 is the oldest resumable position, since=2 would miss offset 3.
    expect(h.read('vm1', { epoch, offset: 3 })).toMatchObject({ entries: { length: 3 } });
    expect(h.read('vm1', { epoch, offset: 2 })).toEqual({ reset: 'offset_too_old' });
  });

  it('keeps entries in order while its storage grows, also after trims moved its start, up to maxEntries', () => {
    let now = 0;
    const h = new MemoryStreamHistory<Entry>({ maxEntries: 20, maxAgeMs: 100 }, () => now);
    fill(h, 'vm1', 5, () => now); // offsets 1..5 at t=0
    now = 50;
    fill(h, 'vm1', 2, () => now); // 6, 7 at t=50
    now = 120; // 1..5 age out: the ring's start moves past them
    const { epoch } = h.open('vm1');
    expect(h.read('vm1', { epoch, offset: 5 })).toMatchObject({ entries: [{ offset: 6 }, { offset: 7 }] });
    fill(h, 'vm1', 30, () => now); // 8..37: grows past 8 and 16 slots from a moved start, then wraps at 20
    const read = h.read('vm1', { epoch, offset: 17 });
    expect(read).toEqual({ entries: Array.from({ length: 20 }, (_, i) => ({ offset: 18 + i, at: 120 })) });
    expect(h.read('vm1', { epoch, offset: 16 })).toEqual({ reset: 'offset_too_old' });
  });

  it('trims by age, including a history whose every entry aged out', () => {
    let now = 0;
    const h = new MemoryStreamHistory<Entry>({ maxAgeMs: 1000 }, () => now);
    fill(h, 'vm1', 2, () => now);
    now = 600;
    fill(h, 'vm1', 2, () => now);
    const { epoch } = h.open('vm1');
    now = 1500;
    expect(h.read('vm1', { epoch, offset: 2 })).toMatchObject({ entries: [{ offset: 3 }, { offset: 4 }] });
    expect(h.read('vm1', { epoch, offset: 1 })).toEqual({ reset: 'offset_too_old' });
    now = 5000;
    expect(h.read('vm1', { epoch, offset: 4 })).toEqual({ entries: [] });
    expect(h.read('vm1', { epoch, offset: 3 })).toEqual({ reset: 'offset_too_old' });
  });

  it('refuses an append that is not exactly head + 1, and a new epoch after drop', () => {
    const h = new MemoryStreamHistory<Entry>();
    fill(h, 'vm1', 1);
    expect(() => h.append('vm1', { offset: 3, at: 0 })).toThrow(/expected 2/);
    const before = h.open('vm1').epoch;
    h.drop('vm1');
    expect(h.open('vm1')).toEqual({ epoch: expect.not.stringMatching(before), offset: 0 });
  });
});
