/** Summaries of latency samples: nearest-rank percentiles over a sorted copy. */

export interface Summary {
  count: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
}

export function percentile(sorted: readonly number[], fraction: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(fraction * sorted.length) - 1));
  return sorted[rank]!;
}

export function summarize(samples: readonly number[]): Summary {
  const sorted = [...samples].sort((a, b) => a - b);
  return {
    count: sorted.length,
    p50: percentile(sorted, 0.5),
    p95: percentile(sorted, 0.95),
    p99: percentile(sorted, 0.99),
    max: sorted.length ? sorted[sorted.length - 1]! : Number.NaN,
  };
}

/** Wall-clock ms with sub-ms precision, comparable across processes on one machine. */
export function wallNow(): number {
  return performance.timeOrigin + performance.now();
}

/** CPU of this process over a window, as a share of one core (1.0 = one core busy). */
export class CpuMeter {
  private startCpu = process.cpuUsage();
  private startMono = performance.now();

  reset(): void {
    this.startCpu = process.cpuUsage();
    this.startMono = performance.now();
  }

  /** { coreShare, cpuMs, wallMs } since the last reset. */
  read(): { coreShare: number; cpuMs: number; wallMs: number } {
    const used = process.cpuUsage(this.startCpu);
    const cpuMs = (used.user + used.system) / 1000;
    const wallMs = performance.now() - this.startMono;
    return { coreShare: wallMs > 0 ? cpuMs / wallMs : 0, cpuMs, wallMs };
  }
}

/** Collects GC'd memory numbers; needs `--expose-gc` (the bench host is forked with it). */
export async function settledMemory(): Promise<{ rss: number; heapUsed: number }> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error('memory figures need node --expose-gc (the bench host is started with it)');
  for (let i = 0; i < 3; i++) {
    gc();
    await new Promise((resolve) => setImmediate(resolve));
  }
  const usage = process.memoryUsage();
  return { rss: usage.rss, heapUsed: usage.heapUsed };
}
