/**
 * An observer independent of the gateway: `virsh qemu-monitor-event --loop` (QEMU's own events
 * through libvirt's passthrough, with QEMU's timestamps) or `virsh event --loop --all` (libvirt's
 * verdicts: block-job-2, lifecycle), parsed into records. virsh exits when libvirtd goes away; the
 * observer starts it again and counts the gap, because events in between are lost to it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { LabError } from '../errors.js';
import { LIBVIRT_URI } from './libvirtd.js';
import { registerLeftover } from './leftovers.js';
import { virsh } from './libvirt-domain.js';

export interface QemuEventRecord {
  domain: string;
  event: string;
  data: Record<string, unknown>;
  /** QEMU's timestamp, in seconds since the epoch. */
  qemuSeconds: number;
  /** Date.now() when the line arrived. */
  receivedMs: number;
}

export interface LibvirtEventRecord {
  domain: string;
  /** libvirt's event name, e.g. 'block-job-2', 'lifecycle'. */
  event: string;
  /** virsh's text after the colon, e.g. 'Block Copy for vda ready'. */
  detail: string;
  receivedMs: number;
}

const QEMU_LINE = /^event (\S+) at (\d+)\.(\d+) for domain '(.*)': (.*)$/;
const LIBVIRT_LINE = /^event '([^']+)' for domain '(.*)': (.*)$/;
const DEFAULT_MAX_EVENTS = 100_000;
const RESPAWN_DELAY_MS = 100;

/** Parses one `virsh qemu-monitor-event` line (no --timestamp), or null for other output. */
export function parseQemuEventLine(line: string, receivedMs = Date.now()): QemuEventRecord | null {
  const match = QEMU_LINE.exec(line);
  if (!match) return null;
  const [, event = '', seconds = '0', micros = '0', domain = '', json = ''] = match;
  let data: Record<string, unknown> = {};
  if (json !== '<null>') {
    try {
      data = JSON.parse(json) as Record<string, unknown>;
    } catch {
      return null;
    }
  }
  return { event, domain, data, qemuSeconds: Number(seconds) + Number(`0.${micros}`), receivedMs };
}

/** Parses one `virsh event --loop` line, or null for other output. */
export function parseLibvirtEventLine(line: string, receivedMs = Date.now()): LibvirtEventRecord | null {
  const match = LIBVIRT_LINE.exec(line);
  return match ? { event: match[1] ?? '', domain: match[2] ?? '', detail: match[3] ?? '', receivedMs } : null;
}

abstract class VirshLoop<T extends { domain: string }> {
  readonly records: T[] = [];
  /** Records dropped at the bound (a sequence would then be incomplete). */
  dropped = 0;
  /** How often virsh was restarted (each restart is a window of lost events). */
  gaps = 0;
  private child: ChildProcess | undefined;
  private stopped = false;
  private readonly waiters = new Set<{ match: (record: T) => boolean; resolve: (record: T) => void }>();
  private readonly unregister: () => void;

  protected constructor(
    private readonly args: string[],
    private readonly maxEvents: number,
  ) {
    this.unregister = registerLeftover({ label: `virsh ${args[0]} observer`, dispose: () => this.stop(), disposeNow: () => this.child?.kill('SIGKILL') });
    this.spawn();
  }

  protected abstract parse(line: string): T | null;

