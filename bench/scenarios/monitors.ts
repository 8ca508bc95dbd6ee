/**
 * (4) Many monitors: simulated VMs (forked), one monitor each, all followed by the gateway, swept
 * 100 -> 5,000. At each step a fresh simulator and gateway: gateway CPU and the QMP commands per
 * second it spends on polling with every job idle. At 1,000 also: with a few active jobs, and the
 * time until all are connected again after every monitor drops its client at the same instant.
 * Then liveness: a real qemu-storage-daemon (in the forked QEMU lab) is frozen with SIGSTOP and the
 * clock runs until the gateway reports its VM disconnected (unresponsive).
 */
import { PerformanceObserver, constants } from 'node:perf_hooks';
import { configDefaults } from '../../dist/generated/config-defaults.js';
import { startBenchGateway } from '../lib/gateway.js';
import { Resources, sleep, waitFor } from '../lib/resources.js';
import { count, forkLoad, percent, type Row, type Scenario, type ScenarioContext, type Series } from '../lib/scenario.js';
import { CpuMeter } from '../lib/stats.js';

const HEADLINE_VMS = 1000;
const IDLE_POLL_MS = configDefaults.jobs.idlePollMs;
const ACTIVE_JOBS = 10;
/**
 * A full run reads each step in consecutive short windows: the first FIRST_WINDOWS hold V8's one-offs
 * after the connect burst, the windows from STEADY_FROM_SEC on are the idle cost (a minute at the
 * headline step, which carries the goal; half a minute at the others).
 */
const SHORT_WINDOW_SEC = 10;
const FIRST_WINDOWS = 3;
const STEADY_FROM_SEC = 90;
const STEADY_WINDOWS = { headline: 6, other: 3 };
const MiB = 1024 * 1024;

interface Window {
  coreShare: number;
  commandsPerSec: number;
  byCommand: Record<string, number>;
  seconds: number;
  /** GC pauses in the window: count, of which mark-compacts, and their total ms (main thread). */
  gcs: { count: number; major: number; ms: number };
}

type Probe = Awaited<ReturnType<typeof startBenchGateway>>;

async function measure(probe: Probe, windowSec: number): Promise<Window> {
  const commands = probe.qmpCommands();
  const byName = probe.qmpCommandsByName();
  const gcs = { count: 0, major: 0, ms: 0 };
  const observer = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      gcs.count++;
      gcs.ms += entry.duration;
      if (((entry as { detail?: { kind?: number } }).detail)?.kind === constants.NODE_PERFORMANCE_GC_MAJOR) gcs.major++;
    }
  });
  observer.observe({ entryTypes: ['gc'] });
  const cpu = new CpuMeter();
  await sleep(windowSec * 1000);
  const used = cpu.read();
  observer.disconnect();
  const seconds = used.wallMs / 1000;
  const byCommand = Object.fromEntries(
    Object.entries(probe.qmpCommandsByName()).map(([name, total]) => [name, Number(((total - (byName[name] ?? 0)) / seconds).toFixed(2))]),
  );
  return { coreShare: used.coreShare, commandsPerSec: (probe.qmpCommands() - commands) / seconds, byCommand, seconds, gcs };
}

interface Step {
  vms: number;
  connectSeconds: number;
  /** The first window (quick) or the first FIRST_WINDOWS joined (full). */
  idle: Window;
  /** Full run: consecutive short windows from the settle on. */
  windows?: Window[];
  /** Full run: the windows from STEADY_FROM_SEC on, joined. */
  steady?: Window;
  active?: Window;
  reconnectSeconds?: number;
}

