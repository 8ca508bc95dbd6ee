/**
 * (5) Burst: one transition fanned out to 10,000 subscribers (forked). A slow mirror on a simulated VM
 * (forked) is set to unlimited speed, converges, and QEMU's ready becomes one transition to every
 * subscriber. Measured in this process: the longest event-loop stall while it fans out (how long QMP
 * handling is blocked), and per subscriber the lag from the gateway's QMP receive to its receive.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { startBenchGateway } from '../lib/gateway.js';
import { sleep, waitFor } from '../lib/resources.js';
import { count, forkLoad, ms, type Row, type Scenario } from '../lib/scenario.js';
import { summarize, type Summary } from '../lib/stats.js';

const KiB = 1024;

export const burst: Scenario = async (context) => {
  const { quick, resources, log } = context;
  const subscribersCount = quick ? 3000 : 10_000;
  const repeats = quick ? 2 : 5;
  const sim = forkLoad(context, 'simulator');
  const subscribers = forkLoad(context, 'subscribers');
  const { addresses } = await sim.call<{ addresses: Record<string, string> }>('start', { vms: 1, tickMs: 50, readyWindowMs: 50 });
  // Slow mirrors (64 MiB at 16 KiB/s) that stay running until their speed limit is lifted.
  await sim.call('startJobs', { perVm: repeats, job: { idPrefix: 'b', type: 'mirror', speed: 16 * KiB } });
  const probe = await startBenchGateway(resources, addresses);
  await waitFor(`${repeats} running mirrors in the gateway`, () => probe.registry.snapshot()[0]?.jobs.filter((job) => job.state === 'running').length === repeats, 30_000);
  const readyAt = new Map<string, number>();
  probe.onTransition((transition, qmpWall) => {
    if (transition.to.ready === true && transition.from?.ready !== true && qmpWall !== undefined) readyAt.set(transition.job.id, qmpWall);
  });
  await subscribers.call('connect', { url: probe.gateway.wsUrl, count: subscribersCount, mode: 'gateway' });
  log(`burst: ${count(subscribersCount)} subscribers synced`);

  const bursts: Array<{ stallMs: number; latency: Summary }> = [];
  for (let i = 0; i < repeats; i++) {
    const id = `b${i}`;
    await subscribers.call('watch', { parts: [`"id":"${id}"`, '"to":"ready"'] });
    const delay = monitorEventLoopDelay({ resolution: 1 });
    delay.enable();
    await sim.call('setSpeed', { vm: 'vm1', id, speed: 0 });
    const watched = await waitFor(
      `ready of ${id} at all ${subscribersCount} subscribers`,
      async () => {
        const seen = await subscribers.call<{ times: number[]; missing: number }>('watched');
        return seen.missing === 0 ? seen : undefined;
      },
      60_000,
      100,
    );
    delay.disable();
    const origin = readyAt.get(id);
    if (origin === undefined) throw new Error(`the gateway never reported ${id} ready`);
    const burst = { stallMs: delay.max / 1e6, latency: summarize(watched.times.map((t) => t - origin)) };
    bursts.push(burst);
    log(`burst ${i + 1}/${repeats}: longest stall ${ms(burst.stallMs)} ms, p99 ${ms(burst.latency.p99)} ms, last ${ms(burst.latency.max)} ms`);
    await sleep(500);
  }
  await subscribers.call('disconnectAll');

  const worst = (pick: (b: (typeof bursts)[number]) => number) => Math.max(...bursts.map(pick));
  const median = (pick: (b: (typeof bursts)[number]) => number) => summarize(bursts.map(pick)).p50;
  const rows: Row[] = [
    {
      metric: `one transition to ${count(subscribersCount)} subscribers: longest event-loop stall (${repeats} bursts)`,
      value: `median ${ms(median((b) => b.stallMs))} / worst ${ms(worst((b) => b.stallMs))} ms`,
    },
    {
      metric: 'QMP receive -> subscriber: p50 / p99 / last subscriber (median of bursts)',
      value: `${ms(median((b) => b.latency.p50))} / ${ms(median((b) => b.latency.p99))} / ${ms(median((b) => b.latency.max))} ms`,
    },
  ];
  return { name: 'burst', rows, raw: { subscribers: subscribersCount, bursts } };
};
