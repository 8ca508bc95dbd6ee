/**
 * A process's stalls over a window: event-loop delay (how long a ready event could wait for its
 * turn) and garbage-collection pauses (PerformanceObserver 'gc': the time V8 held the main thread).
 * Each of the fleet's processes reports it, so a latency tail can be laid at the stage that stalled.
 */
import { monitorEventLoopDelay, PerformanceObserver } from 'node:perf_hooks';

export interface Stalls {
  /** Event-loop delay p99 and max, ms. */
  p99: number;
  max: number;
  /** The longest GC pause and all GC pauses together over the window, ms. */
  gcMax: number;
  gcTotal: number;
}

export function watchLoop(): () => Stalls {
  const delay = monitorEventLoopDelay({ resolution: 1 });
  delay.enable();
  let gcMax = 0;
  let gcTotal = 0;
  const gc = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      gcMax = Math.max(gcMax, entry.duration);
      gcTotal += entry.duration;
    }
  });
  gc.observe({ entryTypes: ['gc'] });
  return () => {
    delay.disable();
    gc.disconnect();
    return { p99: delay.percentile(99) / 1e6, max: delay.max / 1e6, gcMax, gcTotal };
  };
}
