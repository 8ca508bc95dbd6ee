// Idle safety-net polling, A/B: 1,000 simulated idle VMs (src/sim, its own process, from build A) followed by the
// gateway's job side (JobRegistry, a QmpClient per VM) in a fresh process per run, alternately from build A and B.
// Per run, over one idle window after the connects and a settle: CPU per idle poll (process.cpuUsage, all
// threads), the main thread's CPU and wake-ups (voluntary context switches, /proc), GC count and time.
// With --alloc the gateway runs with a 256 MiB young generation, so no GC falls in the window and the heap's
// growth per poll is what one poll allocates.
// Usage: node bench/micro/idle-polls.mjs DIST_A DIST_B [pairs=3] [vms=1000] [settleSec=15] [windowSec=30] [--alloc]
// Build the old side first (git archive <commit> | tar -x -C /tmp/old; npm run build there). CPU is compared,
// not wall time: run it on the loaded machine in pairs, the order alternating.
import { fork } from 'node:child_process';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { followVms, gcCounter, loadAverages, mainWakeups, sleep, startIdleVms, threadCpuMs } from './idle-lab.mjs';

const self = fileURLToPath(import.meta.url);

if (process.argv[2] === '--gateway') {
  const [dist, settleSec, windowSec] = [process.argv[3], Number(process.argv[4]), Number(process.argv[5])];
  const addresses = await new Promise((r) => process.once('message', (m) => r(m.addresses)));
  const { registry, commands } = await followVms(dist, addresses);
  registry.changes$.subscribe(() => {});
  await sleep(settleSec * 1000);
  const gc = gcCounter();
  const c0 = commands(), u0 = process.cpuUsage(), t0 = performance.now(), w0 = mainWakeups(), m0 = threadCpuMs(), h0 = process.memoryUsage().heapUsed;
  await sleep(windowSec * 1000);
  const u = process.cpuUsage(u0), seconds = (performance.now() - t0) / 1000, polls = commands() - c0;
  const heap = process.memoryUsage().heapUsed - h0;
  process.send({
    polls, pollsPerSec: polls / seconds, coreShare: (u.user + u.system) / 1e6 / seconds, usPerPoll: (u.user + u.system) / polls,
    mainThreadMs: threadCpuMs() - m0, wakeupsPerSec: (mainWakeups() - w0) / seconds, gcs: gc.count, gcMs: gc.ms,
    bytesPerPoll: gc.count === 0 ? heap / polls : null,
  });
  await registry.close();
  process.exit(0);
} else {
  const args = process.argv.slice(2).filter((a) => a !== '--alloc');
  const alloc = process.argv.includes('--alloc');
  const [a, b] = [resolve(args[0]), resolve(args[1])];
  const [pairs, vms, settle, windowSec] = [Number(args[2] ?? 3), Number(args[3] ?? 1000), Number(args[4] ?? 15), Number(args[5] ?? 30)];
  const once = async (dist) => {
    const { addresses, stop } = await startIdleVms(a, vms);
    const gateway = fork(self, ['--gateway', dist, String(settle), String(windowSec)], { execArgv: alloc ? ['--max-semi-space-size=256'] : [] });
    gateway.send({ addresses });
    const result = await new Promise((r) => gateway.once('message', r));
    await new Promise((r) => gateway.once('exit', r));
    await stop();
    return result;
  };
  for (let pair = 0; pair < pairs; pair++) {
    for (const side of pair % 2 === 0 ? ['A', 'B'] : ['B', 'A']) {
      const load = loadAverages();
      const r = await once(side === 'A' ? a : b);
      const round = Object.fromEntries(Object.entries(r).map(([k, v]) => [k, typeof v === 'number' ? Number(v.toFixed(4)) : v]));
      console.log(JSON.stringify({ pair, side, load, ...round }));
    }
  }
}
