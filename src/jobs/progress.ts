/**
 * Progress of one job: percent, a smoothed rate and an ETA from (offset, len) samples. Progress is
 * never a transition; how often a client hears of it is its subscription's `progress.intervalMs`.
 *
 * The rate is an exponentially weighted moving average over a time constant, so irregular sample
 * spacing (events plus polls) weighs each sample by the time it covers. It follows `current` only:
 * `total` may grow (guest writes during a mirror) and only moves the ETA. A sample whose current
 * went backwards (two queries disagreeing, §2.2) moves the baseline but not the rate.
 */
import type { JobProgress } from './types.js';
import type { ProgressSample } from './qmp-payloads.js';

export interface RateOptions {
  /** EWMA time constant. @default 3_000 */
  timeConstantMs?: number;
  /** Samples closer than this to the baseline only update current/total. @default 50 */
  minIntervalMs?: number;
}

/** Progress plus what the estimator needs for the next sample. */
export interface RateEstimate {
  progress: JobProgress;
  /** Baseline of the next rate sample. */
  sampledAt: number;
  sampledCurrent: number;
}

const percentOf = ({ current, total }: ProgressSample): number => (total > 0 ? Math.min(100, (current / total) * 100) : 0);

function etaOf({ current, total }: ProgressSample, rate: number | null): number | null {
  if (current >= total) return 0;
  return rate !== null && rate > 0 ? (total - current) / rate : null;
}

/** Folds one sample taken at `at` (ms) into the estimate. */
export function advanceRate(previous: RateEstimate | undefined, sample: ProgressSample, at: number, options: RateOptions = {}): RateEstimate {
  const timeConstantMs = options.timeConstantMs ?? 3_000;
  const minIntervalMs = options.minIntervalMs ?? 50;
  let rate = previous?.progress.rate ?? null;
  let sampledAt = at;
  let sampledCurrent = sample.current;
  if (previous) {
    const elapsed = at - previous.sampledAt;
    const advanced = sample.current - previous.sampledCurrent;
    if (elapsed < minIntervalMs && advanced >= 0) {
      // Too close for a meaningful rate: keep the old baseline so the next sample spans more time.
      sampledAt = previous.sampledAt;
      sampledCurrent = previous.sampledCurrent;
    } else if (advanced >= 0) {
      const instant = (advanced / elapsed) * 1000;
      rate = rate === null ? instant : rate + (1 - Math.exp(-elapsed / timeConstantMs)) * (instant - rate);
      // A stalled job's rate decays towards 0 forever; settle it so progress stops changing.
      if (rate < 1) rate = 0;
    }
  }
  return {
    progress: { current: sample.current, total: sample.total, percent: percentOf(sample), rate, etaSeconds: etaOf(sample, rate) },
    sampledAt,
    sampledCurrent,
  };
}

/** Progress of a job that has ended: the numbers stay, rate and ETA no longer mean anything. */
export function finalProgress(progress: JobProgress): JobProgress {
  return { ...progress, rate: null, etaSeconds: null };
}

export const sameProgress = (a: JobProgress, b: JobProgress): boolean =>
  a.current === b.current && a.total === b.total && a.rate === b.rate && a.etaSeconds === b.etaSeconds;
