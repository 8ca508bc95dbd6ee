import { map, shareReplay, type Observable } from 'rxjs';
import { TestScheduler } from 'rxjs/testing';
import { describe, expect, it } from 'vitest';
import { pollJobs, type PollOutcome, type PollResult } from '../../../src/jobs/poller.js';

const result: PollResult = { rows: [], seq: 1, receivedAt: 0, session: 1 };

/** R/p: a (reconcile) poll answered; F/f: a (reconcile) poll failed. */
const letter = (o: PollOutcome): string => (o.kind === 'polled' ? (o.reconcile ? 'R' : 'p') : o.reconcile ? 'F' : 'f');

interface Case {
  sessions: string;
  active: string;
  /** Marble of one poll's answer, relative to its start. */
  poll: string;
  expected: string;
  activePollMs?: number;
  idlePollMs?: number;
  pollTimeoutMs?: number;
  /** Subscription marble (to stop an endless cadence). */
  until: string;
  pollStarts?: number[];
  /** Marble of pollNow$ asks. */
  now?: string;
}

function run(c: Case): void {
  const scheduler = new TestScheduler((actual, wanted) => expect(actual).toEqual(wanted));
  scheduler.run(({ hot, cold, expectObservable, flush }) => {
    const starts: number[] = [];
    // The engine gives a BehaviorSubject: each session's cadence reads the current activity.
    const active$ = hot(c.active, { a: true, i: false }).pipe(shareReplay(1));
    active$.subscribe();
    const out$: Observable<string> = pollJobs({
      sessions$: hot(c.sessions, { s: 1, t: 2, x: null }),
      active$,
      poll: () => {
        starts.push(scheduler.now());
        return cold(c.poll, { r: result });
      },
      activePollMs: c.activePollMs ?? 10,
      idlePollMs: c.idlePollMs ?? 0,
      pollTimeoutMs: c.pollTimeoutMs ?? 100,
      ...(c.now ? { pollNow$: hot(c.now) } : {}),
      scheduler,
    }).pipe(map(letter));
    expectObservable(out$, c.until).toBe(c.expected);
    flush();
    if (c.pollStarts) expect(starts).toEqual(c.pollStarts);
  });
}

describe('pollJobs cadence', () => {
  it('polls at once on a session (the reconcile), then every activePollMs while jobs are active', () => {
    run({ sessions: 's', active: 'a', poll: '--(r|)', until: '^ 25ms !', expected: '--R 9ms p 9ms p', pollStarts: [0, 10, 20] });
  });

  it('polls every idlePollMs while nothing is active', () => {
    run({ sessions: 's', active: 'i', poll: '--(r|)', idlePollMs: 30, until: '^ 65ms !', expected: '--R 29ms p 29ms p', pollStarts: [0, 30, 60] });
  });

  it('idlePollMs 0 disables idle polling (the reconcile still runs)', () => {
    run({ sessions: 's', active: 'i', poll: '--(r|)', idlePollMs: 0, until: '^ 50ms !', expected: '--R', pollStarts: [0] });
  });

  it('switches to the active cadence when a job becomes active', () => {
    run({ sessions: 's', active: 'i 24ms a', poll: '(r|)', idlePollMs: 100, until: '^ 50ms !', expected: 'R 34ms p 9ms p', pollStarts: [0, 35, 45] });
  });

  it('never overlaps: ticks during a slow poll are skipped', () => {
    run({ sessions: 's', active: 'a', poll: '15ms (r|)', until: '^ 60ms !', expected: '15ms R 19ms p 19ms p', pollStarts: [0, 20, 40, 60] });
  });

  it('a poll that does not answer in time fails and the cadence goes on; the reconcile waits for a success', () => {
    // The first timeout is retried at once (5); the retry's timeout (10) is the unresponsive verdict, and the
    // tick during it is skipped; then the cadence goes on (20).
    run({ sessions: 's', active: 'a', poll: '-', pollTimeoutMs: 5, until: '^ 25ms !', expected: '5ms F 4ms F 14ms F', pollStarts: [0, 5, 20] });
  });

  it('a new session cancels the old cadence and reconciles again', () => {
    run({ sessions: 's 14ms t', active: 'a', poll: '--(r|)', until: '^ 30ms !', expected: '--R 9ms p 4ms R 9ms p', pollStarts: [0, 10, 15, 25] });
  });

  it('stops polling while the monitor is down (null) and reconciles on the next session', () => {
    run({ sessions: 's 14ms x 14ms t', active: 'a', poll: '--(r|)', until: '^ 45ms !', expected: '--R 9ms p 19ms R 9ms p', pollStarts: [0, 10, 30, 40] });
  });
});

describe('pollJobs: polls on demand (pollNow$)', () => {
  it('an ask while no poll runs polls at once', () => {
    run({ sessions: 's', active: 'i', poll: '--(r|)', now: '10ms n', until: '^ 30ms !', expected: '--R 9ms p', pollStarts: [0, 10] });
  });

  it('an ask during a poll is not dropped: one more poll goes right after that poll answers', () => {
    // The answer at 5 may predate the ask at 3 (e.g. a job created after the poll was sent): poll again at 5.
    run({ sessions: 's', active: 'i', poll: '5ms (r|)', now: '3ms n', until: '^ 30ms !', expected: '5ms R 4ms p', pollStarts: [0, 5] });
  });

  it('asks during one poll make one follow-up, and an ask while it is being delivered counts too', () => {
    run({ sessions: 's', active: 'i', poll: '5ms (r|)', now: '1ms n n n', until: '^ 30ms !', expected: '5ms R 4ms p', pollStarts: [0, 5] });
    run({ sessions: 's', active: 'i', poll: '5ms (r|)', now: '5ms n', until: '^ 30ms !', expected: '5ms R 4ms p', pollStarts: [0, 5] });
  });

  it('an ask during a poll that then fails is polled after the failure; a timeout retry already answers it', () => {
    // Timed out at 5 and retried at once (that retry is after the ask at 2): no extra poll.
    run({ sessions: 's', active: 'i', poll: '-', pollTimeoutMs: 5, now: '2ms n', until: '^ 12ms !', expected: '5ms F 4ms F', pollStarts: [0, 5] });
    // Failed outright at 4 (not a timeout, so no retry): the ask at 2 is polled at 4.
    run({ sessions: 's', active: 'i', poll: '4ms #', now: '2ms n', until: '^ 10ms !', expected: '4ms F 3ms F', pollStarts: [0, 4] });
  });

  it('cadence ticks during a poll are still skipped, not queued', () => {
    run({ sessions: 's', active: 'a', poll: '15ms (r|)', now: '', until: '^ 45ms !', expected: '15ms R 19ms p', pollStarts: [0, 20, 40] });
  });
});

describe('pollJobs: a poll that throws', () => {
  it('fails like any other failed poll, and the cadence goes on', () => {
    const scheduler = new TestScheduler((actual, wanted) => expect(actual).toEqual(wanted));
    scheduler.run(({ hot, expectObservable }) => {
      let calls = 0;
      const out$ = pollJobs({
        sessions$: hot('s', { s: 1 }),
        active$: hot('a', { a: true }).pipe(shareReplay(1)),
        poll: () => {
          if (calls++ === 0) throw new Error('no monitor');
          return [result];
        },
        activePollMs: 10,
        pollTimeoutMs: 5,
        scheduler,
      }).pipe(map(letter));
      expectObservable(out$, '^ 25ms !').toBe('F 9ms R 9ms p');
    });
  });
});
