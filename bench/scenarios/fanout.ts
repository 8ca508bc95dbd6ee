/**
 * (2) Fan-out: the QMP simulator (forked) cycles short backup jobs on 20 VMs, each a full lifecycle of
 * transitions; N subscribers (forked) receive every transition. Latency is QMP receive in the gateway
 * to frame receive in the subscriber process. Baseline in the same run: a bare `ws` server in this
 * process broadcasting pre-serialized frames of the same size, at the same frame rate, to the same N.
 * The gateway's share of the transport's ceiling is the ratio of CPU per delivery (bare / gateway).
 */
import { WebSocketServer } from 'ws';
import type { AddressInfo } from 'node:net';
import { startBenchGateway, type BenchGateway } from '../lib/gateway.js';
import { sleep, waitFor, type Resources } from '../lib/resources.js';
import type { RpcChild } from '../lib/rpc.js';
import { count, envList, forkLoad, ms, percent, type Row, type Scenario, type Series } from '../lib/scenario.js';
import { CpuMeter, summarize, wallNow, type Summary } from '../lib/stats.js';

const VMS = 20;
const JOB_BYTES = 1024 * 1024;
/** Deliveries per second offered to both servers: well inside one core, so latency is not queueing. */
const TARGET_DELIVERIES_PER_SEC = 20_000;
const LATENCY_SAMPLES_PER_WINDOW = 4000;
const BARE_TICK_MS = 5;
const RETENTION_MS = 1000;
/** Gateway/bare window pairs below 1,000 subscribers (the row reports the median share). */
const PAIRS_AT_SMALL_N = 3;

interface Window {
  deliveriesPerSec: number;
  framesPerSec: number;
  latency: Summary;
  deliveries: number;
  /** The window's real length (longer than asked on a loaded machine). */
  wallSeconds: number;
  coreShare: number;
  cpuMicrosPerDelivery: number;
  closedSubscribers: number;
}

interface Recording {
  deliveries: number;
  samples: Array<{ recv: number; key?: string; sent?: number }>;
  closes: number;
}

async function recordWindow(subscribers: RpcChild, n: number, seconds: number, latencyOf: (sample: Recording['samples'][number]) => number | undefined): Promise<Window> {
  const every = Math.max(1, Math.floor((TARGET_DELIVERIES_PER_SEC * seconds) / LATENCY_SAMPLES_PER_WINDOW));
  await subscribers.call('startRecording', { every });
  const cpu = new CpuMeter();
  await sleep(seconds * 1000);
  const used = cpu.read();
  const recording = await subscribers.call<Recording>('stopRecording');
  const latencies = recording.samples.flatMap((sample) => {
    const latency = latencyOf(sample);
    return latency === undefined ? [] : [latency];
  });
  const deliveriesPerSec = recording.deliveries / (used.wallMs / 1000);
  return {
    deliveriesPerSec,
    framesPerSec: deliveriesPerSec / n,
    latency: summarize(latencies),
    deliveries: recording.deliveries,
    wallSeconds: used.wallMs / 1000,
    coreShare: used.coreShare,
    cpuMicrosPerDelivery: recording.deliveries > 0 ? (used.cpuMs * 1000) / recording.deliveries : Number.NaN,
    closedSubscribers: recording.closes,
  };
}

/**
 * A bare ws server sending a frame of `frameBytes` to every client, `framesPerSec` times a second:
 * one pre-serialized Buffer for all (the ceiling), or, `perClient`, a string built per client as the
 * gateway must (its frames carry each subscription's own `sub` and `prev`).
 */
async function bareBroadcast(
  resources: Resources,
  subscribers: RpcChild,
  n: number,
  framesPerSec: number,
  frameBytes: number,
  seconds: number,
  warmupSec: number,
  perClient: boolean,
): Promise<Window> {
  const server = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
  const closeServer = () => new Promise<void>((resolve) => {
    for (const client of server.clients) client.terminate();
    server.close(() => resolve());
  });
  resources.defer('bare ws server', closeServer);
  await new Promise<void>((resolve) => server.once('listening', () => resolve()));
  const url = `ws://127.0.0.1:${(server.address() as AddressInfo).port}`;
  await subscribers.call('connect', { url, count: n, mode: 'bare' });
  const padding = 'x'.repeat(Math.max(0, frameBytes - '{"t":1764106000000.123,"prev":1000,"p":""}'.length));
  const startedAt = performance.now();
  let sent = 0;
  const timer = setInterval(() => {
    const due = Math.floor(((performance.now() - startedAt) / 1000) * framesPerSec);
    for (; sent < due; sent++) {
      const head = `{"t":${wallNow().toFixed(3)},"prev":`;
      if (perClient) {
        let i = 0;
        for (const client of server.clients) client.send(`${head}${i++},"p":"${padding}"}`);
      } else {
        const frame = Buffer.from(`${head}0,"p":"${padding}"}`);
        for (const client of server.clients) client.send(frame);
      }
    }
  }, BARE_TICK_MS);
  try {
    await sleep(warmupSec * 1000);
    return await recordWindow(subscribers, n, seconds, (sample) => (sample.sent === undefined ? undefined : sample.recv - sample.sent));
  } finally {
    clearInterval(timer);
    await subscribers.call('disconnectAll');
    await closeServer();
  }
}

