/**
 * The privileged libvirtd (and its virtlogd) for tests, the demo and benchmarks. Only one can run
 * per machine, and test files run in several processes, so a daemon is shared through leases:
 * `acquireLibvirtd()` reuses a running daemon or starts one by PID, records a lease, and the last
 * lease released stops the daemon only if the lab started it. A daemon the lab did not start (an
 * operator's) is used and never stopped or restarted. The lease is a leftover (leftovers.ts), so
 * `cleanupLeftovers()` releases it after the domains created later are destroyed: tests should let
 * it do so rather than release the daemon themselves while a domain may still run.
 */
import { execFile, spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { LabError } from '../errors.js';
import { libvirtTools } from './libvirt-tools.js';
import { registerLeftover } from './leftovers.js';

export const LIBVIRT_URI = 'qemu:///system';

/** Where the lab keeps its lock, leases, owner record, config and daemon logs. */
const STATE_DIR = '/run/blockjob-gateway-lab/libvirt';
const LOCK_FILE = join(STATE_DIR, 'lock');
const LEASE_DIR = join(STATE_DIR, 'leases');
const OWNER_FILE = join(STATE_DIR, 'owner.json');
const CONFIG_FILE = join(STATE_DIR, 'libvirtd.conf');
/** Pid files the daemons write themselves when privileged. */
const LIBVIRTD_PIDFILE = '/run/libvirtd.pid';
const VIRTLOGD_PIDFILE = '/run/virtlogd.pid';
const LOCK_TIMEOUT_MS = 60_000;
/** A cold start probes QEMU's capabilities (~8.5 s on 2 idle cores); a loaded machine needs more. */
const READY_TIMEOUT_MS = 90_000;
const STOP_TIMEOUT_MS = 20_000;

interface Owner {
  libvirtd: number;
  virtlogd: number | null;
}

function alive(pid: number | null | undefined): pid is number {
  if (!pid || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  // A zombie answers kill(0) but is gone for our purposes.
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

function readPid(file: string): number | null {
  try {
    const pid = Number.parseInt(readFileSync(file, 'utf8').trim(), 10);
    return Number.isInteger(pid) ? pid : null;
  } catch {
    return null;
  }
}

function readOwner(): Owner | null {
  try {
    return JSON.parse(readFileSync(OWNER_FILE, 'utf8')) as Owner;
  } catch {
    return null;
  }
}

/** Runs `fn` holding the lab's cross-process lock (an O_EXCL file; a dead holder's lock is broken). */
async function withLock<T>(fn: () => Promise<T>): Promise<T> {
  mkdirSync(LEASE_DIR, { recursive: true });
  const deadline = Date.now() + LOCK_TIMEOUT_MS;
  for (;;) {
    try {
      const fd = openSync(LOCK_FILE, 'wx');
      writeFileSync(fd, String(process.pid));
      closeSync(fd);
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      const holder = readPid(LOCK_FILE);
      if (holder !== null && !alive(holder)) rmSync(LOCK_FILE, { force: true });
      else if (Date.now() > deadline) throw new LabError(`libvirt lab lock ${LOCK_FILE} held by pid ${holder} for ${LOCK_TIMEOUT_MS} ms`);
      else await sleep(25);
    }
  }
  try {
    return await fn();
  } finally {
    rmSync(LOCK_FILE, { force: true });
  }
}

/** Lease files are `<pid>-<n>`; a lease of a dead process no longer counts. */
function liveLeases(): string[] {
  const names = readdirSync(LEASE_DIR);
  for (const name of names) if (!alive(Number.parseInt(name, 10))) rmSync(join(LEASE_DIR, name), { force: true });
  return readdirSync(LEASE_DIR);
}

function spawnDaemon(binary: string, args: string[], logName: string): number {
  const log = openSync(join(STATE_DIR, logName), 'a');
  try {
    // Detached: the daemon must outlive the test process that started it while others hold leases.
    const child = spawn(binary, args, { detached: true, stdio: ['ignore', log, log] });
    child.unref();
    if (!child.pid) throw new LabError(`could not start ${binary}`);
    return child.pid;
  } finally {
    closeSync(log);
  }
}

function virshOk(args: string[], timeoutMs = 10_000): Promise<boolean> {
  return new Promise((resolve) => {
    execFile('/usr/bin/virsh', ['-c', LIBVIRT_URI, ...args], { timeout: timeoutMs }, (error) => resolve(!error));
  });
}

async function stopPid(pid: number): Promise<void> {
  if (!alive(pid)) return;
  process.kill(pid, 'SIGTERM');
  const deadline = Date.now() + STOP_TIMEOUT_MS;
  while (alive(pid)) {
    if (Date.now() > deadline) {
      process.kill(pid, 'SIGKILL');
      break;
    }
    await sleep(25);
  }
  while (alive(pid)) await sleep(25);
}

/** The running libvirtd: its pid file, or the lab's record of one it just spawned (the pid file comes later). */
function runningLibvirtd(): number | null {
  const fromFile = readPid(LIBVIRTD_PIDFILE);
  if (alive(fromFile)) return fromFile;
  const spawned = readOwner()?.libvirtd;
  return alive(spawned) ? spawned : null;
}

let leaseCounter = 0;

export class Libvirtd {
  private released = false;
  private readonly unregister: () => void;

  private constructor(private readonly lease: string) {
    this.unregister = registerLeftover({
      label: `libvirtd lease ${lease}`,
      dispose: () => this.release(),
      disposeNow: () => this.releaseNow(),
    });
  }

  /** Reuses the running libvirtd or starts one (with virtlogd), and waits until it serves qemu:///system. */
  static async acquire(): Promise<Libvirtd> {
    const { problems } = libvirtTools();
    if (problems.length > 0) throw new LabError(`the libvirt lab cannot run: ${problems.join('; ')}`);
    const lease = `${process.pid}-${++leaseCounter}`;
    await withLock(async () => {
      liveLeases();
      if (runningLibvirtd() === null) await Libvirtd.startDaemons();
      writeFileSync(join(LEASE_DIR, lease), '');
    });
    const daemon = new Libvirtd(lease);
    try {
      await Libvirtd.waitReady();
    } catch (error) {
      await daemon.release();
      throw error;
    }
    return daemon;
  }

  /** PID of the running libvirtd. */
  get pid(): number {
    const pid = runningLibvirtd();
    if (pid === null) throw new LabError('libvirtd is not running');
    return pid;
  }

  /** True when the lab started the running daemon, so a test may restart it. */
  get owned(): boolean {
    const pid = runningLibvirtd();
    return pid !== null && readOwner()?.libvirtd === pid;
  }

  /** The daemon's stderr log (when the lab started it). */
  get logFile(): string {
    return join(STATE_DIR, 'libvirtd.log');
  }

  /**
   * Stops libvirtd (domains keep running, as in a real upgrade) and starts it again; resolves once
   * it serves again. `whileDown` runs between the two, e.g. to act while the daemon is away.
   */
  async restart(whileDown?: () => Promise<void>): Promise<void> {
    await withLock(async () => {
      const owner = readOwner();
      const pid = runningLibvirtd();
      if (!owner || pid === null || owner.libvirtd !== pid) throw new LabError('libvirtd was not started by the lab; refusing to restart it');
      await stopPid(pid);
      await whileDown?.();
      owner.libvirtd = spawnDaemon('/usr/sbin/libvirtd', ['--config', CONFIG_FILE], 'libvirtd.log');
      writeFileSync(OWNER_FILE, JSON.stringify(owner));
    });
    await Libvirtd.waitReady();
  }

  /** Drops the lease; the last lease stops the daemons if the lab started them. Idempotent. */
  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    this.unregister();
    await withLock(async () => {
      rmSync(join(LEASE_DIR, this.lease), { force: true });
      if (liveLeases().length > 0) return;
      const owner = readOwner();
      if (!owner) return;
      if (owner.libvirtd === runningLibvirtd()) await stopPid(owner.libvirtd);
      if (owner.virtlogd !== null && owner.virtlogd === readPid(VIRTLOGD_PIDFILE)) await stopPid(owner.virtlogd);
      rmSync(OWNER_FILE, { force: true });
    });
  }

  /** At process exit: drop the lease and, if it was the last, signal the lab's daemons (no waiting). */
  private releaseNow(): void {
    if (this.released) return;
    this.released = true;
    try {
      unlinkSync(join(LEASE_DIR, this.lease));
      if (liveLeases().length > 0) return;
      const owner = readOwner();
      if (owner && owner.libvirtd === runningLibvirtd()) process.kill(owner.libvirtd, 'SIGTERM');
    } catch {
      // exiting anyway
    }
  }

  private static async startDaemons(): Promise<void> {
    // Errors to stderr (our log file) instead of the journal, which this machine may not have.
    writeFileSync(CONFIG_FILE, 'log_outputs = "3:stderr"\n');
    for (const log of ['libvirtd.log', 'virtlogd.log']) writeFileSync(join(STATE_DIR, log), '');
    let virtlogd: number | null = null;
    if (!alive(readPid(VIRTLOGD_PIDFILE))) {
      virtlogd = spawnDaemon('/usr/sbin/virtlogd', [], 'virtlogd.log');
    }
    const libvirtd = spawnDaemon('/usr/sbin/libvirtd', ['--config', CONFIG_FILE], 'libvirtd.log');
    writeFileSync(OWNER_FILE, JSON.stringify({ libvirtd, virtlogd } satisfies Owner));
  }

  private static async waitReady(): Promise<void> {
    const deadline = Date.now() + READY_TIMEOUT_MS;
    while (!(await virshOk(['version']))) {
      const owner = readOwner();
      if (runningLibvirtd() === null) {
        throw new LabError('libvirtd exited during start', tail(join(STATE_DIR, 'libvirtd.log')));
      }
      if (Date.now() > deadline) throw new LabError(`libvirtd did not serve ${LIBVIRT_URI} within ${READY_TIMEOUT_MS} ms`, tail(join(STATE_DIR, 'libvirtd.log')));
      await sleep(50);
    }
  }
}

function tail(file: string): string {
  try {
    return readFileSync(file, 'utf8').slice(-4000);
  } catch {
    return '';
  }
}

/** Acquires the shared libvirtd; see Libvirtd. */
export function acquireLibvirtd(): Promise<Libvirtd> {
  return Libvirtd.acquire();
}
