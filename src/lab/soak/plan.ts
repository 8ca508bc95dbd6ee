/**
 * What one soak job does: its kind, size, speed, an optional blkdebug fault with an error policy, an
 * optional user pause, how it ends, and whether it is finalized and dismissed by hand. Drawn from the
 * run's seeded PRNG, so a seed replays the same plans.
 */
import type { Random } from './random.js';

export type JobKind = 'mirror' | 'active-commit' | 'commit' | 'stream' | 'backup' | 'backup-none';

export type Ending =
  /** Ends by itself (no READY), or fails by its fault. */
  | 'natural'
  /** `complete` (when: now) sent the moment the gateway pushes ready: must never fail. */
  | 'complete-on-ready'
  /** `complete` (when: ready) sent through the gateway right after the start. */
  | 'complete-early'
  | 'soft-cancel-before-ready'
  | 'force-cancel-before-ready'
  | 'soft-cancel-after-ready'
  | 'force-cancel-after-ready';

export interface JobPlan {
  /** QEMU job id (reused ids are drawn from finished jobs). */
  id: string;
  /** Unique per job of the run: names its nodes and image files. */
  key: string;
  kind: JobKind;
  dataMiB: number;
  /** Bytes/s, 0 = unlimited. */
  speed: number;
  /** One EIO on the first write (first read for stream), with this policy. */
  fault?: 'stop' | 'report' | 'ignore';
  /** A user pause through the gateway, resumed after a moment. */
  pause?: 'running' | 'ready';
  ending: Ending;
  /** auto-finalize = auto-dismiss = false: the soak finalizes and dismisses through the gateway. */
  manual: boolean;
}

const READY_KINDS: readonly JobKind[] = ['mirror', 'active-commit'];
export const MiB = 1024 * 1024;

export function planJob(rng: Random, id: string, key: string): JobPlan {
  const kind = rng.pick<JobKind>(['mirror', 'mirror', 'active-commit', 'commit', 'stream', 'backup', 'backup-none']);
  const reachesReady = READY_KINDS.includes(kind);
  const slow = rng.chance(0.5);
  const plan: JobPlan = {
    id,
    key,
    kind,
    dataMiB: rng.int(1, 6),
    // Slow jobs stretch the windows (offset == len before READY, pauses, early cancels).
    speed: slow ? rng.int(2, 8) * MiB : rng.chance(0.5) ? 0 : rng.int(16, 64) * MiB,
    ending: 'natural',
    manual: rng.chance(0.15),
  };
  if (kind !== 'active-commit' && kind !== 'commit' && kind !== 'backup-none' && rng.chance(0.2)) {
    plan.fault = rng.pick(['stop', 'report', 'ignore'] as const);
  }
  if (reachesReady) {
    plan.ending = rng.pick<Ending>([
      'complete-on-ready', 'complete-on-ready', 'complete-early', 'complete-early',
      'soft-cancel-before-ready', 'force-cancel-before-ready', 'soft-cancel-after-ready', 'force-cancel-after-ready',
    ]);
  } else if (kind === 'backup-none') {
    plan.ending = rng.pick<Ending>(['soft-cancel-before-ready', 'force-cancel-before-ready']);
  }
  if (plan.ending.endsWith('before-ready')) plan.speed = rng.int(1, 4) * MiB; // still running when the cancel comes
  if (plan.fault === 'report') plan.ending = 'natural'; // it fails at its first write
  if (rng.chance(0.2)) {
    plan.pause = reachesReady && !plan.ending.endsWith('before-ready') && rng.chance(0.5) ? 'ready' : 'running';
    if (plan.pause === 'running') plan.speed = rng.int(1, 4) * MiB;
  }
  return plan;
}
