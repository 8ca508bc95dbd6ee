/**
 * The poller's liveness verdict in virtual time: polls that time out in a row make the monitor
 * `unresponsive`; a poll that times out is asked again at once (not at the next tick); an answered
 * poll resets the count and, after a verdict, is a reconcile again.
 */
import { map, of, switchMap, takeUntil, throwError, timer, type Observable } from 'rxjs';
import { TestScheduler } from 'rxjs/testing';
import { describe, expect, it } from 'vitest';
import { ConfigError, QmpCommandError, QmpTimeoutError } from '../../../src/errors.js';
import { pollJobs, unresponsiveThreshold, type PollOutcome, type PollResult } from '../../../src/jobs/poller.js';

const result: PollResult = { rows: [], seq: 1, receivedAt: 0, session: 1 };
const sent = { execute: 'query-block-jobs' };

/** One poll: `r` answers after 2 ms, `-` never answers in time, `e` QEMU refuses it, `q` the client's own timeout fires. */
type PollScript = 'r' | '-' | 'e' | 'q';

const behaviour: Record<PollScript, () => Observable<PollResult>> = {
  r: () => timer(2).pipe(map(() => result)),
  '-': () => timer(1_000).pipe(map(() => result)),
  e: () => timer(2).pipe(switchMap(() => throwError(() => new QmpCommandError('GenericError', 'boom', sent)))),
  q: () => timer(2).pipe(switchMap(() => throwError(() => new QmpTimeoutError(sent, 2)))),
};

/** R/p: a (reconcile) poll answered; f: a poll failed; U: failed, and the monitor counts as unresponsive. */
const letter = (o: PollOutcome): string => (o.kind === 'polled' ? (o.reconcile ? 'R' : 'p') : o.unresponsive ? 'U' : 'f');

/**
 * One session polling every 10 ms (a 5 ms timeout) for `untilMs`; the n-th poll behaves as
 * `polls[n]`, later ones answer. Returns `frame:letter` per outcome, and the outcomes.
 */
function run(polls: PollScript[], untilMs: number, unresponsiveAfterPolls?: number): { seen: string[]; outcomes: PollOutcome[] } {
  const seen: string[] = [];
  const outcomes: PollOutcome[] = [];
  const scheduler = new TestScheduler((actual, wanted) => expect(actual).toEqual(wanted));
  scheduler.run(({ flush }) => {
    let index = 0;
    pollJobs({
      sessions$: of(1),
      active$: of(true),
      poll: () => behaviour[polls[index++] ?? 'r'](),
      activePollMs: 10,
      idlePollMs: 0,
      pollTimeoutMs: 5,
      ...(unresponsiveAfterPolls !== undefined ? { unresponsiveAfterPolls } : {}),
      scheduler,
    })
      .pipe(takeUntil(timer(untilMs)))
      .subscribe((outcome) => {
        outcomes.push(outcome);
        seen.push(`${scheduler.now()}:${letter(outcome)}`);
      });
    flush();
  });
  return { seen, outcomes };
}

describe('pollJobs liveness', () => {
  it('by default two polls in a row without a reply make the monitor unresponsive, for as long as they keep failing', () => {
    expect(run(['r', '-', '-', '-'], 45).seen).toEqual(['2:R', '15:f', '20:U', '35:U', '42:R']);
  });

  it('a poll that times out is retried at once, so the verdict comes one timeout later, not one tick later; after it the cadence resumes', () => {
    const { seen } = run(['r', '-', '-', '-', '-'], 55);
    // 10: first timeout at 15, retried at 15, verdict at 20; no retry after the verdict: the ticks at 30 and 40 probe.
    expect(seen).toEqual(['2:R', '15:f', '20:U', '35:U', '45:U', '52:R']);
  });

  it('an answered poll resets the count: timeouts that are not in a row make no verdict', () => {
    expect(run(['r', '-', 'r', '-', 'r', '-', 'r'], 65).seen).toEqual(['2:R', '15:f', '17:p', '25:f', '27:p', '35:f', '37:p', '42:p', '52:p', '62:p']);
  });

  it('after a verdict the first answered poll is a reconcile; without one a recovery is a routine poll', () => {
    expect(run(['r', '-', '-', 'r', 'r'], 45).seen).toEqual(['2:R', '15:f', '20:U', '32:R', '42:p']);
    expect(run(['r', '-', 'r', 'r'], 35).seen).toEqual(['2:R', '15:f', '17:p', '22:p', '32:p']);
  });

  it("the client's own command timeout counts like the poll's", () => {
    const { seen, outcomes } = run(['r', 'q', 'q', 'r'], 35);
    expect(seen).toEqual(['2:R', '12:f', '14:U', '22:R', '32:p']);
    const verdict = outcomes[2];
    expect(verdict?.kind === 'poll-failed' ? verdict.error : undefined).toBeInstanceOf(QmpTimeoutError);
  });

  it('a failure that is not a timeout (QEMU refused the query) neither counts nor resets', () => {
    expect(run(['r', 'e', 'e', 'e'], 45).seen).toEqual(['2:R', '12:f', '22:f', '32:f', '42:p']);
    // The refusal of the retry does not reset the count: the next tick's timeout is the second in a row.
    expect(run(['r', '-', 'e', '-'], 45).seen).toEqual(['2:R', '15:f', '17:f', '25:U', '32:R', '42:p']);
  });

  it('unresponsiveAfterPolls sets how many timeouts in a row make the verdict', () => {
    expect(run(['r', '-'], 25, 1).seen).toEqual(['2:R', '15:U', '22:R']);
    expect(run(['r', '-', '-', '-'], 45, 3).seen).toEqual(['2:R', '15:f', '20:f', '25:U', '32:R', '42:p']);
  });

  it("a session's first poll counts too: a monitor hung from the start is found out", () => {
    expect(run(['-', '-'], 25).seen).toEqual(['5:f', '10:U', '22:R']);
  });

  it('rejects an unresponsiveAfterPolls that is not an integer >= 1, naming the setting', () => {
    for (const bad of [0, -1, 1.5, Number.NaN]) {
      expect(() => unresponsiveThreshold({ unresponsiveAfterPolls: bad })).toThrow(ConfigError);
      expect(() => unresponsiveThreshold({ unresponsiveAfterPolls: bad })).toThrow(/^unresponsiveAfterPolls: must be an integer >= 1, got /);
    }
    expect(unresponsiveThreshold({})).toBe(2);
    expect(unresponsiveThreshold({ unresponsiveAfterPolls: 5 })).toBe(5);
    expect(() => pollJobs({ sessions$: of(1), active$: of(true), poll: () => of(result), unresponsiveAfterPolls: 0 })).toThrow(ConfigError);
  });
});