const jobsHeld = (probe: BenchGateway): number => probe.registry.snapshot().reduce((sum, vm) => sum + vm.jobs.length, 0);

export const fanout: Scenario = async ({ quick, resources, log }) => {
  // Up to the per-process fd hard limit (20,000) less headroom, as in idle.ts.
  // BENCH_FANOUT_SIZES (e.g. 19800) narrows the sweep for a diagnosis; such a run never rewrites the docs.
  const sizes = envList('BENCH_FANOUT_SIZES') ?? (quick ? [100, 1000] : [100, 1000, 10_000, 19_800]);
  const seconds = quick ? 2 : 10;
  const warmupSec = quick ? 0.5 : 2;
  const sim = forkLoad({ quick, resources, log }, 'simulator');
  const subscribers = forkLoad({ quick, resources, log }, 'subscribers');
  const { addresses } = await sim.call<{ addresses: Record<string, string> }>('start', { vms: VMS, nodeSizeBytes: JOB_BYTES, tickMs: 20 });
  // Ended jobs leave the gateway 1 s after they end (default 10 min, up to 100 per VM): this measures
  // live delivery, and with the default every new subscriber's snapshot would carry the 2,000 jobs the
  // earlier steps ended, 40 million states at 19,800 (the connect that hung the full runs of session 4).
  const probe = await startBenchGateway(resources, addresses, { retentionMs: RETENTION_MS });
  await waitFor('every simulated VM connected', () => probe.connectedVms() === VMS, 60_000);

  // Transitions per job lifecycle, measured once, to pace the job rate for a target delivery rate.
  let transitions = 0;
  probe.onTransition(() => transitions++);
  await sim.call('cycleJobs', { jobsPerSecond: 20, sizeBytes: JOB_BYTES });
  await sleep(quick ? 1000 : 2000);
  const { started } = await sim.call<{ started: number }>('stopCycle');
  await sleep(500);
  const perJob = transitions / Math.max(1, started);
  log(`fanout: ${perJob.toFixed(1)} transitions per job lifecycle`);

  const runs: Array<{ n: number; jobsPerSecond: number; gateway: Window; bare: Window; barePerClient: Window; frameBytes: number; shares: number[] }> = [];
  /** One gateway window, then the bare ws baseline at the gateway's frame rate and frame size. */
  const pair = async (n: number, jobsPerSecond: number): Promise<{ gateway: Window; bare: Window; frameBytes: number }> => {
    await waitFor('the ended jobs of the last step to leave the gateway', () => jobsHeld(probe) <= VMS, 30_000);
    await subscribers.call('connect', { url: probe.gateway.wsUrl, count: n, mode: 'gateway' });
    const stats = probe.gateway.core.stats.sentByType;
    await sim.call('cycleJobs', { jobsPerSecond, sizeBytes: JOB_BYTES });
    await sleep(warmupSec * 1000);
    const before = { ...(stats.get('event') ?? { messages: 0, bytes: 0 }) };
    const gateway = await recordWindow(subscribers, n, seconds, (sample) => {
      const origin = sample.key === undefined ? undefined : probe.qmpReceivedAt.get(sample.key);
      return origin === undefined ? undefined : sample.recv - origin;
    });
    const after = stats.get('event') ?? { messages: 0, bytes: 0 };
    await sim.call('stopCycle');
    await subscribers.call('disconnectAll');
    // The bare server runs in this process too: at 19,800 both audiences at once would pass its fd
    // limit (20,000), and a connect the kernel queued but the process could not accept hangs.
    await waitFor('the gateway to close every subscriber', () => probe.gateway.core.connectionCount === 0, 60_000);
    await sleep(quick ? 200 : 1000);
    const frameBytes = Math.round((after.bytes - before.bytes) / Math.max(1, after.messages - before.messages));
    const bare = await bareBroadcast(resources, subscribers, n, gateway.framesPerSec, frameBytes, seconds, warmupSec, false);
    return { gateway, bare, frameBytes };
  };

  for (const n of sizes) {
    const jobsPerSecond = TARGET_DELIVERIES_PER_SEC / n / perJob;
    // At N = 100 a window is short of work and its share swings by +-10 points with what else runs:
    // the full run takes the median of PAIRS_AT_SMALL_N gateway/bare pairs, back to back (quick: one).
    const pairs = [];
    for (let round = 0; round < (n < 1000 && !quick ? PAIRS_AT_SMALL_N : 1); round++) pairs.push(await pair(n, jobsPerSecond));
    const shares = pairs.map((p) => p.bare.cpuMicrosPerDelivery / p.gateway.cpuMicrosPerDelivery);
    const median = [...shares].sort((x, y) => x - y)[Math.floor(shares.length / 2)]!;
    const { gateway, bare, frameBytes } = pairs[shares.indexOf(median)]!;
    const barePerClient = await bareBroadcast(resources, subscribers, n, gateway.framesPerSec, frameBytes, seconds, warmupSec, true);
    runs.push({ n, jobsPerSecond, gateway, bare, barePerClient, frameBytes, shares });
    log(`fanout: N=${n}: gateway ${count(gateway.deliveriesPerSec)}/s at ${percent(gateway.coreShare)} CPU, bare ${count(bare.deliveriesPerSec)}/s at ${percent(bare.coreShare)} CPU; share ${shares.map(percent).join(', ')}`);
  }

  const describe = (w: Window) =>
    `${count(w.deliveriesPerSec)}/s, p50 ${ms(w.latency.p50)} / p99 ${ms(w.latency.p99)} ms, ${percent(w.coreShare)} of a core (${w.cpuMicrosPerDelivery.toFixed(1)} µs/delivery)`;
  const samples = (w: Window) => `${count(w.deliveries)} deliveries in ${w.wallSeconds.toFixed(1)} s, ${count(w.latency.count)} latency samples`;
  const rows: Row[] = runs.flatMap(({ n, gateway, bare, barePerClient, frameBytes, shares }) => {
    const ratio = bare.cpuMicrosPerDelivery / gateway.cpuMicrosPerDelivery;
    const spread = shares.length > 1 ? `median of ${shares.length} window pairs (${percent(Math.min(...shares))} to ${percent(Math.max(...shares))})` : '1 window each';
    const floor = n >= 1000 ? 0.9 : 0.8;
    return [
      { metric: `N=${count(n)}: gateway deliveries/s, latency QMP->client, CPU`, value: describe(gateway), samples: samples(gateway) },
      { metric: `N=${count(n)}: bare ws, same rate, ${frameBytes} B frames`, value: describe(bare), samples: samples(bare) },
      { metric: `N=${count(n)}: bare ws, same rate, a string built per client`, value: describe(barePerClient), samples: samples(barePerClient) },
      {
        metric: `N=${count(n)}: gateway as share of the bare-ws ceiling (CPU per delivery)`,
        value: percent(ratio),
        samples: spread,
        goal: `>= ${percent(floor)}`,
        met: ratio >= floor,
      },
    ];
  });
  const curve = (name: string, pick: (run: (typeof runs)[number]) => Window): Series => ({
    chart: 'fanout-cpu',
    title: 'Fan-out: CPU per delivery vs subscribers (~20,000 deliveries/s offered)',
    x: 'subscribers',
    y: 'µs of CPU per delivery',
    name,
    points: runs.map((run) => ({ x: run.n, y: pick(run).cpuMicrosPerDelivery })),
  });
  const series: Series[] = [
    curve('gateway', (run) => run.gateway),
    curve('bare ws, one Buffer for all', (run) => run.bare),
    curve('bare ws, a string per client', (run) => run.barePerClient),
    {
      chart: 'fanout-latency',
      title: 'Fan-out: QMP receive -> subscriber vs subscribers',
      x: 'subscribers',
      y: 'ms',
      name: 'gateway p50',
      points: runs.map((run) => ({ x: run.n, y: run.gateway.latency.p50 })),
    },
    {
      chart: 'fanout-latency',
      title: 'Fan-out: QMP receive -> subscriber vs subscribers',
      x: 'subscribers',
      y: 'ms',
      name: 'gateway p99',
      points: runs.map((run) => ({ x: run.n, y: run.gateway.latency.p99 })),
    },
  ];
  return { name: 'fanout', rows, series, raw: { vms: VMS, transitionsPerJob: perJob, targetDeliveriesPerSec: TARGET_DELIVERIES_PER_SEC, seconds, runs } };
};
