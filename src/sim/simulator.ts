/**
 * The QMP simulator: many simulated QEMU processes in one Node process, each with one or more
 * real QMP monitors on unix sockets, for the demo without QEMU, for tests of what QEMU cannot do on
 * cue, and for benchmarks with a thousand monitors.
 *
 *   const sim = await startSimulator({ vms: 3, monitors: ['gw', 'driver'] });
 *   sim.address('vm1', 'gw')            // 'unix:/tmp/bjg-sim-…/vm1.gw.sock'
 *   sim.vm('vm1').execute('blockdev-add', {...})   // the same dispatcher QMP clients reach
 *   await sim.close();
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { InjectedError, SimJobType } from './job.js';
import { DEFAULT_MONITOR_LIMITS, SimMonitor, type SimMonitorLimits } from './monitor.js';
import { SharedTicker } from './ticker.js';
import { QEMU_7_2_VERSION, SimVm, type SimTiming, type SimVersion } from './vm.js';

export interface SimulatorOptions {
  /** How many VMs (named vm1..vmN), or their names. */
  vms: number | readonly string[];
  /** Monitor names per VM; each is its own socket serving one client. @default ['gw'] */
  monitors?: readonly string[];
  /** Directory for the sockets; a fresh temp dir (removed by close) when absent. */
  dir?: string;
  /** Timer period of job progress. @default 50 */
  tickMs?: number;
  /** @default 250 */
  readyWindowMs?: number;
  /** @default 256 MiB/s */
  unlimitedBytesPerSec?: number;
  /** @default 64 MiB */
  nodeSizeBytes?: number;
  /** The version in the greeting and query-version. @default QEMU 7.2.22 (Debian) */
  version?: SimVersion;
  limits?: Partial<SimMonitorLimits>;
}

/** One simulated VM: its QEMU state and its monitors, plus hooks to drive it from outside QMP. */
export class SimulatedVm {
  private alive = true;

  constructor(
    readonly name: string,
    readonly vm: SimVm,
    readonly monitors: ReadonlyMap<string, SimMonitor>,
  ) {
    vm.onQuit = () => void this.kill();
  }

  address(monitor?: string): string {
    return this.monitor(monitor).address;
  }

  /** Run a QMP command as if a client sent it (events still go to the monitors). */
  execute(command: string, args?: Record<string, unknown>): unknown {
    return this.vm.execute(command, args);
  }

  /**
   * Shortcut for benchmarks and tests: fresh nodes plus the QMP start command of `type` (the same
   * command, checks and events a client would cause). Node names derive from the id (`<id>-src`,
   * `<id>-dst`); `releaseJob` deletes them once the job is gone.
   */
  startJob(job: SimJobStart): void {
    const source = `${job.id}-src`;
    const target = `${job.id}-dst`;
    const image = `/simulated/${this.name}/${job.id}.qcow2`;
    this.vm.createImage(image, job.sizeBytes ?? this.vm.defaultNodeSizeBytes);
    this.execute('blockdev-add', { driver: 'qcow2', 'node-name': source, file: { driver: 'file', filename: image } });
    this.execute('blockdev-add', { driver: 'qcow2', 'node-name': target, file: { driver: 'file', filename: image } });
    const common = {
      'job-id': job.id,
      ...(job.speed !== undefined ? { speed: job.speed } : {}),
      ...(job.autoFinalize !== undefined ? { 'auto-finalize': job.autoFinalize } : {}),
      ...(job.autoDismiss !== undefined ? { 'auto-dismiss': job.autoDismiss } : {}),
    };
    const start: Record<SimJobType, () => unknown> = {
      mirror: () => this.execute('blockdev-mirror', { ...common, device: source, target, sync: 'full' }),
      backup: () => this.execute('blockdev-backup', { ...common, device: source, target, sync: 'full' }),
      stream: () => this.execute('block-stream', { ...common, device: source }),
      commit: () => this.execute('block-commit', { ...common, device: source }),
    };
    start[job.type]();
  }

  /** Deletes the nodes `startJob` made (QEMU refuses while the job still holds them). */
  releaseJob(id: string): void {
    for (const node of [`${id}-src`, `${id}-dst`]) {
      if (this.vm.nodes.has(node)) this.execute('blockdev-del', { 'node-name': node });
    }
  }