  /** Resolves with the first record (already seen or to come) that matches. */
  waitFor(match: (record: T) => boolean, timeoutMs = 60_000): Promise<T> {
    const seen = this.records.find(match);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const waiter = {
        match,
        resolve: (record: T) => {
          clearTimeout(timer);
          resolve(record);
        },
      };
      const timer = setTimeout(() => {
        this.waiters.delete(waiter);
        reject(new LabError(`virsh observer: no matching event within ${timeoutMs} ms (${this.records.length} seen)`));
      }, timeoutMs);
      this.waiters.add(waiter);
    });
  }

  /**
   * virsh says nothing when its registration is in place, so this proves it: suspend and resume
   * `domain` and wait until the observer sees the resume. Call before starting what it must see.
   */
  async sync(domain: string, isResume: (record: T) => boolean, timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const from = this.records.length;
      await virsh(['suspend', domain]);
      await virsh(['resume', domain]);
      const seen = await this.waitFor((record) => record.domain === domain && isResume(record) && this.records.indexOf(record) >= from, 2_000).then(
        () => true,
        () => false,
      );
      if (seen) return;
      if (Date.now() > deadline) throw new LabError(`virsh observer did not see domain ${domain} resume within ${timeoutMs} ms`);
    }
  }

  /** Kills virsh by PID and waits for it. Idempotent. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.unregister();
    const child = this.child;
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    }
  }

  private spawn(): void {
    const child = spawn('/usr/bin/virsh', ['-c', LIBVIRT_URI, ...this.args], { stdio: ['ignore', 'pipe', 'ignore'] });
    this.child = child;
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const record = this.parse(line);
      if (!record) return;
      if (this.records.length >= this.maxEvents) {
        this.dropped++;
        return;
      }
      this.records.push(record);
      for (const waiter of this.waiters) {
        if (waiter.match(record)) {
          this.waiters.delete(waiter);
          waiter.resolve(record);
        }
      }
    });
    child.once('exit', () => {
      if (this.stopped) return;
      this.gaps++;
      void sleep(RESPAWN_DELAY_MS).then(() => {
        if (!this.stopped) this.spawn();
      });
    });
  }
}

/** QEMU's events for every domain on the connection, as libvirt passes them through. */
export class QemuEventObserver extends VirshLoop<QemuEventRecord> {
  constructor(maxEvents = DEFAULT_MAX_EVENTS) {
    super(['qemu-monitor-event', '--loop'], maxEvents);
  }

  protected parse(line: string): QemuEventRecord | null {
    return parseQemuEventLine(line);
  }

  /** Proves the registration is live (see VirshLoop.sync). */
  ready(domain: string): Promise<void> {
    return this.sync(domain, (record) => record.event === 'RESUME');
  }

  /** Every JOB_STATUS_CHANGE status of `jobId` on `domain`, in wire order (all incarnations). */
  statusSequence(domain: string, jobId: string): string[] {
    if (this.dropped > 0) throw new LabError(`observer dropped ${this.dropped} events; the sequence would be incomplete`);
    return this.records
      .filter((record) => record.domain === domain && record.event === 'JOB_STATUS_CHANGE' && record.data.id === jobId)
      .map((record) => String(record.data.status));
  }

  /** Resolves when QEMU reports `status` for `jobId` on `domain`. */
  waitForStatus(domain: string, jobId: string, status: string, timeoutMs = 60_000): Promise<QemuEventRecord> {
    return this.waitFor((record) => record.domain === domain && record.event === 'JOB_STATUS_CHANGE' && record.data.id === jobId && record.data.status === status, timeoutMs);
  }
}

/** libvirt's own events (`virsh event --loop --all`): block-job-2 verdicts, lifecycle. */
export class LibvirtEventObserver extends VirshLoop<LibvirtEventRecord> {
  constructor(maxEvents = DEFAULT_MAX_EVENTS) {
    super(['event', '--loop', '--all'], maxEvents);
  }

  protected parse(line: string): LibvirtEventRecord | null {
    return parseLibvirtEventLine(line);
  }

  ready(domain: string): Promise<void> {
    return this.sync(domain, (record) => record.event === 'lifecycle' && /Resumed/.test(record.detail));
  }

  /** libvirt's block-job-2 texts for `domain`, e.g. ['Block Copy for vda ready', 'Block Copy for vda completed']. */
  blockJobs(domain: string): string[] {
    return this.records.filter((record) => record.domain === domain && record.event === 'block-job-2').map((record) => record.detail);
  }
}
