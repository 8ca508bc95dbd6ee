/**
 * The libvirt job source: every domain of one libvirt connection is a VM (named by domain name),
 * followed with no change to the domain. Each running domain gets a DomainFeed (QEMU's events
 * through libvirt's passthrough) and the same job engine as a direct QMP monitor, so ready truth,
 * outcomes, debounce and incarnations are identical; this file adds what only libvirt knows:
 *
 * - which domains exist and run: resync on every libvirt session (list, then each running
 *   domain's session reconciles), lifecycle events for domains that start or stop later;
 * - libvirt's verdicts (block-job-2) and the disk and domain UUID on each job (verdicts.ts);
 * - libvirt-internal `create-*` jobs are hidden unless asked for.
 *
 * A stopped domain goes `disconnected` (its jobs stale), as a QMP monitor that goes away; a
 * transient domain that no longer exists is then removed. libvirt dismisses its own jobs, which
 * the engine reports as the normal concluded -> dismissed.
 *
 * The dismissal of a libvirt job is held (at most `verdictWaitMs`) until libvirt's verdict, which
 * arrives ~15 ms after QEMU's, so the pushed `dismissed` carries both; later changes of that VM
 * queue behind it, keeping the per-VM order.
 */
import { Subject, Subscription, of, type Observable } from 'rxjs';
import { ConfigError } from '../../errors.js';
import { capabilitiesFromVersion } from '../capabilities.js';
import type { MonitorJobs, MonitorJobsOptions } from '../monitor-jobs.js';
import { configDefaults } from '../../generated/config-defaults.js';
import { JobRegistry, type JobRegistryOptions } from '../registry.js';
import type { JobSource, JobState, ProgressUpdate, StreamInput, VmInfo, VmInfoUpdate, VmSnapshot, VmStatus } from '../types.js';
import { silentLogger, type Logger } from '../../log.js';
import { DomainFeed } from './domain-feed.js';
import { isInternalJobId, parseLibvirtJobId } from '../../libvirt/job-ids.js';
import { pollDomain } from './poll.js';
import type { DomainRef, LibvirtBlockJobEvent, LibvirtConnection, LibvirtDomainEvent, LibvirtEventWatch, LibvirtLifecycleEvent } from '../../libvirt/types.js';
import { VerdictBook } from './verdicts.js';

export interface LibvirtSourceOptions {
  /** Follow only domains whose name matches. @default every domain */
  domainFilter?: RegExp;
  /** Show libvirt-internal `create-*` jobs (target and overlay creation). @default false */
  showInternalJobs?: boolean;
  /** How long a libvirt job's dismissal may wait for libvirt's verdict. @default 1_000 */
  verdictWaitMs?: number;
  /** Job engine settings (poll cadence, holds, retention), as for QMP monitors. */
  engine?: MonitorJobsOptions;
  /** Jobs an earlier process published for a domain (a fleet host's restart), as for QMP monitors (JobRegistryOptions.seedOf). */
  seedOf?: JobRegistryOptions['seedOf'];
  logger?: Logger;
}

interface Followed {
  uuid: string;
  monitor: DomainFeed;
  /** True from the first poll of a session until one is answered. */
  reconcilePending: boolean;
}

interface Hold {
  /** The held dismissal's job. */
  job: { id: string; incarnation: number };
  queue: StreamInput[];
  timer: NodeJS.Timeout;
}

const VM_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const DEFAULT_VERDICT_WAIT_MS = 1_000;
/** Jobs per VM whose last delivered state is kept (only a held job's is ever read). */
const MAX_DELIVERED_PER_VM = 500;
/** libvirt's "no domain" error (VIR_ERR_NO_DOMAIN). */
const VIR_ERR_NO_DOMAIN = 42;

