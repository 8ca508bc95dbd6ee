/**
 * A real qemu-storage-daemon in a fresh temp dir, with named QMP monitors, qcow2 images and the
 * conveniences tests and the demo need: block nodes (optionally behind blkdebug for error
 * injection), stop / kill / restart, and a job oracle that records QEMU's own JOB_STATUS_CHANGE
 * sequence. Each QMP socket serves one client, so the helper keeps its own monitor (`ctl`) for
 * the commands it sends, and the monitors a caller asks for stay free for the code under test.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, rmSync, unlinkSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { LabError } from '../errors.js';
import { qemuToolPath } from './binaries.js';
import { createQcow2Image, type CreateImageOptions } from './images.js';
import { makeShortTempDir, registerLeftover } from './leftovers.js';
import { RawQmp, type RawQmpEvent, type RawQmpOptions } from './raw-qmp.js';

export interface QsdOptions {
  /** Names of the QMP monitors to create (each a unix socket `<dir>/<name>.sock`). @default ['gw', 'oracle'] */
  monitors?: string[];
  /** Give up when the daemon has not created its sockets within this many ms. @default 15000 */
  startTimeoutMs?: number;
  /** Extra command-line arguments, appended as given (e.g. `--blockdev ...`, `--nbd-server ...`). */
  extraArgs?: string[];
}

/** A blkdebug `inject-error` rule, with QMP's own field names (BlkdebugInjectErrorOptions). */
export interface BlkdebugInjectError {
  event: string;
  state?: number;
  iotype?: 'read' | 'write' | 'write-zeroes' | 'discard' | 'flush' | 'block-status';
  errno?: number;
  sector?: number;
  once?: boolean;
  immediately?: boolean;
}

/** A blkdebug `set-state` rule, with QMP's own field names (BlkdebugSetStateOptions). */
export interface BlkdebugSetState {
  event: string;
  state?: number;
  new_state: number;
}

export interface Qcow2NodeOptions {
  /** Put blkdebug between qcow2 and the file, with these rules (reference §7 scenarios 12-17). */
  blkdebug?: { injectError?: BlkdebugInjectError[]; setState?: BlkdebugSetState[] };
  /** Node name of the backing node, or null for none. Default: open the backing file named in the image. */
  backing?: string | null;
  readOnly?: boolean;
}

export interface QsdExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** Monitor the helper keeps for itself (quit, blockdev-add). */
const CONTROL_MONITOR = 'ctl';
const MONITOR_NAME = /^[A-Za-z][A-Za-z0-9_-]{0,31}$/;
/** sun_path is 108 bytes including the terminating NUL. */
const MAX_SOCKET_PATH_BYTES = 107;
const STDERR_TAIL_CHARS = 64 * 1024;
const STOP_TIMEOUT_MS = 10_000;

/** `blockdev-add` arguments for a qcow2 node over a file, through blkdebug when rules are given. */
export function qcow2NodeArgs(nodeName: string, filename: string, options: Qcow2NodeOptions = {}): Record<string, unknown> {
  const fileNode = { driver: 'file', filename };
  const protocol = options.blkdebug
    ? {
        driver: 'blkdebug',
        image: fileNode,
        ...(options.blkdebug.injectError ? { 'inject-error': options.blkdebug.injectError } : {}),
        ...(options.blkdebug.setState ? { 'set-state': options.blkdebug.setState } : {}),
      }
    : fileNode;
  const args: Record<string, unknown> = { driver: 'qcow2', 'node-name': nodeName, file: protocol };
  if (options.backing !== undefined) args.backing = options.backing;
  if (options.readOnly) args['read-only'] = true;
  return args;
}

export class Qsd {
  private child!: ChildProcess;
  private exitPromise!: Promise<QsdExit>;
  private exitInfo: QsdExit | undefined;
  private stderrTail = '';
  private control: RawQmp | undefined;
  /** blockdev-add arguments in the order they were added, re-applied by restart(). */
  private readonly nodes = new Map<string, Record<string, unknown>>();
  private readonly unregister: () => void;
  private disposed = false;

  private constructor(
    readonly dir: string,
    readonly monitors: readonly string[],
    private readonly options: Required<QsdOptions>,
  ) {
    this.unregister = registerLeftover({
      label: `qemu-storage-daemon in ${dir}`,
      dispose: () => this.dispose(),
      disposeNow: () => {
        if (this.running && this.child?.pid) process.kill(this.child.pid, 'SIGKILL');
        rmSync(this.dir, { recursive: true, force: true });
      },
    });
  }

