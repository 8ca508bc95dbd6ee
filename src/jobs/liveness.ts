/**
 * One clock for the idle safety-net polls of every VM: a single timer whose ticks are shared out
 * over `SLOTS` slots per interval, each VM in one slot. A VM still polls once per interval, but the
 * VMs of a slot poll in the same timer callback, so their commands leave in one event-loop turn and
 * their replies are read in a few: one process wake-up per slot instead of two per VM. On a loaded
 * machine a wake-up costs far more CPU than the poll itself (bench/notes.md: ~190 µs per poll spread
 * over its own timer, ~30 µs in a batch), and 1,000 idle monitors are 100 polls a second.
 *
 * New VMs join the emptiest slot, so the polls stay spread evenly over the interval (a slot holds
 * 1/SLOTS of the VMs, so no single turn stalls the loop for long). The timer runs only while some
 * VM is idle. Clocks are shared per (scheduler, interval): `idleTicks` is the way in.
 */
import { Observable, asyncScheduler, type SchedulerLike, type Subscription } from 'rxjs';

/** Slots per interval: ticks come every interval / SLOTS (1 s at the default 10 s). */
export const SLOTS = 10;

class IdlePollClock {
  private readonly slots: Array<Set<() => void>> = Array.from({ length: SLOTS }, () => new Set());
  private members = 0;
  private slot = 0;
  private timer: Subscription | undefined;
  /** The slot being ticked, copied (reused, so a tick makes no garbage). */
  private readonly batch: Array<() => void> = [];

  constructor(
    private readonly intervalMs: number,
    private readonly scheduler: SchedulerLike,
  ) {}

  /** Fires every interval (first within one interval, in the emptiest slot) until unsubscribed. */
  readonly ticks$ = new Observable<void>((subscriber) => {
    const tick = (): void => subscriber.next();
    const slot = this.emptiestSlot();
    slot.add(tick);
    if (this.members++ === 0) this.startTimer();
    return () => {
      slot.delete(tick);
      if (--this.members === 0) this.stopTimer();
    };
  });

  private emptiestSlot(): Set<() => void> {
    // Prefer the slot whose turn is furthest away: a VM that just went idle waits about one
    // interval for its first idle poll, as with a timer of its own.
    let best = this.slots[this.slot]!;
    for (let i = 1; i < SLOTS; i++) {
      const candidate = this.slots[(this.slot + i) % SLOTS]!;
      if (candidate.size < best.size) best = candidate;
    }
    return best;
  }

  private startTimer(): void {
    const clock = this;
    const every = this.intervalMs / SLOTS;
    this.timer = this.scheduler.schedule(function () {
      clock.slot = (clock.slot + 1) % SLOTS;
      // A copy: a poll may end a VM's idleness (and its membership) synchronously.
      const batch = clock.batch;
      for (const tick of clock.slots[clock.slot]!) batch.push(tick);
      try {
        for (let i = 0; i < batch.length; i++) batch[i]!();
      } finally {
        batch.length = 0;
      }
      if (clock.members > 0) this.schedule(undefined, every);
    }, every);
  }

  private stopTimer(): void {
    this.timer?.unsubscribe();
    this.timer = undefined;
  }
}

const clocks = new WeakMap<SchedulerLike, Map<number, IdlePollClock>>();

/**
 * Ticks every `intervalMs` from the clock shared by every caller with the same scheduler and
 * interval (for the asyncScheduler: the whole process). The first tick comes within one interval.
 */
export function idleTicks(intervalMs: number, scheduler: SchedulerLike = asyncScheduler): Observable<void> {
  let byInterval = clocks.get(scheduler);
  if (!byInterval) clocks.set(scheduler, (byInterval = new Map()));
  let clock = byInterval.get(intervalMs);
  if (!clock) byInterval.set(intervalMs, (clock = new IdlePollClock(intervalMs, scheduler)));
  return clock.ticks$;
}
