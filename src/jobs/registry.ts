/**
 * JobRegistry: the job engines of many VMs (one monitor each, named), added and removed at run
 * time, behind the JobSource contract: one snapshot of all jobs, one merged stream of changes
 * (each tagged with its VM, synchronous, in order per VM) and one progress stream.
 */
import type { Logger } from '../log.js';
import { Subject, type Observable, type Subscription } from 'rxjs';
import { ConfigError } from '../errors.js';
import { QmpClient } from '../qmp/client.js';
import type { QmpMonitor } from '../qmp/types.js';
import { MonitorJobs, type MonitorJobsOptions } from './monitor-jobs.js';
import type { JobSource, JobState, JobVerb, MonitorCapabilities, ProgressUpdate, StreamInput, VmSnapshot } from './types.js';

/** A monitor the registry created and therefore closes. */
export interface OwnedMonitor extends QmpMonitor {
  close(): Promise<void>;
}

export interface JobRegistryOptions extends MonitorJobsOptions {
  /**
   * Creates (and starts) the monitor for an address string given to add().
   * @default a started QmpClient named after the VM
   */
  createMonitor?: (vm: string, address: string) => OwnedMonitor;
}

interface Entry {
  engine: MonitorJobs;
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
  private closed = false;

  readonly changes$: Observable<StreamInput> = this.changes.asObservable();
  readonly progress$: Observable<ProgressUpdate> = this.progress.asObservable();

  constructor(private readonly options: JobRegistryOptions = {}) {}

  /**
   * Follows the jobs of `vm`. Given a monitor, the caller keeps owning it; given an address
   * (`unix:/path`, `tcp:host:port`), the registry creates the client and closes it on remove().
   */
  add(vm: string, monitorOrAddress: QmpMonitor | string, options: MonitorJobsOptions = {}): MonitorJobs {
    if (this.closed) throw new ConfigError('the job registry is closed', vm);
    if (!VM_NAME.test(vm)) throw new ConfigError(`invalid VM name ${JSON.stringify(vm)}: use 1-64 of [A-Za-z0-9._-], starting with a letter or digit`, 'vm');
    if (this.entries.has(vm)) throw new ConfigError(`VM ${JSON.stringify(vm)} is already registered`, vm);
    const owned = typeof monitorOrAddress === 'string' ? (this.options.createMonitor ? this.options.createMonitor(vm, monitorOrAddress) : startClient(vm, monitorOrAddress, this.options.logger)) : undefined;
    const engine = new MonitorJobs(vm, owned ?? (monitorOrAddress as QmpMonitor), { ...this.options, ...options });
    const entry: Entry = {
      engine,
      subscriptions: [
        engine.changes$.subscribe((change) => this.changes.next(change)),
        engine.progress$.subscribe((update) => this.progress.next(update)),
      ],
    };
    if (owned) entry.owned = owned;
    this.entries.set(vm, entry);
    engine.start();
    return engine;
  }

  /** Stops following `vm` (closing its monitor if the registry created it). Its jobs leave the snapshot. */
  async remove(vm: string): Promise<boolean> {
    const entry = this.entries.get(vm);
    if (!entry) return false;
    this.entries.delete(vm);
    entry.engine.stop();
    for (const subscription of entry.subscriptions) subscription.unsubscribe();
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

  monitor(vm: string): QmpMonitor | undefined {
    return this.entries.get(vm)?.engine.monitor;
  }

  capabilities(vm: string): MonitorCapabilities | undefined {
    return this.entries.get(vm)?.engine.capabilities();
  }

  noteVerb(vm: string, id: string, verb: JobVerb): void {
    this.entries.get(vm)?.engine.noteVerb(id, verb);
  }

  /** Removes every VM and completes the streams. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all(this.vms().map((vm) => this.remove(vm)));
    this.changes.complete();
    this.progress.complete();
  }
}
