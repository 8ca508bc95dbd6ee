/**
 * Transient TCG test domains on the lab's libvirtd: no NIC, no graphics, one qcow2 disk `vda`
 * with data to copy, each in its own temp dir and with a name unique to this process, so test
 * files sharing the daemon never see each other's domains by accident.
 */
import { execFile, execFileSync } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { LabError } from '../errors.js';
import { createQcow2Image, type ImagePattern } from './images.js';
import { LIBVIRT_URI } from './libvirtd.js';
import { makeShortTempDir, registerLeftover } from './leftovers.js';
import { RawQmp } from './raw-qmp.js';

const VIRSH_TIMEOUT_MS = 60_000;
const MAX_VIRSH_OUTPUT = 4 * 1024 * 1024;

/** Runs `virsh -c qemu:///system ARGS`; rejects with a LabError carrying its output. */
export function virsh(args: string[], options: { timeoutMs?: number } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('/usr/bin/virsh', ['-c', LIBVIRT_URI, ...args], { timeout: options.timeoutMs ?? VIRSH_TIMEOUT_MS, maxBuffer: MAX_VIRSH_OUTPUT }, (error, stdout, stderr) => {
      if (error) reject(new LabError(`virsh ${args.join(' ')} failed: ${error.message}`, `${stdout}${stderr}`, { cause: error }));
      else resolve(stdout);
    });
  });
}

export interface DomainOptions {
  /** Virtual size of vda. @default 64 */
  diskMiB?: number;
  /** Data written into vda before start (so a copy has something to move). @default 48 MiB of 0x5a */
  pattern?: ImagePattern | ImagePattern[];
  /**
   * Add an extra QMP monitor through `<qemu:commandline>` (taints the domain custom-argv): an
   * observer of QEMU that survives libvirtd restarts, and the "direct" side of the benchmark.
   */
  extraQmp?: boolean;
}

let domainCounter = 0;

function escapeXml(text: string): string {
  return text.replace(/[<>&'"]/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** The domain XML the lab uses (reference libvirt.md §2). */
export function labDomainXml(name: string, disk: string, qmpSocket?: string): string {
  const ns = qmpSocket ? ` xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'` : '';
  const commandline = qmpSocket
    ? `<qemu:commandline><qemu:arg value='-qmp'/><qemu:arg value='unix:${escapeXml(qmpSocket)},server=on,wait=off'/></qemu:commandline>`
    : '';
  return `<domain type='qemu'${ns}>
  <name>${escapeXml(name)}</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
      <source file='${escapeXml(disk)}'/><target dev='vda' bus='virtio'/></disk>
    <controller type='usb' model='none'/><memballoon model='none'/>
  </devices>
  ${commandline}
</domain>
`;
}

export class LabDomain {
  private destroyed = false;
  private readonly unregister: () => void;

  private constructor(
    readonly name: string,
    readonly uuid: string,
    readonly dir: string,
    /** Path of vda's image. */
    readonly disk: string,
    /** Path of the extra QMP socket, when created with `extraQmp`. */
    readonly qmpSocket: string | undefined,
  ) {
    this.unregister = registerLeftover({
      label: `libvirt domain ${name}`,
      dispose: () => this.destroy(),
      disposeNow: () => {
        // At exit only synchronous calls run.
        try {
          execFileSync('/usr/bin/virsh', ['-c', LIBVIRT_URI, 'destroy', name], { stdio: 'ignore', timeout: 10_000 });
        } finally {
          rmSync(dir, { recursive: true, force: true });
        }
      },
    });
  }

  /** Creates and starts a transient domain; the name is unique (`prefix-<pid>-<n>`). */
  static async create(prefix = 'bjg', options: DomainOptions = {}): Promise<LabDomain> {
    const name = `${prefix}-${process.pid}-${++domainCounter}`;
    const dir = makeShortTempDir('bjl-');
    try {
      const disk = await createQcow2Image(join(dir, 'vda.qcow2'), {
        sizeMiB: options.diskMiB ?? 64,
        pattern: options.pattern ?? { offsetMiB: 0, lengthMiB: 48, byte: 0x5a },
      });
      const qmpSocket = options.extraQmp ? join(dir, 'qmp.sock') : undefined;
      const xmlFile = join(dir, 'domain.xml');
      writeFileSync(xmlFile, labDomainXml(name, disk, qmpSocket));
      await virsh(['create', xmlFile]);
      const uuid = (await virsh(['domuuid', name])).trim();
      return new LabDomain(name, uuid, dir, disk, qmpSocket);
    } catch (error) {
      rmSync(dir, { recursive: true, force: true });
      throw error;
    }
  }

  /** Path of an image in this domain's dir. */
  path(file: string): string {
    return join(this.dir, file);
  }

  /** `virsh dumpxml` (live XML: `<mirror ... ready='yes'>`, the current source). */
  xml(): Promise<string> {
    return virsh(['dumpxml', this.name]);
  }

  /** The file vda currently reads from, per the live XML. */
  async vdaSource(): Promise<string> {
    const xml = await this.xml();
    const match = /<disk\b[\s\S]*?<source file='([^']+)'[\s\S]*?<target dev='vda'/.exec(xml);
    if (!match?.[1]) throw new LabError(`no vda source in the XML of ${this.name}`, xml);
    return match[1];
  }

  /** The domain's QEMU log (/var/log/libvirt/qemu/NAME.log): taint lines live there. */
  log(): string {
    try {
      return readFileSync(`/var/log/libvirt/qemu/${this.name}.log`, 'utf8');
    } catch {
      return '';
    }
  }

  /** A raw QMP connection to the extra monitor (created with `extraQmp`). */
  async rawQmp(maxEvents = 100_000): Promise<RawQmp> {
    if (!this.qmpSocket) throw new LabError(`domain ${this.name} has no extra QMP monitor (create it with extraQmp)`);
    return RawQmp.connect(this.qmpSocket, { maxEvents });
  }

  /** Stops the domain (`virsh destroy`: it is transient, so it is gone) and removes its dir. Idempotent. */
  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    try {
      await virsh(['destroy', this.name]).catch(async (error: unknown) => {
        // Already gone (destroyed by the test) is fine; anything else is reported.
        if (!(await domainGone(this.name))) throw error;
      });
    } finally {
      rmSync(this.dir, { recursive: true, force: true });
      this.unregister();
    }
  }
}

async function domainGone(name: string): Promise<boolean> {
  for (let i = 0; i < 3; i++) {
    try {
      await virsh(['domstate', name]);
    } catch (error) {
      if (/failed to get domain|Domain not found/i.test(String((error as LabError).message))) return true;
    }
    await sleep(200);
  }
  return false;
}

/** Creates a lab domain; see LabDomain. */
export function createLabDomain(prefix?: string, options?: DomainOptions): Promise<LabDomain> {
  return LabDomain.create(prefix, options);
}
