/**
 * The job lab (src/lab/jobs.ts) on a simulated VM: virtual image files instead of qemu-img, and the
 * same blockdev-add arguments a real qemu-storage-daemon gets, blkdebug rules included. The demo's
 * driver then starts, fails and cancels jobs with the very same code in both modes.
 */
import type { CreateImageOptions } from '../lab/images.js';
import type { JobLab, QmpExecutor } from '../lab/jobs.js';
import { qcow2NodeArgs, type Qcow2NodeOptions } from '../lab/qsd.js';
import type { SimulatedVm } from '../sim/index.js';

const MiB = 1024 * 1024;

export class SimulatedLab implements JobLab {
  constructor(private readonly vm: SimulatedVm) {}

  /** QMP commands run in the simulated process, as on the driver's own monitor (events go to every client). */
  get qmp(): QmpExecutor {
    return { execute: async (command, args) => this.vm.execute(command, args) };
  }

  async createImage(name: string, options: CreateImageOptions): Promise<string> {
    const path = `/simulated/${this.vm.name}/${name}`;
    // A backing-only image takes its size from the chain; the lab always gives one, 32 MiB otherwise.
    this.vm.createImage(path, (options.sizeMiB ?? 32) * MiB);
    return path;
  }

  async addQcow2Node(nodeName: string, file: string, options: Qcow2NodeOptions = {}): Promise<void> {
    const args = qcow2NodeArgs(nodeName, file, options);
    this.vm.execute('blockdev-add', args);
  }

  async removeNode(nodeName: string): Promise<void> {
    this.vm.execute('blockdev-del', { 'node-name': nodeName });
  }
}
