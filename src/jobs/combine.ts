/**
 * combineSources: several sources (QMP monitors, libvirt domains, a fleet view) served as one, and
 * their control ports routed by VM. A VM name belongs to one source: a name two sources serve at
 * start is a ConfigError; one that a second source adds later stays with the first, and the second
 * one's copy is ignored and reported (onConflict), never merged.
 */
import { filter, merge, Subject, type Observable, type Subscription } from 'rxjs';
import { ConfigError } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import type { ControlAction, ControlArgs, ControlPort, ExecuteOptions, SendCheck, SourcePorts, Verdict } from './control-port.js';
import type { JobSource, JobState, ProgressUpdate, StreamInput, VmInfo, VmInfoUpdate, VmSnapshot, VmStatus } from './types.js';

export interface CombineOptions {
  /** Told when a source adds a VM another source already serves. @default a warning on `logger` */
  onConflict?: (vm: string, message: string) => void;
  logger?: Logger;
  /**
   * Hold the parts' changes until `release()`. The parts start working (connecting, reconciling the
   * jobs a restarted fleet host seeded) before the gateway's stream feed subscribes; a change made
   * meanwhile would reach the snapshot but never the stream, so a job that ended while a host was
   * down would stay running in Redis and on every edge. At most MAX_HELD_CHANGES are held.
   */
  holdChanges?: boolean;
}

/** Changes held before release (a start's reconciles: bounded by the parts' VMs and jobs); past it they are counted and reported. */
export const MAX_HELD_CHANGES = 100_000;

export interface CombinedSources extends SourcePorts {
  /** Stops following the parts' VM lists (the parts themselves are not closed). */
  close(): void;
  /** Delivers the changes held since creation, in order, then passes them on live (holdChanges). */
  release(): void;
}

/** One JobSource and one ControlPort over all `parts`. */
export function combineSources(parts: readonly SourcePorts[], options: CombineOptions = {}): CombinedSources {
  const combined = new Combined(parts, options);
  return { source: combined, control: combined, close: () => combined.close(), release: () => combined.release() };
}

class Combined implements JobSource, ControlPort {
  /** Which part serves each VM. */
  private readonly owners = new Map<string, SourcePorts>();
  private readonly subscriptions: Subscription[] = [];

  readonly changes$: Observable<StreamInput>;
  readonly progress$: Observable<ProgressUpdate>;
  readonly vmInfo$: Observable<VmInfoUpdate>;
  release: () => void = () => {};

  constructor(
    private readonly parts: readonly SourcePorts[],
    options: CombineOptions,
  ) {
    const logger = options.logger ?? silentLogger;
    const onConflict = options.onConflict ?? ((vm, message) => logger.warn({ vm }, message));
    for (const part of parts) {
      for (const vm of part.source.vms()) {
        if (this.owners.has(vm)) throw new ConfigError(`VM ${JSON.stringify(vm)} is served by two sources; give each VM one name`, vm);
        this.owners.set(vm, part);
      }
    }
    // Subscribed before any consumer, so ownership is settled before a consumer sees the update.
    for (const part of parts) {
      this.subscriptions.push(
        part.source.vmInfo$.subscribe((update) => {
          const vm = update.kind === 'info' ? update.info.vm : update.vm;
          const owner = this.owners.get(vm);
          if (update.kind === 'removed') {
            if (owner === part) this.owners.delete(vm);
          } else if (owner === undefined) {
            this.owners.set(vm, part);
          } else if (owner !== part && update.kind === 'info') {
            onConflict(vm, `VM ${JSON.stringify(vm)} was added by a second source; it stays with the first, the second one's copy is ignored`);
          }
        }),
      );
    }
    const owned = <T extends { vm: string }>(part: SourcePorts, stream: Observable<T>): Observable<T> =>
      parts.length === 1 ? stream : stream.pipe(filter((item) => this.owners.get(item.vm) === part));
    const changes$ = merge(...parts.map((part) => owned(part, part.source.changes$)));
    this.changes$ = options.holdChanges ? this.held(changes$, logger) : changes$;
    this.progress$ = merge(...parts.map((part) => owned(part, part.source.progress$)));
    this.vmInfo$ = merge(
      ...parts.map((part) =>
        part.source.vmInfo$.pipe(
          filter((update) => (update.kind === 'info' ? this.owners.get(update.info.vm) === part : !this.owners.has(update.vm))),
        ),
      ),
    );
  }

  private held(changes$: Observable<StreamInput>, logger: Logger): Observable<StreamInput> {
    const out = new Subject<StreamInput>();
    let held: StreamInput[] | undefined = [];
    let dropped = 0;
    this.subscriptions.push(
      changes$.subscribe((input) => {
        if (!held) out.next(input);
        else if (held.length < MAX_HELD_CHANGES) held.push(input);
        else dropped++;
      }),
    );
    this.release = () => {
      if (!held) return;
      const inputs = held;
      held = undefined;
      for (const input of inputs) out.next(input);
      if (dropped > 0) logger.error({ code: 'GW_ERR_INTERNAL', dropped, max: MAX_HELD_CHANGES }, `${dropped} job change(s) made before the gateway started were not published to the streams; the snapshots are right`);
    };
    return out.asObservable();
  }

  close(): void {
    for (const subscription of this.subscriptions.splice(0)) subscription.unsubscribe();
  }

  vms(): string[] {
    return this.parts.flatMap((part) => part.source.vms().filter((vm) => this.owners.get(vm) === part));
  }

  snapshot(): VmSnapshot[] {
    return this.parts.flatMap((part) => part.source.snapshot().filter((snapshot) => this.owners.get(snapshot.vm) === part));
  }

  job(vm: string, id: string): JobState | undefined {
    return this.owners.get(vm)?.source.job(vm, id);
  }

  announced(vm: string, id: string): boolean {
    return this.owners.get(vm)?.source.announced?.(vm, id) ?? false;
  }

  settle(vm: string, timeoutMs: number): Promise<void> {
    return this.owners.get(vm)?.source.settle?.(vm, timeoutMs) ?? Promise.resolve();
  }

  seed(vm: string, jobs: readonly JobState[], status?: VmStatus): void {
    this.owners.get(vm)?.source.seed?.(vm, jobs, status);
  }

  info(vm: string): VmInfo | undefined {
    return this.owners.get(vm)?.source.info(vm);
  }

  mayTouch(vm: string, job: JobState): SendCheck {
    return this.owners.get(vm)?.control.mayTouch(vm, job) ?? noSuchVm(vm);
  }

  check(vm: string, job: JobState, action: ControlAction, args: ControlArgs): SendCheck {
    return this.owners.get(vm)?.control.check(vm, job, action, args) ?? noSuchVm(vm);
  }

  execute(vm: string, job: JobState, action: ControlAction, args: ControlArgs, options: ExecuteOptions): Promise<Verdict> {
    const owner = this.owners.get(vm);
    return owner ? owner.control.execute(vm, job, action, args, options) : Promise.resolve({ kind: 'not-sent', why: `no source serves VM '${vm}'` });
  }
}

const noSuchVm = (vm: string): SendCheck => ({ ok: false, reason: 'not-supported', why: `no source serves VM '${vm}'` });
