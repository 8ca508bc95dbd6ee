/**
 * One timer for every simulated job in the process: a thousand VMs with a few jobs each cost one
 * interval, and the timer runs only while some job is active. Elapsed time is measured, not
 * assumed, so a loaded event loop slows jobs down instead of making them jump.
 */
import { performance } from 'node:perf_hooks';
import type { SimJob } from './job.js';
import type { SimTicker } from './vm.js';

export class SharedTicker implements SimTicker {
  private readonly jobs = new Set<SimJob>();
  private timer: NodeJS.Timeout | undefined;
  private last = 0;

  constructor(private readonly tickMs: number) {
    if (!(tickMs > 0)) throw new RangeError(`tickMs must be > 0, got ${tickMs}`);
  }

  add(job: SimJob): void {
    this.jobs.add(job);
    if (this.timer) return;
    this.last = performance.now();
    this.timer = setInterval(() => this.tick(), this.tickMs);
    this.timer.unref();
  }

  delete(job: SimJob): void {
    this.jobs.delete(job);
    if (this.jobs.size === 0) this.stop();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  private tick(): void {
    const now = performance.now();
    const elapsed = now - this.last;
    this.last = now;
    for (const job of [...this.jobs]) {
      if (job.active) job.tick(now, elapsed);
      else this.delete(job); // concluded jobs waiting for dismiss need no time
    }
  }
}
