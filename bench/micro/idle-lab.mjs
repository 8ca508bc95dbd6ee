// What the idle micro benchmarks (idle-window.mjs, idle-polls.mjs) share: N simulated idle VMs in a process of
// their own, the gateway's job side following them with every QMP command counted, and the readings of this
// process's threads from /proc. DIST is a build's dist folder (of this tree or an older commit's, for A/B).
import { fork } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { PerformanceObserver } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** N idle VMs (src/sim from DIST) in a child process: their addresses, and stop(). None for N = 0. */
export async function startIdleVms(dist, vms) {
  if (vms === 0) return { addresses: {}, stop: async () => {} };
  const sim = fork(new URL('./idle-sim.mjs', import.meta.url), [dist, String(vms)]);
  const { addresses } = await new Promise((r) => sim.once('message', r));
  const stop = async () => {
    sim.send('stop');
    await new Promise((r) => sim.once('exit', r));
  };
  return { addresses, stop };
}

/**
 * The gateway's job side from DIST (a JobRegistry with a QmpClient per VM, as bench/lib/gateway.ts assembles
 * it) following the VMs at `addresses`; resolves once every VM is connected. commands(): QMP commands sent.
 */
export async function followVms(dist, addresses) {
  const { JobRegistry } = await import(pathToFileURL(`${dist}/jobs/registry.js`).href);
  const { QmpClient } = await import(pathToFileURL(`${dist}/qmp/client.js`).href);
  let commands = 0;
  const registry = new JobRegistry({
    createMonitor: (vm, address) => {
      const client = new QmpClient({ address, name: vm });
      const send = client.executeWithMeta.bind(client);
      client.executeWithMeta = (c, a, o) => (commands++, send(c, a, o));
      client.start();
      return client;
    },
  });
  const vms = Object.keys(addresses);
  for (const vm of vms) registry.add(vm, addresses[vm]);
  while (registry.snapshot().filter((v) => v.status === 'connected').length < vms.length) await sleep(200);
  return { registry, vms, commands: () => commands };
}

/** The 1-, 5- and 15-minute load averages, as /proc/loadavg has them. */
export const loadAverages = () => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');

/** CPU ms (user + system) of one of this process's threads; the main thread by default. */
export const threadCpuMs = (tid = process.pid) =>
  ((f) => (Number(f[11]) + Number(f[12])) * 10)(readFileSync(`/proc/self/task/${tid}/stat`, 'utf8').split(') ')[1].split(' '));

/** The main thread's wake-ups so far (voluntary context switches). */
export const mainWakeups = () => Number(/\nvoluntary_ctxt_switches:\s+(\d+)/.exec(readFileSync(`/proc/self/task/${process.pid}/status`, 'utf8'))[1]);

/** Counts GCs and their time from now on: read `.count` and `.ms`. */
export function gcCounter() {
  const gc = { count: 0, ms: 0 };
  new PerformanceObserver((list) => list.getEntries().forEach((e) => (gc.count++, (gc.ms += e.duration)))).observe({ entryTypes: ['gc'] });
  return gc;
}
