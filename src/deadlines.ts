/**
 * Deadlines for many waits of the same length (QMP command replies, job polls) from one timer,
 * without a timer or a closure per wait. 1,000 idle monitors wait for 100 replies a second; a
 * `setTimeout` per wait was a Timeout object, a closure and a clearTimeout each time, garbage the
 * idle gateway spent most of its CPU collecting (bench/notes.md).
 *
 * A lane holds the waits of one length. Added at a non-decreasing clock, their deadlines are in
 * order, so a lane is a FIFO ring: add and cancel are O(1) and allocate nothing, and its one timer
 * is armed for the oldest wait only. A cancelled wait is cleared in place (its entry no longer
 * referenced) and skipped when the timer reaches it, so the timer fires about once per length, not
 * once per wait. Lanes are shared per (scheduler, length) in the process: `deadlineLane` is the way
 * in. Empty lanes beyond KEEP_IDLE_LANES leave the table, so arbitrary lengths cost nothing once done.
 *
 * The clock is monotonic for the asyncScheduler (a wall-clock step must not delay a hung QEMU's
 * verdict by the step) and the scheduler's own `now()` otherwise (virtual time in tests).
 */
import { asyncScheduler, type SchedulerLike, type Subscription } from 'rxjs';

/** What a lane calls when its wait is over. */
export interface Expiring {
  expire(): void;
}

const INITIAL_CAPACITY = 16;
/** Empty lanes kept for reuse per scheduler (the few lengths in use: poll and command timeouts). */
const KEEP_IDLE_LANES = 8;

export class DeadlineLane {
  /** Ring slots by sequence number (seq & mask); undefined once expired or cancelled. */
  private entries: Array<Expiring | undefined> = new Array<Expiring | undefined>(INITIAL_CAPACITY).fill(undefined);
  private deadlines: number[] = new Array<number>(INITIAL_CAPACITY).fill(0);
  private mask = INITIAL_CAPACITY - 1;
  /** Sequence numbers: the oldest slot still held, and the next to hand out. */
  private head = 0;
  private tail = 0;
  private live = 0;
  private timer: Subscription | undefined;
  private readonly fire = (): void => this.expireDue();

  constructor(
    readonly lengthMs: number,
    private readonly scheduler: SchedulerLike,
    private readonly now: () => number,
    private readonly onEmpty: (lane: DeadlineLane) => void,
  ) {}

  /** Waits `lengthMs` from now, then calls `entry.expire()` unless cancelled. Returns the handle for cancel. */
  add(entry: Expiring): number {
    if (this.tail - this.head > this.mask) this.grow();
    const seq = this.tail++;
    const slot = seq & this.mask;
    this.entries[slot] = entry;
    this.deadlines[slot] = this.now() + this.lengthMs;
    this.live++;
    if (!this.timer) this.arm(this.lengthMs);
    return seq;
  }

  /** Cancels the wait `handle` (from add) of `entry`; a handle already expired or cancelled is ignored. */
  cancel(handle: number, entry: Expiring): void {
    if (handle < this.head || handle >= this.tail) return;
    const slot = handle & this.mask;
    if (this.entries[slot] !== entry) return;
    this.entries[slot] = undefined;
    // The last wait gone (every command answered, a client closed): no timer left armed behind it.
    if (--this.live === 0) {
      this.timer?.unsubscribe();
      this.timer = undefined;
      this.head = this.tail;
      this.onEmpty(this);
    }
  }

  /** Waits not yet expired or cancelled. */
  get size(): number {
    return this.live;
  }

  private expireDue(): void {
    this.timer = undefined;
    const now = this.now();
    // Expiring may add to this lane (a poll retried at once): those are newer and come after.
    while (this.head < this.tail) {
      const slot = this.head & this.mask;
      const entry = this.entries[slot];
      if (entry !== undefined && this.deadlines[slot]! > now) break;
      this.entries[slot] = undefined;
      this.head++;
      if (entry === undefined) continue;
      this.live--;
      entry.expire();
    }
    if (this.head === this.tail) {
      if (!this.timer) this.onEmpty(this);
      return;
    }
    if (!this.timer) this.arm(Math.max(1, this.deadlines[this.head & this.mask]! - now));
  }

  private arm(delayMs: number): void {
    this.timer = this.scheduler.schedule(this.fire, delayMs);
  }

  /** Doubles the ring; a slot's index is its seq & mask, so every held slot moves to seq & newMask. */
  private grow(): void {
    const capacity = (this.mask + 1) * 2;
    const entries = new Array<Expiring | undefined>(capacity).fill(undefined);
    const deadlines = new Array<number>(capacity).fill(0);
    const mask = capacity - 1;
    for (let seq = this.head; seq < this.tail; seq++) {
      entries[seq & mask] = this.entries[seq & this.mask];
      deadlines[seq & mask] = this.deadlines[seq & this.mask]!;
    }
    this.entries = entries;
    this.deadlines = deadlines;
    this.mask = mask;
  }
}

const lanes = new WeakMap<SchedulerLike, Map<number, DeadlineLane>>();
const monotonic = (): number => performance.now();

/** The lane of waits of `lengthMs` on `scheduler`, shared by every caller in the process. */
export function deadlineLane(lengthMs: number, scheduler: SchedulerLike = asyncScheduler): DeadlineLane {
  let byLength = lanes.get(scheduler);
  if (!byLength) lanes.set(scheduler, (byLength = new Map()));
  let lane = byLength.get(lengthMs);
  if (!lane) {
    const table = byLength;
    const now = scheduler === asyncScheduler ? monotonic : () => scheduler.now();
    lane = new DeadlineLane(lengthMs, scheduler, now, (empty) => {
      if (table.size > KEEP_IDLE_LANES && table.get(lengthMs) === empty) table.delete(lengthMs);
    });
    byLength.set(lengthMs, lane);
  }
  return lane;
}
