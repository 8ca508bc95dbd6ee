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

/**
 * The pause statuses a user pause caused. A pause sent at `sent` and answered at `answered` is the
 * last paused/standby QEMU reported in between (QEMU reports it before its reply; `slackMs` allows
 * for the two sockets being read in either order). A drain blip just before it is not it.
 */
export function askedPauses(events: readonly RawQmpEvent[], pauses: readonly { sent: number; answered: number }[], slackMs = 200): Set<number> {
  const asked = new Set<number>();
  for (const { sent, answered } of pauses) {
    let last: RawQmpEvent | undefined;
    for (const event of events) {
      if (event.event !== 'JOB_STATUS_CHANGE' || !PAUSE_RETURN[String(event.data.status)]) continue;
      if (event.receivedAt >= sent && event.receivedAt <= answered + slackMs) last = event;
    }
    if (last) asked.add(last.seq);
  }
  return asked;
}

/** The states the gateway must push for one incarnation (see the module comment); `asked`: see askedPauses. */
export function expectedStates(events: readonly RawQmpEvent[], asked: ReadonlySet<number>): string[] {
  const expected: string[] = [];
  let errorStop = false;
  let held: string | undefined;
  for (const event of events) {
    if (event.event === 'BLOCK_JOB_ERROR' && event.data.action === 'stop') errorStop = true;
    if (event.event !== 'JOB_STATUS_CHANGE') continue;
    const status = String(event.data.status);
    if (held !== undefined) {
      const previous = held;
      held = undefined;
      if (PAUSE_RETURN[previous] === status) continue;
      expected.push(previous);
    }
    if (PAUSE_RETURN[status] && !errorStop && !asked.has(event.seq)) held = status;
    else expected.push(status === 'null' ? 'dismissed' : status);
    errorStop = false;
  }
  if (held !== undefined) expected.push(held);
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
