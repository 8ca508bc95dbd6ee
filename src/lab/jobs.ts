/**
 * Real block jobs on a qemu-storage-daemon, for the tests, the `npm start` demo and the benchmarks: the
 * images, the block nodes and the start command of each job type (mirror, active and non-active commit,
 * stream, backup), blkdebug error injection, and guest-like writes while a job runs.
 *
 * Every helper speaks QMP through `QmpExecutor`, so the lab's raw connection and the project's QmpClient
 * both work. Node and file names derive from the job id, so many jobs can share one daemon.
 *
 * Sizing: with the default 32 MiB of data and a 16 MiB/s speed limit a job runs about 2 s, long enough to
 * observe (and act in) every window, short enough for a fast suite.
 *
 * Guest writes: the daemon has no guest and no `human-monitor-command`, so `GuestWriter` exports a node
 * over NBD (writable) and writes to it with `qemu-io`. The export's BlockBackend sits above the node, so
 * when a mirror inserts its filter the writes pass through it exactly like a guest's would (they dirty the
 * bitmap, grow `len` after READY, and reach a blkdebug target).
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ConfigError, LabError } from '../errors.js';
import { qemuToolPath } from './binaries.js';
import type { Qcow2NodeOptions, Qsd } from './qsd.js';

const execFileAsync = promisify(execFile);

/** Anything that runs a QMP command: the lab's raw connection or a QmpClient. */
export interface QmpExecutor {
  execute(command: string, args?: Record<string, unknown>): Promise<unknown>;
}

/** What jobs need from the lab besides a QMP connection: images and block nodes (a `Qsd` has both). */
export type JobLab = Pick<Qsd, 'createImage' | 'addQcow2Node' | 'removeNode'>;

/** QEMU's BlockdevOnError. */
export type OnError = 'report' | 'stop' | 'ignore' | 'enospc' | 'auto';

/**
 * One injected EIO (blkdebug), fired once.
 * - `first-write` / `first-read`: the first such request of the job (before READY for a mirror).
 * - `after-ready`: armed by the first flush of the node, which a mirror issues right before READY
 *   (reference §7 #12); the next write (a guest write mirrored to the target) fails.
 */
export type InjectedFault = 'first-write' | 'first-read' | 'after-ready';

export interface JobCommonOptions {
  /** QEMU job id; also the prefix of the job's node and file names. Letters first, then [A-Za-z0-9-._]. */
  jobId: string;
  /** Bytes/s, 0 = unlimited. @default 16 MiB/s */
  speed?: number;
  /** Data to copy, MiB. @default 32 */
  dataMiB?: number;
  /** Virtual disk size, MiB; a large sparse disk stretches the job's setup (the dirty-bitmap scan). @default dataMiB */
  diskMiB?: number;
  /** @default true */
  autoFinalize?: boolean;
  /** @default true */
  autoDismiss?: boolean;
}

export type LabJobType = 'mirror' | 'commit' | 'stream' | 'backup';

/** A job started by this module, and the nodes created for it (root first). */
export interface LabJob {
  id: string;
  type: LabJobType;
  /** The node the job acts on (mirror/backup source, stream/commit top); export it for guest writes. */
  device: string;
  nodes: string[];
}

export const MiB = 1024 * 1024;
const DEFAULT_SPEED = 16 * MiB;
const DEFAULT_DATA_MIB = 32;
const EIO = 5;

const JOB_ID_PATTERN = /^[A-Za-z][A-Za-z0-9._-]*$/;

function checkJobId(jobId: string): void {
  if (!JOB_ID_PATTERN.test(jobId)) {
    throw new ConfigError(`job id ${JSON.stringify(jobId)} must start with a letter, then letters, digits, '-', '.', '_'`, 'jobId');
  }
}

/** Data to copy and the virtual disk size holding it, MiB. */
function sizesOf(options: JobCommonOptions): { dataMiB: number; diskMiB: number } {
  const dataMiB = options.dataMiB ?? DEFAULT_DATA_MIB;
  return { dataMiB, diskMiB: Math.max(options.diskMiB ?? dataMiB, dataMiB) };
}

/** Knobs every job command takes, in QMP spelling. */
function commonArgs(options: JobCommonOptions): Record<string, unknown> {
  return {
    'job-id': options.jobId,
    speed: options.speed ?? DEFAULT_SPEED,
    'auto-finalize': options.autoFinalize ?? true,
    'auto-dismiss': options.autoDismiss ?? true,
  };
}