async function step(context: ScenarioContext, vms: number, windowSec: number, headline: boolean): Promise<Step> {
  const resources = new Resources();
  try {
    const sim = forkLoad({ ...context, resources }, 'simulator');
    const { addresses } = await sim.call<{ addresses: Record<string, string> }>('start', { vms, tickMs: 50 });
    const t0 = performance.now();
    const probe = await startBenchGateway(resources, addresses);
    await waitFor(`all ${vms} monitors connected`, () => probe.connectedVms() === vms, 180_000, 100);
    const connectSeconds = (performance.now() - t0) / 1000;
    context.log(`monitors: ${count(vms)} connected in ${connectSeconds.toFixed(1)} s`);
    // Connected is not settled: each monitor still reads QEMU's schema (capabilities) before its first
    // poll. Wait for every first poll, so the idle window measures idling, not connecting.
    await waitFor(`every monitor's first poll`, () => (probe.qmpCommandsByName()['query-jobs'] ?? 0) >= vms, 180_000, 100);
    // Then one idle-poll period: every monitor is on the idle cadence, and the connect burst's
    // aftermath (GC, JIT; ~1.5 % of a core 2 s after 1,000 connects, gone after ~15 s) is over.
    // Quick mode is a smoke run: a short settle, so the figure is an upper bound.
    await sleep(context.quick ? 2000 : IDLE_POLL_MS);
    if (context.quick) {
      const idle = await measure(probe, windowSec);
      context.log(`monitors: ${count(vms)} idle: ${describeWindow(idle)}`);
      return { vms, connectSeconds, idle };
    }
    // Two one-off costs of the connect burst fall in the first minute or so: TurboFan compiling the
    // poll path (V8 tiers up by executions: at 100 polls a second that is 10-50 s after the first
    // polls) and V8's memory reducer, whose three full GCs (~0.4-0.6 s of CPU at 1,000 monitors, ~2 s
    // at 5,000) come once some 20-80 s after the connects (--trace-opt, --trace-gc,
    // --no-memory-reducer: bench/notes.md, session 4). So each step is read in consecutive windows:
    // the first 30 s with the one-offs, and from STEADY_FROM_SEC on the idle cost. Every window is in
    // the raw file.
    const windows: Window[] = [];
    const steadyWindows = headline ? STEADY_WINDOWS.headline : STEADY_WINDOWS.other;
    const total = STEADY_FROM_SEC / SHORT_WINDOW_SEC + steadyWindows;
    for (let i = 0; i < total; i++) windows.push(await measure(probe, SHORT_WINDOW_SEC));
    const idle = joinWindows(windows.slice(0, FIRST_WINDOWS));
    const steady = joinWindows(windows.slice(-steadyWindows));
    context.log(`monitors: ${count(vms)} idle, ${SHORT_WINDOW_SEC} s windows: ${windows.map((w) => `${percent(w.coreShare)} (GCs ${w.gcs.count}, major ${w.gcs.major})`).join(', ')}`);
    context.log(`monitors: ${count(vms)} idle, first ${FIRST_WINDOWS * SHORT_WINDOW_SEC} s: ${describeWindow(idle)}; steady: ${describeWindow(steady)}`);
    if (!headline) return { vms, connectSeconds, idle, windows, steady };

    // A few active jobs: mirrors at 1 MiB/s over 64 MiB run for the whole window.
    await sim.call('startJobs', { vms: ACTIVE_JOBS, perVm: 1, job: { idPrefix: 'active', type: 'mirror', speed: MiB } });
    await waitFor(`${ACTIVE_JOBS} active jobs in the gateway`, () => probe.registry.snapshot().filter((vm) => vm.jobs.some((job) => job.state === 'running')).length >= ACTIVE_JOBS, 30_000);
    await sleep(1000);
    const active = await measure(probe, windowSec);
    context.log(`monitors: ${ACTIVE_JOBS} active jobs: ${percent(active.coreShare)} of a core, ${active.commandsPerSec.toFixed(1)} QMP commands/s ${JSON.stringify(active.byCommand)}`);

    // Every monitor drops its client at once; time until the gateway has all of them back.
    const dropped = new Set<string>();
    const back = new Set<string>();
    const subscription = probe.registry.changes$.subscribe((change) => {
      if (change.kind !== 'vm') return;
      if (change.status === 'disconnected') dropped.add(change.vm);
      else if (change.status === 'connected' && dropped.has(change.vm)) back.add(change.vm);
    });
    resources.defer('reconnect probe', () => subscription.unsubscribe());
    const dropAt = performance.now();
    await sim.call('dropAll');
    await waitFor(`all ${vms} monitors back after the drop`, () => back.size === vms, 180_000, 20);
    const reconnectSeconds = (performance.now() - dropAt) / 1000;
    context.log(`monitors: all ${count(vms)} back in ${reconnectSeconds.toFixed(2)} s`);
    return { vms, connectSeconds, idle, windows, steady, active, reconnectSeconds };
  } finally {
    await resources.closeAll();
  }
}

