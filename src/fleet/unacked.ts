/**
 * UnackedBook: a host's record, on local disk, of the VMs whose stream it has served beyond what
 * Redis acknowledged. A host killed with -9 in that window would otherwise continue from Redis's
 * head after its restart and give those offsets to other events, while a client that saw them
 * resumes "recovered" into a different history. With the record, the restart opens such a VM at a
 * new epoch instead (its clients get a snapshot with `unknown_epoch`).
 *
 * The record holds, per VM, the epoch and the last offset served beyond Redis's acknowledged head;
 * the restart compares it with Redis's head (a reply lost to the kill may have landed after all).
 * Cost: one positioned write of a few bytes, without fsync, per event served ahead of Redis, and
 * one when Redis catches up. A process crash keeps it (the kernel has it). A machine crash may lose
 * it, so a record left by another boot that was not closed cleanly counts every VM as unacked.
 */
import { createHash } from 'node:crypto';
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, writeSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { ConfigError } from '../errors.js';

interface Record {
  boot: string;
  /** Written by a clean shutdown: the `vms` map can be trusted whatever the boot. */
  closed?: boolean;
  /** A previous record could not be trusted and is not yet resolved: every VM counts as unacked. */
  all?: boolean;
  /** VM -> [epoch, last offset served] beyond Redis's acknowledged head. */
  vms: { [vm: string]: [string, number] };
}

/** Where a host keeps the record: the config's, systemd's StateDirectory, else the XDG state directory. */
export function defaultStateDir(env: NodeJS.ProcessEnv = process.env): string {
  const systemd = env.STATE_DIRECTORY?.split(':')[0];
  if (systemd) return systemd;
  return join(env.XDG_STATE_HOME || join(homedir(), '.local', 'state'), 'blockjob-gateway');
}

/** One file per host name, Redis and key prefix: the record is about streams in that Redis. */
export function unackedFile(dir: string, host: string, redis: string, prefix: string): string {
  const digest = createHash('sha256').update(`${redis}\n${prefix}`).digest('hex').slice(0, 12);
  return join(dir, `fleet-${host}-${digest}.json`);
}

function bootId(): string {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return '';
  }
}

export class UnackedBook {
  private readonly fd: number;
  private readonly boot = bootId();
  /** What the previous process left: VMs (or all of them) that must not continue their epoch. */
  private readonly previous: { all: boolean; vms: Map<string, [string, number]> };
  private readonly current = new Map<string, [string, number]>();
  private carryAll: boolean;
  private written = 0;

  constructor(readonly file: string) {
    this.previous = readPrevious(file, this.boot);
    this.carryAll = this.previous.all;
    try {
      mkdirSync(dirname(file), { recursive: true });
      this.fd = openSync(file, 'w'); // truncated: a crash before the write below leaves an empty file, which counts as "all"
    } catch (error) {
      throw new ConfigError(`fleet.stateDir: cannot write ${file} (${(error as Error).message}); a host needs it to never reuse offsets after a crash`, 'fleet.stateDir');
    }
    // Until each VM is opened again, what the previous process left stays recorded.
    for (const [vm, served] of this.previous.vms) this.current.set(vm, served);
    this.write(true);
  }

  /** Whether the previous process may have served offsets of `epoch` beyond `head`, Redis's. */
  wasUnacked(vm: string, epoch: string, head: number): boolean {
    if (this.previous.all) return true;
    const served = this.previous.vms.get(vm);
    return served !== undefined && served[0] === epoch && served[1] > head;
  }

  /**
   * The VM's stream was opened again (continued, at a new epoch, or restarted in Redis): the previous
   * process's word on it is used up. `ahead`: what this host already served beyond that opening (one
   * write: the record never lacks it, not even between two writes).
   */
  reopened(vm: string, ahead?: { epoch: string; offset: number }): void {
    this.previous.vms.delete(vm);
    if (ahead) {
      this.current.set(vm, [ahead.epoch, ahead.offset]);
      this.write();
    } else if (this.current.delete(vm)) this.write();
  }

  /** Every VM was opened again: an untrusted previous record is resolved. */
  settled(): void {
    if (!this.carryAll) return;
    this.carryAll = false;
    this.write();
  }

  /** Before the host serves `offset` of `epoch`, which Redis has not acknowledged. */
  ahead(vm: string, epoch: string, offset: number): void {
    const served = this.current.get(vm);
    if (served && served[0] === epoch && served[1] >= offset) return;
    this.current.set(vm, [epoch, offset]);
    this.write();
  }

  /** Redis holds everything the host served of the VM. */
  caughtUp(vm: string): void {
    if (this.current.delete(vm)) this.write();
  }

  isAhead(vm: string): boolean {
    return this.current.has(vm);
  }

  /** A clean shutdown: what is still unacknowledged stays recorded, and is trusted at the next start. */
  close(): void {
    this.write(true, true);
    closeSync(this.fd);
  }

  private write(sync = false, closed = false): void {
    const record: Record = { boot: this.boot, ...(closed ? { closed } : {}), ...(this.carryAll ? { all: true } : {}), vms: Object.fromEntries(this.current) };
    const text = JSON.stringify(record);
    // One positioned write, padded over the previous content (JSON allows trailing blanks): no truncate window.
    const bytes = Buffer.from(text.padEnd(this.written, ' '));
    writeSync(this.fd, bytes, 0, bytes.length, 0);
    this.written = Math.max(this.written, text.length);
    if (sync) fsyncSync(this.fd);
  }
}

function readPrevious(file: string, boot: string): { all: boolean; vms: Map<string, [string, number]> } {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return { all: false, vms: new Map() }; // never ran here: nothing served
  }
  try {
    const record = JSON.parse(text) as Record;
    // Another boot without a clean shutdown: the page cache, and with it the latest record, may be lost.
    if (record.all || (!record.closed && record.boot !== boot)) return { all: true, vms: new Map() };
    return { all: false, vms: new Map(Object.entries(record.vms ?? {})) };
  } catch {
    return { all: true, vms: new Map() };
  }
}
