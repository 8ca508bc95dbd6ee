/**
 * (4) Many monitors: 1,000 simulated VMs (forked), one monitor each, all followed by the gateway.
 * Gateway CPU with every job idle and with a few active jobs, the QMP commands per second the
 * gateway spends on polling, and the time until all 1,000 are connected again after every
 * monitor drops its client at the same instant.
 */
import { startBenchGateway } from '../lib/gateway.js';
import { sleep, waitFor } from '../lib/resources.js';
import { count, forkLoad, percent, type Row, type Scenario } from '../lib/scenario.js';
import { CpuMeter } from '../lib/stats.js';

const VMS = 1000;
const ACTIVE_JOBS = 10;
const MiB = 1024 * 1024;

export const monitors: Scenario = async (context) => {
  const { quick, resources, log } = context;
  // At least one idle-poll period (10 s) per window, or the idle safety-net polls are missed.
  const windowSec = quick ? 12 : 30;
  const sim = forkLoad(context, 'simulator');
  const { addresses } = await sim.call<{ addresses: Record<string, string> }>('start', { vms: VMS, tickMs: 50 });
  const t0 = performance.now();
  const probe = await startBenchGateway(resources, addresses);
  await waitFor(`all ${VMS} monitors connected`, () => probe.connectedVms() === VMS, 120_000, 100);
  const connectSeconds = (performance.now() - t0) / 1000;
  log(`monitors: ${VMS} connected in ${connectSeconds.toFixed(1)} s`);
  await sleep(2000);

  const measure = async (): Promise<{ coreShare: number; commandsPerSec: number; byCommand: Record<string, number> }> => {
    const commands = probe.qmpCommands();
    const byName = probe.qmpCommandsByName();
    const cpu = new CpuMeter();
    await sleep(windowSec * 1000);
    const used = cpu.read();
    const seconds = used.wallMs / 1000;
    const byCommand = Object.fromEntries(
      Object.entries(probe.qmpCommandsByName()).map(([name, total]) => [name, Number(((total - (byName[name] ?? 0)) / seconds).toFixed(2))]),
    );
    return { coreShare: used.coreShare, commandsPerSec: (probe.qmpCommands() - commands) / seconds, byCommand };
  };
  const idle = await measure();
  log(`monitors: idle ${percent(idle.coreShare)} of a core, ${idle.commandsPerSec.toFixed(1)} QMP commands/s`);

  // A few active jobs: mirrors at 1 MiB/s over 64 MiB run for the whole window.
  await sim.call('startJobs', { vms: ACTIVE_JOBS, perVm: 1, job: { idPrefix: 'active', type: 'mirror', speed: MiB } });
  await waitFor(`${ACTIVE_JOBS} active jobs in the gateway`, () => probe.registry.snapshot().filter((vm) => vm.jobs.some((job) => job.state === 'running')).length >= ACTIVE_JOBS, 30_000);
  await sleep(1000);
  const active = await measure();
  log(`monitors: ${ACTIVE_JOBS} active jobs: ${percent(active.coreShare)} of a core, ${active.commandsPerSec.toFixed(1)} QMP commands/s ${JSON.stringify(active.byCommand)}`);

  // Every monitor drops its client at once; time until the gateway has all of them back.
  const dropped = new Set<string>();
  const back = new Set<string>();
  const subscription = probe.registry.changes$.subscribe((change) => {
    if (change.kind !== 'vm') return;
    if (change.status === 'disconnected') dropped.add(change.vm);
    else if (change.status === 'connected' && dropped.has(change.vm)) back.add(change.vm);
  });
  resources.defer('reconnect probe', () => subscription.unsubscribe());
  const dropAt = performance.now();
  await sim.call('dropAll');
  await waitFor(`all ${VMS} monitors back after the drop`, () => back.size === VMS, 180_000, 20);
  const reconnectSeconds = (performance.now() - dropAt) / 1000;
  log(`monitors: all ${VMS} back in ${reconnectSeconds.toFixed(2)} s`);

  const rows: Row[] = [
    { metric: `${count(VMS)} idle monitors: gateway CPU`, value: `${percent(idle.coreShare)} of one core`, goal: '< 5%', met: idle.coreShare < 0.05 },
    { metric: `${count(VMS)} idle monitors: QMP commands/s spent on polling`, value: idle.commandsPerSec.toFixed(1) },
    { metric: `${ACTIVE_JOBS} active jobs among them: gateway CPU, QMP commands/s`, value: `${percent(active.coreShare)} of one core, ${active.commandsPerSec.toFixed(1)}/s` },
    { metric: `all ${count(VMS)} monitors drop at once: time until all reconnected`, value: `${reconnectSeconds.toFixed(2)} s` },
    { metric: `initial connect of ${count(VMS)} monitors`, value: `${connectSeconds.toFixed(2)} s` },
  ];
  return { name: 'monitors', rows, raw: { vms: VMS, activeJobs: ACTIVE_JOBS, windowSec, idle, active, reconnectSeconds, connectSeconds } };
};
