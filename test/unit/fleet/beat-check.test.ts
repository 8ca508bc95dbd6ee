/** BeatCheck: the heartbeat's sequence and heads tell an edge which notices it missed. */
import { afterEach, describe, expect, it } from 'vitest';
import { BeatCheck } from '../../../src/fleet/beat-check.js';
import type { StreamPosition } from '../../../src/gateway/history/types.js';

describe('BeatCheck', () => {
  const checks: BeatCheck[] = [];
  afterEach(() => checks.splice(0).forEach((c) => c.stop()));

  function setup(positions: Record<string, StreamPosition>) {
    const behind: string[] = [];
    const missed: string[] = [];
    const changed: string[] = [];
    const check = new BeatCheck({ position: (vm) => positions[vm], behind: (vm) => behind.push(vm), changed: (vm) => changed.push(vm), missed: (host) => missed.push(host), graceMs: 0 });
    checks.push(check);
    return { check, behind, missed, changed };
  }
  const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 5));

  it('a listed head the edge has not reached (or a VM it does not know, or another epoch) is caught up after the grace; one it reached is not', async () => {
    const { check, behind } = setup({ a: { epoch: 'e', offset: 5 }, b: { epoch: 'e', offset: 3 }, c: { epoch: 'old', offset: 9 } });
    check.heard('h1', 'run', 1, JSON.stringify([['a', 'e', 5], ['b', 'e', 4], ['c', 'e', 1], ['d', 'e', 1]]));
    expect(behind).toEqual([]); // not before the grace: the notice may still be on its way
    await settle();
    expect(behind).toEqual(['b', 'c', 'd']);
    expect(check.counters.behind).toBe(3);
  });

  it('a VM flagged as changed outside the stream (status set, jobs pruned) is reloaded after the grace, even at the head the edge holds', async () => {
    const { check, behind, changed } = setup({ a: { epoch: 'e', offset: 5 }, b: { epoch: 'e', offset: 5 } });
    check.heard('h1', 'run', 1, JSON.stringify([['a', 'e', 5, 1], ['b', 'e', 5]]));
    expect(changed).toEqual([]);
    await settle();
    expect(changed).toEqual(['a']);
    expect(behind).toEqual([]);
    expect(check.counters.changed).toBe(1);
  });

  it('a gap in the sequence of one run is a missed beat; the first beat heard of a host, the next run starting at 1 and the next number are not', async () => {
    const { check, missed } = setup({});
    check.heard('h1', 'r1', 7, '[]'); // first heard: the edge loaded Redis after subscribing
    check.heard('h1', 'r1', 8, '[]');
    check.heard('h1', 'r2', 1, '[]'); // the host restarted
    expect(missed).toEqual([]);
    check.heard('h1', 'r2', 3, '[]');
    expect(missed).toEqual(['h1']);
    check.heard('h1', 'r3', 2, '[]'); // a restart whose first beat was missed
    expect(missed).toEqual(['h1', 'h1']);
    check.heard('h2', 'r1', 5, '[]');
    expect(check.counters.missed).toBe(2);
  });

  it('heads that do not parse are ignored, the sequence still counts', async () => {
    const { check, behind, missed } = setup({});
    check.heard('h1', 'r', 1, 'not json');
    check.heard('h1', 'r', 2, JSON.stringify([['a', 1, 'x'], 'b', null]));
    await settle();
    expect(behind).toEqual([]);
    expect(missed).toEqual([]);
  });
});
