/**
 * Holds back the two kinds of change that QEMU takes back within milliseconds, so subscribers
 * never see them, without delaying any real transition:
 *
 * - `internal-pause`: paused/standby that no client asked for and no I/O error caused. Drains
 *   (backup start, transactions, quit, graph changes) blip running -> paused -> running and
 *   ready -> standby -> ready (reference §6.9). Held for `internalPauseMs`: if the job returns to
 *   where it was, neither change is emitted; if the pause persists (e.g. another QMP client paused
 *   the job), it is emitted when the time is up. If anything else happens to the job meanwhile
 *   (aborting, concluded, an error pause...), the held pause is dropped and the new change is
 *   emitted at once, from the state before the pause.
 * - `unrequested-resume`: a user-paused job running again although no client resumed it. QEMU
 *   flickers paused -> running -> paused while a drain ends under a user pause; held like a pause
 *   nobody asked for (dropped if the job pauses again, emitted when the time is up: another QMP
 *   client resumed it).
 * - `start`: a job's first appearance in `created`. A start that fails (permission conflict) is a
 *   created -> null pair (§6.16), and no subscriber should hear of a job that never started. Held
 *   for `startHoldMs`; the next change of the job releases it at once (created, then the change),
 *   unless that change is the dismissal, which drops both.
 *
 * Every other change passes straight through. Order per key is preserved.
 */
import { Observable, asyncScheduler, type MonoTypeOperatorFunction, type SchedulerLike, type Subscription } from 'rxjs';
import { sameKey, type HoldKind } from './normalize.js';
import type { TransitionKey } from './types.js';

/** What the operator needs from an item: which job, and the change. */
export interface HoldableChange {
  /** Job key within the stream (e.g. the job id). */
  key: string;
  from: TransitionKey | null;
  to: TransitionKey;
  hold?: HoldKind;
}

export interface HoldOptions {
  /** How long a pause nobody asked for must last to be reported. @default 300 */
  internalPauseMs?: number;
  /** How long a job may sit in `created` before it is reported without a next change. @default internalPauseMs */
  startHoldMs?: number;
  /** @default asyncScheduler */
  scheduler?: SchedulerLike;
}

export const DEFAULT_INTERNAL_PAUSE_MS = 300;

export function holdTransientChanges<T extends HoldableChange>(options: HoldOptions = {}): MonoTypeOperatorFunction<T> {
  const internalPauseMs = options.internalPauseMs ?? DEFAULT_INTERNAL_PAUSE_MS;
  const startHoldMs = options.startHoldMs ?? internalPauseMs;
  const scheduler = options.scheduler ?? asyncScheduler;

  return (source) =>
    new Observable<T>((subscriber) => {
      const held = new Map<string, { item: T; timer: Subscription }>();

      const hold = (item: T, ms: number): void => {
        const timer = scheduler.schedule(() => {
          held.delete(item.key);
          subscriber.next(item);
        }, ms);
        held.set(item.key, { item, timer });
      };

      const pass = (item: T): void => {
        if ((item.hold === 'internal-pause' || item.hold === 'unrequested-resume') && internalPauseMs > 0) hold(item, internalPauseMs);
        else if (item.hold === 'start' && startHoldMs > 0) hold(item, startHoldMs);
        else subscriber.next(item);
      };

      const subscription = source.subscribe({
        next: (item) => {
          const waiting = held.get(item.key);
          if (!waiting) return pass(item);
          waiting.timer.unsubscribe();
          held.delete(item.key);
          const before = waiting.item;
          if (before.hold === 'start') {
            if (item.to.state === 'dismissed') return; // a start that failed: neither is news
            subscriber.next(before);
            return pass(item);
          }
          // A held pause (or unrequested resume): either the blip ends, or a real change replaces it, from the state before it.
          if (before.from !== null && sameKey(before.from, item.to)) return;
          subscriber.next({ ...item, from: before.from });
        },
        error: (error) => subscriber.error(error),
        complete: () => {
          for (const { item, timer } of held.values()) {
            timer.unsubscribe();
            subscriber.next(item);
          }
          held.clear();
          subscriber.complete();
        },
      });

      return () => {
        subscription.unsubscribe();
        for (const { timer } of held.values()) timer.unsubscribe();
        held.clear();
      };
    });
}
