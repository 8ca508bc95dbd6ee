/**
 * JobRegistry: the job engines of many VMs (one feed each, named), added and removed at run time,
 * behind the JobSource contract: one snapshot of all jobs, one merged stream of changes (each tagged
 * with its VM, synchronous, in order per VM), one progress stream and the VMs' info. `control` is
 * the QMP control port for the VMs added with a QMP monitor (see qmp-control.ts).
 */
import type { Logger } from '../log.js';
import { Subject, concat, defer, from, type Observable, type Subscription } from 'rxjs';
import { ConfigError } from '../errors.js';
import { QmpClient } from '../qmp/client.js';
import type { QmpMonitor } from '../qmp/types.js';
import type { ControlPort } from './control-port.js';
import { MonitorJobs, isQmpMonitor, type JobFeed, type MonitorJobsOptions } from './monitor-jobs.js';
import { QmpControl, type QmpControlOptions } from './qmp-control.js';
import type { JobSource, JobState, MonitorCapabilities, ProgressUpdate, StreamInput, VmInfo, VmInfoUpdate, VmSnapshot, VmStatus } from './types.js';

/** A monitor the registry created and therefore closes. */
export interface OwnedMonitor extends QmpMonitor {
  close(): Promise<void>;
}

export interface JobRegistryOptions extends MonitorJobsOptions, QmpControlOptions {
  /**
   * Creates (and starts) the monitor for an address string given to add().
   * @default a started QmpClient named after the VM
   */
  createMonitor?: (vm: string, address: string) => OwnedMonitor;
  /**
   * Jobs an earlier process told subscribers of (a fleet host's, from Redis): asked for each VM added,
   * and given to its engine before it starts, so its first reconcile continues them (see
   * MonitorJobs.seed). Whatever the source of the VM. Should settle promptly (undefined when unknown).
   */
  seedOf?: (vm: string) => Promise<{ jobs: readonly JobState[]; status?: VmStatus } | undefined>;
}

interface Entry {
  engine: MonitorJobs;
  /** The monitor verbs are written to; absent for a feed that is not a QMP monitor. */
  monitor?: QmpMonitor;
  owned?: OwnedMonitor;
  subscriptions: Subscription[];
}

/** VM names appear in URLs, logs and metrics: keep them plain. */
const VM_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

function startClient(vm: string, address: string, logger: Logger | undefined): OwnedMonitor {
  const client = new QmpClient({ address, name: vm, ...(logger ? { logger } : {}) });
  client.start();
  return client;
}

export class JobRegistry implements JobSource {
  private readonly entries = new Map<string, Entry>();
  private readonly changes = new Subject<StreamInput>();
  private readonly progress = new Subject<ProgressUpdate>();
  private readonly infoUpdates = new Subject<VmInfoUpdate>();
  private closed = false;

  readonly changes$: Observable<StreamInput> = this.changes.asObservable();
  readonly progress$: Observable<ProgressUpdate> = this.progress.asObservable();
  readonly vmInfo$: Observable<VmInfoUpdate> = defer(() =>
    concat(from([...this.entries.values()].map((entry): VmInfoUpdate => ({ kind: 'info', info: entry.engine.info() }))), this.infoUpdates),
  );
  /** Job control for the VMs added with a QMP monitor (or an address). */
  readonly control: ControlPort;

  constructor(private readonly options: JobRegistryOptions = {}) {
    this.control = new QmpControl((vm) => {
      const entry = this.entries.get(vm);
      return entry && { engine: entry.engine, ...(entry.monitor ? { monitor: entry.monitor } : {}) };
    }, options.observeOnly ? { observeOnly: options.observeOnly } : {});
  }

