/**
 * UnackedBook: a host's record, on local disk, of the VMs whose stream it has served beyond what
 * Redis acknowledged. A host killed with -9 in that window would otherwise continue from Redis's
 * head after its restart and give those offsets to other events, while a client that saw them
 * resumes "recovered" into a different history. With the record, the restart opens such a VM at a
 * new epoch instead (its clients get a snapshot with `unknown_epoch`).
 *
 * The record holds, per VM, the epoch and the last offset served beyond Redis's acknowledged head;
 * the restart compares it with Redis's head (a reply lost to the kill may have landed after all).
 * The file is a header and one fixed-size slot per VM (a line of JSON padded with blanks), so the
 * record of one VM is one positioned write of one slot, whatever the number of VMs: per event
 * served ahead of Redis, and once when Redis catches up (measured: bench/notes.md, "UnackedBook").
 * No fsync: a process crash keeps it (the kernel has it). A machine crash may lose it, so a record
 * left by another boot that was not closed cleanly counts every VM as unacked.
 */
import { createHash } from 'node:crypto';
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, writeSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { ConfigError } from '../errors.js';

/** Bytes per slot (the header is slot 0): a divisor of the page size, so no slot write spans two pages. */
const SLOT = 256;

interface Header {
  v: 2;
  boot: string;
  /** Written by a clean shutdown: the slots can be trusted whatever the boot. */
  closed?: boolean;
  /** A previous record could not be trusted and is not yet resolved: every VM counts as unacked. */
  all?: boolean;
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
  /** VM -> [epoch, last offset served] beyond Redis's acknowledged head. */
  private readonly current = new Map<string, [string, number]>();
  /** Each VM's slot in the file, kept once given (a host's VMs are few and long-lived). */
  private readonly slots = new Map<string, number>();
  private readonly buffer = Buffer.alloc(SLOT);
  private carryAll: boolean;

  constructor(readonly file: string) {
    this.previous = readPrevious(file, this.boot);
    this.carryAll = this.previous.all;
    try {
      mkdirSync(dirname(file), { recursive: true });
      this.fd = openSync(file, 'w'); // truncated: a crash before the write below leaves an empty file, which counts as "all"
    } catch (error) {
      throw new ConfigError(`fleet.stateDir: cannot write ${file} (${(error as Error).message}); a host needs it to never reuse offsets after a crash`, 'fleet.stateDir');
    }
    // Until each VM is opened again, what the previous process left stays recorded: header and slots in one write.
    const lines = [this.header(false)];
    for (const [vm, served] of this.previous.vms) {
      this.current.set(vm, [served[0], served[1]]);
      this.slots.set(vm, lines.length);
      lines.push(slotLine(JSON.stringify([vm, served[0], served[1]])));
    }
    writeSync(this.fd, lines.join(''), 0);
    fsyncSync(this.fd);
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
    if (ahead) this.record(vm, ahead.epoch, ahead.offset);
    else this.caughtUp(vm);
  }

  /** Every VM was opened again: an untrusted previous record is resolved. */
  settled(): void {
    if (!this.carryAll) return;
    this.carryAll = false;
    this.writeHeader(false);
  }

  /** Before the host serves `offset` of `epoch`, which Redis has not acknowledged. */
  ahead(vm: string, epoch: string, offset: number): void {
    const served = this.current.get(vm);
    if (served && served[0] === epoch && served[1] >= offset) return;
    this.record(vm, epoch, offset);
  }

  /** Redis holds everything the host served of the VM. */
  caughtUp(vm: string): void {
    if (this.current.delete(vm)) this.writeSlot(vm, '');
  }

  isAhead(vm: string): boolean {
    return this.current.has(vm);
  }

  /** A clean shutdown: what is still unacknowledged stays recorded, and is trusted at the next start. */
  close(): void {
    this.writeHeader(true);
    fsyncSync(this.fd);
    closeSync(this.fd);
  }

  private record(vm: string, epoch: string, offset: number): void {
    const served = this.current.get(vm);
    if (served) {
      served[0] = epoch;
      served[1] = offset;
    } else this.current.set(vm, [epoch, offset]);
    this.writeSlot(vm, `[${JSON.stringify(vm)},${JSON.stringify(epoch)},${offset}]`);
  }

  private header(closed: boolean): string {
    const header: Header = { v: 2, boot: this.boot, ...(closed ? { closed } : {}), ...(this.carryAll ? { all: true } : {}) };
    return slotLine(JSON.stringify(header));
  }

  private writeHeader(closed: boolean): void {
    writeSync(this.fd, this.header(closed), 0);
  }

  /** One positioned write of the VM's slot (blank: nothing unacked). */
  private writeSlot(vm: string, json: string): void {
    let slot = this.slots.get(vm);
    if (slot === undefined) this.slots.set(vm, (slot = this.slots.size + 1));
    const n = this.buffer.write(json, 0, 'utf8');
    if (n > SLOT - 1) throw new ConfigError(`fleet: VM name or epoch too long for the unacked record (${json.length} bytes)`, 'fleet.stateDir');
    this.buffer.fill(0x20, n, SLOT - 1);
    this.buffer[SLOT - 1] = 0x0a;
    writeSync(this.fd, this.buffer, 0, SLOT, slot * SLOT);
  }
}

/** One slot's line: the JSON padded with blanks to the slot size, ending with a newline. */
function slotLine(json: string): string {
  if (Buffer.byteLength(json) > SLOT - 1) throw new ConfigError(`fleet: VM name or epoch too long for the unacked record (${json.length} bytes)`, 'fleet.stateDir');
  return `${json.padEnd(SLOT - 1, ' ')}\n`;
}

function readPrevious(file: string, boot: string): { all: boolean; vms: Map<string, [string, number]> } {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return { all: false, vms: new Map() }; // never ran here: nothing served
  }
  try {
    const [first = '', ...rest] = text.split('\n');
    const head = JSON.parse(first) as Header | { boot: string; closed?: boolean; all?: boolean; vms?: { [vm: string]: [string, number] } };
    // Another boot without a clean shutdown: the page cache, and with it the latest record, may be lost.
    if (head.all || (!head.closed && head.boot !== boot)) return { all: true, vms: new Map() };
    // The one-object record of earlier versions (its VMs inline).
    if (!('v' in head)) return { all: false, vms: new Map(Object.entries(head.vms ?? {})) };
    const vms = new Map<string, [string, number]>();
    for (const line of rest) {
      if (line.trim() === '') continue;
      const [vm, epoch, offset] = JSON.parse(line) as [string, string, number];
      vms.set(vm, [epoch, offset]);
    }
    return { all: false, vms };
  } catch {
    return { all: true, vms: new Map() };
  }
}
