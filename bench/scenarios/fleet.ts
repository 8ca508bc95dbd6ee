/**
 * (6) Fleet: simulated host gateways (100 hosts x 100 VMs = 10,000 VMs, forked, the real publisher
 * path) publish through a real redis-server to two edges (edge A in this process, edge B the CLI as
 * its own process), each with 5,000 subscribers (forked) whose tokens and filters cover two VMs, so
 * every transition reaches one subscriber per edge. Latency: the host's receive instant (`ts`) to
 * the subscriber's frame. Redis CPU and commands/s from /proc and INFO; edge CPU per delivery
 * against a single gateway (StreamHub over an in-process source) serving the same subscribers and
 * rate in the same run; idle cost: Redis calls an edge makes for idle VMs (none expected).
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Subject, NEVER } from 'rxjs';
import { startFleetEdge } from '../../dist/fleet/edge.js';
import { TokenAuthenticator } from '../../dist/gateway/auth.js';
import { startGateway } from '../../dist/gateway/server.js';
import { makeShortTempDir } from '../../dist/lab/leftovers.js';
import { startRedis } from '../../dist/lab/redis.js';
import { silentLogger } from '../../dist/log.js';
import type { JobSource, JobState, StreamInput, VmSnapshot } from '../../dist/jobs/types.js';
import { sleep, waitFor } from '../lib/resources.js';
import type { RpcChild } from '../lib/rpc.js';
import { count, ms, percent, type Row, type Scenario, type ScenarioContext } from '../lib/scenario.js';
import { watchLoop, type Stalls } from '../lib/loop-watch.js';
import { CpuMeter, summarize } from '../lib/stats.js';
import { profiling, startWindowProfile } from '../lib/window-profile.js';
import { RpcChild as Child } from '../lib/rpc.js';

const HOSTS = 100;
/**
 * Processes the simulated hosts are spread over (FLEET_HOST_PROCESSES, default 1). One process holds
 * every host's heap, so one GC pause of the simulation holds every host's events at once; spread
 * over 4, each process's pauses were shorter, but the hosts' CPU per transition doubled (each process
 * pays its own timers and renewals) and the p99 of A/B pairs was no better (bench/notes.md).
 */
const HOST_PROCESSES = Math.max(1, Number(process.env.FLEET_HOST_PROCESSES ?? 1));
const VMS_PER_HOST = 100;
const SUBSCRIBERS_PER_EDGE = 5000;
const RATE = 2000;
const CLI = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));
const TICKS = 100; // USER_HZ of /proc/<pid>/stat

function procCpuMs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / TICKS;
}

interface HostRecording {
  publishLags: number[];
  stalls?: Stalls;
  cpuUs: number;
  transitions: number;
}

/** The simulated hosts, split over `n` processes: one call goes to all, the answers are merged. */
function simulatedHosts(context: ScenarioContext, n: number) {
  const children = Array.from({ length: n }, () => fork(context, 'fleet-hosts'));
  const all = <T>(method: string, params: (i: number) => unknown = () => ({}), timeoutMs?: number): Promise<T[]> =>
    Promise.all(children.map((c, i) => c.call<T>(method, params(i), timeoutMs)));
  type Stats = { generated: number; offsets: number; buffered: number; notOwned: number; resyncing: number };
  return {
    async start(redisUrl: string, hosts: number, vmsPerHost: number): Promise<string[]> {
      const per = Math.ceil(hosts / n);
      const parts = await all<{ vms: string[] }>('start', (i) => ({ redisUrl, hosts: Math.max(0, Math.min(per, hosts - i * per)), vmsPerHost, firstHost: i * per }), 10 * 60_000);
      return parts.flatMap((p) => p.vms).sort();
    },
    rate: (perSec: number) => all('rate', () => ({ perSec: perSec / n })),
    async stats(): Promise<Stats> {
      const parts = await all<Stats>('stats');
      const sum = (k: keyof Stats): number => parts.reduce((t, p) => t + p[k], 0);
      return { generated: sum('generated'), offsets: sum('offsets'), buffered: sum('buffered'), notOwned: sum('notOwned'), resyncing: sum('resyncing') };
    },
    startRecording: (profile: boolean) => all('startRecording', (i) => ({ profile: profile && i === 0 })),
    async stopRecording(): Promise<{ publishLags: number[]; stalls?: Stalls; cpuUsPerTransition: number }> {
      const parts = await all<HostRecording>('stopRecording');
      const stalls = parts.map((p) => p.stalls).filter((s): s is Stalls => s !== undefined);
      const worst = (k: keyof Stalls): number => Math.max(...stalls.map((s) => s[k]));
      return {
        publishLags: parts.flatMap((p) => p.publishLags),
        ...(stalls.length ? { stalls: { p99: worst('p99'), max: worst('max'), gcMax: worst('gcMax'), gcTotal: worst('gcTotal') } } : {}),
        cpuUsPerTransition: parts.reduce((t, p) => t + p.cpuUs, 0) / Math.max(1, parts.reduce((t, p) => t + p.transitions, 0)),
      };
    },
  };
}

