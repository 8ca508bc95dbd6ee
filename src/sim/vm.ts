/**
 * One simulated QEMU process (think: one qemu-storage-daemon): its block nodes, its jobs, and the
 * command dispatcher every monitor of the VM shares. Events go to every negotiated monitor, as
 * QEMU broadcasts them (`monitor_qapi_event_emit`); events a command causes synchronously are
 * written before its reply, the rest after it.
 */
import { checkArguments } from './commands.js';
import { QmpErrorReply, qmpErrors } from './errors.js';
import { type ErrorAction, type InjectedError, SimJob, type SimJobHost, type SimJobSpec, type SimJobType } from './job.js';
import { qemuFrame, qemuTimestamp } from './qemu-json.js';
import { QEMU_7_2_SCHEMA_SUBSET } from './qmp-schema-7.2.js';

export interface SimVersion {
  qemu: { major: number; minor: number; micro: number };
  package: string;
}

export const QEMU_7_2_VERSION: SimVersion = {
  qemu: { major: 7, minor: 2, micro: 22 },
  package: 'Debian 1:7.2+dfsg-7+deb12u18+b3',
};

export interface SimTiming {
  /** How long a converged mirror sits at offset == len before READY (real 7.2: 90 ms to 1.1 s). */
  readyWindowMs: number;
  /** Copy rate of a job without a speed limit, bytes/s. */
  unlimitedBytesPerSec: number;
  /** Size of every node added with blockdev-add (the simulator has no image files to measure). */
  nodeSizeBytes: number;
}

/** A blkdebug `inject-error` rule as given to blockdev-add. */
interface BlkdebugRule {
  event: string;
  errno?: number;
  once?: boolean;
  state?: number;
}

interface SimNode {
  name: string;
  driver: string;
  sizeBytes: number;
  /** inject-error rules of this node and every node below it. */
  rules: BlkdebugRule[];
}

/** Receives each outbound event frame (one per negotiated monitor). */
export type EventSink = (frame: string) => void;

/** The shared timer all VMs' jobs advance on. */
export interface SimTicker {
  add(job: SimJob): void;
  delete(job: SimJob): void;
}

const JOB_ID = /^[A-Za-z][A-Za-z0-9._-]*$/;

export class SimVm {
  readonly nodes = new Map<string, SimNode>();
  readonly jobs = new Map<string, SimJob>();
  /** Virtual image files (path -> size): the simulator's stand-in for qemu-img create. */
  readonly images = new Map<string, number>();
  private readonly sinks = new Set<EventSink>();
  private deferred: (() => void)[] = [];
  private flushScheduled = false;
  private readonly jobHost: SimJobHost;
  /** Called after `quit` was answered: the owner closes the monitors, as the process exits. */
  onQuit: (() => void) | undefined;

  constructor(
    readonly name: string,
    readonly version: SimVersion,
    private readonly timing: SimTiming,
    private readonly ticker: SimTicker,
  ) {
    this.jobHost = {
      emit: (event, data) => this.emit(event, data),
      defer: (action) => this.defer(action),
      removed: (job) => {
        this.jobs.delete(job.id);
        this.ticker.delete(job);
      },
      get readyWindowMs() {
        return timing.readyWindowMs;
      },
      get unlimitedBytesPerSec() {
        return timing.unlimitedBytesPerSec;
      },
    };
  }

  get defaultNodeSizeBytes(): number {
    return this.timing.nodeSizeBytes;
  }

  greeting(): Record<string, unknown> {
    return { QMP: { version: this.version, capabilities: ['oob'] } };
  }

  attach(sink: EventSink): void {
    this.sinks.add(sink);
  }

  detach(sink: EventSink): void {
    this.sinks.delete(sink);
  }

  /** Broadcast one event to every negotiated monitor, serialized once. */
  emit(event: string, data: Record<string, unknown>): void {
    if (this.sinks.size === 0) return; // QEMU does not buffer events for absent clients
    const frame = qemuFrame({ timestamp: qemuTimestamp(), event, data });
    for (const sink of this.sinks) sink(frame);
  }

