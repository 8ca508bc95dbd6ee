/**
 * `npm run soak -- --jobs N --seed S [--duration 1h] [--concurrency C] [--gateway-kill-every 90s]
 * [--qemu-kill-every 2m] [--json FILE]`: runs the chaos soak (run.ts), prints the seed first (to
 * replay) and the figures last; exits 1 on any mismatch, gap or duplicate.
 */
import { writeFileSync } from 'node:fs';
import { summarize } from './report.js';
import { runSoak } from './run.js';

function duration(text: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text);
  if (!match) throw new Error(`not a duration: ${text} (e.g. 90s, 2m, 1h)`);
  const unit = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 }[match[2] ?? 's']!;
  return Number(match[1]) * unit;
}

function parse(argv: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]!;
    if (!flag.startsWith('--')) throw new Error(`unexpected argument ${flag}`);
    const value = argv[i + 1];
    if (value === undefined) throw new Error(`${flag} needs a value`);
    out[flag.slice(2)] = value;
    i++;
  }
  return out;
}

const args = parse(process.argv.slice(2));
const seed = args.seed !== undefined ? Number(args.seed) : Math.floor(Math.random() * 2 ** 31);
const hasDuration = args.duration !== undefined;
const jobs = args.jobs !== undefined ? Number(args.jobs) : hasDuration ? Number.MAX_SAFE_INTEGER : 100;
console.log(`soak: seed ${seed} (replay with --seed ${seed}), jobs ${hasDuration && args.jobs === undefined ? 'unbounded' : jobs}${hasDuration ? `, duration ${args.duration}` : ''}`);
const report = await runSoak({
  seed,
  jobs,
  durationMs: hasDuration ? duration(args.duration!) : 24 * 3_600_000,
  ...(args.concurrency ? { concurrency: Number(args.concurrency) } : {}),
  ...(args['gateway-kill-every'] ? { gatewayKillEveryMs: duration(args['gateway-kill-every']) } : {}),
  ...(args['qemu-kill-every'] ? { qemuKillEveryMs: duration(args['qemu-kill-every']) } : {}),
  log: (line) => console.log(`[${new Date().toISOString()}] ${line}`),
});
if (args.json) writeFileSync(args.json, JSON.stringify(report, null, 2));
const { text, ok } = summarize(report);
console.log(text);
process.exit(ok ? 0 : 1);
