/**
 * Applies polls to one VM's jobs (each row, then "vanished" for each job QEMU no longer lists) in
 * slices of POLL_SLICE inputs, yielding to the event loop between them, so a reconcile of a thousand
 * jobs never holds it for more than a few ms. Events that arrive between
 * slices are newer than the poll (higher seq) and the reducer lets them win, as it does for any
 * poll overtaken by an event. Polls are applied in order; while one is being applied, only the
 * newest next one waits (a superseded reconcile passes its reconcile flag on).
 */
import type { SchedulerLike, Subscription } from 'rxjs';
import type { EngineInput, JobRecord } from './normalize.js';
import type { PollResult } from './poller.js';

/** Poll rows (and vanished jobs) applied per slice: a reconcile of many jobs yields between slices. */
const POLL_SLICE = 64;

/** The engine, as a poll being applied sees it. */
export interface PollTarget {
  readonly records: ReadonlyMap<string, JobRecord>;
  apply(id: string, input: EngineInput): void;
  /** The poll's last slice was applied. */
  applied(): void;
}

export class SlicedPollApplier {
  /** A poll being applied slice by slice, and the newest poll that waits for it (older ones are superseded). */
  private applying: Subscription | undefined;
  private queued: { result: PollResult; reconcile: boolean } | undefined;

  constructor(
    private readonly target: PollTarget,
    private readonly scheduler: SchedulerLike,
  ) {}

  offer(result: PollResult, reconcile: boolean): void {
    if (this.applying) {
      this.queued = { result, reconcile: reconcile || this.queued?.reconcile === true };
      return;
    }
    // The idle safety net's usual answer: nothing listed, nothing known. Nothing to apply or prune.
    if (result.rows.length === 0 && this.target.records.size === 0) return;
    this.applyPoll(result, reconcile);
  }

  /** Drops the poll being applied and the one waiting: what is left of them no longer describes the present. */
  drop(): void {
    this.applying?.unsubscribe();
    this.applying = undefined;
    this.queued = undefined;
  }

  /** offer()'s work, apart: its closures' context would be allocated on entry, even for the idle answer. */
  private applyPoll(result: PollResult, reconcile: boolean): void {
    const stamp = { seq: result.seq, at: result.receivedAt, session: result.session, reconcile, ...(result.sentAfterSeq !== undefined ? { sentAfterSeq: result.sentAfterSeq } : {}) };
    const target = this.target;
    const listed = new Set<string>();
    const rows = result.rows;
    let vanished: string[] | undefined;
    let index = 0;
    const step = (): boolean => {
      let budget = POLL_SLICE;
      for (; index < rows.length && budget > 0; index++, budget--) {
        const row = rows[index]!;
        listed.add(row.id);
        target.apply(row.id, { kind: 'poll', row, ...stamp });
      }
      if (index < rows.length) return false;
      // Only a job QEMU knew can vanish (an ended one is left alone by the reducer anyway).
      if (!vanished) {
        vanished = [];
        for (const [id, record] of target.records) if (record.present && !listed.has(id)) vanished.push(id);
      }
      while (vanished.length > 0 && budget-- > 0) {
        const id = vanished.pop()!;
        target.apply(id, { kind: 'vanished', id, ...stamp });
      }
      return vanished.length === 0;
    };
    const run = (): void => {
      if (!step()) {
        this.applying = this.scheduler.schedule(run);
        return;
      }
      this.applying = undefined;
      target.applied();
      const next = this.queued;
      this.queued = undefined;
      if (next) this.offer(next.result, next.reconcile);
    };
    run();
  }
}