  /** Starts a daemon and waits until every monitor socket exists and the control monitor is negotiated. */
  static async start(options: QsdOptions = {}): Promise<Qsd> {
    const monitors = options.monitors ?? ['gw', 'oracle'];
    const seen = new Set<string>();
    for (const name of monitors) {
      if (!MONITOR_NAME.test(name)) throw new LabError(`monitor name ${JSON.stringify(name)} must match ${MONITOR_NAME}`);
      if (name === CONTROL_MONITOR) throw new LabError(`monitor name "${CONTROL_MONITOR}" is reserved for the helper`);
      if (seen.has(name)) throw new LabError(`monitor name "${name}" given twice`);
      seen.add(name);
    }
    const qsd = new Qsd(makeShortTempDir('bjg-'), monitors, {
      monitors,
      startTimeoutMs: options.startTimeoutMs ?? 15_000,
      extraArgs: options.extraArgs ?? [],
    });
    try {
      for (const name of [...monitors, CONTROL_MONITOR]) {
        const bytes = Buffer.byteLength(qsd.path(name));
        if (bytes > MAX_SOCKET_PATH_BYTES) throw new LabError(`socket path ${qsd.path(name)} is ${bytes} bytes, over the unix limit of ${MAX_SOCKET_PATH_BYTES}`);
      }
      await qsd.launch();
      return qsd;
    } catch (error) {
      await qsd.dispose();
      throw error;
    }
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  get running(): boolean {
    return this.exitInfo === undefined;
  }

  /** Resolves when the current process exits. */
  get exited(): Promise<QsdExit> {
    return this.exitPromise;
  }

  /** Socket path of a monitor. */
  path(monitor: string): string {
    if (monitor !== CONTROL_MONITOR && !this.monitors.includes(monitor)) {
      throw new LabError(`no monitor named "${monitor}" (have: ${this.monitors.join(', ')})`);
    }
    return join(this.dir, `${monitor}.sock`);
  }

  /** QMP address string of a monitor, as the gateway takes it: `unix:/tmp/bjg-xyz/gw.sock`. */
  address(monitor: string): string {
    return `unix:${this.path(monitor)}`;
  }

  /** Path of an image in this daemon's dir (`name` gets `.qcow2` unless it has an extension). */
  imagePath(name: string): string {
    if (isAbsolute(name)) return name;
    return join(this.dir, /\.\w+$/.test(name) ? name : `${name}.qcow2`);
  }

  /** Creates a qcow2 image in the dir (a relative `backing` is another image of this dir); returns its path. */
  createImage(name: string, options: CreateImageOptions): Promise<string> {
    const backing = options.backing === undefined ? undefined : this.imagePath(options.backing);
    return createQcow2Image(this.imagePath(name), { ...options, backing });
  }

  /** A new, independent raw QMP connection to a monitor (fails as "monitor busy" if it is taken). */
  raw(monitor: string, options?: RawQmpOptions): Promise<RawQmp> {
    return RawQmp.connect(this.path(monitor), options);
  }

  /** Runs a command on the helper's own monitor. */
  execute<T = unknown>(command: string, args?: Record<string, unknown>, options?: { timeoutMs?: number }): Promise<T> {
    if (!this.control?.isOpen) return Promise.reject(new LabError('qemu-storage-daemon is not running'));
    return this.control.execute<T>(command, args, options);
  }

  /**
   * Adds a qcow2 node over `file` (an image name of this dir or a path), remembered for restart().
   * With `blkdebug`, the chain is qcow2 -> blkdebug -> file, with the given rules.
   */
  async addQcow2Node(nodeName: string, file: string, options: Qcow2NodeOptions = {}): Promise<void> {
    if (this.nodes.has(nodeName)) throw new LabError(`node "${nodeName}" already added`);
    const args = qcow2NodeArgs(nodeName, this.imagePath(file), options);
    await this.execute('blockdev-add', args);
    this.nodes.set(nodeName, args);
  }

  /** Removes a node (and forgets it for restart). */
  async removeNode(nodeName: string): Promise<void> {
    await this.execute('blockdev-del', { 'node-name': nodeName });
    this.nodes.delete(nodeName);
  }

  /** Connects a job oracle to a monitor (default "oracle"). */
  async oracle(monitor = 'oracle'): Promise<JobOracle> {
    return new JobOracle(await this.raw(monitor, { maxEvents: 100_000 }));
  }

  /** Asks QEMU to quit and waits for the exit (SIGKILL after a timeout). Idempotent. */
  async stop(): Promise<QsdExit> {
    if (!this.running) return this.exitPromise;
    if (this.control?.isOpen) {
      // The reply to quit and the EOF race; either way the process is on its way out.
      await this.control.execute('quit', undefined, { timeoutMs: STOP_TIMEOUT_MS }).catch(() => undefined);
    } else {
      this.child.kill('SIGTERM');
    }
    const timer = setTimeout(() => this.child.kill('SIGKILL'), STOP_TIMEOUT_MS);
    const exit = await this.exitPromise;
    clearTimeout(timer);
    return exit;
  }

  /** Sends a signal (default SIGKILL: a crash) and waits for the exit. */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<QsdExit> {
    if (this.running) this.child.kill(signal);
    return this.exitPromise;
  }

  /**
   * Starts a new process with the same monitors (same socket paths) and images, stopping the old
   * one first if it still runs. Re-adds the remembered nodes unless `reAddNodes` is false. Raw
   * connections and oracles end with the old process: connect new ones.
   */
  async restart(options: { reAddNodes?: boolean } = {}): Promise<void> {
    await this.stop();
    await this.launch();
    if (options.reAddNodes === false) {
      this.nodes.clear();
      return;
    }
    for (const args of this.nodes.values()) await this.execute('blockdev-add', args);
  }

  /** Last lines of the daemon's stderr (for diagnostics). */
  get stderr(): string {
    return this.stderrTail;
  }

  /** Stops the daemon and removes its dir. Idempotent. */
  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    try {
      if (this.child) await this.stop();
    } finally {
      rmSync(this.dir, { recursive: true, force: true });
      this.unregister();
    }
  }

