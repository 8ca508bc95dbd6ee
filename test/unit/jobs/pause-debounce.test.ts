import { TestScheduler } from 'rxjs/testing';
import { describe, expect, it } from 'vitest';
import { holdTransientChanges, type HoldableChange } from '../../../src/jobs/pause-debounce.js';
import type { TransitionKey } from '../../../src/jobs/types.js';

const running: TransitionKey = { state: 'running', ready: false };
const paused: TransitionKey = { state: 'paused', ready: false, pauseReason: 'user' };
const pausedError: TransitionKey = { state: 'paused', ready: false, pauseReason: 'error' };
const ready: TransitionKey = { state: 'ready', ready: true };
const standby: TransitionKey = { state: 'standby', ready: true, pauseReason: 'user' };
const aborting: TransitionKey = { state: 'aborting', ready: false };
const created: TransitionKey = { state: 'created', ready: false };
const dismissed: TransitionKey = { state: 'dismissed', ready: false, outcome: 'failed' };

const change = (key: string, from: TransitionKey | null, to: TransitionKey, hold?: HoldableChange['hold']): HoldableChange =>
  hold ? { key, from, to, hold } : { key, from, to };

const values = {
  r: change('a', null, running),
  p: change('a', running, paused, 'internal-pause'),
  b: change('a', paused, running),
  x: change('a', paused, aborting),
  X: change('a', running, aborting),
  e: change('a', paused, pausedError),
  E: change('a', running, pausedError),
  s: change('a', ready, standby, 'internal-pause'),
  y: change('a', standby, ready),
  c: change('a', null, created, 'start'),
  n: change('a', created, dismissed),
  R: change('a', created, running),
  q: change('b', null, running),
  u: change('a', paused, running, 'unrequested-resume'),
  P: change('a', running, paused),
};

function run(source: string, expected: string, internalPauseMs = 10): void {
  const scheduler = new TestScheduler((actual, wanted) => expect(actual).toEqual(wanted));
  scheduler.run(({ cold, expectObservable }) => {
    expectObservable(cold(source, values).pipe(holdTransientChanges({ internalPauseMs, scheduler }))).toBe(expected, values);
  });
}

describe('holdTransientChanges', () => {
  it('a pause that reverts within the hold time emits neither change', () => {
    run('r-p--b-|', 'r------|');
  });

  it('a standby blip in ready is swallowed the same way', () => {
    run('s---y--|', '-------|');
  });

  it('a pause that persists is emitted when the hold time is up', () => {
    run('r-p-----------b|', 'r-----------p-b|');
  });

  it('a user-paused job that flickers running and pauses again emits neither; a lasting unrequested resume is emitted late', () => {
    run('u--P---|', '-------|');
    run('u-----------|', '----------u-|');
  });

  it('anything else during the hold drops the pause and is emitted at once, from before the pause', () => {
    run('r-p--x-|', 'r----X-|');
    run('r-p--e-|', 'r----E-|');
  });

  it('other jobs are not delayed by a held pause', () => {
    run('r-pq-b|', 'r--q--|');
  });

  it('a start followed by its failure (created -> null) emits nothing', () => {
    run('c-n-|', '----|');
  });

  it('a start is released at once by the next change, in order', () => {
    run('c-R-', '--(cR)');
  });

  it('a start with no next change is emitted after the hold', () => {
    run('c------------|', '----------c--|');
  });

  it('holds are off with 0 ms', () => {
    run('r-p-b|', 'r-p-b|', 0);
  });

  it('held changes are flushed on completion', () => {
    run('r-p|', 'r--(p|)');
  });
});
