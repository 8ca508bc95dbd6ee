/**
 * (5) Burst: one transition fanned out to N subscribers (forked), N swept up to 10,000. A slow mirror on a simulated VM
 * (forked) is set to unlimited speed, converges, and QEMU's ready becomes one transition to every
 * subscriber. Measured in this process: the longest event-loop stall while it fans out (how long QMP
 * handling is blocked), and per subscriber the lag from the gateway's QMP receive to its receive.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { startBenchGateway } from '../lib/gateway.js';
import { sleep, waitFor } from '../lib/resources.js';
import { count, forkLoad, ms, type Row, type Scenario, type Series } from '../lib/scenario.js';
import { CpuMeter, summarize, type Summary } from '../lib/stats.js';

const KiB = 1024;

export const burst: Scenario = async (context) => {
  const { quick, resources, log } = context;
  // A sweep: subscribers are added step by step, `repeats` bursts at each step.
  const sizes = quick ? [500, 2000] : [1000, 5000, 10_000];
  const repeats = quick ? 2 : 5;
  const jobs = sizes.length * repeats;
  const sim = forkLoad(context, 'simulator');
  const subscribers = forkLoad(context, 'subscribers');
  const { addresses } = await sim.call<{ addresses: Record<string, string> }>('start', { vms: 1, tickMs: 50, readyWindowMs: 50 });
  // Slow mirrors (64 MiB at 16 KiB/s) that stay running until their speed limit is lifted.
  await sim.call('startJobs', { perVm: jobs, job: { idPrefix: 'b', type: 'mirror', speed: 16 * KiB } });
  const probe = await startBenchGateway(resources, addresses);
  await waitFor(`${jobs} running mirrors in the gateway`, () => probe.registry.snapshot()[0]?.jobs.filter((job) => job.state === 'running').length === jobs, 30_000);
  const readyAt = new Map<string, number>();
  probe.onTransition((transition, qmpWall) => {
    if (transition.to.ready === true && transition.from?.ready !== true && qmpWall !== undefined) readyAt.set(transition.job.id, qmpWall);
  });

  const steps: Array<{ subscribers: number; bursts: Burst[] }> = [];
  let connected = 0;
  let next = 0;
  for (const size of sizes) {
    await subscribers.call('connect', { url: probe.gateway.wsUrl, count: size - connected, mode: 'gateway' });
    connected = size;
    log(`burst: ${count(size)} subscribers synced`);
    const bursts: Burst[] = [];
    for (let i = 0; i < repeats; i++) {
      const id = `b${next++}`;
      await subscribers.call('watch', { parts: [`"id":"${id}"`, '"to":"ready"'] });
      const delay = monitorEventLoopDelay({ resolution: 1 });
      delay.enable();
      const cpu = new CpuMeter();
      await sim.call('setSpeed', { vm: 'vm1', id, speed: 0 });
      const watched = await waitFor(
        `ready of ${id} at all ${size} subscribers`,
        async () => {
          const seen = await subscribers.call<{ times: number[]; missing: number }>('watched');
          return seen.missing === 0 ? seen : undefined;
        },
        60_000,
        100,
      );
      delay.disable();
      // Robust on a loaded machine, unlike the wall-clock figures: the gateway's CPU for the whole burst.
      const { cpuMs } = cpu.read();
      const origin = readyAt.get(id);
      if (origin === undefined) throw new Error(`the gateway never reported ${id} ready`);
      const burst = { stallMs: delay.max / 1e6, latency: summarize(watched.times.map((t) => t - origin)), cpuMs };
      bursts.push(burst);
      log(`burst ${i + 1}/${repeats} to ${count(size)}: longest stall ${ms(burst.stallMs)} ms, p99 ${ms(burst.latency.p99)} ms, last ${ms(burst.latency.max)} ms, gateway CPU ${ms(cpuMs)} ms`);
      await sleep(500);
    }
    steps.push({ subscribers: size, bursts });
  }
  await subscribers.call('disconnectAll');

  const worst = (bursts: Burst[], pick: (b: Burst) => number) => Math.max(...bursts.map(pick));
  const median = (bursts: Burst[], pick: (b: Burst) => number) => summarize(bursts.map(pick)).p50;
  const top = steps[steps.length - 1]!;
  const goalMet = !quick && worst(top.bursts, (b) => b.stallMs) <= 10 && worst(top.bursts, (b) => b.latency.max) <= 100;
  const rows: Row[] = steps.flatMap(({ subscribers: n, bursts }) => [
    {
      metric: `one transition to ${count(n)} subscribers: longest event-loop stall`,
      value: `median ${ms(median(bursts, (b) => b.stallMs))} / worst ${ms(worst(bursts, (b) => b.stallMs))} ms`,
      samples: `${bursts.length} bursts`,
    },
    {
      metric: `one transition to ${count(n)} subscribers: gateway CPU for the burst (per delivery)`,
      value: `median ${ms(median(bursts, (b) => b.cpuMs))} ms (${((median(bursts, (b) => b.cpuMs) * 1000) / n).toFixed(1)} µs)`,
      samples: `${bursts.length} bursts`,
    },
    {
      metric: `${count(n)} subscribers: QMP receive -> subscriber p50 / p99 / last (median of bursts; worst last)`,
      value: `${ms(median(bursts, (b) => b.latency.p50))} / ${ms(median(bursts, (b) => b.latency.p99))} / ${ms(median(bursts, (b) => b.latency.max))} ms; worst last ${ms(worst(bursts, (b) => b.latency.max))} ms`,
      samples: `${bursts.length} bursts x ${count(n)} deliveries`,
      ...(n === top.subscribers && !quick ? { goal: 'worst stall <= 10 ms, worst last <= 100 ms', met: goalMet } : {}),
    },
  ]);
  const curve = (name: string, chart: string, title: string, y: string, pick: (bursts: Burst[]) => number): Series => ({
    chart, title, x: 'subscribers', y, name, points: steps.map((step) => ({ x: step.subscribers, y: pick(step.bursts) })),
  });
  const series: Series[] = [
    curve('longest stall, worst', 'burst-stall', 'One transition to N subscribers: event-loop stall', 'ms', (b) => worst(b, (x) => x.stallMs)),
    curve('longest stall, median', 'burst-stall', 'One transition to N subscribers: event-loop stall', 'ms', (b) => median(b, (x) => x.stallMs)),
    curve('last subscriber, median', 'burst-latency', 'One transition to N subscribers: QMP receive -> subscriber', 'ms', (b) => median(b, (x) => x.latency.max)),
    curve('p50 subscriber, median', 'burst-latency', 'One transition to N subscribers: QMP receive -> subscriber', 'ms', (b) => median(b, (x) => x.latency.p50)),
  ];
  return { name: 'burst', rows, series, raw: { sizes, repeats, steps } };
};

type Burst = { stallMs: number; latency: Summary; cpuMs: number };