/** A real QEMU frozen with SIGSTOP (its socket stays open): seconds until the gateway says so. */
async function hungDetection(context: ScenarioContext): Promise<number> {
  const resources = new Resources();
  try {
    const lab = forkLoad({ ...context, resources }, 'qemu-lab');
    const { address } = await lab.call<{ address: string }>('start', { monitors: ['gw'] });
    const probe = await startBenchGateway(resources, { vm1: address });
    await waitFor('the QEMU monitor connected', () => probe.connectedVms() === 1, 60_000);
    await sleep(1000);
    let downAt: number | undefined;
    const subscription = probe.registry.changes$.subscribe((change) => {
      if (change.kind === 'vm' && change.status !== 'connected' && downAt === undefined) downAt = performance.now();
    });
    resources.defer('hang probe', () => subscription.unsubscribe());
    const frozenAt = performance.now();
    await lab.call('freeze');
    await waitFor('the gateway to report the frozen QEMU', () => downAt !== undefined, 180_000, 50);
    await lab.call('thaw');
    return (downAt! - frozenAt) / 1000;
  } finally {
    await resources.closeAll();
  }
}

function idleRow(what: string, w: Window, samples: string, goal: boolean, maxShare?: number): Row {
  const max = maxShare === undefined ? '' : ` (max ${percent(maxShare)})`;
  return {
    metric: `${what}: gateway CPU, QMP commands/s spent on polling, CPU per command`,
    value: `${percent(w.coreShare)} of one core${max}, ${w.commandsPerSec.toFixed(1)}/s, ${w.commandsPerSec > 0 ? ((w.coreShare * 1e6) / w.commandsPerSec).toFixed(0) : 'n/a'} µs`,
    samples,
    ...(goal ? { goal: '<= 1% of a core', met: w.coreShare <= 0.01 } : {}),
  };
}

/** Consecutive windows as one: CPU and command rates weighted by length, GCs summed. */
function joinWindows(windows: Window[]): Window {
  const seconds = windows.reduce((sum, w) => sum + w.seconds, 0);
  const weighted = (pick: (w: Window) => number) => windows.reduce((sum, w) => sum + pick(w) * w.seconds, 0) / seconds;
  const names = new Set(windows.flatMap((w) => Object.keys(w.byCommand)));
  return {
    coreShare: weighted((w) => w.coreShare),
    commandsPerSec: weighted((w) => w.commandsPerSec),
    byCommand: Object.fromEntries([...names].map((name) => [name, Number(weighted((w) => w.byCommand[name] ?? 0).toFixed(2))])),
    seconds,
    gcs: windows.reduce((sum, w) => ({ count: sum.count + w.gcs.count, major: sum.major + w.gcs.major, ms: sum.ms + w.gcs.ms }), { count: 0, major: 0, ms: 0 }),
  };
}

function describeWindow(w: Window): string {
  return `${percent(w.coreShare)} of a core, ${w.commandsPerSec.toFixed(1)} QMP commands/s (GCs ${w.gcs.count}, major ${w.gcs.major}, ${w.gcs.ms.toFixed(0)} ms)`;
}

