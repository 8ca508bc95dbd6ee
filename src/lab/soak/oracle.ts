/**
 * The soak's judge: a raw monitor of its own on each daemon records QEMU's JOB_STATUS_CHANGE and
 * BLOCK_JOB_* per job id, and this derives what the gateway must push for a job and how it must end.
 *
 * Expected states: QEMU's statuses in order (`null` as `dismissed`), minus drain blips: a pause
 * nobody asked for (no user pause sent, no BLOCK_JOB_ERROR with action stop) that QEMU undid by
 * itself right after (running > paused > running, ready > standby > ready).
 */
import { RawQmp, type RawQmpEvent } from '../raw-qmp.js';

const PAUSE_RETURN: Partial<Record<string, string>> = { paused: 'running', standby: 'ready' };
/** The engine's hold of a pause nobody asked for (pause-debounce.ts DEFAULT_INTERNAL_PAUSE_MS, the gateway's default). */
const HOLD_MS = 300;

export class SoakOracle {
  private raw: RawQmp | undefined;
  private readonly byJob = new Map<string, RawQmpEvent[]>();
  private stopListening: (() => void) | undefined;

  /** (Re)connects to a daemon's monitor; events recorded so far are kept. */
  async connect(socketPath: string): Promise<void> {
    this.stopListening?.();
    await this.raw?.close().catch(() => {});
    const raw = await RawQmp.connect(socketPath, { maxEvents: 100 });
    this.raw = raw;
    this.stopListening = raw.onEvent((event) => {
      if (event.event !== 'JOB_STATUS_CHANGE' && !event.event.startsWith('BLOCK_JOB_')) return;
      const id = String(event.data.id ?? event.data.device ?? '');
      let list = this.byJob.get(id);
      if (!list) this.byJob.set(id, (list = []));
      list.push(event);
    });
  }

  /** Index to pass to `events(id, from)` for what comes after now. */
  mark(id: string): number {
    return this.byJob.get(id)?.length ?? 0;
  }

  /** One incarnation's events: from `from` up to and including its `null`. */
  events(id: string, from: number): RawQmpEvent[] {
    const all = this.byJob.get(id) ?? [];
    const out: RawQmpEvent[] = [];
    for (let i = from; i < all.length; i++) {
      out.push(all[i]!);
      if (all[i]!.event === 'JOB_STATUS_CHANGE' && all[i]!.data.status === 'null') break;
    }
    return out;
  }

  /** Forget a judged job's events (ids are reused; marks stay valid because reuse starts at the new end). */
  forget(id: string): void {
    this.byJob.delete(id);
  }

  async close(): Promise<void> {
    this.stopListening?.();
    await this.raw?.close().catch(() => {});
  }
}

/** What the soak sent for one job through the gateway, with local send times (ms). */
export interface SentVerbs {
  pauses: number[];
  resumes: number[];
  cancels: number[];
}

/**
 * The states the gateway must push for one incarnation. Rules, as QEMU's own events show them:
 * - A user pause is the first paused/standby QEMU reports after the pause was sent (QEMU answers
 *   job-pause at once; the job pauses at its next pause point, which a rate-limited job may reach
 *   a second later).
 * - A pause nobody asked for that QEMU undoes right after (the next status returns to where the job
 *   was) is a drain blip: neither is pushed. A pause that persists is pushed.
 * - Under a user pause (asked, and no resume sent since), a running/ready that no resume or cancel
 *   explains is held like the engine holds it: dropped if the pause comes back or another status
 *   follows within the hold, pushed if it lasts. Cause precedes effect on one clock: a verb explains
 *   only what QEMU reported after it was sent.
 * - BLOCK_JOB_ERROR with action stop makes the following pause asked for.
 */
export function expectedStates(events: readonly RawQmpEvent[], sent: SentVerbs): string[] {
  const expected: string[] = [];
  const pauses = [...sent.pauses].sort((a, b) => a - b);
  const resumes = [...sent.resumes].sort((a, b) => a - b);
  const firstCancel = Math.min(...sent.cancels);
  let errorStop = false;
  /** A user (or error) pause is in force: asked for, and no resume consumed since (the engine's pauseRequested). */
  let userPaused = false;
  let held: { status: string; kind: 'blip' | 'flicker'; at: number } | undefined;
  for (const event of events) {
    if (event.event === 'BLOCK_JOB_ERROR' && event.data.action === 'stop') errorStop = true;
    if (event.event !== 'JOB_STATUS_CHANGE') continue;
    const status = String(event.data.status);
    const at = event.receivedAt;
    const isPause = PAUSE_RETURN[status] !== undefined;
    if (held !== undefined) {
      const previous = held;
      held = undefined;
      if (at - previous.at > HOLD_MS) {
        expected.push(previous.status); // it lasted: the engine's hold ran out and pushed it
      } else {
        if (previous.kind === 'blip' && PAUSE_RETURN[previous.status] === status) continue;
        if (previous.kind === 'flicker' && isPause) continue; // paused again: still the same user pause
        // Something else within the hold: the held status is dropped, the new one follows.
      }
    }
    if (isPause) {
      // The first pause after a pause was sent is that pause (the engine attributes it the same way);
      // an error stop also answers any pause sent before it.
      const askedNow = pauses.length > 0 && pauses[0]! <= at;
      while (pauses.length > 0 && pauses[0]! <= at) pauses.shift();
      if (askedNow || errorStop) userPaused = true;
      if (userPaused) expected.push(status);
      else held = { status, kind: 'blip', at };
    } else if (status === 'running' || status === 'ready') {
      // Only a pause in force consumes a resume: on a millisecond clock the job's first running can
      // tie with a resume sent for a pause that came after it.
      const resumed = userPaused && resumes.length > 0 && resumes[0]! <= at;
      if (resumed) {
        resumes.shift();
        userPaused = false;
      }
      const lastPushed = expected[expected.length - 1];
      const leavingPause = lastPushed === 'paused' || lastPushed === 'standby';
      if (leavingPause && userPaused && !resumed && !(firstCancel <= at)) held = { status, kind: 'flicker', at };
      else expected.push(status);
    } else {
      expected.push(status === 'null' ? 'dismissed' : status);
    }
    errorStop = false;
  }
  if (held !== undefined) expected.push(held.status);
  return expected;
}

/** How QEMU says the incarnation ended: the BLOCK_JOB_COMPLETED / CANCELLED event. */
export function expectedOutcome(events: readonly RawQmpEvent[]): 'completed' | 'failed' | 'cancelled' | undefined {
  for (const event of events) {
    if (event.event === 'BLOCK_JOB_CANCELLED') return 'cancelled';
    if (event.event === 'BLOCK_JOB_COMPLETED') return event.data.error !== undefined ? 'failed' : 'completed';
  }
  return undefined;
}

/** `sub` appears in `seq` in order (not necessarily contiguous). */
export function isSubsequence(sub: readonly string[], seq: readonly string[]): boolean {
  let i = 0;
  for (const item of seq) if (i < sub.length && sub[i] === item) i++;
  return i === sub.length;
}
