/**
 * An in-memory JobSource for the controller's unit tests: jobs the test sets (each change published
 * synchronously, like the engine), one monitor whose replies the test scripts, and one ordered log
 * of what the controller did (noteVerb and execute), to check that the engine hears a verb first.
 */
import { BehaviorSubject, EMPTY, Subject, type Observable } from 'rxjs';
import { capabilitiesFromVersion } from '../../../src/jobs/capabilities.js';
import type { JobSource, JobState, JobVerb, MonitorCapabilities, StreamInput, VmSnapshot } from '../../../src/jobs/types.js';
import type { QmpMonitor, QmpRunState } from '../../../src/qmp/types.js';

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
  /** noteVerb and execute calls, in order: `note:complete`, `qmp:job-complete`. */
  readonly log: string[] = [];
  readonly calls: { command: string; args: Record<string, unknown> | undefined }[] = [];
  capabilitiesValue: MonitorCapabilities = capabilitiesFromVersion({ major: 7, minor: 2, micro: 0 });
  reply: ScriptedReply = () => Promise.resolve({});
  readonly progress$: Observable<never> = EMPTY;
  private readonly jobs = new Map<string, JobState>();
  private readonly changes = new Subject<StreamInput>();
  readonly changes$: Observable<StreamInput> = this.changes.asObservable();
  private readonly monitorState = new BehaviorSubject<QmpRunState>('ready');
  private readonly fakeMonitor: QmpMonitor;

  constructor(readonly vmNames: string[] = ['vm1']) {
    const state$ = this.monitorState.asObservable();
    const execute = <T>(command: string, args?: Record<string, unknown>): Promise<T> => {
      this.log.push(`qmp:${command}`);
      this.calls.push({ command, args });
      return this.reply(command, args) as Promise<T>;
    };
    const monitorState = this.monitorState;
    this.fakeMonitor = {
      get state() {
        return monitorState.value;
      },
      state$,
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

  /** Sets (merges into) a job and publishes the transition, as the engine does. */
  set(fields: Partial<JobState> & { id?: string }): JobState {
    const id = fields.id ?? 'j0';
    const before = this.jobs.get(id);
    const job = before && (fields.incarnation ?? before.incarnation) === before.incarnation ? { ...before, ...fields } : makeJob(fields);
    this.jobs.set(id, job);
    this.changes.next({
      kind: 'transition',
      vm: job.vm,
      job,
      from: before ? { state: before.state, ready: before.ready } : null,
      to: { state: job.state, ready: job.ready },
      source: job.source,
      at: Date.now(),
    });
    return job;
  }

  /** Monitor up or down, with the VM status change the engine publishes. */
  setMonitor(state: QmpRunState): void {
    this.monitorState.next(state);
    // Down marks every job stale; only a reconcile (see reconcileQuietly, or set()) clears it.
    if (state !== 'ready') for (const [id, job] of this.jobs) this.jobs.set(id, { ...job, stale: true });
    this.changes.next({ kind: 'vm', vm: 'vm1', status: state === 'ready' ? 'connected' : 'disconnected', at: Date.now() });
  }

  /** Clears `stale` silently, as a reconcile that finds nothing new does. */
  reconcileQuietly(): void {
    for (const [id, job] of this.jobs) this.jobs.set(id, { ...job, stale: false });
  }

  vms(): string[] {
    return this.vmNames;
  }

  snapshot(): VmSnapshot[] {
    return this.vmNames.map((vm) => ({ vm, status: 'connected', jobs: [...this.jobs.values()].filter((j) => j.vm === vm) }));
  }

  job(vm: string, id: string): JobState | undefined {
    const job = this.jobs.get(id);
    return job?.vm === vm ? job : undefined;
  }

  monitor(vm: string): QmpMonitor | undefined {
    return this.vmNames.includes(vm) ? this.fakeMonitor : undefined;
  }

  capabilities(vm: string): MonitorCapabilities | undefined {
    return this.vmNames.includes(vm) ? this.capabilitiesValue : undefined;
  }

  noteVerb(_vm: string, _id: string, verb: JobVerb): void {
    this.log.push(`note:${verb}`);
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
