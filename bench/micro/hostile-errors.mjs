// CPU per malformed QMP job event at the engine's edge (parseJobEvent throwing its QmpProtocolError),
// called 12 frames deep as it is under a socket read, so a stack capture has its usual 10 frames.
// Usage: node bench/micro/hostile-errors.mjs [DIST_DIR] (default dist/). Run it back to back against
// two builds (A/B pairs) on a loaded machine: CPU time (process.cpuUsage), not wall time, is compared.
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const dist = resolve(process.argv[2] ?? 'dist');
const { parseJobEvent } = await import(pathToFileURL(`${dist}/jobs/qmp-payloads.js`).href);

const lie = (i) => ({ event: 'JOB_STATUS_CHANGE', data: { id: i, status: 'running' }, seq: i, session: 1, receivedAt: 0, receivedMono: 0 });
const deep = (depth, fn) => (depth === 0 ? fn() : deep(depth - 1, fn));

function run(n) {
  let thrown = 0;
  const before = process.cpuUsage();
  for (let i = 0; i < n; i++) {
    deep(12, () => {
      try {
        parseJobEvent(lie(i));
      } catch (error) {
        if (error.code === 'QMP_ERR_PROTOCOL') thrown++;
      }
    });
  }
  const used = process.cpuUsage(before);
  if (thrown !== n) throw new Error(`expected ${n} QmpProtocolErrors, got ${thrown}`);
  return (used.user + used.system) / n;
}

run(20_000); // warm-up: JIT
const samples = Array.from({ length: 5 }, () => run(100_000)).sort((a, b) => a - b);
console.log(`${dist}: CPU per malformed event ${samples[2].toFixed(2)} us (median of 5 x 100,000; min ${samples[0].toFixed(2)}, max ${samples[4].toFixed(2)})`);