export const monitors: Scenario = async (context) => {
  const { quick } = context;
  // Idle polls are spread evenly over the period (one shared clock, 10 batches), so a window of
  // half a period already sees the steady rate; the full run takes three periods.
  const windowSec = quick ? 5 : 30;
  const sizes = quick ? [300] : [100, HEADLINE_VMS, 2500, 5000];
  const steps: Step[] = [];
  for (const vms of sizes) steps.push(await step(context, vms, windowSec, vms === HEADLINE_VMS));
  const hungSeconds = quick ? undefined : await hungDetection(context);
  if (hungSeconds !== undefined) context.log(`monitors: a frozen QEMU reported after ${hungSeconds.toFixed(1)} s`);

  const headline = steps.find((s) => s.vms === HEADLINE_VMS) ?? steps[0]!;
  const window = `1 window of ${windowSec} s`;
  const first = `${IDLE_POLL_MS / 1000}-${IDLE_POLL_MS / 1000 + FIRST_WINDOWS * SHORT_WINDOW_SEC} s after the first polls`;
  const steadyFrom = `from ${IDLE_POLL_MS / 1000 + STEADY_FROM_SEC} s after the first polls`;
  const rows: Row[] = [
    ...steps.flatMap((s): Row[] => {
      if (!s.steady || !s.windows) return [idleRow(`${count(s.vms)} idle monitors`, s.idle, window, false)];
      const n = s.windows.length - STEADY_FROM_SEC / SHORT_WINDOW_SEC;
      const isHeadline = s === headline;
      return [
        ...(isHeadline ? [idleRow(`${count(s.vms)} idle monitors, ${first} (V8's one-offs after the connect burst)`, s.idle, `${FIRST_WINDOWS} windows of ${SHORT_WINDOW_SEC} s`, false)] : []),
        idleRow(
          `${count(s.vms)} idle monitors, steady: ${n * SHORT_WINDOW_SEC} s ${steadyFrom} (max window)`,
          s.steady,
          `${n} windows of ${SHORT_WINDOW_SEC} s`,
          isHeadline,
          Math.max(...s.windows.slice(-n).map((w) => w.coreShare)),
        ),
      ];
    }),
    ...(headline.active
      ? [{ metric: `${ACTIVE_JOBS} active jobs among ${count(headline.vms)}: gateway CPU, QMP commands/s`, value: `${percent(headline.active.coreShare)} of one core, ${headline.active.commandsPerSec.toFixed(1)}/s`, samples: window }]
      : []),
    ...(headline.reconnectSeconds !== undefined
      ? [{ metric: `all ${count(headline.vms)} monitors drop at once: time until all reconnected`, value: `${headline.reconnectSeconds.toFixed(2)} s`, samples: '1 drop' }]
      : []),
    { metric: `initial connect of ${count(headline.vms)} monitors`, value: `${headline.connectSeconds.toFixed(2)} s`, samples: '1 start' },
    ...(hungSeconds !== undefined
      ? [{ metric: 'a hung QEMU (SIGSTOP, socket open): time until the gateway reports its VM disconnected', value: `${hungSeconds.toFixed(1)} s`, samples: '1 freeze' }]
      : []),
  ];
  const cpuCurve = (name: string, pick: (s: Step) => Window | undefined): Series => ({
    chart: 'monitors-cpu', title: 'Idle monitors: gateway CPU vs monitors', x: 'monitors', y: '% of one core', name,
    points: steps.flatMap((s) => {
      const w = pick(s);
      return w ? [{ x: s.vms, y: w.coreShare * 100 }] : [];
    }),
  });
  const series: Series[] = [
    ...(headline.steady
      ? [cpuCurve(`steady (${steadyFrom})`, (s) => s.steady), cpuCurve(`${first} (V8's one-offs)`, (s) => s.idle)]
      : [cpuCurve('gateway CPU', (s) => s.idle)]),
    {
      chart: 'monitors-commands', title: 'Idle monitors: QMP commands/s vs monitors', x: 'monitors', y: 'commands/s', name: 'safety-net polling',
      points: steps.map((s) => ({ x: s.vms, y: s.idle.commandsPerSec })),
    },
  ];
  return { name: 'monitors', rows, series, raw: { sizes, activeJobs: ACTIVE_JOBS, windowSec, steps, hungSeconds } };
};
