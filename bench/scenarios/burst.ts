/**
 * (5) Burst: one transition fanned out to N subscribers (forked), N swept up to 10,000. A slow mirror on a simulated VM
 * (forked) is set to unlimited speed, converges, and QEMU's ready becomes one transition to every
 * subscriber. Measured in this process: the longest event-loop stall while it fans out (how long QMP
 * handling is blocked), the CPU for the burst, and per subscriber the lag from the gateway's QMP receive
 * to its receive. Right after each burst the same frame goes through the bare `ws` baseline
 * (bench/load/bare-burst.ts: one tight send loop) to as many clients, so each step shows the physical
 * floor next to ours in the same run.
 *
 * Both audiences are lean subscribers (bench/load/lean-ws.ts: raw frames, stamped when their bytes
 * arrive): through the `ws` client the subscribers' process spent more CPU per frame than the server
 * did per write, so "last" measured the receivers. Each side's receivers report their CPU per frame.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { startBenchGateway } from '../lib/gateway.js';
import { sleep, waitFor } from '../lib/resources.js';
import type { RpcChild } from '../lib/rpc.js';
import { count, envList, forkLoad, ms, type Row, type Scenario, type Series } from '../lib/scenario.js';
import { CpuMeter, summarize, wallNow, type Summary } from '../lib/stats.js';

const KiB = 1024;
/** A burst must reach every subscriber within this, or the run fails. */
const BURST_TIMEOUT_MS = 60_000;

interface Watched {
  times: number[];
  missing: number;
  /** The receivers' process CPU from the watch until the last subscriber had the frame. */
  cpuMs?: number;
  frame?: string;
}

/**
 * Waits until every subscriber has the watched frame, then fetches the receive times. Two calls: the
 * times of 10,000 subscribers are a ~200 KB IPC message whose parsing in this process would count
 * as a stall and as gateway CPU if it arrived inside the measured window.
 */
async function watchedAll(subscribers: RpcChild, what: string, measured: () => void): Promise<Watched & { cpuMs: number; frame: string }> {
  const done = await subscribers.call<{ missing: number }>('waitWatched', { timeoutMs: BURST_TIMEOUT_MS }, BURST_TIMEOUT_MS + 10_000);
  measured();
  if (done.missing > 0) throw new Error(`${what}: ${done.missing} subscribers never got it`);
  const seen = await subscribers.call<Watched>('watched');
  if (seen.cpuMs === undefined || seen.frame === undefined) throw new Error(`${what}: no receive record`);
  return seen as Watched & { cpuMs: number; frame: string };
}