function fork(context: ScenarioContext, module: string): RpcChild {
  const child = new Child(new URL(`../load/${module}.js`, import.meta.url));
  context.resources.defer(`${module} process`, () => child.close());
  return child;
}

interface Window {
  deliveriesPerSec: number;
  latency: ReturnType<typeof summarize>;
  /** Per subscriber process, in the order given. */
  latencies: ReturnType<typeof summarize>[];
  stalls: (Stalls | undefined)[];
}

async function record(subscribers: RpcChild[], seconds: number, extra: () => void, profileFirst = false): Promise<Window & { wallMs: number }> {
  await Promise.all(subscribers.map((s, i) => s.call('startRecording', { every: 4, profile: profileFirst && i === 0 })));
  const started = performance.now();
  await sleep(seconds * 1000);
  extra();
  const wallMs = performance.now() - started;
  const results = await Promise.all(subscribers.map((s) => s.call<{ deliveries: number; samples: number[]; stalls?: Stalls }>('stopRecording')));
  const deliveries = results.reduce((n, r) => n + r.deliveries, 0);
  return {
    deliveriesPerSec: deliveries / (wallMs / 1000),
    latency: summarize(results.flatMap((r) => r.samples)),
    latencies: results.map((r) => summarize(r.samples)),
    stalls: results.map((r) => r.stalls),
    wallMs,
  };
}

/** LATENCY LATEST as redis-cli prints it (one field a line: event, time, latest ms, max ms): the max per event. */
function parseLatencyLatest(text: string): Record<string, number> {
  const lines = text.split('\n').map((l) => l.trim()).filter((l) => l !== '');
  const out: Record<string, number> = {};
  for (let i = 0; i + 3 < lines.length; i += 4) out[lines[i]!] = Number(lines[i + 3]);
  return out;
}

const stallText = (s: Stalls | undefined): string => (s ? `${ms(s.p99)} / ${ms(s.max)} (GC ${ms(s.gcMax)})` : 'n/a');

/** The baseline: one gateway, its own in-process source, the same VMs and rate. */
function syntheticSource(vms: string[]): { source: JobSource; emit(vm: string, job: JobState, from: string | null): void } {
  const changes = new Subject<StreamInput>();
  const jobs = new Map<string, Map<string, JobState>>(vms.map((vm) => [vm, new Map()]));
  const source: JobSource = {
    vms: () => vms,
    snapshot: (): VmSnapshot[] => vms.map((vm) => ({ vm, status: 'connected', jobs: [...jobs.get(vm)!.values()] })),
    job: (vm: string, id: string) => jobs.get(vm)?.get(id),
    changes$: changes,
    progress$: NEVER,
    info: () => undefined,
    vmInfo$: NEVER,
  } as unknown as JobSource;
  return {
    source,
    emit(vm, job, from) {
      jobs.get(vm)!.set(job.id, job);
      changes.next({ kind: 'transition', vm, job, from: from === null ? null : { state: from as JobState['state'], ready: null }, to: { state: job.state, ready: job.ready }, source: 'event', at: Date.now() });
    },
  };
}