  /**
   * Run one command as QEMU would: validate, act, return the `return` value or throw QmpErrorReply.
   * Effects QEMU runs in coroutines later are deferred until after the reply is written.
   */
  execute(command: string, args: Record<string, unknown> = {}): unknown {
    checkArguments(command, args);
    switch (command) {
      case 'qmp_capabilities':
        throw qmpErrors.alreadyNegotiated();
      case 'query-version':
        return this.version;
      case 'query-qmp-schema':
        return QEMU_7_2_SCHEMA_SUBSET;
      case 'query-jobs':
        return [...this.jobs.values()].map((job) => job.jobInfo());
      case 'query-block-jobs':
        return [...this.jobs.values()].map((job) => job.blockJobInfo());
      case 'quit':
        // QEMU force-cancels its jobs (their events precede the reply), answers, then exits.
        for (const job of [...this.jobs.values()]) job.quit();
        this.defer(() => this.onQuit?.());
        return {};
      case 'blockdev-add':
        this.addNode(args);
        return {};
      case 'blockdev-del':
        this.deleteNode(String(args['node-name']));
        return {};
      case 'blockdev-mirror':
        return this.startJob('mirror', args);
      case 'blockdev-backup':
        return this.startJob('backup', args);
      case 'block-stream':
        return this.startJob('stream', args);
      case 'block-commit':
        return this.startJob('commit', args);
      default:
        this.jobVerb(command, args);
        return {};
    }
  }

  /** Hook for drivers and tests: an I/O error hits the job now, handled by the given policy. */
  injectError(jobId: string, error: InjectedError): void {
    this.jobs.get(jobId)?.injectError(error);
  }

  /** Hook: a virtual image file of `bytes`; nodes opened on it (blockdev-add `filename`) get its size. */
  createImage(path: string, bytes: number): void {
    this.images.set(path, bytes);
  }

  /** Hook: the guest wrote to a mirrored disk (len grows, ready stays). */
  guestWrite(jobId: string, bytes: number): void {
    this.jobs.get(jobId)?.guestWrite(bytes);
  }

  /** The process is gone (killed or quit): jobs vanish without events, as when QEMU dies. */
  reset(): void {
    for (const job of this.jobs.values()) this.ticker.delete(job);
    this.jobs.clear();
    this.nodes.clear();
    this.deferred = [];
  }