  createImage(path: string, bytes: number): void {
    this.vm.createImage(path, bytes);
  }

  injectError(jobId: string, error: InjectedError): void {
    this.vm.injectError(jobId, error);
  }

  guestWrite(jobId: string, bytes: number): void {
    this.vm.guestWrite(jobId, bytes);
  }

  /** Every monitor's client gets EOF; QEMU itself keeps running (jobs continue unobserved). */
  dropClients(): void {
    for (const monitor of this.monitors.values()) monitor.dropClients();
  }

  /** The process dies: sockets close, jobs vanish. `restart()` brings up a fresh process. */
  async kill(): Promise<void> {
    if (!this.alive) return;
    this.alive = false;
    this.vm.reset();
    await Promise.all([...this.monitors.values()].map((m) => m.close()));
  }

  async restart(): Promise<void> {
    await this.kill();
    await Promise.all([...this.monitors.values()].map((m) => m.listen()));
    this.alive = true;
  }

  private monitor(name: string | undefined): SimMonitor {
    const monitor = name === undefined ? this.monitors.values().next().value : this.monitors.get(name);
    if (!monitor) throw new RangeError(`VM ${this.name} has no monitor ${JSON.stringify(name)}`);
    return monitor;
  }
}

export interface SimJobStart {
  id: string;
  type: SimJobType;
  /** Bytes/s, 0 = unlimited. @default 0 */
  speed?: number;
  /** @default the simulator's nodeSizeBytes */
  sizeBytes?: number;
  autoFinalize?: boolean;
  autoDismiss?: boolean;
}

export interface Simulator {
  readonly dir: string;
  readonly vms: readonly SimulatedVm[];
  vm(name: string): SimulatedVm;
  /** `unix:` address of a VM's monitor (the first monitor when none is named). */
  address(vm: string, monitor?: string): string;
  close(): Promise<void>;
}

export async function startSimulator(options: SimulatorOptions): Promise<Simulator> {
  const names = typeof options.vms === 'number'
    ? Array.from({ length: options.vms }, (_, i) => `vm${i + 1}`)
    : [...options.vms];
  if (names.length === 0) throw new RangeError('startSimulator: at least one VM is needed');
  if (new Set(names).size !== names.length) throw new RangeError('startSimulator: VM names must be unique');
  const monitorNames = options.monitors ?? ['gw'];
  if (monitorNames.length === 0) throw new RangeError('startSimulator: at least one monitor per VM is needed');
  const ownDir = options.dir === undefined;
  const dir = options.dir ?? (await mkdtemp(join(tmpdir(), 'bjg-sim-')));
  const timing: SimTiming = {
    readyWindowMs: options.readyWindowMs ?? 250,
    unlimitedBytesPerSec: options.unlimitedBytesPerSec ?? 256 * 1024 * 1024,
    nodeSizeBytes: options.nodeSizeBytes ?? 64 * 1024 * 1024,
  };
  const limits = { ...DEFAULT_MONITOR_LIMITS, ...options.limits };
  const ticker = new SharedTicker(options.tickMs ?? 50);

  const vms = names.map((name) => {
    const vm = new SimVm(name, options.version ?? QEMU_7_2_VERSION, timing, ticker);
    const monitors = new Map(monitorNames.map((m) => [m, new SimMonitor(vm, m, join(dir, `${name}.${m}.sock`), limits)]));
    return new SimulatedVm(name, vm, monitors);
  });
  const byName = new Map(vms.map((v) => [v.name, v]));
  const close = async (): Promise<void> => {
    ticker.stop();
    await Promise.all(vms.map((v) => v.kill()));
    if (ownDir) await rm(dir, { recursive: true, force: true });
  };
  try {
    await Promise.all(vms.flatMap((v) => [...v.monitors.values()].map((m) => m.listen())));
  } catch (err) {
    await close();
    throw err;
  }

  const vmNamed = (name: string): SimulatedVm => {
    const vm = byName.get(name);
    if (!vm) throw new RangeError(`no simulated VM named ${JSON.stringify(name)}`);
    return vm;
  };
  return { dir, vms, vm: vmNamed, address: (vm, monitor) => vmNamed(vm).address(monitor), close };
}
