// Where an idle window's CPU goes: the monitors scenario's gateway (JobRegistry + startGateway, as
// bench/lib/gateway.ts assembles it) following N simulated idle VMs (src/sim in its own process), in a fresh
// process with the given node flags. After the connects and a settle, W windows: CPU of the whole process
// (process.cpuUsage) split per thread (/proc/self/task/*/stat: main thread vs V8's and libuv's helpers),
// QMP commands, GCs, main-thread wake-ups (voluntary context switches).
// Usage: node bench/micro/idle-window.mjs DIST VMS [settleSec=10] [windowSec=20] [windows=2] [-- node flags...]
// VMS may be 0 (the gateway alone). Node flags after `--` go to the gateway process (e.g. --trace-deopt).
import { fork } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { followVms, gcCounter, loadAverages, mainWakeups, sleep, startIdleVms, threadCpuMs } from './idle-lab.mjs';

const self = fileURLToPath(import.meta.url);
const threadName = (tid) => readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').trim();
const threads = () => Object.fromEntries(readdirSync('/proc/self/task').map((tid) => [`${tid === String(process.pid) ? 'main' : threadName(tid)}#${tid}`, threadCpuMs(tid)]));

// PROFILE=/tmp/x: a CPU profile of each window (inspector, 250 µs samples) into /tmp/x-wN.cpuprofile.
async function startProfile() {
  const { Session } = await import('node:inspector/promises');
  const { writeFileSync } = await import('node:fs');
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.setSamplingInterval', { interval: 250 });
  await session.post('Profiler.start');
  return async (file) => {
    const { profile } = await session.post('Profiler.stop');
    writeFileSync(file, JSON.stringify(profile));
    session.disconnect();
  };
}

if (process.argv[2] === '--gateway') {
  const [dist, settleSec, windowSec, windows] = [process.argv[3], Number(process.argv[4]), Number(process.argv[5]), Number(process.argv[6])];
  const { startGateway } = await import(pathToFileURL(`${dist}/gateway/server.js`).href);
  const addresses = await new Promise((r) => process.once('message', (m) => r(m.addresses)));
  const { registry, vms, commands } = await followVms(dist, addresses);
  const gateway = await startGateway({ source: registry, listen: { host: '127.0.0.1', port: 0 }, maxConnectionsPerToken: 25_000, progressIntervalMs: 1000, defaultMetrics: false });
  while (commands() < vms.length) await sleep(200);
  await sleep(settleSec * 1000);
  const gc = gcCounter();
  for (let w = 0; w < windows; w++) {
    const c0 = commands(), u0 = process.cpuUsage(), t0 = performance.now(), w0 = mainWakeups(), th0 = threads(), g0 = gc.count, gm0 = gc.ms;
    const load = loadAverages();
    process.stdout.write(`=== window ${w} starts\n`);
    const stopProfile = process.env.PROFILE ? await startProfile() : undefined;
    await sleep(windowSec * 1000);
    if (stopProfile) await stopProfile(`${process.env.PROFILE}-w${w}.cpuprofile`);
    const u = process.cpuUsage(u0), seconds = (performance.now() - t0) / 1000, polls = commands() - c0;
    const th = threads();
    const perThread = Object.fromEntries(Object.entries(th).map(([k, v]) => [k, v - (th0[k] ?? 0)]).filter(([, v]) => v > 0));
    process.send({
      window: w, load, vms: vms.length, pollsPerSec: Number((polls / seconds).toFixed(1)), coreSharePct: Number(((u.user + u.system) / 1e4 / seconds).toFixed(3)),
      usPerPoll: polls ? Number(((u.user + u.system) / polls).toFixed(1)) : null, userMs: Math.round(u.user / 1000), sysMs: Math.round(u.system / 1000),
      threadMs: perThread, wakeupsPerSec: Number(((mainWakeups() - w0) / seconds).toFixed(1)), gcs: gc.count - g0, gcMs: Number((gc.ms - gm0).toFixed(1)),
    });
  }
  process.stdout.write('=== windows end\n');
  await gateway.close({ graceMs: 100 });
  await registry.close();
  process.send('done');
  process.exit(0);
} else {
  const dash = process.argv.indexOf('--');
  const args = process.argv.slice(2, dash < 0 ? undefined : dash);
  const flags = dash < 0 ? [] : process.argv.slice(dash + 1);
  const dist = resolve(args[0]);
  const [vms, settle, windowSec, windows] = [Number(args[1] ?? 1000), Number(args[2] ?? 10), Number(args[3] ?? 20), Number(args[4] ?? 2)];
  const { addresses, stop } = await startIdleVms(dist, vms);
  const gateway = fork(self, ['--gateway', dist, String(settle), String(windowSec), String(windows)], { execArgv: flags });
  gateway.send({ addresses });
  await new Promise((r) => gateway.on('message', (m) => (m === 'done' ? r() : console.log(JSON.stringify(m)))));
  await new Promise((r) => gateway.once('exit', r));
  await stop();
}