export const fleet: Scenario = async (context) => {
  const { quick, resources, log } = context;
  // Quick mode is a smoke run (the whole quick bench under two minutes): shorter windows and warm-ups.
  const seconds = quick ? 3 : 15;
  const warmupMs = quick ? 1000 : 2000;
  const idleSeconds = quick ? 3 : 5;
  const subscribersPerEdge = quick ? 1000 : SUBSCRIBERS_PER_EDGE;
  // Quick mode keeps the shape (many hosts, two edges) at a tenth of the VMs: claiming 10,000 leases
  // alone takes most of a quick run's budget.
  const hostCount = quick ? 20 : HOSTS;
  const vmsPerHost = quick ? 50 : VMS_PER_HOST;
  const redis = await startRedis();
  resources.defer('redis-server', () => redis.dispose());
  const info = (section: string): Record<string, string> =>
    Object.fromEntries(redis.cli('info', section).split('\r\n').filter((l) => l.includes(':')).map((l) => l.split(':') as [string, string]));

  log(`fleet: ${hostCount} simulated hosts x ${vmsPerHost} VMs in ${HOST_PROCESSES} processes claiming in Redis`);
  const hosts = simulatedHosts(context, HOST_PROCESSES);
  const vms = await hosts.start(redis.url, hostCount, vmsPerHost);

  // One token per subscriber and edge, each limited to two VMs.
  const dir = makeShortTempDir('bjb-');
  resources.defer('tokens dir', () => undefined);
  const perEdge = (edge: string) =>
    Array.from({ length: subscribersPerEdge }, (_, i) => {
      const secret = `${edge}-secret-${i}`;
      const mine = [vms[(2 * i) % vms.length]!, vms[(2 * i + 1) % vms.length]!];
      return { token: secret, vms: mine, entry: { name: `${edge}${i}`, sha256: createHash('sha256').update(secret).digest('hex'), scopes: ['read'], vms: mine } };
    });
  const subsA = perEdge('a');
  const subsB = perEdge('b');
  const tokensFile = join(dir, 'tokens.json');
  writeFileSync(tokensFile, JSON.stringify({ tokens: [...subsA, ...subsB].map((s) => s.entry) }));
  const tokens = await TokenAuthenticator.fromFile(tokensFile);

  log('fleet: edge A (this process) and edge B (the CLI, its own process)');
  const edgeA = await startFleetEdge({ redis: redis.url, edgeId: 'benchA' }, { logger: silentLogger });
  const gatewayA = await startGateway({ feed: edgeA.feed, tokens, listen: { host: '127.0.0.1', port: 0 }, defaultMetrics: false, maxConnectionsPerToken: 4 });
  resources.defer('edge A', async () => {
    await gatewayA.close({ graceMs: 200 });
    await edgeA.close();
  });
  const child = spawn(process.execPath, [CLI, 'serve', '--redis', redis.url, '--edge', '--tokens', tokensFile, '--listen', '127.0.0.1:0', '--log-level', 'warn'], { stdio: ['ignore', 'pipe', 'inherit'] });
  resources.defer('edge B', () => void child.kill('SIGTERM'));
  const urlB = await new Promise<string>((resolve, reject) => {
    child.stdout!.on('data', (chunk: Buffer) => {
      const m = /WebSocket (ws:\/\/[^)]+)\)/.exec(chunk.toString());
      if (m) resolve(m[1]!);
    });
    child.once('exit', (code) => reject(new Error(`edge B exited ${code}`)));
  });
  await waitFor('edge A discovered every VM', () => edgeA.feed.vms().length === vms.length, 120_000);

  const loadA = fork(context, 'fleet-subscribers');
  const loadB = fork(context, 'fleet-subscribers');
  log(`fleet: ${subscribersPerEdge} subscribers per edge`);
  await loadA.call('connect', { url: gatewayA.wsUrl, subscribers: subsA.map(({ token, vms: v }) => ({ token, vms: v })) }, 10 * 60_000);
  await loadB.call('connect', { url: urlB, subscribers: subsB.map(({ token, vms: v }) => ({ token, vms: v })) }, 10 * 60_000);

  // Loaded window.
  log(`fleet: ${RATE} transitions/s fleet-wide for ${seconds} s`);
  await hosts.rate(RATE);
  await sleep(warmupMs);
  const cpuA = new CpuMeter();
  const bStart = procCpuMs(child.pid!);
  const redisStart = procCpuMs(redis.pid!);
  const cmdStart = Number(info('stats').total_commands_processed);
  // Redis's own stalls (a slow command or script, a fork, an AOF write) over 2 ms, by kind.
  redis.cli('latency', 'reset');
  redis.cli('config', 'set', 'latency-monitor-threshold', '2');
  const genStart = (await hosts.stats()).generated;
  // With `--cpu-prof` the bench host profiles its whole life, mostly setup (10,000 connections): edge A
  // (this process), the hosts and edge A's subscribers also profile the loaded window alone.
  const stopProfile = profiling() ? await startWindowProfile('fleet-edgeA-window') : undefined;
  let used = { cpuMs: 0, wallMs: 1, coreShare: 0 };
  let bMs = 0;
  let redisMs = 0;
  // The leg before the subscriber's socket: host receive -> edge A's fan-out done (the core's delivery lag).
  const edgeLags: number[] = [];
  const metricsLag = gatewayA.core.stats.onDeliveryLag;
  gatewayA.core.stats.onDeliveryLag = (seconds) => {
    edgeLags.push(seconds * 1000);
    metricsLag?.(seconds);
  };
  // The stages before it: host receive -> Redis acknowledged the APPEND (in the hosts' process), and
  // host receive -> edge A read the notice; and each process's event-loop stalls.
  const readLags: number[] = [];
  edgeA.stats.onReadLag = (seconds) => readLags.push(seconds * 1000);
  const stopWatchA = watchLoop();
  let stallsA: Stalls | undefined;
  await hosts.startRecording(profiling());
  const loaded = await record([loadA, loadB], seconds, () => {
    gatewayA.core.stats.onDeliveryLag = metricsLag;
    edgeA.stats.onReadLag = undefined;
    stallsA = stopWatchA();
    used = cpuA.read();
    bMs = procCpuMs(child.pid!) - bStart;
    redisMs = procCpuMs(redis.pid!) - redisStart;
  }, profiling());
  const hostRecording = await hosts.stopRecording();
  await stopProfile?.();
  const cmdPerSec = (Number(info('stats').total_commands_processed) - cmdStart) / (loaded.wallMs / 1000);
  const redisStalls = parseLatencyLatest(redis.cli('latency', 'latest'));
  redis.cli('config', 'set', 'latency-monitor-threshold', '0');
  const transitionsPerSec = ((await hosts.stats()).generated - genStart) / (loaded.wallMs / 1000);
  const deliveriesA = loaded.deliveriesPerSec / 2;

  // Idle window: no transitions; what do the edges ask Redis for? It starts once edge A has applied
  // every event (a loaded machine leaves a backlog whose catch-ups are not idle cost).
  await hosts.rate(0);
  const hostStats = await hosts.stats();
  const headsA = () => edgeA.feed.vms().reduce((n, vm) => n + edgeA.feed.position(vm).offset, 0);
  // Not fatal: a host that lost its lease under starvation publishes no more, and the window still tells.
  const behindA = await waitFor('edge A caught up with the hosts', () => headsA() >= hostStats.offsets, 60_000)
    .then(() => 0)
    .catch(() => hostStats.offsets - headsA());
  if (behindA > 0) log(`fleet: edge A still ${behindA} events behind the hosts (hosts: ${JSON.stringify(hostStats)})`);
  // One renewal tick (a third of the default 15 s lease) first: at that tick each host prunes the jobs
  // the loaded window ended, a one-off cleanup after activity, not what an idle VM costs.
  await sleep(6000);
  const before = { ...edgeA.feed.counters };
  const idleCmdStart = Number(info('stats').total_commands_processed);
  await sleep(idleSeconds * 1000);
  const idleCmdPerSec = (Number(info('stats').total_commands_processed) - idleCmdStart) / idleSeconds;
  const after = edgeA.feed.counters;
  const edgeIdleCalls = after.catchUps + after.loads + after.resyncs - (before.catchUps + before.loads + before.resyncs);

  // Baseline: a single gateway with its own source, the same subscribers (edge A's tokens) and rate.
  await loadA.call('disconnectAll');
  const synthetic = syntheticSource(vms);
  const single = await startGateway({ source: synthetic.source, tokens, listen: { host: '127.0.0.1', port: 0 }, defaultMetrics: false, maxConnectionsPerToken: 4 });
  resources.defer('single gateway', () => single.close({ graceMs: 200 }));
  await loadA.call('connect', { url: single.wsUrl, subscribers: subsA.map(({ token, vms: v }) => ({ token, vms: v })) }, 10 * 60_000);
  const cycle: JobState['state'][] = ['created', 'running', 'ready', 'concluded'];
  let n = 0;
  const startedAt = performance.now();
  const tick = setInterval(() => {
    const due = Math.floor(((performance.now() - startedAt) / 1000) * RATE);
    for (; n < due; n++) {
      const vm = vms[n % vms.length]!;
      const step = Math.floor(n / vms.length) % cycle.length;
      const at = new Date().toISOString();
      const job = { vm, id: `j${Math.floor(n / vms.length / cycle.length)}`, incarnation: 1, type: 'mirror', state: cycle[step]!, ready: step >= 2, progress: { current: 1, total: 1, percent: 100, rate: 0, etaSeconds: 0 }, speed: 0, autoFinalize: true, autoDismiss: true, ioStatus: 'ok', stale: false, updatedAt: at, stateSince: at, source: 'event' } as unknown as JobState;
      synthetic.emit(vm, job, step === 0 ? null : cycle[step - 1]!);
    }
  }, 5);
  resources.defer('baseline ticker', () => clearInterval(tick));
  await sleep(warmupMs);
  const cpuSingle = new CpuMeter();
  let usedSingle = { cpuMs: 0, wallMs: 1, coreShare: 0 };
  const baseline = await record([loadA], seconds, () => (usedSingle = cpuSingle.read()));
  clearInterval(tick);
  
  const usPerDeliveryA = (used.cpuMs * 1000) / (deliveriesA * (used.wallMs / 1000));
  const usPerDeliveryB = (bMs * 1000) / (deliveriesA * (loaded.wallMs / 1000));
  const usPerDeliverySingle = (usedSingle.cpuMs * 1000) / (baseline.deliveriesPerSec * (usedSingle.wallMs / 1000));
  const load = loadavg()[0]!;
  const edgeLag = summarize(edgeLags);
  const publishLag = summarize(hostRecording.publishLags);
  const readLag = summarize(readLags);
  const [subA, subB] = loaded.latencies;
  const stage = (s: ReturnType<typeof summarize>): string => `${ms(s.p50)} / ${ms(s.p99)} ms`;
  const rows: Row[] = [
    { metric: 'fleet: machine load average (1 min) during the run', value: load.toFixed(1), samples: '1 reading' },
    { metric: 'fleet: VMs / simulated hosts / edges / subscribers per edge', value: `${count(vms.length)} / ${hostCount} / 2 / ${count(subscribersPerEdge)}`, samples: '1 reading' },
    { metric: 'fleet: transitions/s fleet-wide (measured)', value: count(transitionsPerSec), samples: `1 window of ${seconds} s` },
    { metric: 'fleet: deliveries/s (both edges)', value: count(loaded.deliveriesPerSec), samples: `1 window of ${seconds} s` },
    { metric: 'fleet: latency host receive -> subscriber p50', value: `${ms(loaded.latency.p50)} ms`, samples: `${count(loaded.latency.count)} latency samples in ${seconds} s`, goal: '<= 5 ms at 2,000/s', met: loaded.latency.p50 <= 5 && transitionsPerSec >= RATE * 0.95 },
    { metric: 'fleet: latency host receive -> subscriber p99', value: `${ms(loaded.latency.p99)} ms`, samples: `${count(loaded.latency.count)} latency samples in ${seconds} s`, goal: '<= 25 ms at 2,000/s', met: loaded.latency.p99 <= 25 && transitionsPerSec >= RATE * 0.95 },
    // Each stage from the same instant (host receive), so the rows add up the way an event travels.
    { metric: 'fleet: stage host receive -> XADD acked by Redis (hosts) p50 / p99', value: stage(publishLag), samples: `${count(publishLag.count)} events in ${seconds} s` },
    { metric: 'fleet: stage host receive -> edge A read the notice p50 / p99', value: stage(readLag), samples: `${count(readLag.count)} events in ${seconds} s` },
    { metric: 'fleet: stage host receive -> edge A fan-out done p50 / p99', value: stage(edgeLag), samples: `${count(edgeLag.count)} events in ${seconds} s` },
    { metric: 'fleet: stage host receive -> subscriber of edge A / of edge B p50 / p99', value: `${stage(subA!)} / ${stage(subB!)}`, samples: `${count(subA!.count)} / ${count(subB!.count)} latency samples in ${seconds} s` },
    { metric: 'fleet: event-loop delay p99 / max (longest GC pause), ms: hosts (worst process) / edge A / subscribers A / subscribers B', value: `${stallText(hostRecording.stalls)} / ${stallText(stallsA)} / ${stallText(loaded.stalls[0])} / ${stallText(loaded.stalls[1])} ms`, samples: `1 window of ${seconds} s each` },
    { metric: 'fleet: Redis CPU (share of one core)', value: percent(redisMs / loaded.wallMs), samples: `1 window of ${seconds} s` },
    { metric: 'fleet: CPU per transition: simulated hosts\' processes (generating and publishing) / Redis', value: `${hostRecording.cpuUsPerTransition.toFixed(1)} / ${((redisMs * 1000) / (transitionsPerSec * (loaded.wallMs / 1000))).toFixed(1)} µs`, samples: `1 window of ${seconds} s` },
    { metric: 'fleet: Redis stalls over 2 ms by kind (worst, ms)', value: Object.keys(redisStalls).length ? Object.entries(redisStalls).map(([k, v]) => `${k} ${v}`).join(', ') : 'none', samples: `LATENCY LATEST over ${seconds} s` },
    { metric: 'fleet: Redis commands/s (loaded)', value: count(cmdPerSec), samples: `1 window of ${seconds} s` },
    { metric: 'fleet: edge A CPU / edge B CPU (share of one core)', value: `${percent(used.coreShare)} / ${percent(bMs / loaded.wallMs)}`, samples: `1 window of ${seconds} s` },
    { metric: 'fleet: edge CPU per delivery A / B vs single gateway', value: `${usPerDeliveryA.toFixed(1)} / ${usPerDeliveryB.toFixed(1)} vs ${usPerDeliverySingle.toFixed(1)} µs`, samples: `1 window of ${seconds} s` },
    { metric: 'fleet: single gateway latency p50 / p99 (same rate)', value: `${ms(baseline.latency.p50)} / ${ms(baseline.latency.p99)} ms`, samples: `${count(baseline.latency.count)} latency samples in ${seconds} s` },
    // Redis counts the GET and PEXPIRE a renewal script runs per lease: one script call per host and tick.
    { metric: 'fleet: idle: Redis commands/s, all hosts (lease renewals + heartbeats; commands inside scripts counted)', value: `${count(idleCmdPerSec)} (${(idleCmdPerSec / vms.length).toFixed(2)} per VM)`, samples: `1 window of ${idleSeconds} s` },
    { metric: `fleet: idle: Redis calls by edge A for its ${count(vms.length)} idle VMs`, value: count(edgeIdleCalls), samples: `1 window of ${idleSeconds} s`, goal: '0', met: edgeIdleCalls === 0 },
  ];
  return {
    name: 'fleet',
    rows,
    raw: { load, redisStalls, transitionsPerSec, loaded, edgeLag, publishLag, readLag, hostCpuUsPerTransition: hostRecording.cpuUsPerTransition, stalls: { hosts: hostRecording.stalls, edgeA: stallsA }, behindA, hostStats, baseline, used, usedSingle, bMs, redisMs, cmdPerSec, idleCmdPerSec, edgeIdleCalls, counters: after },
  };
};
