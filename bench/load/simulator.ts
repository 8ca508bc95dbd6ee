/**
 * Load generator (forked): the QMP simulator (src/sim) with many VMs, in its own process so the
 * gateway's CPU is measured alone. Jobs are started through the simulator's own QMP dispatcher;
 * `cycleJobs` starts short backup jobs at a fixed rate, each a full lifecycle of transitions.
 */
import { startSimulator, type Simulator, type SimulatorOptions, type SimJobStart } from '../../dist/sim/index.js';
import { serveRpc } from '../lib/rpc.js';

/** Started jobs whose nodes are still allocated; older ones are released (bounded). */
const MAX_UNRELEASED_JOBS = 256;
const CYCLE_TICK_MS = 10;

let sim: Simulator | undefined;
let cycle: NodeJS.Timeout | undefined;
let cycleStarted = 0;
/** Job ids stay unique across cycles (node names derive from them). */
let nextJob = 0;
let startFailures = 0;
const unreleased: Array<{ vm: string; id: string }> = [];

function simulator(): Simulator {
  if (!sim) throw new Error('the simulator is not started');
  return sim;
}

function stopCycle(): void {
  if (cycle) clearInterval(cycle);
  cycle = undefined;
}

async function close(): Promise<null> {
  stopCycle();
  const running = sim;
  sim = undefined;
  await running?.close();
  return null;
}

serveRpc({
  async start(options: Omit<SimulatorOptions, 'vms'> & { vms: number }) {
    if (sim) throw new Error('the simulator is already started');
    sim = await startSimulator(options);
    return { addresses: Object.fromEntries(sim.vms.map((vm) => [vm.name, vm.address()])) };
  },
  /** Starts `perVm` jobs on each of the first `vms` VMs (all VMs when absent). */
  startJobs({ vms, perVm, job }: { vms?: number; perVm: number; job: Omit<SimJobStart, 'id'> & { idPrefix: string } }) {
    const targets = simulator().vms.slice(0, vms ?? simulator().vms.length);
    const { idPrefix, ...spec } = job;
    for (const vm of targets) for (let i = 0; i < perVm; i++) vm.startJob({ ...spec, id: `${idPrefix}${i}` });
    return { started: targets.length * perVm };
  },
  /** QMP block-job-set-speed on one job (0 = unlimited): a slow mirror then converges to ready. */
  setSpeed({ vm, id, speed }: { vm: string; id: string; speed: number }) {
    simulator().vm(vm).execute('block-job-set-speed', { device: id, speed });
    return null;
  },
  /** Starts `jobsPerSecond` short backup jobs per second, round robin over the VMs, until stopCycle. */
  cycleJobs({ jobsPerSecond, sizeBytes }: { jobsPerSecond: number; sizeBytes: number }) {
    stopCycle();
    const vms = simulator().vms;
    const startedAt = performance.now();
    cycleStarted = 0;
    cycle = setInterval(() => {
      const due = Math.floor(((performance.now() - startedAt) / 1000) * jobsPerSecond);
      for (; cycleStarted < due; cycleStarted++) {
        const vm = vms[nextJob % vms.length]!;
        const id = `c${nextJob++}`;
        try {
          vm.startJob({ id, type: 'backup', sizeBytes });
          unreleased.push({ vm: vm.name, id });
        } catch {
          startFailures++;
        }
        while (unreleased.length > MAX_UNRELEASED_JOBS) {
          const old = unreleased.shift()!;
          try {
            simulator().vm(old.vm).releaseJob(old.id);
          } catch {
            // still running on an overloaded machine: its nodes stay, which costs only memory here
          }
        }
      }
    }, CYCLE_TICK_MS);
    return null;
  },
  stopCycle() {
    stopCycle();
    return { started: cycleStarted, startFailures };
  },
  /** Every monitor's client gets EOF at once (QEMU itself keeps running). */
  dropAll() {
    for (const vm of simulator().vms) vm.dropClients();
    return null;
  },
  close,
});

process.once('SIGINT', () => void close().finally(() => process.exit(130)));
process.once('SIGTERM', () => void close().finally(() => process.exit(143)));