/** blkdebug rules for one fault (see InjectedFault). */
export function blkdebugFor(fault: InjectedFault): NonNullable<Qcow2NodeOptions['blkdebug']> {
  const event = fault === 'first-read' ? 'read_aio' : 'write_aio';
  const inject = { event, errno: EIO, once: true, immediately: false };
  if (fault !== 'after-ready') return { injectError: [inject] };
  return {
    setState: [{ event: 'flush_to_disk', state: 1, new_state: 2 }],
    injectError: [{ ...inject, state: 2 }],
  };
}

/** Source with data and an empty target of the same size, both as nodes. */
async function sourceAndTarget(
  lab: JobLab,
  options: JobCommonOptions & { targetFault?: InjectedFault | undefined },
): Promise<{ source: string; target: string }> {
  const { dataMiB, diskMiB } = sizesOf(options);
  const source = `${options.jobId}-src`;
  const target = `${options.jobId}-dst`;
  const sourcePath = await lab.createImage(`${source}.qcow2`, {
    sizeMiB: diskMiB,
    pattern: { offsetMiB: 0, lengthMiB: dataMiB, byte: 0xaa },
  });
  const targetPath = await lab.createImage(`${target}.qcow2`, { sizeMiB: diskMiB });
  await lab.addQcow2Node(source, sourcePath);
  await lab.addQcow2Node(target, targetPath, options.targetFault ? { blkdebug: blkdebugFor(options.targetFault) } : {});
  return { source, target };
}

export interface MirrorOptions extends JobCommonOptions {
  /** @default 'report' (QEMU's default) */
  onTargetError?: OnError;
  /** Inject one EIO into the target. */
  targetFault?: InjectedFault;
}

/** `blockdev-mirror` sync=full from a filled source to an empty target. Reaches READY; then complete or cancel. */
export async function startMirror(qmp: QmpExecutor, lab: JobLab, options: MirrorOptions): Promise<LabJob> {
  checkJobId(options.jobId);
  const { source, target } = await sourceAndTarget(lab, options);
  await qmp.execute('blockdev-mirror', {
    ...commonArgs(options),
    device: source,
    target,
    sync: 'full',
    ...(options.onTargetError ? { 'on-target-error': options.onTargetError } : {}),
  });
  return { id: options.jobId, type: 'mirror', device: source, nodes: [source, target] };
}

export interface BackupOptions extends JobCommonOptions {
  /** `full` copies everything and ends by itself; `none` copies only before-write data and runs until cancelled. @default 'full' */
  sync?: 'full' | 'none';
  onTargetError?: OnError;
  targetFault?: InjectedFault;
}

/** `blockdev-backup` of a filled source to an empty target. */
export async function startBackup(qmp: QmpExecutor, lab: JobLab, options: BackupOptions): Promise<LabJob> {
  checkJobId(options.jobId);
  const { source, target } = await sourceAndTarget(lab, options);
  await qmp.execute('blockdev-backup', {
    ...commonArgs(options),
    device: source,
    target,
    sync: options.sync ?? 'full',
    ...(options.onTargetError ? { 'on-target-error': options.onTargetError } : {}),
  });
  return { id: options.jobId, type: 'backup', device: source, nodes: [source, target] };
}

/** A backing chain base <- mid <- top (qcow2); each layer holds its own share of the data. */
interface Chain {
  base: string;
  mid: string;
  top: string;
}

/** Which layers carry data: a commit copies `top` (active) or `mid` (non-active) down, a stream pulls `mid`+`base` up. */
type ChainData = Partial<Record<keyof Chain, number>>;

async function backingChain(
  lab: JobLab,
  jobId: string,
  sizeMiB: number,
  data: ChainData,
  faults: Partial<Record<keyof Chain, InjectedFault>> = {},
): Promise<Chain> {
  const chain: Chain = { base: `${jobId}-base`, mid: `${jobId}-mid`, top: `${jobId}-top` };
  const layers = ['base', 'mid', 'top'] as const;
  // Patterns differ per layer so a wrong copy would be visible to qemu-img compare.
  const bytes = { base: 0xb0, mid: 0xb1, top: 0xb2 } as const;
  // All files first: qemu-io needs the whole chain unlocked, and the daemon locks what it opens.
  const paths: Partial<Record<keyof Chain, string>> = {};
  for (const [i, layer] of layers.entries()) {
    const lengthMiB = data[layer] ?? 0;
    const below = i > 0 ? paths[layers[i - 1]!] : undefined;
    paths[layer] = await lab.createImage(`${chain[layer]}.qcow2`, {
      sizeMiB,
      ...(below ? { backing: below } : {}),
      ...(lengthMiB > 0 ? { pattern: { offsetMiB: 0, lengthMiB, byte: bytes[layer] } } : {}),
    });
  }
  for (const [i, layer] of layers.entries()) {
    const fault = faults[layer];
    await lab.addQcow2Node(chain[layer], paths[layer]!, {
      backing: i > 0 ? chain[layers[i - 1]!]! : null,
      ...(fault ? { blkdebug: blkdebugFor(fault) } : {}),
    });
  }
  return chain;
}