export class LibvirtSource implements JobSource {
  private readonly registry: JobRegistry;
  private readonly followed = new Map<string, Followed>();
  private readonly verdicts = new VerdictBook();
  private readonly holds = new Map<string, Hold>();
  /** Last state delivered per VM and job: what a snapshot shows while a change is held. */
  private readonly delivered = new Map<string, Map<string, JobState>>();
  private readonly changes = new Subject<StreamInput>();
  private readonly subscriptions = new Subscription();
  private readonly watches: LibvirtEventWatch[] = [];
  private readonly logger: Logger;
  private started = false;

  readonly changes$: Observable<StreamInput> = this.changes.asObservable();
  readonly progress$: Observable<ProgressUpdate>;
  readonly vmInfo$: Observable<VmInfoUpdate>;

  constructor(
    readonly connection: LibvirtConnection,
    private readonly options: LibvirtSourceOptions = {},
  ) {
    this.logger = options.logger ?? silentLogger;
    this.registry = new JobRegistry({ ...options.engine, ...(options.seedOf ? { seedOf: options.seedOf } : {}), logger: this.logger });
    this.vmInfo$ = this.registry.vmInfo$;
    this.progress$ = new Subject<ProgressUpdate>();
    this.subscriptions.add(this.registry.changes$.subscribe((change) => this.route(change)));
    this.subscriptions.add(
      this.registry.progress$.subscribe((update) => {
        if (this.visible(update.job)) (this.progress$ as Subject<ProgressUpdate>).next(update);
      }),
    );
  }

  /** Registers the watches and follows the connection (starting it if it is idle). Call once. */
  start(): void {
    if (this.started) throw new ConfigError('the libvirt source is already started', this.connection.name);
    this.started = true;
    const conn = this.connection;
    this.subscriptions.add(conn.monitorEvents$.subscribe((event) => this.followed.get(event.domain.uuid)?.monitor.deliver(event)));
    this.subscriptions.add(conn.domainEvents$.subscribe((event) => this.onDomainEvent(event)));
    this.subscriptions.add(conn.sessions$.subscribe(() => void this.resync()));
    this.subscriptions.add(
      conn.state$.subscribe((state) => {
        if (state !== 'ready') for (const entry of this.followed.values()) entry.monitor.down(`libvirt connection ${conn.name} is ${state}`);
      }),
    );
    // Watches first: sessions$ emits once they deliver, so the resync misses nothing.
    this.watches.push(conn.watchMonitorEvents(), conn.watchDomainEvents('lifecycle'), conn.watchDomainEvents('block-job-2'));
    if (conn.state === 'idle') conn.start();
    else if (conn.state === 'ready') void this.resync();
  }

  async close(): Promise<void> {
    this.subscriptions.unsubscribe();
    for (const hold of this.holds.values()) clearTimeout(hold.timer);
    this.holds.clear();
    await Promise.all(this.watches.map((watch) => watch.close().catch(() => undefined)));
    await this.registry.close();
    for (const entry of this.followed.values()) await entry.monitor.close();
    this.followed.clear();
    this.changes.complete();
    (this.progress$ as Subject<ProgressUpdate>).complete();
  }

  vms(): string[] {
    return this.registry.vms();
  }

  snapshot(): VmSnapshot[] {
    return this.registry.snapshot().map((vm) => ({ ...vm, jobs: vm.jobs.filter((job) => this.visible(job.id)).map((job) => this.shown(vm.vm, job)) }));
  }

  job(vm: string, id: string): JobState | undefined {
    const job = this.registry.job(vm, id);
    return job && this.visible(id) ? this.shown(vm, job) : undefined;
  }

  info(vm: string): VmInfo | undefined {
    return this.registry.info(vm);
  }

  seed(vm: string, jobs: readonly JobState[], status?: VmStatus): void {
    this.registry.seed(vm, jobs, status);
  }

