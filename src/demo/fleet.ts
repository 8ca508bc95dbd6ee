/**
 * The demo's VMs: real qemu-storage-daemons (one per VM, each with a monitor for the gateway and the
 * lab's own monitor for the driver), or, where QEMU is not installed, simulated VMs in this process
 * speaking real QMP on real unix sockets. Either way the gateway gets one `unix:` address per VM
 * and the driver a QMP executor plus a job lab, so nothing above this file knows the difference.
 */
import { rm } from 'node:fs/promises';
import type { JobLab, QmpExecutor } from '../lab/jobs.js';
import { qemuTools } from '../lab/binaries.js';
import { startQsd, type Qsd } from '../lab/qsd.js';
import { startSimulator } from '../sim/index.js';
import { SimulatedLab } from './sim-lab.js';

export type FleetMode = 'qemu' | 'simulated';

export interface FleetVm {
  readonly name: string;
  /** The monitor reserved for the gateway. */
  readonly gatewayAddress: string;
  /** The driver's own QMP access (each monitor serves one client, so never the gateway's). */
  readonly qmp: QmpExecutor;
  readonly lab: JobLab;
  /** Removes the image files of nodes that were deleted. */
  deleteImages(nodes: readonly string[]): Promise<void>;
}

export interface Fleet {
  readonly mode: FleetMode;
  readonly vms: readonly FleetVm[];
  /** Stops every daemon (or the simulator) and removes every temp dir. Idempotent. */
  close(): Promise<void>;
}

const GATEWAY_MONITOR = 'gw';

/** Why the real fleet cannot run here, or undefined when it can. */
export function missingQemu(): { tools: string[]; packages: string[] } | undefined {
  const detection = qemuTools();
  if (detection.missing.length === 0) return undefined;
  return { tools: detection.missing, packages: detection.missingPackages };
}

export function vmNames(count: number): string[] {
  return Array.from({ length: count }, (_, i) => `vm${i + 1}`);
}

export async function startQemuFleet(count: number): Promise<Fleet> {
  const daemons: Qsd[] = [];
  const close = async (): Promise<void> => {
    await Promise.allSettled(daemons.splice(0).map((qsd) => qsd.dispose()));
  };
  try {
    for (let i = 0; i < count; i++) daemons.push(await startQsd({ monitors: [GATEWAY_MONITOR] }));
  } catch (error) {
    await close();
    throw error;
  }
  const vms = vmNames(count).map((name, i): FleetVm => {
    const qsd = daemons[i]!;
    return {
      name,
      gatewayAddress: qsd.address(GATEWAY_MONITOR),
      qmp: { execute: (command, args) => qsd.execute(command, args) },
      lab: qsd,
      async deleteImages(nodes) {
        await Promise.all(nodes.map((node) => rm(qsd.imagePath(node), { force: true })));
      },
    };
  });
  return { mode: 'qemu', vms, close };
}

export async function startSimulatedFleet(count: number): Promise<Fleet> {
  // Jobs slow enough to watch: 32 MiB at the driver's speed limits takes seconds, like the real fleet.
  const sim = await startSimulator({ vms: vmNames(count), monitors: [GATEWAY_MONITOR], readyWindowMs: 600 });
  let closed: Promise<void> | undefined;
  const vms = sim.vms.map((vm): FleetVm => {
    const lab = new SimulatedLab(vm);
    return {
      name: vm.name,
      gatewayAddress: vm.address(GATEWAY_MONITOR),
      qmp: lab.qmp,
      lab,
      async deleteImages() {
        // Virtual images cost nothing.
      },
    };
  });
  return { mode: 'simulated', vms, close: () => (closed ??= sim.close()) };
}
