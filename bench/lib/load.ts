/**
 * How loaded the machine is when a run starts. The load average alone misleads: it decays with a
 * one-minute time constant, so right after another run ends it still reads "busy" on an idle machine.
 * So the run samples what actually runs for a few seconds (/proc/stat's busy share, /proc/loadavg's
 * runnable count), this process excluded, labels from that, and prints the load average beside it.
 */
import { readFile } from 'node:fs/promises';
import { cpus, loadavg } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';

export interface LoadSample {
  cores: number;
  /** The 1- and 5-minute load averages at the end of the sample. */
  loadAverage: readonly [number, number];
  /** Cores' worth of CPU busy during the sample, less this process's own CPU. */
  busyCores: number;
  /** This process's own CPU during the sample, in cores' worth (subtracted from busyCores). */
  ownCores: number;
  /** Mean count of tasks running or runnable during the sample, less the sampler itself. */
  runnable: number;
  sampleMs: number;
}

/** Above this share of the cores busy, wall-clock figures include waiting for a CPU. */
const LOADED_SHARE = 0.5;

/** Busy and total jiffies of all CPUs, from /proc/stat's first line. */
export function cpuTicks(procStat: string): { busy: number; total: number } {
  const line = procStat.slice(0, procStat.indexOf('\n'));
  const fields = line.trim().split(/\s+/);
  if (fields[0] !== 'cpu') throw new Error(`/proc/stat: expected the "cpu" line first, got ${JSON.stringify(line)}`);
  // user nice system idle iowait irq softirq steal (guest time is already in user and nice).
  const [user, nice, system, idle, iowait, irq, softirq, steal] = fields.slice(1, 9).map((field) => Number(field) || 0);
  const busy = user! + nice! + system! + irq! + softirq!;
  return { busy, total: busy + idle! + iowait! + steal! };
}

/** Tasks running or runnable now, from /proc/loadavg's fourth field ("running/total"). */
export function runnableTasks(procLoadavg: string): number {
  const match = /^\s*\S+\s+\S+\s+\S+\s+(\d+)\/\d+/.exec(procLoadavg);
  if (!match) throw new Error(`/proc/loadavg: no running/total field in ${JSON.stringify(procLoadavg)}`);
  return Number(match[1]);
}

/** Samples the machine for `sampleMs` (the caller's own work should be done; this process is subtracted). */
export async function sampleLoad(sampleMs = 2_500, everyMs = 100): Promise<LoadSample> {
  const cores = cpus().length;
  const ticks0 = cpuTicks(await readFile('/proc/stat', 'utf8'));
  const own0 = process.cpuUsage();
  const t0 = performance.now();
  let runnableSum = 0;
  let reads = 0;
  while (performance.now() - t0 < sampleMs) {
    await sleep(everyMs);
    // The reading task is itself running: it is not load.
    runnableSum += Math.max(0, runnableTasks(await readFile('/proc/loadavg', 'utf8')) - 1);
    reads++;
  }
  const ticks1 = cpuTicks(await readFile('/proc/stat', 'utf8'));
  const own = process.cpuUsage(own0);
  const wallMs = performance.now() - t0;
  const totalTicks = ticks1.total - ticks0.total;
  const busyShare = totalTicks > 0 ? (ticks1.busy - ticks0.busy) / totalTicks : 0;
  const ownCores = (own.user + own.system) / 1000 / wallMs;
  const [one, five] = loadavg();
  return {
    cores,
    loadAverage: [one!, five!],
    busyCores: Math.max(0, busyShare * cores - ownCores),
    ownCores,
    runnable: reads > 0 ? runnableSum / reads : 0,
    sampleMs: Math.round(wallMs),
  };
}

/** The run's load line: loaded or quiet by what ran in the sample, with the load average beside it. */
export function describeLoad(sample: LoadSample): string {
  const { cores, busyCores, runnable } = sample;
  const [one, five] = sample.loadAverage;
  const limit = cores * LOADED_SHARE;
  const measured = `${busyCores.toFixed(2)} of ${cores} cores busy and ${runnable.toFixed(1)} tasks runnable on average in the ${(sample.sampleMs / 1000).toFixed(1)} s before the run (this process excluded)`;
  const average = `load average ${one.toFixed(1)} (1 min) / ${five.toFixed(1)} (5 min)`;
  if (busyCores > limit || runnable > limit) {
    return `${measured}; ${average}: a LOADED, SHARED machine, so latencies, stalls and tails are upper bounds; CPU per delivery and allocation counts are the robust figures`;
  }
  if (one > limit) return `${measured}; ${average}: quiet at the start (the load average is the decay of earlier work)`;
  return `${measured}; ${average}: quiet at the start`;
}
