// What an AOF rewrite costs a fleet's Redis, to size auto-aof-rewrite-min-size / -percentage
// (docs/deploy.md "Sizing the AOF rewrite"). A real redis-server with the fleet's persistence (AOF,
// fsync every second), the fleet's own APPEND script at RATE transitions/s over VMS VMs:
//   1. AOF growth per second at that rate (what makes a rewrite due);
//   2. the fork of BGREWRITEAOF (Redis stops serving for that long) at growing data sets, the
//      bulk made of stream entries as a fleet's are (MAXLEN per VM), with the append latency seen
//      by the host meanwhile.
// Usage: node bench/micro/aof-rewrite.mjs [DIST_DIR] [RATE] [SECONDS] [VMS] [FILL_MB,...]
//   (defaults: dist 2000 30 10000 0,512,2048). Run it as a measurement (flock bench.lock, nice -n -15).
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { performance } from 'node:perf_hooks';

const dist = resolve(process.argv[2] ?? 'dist');
const rate = Number(process.argv[3] ?? 2000);
const seconds = Number(process.argv[4] ?? 30);
const vms = Number(process.argv[5] ?? 10_000);
const fills = (process.argv[6] ?? '0,512,2048').split(',').map(Number);
const load = (file) => import(pathToFileURL(`${dist}/${file}`).href);
const { startRedis } = await load('lab/redis.js');
const { connectRedis, parseRedisUrl } = await load('fleet/connect.js');
const { FleetStore } = await load('fleet/store.js');
const { toWire } = await load('fleet/entry.js');
const { streamEvent } = await load('gateway/stream/events.js');
const { fleetDefaults } = await load('fleet/fleet-config.js');

const server = await startRedis();
const redis = connectRedis(parseRedisUrl(server.url), { commandTimeoutMs: 60_000 });
redis.on('error', () => undefined);
await redis.connect();
const info = async (section) => Object.fromEntries((await redis.info(section)).split('\r\n').filter((l) => l.includes(':')).map((l) => l.split(':')));
try {
  await redis.config('SET', 'auto-aof-rewrite-percentage', '0'); // this harness decides when
  await redis.config('SET', 'latency-monitor-threshold', '1');
  const store = new FleetStore(redis, fleetDefaults().keyPrefix);
  const state = [];
  for (let i = 0; i < vms; i += 500) {
    await Promise.all(
      Array.from({ length: Math.min(500, vms - i) }, async (_, k) => {
        const vm = `vm-${i + k}`;
        const claim = await store.claim(vm, 'h1', 600_000, `E${String(i + k).padStart(15, '0')}`);
        state[i + k] = { vm, lease: claim.lease, epoch: claim.epoch, offset: claim.head };
      }),
    );
  }
  const job = (vm, n) => ({
    id: `mirror-${vm}`, vm, type: 'mirror', state: n % 2 ? 'running' : 'paused', incarnation: 1, device: 'drive0', autoFinalize: true, autoDismiss: true,
    progress: { current: n * 1048576, total: 10737418240, percent: 0.01, rate: 104857600, etaSeconds: 100 }, speed: 0, error: null, outcome: null, pivoted: false,
    ready: false, stale: false, source: 'qmp', createdAt: '2026-11-30T14:00:00.000Z', updatedAt: new Date().toISOString(), stateSince: new Date().toISOString(),
  });
  let next = 0;
  const latencies = [];
  /** RATE transitions a second for `ms`, round robin over the VMs, one APPEND each (as a host sends them when not batching). */
  async function drive(ms) {
    latencies.length = 0;
    const start = performance.now();
    let sent = 0;
    const inflight = new Set();
    while (performance.now() - start < ms) {
      const due = Math.floor(((performance.now() - start) / 1000) * rate);
      for (; sent < due; sent++) {
        const s = state[next++ % vms];
        s.offset++;
        const j = job(s.vm, s.offset);
        const wire = toWire(streamEvent({ kind: 'transition', vm: s.vm, job: j, from: { state: 'running' }, to: { state: j.state }, source: 'qmp', at: Date.now() }, s.epoch, s.offset));
        const t0 = performance.now();
        const p = store.append(s.vm, s.lease, s.epoch, 1000, [wire]).then((r) => {
          if (r.kind !== 'ok') throw new Error(`append ${JSON.stringify(r)}`);
          latencies.push(performance.now() - t0);
          inflight.delete(p);
        });
        inflight.add(p);
      }
      await new Promise((r) => setTimeout(r, 5));
    }
    await Promise.all(inflight);
    latencies.sort((a, b) => a - b);
    return { p50: latencies[Math.floor(latencies.length * 0.5)], p99: latencies[Math.floor(latencies.length * 0.99)], max: latencies.at(-1) };
  }

  // 1. AOF growth at RATE.
  await redis.bgrewriteaof();
  const rewritten = async () => {
    for (;;) {
      const p = await info('persistence');
      if (p.aof_rewrite_in_progress === '0' && p.aof_rewrite_scheduled === '0') return p;
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  await rewritten();
  const before = Number((await info('persistence')).aof_current_size);
  const steady = await drive(seconds * 1000);
  const after = Number((await info('persistence')).aof_current_size);
  const perSecond = (after - before) / seconds;
  console.log(`${rate} transitions/s over ${vms} VMs for ${seconds} s: AOF +${(perSecond / 1e6).toFixed(2)} MB/s (${((perSecond * 60) / 1e6).toFixed(0)} MB/min, ${(perSecond / rate).toFixed(0)} B per transition); append p50 ${steady.p50.toFixed(2)} p99 ${steady.p99.toFixed(2)} max ${steady.max.toFixed(1)} ms`);

  // 2. The fork at growing data sets, with the host's appends going on meanwhile.
  const entry = 'x'.repeat(700);
  let filled = 0;
  for (const mb of fills) {
    for (let chunk = 0; (await info('memory')).used_memory / 1e6 < mb; chunk++) {
      const pipe = redis.pipeline();
      for (let k = 0; k < 5000; k++) pipe.xadd(`bjg:{fill-${filled++ % 20000}}:s`, 'MAXLEN', '~', 1000, '*', 'b', entry);
      await pipe.exec();
    }
    const mem = await info('memory');
    await redis.call('LATENCY', 'RESET');
    const driving = drive(4000);
    await new Promise((r) => setTimeout(r, 1000));
    await redis.bgrewriteaof();
    const during = await driving;
    const done = await rewritten();
    const stats = await info('stats');
    const latest = await redis.call('LATENCY', 'LATEST');
    const fork = latest.find((l) => l[0] === 'fork');
    console.log(
      `used_memory ${(mem.used_memory / 1e6).toFixed(0)} MB (rss ${(mem.used_memory_rss / 1e6).toFixed(0)} MB): fork ${(stats.latest_fork_usec / 1000).toFixed(1)} ms` +
        ` (LATENCY fork ${fork ? `${fork[2]} ms` : 'none >= 1 ms'}), rewrite ${done.aof_last_rewrite_time_sec} s; appends meanwhile p50 ${during.p50.toFixed(2)} p99 ${during.p99.toFixed(2)} max ${during.max.toFixed(1)} ms`,
    );
  }
} finally {
  redis.disconnect();
  await server.dispose();
}
