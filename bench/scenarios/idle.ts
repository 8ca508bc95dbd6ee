/**
 * (3) Connections and memory: 1,000 running jobs on 20 simulated VMs (forked), plus one quiet VM the
 * idle subscribers follow. Memory per connection is the GC'd RSS and heap growth of this process
 * (the gateway) divided by the connections. The target is 20,000, but this machine's hard fd limit
 * is 20,000 per process and cannot be raised, so the top step leaves room for the other descriptors.
 * Also: the time a new subscriber to everything takes from subscribe to its last `synced`.
 */
import { startBenchGateway } from '../lib/gateway.js';
import { sleep, waitFor } from '../lib/resources.js';
import { count, forkLoad, ms, type Row, type Scenario } from '../lib/scenario.js';
import { settledMemory, summarize } from '../lib/stats.js';

const JOB_VMS = 20;
const JOBS_PER_VM = 50;
/** File descriptors the gateway process needs besides subscribers (QMP sockets, listener, stdio, node internals). */
const FD_HEADROOM = 200;
const FD_HARD_LIMIT = 20_000;
const KiB = 1024;

export const idle: Scenario = async (context) => {
  const { quick, resources, log } = context;
  const top = FD_HARD_LIMIT - FD_HEADROOM;
  const steps = quick ? [2000] : [1000, 5000, 10_000, top];
  const sim = forkLoad(context, 'simulator');
  const subscribers = forkLoad(context, 'subscribers');
  const quietVm = `vm${JOB_VMS + 1}`;
  const { addresses } = await sim.call<{ addresses: Record<string, string> }>('start', { vms: JOB_VMS + 1, tickMs: 200 });
  // Slow mirrors: 64 MiB at 16 KiB/s keep running for the whole measurement.
  await sim.call('startJobs', { vms: JOB_VMS, perVm: JOBS_PER_VM, job: { idPrefix: 'idle', type: 'mirror', speed: 16 * KiB } });
  const probe = await startBenchGateway(resources, addresses);
  const jobs = JOB_VMS * JOBS_PER_VM;
  await waitFor(`${jobs} jobs in the gateway`, () => probe.registry.snapshot().reduce((sum, vm) => sum + vm.jobs.length, 0) >= jobs, 120_000, 200);
  await sleep(1000);

  const snapshots = await subscribers.call<Array<{ ms: number; states: number }>>('snapshotTimes', { url: probe.gateway.wsUrl, repeats: quick ? 3 : 10 });
  const snapshot = summarize(snapshots.map((s) => s.ms));
  log(`idle: snapshot of ${snapshots[0]?.states} jobs in p50 ${ms(snapshot.p50)} ms`);

  const base = await settledMemory();
  const measured: Array<{ connections: number; rssPerConnection: number; heapPerConnection: number; connectSeconds: number; rss: number; heapUsed: number }> = [];
  let connected = 0;
  for (const step of steps) {
    const t0 = performance.now();
    await subscribers.call('connect', { url: probe.gateway.wsUrl, count: step - connected, mode: 'gateway', filter: { vms: [quietVm] } });
    connected = step;
    const connectSeconds = (performance.now() - t0) / 1000;
    await sleep(500);
    const memory = await settledMemory();
    measured.push({
      connections: step,
      rssPerConnection: (memory.rss - base.rss) / step,
      heapPerConnection: (memory.heapUsed - base.heapUsed) / step,
      connectSeconds,
      ...memory,
    });
    log(`idle: ${count(step)} subscribers: ${((memory.rss - base.rss) / step / KiB).toFixed(1)} KiB RSS each`);
  }
  await subscribers.call('disconnectAll');

  const last = measured[measured.length - 1]!;
  const perConnection = last.rssPerConnection / KiB;
  const rows: Row[] = [
    ...measured.map((m) => ({
      metric: `${count(m.connections)} idle subscribers: RSS / heap per connection after GC`,
      value: `${(m.rssPerConnection / KiB).toFixed(1)} KiB / ${(m.heapPerConnection / KiB).toFixed(1)} KiB`,
    })),
    {
      metric: `idle subscribers: memory per connection at ${count(last.connections)}${quick ? '' : ' (fd hard limit 20,000)'}`,
      value: `${perConnection.toFixed(1)} KiB RSS`,
      goal: '< 20 KB',
      met: last.rssPerConnection < 20_000,
    },
    { metric: `snapshot for a new subscriber, ${snapshots[0]?.states ?? 0} jobs (${snapshot.count} runs)`, value: `p50 ${ms(snapshot.p50)} / max ${ms(snapshot.max)} ms` },
  ];
  return { name: 'idle', rows, raw: { jobs, base, steps: measured, snapshot, snapshots, fdHardLimit: FD_HARD_LIMIT } };
};
