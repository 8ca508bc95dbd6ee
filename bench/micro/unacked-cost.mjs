// CPU per event of a fleet host's unacked record (src/fleet/unacked.ts): ahead() before each event is
// served, caughtUp() when Redis acknowledges (every ACK_EVERY events), while OTHER VMs are also ahead
// (a busy host, or Redis slow or away). Usage:
//   node bench/micro/unacked-cost.mjs [DIST_DIR] [VMS_AHEAD] [ACK_EVERY]   (defaults: dist 1 1)
// Run it back to back against two builds (A/B pairs) on a loaded machine: CPU time
// (process.cpuUsage), not wall time, is compared. Median of 5 x 50,000 events after a warm-up.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const dist = resolve(process.argv[2] ?? 'dist');
const vmsAhead = Number(process.argv[3] ?? 1);
const ackEvery = Number(process.argv[4] ?? 1);
const { UnackedBook } = await import(pathToFileURL(`${dist}/fleet/unacked.js`).href);

const dir = mkdtempSync(join(tmpdir(), 'bjg-unacked-'));
const book = new UnackedBook(join(dir, 'record.json'));
const epoch = 'AAAAAAAAAAAAAAAA'; // newEpoch()'s length
for (let i = 1; i < vmsAhead; i++) book.ahead(`vm-${i}`, epoch, 1000 + i);
let offset = 0;
function run(n) {
  const before = process.cpuUsage();
  for (let i = 0; i < n; i++) {
    book.ahead('vm-0', epoch, ++offset);
    if (offset % ackEvery === 0) book.caughtUp('vm-0');
  }
  const used = process.cpuUsage(before);
  return (used.user + used.system) / n;
}
run(5000);
const samples = Array.from({ length: 5 }, () => run(50_000)).sort((a, b) => a - b);
book.close();
rmSync(dir, { recursive: true, force: true });
console.log(`${dist}: ${vmsAhead} VM(s) ahead, ack every ${ackEvery} event(s): ${samples[2].toFixed(2)} us CPU per event (median of 5)`);