  /**
   * Follows the jobs of `vm`. Given a monitor, the caller keeps owning it; given an address
   * (`unix:/path`, `tcp:host:port`), the registry creates the client and closes it on remove().
   * Given a feed that is not a QMP monitor (QEMU's events from elsewhere), `options` must say how to
   * poll and detect capabilities, and the VM is not controlled through `control` (see ports.md).
   */
  add(vm: string, feed: QmpMonitor | JobFeed | string, options: MonitorJobsOptions = {}): MonitorJobs {
    if (this.closed) throw new ConfigError('the job registry is closed', vm);
    if (!VM_NAME.test(vm)) throw new ConfigError(`invalid VM name ${JSON.stringify(vm)}: use 1-64 of [A-Za-z0-9._-], starting with a letter or digit`, 'vm');
    if (this.entries.has(vm)) throw new ConfigError(`VM ${JSON.stringify(vm)} is already registered`, vm);
    const owned = typeof feed === 'string' ? (this.options.createMonitor ? this.options.createMonitor(vm, feed) : startClient(vm, feed, this.options.logger)) : undefined;
    const source = owned ?? (feed as QmpMonitor | JobFeed);
    const engine = new MonitorJobs(vm, source, { ...this.options, ...options });
    const entry: Entry = {
      engine,
      subscriptions: [
        engine.changes$.subscribe((change) => this.changes.next(change)),
        engine.progress$.subscribe((update) => this.progress.next(update)),
        engine.info$.subscribe((info) => this.infoUpdates.next({ kind: 'info', info })),
      ],
    };
    if (isQmpMonitor(source)) entry.monitor = source;
    if (owned) entry.owned = owned;
    this.entries.set(vm, entry);
    this.infoUpdates.next({ kind: 'info', info: engine.info() });
    const seedOf = this.options.seedOf;
    if (!seedOf) engine.start();
    else {
      const start = (seed?: { jobs: readonly JobState[]; status?: VmStatus }): void => {
        if (this.entries.get(vm) !== entry) return; // removed meanwhile
        if (seed) engine.seed(seed.jobs, seed.status);
        engine.start();
      };
      seedOf(vm).then(start, () => start());
    }
    return engine;
  }

  /** Stops following `vm` (closing its monitor if the registry created it). Its jobs leave the snapshot. */
  async remove(vm: string): Promise<boolean> {
    const entry = this.entries.get(vm);
    if (!entry) return false;
    this.entries.delete(vm);
    entry.engine.stop();
    for (const subscription of entry.subscriptions) subscription.unsubscribe();
    this.infoUpdates.next({ kind: 'removed', vm });
    await entry.owned?.close();
    return true;
  }

  vms(): string[] {
    return [...this.entries.keys()];
  }

  snapshot(): VmSnapshot[] {
    return [...this.entries.values()].map((entry) => entry.engine.snapshot());
  }

  job(vm: string, id: string): JobState | undefined {
    return this.entries.get(vm)?.engine.job(id);
  }

  info(vm: string): VmInfo | undefined {
    return this.entries.get(vm)?.engine.info();
  }

  announced(vm: string, id: string): boolean {
    return this.entries.get(vm)?.engine.announced(id) ?? false;
  }

  settle(vm: string, timeoutMs: number): Promise<void> {
    return this.entries.get(vm)?.engine.settle(timeoutMs) ?? Promise.resolve();
  }

  seed(vm: string, jobs: readonly JobState[], status?: VmStatus): void {
    this.entries.get(vm)?.engine.seed(jobs, status);
  }

  /** The VM's engine: for a control port of another backend, which must tell it of each verb (noteVerb). */
  engine(vm: string): MonitorJobs | undefined {
    return this.entries.get(vm)?.engine;
  }

  /** What the VM's QEMU can do, once a session told it. */
  capabilities(vm: string): MonitorCapabilities | undefined {
    return this.entries.get(vm)?.engine.capabilities();
  }

  /** Removes every VM and completes the streams. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all(this.vms().map((vm) => this.remove(vm)));
    this.changes.complete();
    this.progress.complete();
    this.infoUpdates.complete();
  }
}