export const burst: Scenario = async (context) => {
  const { quick, resources, log } = context;
  // A sweep: subscribers are added step by step, `repeats` bursts at each step.
  // BENCH_BURST_SIZES (comma-separated) and BENCH_BURST_REPEATS narrow a run for A/B pairs, e.g. 10000 x 10.
  const sizes = envList('BENCH_BURST_SIZES') ?? (quick ? [500, 2000] : [1000, 5000, 10_000]);
  const repeats = envList('BENCH_BURST_REPEATS')?.[0] ?? (quick ? 2 : 5);
  const jobs = sizes.length * repeats;
  const sim = forkLoad(context, 'simulator');
  const subscribers = forkLoad(context, 'subscribers');
  const bare = forkLoad(context, 'bare-burst');
  const bareSubscribers = forkLoad(context, 'subscribers');
  const { addresses } = await sim.call<{ addresses: Record<string, string> }>('start', { vms: 1, tickMs: 50, readyWindowMs: 50 });
  // Slow mirrors (64 MiB at 16 KiB/s) that stay running until their speed limit is lifted.
  await sim.call('startJobs', { perVm: jobs, job: { idPrefix: 'b', type: 'mirror', speed: 16 * KiB } });
  const probe = await startBenchGateway(resources, addresses, { probe: 'before' });
  const { url: bareUrl } = await bare.call<{ url: string }>('start');
  await waitFor(`${jobs} running mirrors in the gateway`, () => probe.registry.snapshot()[0]?.jobs.filter((job) => job.state === 'running').length === jobs, 30_000);
  const readyAt = new Map<string, number>();
  // Messages the gateway sent (any type) during a burst's window: the burst's own, and whatever else went out.
  const sentMessages = () => [...probe.gateway.core.stats.sentByType.values()].reduce((sum, t) => sum + t.messages, 0);
  // The fan-out's own cost, like the baseline's send loop: CPU from the ready transition's emission
  // (this listener runs before the gateway's) to the end of its fan-out pass (the delivery-lag hook),
  // without the rest of the window (the simulated mirror converging, safety-net polls, RPC).
  let fanout: { cpu: NodeJS.CpuUsage; cpuMs?: number; doneWall?: number } | undefined;
  probe.onTransition((transition, qmpWall) => {
    if (transition.to.ready !== true || transition.from?.ready === true || qmpWall === undefined) return;
    readyAt.set(transition.job.id, qmpWall);
    fanout = { cpu: process.cpuUsage() };
  });
  const stats = probe.gateway.core.stats;
  const observeLag = stats.onDeliveryLag;
  stats.onDeliveryLag = (seconds) => {
    if (fanout && fanout.cpuMs === undefined) {
      const used = process.cpuUsage(fanout.cpu);
      fanout.cpuMs = (used.user + used.system) / 1000;
      fanout.doneWall = wallNow();
    }
    observeLag?.(seconds);
  };

  const steps: Array<{ subscribers: number; bursts: Burst[]; bare: BareBurst[] }> = [];
  /** Each gateway burst's window on the monotonic clock in µs (a --cpu-prof profile's timestamps), to cut the profile. */
  const windowsUs: Array<[number, number]> = [];
  const monoUs = () => Number(process.hrtime.bigint() / 1000n);
  let connected = 0;
  let next = 0;
  for (const size of sizes) {
    await subscribers.call('connect', { url: probe.gateway.wsUrl, count: size - connected, mode: 'gateway', lean: true });
    await bareSubscribers.call('connect', { url: bareUrl, count: size - connected, mode: 'bare', lean: true });
    connected = size;
    log(`burst: ${count(size)} subscribers synced (and as many on the bare ws baseline)`);
    const bursts: Burst[] = [];
    const bareBursts: BareBurst[] = [];
    for (let i = 0; i < repeats; i++) {
      const id = `b${next++}`;
      const parts = [`"id":"${id}"`, '"to":"ready"'];
      await subscribers.call('watch', { parts });
      const delay = monitorEventLoopDelay({ resolution: 1 });
      delay.enable();
      const cpu = new CpuMeter();
      const sentBefore = sentMessages();
      const from = monoUs();
      await sim.call('setSpeed', { vm: 'vm1', id, speed: 0 });
      let cpuMs = 0;
      const watched = await watchedAll(subscribers, `ready of ${id} at ${size} subscribers`, () => {
        delay.disable();
        windowsUs.push([from, monoUs()]);
        // Robust on a loaded machine, unlike the wall-clock figures: the gateway's CPU for the whole burst.
        cpuMs = cpu.read().cpuMs;
      });
      const origin = readyAt.get(id);
      if (origin === undefined || fanout?.cpuMs === undefined) throw new Error(`the gateway never reported ${id} ready, or its fan-out never ended`);
      const fanoutCpuMs = fanout.cpuMs;
      const fanoutDoneMs = fanout.doneWall! - origin;
      fanout = undefined;
      const burst: Burst = { stallMs: delay.max / 1e6, latency: summarize(watched.times.map((t) => t - origin)), cpuMs, receiversCpuMs: watched.cpuMs, sent: sentMessages() - sentBefore, firstMs: Math.min(...watched.times) - origin, fanoutCpuMs, fanoutDoneMs };
      bursts.push(burst);
      await sleep(300);

      // The same bytes through the bare baseline, right after: an A/B pair on whatever load the machine has.
      await bareSubscribers.call('watch', { parts });
      const sent = await bare.call<{ t0: number; loopMs: number; loopCpuMs: number; clients: number }>('burst', { text: watched.frame });
      let bareCpu: Promise<{ cpuMs: number }> | undefined;
      const bareWatched = await watchedAll(bareSubscribers, `bare burst to ${sent.clients} clients`, () => (bareCpu = bare.call<{ cpuMs: number }>('cpuSinceBurst')));
      const { cpuMs: bareCpuMs } = await bareCpu!;
      const bareBurst: BareBurst = { loopMs: sent.loopMs, loopCpuMs: sent.loopCpuMs, latency: summarize(bareWatched.times.map((t) => t - sent.t0)), cpuMs: bareCpuMs, receiversCpuMs: bareWatched.cpuMs, firstMs: Math.min(...bareWatched.times) - sent.t0, frameBytes: Buffer.byteLength(watched.frame) };
      bareBursts.push(bareBurst);
      log(
        `burst ${i + 1}/${repeats} to ${count(size)}: gateway stall ${ms(burst.stallMs)} ms, first ${ms(burst.firstMs)} / p50 ${ms(burst.latency.p50)} / last ${ms(burst.latency.max)} ms, fan-out CPU ${ms(fanoutCpuMs)} ms (done at ${ms(fanoutDoneMs)} ms), window CPU ${ms(cpuMs)} ms for ${count(burst.sent)} messages, receivers ${ms(burst.receiversCpuMs)} ms; ` +
          `bare loop ${ms(bareBurst.loopMs)} ms (CPU ${ms(bareBurst.loopCpuMs)}), first ${ms(bareBurst.firstMs)} / p50 ${ms(bareBurst.latency.p50)} / last ${ms(bareBurst.latency.max)} ms, CPU ${ms(bareCpuMs)} ms, receivers ${ms(bareBurst.receiversCpuMs)} ms`,
      );
      await sleep(300);
    }
    steps.push({ subscribers: size, bursts, bare: bareBursts });
  }
  await subscribers.call('disconnectAll');
  await bareSubscribers.call('disconnectAll');

  const worst = <B>(bursts: B[], pick: (b: B) => number) => Math.max(...bursts.map(pick));
  const median = <B>(bursts: B[], pick: (b: B) => number) => summarize(bursts.map(pick)).p50;
  const perDelivery = (cpuMs: number, n: number) => ((cpuMs * 1000) / n).toFixed(1);
  const top = steps[steps.length - 1]!;
  const goalMet = !quick && top.subscribers >= 10_000 && worst(top.bursts, (b) => b.stallMs) <= 10 && worst(top.bursts, (b) => b.latency.max) <= 100;
  const lean = 'lean subscribers (raw frames, stamped on arrival), the same for both';
  const rows: Row[] = steps.flatMap(({ subscribers: n, bursts, bare: bareBursts }) => [
    {
      metric: `one transition to ${count(n)} subscribers: longest event-loop stall (bare ws: its send loop)`,
      value: `median ${ms(median(bursts, (b) => b.stallMs))} / worst ${ms(worst(bursts, (b) => b.stallMs))} ms (bare ws: median ${ms(median(bareBursts, (b) => b.loopMs))} ms)`,
      samples: `${bursts.length} bursts each`,
    },
    {
      metric: `one transition to ${count(n)} subscribers: CPU of the fan-out (transition -> its pass done) vs bare ws's send loop, per delivery; receivers' CPU per frame`,
      value:
        `gateway median ${ms(median(bursts, (b) => b.fanoutCpuMs))} ms (${perDelivery(median(bursts, (b) => b.fanoutCpuMs), n)} µs), bare ws ${ms(median(bareBursts, (b) => b.loopCpuMs))} ms (${perDelivery(median(bareBursts, (b) => b.loopCpuMs), n)} µs); ` +
        `receivers ${perDelivery(median(bursts, (b) => b.receiversCpuMs), n)} / ${perDelivery(median(bareBursts, (b) => b.receiversCpuMs), n)} µs`,
      samples: `${bursts.length} bursts each`,
    },
    {
      metric: `one transition to ${count(n)} subscribers: gateway CPU over the whole burst window (the mirror converging, polls, RPC included)`,
      value: `median ${ms(median(bursts, (b) => b.cpuMs))} ms (${perDelivery(median(bursts, (b) => b.cpuMs), n)} µs)`,
      samples: `${bursts.length} bursts`,
    },
    {
      metric: `${count(n)} subscribers: bare ws baseline, send -> subscriber p50 / last (median of bursts; worst last), ${lean}`,
      value: `${ms(median(bareBursts, (b) => b.latency.p50))} / ${ms(median(bareBursts, (b) => b.latency.max))} ms; worst last ${ms(worst(bareBursts, (b) => b.latency.max))} ms (${bareBursts[0]?.frameBytes ?? 0} B frame)`,
      samples: `${bareBursts.length} bursts x ${count(n)} deliveries`,
    },
    {
      metric: `${count(n)} subscribers: QMP receive -> subscriber p50 / p99 / last (median of bursts; worst last), ${lean}`,
      value: `${ms(median(bursts, (b) => b.latency.p50))} / ${ms(median(bursts, (b) => b.latency.p99))} / ${ms(median(bursts, (b) => b.latency.max))} ms; worst last ${ms(worst(bursts, (b) => b.latency.max))} ms (fan-out done at ${ms(median(bursts, (b) => b.fanoutDoneMs))} ms)`,
      samples: `${bursts.length} bursts x ${count(n)} deliveries`,
      ...(n === top.subscribers && !quick ? { goal: 'worst stall <= 10 ms, worst last <= 100 ms', met: goalMet } : {}),
    },
  ]);
  const curve = (name: string, chart: string, title: string, y: string, pick: (step: (typeof steps)[number]) => number): Series => ({
    chart, title, x: 'subscribers', y, name, points: steps.map((step) => ({ x: step.subscribers, y: pick(step) })),
  });
  const latencyTitle = 'One transition to N subscribers: QMP receive (bare ws: send) -> subscriber';
  const series: Series[] = [
    curve('longest stall, worst', 'burst-stall', 'One transition to N subscribers: event-loop stall', 'ms', (s) => worst(s.bursts, (x) => x.stallMs)),
    curve('longest stall, median', 'burst-stall', 'One transition to N subscribers: event-loop stall', 'ms', (s) => median(s.bursts, (x) => x.stallMs)),
    curve('last subscriber, median', 'burst-latency', latencyTitle, 'ms', (s) => median(s.bursts, (x) => x.latency.max)),
    curve('p50 subscriber, median', 'burst-latency', latencyTitle, 'ms', (s) => median(s.bursts, (x) => x.latency.p50)),
    curve('bare ws: last subscriber, median', 'burst-latency', latencyTitle, 'ms', (s) => median(s.bare, (x) => x.latency.max)),
  ];
  return { name: 'burst', rows, series, raw: { sizes, repeats, receivers: lean, steps, windowsUs } };
};

type Burst = { stallMs: number; latency: Summary; cpuMs: number; receiversCpuMs: number; sent: number; firstMs: number; fanoutCpuMs: number; fanoutDoneMs: number };
type BareBurst = { loopMs: number; loopCpuMs: number; firstMs: number; latency: Summary; cpuMs: number; receiversCpuMs: number; frameBytes: number };