  /** What job control needs of a VM: its engine (told of each verb first) and its domain. */
  target(vm: string): { engine: MonitorJobs; domain: DomainRef; connected: boolean } | undefined {
    const engine = this.registry.engine(vm);
    const entry = [...this.followed.values()].find((candidate) => candidate.monitor.domain.name === vm);
    if (!engine || !entry) return undefined;
    return { engine, domain: entry.monitor.domain, connected: entry.monitor.state === 'ready' && !entry.reconcilePending };
  }

  /** Lists the domains and brings every followed one in line: the start of each libvirt session. */
  private async resync(): Promise<void> {
    const conn = this.connection;
    const session = conn.session;
    if (!session) return;
    let domains;
    try {
      domains = await conn.listAllDomains();
    } catch (error) {
      this.logger.warn({ libvirt: conn.name, err: error }, 'listing domains failed; the next session retries');
      return;
    }
    if (conn.session !== session) return; // a newer session resyncs
    const present = new Set<string>();
    for (const domain of domains) {
      if (!this.wanted(domain.name)) continue;
      present.add(domain.uuid);
      if (domain.active) this.domainUp(domain, session.seq);
      else this.followed.get(domain.uuid)?.monitor.down(`domain ${domain.name} is not running`);
    }
    for (const [uuid, entry] of this.followed) if (!present.has(uuid)) await this.forget(uuid, entry);
  }

  private onDomainEvent(event: LibvirtDomainEvent): void {
    if (event.kind === 'block-job-2') return this.onVerdict(event);
    this.onLifecycle(event);
  }

  private onLifecycle(event: LibvirtLifecycleEvent): void {
    const { domain } = event;
    if (!this.wanted(domain.name)) return;
    const session = this.connection.session;
    if (event.event === 'started' || event.event === 'resumed') {
      if (session && this.followed.get(domain.uuid)?.monitor.state !== 'ready') this.domainUp(domain, event.seq);
    } else if (event.event === 'stopped' || event.event === 'crashed') {
      const entry = this.followed.get(domain.uuid);
      if (!entry) return;
      entry.monitor.down(`domain ${domain.name} ${event.event}`);
      void this.removeIfGone(domain.uuid);
    } else if (event.event === 'undefined') {
      const entry = this.followed.get(domain.uuid);
      if (entry && entry.monitor.state !== 'ready') void this.forget(domain.uuid, entry);
    }
  }

  /** A transient domain that stopped no longer exists: stop following it. */
  private async removeIfGone(uuid: string): Promise<void> {
    const entry = this.followed.get(uuid);
    if (!entry) return;
    try {
      await this.connection.lookupDomainByUuid(uuid);
    } catch (error) {
      if ((error as { virCode?: number }).virCode === VIR_ERR_NO_DOMAIN && entry.monitor.state !== 'ready') await this.forget(uuid, entry);
    }
  }

  private domainUp(domain: DomainRef, seq: number): void {
    const session = this.connection.session;
    if (!session) return;
    if (!VM_NAME.test(domain.name)) {
      this.logger.warn({ libvirt: this.connection.name, domain: domain.name }, 'domain name is not a valid VM name; not followed');
      return;
    }
    let entry = this.followed.get(domain.uuid);
    if (!entry) {
      const monitor = new DomainFeed(domain, `${this.connection.uri} domain ${domain.name}`);
      const created: Followed = { uuid: domain.uuid, monitor, reconcilePending: true };
      entry = created;
      this.followed.set(domain.uuid, created);
      const pollTimeoutMs = this.options.engine?.pollTimeoutMs ?? configDefaults.jobs.pollTimeoutMs;
      const version = session.hypervisorVersion;
      this.registry.add(domain.name, monitor, {
        backend: 'libvirt',
        libvirtVersion: () => this.connection.session?.libVersion,
        detectCapabilities: () => of({ capabilities: capabilitiesFromVersion({ major: version.major, minor: version.minor, micro: version.micro }), from: 'version' as const }),
        poll: async () => {
          const result = await pollDomain({
            connection: this.connection,
            monitor,
            jobOf: (id) => this.registry.job(domain.name, id),
            reconcile: created.reconcilePending,
            timeoutMs: pollTimeoutMs,
          });
          created.reconcilePending = false;
          return result;
        },
      });
    }
    entry.reconcilePending = true;
    entry.monitor.up(domain, session.hypervisorVersion, seq);
  }

