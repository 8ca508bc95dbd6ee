/**
 * The one in-memory JobSource of the tests, with the real QMP control port (QmpControl) in front of
 * a fake monitor whose replies the test scripts. Jobs change when the test says so, each change
 * published synchronously like the engine's; `log` records, in order, what the engine was told and
 * what was written (`note:complete`, `qmp:job-complete`), to check that the engine hears a verb first.
 */
import { BehaviorSubject, EMPTY, Subject, concat, defer, from, type Observable } from 'rxjs';
import { capabilitiesFromVersion } from '../../src/jobs/capabilities.js';
import type { ControlPort } from '../../src/jobs/control-port.js';
import { QmpControl } from '../../src/jobs/qmp-control.js';
import type {
  JobSource,
  JobState,
  JobStatusName,
  JobVerb,
  MonitorCapabilities,
  ProgressUpdate,
  StreamInput,
  VmInfo,
  VmInfoUpdate,
  VmSnapshot,
  VmStatus,
} from '../../src/jobs/types.js';
import type { QmpMonitor, QmpRunState } from '../../src/qmp/types.js';

export function makeJob(fields: Partial<JobState> = {}): JobState {
  const at = new Date(0).toISOString();
  return {
    vm: 'vm1',
    id: 'j0',
    incarnation: 1,
    type: 'mirror',
    state: 'running',
    ready: false,
    stale: false,
    progress: { current: 0, total: 100, percent: 0, rate: null, etaSeconds: null },
    updatedAt: at,
    stateSince: at,
    source: 'event',
    ...fields,
  };
}

export type ScriptedReply = (command: string, args: Record<string, unknown> | undefined) => Promise<unknown>;

export class FakeJobSource implements JobSource {
  /** What the engine was told and what was written, in order: `note:complete`, `qmp:job-complete`. */
  readonly log: string[] = [];
  /** Every QMP command, with the reply timeout it was given. */
  readonly calls: { command: string; args: Record<string, unknown> | undefined; timeoutMs?: number }[] = [];
  capabilitiesValue: MonitorCapabilities = capabilitiesFromVersion({ major: 7, minor: 2, micro: 0 });
  /** The monitor's answer to each command written. */
  reply: ScriptedReply = () => Promise.resolve({});
  readonly changes$ = new Subject<StreamInput>();
  readonly progress$ = new Subject<ProgressUpdate>();
  readonly vmInfo$: Observable<VmInfoUpdate>;
  /** The real QMP control port, writing to the fake monitor. */
  readonly control: ControlPort;
  private readonly infoUpdates = new Subject<VmInfoUpdate>();
  private readonly jobsByVm = new Map<string, Map<string, JobState>>();
  private readonly statuses = new Map<string, VmStatus>();
  private readonly monitorState = new BehaviorSubject<QmpRunState>('ready');

  constructor(vms: string[] = ['vm1']) {
    for (const vm of vms) {
      this.jobsByVm.set(vm, new Map());
      this.statuses.set(vm, 'connected');
    }
    this.vmInfo$ = defer(() => concat(from(this.vms().map((vm): VmInfoUpdate => ({ kind: 'info', info: this.info(vm)! }))), this.infoUpdates));
    const monitor = this.fakeMonitor();
    const engine = {
      capabilities: () => this.capabilitiesValue,
      noteVerb: (_id: string, verb: JobVerb) => void this.log.push(`note:${verb}`),
    };
    this.control = new QmpControl((vm) => (this.jobsByVm.has(vm) ? { engine, monitor } : undefined));
  }

  vms(): string[] {
    return [...this.jobsByVm.keys()];
  }

  snapshot(): VmSnapshot[] {
    return this.vms().map((vm) => ({ vm, status: this.statuses.get(vm)!, jobs: [...this.jobsByVm.get(vm)!.values()] }));
  }

  job(vm: string, id: string): JobState | undefined {
    return this.jobsByVm.get(vm)?.get(id);
  }

  info(vm: string): VmInfo | undefined {
    const status = this.statuses.get(vm);
    if (status === undefined) return undefined;
    return { vm, status, backend: 'qmp', qemu: this.capabilitiesValue.version, commandsSent: this.calls.length, problems: {} };
  }

  /** Adds a VM at run time, as a registry does. */
  addVm(vm: string): void {
    this.jobsByVm.set(vm, new Map());
    this.statuses.set(vm, 'connected');
    this.infoUpdates.next({ kind: 'info', info: this.info(vm)! });
  }

