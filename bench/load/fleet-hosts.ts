/**
 * Load generator (forked): simulated host gateways of a fleet. Each simulated host has its own Redis
 * connection, publisher and history, exactly as `serve --redis` wires them; only the job source is
 * synthetic: transitions are generated at a fleet-wide rate, round-robin over the VMs, each stamped
 * at generation (the "QMP receive" instant the latency is measured from).
 */
import { performance } from 'node:perf_hooks';
import { connectRedis, parseRedisUrl, type RedisClient } from '../../dist/fleet/connect.js';
import { fleetDefaults } from '../../dist/fleet/fleet-config.js';
import { FleetHistory } from '../../dist/fleet/history.js';
import { HostPublisher } from '../../dist/fleet/publisher.js';
import { FleetStore } from '../../dist/fleet/store.js';
import { streamEvent } from '../../dist/gateway/stream/events.js';
import type { StreamPosition } from '../../dist/gateway/history/types.js';
import { silentLogger } from '../../dist/log.js';
import type { JobState, JobStatusName } from '../../dist/jobs/types.js';
import { watchLoop, type Stalls } from '../lib/loop-watch.js';
import { serveRpc } from '../lib/rpc.js';
import { startWindowProfile } from '../lib/window-profile.js';

interface SimVm {
  name: string;
  current?: JobState;
  history: FleetHistory;
  position: StreamPosition;
  job: number;
  step: number;
}

const CYCLE: JobStatusName[] = ['created', 'running', 'ready', 'concluded'];
const TICK_MS = 5;
const vms: SimVm[] = [];
const byName = new Map<string, SimVm>();
const clients: RedisClient[] = [];
const publishers: HostPublisher[] = [];
let timer: NodeJS.Timeout | undefined;
let next = 0;
let generated = 0;
/** While recording: host receive -> Redis acknowledged the APPEND (ms; receive is the append here), and this process's stalls. */
let publishLags: number[] | undefined;
let stopWatch: (() => Stalls) | undefined;
let stopProfile: (() => Promise<void>) | undefined;
let cpuAtStart: NodeJS.CpuUsage | undefined;
let generatedAtStart = 0;

function jobState(vm: string, id: string, state: JobStatusName, at: number): JobState {
  const iso = new Date(at).toISOString();
  return {
    vm,
    id,
    incarnation: 1,
    type: 'mirror',
    state,
    ready: state === 'ready' || state === 'concluded',
    ...(state === 'concluded' ? { outcome: 'completed', pivoted: true } : {}),
    progress: { current: 1073741824, total: 1073741824, percent: 100, rate: 52428800, etaSeconds: 0 },
    speed: 0,
    autoFinalize: true,
    autoDismiss: true,
    ioStatus: 'ok',
    stale: false,
    updatedAt: iso,
    stateSince: iso,
    source: 'event',
  } as JobState;
}

function transition(vm: SimVm): void {
  const at = Date.now();
  const mono = performance.now();
  const state = CYCLE[vm.step]!;
  const from = vm.step === 0 ? null : CYCLE[vm.step - 1]!;
  const job = jobState(vm.name, `j${vm.job}`, state, at);
  vm.position.offset++;
  const event = streamEvent(
    { kind: 'transition', vm: vm.name, job, from: from === null ? null : { state: from, ready: null }, to: { state, ready: job.ready }, source: 'event', at, qmpReceivedMono: mono },
    vm.position.epoch,
    vm.position.offset,
  );
  vm.current = job;
  vm.history.append(vm.name, event);
  vm.step = (vm.step + 1) % CYCLE.length;
  if (vm.step === 0) vm.job++;
  generated++;
}

serveRpc({
  /** Hosts `firstHost` .. `firstHost + hosts - 1` (the bench splits the fleet over several such processes). */
  async start({ redisUrl, hosts, vmsPerHost, firstHost = 0 }: { redisUrl: string; hosts: number; vmsPerHost: number; firstHost?: number }) {
    const target = parseRedisUrl(redisUrl);
    for (let h = firstHost; h < firstHost + hosts; h++) {
      const redis = connectRedis(target, { connectionName: `bench-host-${h}` });
      redis.on('error', () => undefined);
      await redis.connect();
      clients.push(redis);
      const store = new FleetStore(redis, fleetDefaults().keyPrefix);
      store.stats.onPublishLag = (seconds) => publishLags?.push(seconds * 1000);
      const holder: { history?: FleetHistory } = {};
      const publisher = new HostPublisher(store, {
        host: `sim${h}`,
        // What a real host's source says: the VM connected, its current job.
        snapshotOf: (name) => {
          const vm = byName.get(name);
          return vm ? { vm: name, status: 'connected', jobs: vm.current ? [vm.current] : [] } : undefined;
        },
        positionOf: (vm) => holder.history?.position(vm),
        logger: silentLogger,
      });
      const history = new FleetHistory(store, { open: (vm) => publisher.open(vm), appended: (vm, e) => publisher.enqueue(vm, e) });
      holder.history = history;
      publisher.start();
      publishers.push(publisher);
      await Promise.all(
        Array.from({ length: vmsPerHost }, async (_, i) => {
          const name = `h${h}vm${i}`;
          const position = { ...(await history.open(name)) };
          const vm: SimVm = { name, history, position, job: 0, step: 0 };
          vms.push(vm);
          byName.set(name, vm);
        }),
      );
    }
    vms.sort((a, b) => (a.name < b.name ? -1 : 1));
    return { vms: vms.map((v) => v.name) };
  },

  /** Transitions per second, fleet-wide (0 = idle). */
  rate({ perSec }: { perSec: number }) {
    if (timer) clearInterval(timer);
    timer = undefined;
    if (perSec <= 0) return null;
    const started = performance.now();
    let sent = 0;
    timer = setInterval(() => {
      const due = Math.floor(((performance.now() - started) / 1000) * perSec);
      for (; sent < due; sent++) transition(vms[next++ % vms.length]!);
    }, TICK_MS);
    return null;
  },

  async startRecording({ profile }: { profile?: boolean }) {
    if (profile) stopProfile = await startWindowProfile('fleet-hosts-window');
    publishLags = [];
    cpuAtStart = process.cpuUsage();
    generatedAtStart = generated;
    stopWatch = watchLoop();
    return null;
  },

  async stopRecording() {
    await stopProfile?.();
    stopProfile = undefined;
    const samples = publishLags ?? [];
    publishLags = undefined;
    const stalls = stopWatch?.();
    stopWatch = undefined;
    const cpu = process.cpuUsage(cpuAtStart);
    // This process's CPU and the transitions it generated and published over the window.
    return { publishLags: samples, stalls, cpuUs: cpu.user + cpu.system, transitions: generated - generatedAtStart };
  },

  stats() {
    // offsets: the sum of every VM's head, which an edge that has caught up shows too.
    const statuses = publishers.map((p) => p.status());
    return {
      generated,
      buffered: statuses.reduce((n, s) => n + s.buffered, 0),
      notOwned: statuses.reduce((n, s) => n + s.notOwned.length, 0),
      resyncing: statuses.reduce((n, s) => n + s.resyncing.length, 0),
      offsets: vms.reduce((n, vm) => n + vm.position.offset, 0),
      cpu: process.cpuUsage(),
    };
  },

  async close() {
    if (timer) clearInterval(timer);
    for (const p of publishers) await p.close({ release: false });
    for (const c of clients) c.disconnect();
    return null;
  },
});