  private async forget(uuid: string, entry: Followed): Promise<void> {
    this.followed.delete(uuid);
    const vm = entry.monitor.domain.name;
    this.flush(vm);
    await this.registry.remove(vm);
    await entry.monitor.close();
    this.verdicts.forget(vm);
    this.delivered.delete(vm);
  }

  private onVerdict(event: LibvirtBlockJobEvent): void {
    const entry = this.followed.get(event.domain.uuid);
    if (!entry) return;
    const vm = entry.monitor.domain.name;
    const jobs = this.registry.snapshot().find((snapshot) => snapshot.vm === vm)?.jobs ?? [];
    const job = this.verdicts.record(vm, event, jobs);
    if (!job) {
      this.logger.info({ vm, disk: event.disk, status: event.status }, 'libvirt verdict for a job the gateway did not see');
      return;
    }
    const hold = this.holds.get(vm);
    if (hold && hold.job.id === job.id && hold.job.incarnation === job.incarnation) this.flush(vm);
  }

  /** Every change of the engine passes here: internal jobs dropped, libvirt facts added, dismissals held for the verdict. */
  private route(change: StreamInput): void {
    if (change.kind === 'transition' && !this.visible(change.job.id)) return;
    const hold = this.holds.get(change.vm);
    if (hold) {
      hold.queue.push(change);
      return;
    }
    if (change.kind === 'transition' && change.to.state === 'dismissed' && parseLibvirtJobId(change.job.id) && !this.verdicts.hasFinalVerdict(change.vm, change.job)) {
      const timer = setTimeout(() => this.flush(change.vm), this.options.verdictWaitMs ?? DEFAULT_VERDICT_WAIT_MS);
      this.holds.set(change.vm, { job: { id: change.job.id, incarnation: change.job.incarnation }, queue: [change], timer });
      return;
    }
    this.emit(change);
  }

  private flush(vm: string): void {
    const hold = this.holds.get(vm);
    if (!hold) return;
    this.holds.delete(vm);
    clearTimeout(hold.timer);
    for (const change of hold.queue) this.route(change);
  }

  private emit(change: StreamInput): void {
    if (change.kind !== 'transition') {
      this.changes.next(change);
      return;
    }
    const job = this.decorate(change.vm, change.job);
    let jobs = this.delivered.get(change.vm);
    if (!jobs) this.delivered.set(change.vm, (jobs = new Map()));
    jobs.delete(job.id);
    jobs.set(job.id, job);
    if (jobs.size > MAX_DELIVERED_PER_VM) jobs.delete(jobs.keys().next().value as string);
    this.changes.next({ ...change, job });
  }

  /** A job as subscribers know it: while its VM has a held change, the state last delivered. */
  private shown(vm: string, job: JobState): JobState {
    const hold = this.holds.get(vm);
    if (hold?.queue.some((change) => change.kind === 'transition' && change.job.id === job.id)) {
      const told = this.delivered.get(vm)?.get(job.id);
      if (told) return told;
    }
    return this.decorate(vm, job);
  }

  private decorate(vm: string, job: JobState): JobState {
    const uuid = [...this.followed.values()].find((entry) => entry.monitor.domain.name === vm)?.uuid;
    return uuid ? this.verdicts.decorate(job, uuid) : job;
  }

  private visible(id: string): boolean {
    return this.options.showInternalJobs === true || !isInternalJobId(id);
  }

  private wanted(name: string): boolean {
    return this.options.domainFilter === undefined || this.options.domainFilter.test(name);
  }
}