  private defer(action: () => void): void {
    this.deferred.push(action);
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      const actions = this.deferred;
      this.deferred = [];
      for (const run of actions) run();
    });
  }

  private jobVerb(command: string, args: Record<string, unknown>): void {
    const viaBlockJob = command.startsWith('block-job-');
    const key = String(args['id'] ?? args['device']);
    const job = this.jobs.get(key);
    if (!job) {
      // Every block-job-* command looks the job up with find_block_job_locked (even those taking `id`).
      throw viaBlockJob ? qmpErrors.blockJobNotFound(key) : qmpErrors.jobNotFound();
    }
    switch (command) {
      case 'job-complete':
      case 'block-job-complete':
        return job.complete();
      case 'job-cancel':
        return job.cancel(true, false);
      case 'block-job-cancel':
        return job.cancel(args['force'] === true, true);
      case 'job-pause':
      case 'block-job-pause':
        return job.pause();
      case 'job-resume':
      case 'block-job-resume':
        return job.resume();
      case 'block-job-set-speed':
        return job.setSpeed(args['speed'] as number);
      case 'job-finalize':
      case 'block-job-finalize':
        return job.finalize();
      case 'job-dismiss':
      case 'block-job-dismiss':
        return job.dismiss();
      default:
        throw qmpErrors.commandNotFound(command);
    }
  }

  private addNode(args: Record<string, unknown>): void {
    const name = args['node-name'];
    if (typeof name !== 'string' || name === '') throw qmpErrors.rootNodeName();
    if (this.nodes.has(name)) throw qmpErrors.duplicateNode(name);
    const sizeBytes = this.sizeOf(args) ?? this.timing.nodeSizeBytes;
    this.nodes.set(name, { name, driver: String(args['driver']), sizeBytes, rules: this.collectRules(args) });
  }

  /** Size of the first image file (or referenced node) found below a node spec. */
  private sizeOf(spec: Record<string, unknown>): number | undefined {
    const filename = spec['filename'];
    if (typeof filename === 'string' && this.images.has(filename)) return this.images.get(filename);
    for (const child of ['file', 'image']) {
      const value = spec[child];
      if (typeof value === 'string') return this.nodes.get(value)?.sizeBytes;
      if (value && typeof value === 'object') {
        const size = this.sizeOf(value as Record<string, unknown>);
        if (size !== undefined) return size;
      }
    }
    return undefined;
  }

  /** inject-error rules of a node spec, its inline children and the named nodes it references. */
  private collectRules(spec: Record<string, unknown>): BlkdebugRule[] {
    const rules: BlkdebugRule[] = [];
    if (spec['driver'] === 'blkdebug' && Array.isArray(spec['inject-error'])) {
      rules.push(...(spec['inject-error'] as BlkdebugRule[]));
    }
    for (const child of ['file', 'image', 'backing']) {
      const value = spec[child];
      if (typeof value === 'string') rules.push(...(this.nodes.get(value)?.rules ?? []));
      else if (value && typeof value === 'object') rules.push(...this.collectRules(value as Record<string, unknown>));
    }
    return rules;
  }

  private deleteNode(name: string): void {
    if (!this.nodes.has(name)) throw qmpErrors.noSuchNode(name);
    const user = this.activeJobUsing(name);
    if (user) throw qmpErrors.nodeBusy(name, user.type);
    this.nodes.delete(name);
  }

  private activeJobUsing(node: string): SimJob | undefined {
    for (const job of this.jobs.values()) if (job.active && job.spec.nodes.includes(node)) return job;
    return undefined;
  }

  private lookupNode(name: string): SimNode {
    const node = this.nodes.get(name);
    if (!node) throw qmpErrors.nodeNotFound(name, name);
    return node;
  }

  private startJob(type: SimJobType, args: Record<string, unknown>): Record<string, never> {
    const device = this.lookupNode(args['device'] as string);
    const nodes = [device.name];
    let target: SimNode | undefined;
    if (type === 'mirror' || type === 'backup') {
      const targetName = args['target'] as string;
      target = this.nodes.get(targetName);
      if (!target) throw qmpErrors.nodeNotFound('', targetName);
      nodes.push(target.name);
    }
    for (const key of ['base-node', 'top-node', 'base', 'top']) {
      const name = args[key];
      if (typeof name === 'string' && key.endsWith('-node')) nodes.push(this.lookupNode(name).name);
    }
    const id = (args['job-id'] as string | undefined) ?? '';
    if (!JOB_ID.test(id)) throw qmpErrors.invalidJobId(id);
    if (this.jobs.has(id)) throw qmpErrors.jobIdInUse(id);

    const topNode = args['top-node'] ?? args['top'];
    const activeCommit = type === 'commit' && (topNode === undefined || topNode === device.name);
    const hasReadyPhase = type === 'mirror' || activeCommit;
    const spec: SimJobSpec = {
      id,
      type,
      sizeBytes: device.sizeBytes,
      speed: (args['speed'] as number | undefined) ?? 0,
      autoFinalize: (args['auto-finalize'] as boolean | undefined) ?? true,
      autoDismiss: (args['auto-dismiss'] as boolean | undefined) ?? true,
      hasReadyPhase,
      endless: type === 'backup' && args['sync'] === 'none',
      startBlip: type === 'backup',
      lenKnownLater: activeCommit,
      errors: injectedErrors(type, args, device, target),
      nodes,
    };
    const job = new SimJob(spec, this.jobHost);
    const busy = nodes.map((n) => this.activeJobUsing(n)).find((j) => j !== undefined);
    if (busy) {
      // Permission conflicts surface after job_create: a created -> null pair, then the error.
      this.emit('JOB_STATUS_CHANGE', { status: 'created', id });
      this.emit('JOB_STATUS_CHANGE', { status: 'null', id });
      throw qmpErrors.nodeBusy(nodes.find((n) => busy.spec.nodes.includes(n))!, busy.type);
    }
    this.jobs.set(id, job);
    job.start();
    this.ticker.add(job);
    return {};
  }
}

/** Which blkdebug rules a job meets, and which of its error policies handles each. */
function injectedErrors(
  type: SimJobType,
  args: Record<string, unknown>,
  device: SimNode,
  target: SimNode | undefined,
): InjectedError[] {
  const policy = (name: string): ErrorAction => toAction(args[name]);
  const fromRules = (rules: BlkdebugRule[], event: string, action: ErrorAction): InjectedError[] =>
    rules
      // Rules gated on a blkdebug state fire only after a set-state event the simulator does not model.
      .filter((rule) => rule.event === event && rule.state === undefined)
      .map((rule) => ({
        operation: event === 'read_aio' ? 'read' : 'write',
        errno: rule.errno ?? 5,
        once: rule.once ?? false,
        action,
      }));
  if (type === 'mirror' || type === 'backup') {
    return [
      ...fromRules(device.rules, 'read_aio', policy('on-source-error')),
      ...fromRules(target?.rules ?? [], 'write_aio', policy('on-target-error')),
    ];
  }
  return [
    ...fromRules(device.rules, 'read_aio', policy('on-error')),
    ...fromRules(device.rules, 'write_aio', policy('on-error')),
  ];
}

function toAction(value: unknown): ErrorAction {
  if (value === 'stop' || value === 'ignore') return value;
  return 'report'; // report, enospc (for EIO) and the default
}

export { QmpErrorReply };