  private async launch(): Promise<void> {
    const sockets = [...this.monitors, CONTROL_MONITOR].map((name) => ({ name, path: this.path(name) }));
    // A killed daemon leaves its socket files behind; remove them so "socket exists" means "new daemon listens".
    for (const { path } of sockets) if (existsSync(path)) unlinkSync(path);
    const args = sockets.flatMap(({ name, path }) => [
      '--chardev',
      `socket,id=mon-${name},path=${path},server=on,wait=off`,
      '--monitor',
      `chardev=mon-${name}`,
    ]);
    args.push(...this.options.extraArgs);
    this.exitInfo = undefined;
    this.stderrTail = '';
    const child = spawn(qemuToolPath('qemu-storage-daemon'), args, { cwd: this.dir, stdio: ['ignore', 'ignore', 'pipe'] });
    this.child = child;
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (text: string) => {
      this.stderrTail = (this.stderrTail + text).slice(-STDERR_TAIL_CHARS);
    });
    this.exitPromise = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.exitInfo = { code, signal };
        resolve(this.exitInfo);
      });
      child.once('error', () => {
        this.exitInfo = { code: null, signal: null };
        resolve(this.exitInfo);
      });
    });
    const deadline = Date.now() + this.options.startTimeoutMs;
    while (!sockets.every(({ path }) => existsSync(path))) {
      if (!this.running) throw new LabError(`qemu-storage-daemon exited during start (${JSON.stringify(this.exitInfo)})`, this.stderrTail);
      if (Date.now() > deadline) {
        child.kill('SIGKILL');
        throw new LabError(`qemu-storage-daemon did not create its sockets within ${this.options.startTimeoutMs} ms`, this.stderrTail);
      }
      await sleep(10);
    }
    // The socket file appears at bind(), a moment before listen(): retry a refused connect until the deadline.
    for (;;) {
      try {
        this.control = await RawQmp.connect(this.path(CONTROL_MONITOR), { maxEvents: 1000 });
        break;
      } catch (error) {
        const refused = (error as { cause?: { code?: string } }).cause?.code === 'ECONNREFUSED';
        if (!refused || !this.running || Date.now() > deadline) throw error;
        await sleep(10);
      }
    }
  }
}

/** Starts a qemu-storage-daemon; see Qsd. */
export function startQsd(options?: QsdOptions): Promise<Qsd> {
  return Qsd.start(options);
}

/**
 * The test oracle for the job engine: a raw monitor that records QEMU's own JOB_STATUS_CHANGE
 * sequence per job id, in wire order.
 */
export class JobOracle {
  constructor(readonly raw: RawQmp) {}

  /** Every status QEMU reported for `jobId`, e.g. ['created', 'running', 'ready', ..., 'null'] (all incarnations). */
  statusSequence(jobId: string): string[] {
    if (this.raw.droppedEvents > 0) throw new LabError(`oracle dropped ${this.raw.droppedEvents} events; the sequence would be incomplete`);
    return this.raw.events
      .filter((event) => event.event === 'JOB_STATUS_CHANGE' && event.data.id === jobId)
      .map((event) => String(event.data.status));
  }

  /** The sequence split per incarnation: a job id reused after 'null' starts a new list. */
  incarnations(jobId: string): string[][] {
    const result: string[][] = [];
    let current: string[] = [];
    for (const status of this.statusSequence(jobId)) {
      current.push(status);
      if (status === 'null') {
        result.push(current);
        current = [];
      }
    }
    if (current.length > 0) result.push(current);
    return result;
  }

  /** Every job event about `jobId` (JOB_STATUS_CHANGE, BLOCK_JOB_*), in wire order. */
  jobEvents(jobId: string): RawQmpEvent[] {
    return this.raw.events.filter(
      (event) => (event.event === 'JOB_STATUS_CHANGE' || event.event.startsWith('BLOCK_JOB_')) && (event.data.id === jobId || event.data.device === jobId),
    );
  }

  /** Resolves when QEMU reports `status` for `jobId` (already seen or still to come). */
  waitForStatus(jobId: string, status: string, timeoutMs = 60_000): Promise<RawQmpEvent> {
    return this.raw.waitForEvent((event) => event.event === 'JOB_STATUS_CHANGE' && event.data.id === jobId && event.data.status === status, timeoutMs);
  }

  close(): Promise<void> {
    return this.raw.close();
  }
}