  /** Sets (merges into) a job and publishes the transition, as the engine does; a new incarnation replaces it. */
  set(fields: Partial<JobState> & { id?: string }): JobState {
    const vm = fields.vm ?? 'vm1';
    const id = fields.id ?? 'j0';
    const jobs = this.jobsOf(vm);
    const before = jobs.get(id);
    const job = before && (fields.incarnation ?? before.incarnation) === before.incarnation ? { ...before, ...fields } : makeJob({ vm, ...fields });
    jobs.set(id, job);
    this.changes$.next({
      kind: 'transition',
      vm,
      job,
      from: before ? { state: before.state, ready: before.ready } : null,
      to: { state: job.state, ready: job.ready },
      source: job.source,
      at: Date.now(),
    });
    return job;
  }

  /** Moves a job to `state` (creating it on first use) and publishes the transition, like the engine. */
  transition(vm: string, id: string, state: JobStatusName, fields: Partial<JobState> = {}): JobState {
    const before = this.jobsOf(vm).get(id);
    const now = new Date().toISOString();
    const job: JobState = {
      ...makeJob({ vm, id, progress: { current: 0, total: 1 << 20, percent: 0, rate: null, etaSeconds: null }, updatedAt: now, stateSince: now }),
      ...before,
      ...fields,
      state,
      ready: fields.ready ?? (state === 'ready' || state === 'standby' || (state === 'paused' && before?.ready === true)),
    };
    this.jobsOf(vm).set(id, job);
    this.changes$.next({
      kind: 'transition',
      vm,
      job,
      from: before ? { state: before.state, ready: before.ready } : null,
      to: { state, ready: job.ready },
      source: 'event',
      at: Date.now(),
      qmpReceivedMono: performance.now(),
    });
    return job;
  }

  /** A VM status change, published on the stream. */
  setStatus(vm: string, status: VmStatus): void {
    this.statuses.set(vm, status);
    this.changes$.next({ kind: 'vm', vm, status, at: Date.now() });
    this.infoUpdates.next({ kind: 'info', info: this.info(vm)! });
  }

  /** vm1's monitor up or down: down marks every job stale; only a reconcile (reconcileQuietly, or set()) clears it. */
  setMonitor(state: QmpRunState): void {
    this.monitorState.next(state);
    const jobs = this.jobsOf('vm1');
    if (state !== 'ready') for (const [id, job] of jobs) jobs.set(id, { ...job, stale: true });
    this.setStatus('vm1', state === 'ready' ? 'connected' : 'disconnected');
  }

  /** Clears `stale` silently, as a reconcile that finds nothing new does. */
  reconcileQuietly(): void {
    for (const jobs of this.jobsByVm.values()) for (const [id, job] of jobs) jobs.set(id, { ...job, stale: false });
  }

  /** Publishes a progress update of a known job. */
  progress(vm: string, id: string, current: number, total = 1 << 20): void {
    const job = this.jobsOf(vm).get(id)!;
    const progress = { current, total, percent: (100 * current) / total, rate: 1000, etaSeconds: (total - current) / 1000 };
    this.jobsOf(vm).set(id, { ...job, progress });
    this.progress$.next({ vm, job: id, incarnation: job.incarnation, type: job.type, state: job.state, progress, at: Date.now() });
  }

  private jobsOf(vm: string): Map<string, JobState> {
    const jobs = this.jobsByVm.get(vm);
    if (!jobs) throw new Error(`the fake source has no VM ${vm}`);
    return jobs;
  }

  private fakeMonitor(): QmpMonitor {
    const execute = <T>(command: string, args?: Record<string, unknown>, options?: { timeoutMs?: number }): Promise<T> => {
      this.log.push(`qmp:${command}`);
      this.calls.push({ command, args, ...(options?.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}) });
      return this.reply(command, args) as Promise<T>;
    };
    const monitorState = this.monitorState;
    return {
      get state() {
        return monitorState.value;
      },
      state$: monitorState.asObservable(),
      sessions$: EMPTY,
      session: undefined,
      events$: EMPTY,
      errors$: EMPTY,
      execute,
      executeWithMeta: async <T>(command: string, args?: Record<string, unknown>) => ({
        value: await execute<T>(command, args),
        seq: 0,
        receivedAt: Date.now(),
        session: 1,
      }),
    };
  }
}

/** A promise with its resolve/reject exposed (a reply the test releases later). */
export function deferred<T = unknown>(): { promise: Promise<T>; resolve(value: T): void; reject(error: unknown): void } {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}