export interface CommitOptions extends JobCommonOptions {
  /** Active commit (top into base: reaches READY, needs complete) or non-active (mid into base: ends by itself). */
  active: boolean;
}

/** `block-commit` on a base <- mid <- top chain. */
export async function startCommit(qmp: QmpExecutor, lab: JobLab, options: CommitOptions): Promise<LabJob> {
  checkJobId(options.jobId);
  const { dataMiB, diskMiB } = sizesOf(options);
  const layer = options.active ? 'top' : 'mid';
  const chain = await backingChain(lab, options.jobId, diskMiB, { [layer]: dataMiB });
  await qmp.execute('block-commit', {
    ...commonArgs(options),
    device: chain.top,
    'base-node': chain.base,
    ...(options.active ? {} : { 'top-node': chain.mid }),
  });
  return { id: options.jobId, type: 'commit', device: chain.top, nodes: [chain.top, chain.mid, chain.base] };
}

export interface StreamOptions extends JobCommonOptions {
  onError?: OnError;
  /** Inject one EIO into reads of the base layer. */
  baseFault?: Extract<InjectedFault, 'first-read'>;
}

/** `block-stream` into top of everything below it (mid and base carry the data). */
export async function startStream(qmp: QmpExecutor, lab: JobLab, options: StreamOptions): Promise<LabJob> {
  checkJobId(options.jobId);
  const { dataMiB, diskMiB } = sizesOf(options);
  const half = Math.max(1, Math.floor(dataMiB / 2));
  const chain = await backingChain(
    lab,
    options.jobId,
    diskMiB,
    { base: dataMiB, mid: half },
    options.baseFault ? { base: options.baseFault } : {},
  );
  await qmp.execute('block-stream', {
    ...commonArgs(options),
    device: chain.top,
    ...(options.onError ? { 'on-error': options.onError } : {}),
  });
  return { id: options.jobId, type: 'stream', device: chain.top, nodes: [chain.top, chain.mid, chain.base] };
}

/**
 * Deletes a finished job's nodes (after it was dismissed), root first, so the demo can run jobs forever on
 * one daemon. A node still in use makes QEMU refuse; that error is passed on.
 */
export async function releaseJobNodes(lab: JobLab, job: LabJob): Promise<void> {
  for (const node of job.nodes) await lab.removeNode(node);
}

/** Starts the daemon's NBD server on a unix socket (once per daemon), for `GuestWriter`. */
export async function startNbdServer(qmp: QmpExecutor, socketPath: string): Promise<void> {
  await qmp.execute('nbd-server-start', { addr: { type: 'unix', data: { path: socketPath } } });
}

/**
 * Guest-like writes to a node while a job runs: the node is exported (writable) on the daemon's NBD server
 * (see startNbdServer) and written with `qemu-io`.
 */
export class GuestWriter {
  private constructor(
    private readonly qmp: QmpExecutor,
    private readonly exportId: string,
    private readonly uri: string,
  ) {}

  static async open(qmp: QmpExecutor, nodeName: string, nbdSocketPath: string): Promise<GuestWriter> {
    const exportId = `${nodeName}-guest`;
    await qmp.execute('block-export-add', { type: 'nbd', id: exportId, 'node-name': nodeName, name: exportId, writable: true });
    return new GuestWriter(qmp, exportId, `nbd+unix:///${exportId}?socket=${nbdSocketPath}`);
  }

  /** Writes `lengthMiB` of `byte` at `offsetMiB`; resolves when qemu-io has finished (the write is on the node). */
  async write(offsetMiB: number, lengthMiB: number, byte = 0xcc): Promise<void> {
    const command = `write -P ${byte} ${offsetMiB}M ${lengthMiB}M`;
    try {
      await execFileAsync(qemuToolPath('qemu-io'), ['-f', 'raw', '-c', command, this.uri], { timeout: 30_000 });
    } catch (err) {
      throw new LabError(`qemu-io ${command} on ${this.uri} failed`, (err as { stderr?: string }).stderr, { cause: err });
    }
  }

  async close(): Promise<void> {
    await this.qmp.execute('block-export-del', { id: this.exportId });
  }
}

/** Default NBD socket path for a lab directory. */
export function nbdSocketIn(dir: string): string {
  return join(dir, 'nbd.sock');
}
